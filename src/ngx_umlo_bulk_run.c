/*
 * Copyright (C) ngx_umlo authors
 *
 * Bulk jobs in pool threads.  The plan reads the current snapshot's user
 * documents and decides, per user, what to call or why not; the run takes
 * the users one after another: re-read from Atlassian, skip anyone whose
 * state changed since the snapshot, call, re-read, and write the user into
 * the current generation.  Nothing here touches nginx memory or logs.
 */


#include "ngx_umlo_bulk.h"
#include "ngx_umlo_keys.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/time.h>


#define NGX_UMLO_BULK_MAX_RESPONSE  (4 * 1024 * 1024)


typedef struct {
    long         status;
    json_t      *json;
    char         error[NGX_UMLO_API_ERRLEN];
} ngx_umlo_bulk_call_t;


static const char  ngx_umlo_bulk_release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then"
    " return redis.call('DEL', KEYS[1]) end return 0";

/* one snapshot user, written only while the generation is still current */
static const char  ngx_umlo_bulk_update_lua[] =
    "if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return 0 end"
    " if ARGV[3] == '' then redis.call('HDEL', KEYS[2], ARGV[2])"
    " else redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end"
    " redis.call('HINCRBY', KEYS[1], 'rev', 1) return 1";


static int ngx_umlo_bulk_plan_do(ngx_umlo_bulk_job_t *job);
static int ngx_umlo_bulk_current(ngx_umlo_bulk_job_t *job, json_t **summary);
static int ngx_umlo_bulk_load(ngx_umlo_bulk_job_t *job);
static int ngx_umlo_bulk_known(ngx_umlo_bulk_job_t *job);
static int ngx_umlo_bulk_users(ngx_umlo_bulk_job_t *job);
static json_t *ngx_umlo_bulk_items(ngx_umlo_bulk_job_t *job);
static json_t *ngx_umlo_bulk_item(ngx_umlo_bulk_job_t *job, json_t *user,
    const char *id, json_t *protected);
static void ngx_umlo_bulk_decide(ngx_umlo_bulk_job_t *job, json_t *user,
    json_t *item);
static void ngx_umlo_bulk_product(ngx_umlo_bulk_job_t *job, json_t *user,
    json_t *item);
static json_t *ngx_umlo_bulk_group(ngx_umlo_bulk_job_t *job,
    const char *ref);
static void ngx_umlo_bulk_step(ngx_umlo_bulk_job_t *job, json_t *item,
    const char *method, json_t *body, const char *what, const char *fmt,
    ...);
static void ngx_umlo_bulk_outcome(json_t *item, const char *outcome,
    const char *fmt, ...);
static json_t *ngx_umlo_bulk_counts(json_t *items);
static int ngx_umlo_bulk_save(ngx_umlo_bulk_job_t *job);
static int ngx_umlo_bulk_audit(ngx_umlo_bulk_job_t *job);
static int ngx_umlo_bulk_user(ngx_umlo_bulk_job_t *job, json_t *item);
static json_t *ngx_umlo_bulk_reread(ngx_umlo_bulk_job_t *job,
    const char *id, char *err, size_t len);
static int ngx_umlo_bulk_changed(json_t *old, json_t *now, char *why,
    size_t len);
static int ngx_umlo_bulk_call(ngx_umlo_bulk_job_t *job, const char *method,
    const char *path, json_t *body, ngx_umlo_bulk_call_t *call);
static void ngx_umlo_bulk_done(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req);
static void ngx_umlo_bulk_tick(void *data);
static void ngx_umlo_bulk_fail(ngx_umlo_bulk_job_t *job, ngx_uint_t status,
    const char *code, const char *fmt, ...);
static int ngx_umlo_bulk_in(json_t *list, const char *field,
    const char *value);
static const char *ngx_umlo_bulk_str(json_t *obj, const char *key);
static long long ngx_umlo_bulk_now(void);
static void ngx_umlo_bulk_iso(char *buf, size_t size, long long ms);
static int ngx_umlo_bulk_random(char *hex, size_t bytes);


/* ------------------------------------------------------------------ plan */

void
ngx_umlo_bulk_plan(ngx_umlo_bulk_job_t *job)
{
    if (ngx_umlo_store_open(&job->store, &job->redis, job->org) != 0) {
        ngx_umlo_bulk_fail(job, 503, "redis_unavailable", "%s",
                           job->store.error);
        return;
    }

    if (ngx_umlo_model_init(&job->model) != 0) {
        ngx_umlo_bulk_fail(job, 500, "internal_error", "out of memory");

    } else if (ngx_umlo_bulk_plan_do(job) != 0 && job->status == 0) {
        ngx_umlo_bulk_fail(job, 503, "redis_unavailable", "%s",
                           job->store.error);
    }

    ngx_umlo_store_close(&job->store);
}


static int
ngx_umlo_bulk_plan_do(ngx_umlo_bulk_job_t *job)
{
    int          locked;
    char         asof[32], expires[32], token[33], *text;
    json_t      *summary, *saved, *items, *target;
    long long    age, now, t;
    redisReply  *r;
    const char  *s;

    now = ngx_umlo_bulk_now();

    if (ngx_umlo_bulk_current(job, &summary) != 0) {
        return -1;
    }

    s = ngx_umlo_bulk_str(summary, "data_as_of");
    age = -1;

    if (s != NULL) {
        struct tm  tm;

        memset(&tm, 0, sizeof(tm));
        if (strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) != NULL) {
            t = (long long) timegm(&tm);
            age = now / 1000 - t;
            if (age < 0) {
                age = 0;
            }
        }
    }

    snprintf(asof, sizeof(asof), "%s", s ? s : "");
    json_decref(summary);

    saved = NULL;

    if (job->token_in != NULL) {
        r = ngx_umlo_store_command(&job->store, "GET " NGX_UMLO_KEY_BULK_TOKEN,
                                   job->org, job->token_in);
        if (r == NULL) {
            return -1;
        }

        if (r->type == REDIS_REPLY_STRING) {
            saved = json_loadb(r->str, r->len, 0, NULL);
        }

        freeReplyObject(r);

        if (saved == NULL) {
            ngx_umlo_bulk_fail(job, 404, "unknown_token", "no dry run has "
                               "this token, or it expired or was used "
                               "(umlo_bulk_token_ttl): make a new dry run");
            return -1;
        }

        if (json_integer_value(json_object_get(saved, "generation"))
            != job->gen
            || json_integer_value(json_object_get(saved, "revision"))
               != job->rev)
        {
            json_decref(saved);
            ngx_umlo_bulk_fail(job, 409, "plan_outdated", "the data changed "
                               "since the dry run (a sync or another bulk "
                               "job ran): make a new dry run");
            return -1;
        }

        json_decref(job->request);
        job->request = json_incref(json_object_get(saved, "request"));
        json_decref(job->ids);
        job->ids = json_incref(json_object_get(saved, "ids"));
        job->force = json_is_true(json_object_get(saved, "force"));
        job->dry_run = 0;
    }

    /* a task re-read its users first: their data is fresh */
    if (!job->presynced && (age < 0 || (age > job->max_age_s && !job->force)))
    {
        json_decref(saved);
        ngx_umlo_bulk_fail(job, 409, "stale_data", age < 0
                           ? "the snapshot does not say how old it is; run "
                             "a full sync first"
                           : "the data is %lld s old, more than "
                             "umlo_bulk_max_data_age (%lld s): sync first, "
                             "or send \"force\": true", age, job->max_age_s);
        return -1;
    }

    if (json_array_size(job->ids) > job->max_users) {
        json_decref(saved);
        ngx_umlo_bulk_fail(job, 422, "too_many_users", "the job targets %zu "
                           "users, more than umlo_bulk_max_users (%u): "
                           "narrow it down", json_array_size(job->ids),
                           job->max_users);
        return -1;
    }

    if (ngx_umlo_bulk_load(job) != 0 || ngx_umlo_bulk_known(job) != 0
        || ngx_umlo_bulk_users(job) != 0)
    {
        json_decref(saved);
        return -1;
    }

    items = ngx_umlo_bulk_items(job);
    if (items == NULL) {
        json_decref(saved);
        return -1;
    }

    if (saved != NULL) {
        if (!json_equal(items, json_object_get(saved, "users"))) {
            json_decref(saved);
            json_decref(items);
            ngx_umlo_bulk_fail(job, 409, "plan_changed", "the plan is no "
                               "longer the one the dry run showed: make a "
                               "new dry run");
            return -1;
        }
    }

    target = json_object_get(job->request, "target");

    job->doc = json_pack("{s:s,s:O,s:O,s:O,s:b,s:b,s:s,s:s,s:s,"
                         "s:{s:I,s:I,s:s,s:I,s:b,s:I},s:o,s:o,s:n}",
                         "id", job->id,
                         "action", json_object_get(job->request, "action"),
                         "params", json_object_get(job->request, "params"),
                         "target", target,
                         "dry_run", (int) job->dry_run,
                         "force", (int) job->force,
                         "state", job->dry_run ? "planned" : "queued",
                         "requested_by", job->actor,
                         "requested_at", "",
                         "data", "generation", (json_int_t) job->gen,
                         "revision", (json_int_t) job->rev,
                         "data_as_of", asof,
                         "age_seconds", (json_int_t) age,
                         "presynced", (int) job->presynced,
                         "max_age_seconds", (json_int_t) job->max_age_s,
                         "counts", ngx_umlo_bulk_counts(items),
                         "users", items,
                         "error");
    if (job->doc == NULL) {
        json_decref(saved);
        ngx_umlo_bulk_fail(job, 500, "internal_error", "out of memory");
        return -1;
    }

    ngx_umlo_bulk_iso(expires, sizeof(expires), now);
    json_object_set_new(job->doc, "requested_at", json_string(expires));

    if (saved != NULL) {
        json_object_set(job->doc, "dry_run_id", json_object_get(saved, "id"));
        json_decref(saved);
    }

    if (job->dry_run) {
        if (ngx_umlo_bulk_random(token, 16) != 0) {
            ngx_umlo_bulk_fail(job, 500, "internal_error", "no randomness");
            return -1;
        }

        saved = json_pack("{s:s,s:O,s:O,s:I,s:I,s:b,s:O}",
                          "id", job->id, "request", job->request,
                          "ids", job->ids, "generation", (json_int_t) job->gen,
                          "revision", (json_int_t) job->rev,
                          "force", (int) job->force, "users", items);
        text = saved ? json_dumps(saved, JSON_COMPACT) : NULL;
        json_decref(saved);

        if (text == NULL) {
            ngx_umlo_bulk_fail(job, 500, "internal_error", "out of memory");
            return -1;
        }

        r = ngx_umlo_store_command(&job->store, "SET "
                                   NGX_UMLO_KEY_BULK_TOKEN " %s PX %u",
                                   job->org, token, text, job->token_ttl_ms);
        free(text);

        if (r == NULL) {
            return -1;
        }

        freeReplyObject(r);

        ngx_umlo_bulk_iso(expires, sizeof(expires), now + job->token_ttl_ms);
        json_object_set_new(job->doc, "token", json_string(token));
        json_object_set_new(job->doc, "token_expires_at",
                            json_string(expires));

        if (ngx_umlo_bulk_save(job) != 0 || ngx_umlo_bulk_audit(job) != 0) {
            return -1;
        }

        job->status = 200;
        return 0;
    }

    if (job->run_of != NULL) {
        json_object_set_new(job->doc, "task",
                            json_pack("{s:O?,s:O?}",
                                      "id", json_object_get(job->run_of, "id"),
                                      "name", json_object_get(job->run_of,
                                                              "name")));
    }

    /* a job holds the org lock: no sync swaps data under it */
    locked = job->locked;

    if (!locked) {
        r = ngx_umlo_store_command(&job->store, "SET " NGX_UMLO_KEY_LOCK
                                   " %s NX PX %u", job->org, job->lock,
                                   job->lease_ms);
        if (r == NULL) {
            return -1;
        }

        locked = (r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }

    if (!locked) {
        ngx_umlo_bulk_fail(job, 409, "org_busy", "a sync or another bulk "
                           "job of this organization is running; try again "
                           "when it has finished");
        return -1;
    }

    job->renewed_ms = now;

    if (job->token_in != NULL) {
        /* a token runs once, even when two requests race for it */
        r = ngx_umlo_store_command(&job->store, "DEL "
                                   NGX_UMLO_KEY_BULK_TOKEN, job->org,
                                   job->token_in);
        if (r == NULL || r->integer != 1) {
            if (r != NULL) {
                freeReplyObject(r);
            }

            r = ngx_umlo_store_command(&job->store, "EVAL %s 1 "
                                       NGX_UMLO_KEY_LOCK " %s",
                                       ngx_umlo_bulk_release_lua, job->org,
                                       job->lock);
            if (r != NULL) {
                freeReplyObject(r);
            }

            ngx_umlo_bulk_fail(job, 404, "unknown_token", "this dry run's "
                               "token was used by another request");
            return -1;
        }

        freeReplyObject(r);
    }

    if (ngx_umlo_bulk_save(job) != 0) {
        return -1;
    }

    job->execute = 1;
    job->status = 202;

    return 0;
}


static int
ngx_umlo_bulk_current(ngx_umlo_bulk_job_t *job, json_t **summary)
{
    redisReply  *r, *e;

    r = ngx_umlo_store_command(&job->store, "HMGET " NGX_UMLO_KEY_CURRENT
                               " gen json rev", job->org);
    if (r == NULL) {
        return -1;
    }

    e = (r->type == REDIS_REPLY_ARRAY && r->elements == 3) ? r->element[0]
                                                            : NULL;

    if (e == NULL || e->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        ngx_umlo_bulk_fail(job, 404, "no_snapshot", "no full sync has "
                           "completed yet: run one first");
        return -1;
    }

    job->gen = strtoll(e->str, NULL, 10);
    e = r->element[2];
    job->rev = (e->type == REDIS_REPLY_STRING) ? strtoll(e->str, NULL, 10)
                                               : 0;
    e = r->element[1];
    *summary = (e->type == REDIS_REPLY_STRING)
               ? json_loadb(e->str, e->len, 0, NULL) : NULL;

    freeReplyObject(r);

    return 0;
}


/* the generation's groups and product instances, for model_user() */

static int
ngx_umlo_bulk_load(ngx_umlo_bulk_job_t *job)
{
    size_t       i, k;
    json_t      *doc, *product;
    redisReply  *r;

    r = ngx_umlo_store_command(&job->store, "HVALS " NGX_UMLO_KEY_GEN_GROUPS,
                               job->org, job->gen);
    if (r == NULL) {
        return -1;
    }

    for (i = 0; i < r->elements; i++) {
        doc = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
        if (doc != NULL) {
            json_object_set_new(job->model.groups,
                                ngx_umlo_bulk_str(doc, "id"), doc);
        }
    }

    freeReplyObject(r);

    r = ngx_umlo_store_command(&job->store, "HVALS " NGX_UMLO_KEY_GEN_SITES,
                               job->org, job->gen);
    if (r == NULL) {
        return -1;
    }

    for (i = 0; i < r->elements; i++) {
        doc = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);

        json_array_foreach(json_object_get(doc, "products"), k, product) {
            if (ngx_umlo_bulk_str(product, "id") != NULL) {
                json_object_set(job->model.products,
                                ngx_umlo_bulk_str(product, "id"), product);
            }
        }

        json_decref(doc);
    }

    freeReplyObject(r);

    return 0;
}


/* the group, or the product on the site, the action names exists */

static int
ngx_umlo_bulk_known(ngx_umlo_bulk_job_t *job)
{
    json_t      *params, *product;
    const char  *ref, *site, *key, *ari;

    params = json_object_get(job->request, "params");
    ref = ngx_umlo_bulk_str(params, "group");

    if (ref != NULL && ngx_umlo_bulk_group(job, ref) == NULL) {
        ngx_umlo_bulk_fail(job, 422, "unknown_group", "the snapshot has no "
                           "group with the id or name \"%s\"", ref);
        return -1;
    }

    site = ngx_umlo_bulk_str(params, "site");
    key = ngx_umlo_bulk_str(params, "product");

    if (site == NULL || key == NULL) {
        return 0;
    }

    json_object_foreach(job->model.products, ari, product) {
        if (ngx_umlo_bulk_str(product, "site") != NULL
            && ngx_umlo_bulk_str(product, "product") != NULL
            && strcmp(ngx_umlo_bulk_str(product, "site"), site) == 0
            && strcmp(ngx_umlo_bulk_str(product, "product"), key) == 0)
        {
            return 0;
        }
    }

    ngx_umlo_bulk_fail(job, 422, "unknown_product", "the snapshot has no "
                       "product \"%s\" on the site \"%s\"", key, site);
    return -1;
}


static int
ngx_umlo_bulk_users(ngx_umlo_bulk_job_t *job)
{
    size_t        i, n;
    json_t       *doc, *id;
    redisReply   *r;
    const char  **argv;
    size_t       *lens;
    char          key[256];

    n = json_array_size(job->ids);

    job->docs = json_object();
    if (job->docs == NULL) {
        return -1;
    }

    if (n == 0) {
        return 0;
    }

    argv = malloc((n + 2) * sizeof(char *));
    lens = malloc((n + 2) * sizeof(size_t));

    if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        ngx_umlo_bulk_fail(job, 500, "internal_error", "out of memory");
        return -1;
    }

    snprintf(key, sizeof(key), NGX_UMLO_KEY_GEN_USERS, job->org, job->gen);

    argv[0] = "HMGET";
    argv[1] = key;

    json_array_foreach(job->ids, i, id) {
        argv[i + 2] = json_string_value(id);
    }

    for (i = 0; i < n + 2; i++) {
        lens[i] = strlen(argv[i]);
    }

    if (ngx_umlo_store_flush(&job->store) != 0) {
        free(argv);
        free(lens);
        return -1;
    }

    r = redisCommandArgv(job->store.c, (int) n + 2, argv, lens);
    free(argv);
    free(lens);

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        snprintf(job->store.error, sizeof(job->store.error), "Redis: HMGET "
                 "of the users failed");
        if (r != NULL) {
            freeReplyObject(r);
        }

        return -1;
    }

    for (i = 0; i < n; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING) {
            continue;
        }

        doc = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
        if (doc != NULL) {
            json_object_set_new(job->docs,
                                json_string_value(json_array_get(job->ids, i)),
                                doc);
        }
    }

    freeReplyObject(r);

    return 0;
}


static json_t *
ngx_umlo_bulk_items(ngx_umlo_bulk_job_t *job)
{
    size_t       i, k;
    json_t      *items, *item, *protected, *id, *ref, *g;
    const char  *gid;

    /* the protected groups, by id, whatever the directive named them by */
    protected = json_array();

    json_array_foreach(job->protected, k, ref) {
        g = ngx_umlo_bulk_group(job, json_string_value(ref));
        gid = g ? ngx_umlo_bulk_str(g, "id") : json_string_value(ref);
        json_array_append_new(protected, json_string(gid));
    }

    items = json_array();

    json_array_foreach(job->ids, i, id) {
        item = ngx_umlo_bulk_item(job, json_object_get(job->docs,
                                                       json_string_value(id)),
                                  json_string_value(id), protected);
        if (item == NULL || json_array_append_new(items, item) != 0) {
            json_decref(items);
            json_decref(protected);
            ngx_umlo_bulk_fail(job, 500, "internal_error", "out of memory");
            return NULL;
        }
    }

    json_decref(protected);

    return items;
}


static json_t *
ngx_umlo_bulk_item(ngx_umlo_bulk_job_t *job, json_t *user, const char *id,
    json_t *protected)
{
    size_t   i;
    json_t  *item, *pg;

    item = json_pack("{s:s,s:O?,s:O?,s:O?,s:O?,s:O?,s:s,s:n,s:[]}",
                     "id", id,
                     "name", json_object_get(user, "name"),
                     "email", json_object_get(user, "email"),
                     "claim_status", json_object_get(user, "claim_status"),
                     "account_status", json_object_get(user,
                                                       "account_status"),
                     "membership_status",
                     json_object_get(user, "membership_status"),
                     "outcome", "planned",
                     "reason",
                     "steps");
    if (item == NULL) {
        return NULL;
    }

    if (user == NULL) {
        ngx_umlo_bulk_outcome(item, "unknown", "not in the snapshot: no such "
                              "user, or not synced yet");
        return item;
    }

    /* protections that no request can switch off */
    if (ngx_umlo_bulk_in(json_object_get(user, "platform_roles"), NULL,
                         "atlassian/org-admin"))
    {
        ngx_umlo_bulk_outcome(item, "protected", "organization admins are "
                              "never changed by bulk jobs");
        return item;
    }

    json_array_foreach(protected, i, pg) {
        if (ngx_umlo_bulk_in(json_object_get(user, "groups"), "id",
                             json_string_value(pg)))
        {
            ngx_umlo_bulk_outcome(item, "protected", "member of the "
                                  "protected group %s "
                                  "(umlo_bulk_protected_group)",
                                  json_string_value(pg));
            return item;
        }
    }

    ngx_umlo_bulk_decide(job, user, item);

    return item;
}


static void
ngx_umlo_bulk_decide(ngx_umlo_bulk_job_t *job, json_t *user, json_t *item)
{
    json_t      *params, *group;
    const char  *action, *id, *account, *membership, *claim, *gid, *gname;

    action = ngx_umlo_bulk_str(job->request, "action");
    params = json_object_get(job->request, "params");
    id = ngx_umlo_bulk_str(user, "id");
    account = ngx_umlo_bulk_str(user, "account_status");
    membership = ngx_umlo_bulk_str(user, "membership_status");
    claim = ngx_umlo_bulk_str(user, "claim_status");

    account = account ? account : "";
    membership = membership ? membership : "";
    claim = claim ? claim : "";

    if (strcmp(action, "suspend") == 0 || strcmp(action, "restore") == 0) {
        if ((action[0] == 's') == (strcmp(membership, "suspended") == 0)) {
            ngx_umlo_bulk_outcome(item, "no_change", action[0] == 's'
                                  ? "already suspended" : "not suspended");
            return;
        }

        ngx_umlo_bulk_step(job, item, "POST", NULL, action,
                           "/admin/v2/orgs/%s/directories/-/users/%s/%s",
                           job->org, id, action);
        return;
    }

    if (strcmp(action, "deactivate") == 0
        || strcmp(action, "reactivate") == 0)
    {
        if (strcmp(claim, "managed") != 0) {
            ngx_umlo_bulk_outcome(item, "refused", "the account is not "
                                  "managed by the organization: Atlassian "
                                  "only lets the org suspend or restore it, "
                                  "not %s it", action);
            return;
        }

        if (strcmp(account, "closed") == 0) {
            ngx_umlo_bulk_outcome(item, "refused", "the account is closed");
            return;
        }

        if ((action[0] == 'd') == (strcmp(account, "inactive") == 0)) {
            ngx_umlo_bulk_outcome(item, "no_change", action[0] == 'd'
                                  ? "already deactivated" : "not deactivated");
            return;
        }

        ngx_umlo_bulk_step(job, item, "POST",
                           action[0] == 'd' ? json_object() : NULL, action,
                           "/users/%s/manage/lifecycle/%s", id,
                           action[0] == 'd' ? "disable" : "enable");
        return;
    }

    if (strcmp(action, "remove_product") == 0) {
        ngx_umlo_bulk_product(job, user, item);
        return;
    }

    /* add_to_group, remove_from_group: the group exists (checked first) */
    group = ngx_umlo_bulk_group(job, ngx_umlo_bulk_str(params, "group"));
    gid = ngx_umlo_bulk_str(group, "id");
    gname = ngx_umlo_bulk_str(group, "name");
    gname = gname ? gname : gid;

    if (json_is_true(json_object_get(group, "external_synced"))) {
        ngx_umlo_bulk_outcome(item, "refused", "the group %s is synced from "
                              "an identity provider: change it there", gname);
        return;
    }

    if (strcmp(action, "add_to_group") == 0) {
        if (ngx_umlo_bulk_in(json_object_get(user, "groups"), "id", gid)) {
            ngx_umlo_bulk_outcome(item, "no_change", "already in %s", gname);
            return;
        }

        ngx_umlo_bulk_step(job, item, "POST",
                           json_pack("{s:s}", "accountId", id),
                           "add to group",
                           "/admin/v2/orgs/%s/directories/-/groups/%s/"
                           "memberships", job->org, gid);
        return;
    }

    if (!ngx_umlo_bulk_in(json_object_get(user, "groups"), "id", gid)) {
        ngx_umlo_bulk_outcome(item, "no_change", "not in %s", gname);
        return;
    }

    ngx_umlo_bulk_step(job, item, "DELETE", NULL, "remove from group",
                       "/admin/v2/orgs/%s/directories/-/groups/%s/"
                       "memberships/%s", job->org, gid, id);
}


/*
 * Product access comes from groups: removing it means leaving every group
 * that grants a role on that product instance.  Whatever else those
 * groups alone grant the user is lost too, and the plan says so.  A role
 * held directly has no revoke call in the admin API: refused, with why.
 */

static void
ngx_umlo_bulk_product(ngx_umlo_bulk_job_t *job, json_t *user, json_t *item)
{
    int          held, direct;
    size_t       i, j;
    json_t      *params, *entry, *via, *leave, *lost, *g;
    const char  *site, *key, *gid;

    params = json_object_get(job->request, "params");
    site = ngx_umlo_bulk_str(params, "site");
    key = ngx_umlo_bulk_str(params, "product");

    leave = json_array();
    held = 0;
    direct = 0;

    json_array_foreach(json_object_get(user, "products"), i, entry) {
        if (ngx_umlo_bulk_str(entry, "site") == NULL
            || strcmp(ngx_umlo_bulk_str(entry, "site"), site) != 0
            || ngx_umlo_bulk_str(entry, "product") == NULL
            || strcmp(ngx_umlo_bulk_str(entry, "product"), key) != 0)
        {
            continue;
        }

        if (json_array_size(json_object_get(entry, "roles")) == 0) {
            continue;
        }

        held = 1;
        via = json_object_get(entry, "via_groups");

        if (json_array_size(via) == 0) {
            direct = 1;
        }

        json_array_foreach(via, j, g) {
            if (!ngx_umlo_bulk_in(leave, NULL, json_string_value(g))) {
                json_array_append(leave, g);
            }
        }
    }

    if (!held) {
        json_decref(leave);
        ngx_umlo_bulk_outcome(item, "no_change", "no role on %s on %s", key,
                              site);
        return;
    }

    if (direct) {
        json_decref(leave);
        ngx_umlo_bulk_outcome(item, "refused", "the role on %s on %s is "
                              "held directly, not through a group, and the "
                              "admin API has no call to revoke it", key,
                              site);
        return;
    }

    json_array_foreach(leave, i, g) {
        gid = json_string_value(g);

        if (json_is_true(json_object_get(json_object_get(job->model.groups,
                                                         gid),
                                         "external_synced")))
        {
            json_array_clear(json_object_get(item, "steps"));
            json_decref(leave);
            ngx_umlo_bulk_outcome(item, "refused", "the access comes from "
                                  "the group %s, synced from an identity "
                                  "provider: change it there", gid);
            return;
        }

        ngx_umlo_bulk_step(job, item, "DELETE", NULL, "remove from group",
                           "/admin/v2/orgs/%s/directories/-/groups/%s/"
                           "memberships/%s", job->org, gid,
                           ngx_umlo_bulk_str(user, "id"));
    }

    /* other products the user reaches only through the groups left */
    lost = json_array();

    json_array_foreach(json_object_get(user, "products"), i, entry) {
        via = json_object_get(entry, "via_groups");

        if (json_array_size(via) == 0
            || (ngx_umlo_bulk_str(entry, "site") != NULL
                && ngx_umlo_bulk_str(entry, "product") != NULL
                && strcmp(ngx_umlo_bulk_str(entry, "site"), site) == 0
                && strcmp(ngx_umlo_bulk_str(entry, "product"), key) == 0))
        {
            continue;
        }

        held = 1;

        json_array_foreach(via, j, g) {
            if (!ngx_umlo_bulk_in(leave, NULL, json_string_value(g))) {
                held = 0;
            }
        }

        if (held) {
            json_array_append_new(lost, json_pack("{s:O?,s:O?}",
                                  "site", json_object_get(entry, "site"),
                                  "product", json_object_get(entry,
                                                             "product")));
        }
    }

    json_object_set_new(item, "also_removes", lost);
    json_decref(leave);
}


/* a group of the snapshot by id or, failing that, by name */

static json_t *
ngx_umlo_bulk_group(ngx_umlo_bulk_job_t *job, const char *ref)
{
    json_t      *g;
    const char  *id, *name;

    if (ref == NULL) {
        return NULL;
    }

    g = json_object_get(job->model.groups, ref);
    if (g != NULL) {
        return g;
    }

    json_object_foreach(job->model.groups, id, g) {
        name = ngx_umlo_bulk_str(g, "name");
        if (name != NULL && strcmp(name, ref) == 0) {
            return g;
        }
    }

    return NULL;
}


static void
ngx_umlo_bulk_step(ngx_umlo_bulk_job_t *job, json_t *item,
    const char *method, json_t *body, const char *what, const char *fmt, ...)
{
    char     path[1024];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(path, sizeof(path), fmt, args);
    va_end(args);

    json_array_append_new(json_object_get(item, "steps"),
                          json_pack("{s:s,s:s,s:o,s:s}", "method", method,
                                    "path", path,
                                    "body", body ? body : json_null(),
                                    "what", what));
}


static void
ngx_umlo_bulk_outcome(json_t *item, const char *outcome, const char *fmt,
    ...)
{
    char     reason[512];
    va_list  args;

    json_object_set_new(item, "outcome", json_string(outcome));

    if (fmt == NULL) {
        json_object_set_new(item, "reason", json_null());
        return;
    }

    va_start(args, fmt);
    vsnprintf(reason, sizeof(reason), fmt, args);
    va_end(args);

    json_object_set_new(item, "reason", json_string(reason));
}


static json_t *
ngx_umlo_bulk_counts(json_t *items)
{
    size_t       i;
    json_t      *counts, *item;
    const char  *outcome;

    counts = json_pack("{s:I,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}",
                       "targets", (json_int_t) json_array_size(items),
                       "planned", 0, "no_change", 0, "protected", 0,
                       "refused", 0, "unknown", 0, "done", 0, "failed", 0,
                       "skipped", 0, "not_run", 0);

    json_array_foreach(items, i, item) {
        outcome = ngx_umlo_bulk_str(item, "outcome");
        if (outcome != NULL && json_object_get(counts, outcome) != NULL) {
            json_object_set_new(counts, outcome, json_integer(
                json_integer_value(json_object_get(counts, outcome)) + 1));
        }
    }

    return counts;
}


static int
ngx_umlo_bulk_save(ngx_umlo_bulk_job_t *job)
{
    int          rc;
    char        *text;
    redisReply  *r;

    text = json_dumps(job->doc, JSON_COMPACT);
    if (text == NULL) {
        return -1;
    }

    r = ngx_umlo_store_command(&job->store, "SET " NGX_UMLO_KEY_BULK_JOB
                               " %s EX %u", job->org, job->id, text,
                               job->retention_s);
    free(text);

    rc = (r == NULL) ? -1 : 0;
    if (r != NULL) {
        freeReplyObject(r);
    }

    return rc;
}


/* who, when, what, dry run or not, and each user's outcome */

static int
ngx_umlo_bulk_audit(ngx_umlo_bulk_job_t *job)
{
    size_t   i;
    char    *text;
    json_t  *entry, *users, *item;

    users = json_array();

    json_array_foreach(json_object_get(job->doc, "users"), i, item) {
        json_array_append_new(users, json_pack("{s:O,s:O,s:O}",
                              "id", json_object_get(item, "id"),
                              "outcome", json_object_get(item, "outcome"),
                              "reason", json_object_get(item, "reason")));
    }

    entry = json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:o}",
                      "id", json_object_get(job->doc, "id"),
                      "at", json_object_get(job->doc, "requested_at"),
                      "who", json_object_get(job->doc, "requested_by"),
                      "action", json_object_get(job->doc, "action"),
                      "params", json_object_get(job->doc, "params"),
                      "target", json_object_get(job->doc, "target"),
                      "dry_run", json_object_get(job->doc, "dry_run"),
                      "state", json_object_get(job->doc, "state"),
                      "counts", json_object_get(job->doc, "counts"),
                      "users", users);
    if (entry == NULL) {
        return -1;
    }

    if (json_object_get(job->doc, "dry_run_id") != NULL) {
        json_object_set(entry, "dry_run_id",
                        json_object_get(job->doc, "dry_run_id"));
    }

    text = json_dumps(entry, JSON_COMPACT);
    json_decref(entry);

    if (text == NULL) {
        return -1;
    }

    (void) ngx_umlo_store_append(&job->store, "LPUSH "
                                 NGX_UMLO_KEY_BULK_AUDIT " %s", job->org,
                                 text);
    free(text);

    (void) ngx_umlo_store_append(&job->store, "LTRIM "
                                 NGX_UMLO_KEY_BULK_AUDIT " 0 %u", job->org,
                                 job->audit_max - 1);

    return ngx_umlo_store_flush(&job->store);
}


/* ------------------------------------------------------------------- run */

void
ngx_umlo_bulk_exec(ngx_umlo_bulk_job_t *job)
{
    char                  err[NGX_UMLO_API_ERRLEN], at[32];
    size_t                i, done, total;
    json_t               *items, *item;
    redisReply           *r;
    const char           *state;
    ngx_umlo_api_conf_t   conf;

    state = "succeeded";

    if (ngx_umlo_store_open(&job->store, &job->redis, job->org) != 0) {
        /* the lease lapses by itself: nothing was changed */
        return;
    }

    memset(&conf, 0, sizeof(conf));
    conf.base_url = job->api_base;
    conf.api_key = job->api_key;
    conf.max_concurrency = 1;
    conf.timeout_ms = job->timeout_ms;
    conf.connect_timeout_ms = 10000;
    conf.max_retries = job->retries;
    conf.backoff_ms = 500;
    conf.backoff_max_ms = 30000;
    conf.max_response = NGX_UMLO_BULK_MAX_RESPONSE;
    conf.cancel = &job->cancel;
    conf.tick = ngx_umlo_bulk_tick;
    conf.tick_data = job;
    conf.tick_ms = 1000;

    job->api = ngx_umlo_api_create(&conf, err, sizeof(err));

    ngx_umlo_bulk_iso(at, sizeof(at), ngx_umlo_bulk_now());
    json_object_set_new(job->doc, "started_at", json_string(at));
    json_object_set_new(job->doc, "state", json_string("running"));

    items = json_object_get(job->doc, "users");
    total = 0;

    json_array_foreach(items, i, item) {
        if (strcmp(ngx_umlo_bulk_str(item, "outcome"), "planned") == 0) {
            total++;
        }
    }

    done = 0;
    json_object_set_new(job->doc, "progress",
                        json_pack("{s:i,s:I}", "done", 0,
                                  "total", (json_int_t) total));
    (void) ngx_umlo_bulk_save(job);

    json_array_foreach(items, i, item) {
        if (strcmp(ngx_umlo_bulk_str(item, "outcome"), "planned") != 0) {
            continue;
        }

        if (job->api == NULL) {
            snprintf(job->error, sizeof(job->error), "%s", err);
        }

        /* the lease, renewed at a third of it; lost means stop */
        ngx_umlo_bulk_tick(job);

        if (job->api == NULL || job->cancel || job->error[0] != '\0') {
            ngx_umlo_bulk_outcome(item, "not_run", "the job stopped first: "
                                  "%s", job->error[0] ? job->error
                                  : "nginx is reloading or shutting down");
            continue;
        }

        if (ngx_umlo_bulk_user(job, item) != 0) {
            ngx_umlo_bulk_outcome(item, "not_run", "the job stopped first: "
                                  "%s", job->error[0] ? job->error
                                  : "nginx is reloading or shutting down");
        }

        json_object_set_new(json_object_get(job->doc, "progress"), "done",
                            json_integer(++done));
        json_object_set_new(job->doc, "counts",
                            ngx_umlo_bulk_counts(items));
        (void) ngx_umlo_bulk_save(job);
    }

    if (job->api != NULL) {
        ngx_umlo_api_destroy(job->api);
        job->api = NULL;
    }

    if (job->error[0] != '\0') {
        state = "failed";

    } else if (job->cancel) {
        state = "cancelled";
    }

    ngx_umlo_bulk_iso(at, sizeof(at), ngx_umlo_bulk_now());
    json_object_set_new(job->doc, "finished_at", json_string(at));
    json_object_set_new(job->doc, "state", json_string(state));
    json_object_set_new(job->doc, "counts", ngx_umlo_bulk_counts(items));

    if (job->error[0] != '\0') {
        json_object_set_new(job->doc, "error", json_string(job->error));
    }

    (void) ngx_umlo_bulk_save(job);
    (void) ngx_umlo_bulk_audit(job);

    r = ngx_umlo_store_command(&job->store, "EVAL %s 1 " NGX_UMLO_KEY_LOCK
                               " %s", ngx_umlo_bulk_release_lua, job->org,
                               job->lock);
    if (r != NULL) {
        freeReplyObject(r);
    }

    ngx_umlo_store_close(&job->store);
}


/*
 * One user: the state Atlassian has now must be the snapshot's, else the
 * user is skipped; then the calls, then the user as it is afterwards goes
 * into the current generation.  -1 only when the job must stop.
 */

static int
ngx_umlo_bulk_user(ngx_umlo_bulk_job_t *job, json_t *item)
{
    int                    rc;
    char                   why[512], *text, gen[32];
    size_t                 i;
    json_t                *now, *step;
    const char            *id;
    redisReply            *r;
    ngx_umlo_bulk_call_t   call;

    id = ngx_umlo_bulk_str(item, "id");

    now = ngx_umlo_bulk_reread(job, id, why, sizeof(why));
    if (now == NULL) {
        if (job->cancel) {
            return -1;
        }

        ngx_umlo_bulk_outcome(item, why[0] ? "failed" : "skipped",
                              why[0] ? "re-reading the user failed: %s"
                                     : "no longer in the organization",
                              why);
        return 0;
    }

    if (ngx_umlo_bulk_changed(json_object_get(job->docs, id), now, why,
                              sizeof(why)))
    {
        json_decref(now);
        ngx_umlo_bulk_outcome(item, "skipped", "changed in Atlassian since "
                              "the data was read: %s", why);
        return 0;
    }

    json_decref(now);

    call.error[0] = '\0';

    json_array_foreach(json_object_get(item, "steps"), i, step) {
        rc = ngx_umlo_bulk_call(job, ngx_umlo_bulk_str(step, "method"),
                                ngx_umlo_bulk_str(step, "path"),
                                json_is_null(json_object_get(step, "body"))
                                ? NULL
                                : json_deep_copy(json_object_get(step,
                                                                 "body")),
                                &call);
        json_decref(call.json);

        if (rc != 0) {
            return -1;
        }

        if (call.error[0] != '\0') {
            ngx_umlo_bulk_outcome(item, "failed", "%s", call.error);

            if (i == 0) {
                return 0;
            }

            /* earlier steps changed the user: the snapshot must say so */
            break;
        }
    }

    if (call.error[0] == '\0') {
        ngx_umlo_bulk_outcome(item, "done", NULL);
    }

    /* the user as Atlassian has it now, into the current snapshot */
    now = ngx_umlo_bulk_reread(job, id, why, sizeof(why));
    if (now == NULL) {
        if (job->cancel) {
            return 0;
        }

        json_object_set_new(item, "snapshot", json_string(why[0]
                            ? "not updated: the user could not be re-read"
                            : "not updated: the user is gone"));
        return 0;
    }

    text = json_dumps(now, JSON_COMPACT);
    json_decref(now);

    if (text == NULL) {
        return 0;
    }

    snprintf(gen, sizeof(gen), "%lld", job->gen);

    r = ngx_umlo_store_command(&job->store, "EVAL %s 2 " NGX_UMLO_KEY_CURRENT
                               " " NGX_UMLO_KEY_GEN_USERS " %s %s %s",
                               ngx_umlo_bulk_update_lua, job->org, job->org,
                               job->gen, gen, id, text);
    free(text);

    json_object_set_new(item, "snapshot", json_string(
                        r != NULL && r->type == REDIS_REPLY_INTEGER
                        && r->integer == 1
                        ? "updated" : "not updated: the generation changed"));
    if (r != NULL) {
        freeReplyObject(r);
    }

    return 0;
}


/* a task's users, re-read before its filter is evaluated again */

int
ngx_umlo_bulk_presync(ngx_umlo_bulk_job_t *job)
{
    int                   rc;
    char                  err[NGX_UMLO_API_ERRLEN], gen[32], *text;
    size_t                i;
    json_t               *user, *id, *summary;
    redisReply           *r;
    ngx_umlo_api_conf_t   conf;

    rc = -1;

    if (ngx_umlo_store_open(&job->store, &job->redis, job->org) != 0) {
        snprintf(job->error, sizeof(job->error), "%s", job->store.error);
        return -1;
    }

    memset(&conf, 0, sizeof(conf));
    conf.base_url = job->api_base;
    conf.api_key = job->api_key;
    conf.max_concurrency = 1;
    conf.timeout_ms = job->timeout_ms;
    conf.connect_timeout_ms = 10000;
    conf.max_retries = job->retries;
    conf.backoff_ms = 500;
    conf.backoff_max_ms = 30000;
    conf.max_response = NGX_UMLO_BULK_MAX_RESPONSE;
    conf.cancel = &job->cancel;
    conf.tick = ngx_umlo_bulk_tick;
    conf.tick_data = job;
    conf.tick_ms = 1000;

    summary = NULL;
    job->renewed_ms = ngx_umlo_bulk_now();

    if (ngx_umlo_model_init(&job->model) != 0
        || ngx_umlo_bulk_current(job, &summary) != 0
        || ngx_umlo_bulk_load(job) != 0)
    {
        snprintf(job->error, sizeof(job->error), "%s", job->code[0]
                 ? "no full sync has completed yet" : job->store.error);
        goto done;
    }

    job->api = ngx_umlo_api_create(&conf, err, sizeof(err));
    if (job->api == NULL) {
        snprintf(job->error, sizeof(job->error), "%s", err);
        goto done;
    }

    snprintf(gen, sizeof(gen), "%lld", job->gen);

    json_array_foreach(job->ids, i, id) {
        user = ngx_umlo_bulk_reread(job, json_string_value(id), err,
                                    sizeof(err));
        if (user == NULL && err[0] != '\0') {
            snprintf(job->error, sizeof(job->error), "re-reading %.64s: %.400s",
                     json_string_value(id), err);
            goto done;
        }

        text = user ? json_dumps(user, JSON_COMPACT) : NULL;
        json_decref(user);

        r = ngx_umlo_store_command(&job->store, "EVAL %s 2 "
                                   NGX_UMLO_KEY_CURRENT " "
                                   NGX_UMLO_KEY_GEN_USERS " %s %s %s",
                                   ngx_umlo_bulk_update_lua, job->org,
                                   job->org, job->gen, gen,
                                   json_string_value(id), text ? text : "");
        free(text);

        if (r == NULL) {
            snprintf(job->error, sizeof(job->error), "%s", job->store.error);
            goto done;
        }

        freeReplyObject(r);
    }

    rc = 0;

done:

    json_decref(summary);

    if (job->api != NULL) {
        ngx_umlo_api_destroy(job->api);
        job->api = NULL;
    }

    /* the plan starts afresh */
    ngx_umlo_model_free(&job->model);
    memset(&job->model, 0, sizeof(ngx_umlo_model_t));
    job->code[0] = '\0';
    job->status = 0;

    ngx_umlo_store_close(&job->store);

    return rc;
}


/* the user as Atlassian has it now, as a snapshot document, or NULL */

static json_t *
ngx_umlo_bulk_reread(ngx_umlo_bulk_job_t *job, const char *id, char *err,
    size_t len)
{
    char                   path[512];
    size_t                 i;
    json_t                *item, *user;
    ngx_umlo_bulk_call_t   call;

    err[0] = '\0';

    snprintf(path, sizeof(path), "/admin/v2/orgs/%s/directories/-/users/"
             "search", job->org);

    if (ngx_umlo_bulk_call(job, "POST", path,
                           json_pack("{s:i,s:[s],s:[sss]}", "limit", 10,
                                     "accountIds", id, "expand",
                                     "productAccess", "groups",
                                     "platformRoles"),
                           &call)
        != 0)
    {
        snprintf(err, len, "the job was stopped");
        return NULL;
    }

    if (call.error[0] != '\0') {
        snprintf(err, len, "%s", call.error);
        json_decref(call.json);
        return NULL;
    }

    user = NULL;

    json_array_foreach(json_object_get(call.json, "data"), i, item) {
        if (ngx_umlo_bulk_str(item, "accountId") != NULL
            && strcmp(ngx_umlo_bulk_str(item, "accountId"), id) == 0)
        {
            user = ngx_umlo_model_user(&job->model, item);
            break;
        }
    }

    json_decref(call.json);

    return user;
}


/* what a bulk action depends on: any difference means "changed" */

static int
ngx_umlo_bulk_changed(json_t *old, json_t *now, char *why, size_t len)
{
    size_t       i, k;
    json_t      *a, *b, *e;
    const char  *field;

    static const char  *fields[] = {
        "account_status", "membership_status", "claim_status", "status"
    };

    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        a = json_object_get(old, fields[i]);
        b = json_object_get(now, fields[i]);

        if (!json_equal(a, b) && !(a == NULL && json_is_null(b))) {
            snprintf(why, len, "%s was %s, is now %s", fields[i],
                     json_is_string(a) ? json_string_value(a) : "null",
                     json_is_string(b) ? json_string_value(b) : "null");
            return 1;
        }
    }

    for (k = 0; k < 2; k++) {
        field = k ? "platform_roles" : "groups";
        a = json_object_get(old, field);
        b = json_object_get(now, field);

        if (json_array_size(a) != json_array_size(b)) {
            snprintf(why, len, "%s changed", k ? "platform roles"
                                               : "group memberships");
            return 1;
        }

        json_array_foreach(a, i, e) {
            if (!ngx_umlo_bulk_in(b, k ? NULL : "id",
                                  k ? json_string_value(e)
                                    : ngx_umlo_bulk_str(e, "id")))
            {
                snprintf(why, len, "%s changed", k ? "platform roles"
                                                   : "group memberships");
                return 1;
            }
        }
    }

    return 0;
}


/* one API call, run to its end; -1 when the client was stopped */

static int
ngx_umlo_bulk_call(ngx_umlo_bulk_job_t *job, const char *method,
    const char *path, json_t *body, ngx_umlo_bulk_call_t *call)
{
    int  klass;

    memset(call, 0, sizeof(ngx_umlo_bulk_call_t));

    klass = NGX_UMLO_API_ADMIN;

    if (ngx_umlo_api_submit(job->api, klass, method, path, body,
                            ngx_umlo_bulk_done, call)
        == NULL)
    {
        return -1;
    }

    if (ngx_umlo_api_run(job->api) != 0) {
        json_decref(call->json);
        call->json = NULL;

        if (!job->cancel) {
            /* the client only accepts destroy now: stop the job */
            job->cancel = 1;
        }

        return -1;
    }

    return 0;
}


/* also from the client while a call waits: a slow call keeps the lock */

static void
ngx_umlo_bulk_tick(void *data)
{
    ngx_umlo_bulk_job_t  *job = data;

    if (job->error[0] != '\0'
        || ngx_umlo_bulk_now() - job->renewed_ms < job->lease_ms / 3)
    {
        return;
    }

    if (ngx_umlo_store_renew(&job->store, job->lock, job->lease_ms) != 1) {
        snprintf(job->error, sizeof(job->error), "the org lock was lost "
                 "(Redis unreachable or too slow?)");

        if (job->api != NULL) {
            ngx_umlo_api_abort(job->api, "%s", job->error);
        }

        return;
    }

    job->renewed_ms = ngx_umlo_bulk_now();
}


static void
ngx_umlo_bulk_done(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    ngx_umlo_bulk_call_t  *call = req->data;

    call->status = req->status;
    call->json = req->json;
    req->json = NULL;

    if (req->cancelled && req->error[0] == '\0') {
        snprintf(call->error, sizeof(call->error), "cancelled");

    } else {
        snprintf(call->error, sizeof(call->error), "%s", req->error);
    }
}


/* ---------------------------------------------------------------- helpers */

static void
ngx_umlo_bulk_fail(ngx_umlo_bulk_job_t *job, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    va_list  args;

    if (job->status != 0) {
        return;
    }

    job->status = status;
    snprintf(job->code, sizeof(job->code), "%s", code);

    va_start(args, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, args);
    va_end(args);
}


/* "value" is in the array, as a string or as the item's "field" */

static int
ngx_umlo_bulk_in(json_t *list, const char *field, const char *value)
{
    size_t       i;
    json_t      *e;
    const char  *s;

    if (value == NULL) {
        return 0;
    }

    json_array_foreach(list, i, e) {
        s = field ? ngx_umlo_bulk_str(e, field) : json_string_value(e);
        if (s != NULL && strcmp(s, value) == 0) {
            return 1;
        }
    }

    return 0;
}


static const char *
ngx_umlo_bulk_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}


static long long
ngx_umlo_bulk_now(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


static void
ngx_umlo_bulk_iso(char *buf, size_t size, long long ms)
{
    time_t     t;
    struct tm  tm;

    t = (time_t) (ms / 1000);
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}


/* tokens must not be guessable: the kernel's randomness */

static int
ngx_umlo_bulk_random(char *hex, size_t bytes)
{
    int            fd;
    size_t         i;
    unsigned char  buf[32];

    static const char  digits[] = "0123456789abcdef";

    if (bytes > sizeof(buf)) {
        return -1;
    }

    fd = open("/dev/urandom", O_RDONLY);
    if (fd == -1) {
        return -1;
    }

    if (read(fd, buf, bytes) != (ssize_t) bytes) {
        close(fd);
        return -1;
    }

    close(fd);

    for (i = 0; i < bytes; i++) {
        hex[2 * i] = digits[buf[i] >> 4];
        hex[2 * i + 1] = digits[buf[i] & 0xf];
    }

    hex[2 * bytes] = '\0';

    return 0;
}
