/*
 * Copyright (C) ngx_umlo authors
 *
 * umlo_users: the user browser (list, facets, one user, CSV export) and
 * umlo_dashboard: the snapshot's metrics.  Both answer from the worker's
 * in-memory snapshot (ngx_umlo_cache.c); queries are in ngx_umlo_query.c.
 */


#include "ngx_umlo_handler.h"
#include "ngx_umlo_cache.h"
#include "ngx_umlo_keys.h"
#include "ngx_umlo_query.h"
#include "ngx_umlo_redis.h"
#include "ngx_umlo_results.h"
#include "ngx_umlo_keyexp.h"


#define NGX_UMLO_CSV_BUF  (32 * 1024)


typedef struct {
    ngx_umlo_snapref_t   *ref;
    ngx_umlo_query_t     *query;
    ngx_umlo_result_t    *result;     /* the filtered list */
    ngx_uint_t            how;        /* NGX_UMLO_RESULTS_HIT, ... */
    ngx_chain_t          *free;
    ngx_chain_t          *busy;
    ngx_str_t             id;         /* one user's account id */
} ngx_umlo_users_ctx_t;


static ngx_str_t  ngx_umlo_users_how[] = {
    ngx_string("hit"), ngx_string("miss"), ngx_string("wait")
};


static ngx_int_t ngx_umlo_users_start(ngx_http_request_t *r,
    ngx_umlo_cache_ready_pt ready);
static ngx_int_t ngx_umlo_users_path(ngx_http_request_t *r, ngx_str_t *rest);
static void ngx_umlo_users_ready(ngx_http_request_t *r,
    ngx_umlo_snapref_t *ref, ngx_uint_t rc, const char *error);
static ngx_int_t ngx_umlo_users_list(ngx_http_request_t *r,
    ngx_umlo_snapref_t *ref);
static ngx_int_t ngx_umlo_users_one(ngx_http_request_t *r,
    ngx_umlo_snapref_t *ref, ngx_str_t *id);
static void ngx_umlo_users_doc(redisReply *reply, void *data);
static void ngx_umlo_users_rows(ngx_http_request_t *r,
    ngx_umlo_result_t *res);
static ngx_int_t ngx_umlo_users_answer(ngx_http_request_t *r,
    ngx_umlo_result_t *res);
static ngx_int_t ngx_umlo_users_bad(ngx_http_request_t *r,
    ngx_umlo_query_err_t *err);
static void ngx_umlo_users_free_page(void *data);
static ngx_int_t ngx_umlo_users_csv(ngx_http_request_t *r);
static void ngx_umlo_users_csv_write(ngx_http_request_t *r);
static void ngx_umlo_users_cleanup(void *data);
static ngx_int_t ngx_umlo_users_unavailable(ngx_http_request_t *r,
    ngx_uint_t rc, const char *error);
static ngx_int_t ngx_umlo_users_wants_csv(ngx_http_request_t *r);
static ngx_int_t ngx_umlo_users_qvalue(u_char *p, u_char *end);
static void ngx_umlo_dashboard_ready(ngx_http_request_t *r,
    ngx_umlo_snapref_t *ref, ngx_uint_t rc, const char *error);
static void ngx_umlo_dashboard_status(redisReply *reply, void *data);


ngx_int_t
ngx_umlo_users_handler(ngx_http_request_t *r)
{
    return ngx_umlo_users_start(r, ngx_umlo_users_ready);
}


ngx_int_t
ngx_umlo_dashboard_handler(ngx_http_request_t *r)
{
    return ngx_umlo_users_start(r, ngx_umlo_dashboard_ready);
}


/* both read the snapshot: GET and HEAD only, then the worker's copy */

static ngx_int_t
ngx_umlo_users_start(ngx_http_request_t *r, ngx_umlo_cache_ready_pt ready)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_umlo_send_not_allowed(r, "GET, HEAD");
    }

    return ngx_umlo_cache_get(r, ready);
}


/* what follows the location's own path: "", "facets" or an account id */

static ngx_int_t
ngx_umlo_users_path(ngx_http_request_t *r, ngx_str_t *rest)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    rest->len = 0;
    rest->data = r->uri.data + r->uri.len;

    if (clcf->regex == NULL && r->uri.len > clcf->name.len
        && ngx_strncmp(r->uri.data, clcf->name.data, clcf->name.len) == 0)
    {
        rest->data = r->uri.data + clcf->name.len;
        rest->len = r->uri.len - clcf->name.len;
    }

    while (rest->len && rest->data[0] == '/') {
        rest->data++;
        rest->len--;
    }

    while (rest->len && rest->data[rest->len - 1] == '/') {
        rest->len--;
    }

    return NGX_OK;
}


static void
ngx_umlo_users_ready(ngx_http_request_t *r, ngx_umlo_snapref_t *ref,
    ngx_uint_t rc, const char *error)
{
    json_t     *json;
    ngx_int_t   status;
    ngx_str_t   rest;

    if (ref == NULL) {
        ngx_http_finalize_request(r, ngx_umlo_users_unavailable(r, rc,
                                                                error));
        return;
    }

    (void) ngx_umlo_users_path(r, &rest);

    /*
     * The reference ngx_umlo_cache_get() took on the request passes to
     * whoever answers: here, or a callback when the answer is NGX_DONE.
     */
    if (rest.len == 0) {
        status = ngx_umlo_users_list(r, ref);
        if (status != NGX_DONE) {
            ngx_http_finalize_request(r, status);
        }

        return;
    }

    if (rest.len == 6 && ngx_strncmp(rest.data, "facets", 6) == 0) {
        if (ref->snap->facets == NULL) {
            ref->snap->facets = ngx_umlo_query_facets(ref->snap);
        }

        json = ref->snap->facets;
        status = json ? ngx_umlo_send_json(r, NGX_HTTP_OK, json)
                      : NGX_HTTP_INTERNAL_SERVER_ERROR;

        ngx_umlo_cache_release(ref);
        ngx_http_finalize_request(r, status);
        return;
    }

    status = ngx_umlo_users_one(r, ref, &rest);
    if (status != NGX_DONE) {
        ngx_http_finalize_request(r, status);
    }
}


/*
 * The filtered list comes from the worker's cache of lists, or is made
 * in the thread pool; the page is then written from it.
 */

static ngx_int_t
ngx_umlo_users_list(ngx_http_request_t *r, ngx_umlo_snapref_t *ref)
{
    int64_t                now;
    ngx_int_t              rc;
    ngx_umlo_query_t      *q;
    ngx_pool_cleanup_t    *cln;
    ngx_umlo_result_t     *res;
    ngx_umlo_query_err_t   err;
    ngx_umlo_users_ctx_t  *ctx;

    ngx_memzero(&err, sizeof(ngx_umlo_query_err_t));

    now = (int64_t) ngx_time() * 1000;

    q = ngx_umlo_query_parse(ref->snap, (char *) r->args.data, r->args.len,
                             now, &err);

    if (q != NULL && ngx_umlo_users_wants_csv(r)) {
        ngx_umlo_query_set_csv(q);
    }

    if (q == NULL || ngx_umlo_query_check(q, &err) != 0) {
        ngx_umlo_query_free(q);
        ngx_umlo_cache_release(ref);
        return ngx_umlo_users_bad(r, &err);
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_umlo_users_ctx_t));
    if (cln == NULL) {
        ngx_umlo_query_free(q);
        ngx_umlo_cache_release(ref);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the query, the snapshot and the list now belong to the request */
    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_umlo_users_ctx_t));
    ctx->ref = ref;
    ctx->query = q;

    cln->handler = ngx_umlo_users_cleanup;
    ngx_http_set_ctx(r, ctx, ngx_umlo_module);

    rc = ngx_umlo_results_get(r, ref, q, now, ngx_umlo_users_rows, &res,
                              &ctx->how);

    switch (rc) {

    case NGX_OK:
        return ngx_umlo_users_answer(r, res);

    case NGX_AGAIN:
        return NGX_DONE;

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static void
ngx_umlo_users_rows(ngx_http_request_t *r, ngx_umlo_result_t *res)
{
    ngx_int_t  rc;

    rc = res ? ngx_umlo_users_answer(r, res)
             : NGX_HTTP_INTERNAL_SERVER_ERROR;

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_umlo_users_answer(ngx_http_request_t *r, ngx_umlo_result_t *res)
{
    char                    *text;
    size_t                   len;
    uint64_t                 id[3];
    ngx_table_elt_t         *h;
    ngx_pool_cleanup_t      *cln;
    ngx_umlo_query_err_t     err;
    ngx_umlo_users_ctx_t    *ctx;
    ngx_umlo_result_page_t  *page;

    ctx = ngx_http_get_module_ctx(r, ngx_umlo_module);
    ctx->result = res;

    if (ngx_umlo_query_attach(ctx->query, ngx_umlo_results_rows(res), &err)
        != 0)
    {
        return ngx_umlo_users_bad(r, &err);
    }

    /* where the list came from: for operations, and the tests */
    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Umlo-Cache");
    h->value = ngx_umlo_users_how[ctx->how];

    if (ngx_umlo_query_csv_wanted(ctx->query)) {
        return ngx_umlo_users_csv(r);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the same page asked again: its text and ETag as they were */
    ngx_umlo_query_page_id(ctx->query, id);

    page = ngx_umlo_results_page(res, id);

    if (page == NULL) {
        text = ngx_umlo_query_page_text(ctx->query, &len);
        if (text == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        page = ngx_umlo_results_add_page(res, id, (u_char *) text, len);
        if (page == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    cln->handler = ngx_umlo_users_free_page;
    cln->data = page;

    /* the page stands alone: the list and the snapshot can go */
    ngx_umlo_users_cleanup(ctx);

    return ngx_umlo_send_tagged(r, page->text, page->len, page->etag);
}


static void
ngx_umlo_users_free_page(void *data)
{
    ngx_umlo_results_page_release(data);
}


static ngx_int_t
ngx_umlo_users_bad(ngx_http_request_t *r, ngx_umlo_query_err_t *err)
{
    json_t     *page;
    ngx_int_t   rc;

    if (err->status == 0 || err->status >= 500) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    page = ngx_umlo_query_error(err);
    rc = page ? ngx_umlo_send_json(r, err->status, page)
              : NGX_HTTP_INTERNAL_SERVER_ERROR;
    json_decref(page);

    return rc;
}


/*
 * One user: the full document the sync stored, from Redis, with the
 * row's computed fields (last_active with its context, never_active).
 */

static ngx_int_t
ngx_umlo_users_one(ngx_http_request_t *r, ngx_umlo_snapref_t *ref,
    ngx_str_t *id)
{
    uint32_t               i;
    long long              gen;
    ngx_umlo_users_ctx_t  *ctx;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_umlo_users_ctx_t));
    if (ctx == NULL) {
        ngx_umlo_cache_release(ref);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->id.data = ngx_pnalloc(r->pool, id->len + 1);
    if (ctx->id.data == NULL) {
        ngx_umlo_cache_release(ref);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ctx->id.data, id->data, id->len);
    ctx->id.data[id->len] = '\0';
    ctx->id.len = id->len;

    i = ngx_umlo_snap_user(ref->snap, (char *) ctx->id.data);
    gen = ref->snap->gen;

    if (i == NGX_UMLO_SNAP_NONE) {
        ngx_umlo_cache_release(ref);
        return ngx_umlo_send_error(r, NGX_HTTP_NOT_FOUND, "unknown_user",
                                   "no user \"%V\" in the current "
                                   "snapshot", &ctx->id);
    }

    ctx->ref = ref;
    ngx_http_set_ctx(r, ctx, ngx_umlo_module);

    if (ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_users_doc, r,
                                "HGET " NGX_UMLO_KEY_GEN_USERS " %b",
                                umcf->org.data, gen, ctx->id.data,
                                ctx->id.len)
        != NGX_OK)
    {
        ngx_umlo_cache_release(ref);
        return ngx_umlo_users_unavailable(r, NGX_UMLO_CACHE_REDIS,
                                          ngx_umlo_redis_error(umcf->redis));
    }

    return NGX_DONE;
}


static void
ngx_umlo_users_doc(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    json_t                *doc, *row, *out;
    uint32_t               i;
    ngx_int_t              rc;
    ngx_umlo_users_ctx_t  *ctx;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);
    ctx = ngx_http_get_module_ctx(r, ngx_umlo_module);

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        rc = ngx_umlo_users_unavailable(r, NGX_UMLO_CACHE_REDIS,
                                        reply ? reply->str
                                        : ngx_umlo_redis_error(umcf->redis));
        goto done;
    }

    doc = (reply->type == REDIS_REPLY_STRING)
          ? json_loadb(reply->str, reply->len, 0, NULL) : NULL;

    if (doc == NULL) {
        /* the generation was dropped after its grace period */
        rc = ngx_umlo_send_error(r, NGX_HTTP_NOT_FOUND, "unknown_user",
                                 "no user \"%V\" in the current snapshot",
                                 &ctx->id);
        goto done;
    }

    i = ngx_umlo_snap_user(ctx->ref->snap, (char *) ctx->id.data);
    row = ngx_umlo_query_row(ctx->ref->snap, i);

    if (row != NULL) {
        json_object_set(doc, "last_active",
                        json_object_get(row, "last_active"));
        json_object_set(doc, "never_active",
                        json_object_get(row, "never_active"));
        json_decref(row);
    }

    out = json_pack("{s:o,s:{s:I,s:s?,s:s?}}", "data", doc, "meta",
                    "generation", (json_int_t) ctx->ref->snap->gen,
                    "data_as_of", ctx->ref->snap->data_as_of,
                    "sync_id", ctx->ref->snap->sync_id);

    rc = out ? ngx_umlo_send_json(r, NGX_HTTP_OK, out)
             : NGX_HTTP_INTERNAL_SERVER_ERROR;
    json_decref(out);

done:

    ngx_umlo_cache_release(ctx->ref);
    ctx->ref = NULL;

    ngx_http_finalize_request(r, rc);
}


/*
 * CSV of every matching row, produced a buffer at a time as the client
 * takes it: 100,000 rows never sit in memory as one answer.
 */

static ngx_int_t
ngx_umlo_users_csv(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *h;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;
    ngx_str_set(&r->headers_out.content_type, "text/csv; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/csv") - 1;
    r->headers_out.content_type_lowcase = NULL;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Content-Disposition");
    ngx_str_set(&h->value, "attachment; filename=\"users.csv\"");

    if (ngx_umlo_add_safety_headers(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    /* the writer finalizes the request when the last row is out */
    ngx_umlo_users_csv_write(r);

    return NGX_DONE;
}


static void
ngx_umlo_users_csv_write(ngx_http_request_t *r)
{
    ssize_t                    n;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_chain_t               *cl, *out;
    ngx_event_t               *wev;
    ngx_umlo_users_ctx_t      *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    ctx = ngx_http_get_module_ctx(r, ngx_umlo_module);
    wev = r->connection->write;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                      "umlo: client timed out during a CSV export");
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    for ( ;; ) {

        /* a slow client: wait until what was sent has been taken */
        if (ctx->busy != NULL
            || (r->connection->buffered & NGX_HTTP_WRITE_BUFFERED))
        {
            out = NULL;
            rc = ngx_http_output_filter(r, NULL);

            ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                                    (ngx_buf_tag_t) &ngx_umlo_module);

            if (rc == NGX_ERROR) {
                ngx_http_finalize_request(r, NGX_ERROR);
                return;
            }

            if (ctx->busy != NULL
                || (r->connection->buffered & NGX_HTTP_WRITE_BUFFERED))
            {
                r->write_event_handler = ngx_umlo_users_csv_write;

                clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

                if (!wev->delayed) {
                    ngx_add_timer(wev, clcf->send_timeout);
                }

                if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
                    ngx_http_finalize_request(r, NGX_ERROR);
                }

                return;
            }

            if (wev->timer_set) {
                ngx_del_timer(wev);
            }
        }

        cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
        if (cl == NULL) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        b = cl->buf;

        if (b->start == NULL) {
            b->start = ngx_palloc(r->pool, NGX_UMLO_CSV_BUF);
            if (b->start == NULL) {
                ngx_http_finalize_request(r, NGX_ERROR);
                return;
            }

            b->end = b->start + NGX_UMLO_CSV_BUF;
            b->tag = (ngx_buf_tag_t) &ngx_umlo_module;
            b->temporary = 1;
        }

        b->pos = b->start;
        b->last = b->start;

        n = ngx_umlo_query_csv(ctx->query, (char *) b->start,
                               NGX_UMLO_CSV_BUF);
        if (n < 0) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        if (n == 0) {
            /* back to the free list; the end is a buffer without data */
            cl->next = ctx->free;
            ctx->free = cl;

            rc = ngx_http_send_special(r, NGX_HTTP_LAST);
            ngx_http_finalize_request(r, rc);
            return;
        }

        b->last += n;

        /* a full buffer goes out now: no waiting for postpone_output */
        b->flush = 1;

        out = cl;
        rc = ngx_http_output_filter(r, out);

        ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                                (ngx_buf_tag_t) &ngx_umlo_module);

        if (rc == NGX_ERROR) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }
    }
}


static void
ngx_umlo_users_cleanup(void *data)
{
    ngx_umlo_users_ctx_t  *ctx = data;

    /* the query points into the list, the list into the snapshot */
    ngx_umlo_query_free(ctx->query);
    ngx_umlo_results_release(ctx->result);
    ngx_umlo_cache_release(ctx->ref);

    ctx->query = NULL;
    ctx->result = NULL;
    ctx->ref = NULL;
}


static ngx_int_t
ngx_umlo_users_unavailable(ngx_http_request_t *r, ngx_uint_t rc,
    const char *error)
{
    switch (rc) {

    case NGX_UMLO_CACHE_NO_SNAPSHOT:
        return ngx_umlo_send_error(r, NGX_HTTP_NOT_FOUND, "no_snapshot",
                                   "%s", error);

    case NGX_UMLO_CACHE_REDIS:
        return ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "redis_unavailable",
                                   "%s; the data is kept in Redis, check "
                                   "umlo_redis and that Redis is running",
                                   error);

    default:
        return ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "snapshot_unavailable",
                                   "the current snapshot could not be "
                                   "loaded: %s", error);
    }
}


/*
 * Without a "format" parameter, "Accept" chooses: CSV when it accepts
 * text/csv (q > 0) more than application/json, or as much and first.
 */

static ngx_int_t
ngx_umlo_users_wants_csv(ngx_http_request_t *r)
{
    u_char           *p, *last, *end, *semi;
    ngx_int_t         q, q_csv, q_json, pos, pos_csv, pos_json;
    ngx_str_t         value;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ngx_http_arg(r, (u_char *) "format", 6, &value) == NGX_OK) {
        return 0;
    }

    q_csv = -1;
    q_json = -1;
    pos_csv = 0;
    pos_json = 0;
    pos = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != 6
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Accept", 6) != 0)
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        while (p < last) {
            end = ngx_strlchr(p, last, ',');
            if (end == NULL) {
                end = last;
            }

            while (p < end && *p == ' ') {
                p++;
            }

            semi = ngx_strlchr(p, end, ';');
            q = ngx_umlo_users_qvalue(semi ? semi : end, end);
            pos++;

            if ((semi ? semi : end) - p >= 8
                && ngx_strncasecmp(p, (u_char *) "text/csv", 8) == 0)
            {
                q_csv = q;
                pos_csv = pos;

            } else if ((semi ? semi : end) - p >= 16
                       && ngx_strncasecmp(p, (u_char *) "application/json",
                                          16) == 0)
            {
                q_json = q;
                pos_json = pos;
            }

            p = end + 1;
        }
    }

    return q_csv > 0
           && (q_csv > q_json || (q_csv == q_json && pos_csv < pos_json));
}


/* the q parameter of a media range, in thousandths (1000 when absent) */

static ngx_int_t
ngx_umlo_users_qvalue(u_char *p, u_char *end)
{
    ngx_int_t  q, scale;

    for ( /* void */ ; p + 2 < end; p++) {
        if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '='
            && (p[-1] == ';' || p[-1] == ' '))
        {
            p += 2;

            if (*p == '1') {
                return 1000;
            }

            q = 0;

            if (*p++ == '0' && p < end && *p == '.') {
                for (scale = 100, p++; p < end && scale; scale /= 10, p++) {
                    if (*p < '0' || *p > '9') {
                        break;
                    }

                    q += (*p - '0') * scale;
                }
            }

            return q;
        }
    }

    return 1000;
}


static void
ngx_umlo_dashboard_ready(ngx_http_request_t *r, ngx_umlo_snapref_t *ref,
    ngx_uint_t rc, const char *error)
{
    ngx_umlo_users_ctx_t  *ctx;
    ngx_umlo_main_conf_t  *umcf;

    if (ref == NULL) {
        ngx_http_finalize_request(r, ngx_umlo_users_unavailable(r, rc,
                                                                error));
        return;
    }

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_umlo_users_ctx_t));
    if (ctx == NULL) {
        ngx_umlo_cache_release(ref);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->ref = ref;
    ngx_http_set_ctx(r, ctx, ngx_umlo_module);

    /* the last sync's outcome is live state: read it, it is one GET */
    if (ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_dashboard_status, r,
                                "GET " NGX_UMLO_KEY_STATUS, umcf->org.data)
        != NGX_OK)
    {
        ngx_umlo_dashboard_status(NULL, r);
    }
}


static void
ngx_umlo_dashboard_status(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    char                  *last;
    u_char                *body, *p;
    size_t                 len;
    json_t                *sync, *tail;
    ngx_int_t              rc;
    ngx_umlo_snap_t       *snap;
    ngx_umlo_users_ctx_t  *ctx;
    ngx_umlo_main_conf_t  *umcf;

    ctx = ngx_http_get_module_ctx(r, ngx_umlo_module);
    snap = ctx->ref->snap;
    rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    last = NULL;

    /* the metrics change with the snapshot only: written once */
    if (snap->dashboard == NULL && snap->metrics != NULL) {
        snap->dashboard = json_dumps(snap->metrics, JSON_COMPACT);
        snap->dashboard_len = snap->dashboard ? strlen(snap->dashboard) : 0;
    }

    if (snap->dashboard == NULL || snap->dashboard_len < 2) {
        goto done;
    }

    sync = (reply != NULL && reply->type == REDIS_REPLY_STRING)
           ? json_loadb(reply->str, reply->len, 0, NULL) : NULL;

    /* what changes per request: {"last_sync": ..., "api_key": ...} */
    tail = json_object();

    if (tail != NULL) {
        json_object_set_new(tail, "last_sync", sync
            ? json_pack("{s:O?,s:O?,s:O?,s:O?,s:O?,s:O?}",
                        "id", json_object_get(sync, "id"),
                        "trigger", json_object_get(sync, "trigger"),
                        "state", json_object_get(sync, "state"),
                        "finished_at", json_object_get(sync, "finished_at"),
                        "duration_ms", json_object_get(sync, "duration_ms"),
                        "error", json_object_get(sync, "error"))
            : json_null());

        umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

        if (umcf->key_expires) {
            json_object_set_new(tail, "api_key", ngx_umlo_keyexp_json(umcf));
        }
    }

    last = tail ? json_dumps(tail, JSON_COMPACT) : NULL;

    json_decref(tail);
    json_decref(sync);

    if (last == NULL || last[0] != '{') {
        goto done;
    }

    /* {metrics..., then the tail's members} */
    len = snap->dashboard_len + ngx_strlen(last) + 1;

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        goto done;
    }

    p = ngx_cpymem(body, snap->dashboard, snap->dashboard_len - 1);

    if (snap->dashboard_len > 2 && last[1] != '}') {
        *p++ = ',';
    }

    p = ngx_cpymem(p, last + 1, ngx_strlen(last) - 1);

    rc = ngx_umlo_send_tagged(r, body, p - body,
                              ngx_umlo_body_hash(body, p - body));

done:

    free(last);

    ngx_umlo_cache_release(ctx->ref);
    ctx->ref = NULL;

    ngx_http_finalize_request(r, rc);
}
