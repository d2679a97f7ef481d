/*
 * Copyright (C) ngx_umlo authors
 *
 * The sync's work, in a pool thread: fetch the org through the admin API
 * with many requests in flight, stream what arrives into a new snapshot
 * generation, then make it current in one step.  Nothing here touches
 * nginx memory, events or logs: results go into the job.
 *
 * The user listing is split into independent cursor chains (account
 * status x claim status, active managed accounts also by two-step
 * verification) walked side by side.  Users refer to groups, and product
 * access comes from what the groups grant; pages that arrive before every
 * group's grants are known are parked in Redis ("stage") and turned into
 * users once they are.
 */


#include "ngx_umlo_clock.h"
#include "ngx_umlo_pace.h"
#include "ngx_umlo_sync.h"
#include "ngx_umlo_keys.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>


#define NGX_UMLO_TICK_MS        250
#define NGX_UMLO_REPORT_MS      1000
#define NGX_UMLO_USERS_PAGE     100
#define NGX_UMLO_GROUPS_PAGE    100
#define NGX_UMLO_ACCOUNTS_REQ   10      /* accountIds per users/search */
#define NGX_UMLO_MAX_RESPONSE   (64 * 1024 * 1024)

/*
 * Staged users converted per idle pass, at most this long, before the
 * client looks at the network again: the chains keep walking meanwhile,
 * and a page that arrives waits at most this long to be looked at.
 */
#define NGX_UMLO_UNSTAGE_MS     5

/* staged pages read back per Redis round trip */
#define NGX_UMLO_UNSTAGE_BATCH  8

/* 10 million users at 100 a page: a chain longer than this never ends */
#define NGX_UMLO_MAX_PAGES      100000


typedef struct {
    const char  *account_status;
    const char  *claim_status;
    int          mfa;              /* mfaEnabled 1 or 0; -1: any */
} ngx_umlo_chain_t;


/* what a cursor chain's callback needs: freed when the chain ends */
typedef struct {
    ngx_umlo_job_t  *job;
    const char      *method;
    char            *path;         /* of the first page */
    json_t          *body;         /* of the first page, without cursor */
    unsigned         cursor_only;  /* later pages: {"cursor"} alone */
    json_t          *found;        /* selective: account id -> user */
    char            *group;        /* grants: the group's id */
    char            *cursor;       /* of the page last asked for */
    char            *mark;         /* kept at page 2^n: finds cycles */
    unsigned         pages;
    unsigned         urgent:1;     /* later pages go first: users */
} ngx_umlo_fetch_ctx_t;


/*
 * Every user has exactly one account status and one claim status, so
 * these chains cover the org and no user is in two.  The longest chain
 * bounds the sync: active managed accounts, most of an org, are split
 * further by mfaEnabled, a boolean every managed account has (the API
 * documents it for managed accounts only, so unmanaged ones are not).
 */
static ngx_umlo_chain_t  ngx_umlo_chains[] = {
    { "active",   "managed",    1 },
    { "active",   "managed",    0 },
    { "active",   "unmanaged", -1 },
    { "inactive", "managed",   -1 },
    { "inactive", "unmanaged", -1 },
    { "closed",   "managed",   -1 },
    { "closed",   "unmanaged", -1 },
};


static int ngx_umlo_fetch_full(ngx_umlo_job_t *job);
static int ngx_umlo_fetch_selective(ngx_umlo_job_t *job);
static int ngx_umlo_fetch_load(ngx_umlo_job_t *job, long long gen);
static void ngx_umlo_fetch_finish(ngx_umlo_job_t *job, const char *state);
static void ngx_umlo_fetch_tick(void *data);
static void ngx_umlo_fetch_report(ngx_umlo_job_t *job, const char *phase);
static ngx_umlo_fetch_ctx_t *ngx_umlo_fetch_chain(ngx_umlo_job_t *job,
    const char *method, json_t *body, unsigned cursor_only,
    ngx_umlo_api_done_pt done, json_t *found, const char *fmt, ...);
static void ngx_umlo_fetch_ctx_free(ngx_umlo_fetch_ctx_t *ctx);
static json_t *ngx_umlo_fetch_page(ngx_umlo_fetch_ctx_t *ctx,
    ngx_umlo_api_req_t *req, const char *what, const char **next);
static int ngx_umlo_fetch_next(ngx_umlo_fetch_ctx_t *ctx,
    ngx_umlo_api_req_t *req, const char *next);
static int ngx_umlo_fetch_submit(ngx_umlo_fetch_ctx_t *ctx,
    ngx_umlo_api_done_pt done, const char *cursor);
static void ngx_umlo_fetch_workspaces(ngx_umlo_api_t *api,
    ngx_umlo_api_req_t *req);
static void ngx_umlo_fetch_total(ngx_umlo_api_t *api,
    ngx_umlo_api_req_t *req);
static void ngx_umlo_fetch_groups(ngx_umlo_api_t *api,
    ngx_umlo_api_req_t *req);
static void ngx_umlo_fetch_grants(ngx_umlo_api_t *api,
    ngx_umlo_api_req_t *req);
static void ngx_umlo_fetch_prereq_done(ngx_umlo_job_t *job);
static void ngx_umlo_fetch_pump(ngx_umlo_job_t *job);
static int ngx_umlo_fetch_idle(void *data);
static int ngx_umlo_fetch_store(ngx_umlo_job_t *job, int64_t budget_ms);
static json_t *ngx_umlo_fetch_users_body(ngx_umlo_chain_t *chain);
static void ngx_umlo_fetch_users(ngx_umlo_api_t *api,
    ngx_umlo_api_req_t *req);
static void ngx_umlo_fetch_accounts(ngx_umlo_api_t *api,
    ngx_umlo_api_req_t *req);
static int ngx_umlo_fetch_write_users(ngx_umlo_job_t *job, json_t *data);
static int ngx_umlo_fetch_write_user(ngx_umlo_job_t *job, json_t *item);
static int ngx_umlo_fetch_unstage(ngx_umlo_job_t *job, long long until);
static int ngx_umlo_fetch_write_hash(ngx_umlo_job_t *job, const char *fmt,
    json_t *docs);
static void ngx_umlo_fetch_fail(ngx_umlo_job_t *job, const char *where,
    const char *fmt, ...);
static void ngx_umlo_fetch_vfail(ngx_umlo_job_t *job, const char *where,
    const char *fmt, va_list args);
static void ngx_umlo_fetch_abort(ngx_umlo_job_t *job, const char *where,
    const char *fmt, ...);
static char *ngx_umlo_fetch_escape(char *dst, const char *src, size_t size);


void
ngx_umlo_fetch_run(ngx_umlo_job_t *job)
{
    int                   rc;
    char                  err[NGX_UMLO_API_ERRLEN];
    ngx_umlo_api_conf_t   conf;

    job->started_ms = ngx_umlo_clock_ms();
    job->renewed_ms = job->started_ms;

    if (ngx_umlo_store_open(&job->store, &job->redis, job->org) != 0) {
        ngx_umlo_fetch_fail(job, "redis", "%s", job->store.error);
        job->state = "failed";
        job->store_failed = 1;
        return;
    }

    if (ngx_umlo_model_init(&job->model) != 0) {
        ngx_umlo_fetch_fail(job, "start", "out of memory");
        ngx_umlo_fetch_finish(job, "failed");
        return;
    }

    memset(&conf, 0, sizeof(conf));
    conf.base_url = job->api_base;
    conf.api_key = job->api_key;
    conf.max_concurrency = job->concurrency;
    conf.timeout_ms = job->timeout_ms;
    conf.connect_timeout_ms = 10000;
    conf.max_retries = job->retries;
    conf.backoff_ms = 500;
    conf.backoff_max_ms = 30000;
    conf.max_response = NGX_UMLO_MAX_RESPONSE;
    conf.cancel = &job->cancel;
    conf.tick = ngx_umlo_fetch_tick;
    conf.tick_data = job;
    conf.tick_ms = NGX_UMLO_TICK_MS;
    conf.idle = ngx_umlo_fetch_idle;

    job->pending = json_array();
    if (job->pending == NULL) {
        ngx_umlo_fetch_fail(job, "start", "out of memory");
        ngx_umlo_fetch_finish(job, "failed");
        return;
    }

    job->api = ngx_umlo_api_create(&conf, err, sizeof(err));
    if (job->api == NULL) {
        ngx_umlo_fetch_fail(job, "start", "%s", err);
        ngx_umlo_fetch_finish(job, "failed");
        return;
    }

    /* the last run's rate-limit estimate: no single-request probe first */
    ngx_umlo_pace_load(&job->store, job->api);

    json_object_set_new(job->doc, "started_at",
                        json_integer(job->started_ms / 1000));

    rc = job->users ? ngx_umlo_fetch_selective(job)
                    : ngx_umlo_fetch_full(job);

    if (rc == 0) {
        ngx_umlo_fetch_finish(job, "succeeded");

    } else if (job->cancel && job->error[0] == '\0') {
        ngx_umlo_fetch_fail(job, job->cancel_seen ? "cancel" : "shutdown",
                            job->cancel_seen
                            ? "cancelled on request; the previous data "
                              "stays current"
                            : "nginx is reloading or shutting down; the "
                              "previous data stays current");
        ngx_umlo_fetch_finish(job, "cancelled");

    } else {
        ngx_umlo_fetch_finish(job, "failed");
    }
}


static int
ngx_umlo_fetch_full(ngx_umlo_job_t *job)
{
    int                    rc;
    size_t                 i;
    json_t                *snapshot;
    long long              n;
    redisReply            *r;
    char                   asof[32];
    ngx_umlo_fetch_ctx_t  *ctx;

    ngx_umlo_fetch_report(job, "plan");

    job->gen = ngx_umlo_store_begin(&job->store);
    if (job->gen < 0) {
        ngx_umlo_fetch_fail(job, "redis", "%s", job->store.error);
        return -1;
    }

    /* the workspaces and the groups chains; each group adds its grants */
    job->prereq_pending = 2;
    job->lists_active = 3;
    job->users_active = sizeof(ngx_umlo_chains) / sizeof(ngx_umlo_chains[0]);

    job->grant_queue = json_array();
    if (job->grant_queue == NULL) {
        ngx_umlo_fetch_fail(job, "start", "out of memory");
        return -1;
    }

    if (ngx_umlo_fetch_chain(job, "POST", json_pack("{s:i}", "limit", 1000),
                             1, ngx_umlo_fetch_workspaces, NULL,
                             "/admin/v2/orgs/%s/workspaces", job->org)
        == NULL
        || ngx_umlo_fetch_chain(job, "GET", NULL, 0, ngx_umlo_fetch_total,
                                NULL, "/admin/v1/orgs/%s/users", job->org)
           == NULL
        || ngx_umlo_fetch_chain(job, "POST",
                                json_pack("{s:i,s:[s]}",
                                          "limit", NGX_UMLO_GROUPS_PAGE,
                                          "expand", "counts.users"),
                                0, ngx_umlo_fetch_groups, NULL,
                                "/admin/v2/orgs/%s/directories/-/groups/"
                                "search", job->org)
           == NULL)
    {
        return -1;
    }

    for (i = 0; i < sizeof(ngx_umlo_chains) / sizeof(ngx_umlo_chains[0]);
         i++)
    {
        ctx = ngx_umlo_fetch_chain(job, "POST",
                                   ngx_umlo_fetch_users_body(
                                                        &ngx_umlo_chains[i]),
                                   0, ngx_umlo_fetch_users, NULL,
                                   "/admin/v2/orgs/%s/directories/-/users/"
                                   "search", job->org);
        if (ctx == NULL) {
            return -1;
        }

        ctx->urgent = 1;
    }

    ngx_umlo_fetch_report(job, "fetch");

    if (ngx_umlo_api_run(job->api) != 0) {
        if (job->error[0] == '\0' && !job->cancel) {
            ngx_umlo_fetch_fail(job, "api", "%s",
                                ngx_umlo_api_error(job->api));
        }

        return -1;
    }

    /* pages of the last round, and staged ones, if any remain */
    (void) ngx_umlo_fetch_store(job, 0);

    if (job->error[0] != '\0') {
        return -1;
    }

    if (!job->prereq_done) {
        ngx_umlo_fetch_fail(job, "groups", "the workspaces or groups "
                            "listings ended before every group's grants "
                            "were read");
        return -1;
    }

    ngx_umlo_fetch_report(job, "write");

    if (ngx_umlo_fetch_write_hash(job, "HSET " NGX_UMLO_KEY_GEN_GROUPS " %s %s",
                                  job->model.groups)
        != 0)
    {
        return -1;
    }

    snapshot = ngx_umlo_model_sites(&job->model);
    if (snapshot == NULL) {
        ngx_umlo_fetch_fail(job, "write", "out of memory");
        return -1;
    }

    i = json_object_size(snapshot);
    n = ngx_umlo_fetch_write_hash(job, "HSET " NGX_UMLO_KEY_GEN_SITES " %s %s",
                                  snapshot);
    json_decref(snapshot);

    if (n != 0) {
        return -1;
    }

    r = ngx_umlo_store_command(&job->store, "HLEN " NGX_UMLO_KEY_GEN_USERS,
                               job->org, job->gen);
    if (r == NULL) {
        ngx_umlo_fetch_fail(job, "redis", "%s", job->store.error);
        return -1;
    }

    /* duplicates across chains land on the same field: count the hash */
    n = r->integer;
    freeReplyObject(r);

    if (job->cancel || ngx_umlo_store_cancelled(&job->store, job->token)) {
        job->cancel_seen = job->cancel_seen || !job->cancel;
        job->cancel = 1;
        return -1;
    }

    ngx_umlo_fetch_report(job, "swap");

    ngx_umlo_clock_iso(asof, sizeof(asof), ngx_umlo_clock_ms());

    json_object_set_new(job->doc, "counts",
                        json_pack("{s:I,s:I,s:I,s:I}",
                                  "users", (json_int_t) n,
                                  "groups",
                                  (json_int_t) json_object_size(
                                                     job->model.groups),
                                  "sites", (json_int_t) i,
                                  "products",
                                  (json_int_t) json_object_size(
                                                     job->model.products)));

    /* productAccess carried the activity: as fresh as the data */
    snapshot = json_pack("{s:I,s:s,s:s,s:s,s:O}",
                         "generation", (json_int_t) job->gen,
                         "sync_id", job->id,
                         "data_as_of", asof,
                         "activity_as_of", asof,
                         "counts", json_object_get(job->doc, "counts"));
    if (snapshot == NULL) {
        ngx_umlo_fetch_fail(job, "write", "out of memory");
        return -1;
    }

    job->users_done = n;

    rc = ngx_umlo_store_swap(&job->store, job->token, job->gen, snapshot,
                             job->grace_ms);
    json_decref(snapshot);

    if (rc != 1) {
        ngx_umlo_fetch_fail(job, "swap", rc == 0
                            ? "the org lock was lost before the new data "
                              "could be made current (Redis too slow or "
                              "umlo_sync_lock_lease too short?)"
                            : job->store.error);
        return -1;
    }

    job->gen = 0;

    return 0;
}


/*
 * Selective sync: the chosen users as they are now, written into the
 * current generation in one step; a user the API no longer knows is
 * removed from it.
 */

static int
ngx_umlo_fetch_selective(ngx_umlo_job_t *job)
{
    size_t       i, j, n;
    json_t      *found, *ids, *user, *doc;
    char        *text;
    long long    gen;
    redisReply  *r;
    const char  *id;

    ngx_umlo_fetch_report(job, "plan");

    gen = ngx_umlo_store_current(&job->store);
    if (gen <= 0) {
        ngx_umlo_fetch_fail(job, "plan", gen == 0
                            ? "no full sync has completed yet: run one "
                              "before syncing chosen users"
                            : job->store.error);
        return -1;
    }

    if (ngx_umlo_fetch_load(job, gen) != 0) {
        return -1;
    }

    found = json_object();
    n = json_array_size(job->users);

    for (i = 0; i < n; i += NGX_UMLO_ACCOUNTS_REQ) {
        ids = json_array();

        for (j = i; j < n && j < i + NGX_UMLO_ACCOUNTS_REQ; j++) {
            json_array_append(ids, json_array_get(job->users, j));
        }

        if (ngx_umlo_fetch_chain(job, "POST",
                                 json_pack("{s:i,s:o,s:[sss]}",
                                           "limit", NGX_UMLO_USERS_PAGE,
                                           "accountIds", ids,
                                           "expand", "productAccess",
                                           "groups", "platformRoles"),
                                 0, ngx_umlo_fetch_accounts, found,
                                 "/admin/v2/orgs/%s/directories/-/users/"
                                 "search", job->org)
            == NULL)
        {
            json_decref(found);
            return -1;
        }
    }

    ngx_umlo_fetch_report(job, "fetch");

    if (ngx_umlo_api_run(job->api) != 0) {
        json_decref(found);

        if (job->error[0] == '\0' && !job->cancel) {
            ngx_umlo_fetch_fail(job, "api", "%s",
                                ngx_umlo_api_error(job->api));
        }

        return -1;
    }

    ngx_umlo_fetch_report(job, "write");

    /* one MULTI: readers see all of these users changed, or none */
    if (ngx_umlo_store_append(&job->store, "MULTI") != 0) {
        json_decref(found);
        ngx_umlo_fetch_fail(job, "redis", "%s", job->store.error);
        return -1;
    }

    json_array_foreach(job->users, i, doc) {
        id = json_string_value(doc);
        user = json_object_get(found, id);

        if (user == NULL) {
            (void) ngx_umlo_store_append(&job->store,
                                         "HDEL " NGX_UMLO_KEY_GEN_USERS " %s",
                                         job->org, gen, id);
            continue;
        }

        text = json_dumps(user, JSON_COMPACT);
        if (text == NULL) {
            continue;
        }

        (void) ngx_umlo_store_append(&job->store,
                                     "HSET " NGX_UMLO_KEY_GEN_USERS " %s %s",
                                     job->org, gen, id, text);
        free(text);
    }

    json_object_set_new(job->doc, "counts",
                        json_pack("{s:I,s:I}",
                                  "users", (json_int_t) json_object_size(found),
                                  "removed",
                                  (json_int_t) (n - json_object_size(found))));
    json_decref(found);

    /* readers holding this generation in memory see it changed */
    (void) ngx_umlo_store_append(&job->store,
                                 "HINCRBY " NGX_UMLO_KEY_CURRENT " rev 1",
                                 job->org);

    r = ngx_umlo_store_command(&job->store, "EXEC");
    if (r == NULL) {
        ngx_umlo_fetch_fail(job, "redis", "%s", job->store.error);
        return -1;
    }

    freeReplyObject(r);

    job->users_done = n;

    return 0;
}


/* the current generation's groups and products, for selective syncs */

static int
ngx_umlo_fetch_load(ngx_umlo_job_t *job, long long gen)
{
    size_t       i, k;
    json_t      *doc, *product, *products;
    redisReply  *r;

    r = ngx_umlo_store_command(&job->store, "HVALS " NGX_UMLO_KEY_GEN_GROUPS,
                               job->org, gen);
    if (r == NULL) {
        ngx_umlo_fetch_fail(job, "redis", "%s", job->store.error);
        return -1;
    }

    for (i = 0; i < r->elements; i++) {
        doc = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
        if (doc != NULL) {
            json_object_set(job->model.groups,
                            json_string_value(json_object_get(doc, "id")),
                            doc);
            json_decref(doc);
        }
    }

    freeReplyObject(r);

    r = ngx_umlo_store_command(&job->store, "HVALS " NGX_UMLO_KEY_GEN_SITES,
                               job->org, gen);
    if (r == NULL) {
        ngx_umlo_fetch_fail(job, "redis", "%s", job->store.error);
        return -1;
    }

    for (i = 0; i < r->elements; i++) {
        doc = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
        products = json_object_get(doc, "products");

        json_array_foreach(products, k, product) {
            json_object_set(job->model.products,
                            json_string_value(json_object_get(product, "id")),
                            product);
        }

        json_decref(doc);
    }

    freeReplyObject(r);

    return 0;
}


static void
ngx_umlo_fetch_finish(ngx_umlo_job_t *job, const char *state)
{
    long long             now;
    json_t               *summary;
    ngx_umlo_api_stats_t  st;

    now = ngx_umlo_clock_ms();
    job->state = state;

    if (job->api != NULL) {
        ngx_umlo_api_stats(job->api, &st);
        ngx_umlo_pace_save(&job->store, job->api);
        json_object_set_new(job->doc, "api",
                            json_pack("{s:I,s:I,s:I,s:I}",
                                      "calls", (json_int_t) st.sent,
                                      "retries", (json_int_t) st.retries,
                                      "rate_limited",
                                      (json_int_t) st.http_429,
                                      "errors", (json_int_t) st.failed));
        ngx_umlo_api_destroy(job->api);
        job->api = NULL;
    }

    ngx_umlo_model_free(&job->model);
    json_decref(job->grant_queue);
    job->grant_queue = NULL;
    json_decref(job->pending);
    job->pending = NULL;
    json_decref(job->unstaged);
    job->unstaged = NULL;
    json_decref(job->unstaging);
    job->unstaging = NULL;

    json_object_set_new(job->doc, "state", json_string(state));
    json_object_set_new(job->doc, "phase", json_null());
    json_object_set_new(job->doc, "finished_at", json_integer(now / 1000));
    json_object_set_new(job->doc, "duration_ms",
                        json_integer(now - job->started_ms));

    if (ngx_strcmp(state, "succeeded") == 0) {
        json_object_set_new(job->doc, "progress",
                            json_pack("{s:I,s:I,s:i,s:i}",
                                      "done", (json_int_t) job->users_done,
                                      "expected",
                                      (json_int_t) job->users_done,
                                      "percent", 100, "eta_seconds", 0));
    } else {
        json_object_set_new(job->doc, "error",
                            json_pack("{s:s,s:s}", "where", job->where,
                                      "message", job->error));
    }

    if (job->gen > 0) {
        /* never current: nobody will read it */
        (void) ngx_umlo_store_drop(&job->store, job->gen);
    }

    summary = json_pack("{s:s,s:s,s:s,s:s,s:O,s:O,s:O,s:O,s:O}",
                        "id", job->id, "trigger", job->trigger,
                        "kind", job->kind, "state", state,
                        "started_at", json_object_get(job->doc, "started_at"),
                        "finished_at",
                        json_object_get(job->doc, "finished_at"),
                        "duration_ms",
                        json_object_get(job->doc, "duration_ms"),
                        "counts", json_object_get(job->doc, "counts")
                                  ? json_object_get(job->doc, "counts")
                                  : json_null(),
                        "api", json_object_get(job->doc, "api")
                               ? json_object_get(job->doc, "api")
                               : json_null());

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
ngx_umlo_fetch_tick(void *data)
{
    ngx_umlo_job_t  *job = data;

    int        rc;
    long long  now;

    now = ngx_umlo_clock_ms();

    /*
     * A fast shutdown (SIGTERM) never runs the worker's timers again, and
     * its thread pool waits for this task: notice it here.
     */
    if (ngx_quit || ngx_terminate || ngx_exiting) {
        job->cancel = 1;
        return;
    }

    if (now - job->renewed_ms >= job->lease_ms / 3) {
        rc = ngx_umlo_store_renew(&job->store, job->token, job->lease_ms);

        if (rc != 1) {
            ngx_umlo_fetch_abort(job, "lock", rc == 0
                                 ? "the org lock was lost (lease expired: "
                                 "Redis slow or unreachable?)"
                                 : job->store.error);
            return;
        }

        job->renewed_ms = now;
    }

    if (now - job->reported_ms >= NGX_UMLO_REPORT_MS) {
        rc = ngx_umlo_store_cancelled(&job->store, job->token);

        if (rc == 1) {
            job->cancel_seen = 1;
            job->cancel = 1;
            return;
        }

        if (rc < 0) {
            ngx_umlo_fetch_abort(job, "redis", "%s", job->store.error);
            return;
        }

        ngx_umlo_fetch_report(job, NULL);
    }
}


static void
ngx_umlo_fetch_report(ngx_umlo_job_t *job, const char *phase)
{
    size_t                grants_expected, grants_done;
    long long             now, eta, work, done;
    json_int_t            percent;
    json_t               *progress;
    ngx_umlo_api_stats_t  st;

    now = ngx_umlo_clock_ms();
    job->reported_ms = now;

    json_object_set_new(job->doc, "state", json_string("running"));

    if (phase != NULL) {
        json_object_set_new(job->doc, "phase", json_string(phase));
    }

    percent = 0;
    eta = -1;

    /* the legacy total also counts accounts v2 does not list: a hint */
    if (job->users_expected && job->users_fetched > job->users_expected) {
        job->users_expected = job->users_fetched;
    }

    /*
     * Users chains go first, so under a rate limit every user may be read
     * while group grant lookups still run: percent and ETA count both, in
     * requests (a users page holds NGX_UMLO_USERS_PAGE users).
     */
    grants_expected = job->grant_queue ? json_array_size(job->grant_queue)
                                       : 0;
    grants_done = job->grant_next - job->grants_active;

    if (job->users_expected > 0) {
        work = (job->users_expected + NGX_UMLO_USERS_PAGE - 1)
               / NGX_UMLO_USERS_PAGE + grants_expected;
        done = job->users_fetched / NGX_UMLO_USERS_PAGE + grants_done;

        percent = work ? done * 100 / work : 0;
        percent = percent > 99 ? 99 : percent;

        if (done > 0 && done < work) {
            eta = (now - job->started_ms) * (work - done) / done / 1000;
        }
    }

    progress = json_pack("{s:I,s:o,s:I,s:o}",
                         "done", (json_int_t) job->users_fetched,
                         "expected", job->users_expected
                         ? json_integer(job->users_expected) : json_null(),
                         "percent", percent,
                         "eta_seconds", eta >= 0
                         ? json_integer(eta) : json_null());

    if (progress != NULL && grants_expected > 0) {
        json_object_set_new(progress, "grants",
                            json_pack("{s:I,s:I}",
                                      "done", (json_int_t) grants_done,
                                      "expected",
                                      (json_int_t) grants_expected));
    }

    json_object_set_new(job->doc, "progress", progress);

    json_object_set_new(job->doc, "counts",
                        json_pack("{s:I,s:I,s:I}",
                                  "users", (json_int_t) job->users_fetched,
                                  "groups",
                                  (json_int_t) json_object_size(
                                                    job->model.groups),
                                  "products",
                                  (json_int_t) json_object_size(
                                                    job->model.products)));

    if (job->api != NULL) {
        ngx_umlo_api_stats(job->api, &st);
        json_object_set_new(job->doc, "api",
                            json_pack("{s:I,s:I,s:I,s:I}",
                                      "calls", (json_int_t) st.sent,
                                      "retries", (json_int_t) st.retries,
                                      "rate_limited",
                                      (json_int_t) st.http_429,
                                      "errors", (json_int_t) st.failed));
    }

    /* progress is best effort: a failed write shows at the next step */
    (void) ngx_umlo_store_set_status(&job->store, job->token, job->doc);
}


/*
 * Starts a cursor chain; body is stolen.  Its callbacks run only inside
 * ngx_umlo_api_run(), so the caller may still fill in the context.
 */

static ngx_umlo_fetch_ctx_t *
ngx_umlo_fetch_chain(ngx_umlo_job_t *job, const char *method, json_t *body,
    unsigned cursor_only, ngx_umlo_api_done_pt done, json_t *found,
    const char *fmt, ...)
{
    char                   path[2048];
    va_list                args;
    ngx_umlo_fetch_ctx_t  *ctx;

    va_start(args, fmt);
    vsnprintf(path, sizeof(path), fmt, args);
    va_end(args);

    ctx = calloc(1, sizeof(ngx_umlo_fetch_ctx_t));
    if (ctx == NULL) {
        json_decref(body);
        ngx_umlo_fetch_fail(job, "start", "out of memory");
        return NULL;
    }

    ctx->job = job;
    ctx->method = method;
    ctx->body = body;
    ctx->cursor_only = cursor_only;
    ctx->found = found;
    ctx->path = strdup(path);

    if (ctx->path == NULL || (strcmp(method, "POST") == 0 && body == NULL)
        || ngx_umlo_fetch_submit(ctx, done, NULL) != 0)
    {
        ngx_umlo_fetch_ctx_free(ctx);
        ngx_umlo_fetch_fail(job, "start", "out of memory");
        return NULL;
    }

    return ctx;
}


static void
ngx_umlo_fetch_ctx_free(ngx_umlo_fetch_ctx_t *ctx)
{
    json_decref(ctx->body);
    free(ctx->path);
    free(ctx->group);
    free(ctx->cursor);
    free(ctx->mark);
    free(ctx);
}


/* a page of the chain: the first (cursor NULL) or a following one */

static int
ngx_umlo_fetch_submit(ngx_umlo_fetch_ctx_t *ctx, ngx_umlo_api_done_pt done,
    const char *cursor)
{
    char                 path[4096], *p;
    json_t              *body;
    ngx_umlo_api_req_t  *req;

    body = NULL;
    p = ctx->path;

    if (ctx->body != NULL) {
        if (cursor == NULL) {
            body = json_deep_copy(ctx->body);

        } else if (ctx->cursor_only) {
            body = json_pack("{s:s}", "cursor", cursor);

        } else {
            body = json_deep_copy(ctx->body);
            if (body != NULL) {
                json_object_set_new(body, "cursor", json_string(cursor));
            }
        }

        if (body == NULL) {
            return -1;
        }

    } else if (cursor != NULL) {
        p = path;
        snprintf(path, sizeof(path), "%s%scursor=", ctx->path,
                 strchr(ctx->path, '?') ? "&" : "?");

        if (ngx_umlo_fetch_escape(path + strlen(path), cursor,
                                  sizeof(path) - strlen(path))
            == NULL)
        {
            return -1;
        }
    }

    req = ngx_umlo_api_submit(ctx->job->api, NGX_UMLO_API_ADMIN, ctx->method,
                              p, body, done, ctx);
    if (req == NULL) {
        return -1;
    }

    if (ctx->urgent) {
        /* a users chain: ahead of grant lookups waiting for a slot */
        ngx_umlo_api_hurry(ctx->job->api, req);
    }

    return 0;
}


/*
 * A page's "data" array; *next is the following page's cursor.  NULL when
 * the request failed or the run stopped: the chain is over and ctx freed.
 */

static json_t *
ngx_umlo_fetch_page(ngx_umlo_fetch_ctx_t *ctx, ngx_umlo_api_req_t *req,
    const char *what, const char **next)
{
    char             expiry[32];
    json_t          *data, *links;
    ngx_umlo_job_t  *job;

    job = ctx->job;
    *next = NULL;

    if (req->cancelled) {
        ngx_umlo_fetch_ctx_free(ctx);
        return NULL;
    }

    if (req->error[0] != '\0') {
        if (req->status == 401 && job->key_expires > 0
            && ngx_umlo_clock_ms() / 1000 >= job->key_expires)
        {
            ngx_umlo_clock_iso(expiry, sizeof(expiry),
                               job->key_expires * 1000);
            ngx_umlo_fetch_fail(job, what, "Organization API key rejected: "
                                "check umlo_api_key_file and its expiry; "
                                "the likely cause: the key expired at %s "
                                "(umlo_api_key_expires) (%s)", expiry,
                                req->error);

        } else if (req->status == 401) {
            ngx_umlo_fetch_fail(job, what, "Organization API key rejected: "
                                "check umlo_api_key_file and its expiry "
                                "(%s)", req->error);
        } else {
            ngx_umlo_fetch_fail(job, what, "%s", req->error);
        }

        ngx_umlo_api_abort(job->api, "%s", job->error);
        ngx_umlo_fetch_ctx_free(ctx);
        return NULL;
    }

    data = json_object_get(req->json, "data");
    links = json_object_get(req->json, "links");

    if (!json_is_array(data)
        || (links != NULL && !json_is_object(links) && !json_is_null(links)))
    {
        ngx_umlo_fetch_abort(job, what, "malformed answer from %s %s: no "
                             "\"data\" array", req->method, ctx->path);
        ngx_umlo_fetch_ctx_free(ctx);
        return NULL;
    }

    *next = json_string_value(json_object_get(links, "next"));

    if (*next != NULL && **next == '\0') {
        *next = NULL;
    }

    return data;
}


/* submits the next page, or ends the chain; -1 after failing the sync */

static int
ngx_umlo_fetch_next(ngx_umlo_fetch_ctx_t *ctx, ngx_umlo_api_req_t *req,
    const char *next)
{
    if (next == NULL) {
        ngx_umlo_fetch_ctx_free(ctx);
        return 0;
    }

    /*
     * A listing that hands back a cursor it gave before would never end.
     * Comparing with the last cursor and with one kept at every power of
     * two pages (Brent) finds a cycle of any length within about twice
     * its length, in constant memory.
     */
    if ((ctx->cursor != NULL && strcmp(ctx->cursor, next) == 0)
        || (ctx->mark != NULL && strcmp(ctx->mark, next) == 0)
        || ++ctx->pages >= NGX_UMLO_MAX_PAGES)
    {
        ngx_umlo_fetch_abort(ctx->job, "fetch", "the listing %s %s does not "
                             "end: its cursor %s", ctx->method, ctx->path,
                             ctx->pages >= NGX_UMLO_MAX_PAGES
                             ? "went on past the page limit"
                             : "repeated itself");
        ngx_umlo_fetch_ctx_free(ctx);
        return -1;
    }

    if ((ctx->pages & (ctx->pages - 1)) == 0) {
        free(ctx->mark);
        ctx->mark = strdup(next);
    }

    free(ctx->cursor);
    ctx->cursor = strdup(next);

    if (ctx->cursor == NULL
        || ngx_umlo_fetch_submit(ctx, req->done, next) != 0)
    {
        ngx_umlo_fetch_abort(ctx->job, "fetch", "out of memory");
        ngx_umlo_fetch_ctx_free(ctx);
        return -1;
    }

    return 0;
}


static void
ngx_umlo_fetch_workspaces(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    ngx_umlo_fetch_ctx_t  *ctx = req->data;

    size_t           i;
    json_t          *data, *ws;
    const char      *next;
    ngx_umlo_job_t  *job;

    job = ctx->job;

    data = ngx_umlo_fetch_page(ctx, req, "workspaces", &next);
    if (data == NULL) {
        return;
    }

    json_array_foreach(data, i, ws) {
        if (ngx_umlo_model_workspace(&job->model, ws) != 0) {
            ngx_umlo_fetch_abort(job, "workspaces", "malformed answer "
                                 "from POST %s: a workspace has no \"id\"",
                                 ctx->path);
            ngx_umlo_fetch_ctx_free(ctx);
            return;
        }
    }

    /* users name product instances: they wait for the whole listing */
    if (ngx_umlo_fetch_next(ctx, req, next) == 0 && next == NULL) {
        job->lists_active--;
        ngx_umlo_fetch_prereq_done(job);
        ngx_umlo_fetch_pump(job);
    }
}


/*
 * The legacy listing's meta.total sizes the progress bar.  It is only a
 * hint: an error here never fails the sync.
 */

static void
ngx_umlo_fetch_total(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    ngx_umlo_fetch_ctx_t  *ctx = req->data;

    json_t          *total;
    ngx_umlo_job_t  *job;

    if (!req->cancelled && req->error[0] == '\0') {
        total = json_object_get(json_object_get(req->json, "meta"), "total");

        if (json_is_integer(total) && json_integer_value(total) > 0) {
            ctx->job->users_expected = json_integer_value(total);
        }
    }

    job = ctx->job;
    ngx_umlo_fetch_ctx_free(ctx);

    if (!req->cancelled) {
        job->lists_active--;
        ngx_umlo_fetch_pump(job);
    }
}


static void
ngx_umlo_fetch_groups(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    ngx_umlo_fetch_ctx_t  *ctx = req->data;

    size_t           i;
    json_t          *data, *group;
    const char      *next, *id, *directory;
    ngx_umlo_job_t  *job;

    job = ctx->job;

    data = ngx_umlo_fetch_page(ctx, req, "groups", &next);
    if (data == NULL) {
        return;
    }

    json_array_foreach(data, i, group) {
        id = json_string_value(json_object_get(group, "id"));

        if (id == NULL || ngx_umlo_model_group(&job->model, group) != 0) {
            ngx_umlo_fetch_abort(job, "groups", "malformed answer from POST "
                                 "%s: a group has no \"id\"", ctx->path);
            ngx_umlo_fetch_ctx_free(ctx);
            return;
        }

        directory = json_string_value(json_object_get(group, "directoryId"));

        if (json_array_append_new(job->grant_queue,
                                  json_pack("[ss]", id,
                                            directory ? directory : "-"))
            != 0)
        {
            ngx_umlo_fetch_abort(job, "groups", "out of memory");
            ngx_umlo_fetch_ctx_free(ctx);
            return;
        }

        job->prereq_pending++;
        job->groups++;
    }

    if (ngx_umlo_fetch_next(ctx, req, next) != 0) {
        return;
    }

    if (next == NULL) {
        job->lists_active--;
        ngx_umlo_fetch_prereq_done(job);
    }

    ngx_umlo_fetch_pump(job);
}


static void
ngx_umlo_fetch_grants(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    ngx_umlo_fetch_ctx_t  *ctx = req->data;

    size_t           i;
    json_t          *data, *grant;
    const char      *next;
    ngx_umlo_job_t  *job;

    job = ctx->job;

    data = ngx_umlo_fetch_page(ctx, req, "group role assignments", &next);
    if (data == NULL) {
        return;
    }

    json_array_foreach(data, i, grant) {
        /* an assignment without a resource grants nothing: skip it */
        (void) ngx_umlo_model_grant(&job->model, ctx->group, grant);
    }

    if (ngx_umlo_fetch_next(ctx, req, next) == 0 && next == NULL) {
        job->grants_active--;
        ngx_umlo_fetch_prereq_done(job);
        ngx_umlo_fetch_pump(job);
    }
}


/*
 * Starts queued grant lookups, leaving a request slot to every users
 * chain still walking and to the listings (workspaces, groups): the
 * chains are the sync's critical path, and a flood of grant lookups ahead
 * of them in the client's queue would stall them.
 */

static void
ngx_umlo_fetch_pump(ngx_umlo_job_t *job)
{
    char                   gid[512], dir[512];
    json_t                *item;
    unsigned               limit;
    const char            *id;
    ngx_umlo_fetch_ctx_t  *gctx;

    limit = job->users_active + job->lists_active;
    limit = job->concurrency > limit ? job->concurrency - limit : 1;

    while (job->grants_active < limit
           && job->grant_next < json_array_size(job->grant_queue))
    {
        item = json_array_get(job->grant_queue, job->grant_next++);
        id = json_string_value(json_array_get(item, 0));

        if (ngx_umlo_fetch_escape(gid, id, sizeof(gid)) == NULL
            || ngx_umlo_fetch_escape(dir,
                                     json_string_value(json_array_get(item,
                                                                      1)),
                                     sizeof(dir))
               == NULL
            || (gctx = ngx_umlo_fetch_chain(job, "GET", NULL, 0,
                                            ngx_umlo_fetch_grants, NULL,
                                            "/admin/v2/orgs/%s/directories/"
                                            "%s/groups/%s/role-assignments"
                                            "?limit=100", job->org, dir,
                                            gid))
               == NULL
            || (gctx->group = strdup(id)) == NULL)
        {
            ngx_umlo_fetch_abort(job, "groups", "group id too long or out of "
                                 "memory");
            return;
        }

        job->grants_active++;
    }
}


/* the workspaces, the groups chain or one group's grants are complete */

static void
ngx_umlo_fetch_prereq_done(ngx_umlo_job_t *job)
{
    if (--job->prereq_pending > 0) {
        return;
    }

    /* the idle hook turns the staged pages into users */
    job->prereq_done = 1;
}


/*
 * The client's idle hook: the users pages that arrived, stored while the
 * next pages travel.  Before every group's grants are known a page is
 * parked raw in the generation's "stage" list; after, it becomes users.
 * Staged pages are converted for NGX_UMLO_UNSTAGE_MS per pass: tens of
 * thousands of them at once would hold up the chains for seconds.
 */

static int
ngx_umlo_fetch_idle(void *data)
{
    return ngx_umlo_fetch_store(data, NGX_UMLO_UNSTAGE_MS);
}


/* stores the pending pages and staged ones; 1: staged pages remain */

static int
ngx_umlo_fetch_store(ngx_umlo_job_t *job, int64_t budget_ms)
{
    int      rc;
    char    *text;
    size_t   i;
    json_t  *page;

    if (job->error[0] != '\0') {
        return 0;
    }

    json_array_foreach(job->pending, i, page) {

        if (job->prereq_done) {
            rc = ngx_umlo_fetch_write_users(job, page);

        } else {
            text = json_dumps(page, JSON_COMPACT);
            rc = text ? ngx_umlo_store_append(&job->store,
                                              "RPUSH "
                                              NGX_UMLO_KEY_GEN_STAGE " %s",
                                              job->org, job->gen, text)
                      : -1;
            free(text);

            if (rc != 0) {
                ngx_umlo_fetch_fail(job, "redis", "%s",
                                    job->store.error[0] ? job->store.error
                                                        : "out of memory");
            }

            job->staged = 1;
        }

        if (rc != 0) {
            json_array_clear(job->pending);
            ngx_umlo_api_abort(job->api, "%s", job->error);
            return 0;
        }
    }

    json_array_clear(job->pending);

    if (job->prereq_done && job->staged) {
        if (ngx_umlo_fetch_unstage(job, budget_ms > 0
                                        ? ngx_umlo_clock_ms() + budget_ms
                                        : 0)
            != 0)
        {
            ngx_umlo_api_abort(job->api, "%s", job->error);
            return 0;
        }
    }

    return job->prereq_done && job->staged;
}


static json_t *
ngx_umlo_fetch_users_body(ngx_umlo_chain_t *chain)
{
    json_t  *body;

    body = json_pack("{s:i,s:[sss],s:[s],s:s}",
                     "limit", NGX_UMLO_USERS_PAGE,
                     "expand", "productAccess", "groups", "platformRoles",
                     "accountStatus", chain->account_status,
                     "claimStatus", chain->claim_status);

    if (body != NULL && chain->mfa >= 0
        && json_object_set_new(body, "mfaEnabled",
                               json_boolean(chain->mfa))
           != 0)
    {
        json_decref(body);
        return NULL;
    }

    return body;
}


static void
ngx_umlo_fetch_users(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    ngx_umlo_fetch_ctx_t  *ctx = req->data;

    json_t          *data;
    const char      *next;
    ngx_umlo_job_t  *job;

    job = ctx->job;

    data = ngx_umlo_fetch_page(ctx, req, "users", &next);
    if (data == NULL) {
        return;
    }

    job->users_fetched += json_array_size(data);

    /* stored by the idle hook, once the next page is on its way */
    if (json_array_append(job->pending, data) != 0) {
        ngx_umlo_fetch_abort(job, "users", "out of memory");
        ngx_umlo_fetch_ctx_free(ctx);
        return;
    }

    if (ngx_umlo_fetch_next(ctx, req, next) == 0 && next == NULL) {
        job->users_active--;
        ngx_umlo_fetch_pump(job);
    }
}


static void
ngx_umlo_fetch_accounts(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    ngx_umlo_fetch_ctx_t  *ctx = req->data;

    size_t           i;
    json_t          *data, *item, *user;
    const char      *next;
    ngx_umlo_job_t  *job;

    job = ctx->job;

    data = ngx_umlo_fetch_page(ctx, req, "users", &next);
    if (data == NULL) {
        return;
    }

    json_array_foreach(data, i, item) {
        user = ngx_umlo_model_user(&job->model, item);
        if (user == NULL) {
            ngx_umlo_fetch_abort(job, "users", "malformed answer from POST "
                                 "%s: a user has no \"accountId\"",
                                 ctx->path);
            ngx_umlo_fetch_ctx_free(ctx);
            return;
        }

        json_object_set_new(ctx->found,
                            json_string_value(json_object_get(user, "id")),
                            user);
        job->users_done++;
    }

    (void) ngx_umlo_fetch_next(ctx, req, next);
}


static int
ngx_umlo_fetch_write_users(ngx_umlo_job_t *job, json_t *data)
{
    size_t   i;
    json_t  *item;

    json_array_foreach(data, i, item) {
        if (ngx_umlo_fetch_write_user(job, item) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
ngx_umlo_fetch_write_user(ngx_umlo_job_t *job, json_t *item)
{
    int          rc;
    char        *text;
    json_t      *user;
    const char  *id;

    user = ngx_umlo_model_user(&job->model, item);
    if (user == NULL) {
        ngx_umlo_fetch_fail(job, "users", "malformed answer from "
                            "users/search: a user has no \"accountId\"");
        return -1;
    }

    id = json_string_value(json_object_get(user, "id"));
    text = json_dumps(user, JSON_COMPACT);

    rc = text ? ngx_umlo_store_append(&job->store,
                                      "HSET " NGX_UMLO_KEY_GEN_USERS
                                      " %s %s", job->org, job->gen, id, text)
              : -1;
    free(text);
    json_decref(user);

    if (rc != 0) {
        ngx_umlo_fetch_fail(job, "redis", "%s", job->store.error[0]
                            ? job->store.error : "out of memory");
        return -1;
    }

    job->users_done++;

    return 0;
}


/*
 * Converts staged users until none is left or "until" (ms, 0: never).
 * Pages are read back a batch at a time: a round trip per page (and the
 * flush of the writes before it) would cost more than the conversion on
 * a busy machine.  The time is checked per user: a page takes tens of
 * milliseconds.
 */

static int
ngx_umlo_fetch_unstage(ngx_umlo_job_t *job, long long until)
{
    size_t       i, n;
    json_t      *text, *item;
    redisReply  *r;

    if (job->unstaged == NULL) {
        job->unstaged = json_array();
        if (job->unstaged == NULL) {
            ngx_umlo_fetch_fail(job, "write", "out of memory");
            return -1;
        }
    }

    for ( ;; ) {

        if (job->unstaging != NULL) {
            n = json_array_size(job->unstaging);

            while (job->unstage_next < n) {
                if (until != 0 && ngx_umlo_clock_ms() >= until) {
                    return 0;
                }

                item = json_array_get(job->unstaging, job->unstage_next++);

                if (ngx_umlo_fetch_write_user(job, item) != 0) {
                    return -1;
                }
            }

            json_decref(job->unstaging);
            job->unstaging = NULL;
        }

        if (json_array_size(job->unstaged) == 0) {
            r = ngx_umlo_store_command(&job->store,
                                       "LPOP " NGX_UMLO_KEY_GEN_STAGE " %d",
                                       job->org, job->gen,
                                       NGX_UMLO_UNSTAGE_BATCH);
            if (r == NULL) {
                ngx_umlo_fetch_fail(job, "redis", "%s", job->store.error);
                return -1;
            }

            if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
                freeReplyObject(r);
                job->staged = 0;
                return 0;
            }

            for (i = 0; i < r->elements; i++) {
                if (r->element[i]->type != REDIS_REPLY_STRING
                    || json_array_append_new(job->unstaged,
                                             json_stringn_nocheck(
                                                 r->element[i]->str,
                                                 r->element[i]->len))
                       != 0)
                {
                    freeReplyObject(r);
                    ngx_umlo_fetch_fail(job, "redis", "a staged users page "
                                        "could not be read back");
                    return -1;
                }
            }

            freeReplyObject(r);
        }

        text = json_array_get(job->unstaged, 0);
        job->unstaging = json_loadb(json_string_value(text),
                                    json_string_length(text), 0, NULL);
        job->unstage_next = 0;
        json_array_remove(job->unstaged, 0);

        if (!json_is_array(job->unstaging)) {
            ngx_umlo_fetch_fail(job, "redis", "a staged users page could "
                                "not be read back");
            return -1;
        }
    }
}


static int
ngx_umlo_fetch_write_hash(ngx_umlo_job_t *job, const char *fmt,
    json_t *docs)
{
    int          rc;
    char        *text;
    json_t      *doc;
    const char  *id;

    json_object_foreach(docs, id, doc) {
        text = json_dumps(doc, JSON_COMPACT);
        if (text == NULL) {
            ngx_umlo_fetch_fail(job, "write", "out of memory");
            return -1;
        }

        /* fmt is one of the generation hash keys, e.g. "HSET <key>" */
        rc = ngx_umlo_store_append(&job->store, fmt, job->org, job->gen, id,
                                   text);
        free(text);

        if (rc != 0) {
            ngx_umlo_fetch_fail(job, "redis", "%s", job->store.error);
            return -1;
        }
    }

    if (ngx_umlo_store_flush(&job->store) != 0) {
        ngx_umlo_fetch_fail(job, "redis", "%s", job->store.error);
        return -1;
    }

    return 0;
}


/* records the first failure only: later ones are its consequences */

static void
ngx_umlo_fetch_fail(ngx_umlo_job_t *job, const char *where,
    const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_umlo_fetch_vfail(job, where, fmt, args);
    va_end(args);
}


static void
ngx_umlo_fetch_vfail(ngx_umlo_job_t *job, const char *where,
    const char *fmt, va_list args)
{
    if (job->error[0] != '\0') {
        return;
    }

    snprintf(job->where, sizeof(job->where), "%s", where);
    vsnprintf(job->error, sizeof(job->error), fmt, args);
}


/* from a callback: fail the sync and stop the run */

static void
ngx_umlo_fetch_abort(ngx_umlo_job_t *job, const char *where,
    const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_umlo_fetch_vfail(job, where, fmt, args);
    va_end(args);

    ngx_umlo_api_abort(job->api, "%s", job->error);
}


static char *
ngx_umlo_fetch_escape(char *dst, const char *src, size_t size)
{
    static const char  hex[] = "0123456789ABCDEF";

    char           *p, *last;
    unsigned char   c;

    p = dst;
    last = dst + size - 1;

    for ( /* void */ ; *src; src++) {
        c = (unsigned char) *src;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
            || c == '~')
        {
            if (p == last) {
                return NULL;
            }

            *p++ = c;
            continue;
        }

        if (last - p < 3) {
            return NULL;
        }

        *p++ = '%';
        *p++ = hex[c >> 4];
        *p++ = hex[c & 0xf];
    }

    *p = '\0';

    return dst;
}


