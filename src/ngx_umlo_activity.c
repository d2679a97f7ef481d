/*
 * Copyright (C) ngx_umlo authors
 *
 * The activity refresh, in a pool thread.  It holds the org's sync lock
 * like any sync, so it never races a full or selective sync on the
 * current generation, and it changes that generation in one MULTI/EXEC:
 * readers see every user's new activity or none of it.
 *
 * 1. users/search with the productAccess expansion only, in the same six
 *    independent cursor chains as a full sync: the last-active timestamp
 *    of each product instance a user used.
 * 2. Where that is not enough (an entry without a timestamp or without a
 *    product instance), the last-active-dates endpoint of that user.  Its
 *    published limit is 200 requests a minute per org: every request
 *    first takes a slot from a pacer kept in Redis (shared by every
 *    instance and every run), and a failed request is sent again only
 *    through the pacer, never by the client's own retries.
 * 3. The current generation's users are read back, their product entries
 *    given the later of the stored and the new date, and the changed
 *    users, the summary's "activity_as_of" and the snapshot's revision
 *    (so that workers reload it) written in one transaction, which Redis
 *    refuses if the lock or the current generation changed meanwhile.
 */


#include "ngx_umlo_pace.h"
#include "ngx_umlo_clock.h"
#include "ngx_umlo_sync.h"
#include "ngx_umlo_keys.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>


#define NGX_UMLO_ACT_TICK_MS     250
#define NGX_UMLO_ACT_REPORT_MS   1000
#define NGX_UMLO_ACT_PAGE        100
#define NGX_UMLO_ACT_SCAN        1000
#define NGX_UMLO_ACT_MAX_PAGES   100000
#define NGX_UMLO_ACT_MAX_BODY    (64 * 1024 * 1024)


/*
 * GCRA pacer: a slot every ARGV[1] ms, up to ARGV[2] at once; grants up
 * to ARGV[3] slots.  Returns {granted, ms to wait when none}.  Redis'
 * clock is the only clock, so instances never disagree.
 */
static const char  ngx_umlo_act_pace_lua[] =
    "local t = redis.call('TIME')"
    " local now = t[1] * 1000 + math.floor(t[2] / 1000)"
    " local every, burst, want ="
    "  tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])"
    " local tat = tonumber(redis.call('GET', KEYS[1]) or '0')"
    " if tat < now then tat = now end"
    " local n = 0"
    " while n < want and tat + every - now <= burst * every do"
    "  tat = tat + every n = n + 1 end"
    " if n > 0 then"
    "  redis.call('SET', KEYS[1], tat, 'PX', tat - now + 1000)"
    "  return {n, 0} end"
    " return {0, tat + every - burst * every - now}";


typedef struct {
    ngx_umlo_job_t        *job;
    json_t                *act;        /* account id -> {ARI: timestamp} */
    json_t                *added;      /* account id -> added_to_org;
                                          null: lookup queued */
    json_t                *queue;      /* lookups: [id, cursor, tries] */
    size_t                 queue_next;
    uint64_t               users_read;
    uint64_t               needed;     /* users looked up */
    uint64_t               lookups;    /* lookup requests answered */
    uint64_t               changed;
    uint64_t               calls;      /* of finished clients */
    uint64_t               retries;
    uint64_t               http_429;
    uint64_t               errors;
    long long              gen;
    const char            *phase;
} ngx_umlo_act_t;


typedef struct {
    ngx_umlo_act_t        *act;
    json_t                *body;
    char                  *cursor;
    unsigned               pages;
} ngx_umlo_act_chain_t;


typedef struct {
    ngx_umlo_act_t        *act;
    json_t                *item;       /* [id, cursor, tries] */
} ngx_umlo_act_lookup_t;


static const char  *ngx_umlo_act_chains[][2] = {
    { "active",   "managed" },
    { "active",   "unmanaged" },
    { "inactive", "managed" },
    { "inactive", "unmanaged" },
    { "closed",   "managed" },
    { "closed",   "unmanaged" },
};


static int ngx_umlo_act_walk(ngx_umlo_act_t *a);
static int ngx_umlo_act_submit(ngx_umlo_act_chain_t *ch);
static void ngx_umlo_act_users(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req);
static int ngx_umlo_act_lookups(ngx_umlo_act_t *a);
static void ngx_umlo_act_dates(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req);
static int ngx_umlo_act_pace(ngx_umlo_act_t *a, unsigned want,
    long long *wait);
static int ngx_umlo_act_write(ngx_umlo_act_t *a);
static json_t *ngx_umlo_act_sites(ngx_umlo_act_t *a);
static int ngx_umlo_act_merge(ngx_umlo_act_t *a, json_t *user,
    json_t *sites);
static void ngx_umlo_act_later(json_t *obj, const char *key,
    const char *ts);
static int ngx_umlo_act_cmp(const char *a, const char *b);
static ngx_umlo_api_t *ngx_umlo_act_client(ngx_umlo_act_t *a,
    unsigned retries);
static void ngx_umlo_act_client_done(ngx_umlo_act_t *a);
static void ngx_umlo_act_tick(void *data);
static void ngx_umlo_act_report(ngx_umlo_act_t *a);
static void ngx_umlo_act_finish(ngx_umlo_act_t *a, const char *state);
static void ngx_umlo_act_fail(ngx_umlo_act_t *a, const char *where,
    const char *fmt, ...);


void
ngx_umlo_activity_run(ngx_umlo_job_t *job)
{
    int              rc;
    ngx_umlo_act_t   a;

    memset(&a, 0, sizeof(ngx_umlo_act_t));
    a.job = job;

    job->started_ms = ngx_umlo_clock_ms();
    job->renewed_ms = job->started_ms;

    if (ngx_umlo_store_open(&job->store, &job->redis, job->org) != 0) {
        ngx_umlo_act_fail(&a, "redis", "%s", job->store.error);
        job->state = "failed";
        job->store_failed = 1;
        return;
    }

    json_object_set_new(job->doc, "started_at",
                        json_integer(job->started_ms / 1000));

    a.act = json_object();
    a.added = json_object();
    a.queue = json_array();

    if (a.act == NULL || a.added == NULL || a.queue == NULL) {
        ngx_umlo_act_fail(&a, "start", "out of memory");
        ngx_umlo_act_finish(&a, "failed");
        return;
    }

    a.gen = ngx_umlo_store_current(&job->store);

    if (a.gen <= 0) {
        ngx_umlo_act_fail(&a, "plan", a.gen == 0
                          ? "no full sync has completed yet: activity is "
                            "refreshed in an existing snapshot"
                          : job->store.error);
        ngx_umlo_act_finish(&a, "failed");
        return;
    }

    rc = ngx_umlo_act_walk(&a);

    if (rc == 0) {
        rc = ngx_umlo_act_lookups(&a);
    }

    if (rc == 0 && !job->cancel) {
        rc = ngx_umlo_act_write(&a);
    }

    if (rc == 0 && !job->cancel) {
        ngx_umlo_act_finish(&a, "succeeded");

    } else if (job->cancel && job->error[0] == '\0') {
        ngx_umlo_act_fail(&a, job->cancel_seen ? "cancel" : "shutdown",
                          job->cancel_seen
                          ? "cancelled on request; the snapshot's activity "
                            "stays as it was"
                          : "nginx is reloading or shutting down; the "
                            "snapshot's activity stays as it was");
        ngx_umlo_act_finish(&a, "cancelled");

    } else {
        ngx_umlo_act_finish(&a, "failed");
    }
}


/* 1. every user's productAccess, six cursor chains side by side */

static int
ngx_umlo_act_walk(ngx_umlo_act_t *a)
{
    size_t                 i;
    ngx_umlo_job_t        *job;
    ngx_umlo_act_chain_t  *ch;

    job = a->job;
    a->phase = "users";
    ngx_umlo_act_report(a);

    job->api = ngx_umlo_act_client(a, job->retries);
    if (job->api == NULL) {
        return -1;
    }

    for (i = 0;
         i < sizeof(ngx_umlo_act_chains) / sizeof(ngx_umlo_act_chains[0]);
         i++)
    {
        ch = calloc(1, sizeof(ngx_umlo_act_chain_t));
        if (ch == NULL) {
            ngx_umlo_act_fail(a, "start", "out of memory");
            return -1;
        }

        ch->act = a;
        ch->body = json_pack("{s:i,s:[s],s:[s],s:s}",
                             "limit", NGX_UMLO_ACT_PAGE,
                             "expand", "productAccess",
                             "accountStatus", ngx_umlo_act_chains[i][0],
                             "claimStatus", ngx_umlo_act_chains[i][1]);

        if (ch->body == NULL || ngx_umlo_act_submit(ch) != 0) {
            json_decref(ch->body);
            free(ch);
            ngx_umlo_act_fail(a, "start", "out of memory");
            return -1;
        }
    }

    if (ngx_umlo_api_run(job->api) != 0) {
        if (job->error[0] == '\0' && !job->cancel) {
            ngx_umlo_act_fail(a, "users", "%s", ngx_umlo_api_error(job->api));
        }

        return -1;
    }

    ngx_umlo_act_client_done(a);

    return job->error[0] ? -1 : 0;
}


static int
ngx_umlo_act_submit(ngx_umlo_act_chain_t *ch)
{
    char             path[512];
    json_t          *body;
    ngx_umlo_job_t  *job;

    job = ch->act->job;

    body = json_deep_copy(ch->body);
    if (body == NULL) {
        return -1;
    }

    if (ch->cursor != NULL) {
        json_object_set_new(body, "cursor", json_string(ch->cursor));
    }

    snprintf(path, sizeof(path),
             "/admin/v2/orgs/%s/directories/-/users/search", job->org);

    return ngx_umlo_api_submit(job->api, NGX_UMLO_API_ADMIN, "POST", path,
                               body, ngx_umlo_act_users, ch)
           ? 0 : -1;
}


static void
ngx_umlo_act_users(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    ngx_umlo_act_chain_t  *ch = req->data;

    int              need, dup;
    size_t           i, j;
    json_t          *data, *item, *access, *entry, *seen;
    const char      *id, *ari, *ts, *next;
    ngx_umlo_act_t  *a;

    a = ch->act;

    if (req->cancelled || req->error[0] != '\0') {
        if (!req->cancelled) {
            ngx_umlo_act_fail(a, "users", "%s%s", req->status == 401
                              ? "Organization API key rejected: check "
                                "umlo_api_key_file and its expiry; " : "",
                              req->error);
            ngx_umlo_api_abort(api, "%s", a->job->error);
        }

        goto done;
    }

    data = json_object_get(req->json, "data");
    if (!json_is_array(data)) {
        ngx_umlo_act_fail(a, "users", "malformed answer from users/search: "
                          "no \"data\" array");
        ngx_umlo_api_abort(api, "%s", a->job->error);
        goto done;
    }

    json_array_foreach(data, i, item) {
        id = json_string_value(json_object_get(item, "accountId"));
        if (id == NULL) {
            continue;
        }

        /* a duplicate across chains merges into the same entry */
        seen = json_object_get(a->act, id);
        dup = (seen != NULL);

        if (seen == NULL) {
            seen = json_object();
            if (seen == NULL || json_object_set_new(a->act, id, seen) != 0) {
                ngx_umlo_act_fail(a, "users", "out of memory");
                ngx_umlo_api_abort(api, "%s", a->job->error);
                goto done;
            }

            a->users_read++;
        }

        need = 0;
        access = json_object_get(item, "productAccess");

        json_array_foreach(access, j, entry) {
            ari = json_string_value(json_object_get(entry, "id"));
            ts = json_string_value(json_object_get(entry,
                                                   "lastActiveTimestamp"));

            /* the listing may leave either out: the endpoint has both */
            if (ari == NULL || ts == NULL) {
                need = 1;
                continue;
            }

            ngx_umlo_act_later(seen, ari, ts);
        }

        /* a duplicate's lookup would bring the same dates again */
        if (need && !(dup && json_object_get(a->added, id) != NULL)) {
            json_object_set_new(a->added, id, json_null());
            json_array_append_new(a->queue, json_pack("[s,n,i]", id, 0));
            a->needed++;
        }
    }

    next = json_string_value(json_object_get(json_object_get(req->json,
                                                             "links"),
                                             "next"));

    if (next != NULL && *next != '\0') {
        if ((ch->cursor != NULL && strcmp(ch->cursor, next) == 0)
            || ++ch->pages >= NGX_UMLO_ACT_MAX_PAGES)
        {
            ngx_umlo_act_fail(a, "users", "the users/search listing does "
                              "not end: its cursor repeated itself or went "
                              "past the page limit");
            ngx_umlo_api_abort(api, "%s", a->job->error);
            goto done;
        }

        free(ch->cursor);
        ch->cursor = strdup(next);

        if (ch->cursor == NULL || ngx_umlo_act_submit(ch) != 0) {
            ngx_umlo_act_fail(a, "users", "out of memory");
            ngx_umlo_api_abort(api, "%s", a->job->error);
            goto done;
        }

        return;
    }

done:

    json_decref(ch->body);
    free(ch->cursor);
    free(ch);
}


/*
 * 2. The lookups, each through the pacer.  The client makes no retries
 * of its own: a retry would be a request the pacer never counted.
 */

static int
ngx_umlo_act_lookups(ngx_umlo_act_t *a)
{
    int                     rc;
    char                    path[1024], *p;
    size_t                  n, k;
    json_t                 *item;
    unsigned                want;
    long long               wait, until;
    const char             *id, *cursor;
    ngx_umlo_job_t         *job;
    ngx_umlo_act_lookup_t  *lk;

    job = a->job;
    a->phase = "lookups";
    ngx_umlo_act_report(a);

    while (a->queue_next < json_array_size(a->queue)) {

        ngx_umlo_act_tick(a);

        if (job->cancel || job->error[0] != '\0') {
            return -1;
        }

        n = json_array_size(a->queue) - a->queue_next;
        want = n < job->concurrency ? (unsigned) n : job->concurrency;

        rc = ngx_umlo_act_pace(a, want, &wait);
        if (rc < 0) {
            return -1;
        }

        if (rc == 0) {
            /* sleep in short steps: cancel and the lease need us */
            until = ngx_umlo_clock_ms()
                    + (wait < NGX_UMLO_ACT_TICK_MS ? wait
                                                   : NGX_UMLO_ACT_TICK_MS);

            while (ngx_umlo_clock_ms() < until && !job->cancel) {
                usleep(10000);
            }

            continue;
        }

        /* one client for the phase: its connections stay open */
        if (job->api == NULL) {
            job->api = ngx_umlo_act_client(a, 0);
            if (job->api == NULL) {
                return -1;
            }
        }

        for (k = 0; k < (size_t) rc; k++) {
            item = json_array_get(a->queue, a->queue_next++);
            id = json_string_value(json_array_get(item, 0));
            cursor = json_string_value(json_array_get(item, 1));

            p = path + snprintf(path, sizeof(path),
                                "/admin/v1/orgs/%s/directory/users/",
                                job->org);

            /* account ids are [A-Za-z0-9:_-]; escape anything else */
            for ( /* void */ ; *id && p < path + sizeof(path) - 200; id++) {
                if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"
                           "WXYZ0123456789-_.~", *id))
                {
                    *p++ = *id;

                } else {
                    p += sprintf(p, "%%%02X", (unsigned char) *id);
                }
            }

            p += sprintf(p, "/last-active-dates");

            if (cursor != NULL) {
                p += snprintf(p, path + sizeof(path) - p, "?cursor=");

                for ( /* void */ ; *cursor && p < path + sizeof(path) - 4;
                     cursor++)
                {
                    if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
                               "RSTUVWXYZ0123456789-_.~", *cursor))
                    {
                        *p++ = *cursor;

                    } else {
                        p += sprintf(p, "%%%02X", (unsigned char) *cursor);
                    }
                }

                *p = '\0';
            }

            lk = malloc(sizeof(ngx_umlo_act_lookup_t));
            if (lk == NULL) {
                ngx_umlo_act_fail(a, "lookups", "out of memory");
                return -1;
            }

            lk->act = a;
            lk->item = json_incref(item);

            if (ngx_umlo_api_submit(job->api, NGX_UMLO_API_ACTIVITY, "GET",
                                    path, NULL, ngx_umlo_act_dates, lk)
                == NULL)
            {
                json_decref(item);
                free(lk);
                ngx_umlo_act_fail(a, "lookups", "out of memory");
                return -1;
            }
        }

        if (ngx_umlo_api_run(job->api) != 0) {
            if (job->error[0] == '\0' && !job->cancel) {
                ngx_umlo_act_fail(a, "lookups", "%s",
                                  ngx_umlo_api_error(job->api));
            }

            return -1;
        }

        if (job->error[0] != '\0') {
            return -1;
        }
    }

    ngx_umlo_act_client_done(a);

    return 0;
}


static void
ngx_umlo_act_dates(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    ngx_umlo_act_lookup_t  *lk = req->data;

    size_t           i;
    json_t          *data, *entry, *seen, *item;
    const char      *id, *ari, *ts, *next, *added;
    json_int_t       tries;
    ngx_umlo_act_t  *a;
    ngx_umlo_job_t  *job;

    a = lk->act;
    item = lk->item;
    job = a->job;

    id = json_string_value(json_array_get(item, 0));

    if (req->cancelled) {
        goto done;
    }

    if (req->error[0] != '\0') {
        if (req->status == 404) {
            goto done;              /* the user left the org meanwhile */
        }

        tries = json_integer_value(json_array_get(item, 2)) + 1;

        if (req->status != 401 && req->status != 403
            && (unsigned) tries <= job->retries)
        {
            /* again, through the pacer */
            json_array_append_new(a->queue,
                                  json_pack("[s,O,I]", id,
                                            json_array_get(item, 1),
                                            tries));
            a->retries++;
            goto done;
        }

        ngx_umlo_act_fail(a, "lookups", "%s%s", req->status == 401
                          ? "Organization API key rejected: check "
                            "umlo_api_key_file and its expiry; " : "",
                          req->error);
        ngx_umlo_api_abort(api, "%s", job->error);
        goto done;
    }

    a->lookups++;

    data = json_object_get(req->json, "data");
    seen = json_object_get(a->act, id);

    if (seen == NULL) {
        seen = json_object();
        json_object_set_new(a->act, id, seen);
    }

    json_array_foreach(json_object_get(data, "product_access"), i, entry) {
        ari = json_string_value(json_object_get(entry, "id"));
        ts = json_string_value(json_object_get(entry,
                                               "last_active_timestamp"));

        if (ari != NULL && ts != NULL) {
            ngx_umlo_act_later(seen, ari, ts);
        }
    }

    added = json_string_value(json_object_get(data,
                                              "added_to_org_timestamp"));
    if (added != NULL) {
        json_object_set_new(a->added, id, json_string(added));
    }

    next = json_string_value(json_object_get(json_object_get(req->json,
                                                             "links"),
                                             "next"));

    if (next != NULL && *next != '\0') {
        if (json_is_string(json_array_get(item, 1))
            && strcmp(json_string_value(json_array_get(item, 1)), next) == 0)
        {
            ngx_umlo_act_fail(a, "lookups", "last-active-dates of %s "
                              "repeats its cursor", id);
            ngx_umlo_api_abort(api, "%s", job->error);
            goto done;
        }

        json_array_append_new(a->queue, json_pack("[s,s,i]", id, next, 0));
    }

done:

    json_decref(item);
    free(lk);
}


/* 1: granted that many slots, 0: none yet (*wait ms), -1: Redis error */

static int
ngx_umlo_act_pace(ngx_umlo_act_t *a, unsigned want, long long *wait)
{
    long long        n;
    unsigned         every;
    redisReply      *r;
    ngx_umlo_job_t  *job;

    job = a->job;

    /* rounded up: never faster than the limit */
    every = (60000 + job->activity_rate - 1) / job->activity_rate;

    r = ngx_umlo_store_command(&job->store, "EVAL %s 1 "
                               NGX_UMLO_KEY_ACTIVITY_RATE " %u %u %u",
                               ngx_umlo_act_pace_lua, job->org, every,
                               job->activity_burst, want);
    if (r == NULL) {
        ngx_umlo_act_fail(a, "redis", "%s", job->store.error);
        return -1;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_INTEGER
        || r->element[1]->type != REDIS_REPLY_INTEGER)
    {
        freeReplyObject(r);
        ngx_umlo_act_fail(a, "redis", "unexpected answer from the pacer");
        return -1;
    }

    n = r->element[0]->integer;
    *wait = r->element[1]->integer;
    freeReplyObject(r);

    return (int) n;
}


/* 3. the current generation's users, changed in one transaction */

static int
ngx_umlo_act_write(ngx_umlo_act_t *a)
{
    int              rc, multi;
    char            *text, cursor[64], asof[32], **changed;
    size_t           i, nchanged;
    json_t          *sites, *summary, *user;
    redisReply      *r, *keys;
    ngx_umlo_job_t  *job;

    job = a->job;
    a->phase = "write";
    ngx_umlo_act_report(a);

    sites = ngx_umlo_act_sites(a);
    if (sites == NULL) {
        return -1;
    }

    changed = NULL;
    nchanged = 0;
    multi = 0;
    rc = -1;

    /* a lease renewed now lasts through the scan: nothing renews it */
    if (ngx_umlo_store_renew(&job->store, job->token, job->lease_ms) != 1) {
        ngx_umlo_act_fail(a, "lock", "the org lock was lost (lease "
                          "expired: Redis slow or unreachable?)");
        goto done;
    }

    /* EXEC fails if another holder took the lock or swapped meanwhile */
    r = ngx_umlo_store_command(&job->store, "WATCH " NGX_UMLO_KEY_LOCK " "
                               NGX_UMLO_KEY_CURRENT, job->org, job->org);
    if (r == NULL) {
        goto redis;
    }

    freeReplyObject(r);

    r = ngx_umlo_store_command(&job->store, "HGET " NGX_UMLO_KEY_CURRENT
                               " json", job->org);
    if (r == NULL) {
        goto redis;
    }

    summary = (r->type == REDIS_REPLY_STRING)
              ? json_loadb(r->str, r->len, 0, NULL) : NULL;
    freeReplyObject(r);

    if (summary == NULL || ngx_umlo_store_current(&job->store) != a->gen) {
        json_decref(summary);
        ngx_umlo_act_fail(a, "write", "the current snapshot changed during "
                          "the refresh");
        goto done;
    }

    ngx_umlo_clock_iso(asof, sizeof(asof), ngx_umlo_clock_ms());
    json_object_set_new(summary, "activity_as_of", json_string(asof));
    text = json_dumps(summary, JSON_COMPACT);
    json_decref(summary);

    if (text == NULL) {
        ngx_umlo_act_fail(a, "write", "out of memory");
        goto done;
    }

    strcpy(cursor, "0");

    do {
        r = ngx_umlo_store_command(&job->store, "HSCAN "
                                   NGX_UMLO_KEY_GEN_USERS " %s COUNT %d",
                                   job->org, a->gen, cursor,
                                   NGX_UMLO_ACT_SCAN);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r) {
                freeReplyObject(r);
            }

            free(text);
            goto redis;
        }

        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        keys = r->element[1];

        for (i = 0; i + 1 < keys->elements; i += 2) {
            user = json_loadb(keys->element[i + 1]->str,
                              keys->element[i + 1]->len, 0, NULL);

            if (user == NULL
                || !ngx_umlo_act_merge(a, user, sites))
            {
                json_decref(user);
                continue;
            }

            if (nchanged % 1024 == 0) {
                char  **p;

                p = realloc(changed, (nchanged + 1024) * sizeof(char *) * 2);
                if (p == NULL) {
                    json_decref(user);
                    freeReplyObject(r);
                    free(text);
                    ngx_umlo_act_fail(a, "write", "out of memory");
                    goto done;
                }

                changed = p;
            }

            changed[2 * nchanged] = strdup(keys->element[i]->str);
            changed[2 * nchanged + 1] = json_dumps(user, JSON_COMPACT);
            json_decref(user);

            if (changed[2 * nchanged] == NULL
                || changed[2 * nchanged + 1] == NULL)
            {
                free(changed[2 * nchanged]);
                free(changed[2 * nchanged + 1]);
                freeReplyObject(r);
                free(text);
                ngx_umlo_act_fail(a, "write", "out of memory");
                goto done;
            }

            nchanged++;
        }

        freeReplyObject(r);

        if (job->cancel) {
            free(text);
            goto done;
        }

    } while (strcmp(cursor, "0") != 0);

    /* one transaction: the users, the summary and the new revision */
    multi = 1;
    rc = ngx_umlo_store_append(&job->store, "MULTI");

    for (i = 0; rc == 0 && i < nchanged; i++) {
        rc = ngx_umlo_store_append(&job->store, "HSET "
                                   NGX_UMLO_KEY_GEN_USERS " %s %s",
                                   job->org, a->gen, changed[2 * i],
                                   changed[2 * i + 1]);
    }

    if (rc == 0) {
        rc = ngx_umlo_store_append(&job->store, "HSET " NGX_UMLO_KEY_CURRENT
                                   " json %s", job->org, text);
    }

    if (rc == 0) {
        rc = ngx_umlo_store_append(&job->store, "HINCRBY "
                                   NGX_UMLO_KEY_CURRENT " rev 1", job->org);
    }

    free(text);

    if (rc != 0) {
        rc = -1;
        goto redis;
    }

    r = ngx_umlo_store_command(&job->store, "EXEC");
    if (r == NULL) {
        rc = -1;
        goto redis;
    }

    multi = 0;

    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        rc = -1;
        ngx_umlo_act_fail(a, "write", "the org lock was lost or the "
                          "snapshot replaced before the activity could be "
                          "written; nothing was changed");
        goto done;
    }

    freeReplyObject(r);

    a->changed = nchanged;
    rc = 0;
    goto done;

redis:

    ngx_umlo_act_fail(a, "redis", "%s", job->store.error);
    rc = -1;

done:

    /*
     * A failed step must not leave the connection in a transaction or
     * watching: the history and the release still go through it.
     */
    (void) ngx_umlo_store_flush(&job->store);
    r = redisCommand(job->store.c, multi ? "DISCARD" : "UNWATCH");
    if (r != NULL) {
        freeReplyObject(r);
    }

    for (i = 0; i < nchanged; i++) {
        free(changed[2 * i]);
        free(changed[2 * i + 1]);
    }

    free(changed);
    json_decref(sites);

    return rc;
}


/* ARI -> {site, product} of the current generation */

static json_t *
ngx_umlo_act_sites(ngx_umlo_act_t *a)
{
    size_t           i, k;
    json_t          *out, *doc, *product;
    const char      *ari;
    redisReply      *r;
    ngx_umlo_job_t  *job;

    job = a->job;

    r = ngx_umlo_store_command(&job->store, "HVALS " NGX_UMLO_KEY_GEN_SITES,
                               job->org, a->gen);
    if (r == NULL) {
        ngx_umlo_act_fail(a, "redis", "%s", job->store.error);
        return NULL;
    }

    out = json_object();

    for (i = 0; out != NULL && i < r->elements; i++) {
        doc = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);

        json_array_foreach(json_object_get(doc, "products"), k, product) {
            ari = json_string_value(json_object_get(product, "id"));
            if (ari != NULL) {
                json_object_set(out, ari, product);
            }
        }

        json_decref(doc);
    }

    freeReplyObject(r);

    if (out == NULL) {
        ngx_umlo_act_fail(a, "write", "out of memory");
    }

    return out;
}


/*
 * Gives a stored user the later of its and the refresh's dates, per
 * product instance; a product used but not held gets an entry without
 * roles, as a full sync makes.  Returns 1 when the user changed.
 */

static int
ngx_umlo_act_merge(ngx_umlo_act_t *a, json_t *user, json_t *sites)
{
    int          changed;
    size_t       i;
    json_t      *seen, *products, *entry, *done, *product, *list;
    const char  *id, *ari, *ts, *cur, *last, *added, *site;

    id = json_string_value(json_object_get(user, "id"));
    if (id == NULL) {
        return 0;
    }

    changed = 0;

    added = json_string_value(json_object_get(a->added, id));
    if (added != NULL && !json_is_string(json_object_get(user,
                                                          "added_to_org")))
    {
        json_object_set_new(user, "added_to_org", json_string(added));
        changed = 1;
    }

    seen = json_object_get(a->act, id);
    if (json_object_size(seen) == 0) {
        return changed;
    }

    products = json_object_get(user, "products");
    if (!json_is_array(products)) {
        products = json_array();
        json_object_set_new(user, "products", products);
    }

    done = json_object();

    json_array_foreach(products, i, entry) {
        ari = json_string_value(json_object_get(entry, "resource_id"));
        ts = json_string_value(json_object_get(seen, ari));

        if (ari == NULL || ts == NULL) {
            continue;
        }

        json_object_set_new(done, ari, json_true());
        cur = json_string_value(json_object_get(entry, "last_active"));

        if (cur == NULL || ngx_umlo_act_cmp(ts, cur) > 0) {
            json_object_set_new(entry, "last_active", json_string(ts));
            changed = 1;
        }
    }

    json_object_foreach(seen, ari, product) {
        if (json_object_get(done, ari) != NULL) {
            continue;
        }

        product = json_object_get(sites, ari);
        site = json_string_value(json_object_get(product, "site"));

        entry = json_pack("{s:s,s:s,s:O,s:[],s:b,s:[],s:O}",
                          "resource_id", ari,
                          "site", site ? site : "unknown",
                          "product", product
                                     ? json_object_get(product, "product")
                                     : json_null(),
                          "roles",
                          "billable", 0,
                          "via_groups",
                          "last_active", json_object_get(seen, ari));
        if (entry == NULL) {
            continue;
        }

        json_array_append_new(products, entry);
        changed = 1;

        list = json_object_get(user, "sites");
        if (site != NULL && json_is_array(list)) {
            int     have;
            json_t  *v;

            have = 0;
            json_array_foreach(list, i, v) {
                if (json_is_string(v)
                    && strcmp(json_string_value(v), site) == 0)
                {
                    have = 1;
                    break;
                }
            }

            if (!have) {
                json_array_append_new(list, json_string(site));
            }
        }
    }

    json_decref(done);

    /* the org-wide date: the latest of every product's */
    last = json_string_value(json_object_get(user, "last_active"));

    json_array_foreach(products, i, entry) {
        ts = json_string_value(json_object_get(entry, "last_active"));

        if (ts != NULL && (last == NULL || ngx_umlo_act_cmp(ts, last) > 0)) {
            last = ts;
        }
    }

    cur = json_string_value(json_object_get(user, "last_active"));

    if (last != NULL && (cur == NULL || strcmp(last, cur) != 0)) {
        json_object_set_new(user, "last_active", json_string(last));
        changed = 1;
    }

    return changed;
}


static void
ngx_umlo_act_later(json_t *obj, const char *key, const char *ts)
{
    const char  *cur;

    cur = json_string_value(json_object_get(obj, key));

    if (cur == NULL || ngx_umlo_act_cmp(ts, cur) > 0) {
        json_object_set_new(obj, key, json_string(ts));
    }
}


/*
 * Compares two ISO 8601 UTC timestamps as instants: v2 gives fractions
 * of a second ("...:41.740Z"), v1 none ("...:41Z"), which as strings
 * would sort the coarser one later.
 */

static int
ngx_umlo_act_cmp(const char *a, const char *b)
{
    int   rc, i;
    long  fa, fb;

    rc = strncmp(a, b, 19);
    if (rc != 0 || strlen(a) < 19 || strlen(b) < 19) {
        return rc;
    }

    a += 19;
    b += 19;
    fa = fb = 0;

    /* nanoseconds: missing digits are zeros */
    for (i = 0, a += (*a == '.'); i < 9; i++) {
        fa = fa * 10 + ((*a >= '0' && *a <= '9') ? *a++ - '0' : 0);
    }

    for (i = 0, b += (*b == '.'); i < 9; i++) {
        fb = fb * 10 + ((*b >= '0' && *b <= '9') ? *b++ - '0' : 0);
    }

    return (fa > fb) - (fa < fb);
}


static ngx_umlo_api_t *
ngx_umlo_act_client(ngx_umlo_act_t *a, unsigned retries)
{
    char                  err[NGX_UMLO_API_ERRLEN];
    ngx_umlo_job_t       *job;
    ngx_umlo_api_t       *api;
    ngx_umlo_api_conf_t   conf;

    job = a->job;

    memset(&conf, 0, sizeof(conf));
    conf.base_url = job->api_base;
    conf.api_key = job->api_key;
    conf.max_concurrency = job->concurrency;
    conf.timeout_ms = job->timeout_ms;
    conf.connect_timeout_ms = 10000;
    conf.max_retries = retries;
    conf.backoff_ms = 500;
    conf.backoff_max_ms = 30000;
    conf.max_response = NGX_UMLO_ACT_MAX_BODY;
    conf.cancel = &job->cancel;
    conf.tick = ngx_umlo_act_tick;
    conf.tick_data = a;
    conf.tick_ms = NGX_UMLO_ACT_TICK_MS;

    api = ngx_umlo_api_create(&conf, err, sizeof(err));
    if (api == NULL) {
        ngx_umlo_act_fail(a, "start", "%s", err);
        return NULL;
    }

    /* the last run's rate-limit estimate: no single-request probe first */
    ngx_umlo_pace_load(&job->store, api);

    return api;
}


/* a client's numbers join the run's, then it goes */

static void
ngx_umlo_act_client_done(ngx_umlo_act_t *a)
{
    ngx_umlo_job_t        *job;
    ngx_umlo_api_stats_t   st;

    job = a->job;

    if (job->api == NULL) {
        return;
    }

    ngx_umlo_api_stats(job->api, &st);
    ngx_umlo_pace_save(&job->store, job->api);
    a->calls += st.sent;
    a->retries += st.retries;
    a->http_429 += st.http_429;
    a->errors += st.failed;

    ngx_umlo_api_destroy(job->api);
    job->api = NULL;
}


/* the lease, a DELETE from any instance, shutdown, progress */

static void
ngx_umlo_act_tick(void *data)
{
    ngx_umlo_act_t  *a = data;

    int              rc;
    long long        now;
    ngx_umlo_job_t  *job;

    job = a->job;
    now = ngx_umlo_clock_ms();

    if (ngx_quit || ngx_terminate || ngx_exiting) {
        job->cancel = 1;
        return;
    }

    if (job->error[0] != '\0') {
        return;
    }

    if (now - job->renewed_ms >= job->lease_ms / 3) {
        rc = ngx_umlo_store_renew(&job->store, job->token, job->lease_ms);

        if (rc != 1) {
            ngx_umlo_act_fail(a, "lock", "%s", rc == 0
                              ? "the org lock was lost (lease expired: "
                                "Redis slow or unreachable?)"
                              : job->store.error);
            if (job->api != NULL) {
                ngx_umlo_api_abort(job->api, "%s", job->error);
            }

            return;
        }

        job->renewed_ms = now;
    }

    if (now - job->reported_ms >= NGX_UMLO_ACT_REPORT_MS) {
        if (ngx_umlo_store_cancelled(&job->store, job->token) == 1) {
            job->cancel_seen = 1;
            job->cancel = 1;
            return;
        }

        ngx_umlo_act_report(a);
    }
}


static void
ngx_umlo_act_report(ngx_umlo_act_t *a)
{
    ngx_umlo_job_t  *job;

    job = a->job;
    job->reported_ms = ngx_umlo_clock_ms();

    json_object_set_new(job->doc, "state", json_string("running"));
    json_object_set_new(job->doc, "phase", json_string(a->phase));
    json_object_set_new(job->doc, "progress",
                        json_pack("{s:I,s:n,s:i,s:n,s:{s:I,s:I}}",
                                  "done", (json_int_t) a->users_read,
                                  "expected",
                                  "percent", 0,
                                  "eta_seconds",
                                  "lookups",
                                  "needed", (json_int_t) a->needed,
                                  "done", (json_int_t) a->lookups));

    /* progress is best effort: a failed write shows at the next step */
    (void) ngx_umlo_store_set_status(&job->store, job->token, job->doc);
}


static void
ngx_umlo_act_finish(ngx_umlo_act_t *a, const char *state)
{
    json_t          *summary;
    long long        now;
    ngx_umlo_job_t  *job;

    job = a->job;
    now = ngx_umlo_clock_ms();
    job->state = state;

    ngx_umlo_act_client_done(a);

    json_object_set_new(job->doc, "api",
                        json_pack("{s:I,s:I,s:I,s:I}",
                                  "calls", (json_int_t) a->calls,
                                  "retries", (json_int_t) a->retries,
                                  "rate_limited", (json_int_t) a->http_429,
                                  "errors", (json_int_t) a->errors));
    json_object_set_new(job->doc, "counts",
                        json_pack("{s:I,s:I,s:I,s:I}",
                                  "users", (json_int_t) a->users_read,
                                  "lookups_needed", (json_int_t) a->needed,
                                  "lookups", (json_int_t) a->lookups,
                                  "changed", (json_int_t) a->changed));
    json_object_set_new(job->doc, "state", json_string(state));
    json_object_set_new(job->doc, "phase", json_null());
    json_object_set_new(job->doc, "finished_at", json_integer(now / 1000));
    json_object_set_new(job->doc, "duration_ms",
                        json_integer(now - job->started_ms));

    if (strcmp(state, "succeeded") == 0) {
        json_object_set_new(job->doc, "progress",
                            json_pack("{s:I,s:I,s:i,s:i}",
                                      "done", (json_int_t) a->users_read,
                                      "expected", (json_int_t) a->users_read,
                                      "percent", 100, "eta_seconds", 0));
    } else {
        json_object_set_new(job->doc, "error",
                            json_pack("{s:s,s:s}", "where", job->where,
                                      "message", job->error));
    }

    job->users_done = a->users_read;

    json_decref(a->act);
    json_decref(a->added);
    json_decref(a->queue);
    a->act = a->added = a->queue = NULL;

    summary = json_pack("{s:s,s:s,s:s,s:s,s:O,s:O,s:O,s:O,s:O}",
                        "id", job->id, "trigger", job->trigger,
                        "kind", job->kind, "state", state,
                        "started_at", json_object_get(job->doc, "started_at"),
                        "finished_at",
                        json_object_get(job->doc, "finished_at"),
                        "duration_ms",
                        json_object_get(job->doc, "duration_ms"),
                        "counts", json_object_get(job->doc, "counts"),
                        "api", json_object_get(job->doc, "api"));

    if (summary != NULL && json_object_get(job->doc, "error") != NULL) {
        json_object_set(summary, "error", json_object_get(job->doc, "error"));
    }

    /* the lock goes last: no new sync may start before the record is in */
    if ((summary != NULL
         && ngx_umlo_store_history(&job->store, summary, job->history) != 0)
        || ngx_umlo_store_release(&job->store, job->token, job->doc) < 0)
    {
        job->store_failed = 1;
    }

    json_decref(summary);
    ngx_umlo_store_close(&job->store);
}


static void
ngx_umlo_act_fail(ngx_umlo_act_t *a, const char *where, const char *fmt,
    ...)
{
    va_list          args;
    ngx_umlo_job_t  *job;

    job = a->job;

    /* the first failure only: later ones are its consequences */
    if (job->error[0] != '\0') {
        return;
    }

    snprintf(job->where, sizeof(job->where), "%s", where);

    va_start(args, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, args);
    va_end(args);
}


