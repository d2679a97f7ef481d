/*
 * Copyright (C) ngx_umlo authors
 *
 * The worker's cache of filtered lists: see ngx_umlo_results.h.
 */


#include "ngx_umlo_results.h"
#include "ngx_umlo_handler.h"


/* pages kept per list: a first page or two, and its repeats */
#define NGX_UMLO_RESULTS_PAGES  4


struct ngx_umlo_result_s {
    ngx_str_node_t            sn;        /* key: snapshot serial, query key */
    ngx_queue_t               lru;       /* while in the tree */
    ngx_queue_t               waiters;
    ngx_umlo_query_rows_t     rows;
    size_t                    bytes;
    ngx_uint_t                refs;      /* tree, filtering, requests */
    ngx_umlo_snapref_t       *ref;       /* while filtering */
    ngx_umlo_query_t         *query;     /* the filtering query's own */
    ngx_thread_task_t         task;
    ngx_umlo_result_page_t   *pages[NGX_UMLO_RESULTS_PAGES];
    ngx_uint_t                next_page;  /* the slot to replace next */
    unsigned                  in_tree:1;
    unsigned                  pending:1;
    unsigned                  failed:1;
};


typedef struct {
    ngx_queue_t               queue;
    ngx_http_request_t       *request;
    ngx_umlo_results_pt       done;
} ngx_umlo_results_waiter_t;


/* per worker: nginx runs handlers on one thread */
static ngx_rbtree_t          ngx_umlo_results_tree;
static ngx_rbtree_node_t     ngx_umlo_results_sentinel;
static ngx_queue_t           ngx_umlo_results_lru;     /* newest first */
static size_t                ngx_umlo_results_used;
static uint64_t              ngx_umlo_results_serial;
static ngx_uint_t            ngx_umlo_results_init;


static void ngx_umlo_results_flush(void);
static void ngx_umlo_results_shrink(ngx_umlo_result_t *keep);
static size_t ngx_umlo_results_pages_size(ngx_umlo_result_t *e);
static void ngx_umlo_results_uncache(ngx_umlo_result_t *e);
static ngx_int_t ngx_umlo_results_wait(ngx_http_request_t *r,
    ngx_umlo_result_t *e, ngx_umlo_results_pt done);
static void ngx_umlo_results_unwait(void *data);
static void ngx_umlo_results_thread(void *data, ngx_log_t *log);
static void ngx_umlo_results_filtered(ngx_event_t *ev);


ngx_int_t
ngx_umlo_results_get(ngx_http_request_t *r, ngx_umlo_snapref_t *ref,
    ngx_umlo_query_t *q, int64_t now, ngx_umlo_results_pt done,
    ngx_umlo_result_t **res, ngx_uint_t *how)
{
    char                  *key;
    size_t                 klen;
    u_char                *k;
    uint32_t               hash;
    ngx_str_t              str;
    uint64_t               serial;
    ngx_umlo_result_t     *e;
    ngx_umlo_main_conf_t  *umcf;
    ngx_umlo_query_err_t   err;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    if (!ngx_umlo_results_init) {
        ngx_rbtree_init(&ngx_umlo_results_tree, &ngx_umlo_results_sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_queue_init(&ngx_umlo_results_lru);
        ngx_umlo_results_init = 1;
    }

    /*
     * Lists belong to one loaded snapshot, not to a version: after Redis
     * lost its data a version can come again with other data.  A newer
     * load (sync swap, selective sync, rebuilt Redis): the old lists
     * answer no one.
     */
    serial = ref->snap->serial;

    if (serial > ngx_umlo_results_serial) {
        ngx_umlo_results_flush();
        ngx_umlo_results_serial = serial;
    }

    key = ngx_umlo_query_key(q, &klen);
    if (key == NULL) {
        return NGX_ERROR;
    }

    k = ngx_alloc(sizeof(uint64_t) + klen, ngx_cycle->log);
    if (k == NULL) {
        free(key);
        return NGX_ERROR;
    }

    ngx_memcpy(k, &serial, sizeof(uint64_t));
    ngx_memcpy(k + sizeof(uint64_t), key, klen);
    free(key);

    str.data = k;
    str.len = sizeof(uint64_t) + klen;
    hash = ngx_crc32_long(str.data, str.len);

    e = (ngx_umlo_result_t *) ngx_str_rbtree_lookup(&ngx_umlo_results_tree,
                                                    &str, hash);

    if (e != NULL) {
        ngx_free(k);

        if (e->pending) {
            *how = NGX_UMLO_RESULTS_WAIT;
            return ngx_umlo_results_wait(r, e, done);
        }

        ngx_queue_remove(&e->lru);
        ngx_queue_insert_head(&ngx_umlo_results_lru, &e->lru);

        e->refs++;
        *res = e;
        *how = NGX_UMLO_RESULTS_HIT;

        return NGX_OK;
    }

    *how = NGX_UMLO_RESULTS_MISS;

    e = ngx_calloc(sizeof(ngx_umlo_result_t), ngx_cycle->log);
    if (e == NULL) {
        ngx_free(k);
        return NGX_ERROR;
    }

    e->sn.str = str;
    e->sn.node.key = hash;
    ngx_queue_init(&e->waiters);

    /* its own query: the request's may end before the thread does */
    e->query = ngx_umlo_query_parse(ref->snap, (char *) r->args.data,
                                    r->args.len, now, &err);
    if (e->query == NULL) {
        ngx_free(k);
        ngx_free(e);
        return NGX_ERROR;
    }

    e->ref = ref;
    ref->refs++;
    e->pending = 1;
    e->refs = 1;                               /* the filtering */

    /* a list of an older snapshot than the newest seen is not kept */
    if (serial == ngx_umlo_results_serial) {
        ngx_rbtree_insert(&ngx_umlo_results_tree, &e->sn.node);
        ngx_queue_insert_head(&ngx_umlo_results_lru, &e->lru);
        e->in_tree = 1;
        e->refs++;
    }

    if (ngx_umlo_results_wait(r, e, done) != NGX_AGAIN) {
        /* the entry stays, and the filtering goes on for any other */
        r = NULL;
    }

    e->task.ctx = e;
    e->task.handler = ngx_umlo_results_thread;
    e->task.event.handler = ngx_umlo_results_filtered;
    e->task.event.data = e;
    e->task.event.log = ngx_cycle->log;

    if (ngx_thread_task_post(umcf->thread_pool, &e->task) != NGX_OK) {
        /* the queue is full: filter here rather than fail */
        ngx_umlo_results_thread(e, ngx_cycle->log);
        ngx_umlo_results_filtered(&e->task.event);
    }

    return r ? NGX_AGAIN : NGX_ERROR;
}


const ngx_umlo_query_rows_t *
ngx_umlo_results_rows(ngx_umlo_result_t *res)
{
    return &res->rows;
}


ngx_umlo_result_page_t *
ngx_umlo_results_page(ngx_umlo_result_t *e, const uint64_t id[3])
{
    ngx_uint_t               i;
    ngx_umlo_result_page_t  *p;

    for (i = 0; i < NGX_UMLO_RESULTS_PAGES; i++) {
        p = e->pages[i];

        if (p != NULL && p->id[0] == id[0] && p->id[1] == id[1]
            && p->id[2] == id[2])
        {
            p->refs++;
            return p;
        }
    }

    return NULL;
}


ngx_umlo_result_page_t *
ngx_umlo_results_add_page(ngx_umlo_result_t *e, const uint64_t id[3],
    u_char *text, size_t len)
{
    size_t                   max;
    ngx_umlo_result_page_t  *p, **slot;
    ngx_umlo_main_conf_t    *umcf;

    p = ngx_alloc(sizeof(ngx_umlo_result_page_t), ngx_cycle->log);
    if (p == NULL) {
        free(text);
        return NULL;
    }

    ngx_memcpy(p->id, id, sizeof(p->id));
    p->text = text;
    p->len = len;
    p->etag = ngx_umlo_body_hash(text, len);
    p->refs = 1;

    umcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_umlo_module);
    max = umcf ? umcf->users_cache : 0;

    /* kept only with a cached list, and when it fits */
    if (!e->in_tree || e->pending
        || e->bytes + ngx_umlo_results_pages_size(e) + len > max)
    {
        return p;
    }

    slot = &e->pages[e->next_page];
    e->next_page = (e->next_page + 1) % NGX_UMLO_RESULTS_PAGES;

    if (*slot != NULL) {
        ngx_umlo_results_used -= (*slot)->len;
        ngx_umlo_results_page_release(*slot);
    }

    *slot = p;
    p->refs++;
    ngx_umlo_results_used += len;

    ngx_umlo_results_shrink(e);

    return p;
}


void
ngx_umlo_results_page_release(ngx_umlo_result_page_t *p)
{
    if (p == NULL || --p->refs > 0) {
        return;
    }

    free(p->text);
    ngx_free(p);
}


static size_t
ngx_umlo_results_pages_size(ngx_umlo_result_t *e)
{
    size_t      n;
    ngx_uint_t  i;

    n = 0;

    for (i = 0; i < NGX_UMLO_RESULTS_PAGES; i++) {
        n += e->pages[i] ? e->pages[i]->len : 0;
    }

    return n;
}


void
ngx_umlo_results_release(ngx_umlo_result_t *e)
{
    ngx_uint_t  i;

    if (e == NULL || --e->refs > 0) {
        return;
    }

    for (i = 0; i < NGX_UMLO_RESULTS_PAGES; i++) {
        ngx_umlo_results_page_release(e->pages[i]);
    }

    ngx_umlo_query_rows_free(&e->rows);
    ngx_free(e->sn.str.data);
    ngx_free(e);
}


void
ngx_umlo_results_exit(void)
{
    if (ngx_umlo_results_init) {
        ngx_umlo_results_flush();
    }
}


static void
ngx_umlo_results_flush(void)
{
    ngx_queue_t        *q;
    ngx_umlo_result_t  *e;

    while (!ngx_queue_empty(&ngx_umlo_results_lru)) {
        q = ngx_queue_head(&ngx_umlo_results_lru);
        e = ngx_queue_data(q, ngx_umlo_result_t, lru);
        ngx_umlo_results_uncache(e);
    }
}


/* out of the tree; freed when no request or filtering holds it */

static void
ngx_umlo_results_uncache(ngx_umlo_result_t *e)
{
    ngx_uint_t  i;

    if (!e->in_tree) {
        return;
    }

    ngx_rbtree_delete(&ngx_umlo_results_tree, &e->sn.node);
    ngx_queue_remove(&e->lru);
    e->in_tree = 0;

    if (!e->pending) {
        ngx_umlo_results_used -= e->bytes + ngx_umlo_results_pages_size(e);
    }

    /* pages are kept with cached lists only */
    for (i = 0; i < NGX_UMLO_RESULTS_PAGES; i++) {
        ngx_umlo_results_page_release(e->pages[i]);
        e->pages[i] = NULL;
    }

    ngx_umlo_results_release(e);
}


/* the least recently used lists make room; "keep" stays */

static void
ngx_umlo_results_shrink(ngx_umlo_result_t *keep)
{
    size_t                 max;
    ngx_queue_t           *q, *prev;
    ngx_umlo_result_t     *old;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_umlo_module);
    max = umcf ? umcf->users_cache : 0;

    q = ngx_queue_last(&ngx_umlo_results_lru);

    while (ngx_umlo_results_used > max
           && q != ngx_queue_sentinel(&ngx_umlo_results_lru))
    {
        prev = ngx_queue_prev(q);
        old = ngx_queue_data(q, ngx_umlo_result_t, lru);

        if (old != keep && !old->pending) {
            ngx_umlo_results_uncache(old);
        }

        q = prev;
    }
}


static ngx_int_t
ngx_umlo_results_wait(ngx_http_request_t *r, ngx_umlo_result_t *e,
    ngx_umlo_results_pt done)
{
    ngx_pool_cleanup_t         *cln;
    ngx_umlo_results_waiter_t  *w;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_umlo_results_waiter_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    w = cln->data;
    w->request = r;
    w->done = done;

    /* a request torn down while waiting must leave the queue */
    cln->handler = ngx_umlo_results_unwait;

    ngx_queue_insert_tail(&e->waiters, &w->queue);

    return NGX_AGAIN;
}


static void
ngx_umlo_results_unwait(void *data)
{
    ngx_umlo_results_waiter_t  *w = data;

    if (w->request != NULL) {
        ngx_queue_remove(&w->queue);
        w->request = NULL;
    }
}


/* a pool thread: reads the query and the immutable snapshot only */

static void
ngx_umlo_results_thread(void *data, ngx_log_t *log)
{
    ngx_umlo_result_t  *e = data;

    if (ngx_umlo_query_filter(e->query, &e->rows) != 0) {
        e->failed = 1;
    }
}


static void
ngx_umlo_results_filtered(ngx_event_t *ev)
{
    ngx_umlo_result_t  *e = ev->data;

    size_t                      max;
    ngx_queue_t                *q;
    ngx_http_request_t         *r;
    ngx_umlo_main_conf_t       *umcf;
    ngx_umlo_results_waiter_t  *w;

    umcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_umlo_module);
    max = umcf ? umcf->users_cache : 0;

    e->pending = 0;

    ngx_umlo_query_free(e->query);
    e->query = NULL;
    ngx_umlo_cache_release(e->ref);
    e->ref = NULL;

    e->bytes = sizeof(ngx_umlo_result_t) + e->sn.str.len
               + e->rows.n * sizeof(uint32_t)
               + (e->rows.dates ? e->rows.n * sizeof(int64_t) : 0);

    if (e->in_tree) {
        if (e->failed || e->bytes > max) {
            e->bytes = 0;
            ngx_umlo_results_uncache(e);

        } else {
            ngx_umlo_results_used += e->bytes;
            ngx_umlo_results_shrink(e);
        }
    }

    while (!ngx_queue_empty(&e->waiters)) {
        q = ngx_queue_head(&e->waiters);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_umlo_results_waiter_t, queue);
        r = w->request;
        w->request = NULL;

        if (e->failed) {
            w->done(r, NULL);
            continue;
        }

        e->refs++;
        w->done(r, e);
    }

    /* the filtering's own reference */
    ngx_umlo_results_release(e);
}
