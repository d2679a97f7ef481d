/*
 * Copyright (C) ngx_umlo authors
 *
 * The worker's snapshot cache: see ngx_umlo_cache.h.
 */


#include "ngx_umlo_cache.h"
#include "ngx_umlo_handler.h"
#include "ngx_umlo_keys.h"
#include "ngx_umlo_metrics.h"
#include "ngx_umlo_redis.h"
#include "ngx_umlo_store.h"


typedef struct {
    ngx_umlo_cache_ready_pt   ready;
} ngx_umlo_cache_ctx_t;


typedef struct {
    ngx_queue_t               queue;
    ngx_http_request_t       *request;
    ngx_umlo_cache_ready_pt   ready;
    long long                 version;
} ngx_umlo_cache_waiter_t;


typedef struct {
    long long                 gen;
    long long                 version;
    char                     *summary;
    char                     *org;
    ngx_umlo_store_conf_t     redis;
    ngx_umlo_snap_t          *snap;          /* the result, or NULL */
    unsigned                  own_summary:1; /* malloc()ed by the thread */
    uint64_t                  summary_hash;
    char                      error[256];
    ngx_pool_t               *pool;
} ngx_umlo_cache_load_t;


/* per worker: nginx runs handlers on one thread */
static ngx_umlo_snapref_t  *ngx_umlo_current;
static long long            ngx_umlo_loading;       /* version, 0: none */
static ngx_queue_t          ngx_umlo_waiters;
static ngx_uint_t           ngx_umlo_waiters_init;
static uint64_t             ngx_umlo_serial;


static const char  ngx_umlo_cache_script[] =
    "return redis.call('HMGET', KEYS[1], 'gen', 'json', 'rev')";

/*
 * A snapshot's version: its generation, and how many selective syncs
 * changed it since (the "rev" field of "current", reset by every swap).
 */
#define NGX_UMLO_REV_SPAN  1000000LL


static void ngx_umlo_cache_current(redisReply *reply, void *data);
static void ngx_umlo_cache_wait(ngx_http_request_t *r,
    ngx_umlo_cache_ready_pt ready, long long version);
static void ngx_umlo_cache_unwait(void *data);
static ngx_int_t ngx_umlo_cache_load(ngx_http_request_t *r,
    long long version, const char *summary, size_t len);
static void ngx_umlo_cache_thread(void *data, ngx_log_t *log);
static void ngx_umlo_cache_loaded(ngx_event_t *ev);
static void ngx_umlo_cache_wake(ngx_uint_t rc, const char *error);


ngx_int_t
ngx_umlo_cache_get(ngx_http_request_t *r, ngx_umlo_cache_ready_pt ready)
{
    ngx_umlo_cache_ctx_t  *ctx;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    /*
     * The request lives until "ready" finalizes it, even when that
     * happens before this returns.
     */
    r->main->count++;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_umlo_cache_ctx_t));
    if (ctx == NULL) {
        ready(r, NULL, NGX_UMLO_CACHE_FAILED, "out of memory");
        return NGX_DONE;
    }

    ctx->ready = ready;
    ngx_http_set_ctx(r, ctx, ngx_umlo_module);

    if (ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_cache_current, r,
                                "EVAL %s 1 " NGX_UMLO_KEY_CURRENT,
                                ngx_umlo_cache_script, umcf->org.data)
        != NGX_OK)
    {
        ready(r, NULL, NGX_UMLO_CACHE_REDIS,
              ngx_umlo_redis_error(umcf->redis));
    }

    return NGX_DONE;
}


void
ngx_umlo_cache_release(ngx_umlo_snapref_t *ref)
{
    if (ref == NULL || --ref->refs > 0) {
        return;
    }

    ngx_umlo_snap_free(ref->snap);
    ngx_free(ref);
}


void
ngx_umlo_cache_exit(void)
{
    if (ngx_umlo_current != NULL) {
        ngx_umlo_cache_release(ngx_umlo_current);
        ngx_umlo_current = NULL;
    }
}


static void
ngx_umlo_cache_current(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    long long                 gen, version;
    redisReply               *g, *json, *rev;
    ngx_umlo_main_conf_t     *umcf;
    ngx_umlo_snapref_t       *ref;
    ngx_umlo_cache_ctx_t     *ctx;
    ngx_umlo_cache_ready_pt   ready;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);
    ctx = ngx_http_get_module_ctx(r, ngx_umlo_module);
    ready = ctx->ready;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3)
    {
        ready(r, NULL, NGX_UMLO_CACHE_REDIS,
              reply && reply->type == REDIS_REPLY_ERROR
              ? reply->str : ngx_umlo_redis_error(umcf->redis));
        return;
    }

    g = reply->element[0];
    json = reply->element[1];
    rev = reply->element[2];

    gen = (g->type == REDIS_REPLY_STRING) ? strtoll(g->str, NULL, 10) : 0;
    version = gen * NGX_UMLO_REV_SPAN
              + ((rev->type == REDIS_REPLY_STRING)
                 ? strtoll(rev->str, NULL, 10) % NGX_UMLO_REV_SPAN : 0);

    if (gen <= 0) {
        ready(r, NULL, NGX_UMLO_CACHE_NO_SNAPSHOT,
              "no full sync has completed yet: start one with the sync "
              "endpoint");
        return;
    }

    /*
     * Versions only grow while Redis keeps its data; an older one means
     * it lost them (restart, flush, older backup) and a sync rebuilt
     * them: what this worker holds exists nowhere now.  The same version
     * with another summary (another sync id) is such a rebuild too.
     */
    if (ngx_umlo_current != NULL
        && (ngx_umlo_current->snap->version > version
            || (ngx_umlo_current->snap->version == version
                && json->type == REDIS_REPLY_STRING
                && ngx_umlo_current->summary != 0
                && ngx_umlo_current->summary
                   != ngx_umlo_body_hash((u_char *) json->str, json->len))))
    {
        ngx_umlo_cache_release(ngx_umlo_current);
        ngx_umlo_current = NULL;
    }

    if (ngx_umlo_current != NULL
        && ngx_umlo_current->snap->version >= version)
    {
        ref = ngx_umlo_current;
        ref->refs++;
        ready(r, ref, NGX_UMLO_CACHE_OK, NULL);
        return;
    }

    if (ngx_umlo_loading != version) {
        if (ngx_umlo_loading == 0
            && ngx_umlo_cache_load(r, version,
                                   json->type == REDIS_REPLY_STRING
                                   ? json->str : NULL,
                                   json->type == REDIS_REPLY_STRING
                                   ? json->len : 0)
               != NGX_OK)
        {
            ready(r, NULL, NGX_UMLO_CACHE_FAILED,
                  "the snapshot could not be loaded (thread pool busy?)");
            return;
        }
    }

    /* a load is running: wait for it (and for ours, if it is older) */
    ngx_umlo_cache_wait(r, ready, version);
}


static void
ngx_umlo_cache_wait(ngx_http_request_t *r, ngx_umlo_cache_ready_pt ready,
    long long version)
{
    ngx_pool_cleanup_t       *cln;
    ngx_umlo_cache_waiter_t  *w;

    if (!ngx_umlo_waiters_init) {
        ngx_queue_init(&ngx_umlo_waiters);
        ngx_umlo_waiters_init = 1;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_umlo_cache_waiter_t));
    if (cln == NULL) {
        ready(r, NULL, NGX_UMLO_CACHE_FAILED, "out of memory");
        return;
    }

    w = cln->data;
    w->request = r;
    w->ready = ready;
    w->version = version;

    /* a request torn down while waiting must leave the queue */
    cln->handler = ngx_umlo_cache_unwait;

    ngx_queue_insert_tail(&ngx_umlo_waiters, &w->queue);
}


static void
ngx_umlo_cache_unwait(void *data)
{
    ngx_umlo_cache_waiter_t  *w = data;

    if (w->request != NULL) {
        ngx_queue_remove(&w->queue);
        w->request = NULL;
    }
}


static ngx_int_t
ngx_umlo_cache_load(ngx_http_request_t *r, long long version,
    const char *summary, size_t len)
{
    ngx_pool_t             *pool;
    ngx_thread_task_t      *task;
    ngx_umlo_main_conf_t   *umcf;
    ngx_umlo_cache_load_t  *load;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    task = ngx_thread_task_alloc(pool, sizeof(ngx_umlo_cache_load_t));
    if (task == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    load = task->ctx;
    load->pool = pool;
    load->version = version;
    load->gen = version / NGX_UMLO_REV_SPAN;

    /* copies: the thread must not read the configuration or Redis reply */
    load->org = ngx_pcalloc(pool, umcf->org.len + 1);
    load->summary = ngx_pcalloc(pool, len + 1);

    if (load->org == NULL || load->summary == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ngx_memcpy(load->org, umcf->org.data, umcf->org.len);

    if (summary != NULL) {
        ngx_memcpy(load->summary, summary, len);
    }

    ngx_umlo_store_conf(umcf, &load->redis);

    task->handler = ngx_umlo_cache_thread;
    task->event.handler = ngx_umlo_cache_loaded;
    task->event.data = load;

    if (ngx_thread_task_post(umcf->thread_pool, task) != NGX_OK) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ngx_umlo_loading = version;

    return NGX_OK;
}


static void
ngx_umlo_cache_thread(void *data, ngx_log_t *log)
{
    ngx_umlo_cache_load_t  *load = data;

    ngx_umlo_store_t  st;

    if (ngx_umlo_store_open(&st, &load->redis, load->org) != 0) {
        ngx_cpystrn((u_char *) load->error, (u_char *) st.error,
                    sizeof(load->error));
        return;
    }

    /* a load started for waiters has no summary: read it (same gen) */
    if (load->summary[0] == '\0') {
        redisReply  *r;

        r = ngx_umlo_store_command(&st, "HMGET " NGX_UMLO_KEY_CURRENT
                                   " gen json", load->org);

        if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2
            && r->element[0]->type == REDIS_REPLY_STRING
            && r->element[1]->type == REDIS_REPLY_STRING
            && strtoll(r->element[0]->str, NULL, 10) == load->gen)
        {
            load->summary = strdup(r->element[1]->str);
            load->own_summary = 1;
        }

        if (r != NULL) {
            freeReplyObject(r);
        }
    }

    load->snap = ngx_umlo_snap_create();

    if (load->snap == NULL
        || ngx_umlo_snap_load(load->snap, st.c, load->org, load->gen,
                              load->summary && load->summary[0]
                              ? load->summary : NULL,
                              load->error, sizeof(load->error))
           != 0)
    {
        if (load->error[0] == '\0') {
            ngx_cpystrn((u_char *) load->error, (u_char *) "out of memory",
                        sizeof(load->error));
        }

        ngx_umlo_snap_free(load->snap);
        load->snap = NULL;

    } else {
        load->snap->version = load->version;
        load->snap->metrics = ngx_umlo_metrics_build(load->snap,
                                                     (int64_t) ngx_time()
                                                     * 1000);
    }

    ngx_umlo_store_close(&st);

    /* 0: unknown (not read), never taken for a rebuild */
    load->summary_hash = (load->summary && load->summary[0])
                         ? ngx_umlo_body_hash((u_char *) load->summary,
                                              ngx_strlen(load->summary))
                         : 0;

    if (load->own_summary) {
        free(load->summary);
        load->summary = NULL;
        load->own_summary = 0;
    }
}


static void
ngx_umlo_cache_loaded(ngx_event_t *ev)
{
    ngx_umlo_cache_load_t  *load = ev->data;

    ngx_umlo_snapref_t  *ref;

    ngx_umlo_loading = 0;

    if (load->snap == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "umlo: loading snapshot generation %L failed: %s",
                      load->gen, load->error);
        ngx_umlo_cache_wake(NGX_UMLO_CACHE_FAILED, load->error);
        ngx_destroy_pool(load->pool);
        return;
    }

    ref = ngx_alloc(sizeof(ngx_umlo_snapref_t), ngx_cycle->log);
    if (ref == NULL) {
        ngx_umlo_snap_free(load->snap);
        ngx_umlo_cache_wake(NGX_UMLO_CACHE_FAILED, "out of memory");
        ngx_destroy_pool(load->pool);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "umlo: snapshot generation %L loaded: %uD users, "
                  "%uz bytes", load->gen, load->snap->nusers,
                  load->snap->bytes);

    ref->snap = load->snap;
    ref->snap->serial = ++ngx_umlo_serial;
    ref->summary = load->summary_hash;
    ref->refs = 1;

    /* requests still using the old snapshot keep their reference */
    if (ngx_umlo_current == NULL
        || ngx_umlo_current->snap->version < ref->snap->version)
    {
        ngx_umlo_cache_release(ngx_umlo_current);
        ngx_umlo_current = ref;

    } else {
        ngx_umlo_cache_release(ref);
    }

    ngx_destroy_pool(load->pool);

    ngx_umlo_cache_wake(NGX_UMLO_CACHE_OK, NULL);
}


/*
 * Answers the waiters the current snapshot can serve; for the others (a
 * newer generation became current meanwhile) starts the next load.
 */

static void
ngx_umlo_cache_wake(ngx_uint_t rc, const char *error)
{
    ngx_queue_t               later, *q;
    ngx_http_request_t       *r;
    ngx_umlo_snapref_t       *ref;
    ngx_umlo_cache_waiter_t  *w;

    if (!ngx_umlo_waiters_init) {
        return;
    }

    ngx_queue_init(&later);

    while (!ngx_queue_empty(&ngx_umlo_waiters)) {
        q = ngx_queue_head(&ngx_umlo_waiters);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_umlo_cache_waiter_t, queue);
        r = w->request;

        if (rc != NGX_UMLO_CACHE_OK) {
            w->request = NULL;
            w->ready(r, NULL, rc, error);
            continue;
        }

        ref = ngx_umlo_current;

        if (ref != NULL && ref->snap->version >= w->version) {
            w->request = NULL;
            ref->refs++;
            w->ready(r, ref, NGX_UMLO_CACHE_OK, NULL);
            continue;
        }

        ngx_queue_insert_tail(&later, q);
    }

    if (ngx_queue_empty(&later)) {
        return;
    }

    /* the newest generation asked for; its summary is read again */
    q = ngx_queue_last(&later);
    w = ngx_queue_data(q, ngx_umlo_cache_waiter_t, queue);

    ngx_queue_add(&ngx_umlo_waiters, &later);

    if (ngx_umlo_cache_load(w->request, w->version, NULL, 0) != NGX_OK) {
        ngx_umlo_cache_wake(NGX_UMLO_CACHE_FAILED,
                            "the snapshot could not be loaded");
    }
}
