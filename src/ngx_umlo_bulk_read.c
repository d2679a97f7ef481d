/*
 * Copyright (C) ngx_umlo authors
 *
 * umlo_bulk's reads: GET .../jobs/ID answers a job's document (plan,
 * progress, per-user results) and GET .../audit the audit log, as JSON
 * or as CSV, both straight from Redis so that every instance agrees.
 */


#include "ngx_umlo_bulk.h"
#include "ngx_umlo_handler.h"
#include "ngx_umlo_keys.h"
#include "ngx_umlo_redis.h"


#define NGX_UMLO_BULK_AUDIT_LIMIT   100
#define NGX_UMLO_BULK_AUDIT_MAX     1000


static void ngx_umlo_bulk_got_job(redisReply *reply, void *data);
static void ngx_umlo_bulk_got_audit(redisReply *reply, void *data);
static ngx_int_t ngx_umlo_bulk_csv(ngx_http_request_t *r, redisReply *reply);
static u_char *ngx_umlo_bulk_cell(u_char *p, u_char *last, json_t *value,
    ngx_uint_t sep);
static size_t ngx_umlo_bulk_cell_size(json_t *value);
static ngx_int_t ngx_umlo_bulk_redis_down(ngx_http_request_t *r,
    redisReply *reply);
static size_t ngx_umlo_bulk_span(u_char *p, size_t len);


ngx_int_t
ngx_umlo_bulk_get(ngx_http_request_t *r, ngx_str_t *path)
{
    u_char                *id;
    size_t                 len;
    ngx_str_t              rest, value;
    ngx_int_t              limit;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);
    rest = *path;

    if (rest.len > 5 && ngx_strncmp(rest.data, "jobs/", 5) == 0) {
        id = rest.data + 5;
        len = rest.len - 5;

        if (len == 0 || len >= NGX_UMLO_BULK_ID_LEN
            || ngx_umlo_bulk_span(id, len) < len)
        {
            return ngx_umlo_send_error(r, NGX_HTTP_NOT_FOUND, "unknown_job",
                                       "no bulk job has this id");
        }

        id = ngx_pnalloc(r->pool, len + 1);
        if (id == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(id, rest.data + 5, len);
        id[len] = '\0';

        if (ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_bulk_got_job, r,
                                    "GET " NGX_UMLO_KEY_BULK_JOB,
                                    umcf->org.data, id)
            != NGX_OK)
        {
            return ngx_umlo_bulk_redis_down(r, NULL);
        }

        r->main->count++;
        return NGX_DONE;
    }

    if (!(rest.len == 5 && ngx_strncmp(rest.data, "audit", 5) == 0)) {
        return ngx_umlo_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                   "below this location: GET jobs/ID and "
                                   "GET audit; POST to the location "
                                   "itself starts a job");
    }

    limit = NGX_UMLO_BULK_AUDIT_LIMIT;

    if (ngx_http_arg(r, (u_char *) "limit", 5, &value) == NGX_OK) {
        limit = ngx_atoi(value.data, value.len);

        if (limit < 1 || limit > NGX_UMLO_BULK_AUDIT_MAX) {
            return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "invalid_parameter", "\"limit\" must "
                                       "be 1..%d", NGX_UMLO_BULK_AUDIT_MAX);
        }
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &value) == NGX_OK
        && !(value.len == 4 && ngx_strncmp(value.data, "json", 4) == 0)
        && !(value.len == 3 && ngx_strncmp(value.data, "csv", 3) == 0))
    {
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                   "invalid_parameter", "\"format\" must be "
                                   "json or csv");
    }

    if (ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_bulk_got_audit, r,
                                "LRANGE " NGX_UMLO_KEY_BULK_AUDIT " 0 %i",
                                umcf->org.data, limit - 1)
        != NGX_OK)
    {
        return ngx_umlo_bulk_redis_down(r, NULL);
    }

    r->main->count++;
    return NGX_DONE;
}


static void
ngx_umlo_bulk_got_job(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    json_t     *doc;
    ngx_int_t   rc;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_http_finalize_request(r, ngx_umlo_bulk_redis_down(r, reply));
        return;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        ngx_http_finalize_request(r,
            ngx_umlo_send_error(r, NGX_HTTP_NOT_FOUND, "unknown_job",
                                "no bulk job has this id, or it expired "
                                "(umlo_bulk_retention)"));
        return;
    }

    doc = json_loadb(reply->str, reply->len, 0, NULL);

    rc = doc ? ngx_umlo_send_json(r, NGX_HTTP_OK, doc)
             : NGX_HTTP_INTERNAL_SERVER_ERROR;
    json_decref(doc);

    ngx_http_finalize_request(r, rc);
}


static void
ngx_umlo_bulk_got_audit(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    size_t      i;
    json_t     *list, *entry;
    ngx_int_t   rc;
    ngx_str_t   format;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_finalize_request(r, ngx_umlo_bulk_redis_down(r, reply));
        return;
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK
        && format.len == 3)
    {
        ngx_http_finalize_request(r, ngx_umlo_bulk_csv(r, reply));
        return;
    }

    list = json_array();

    for (i = 0; list != NULL && i < reply->elements; i++) {
        entry = json_loadb(reply->element[i]->str, reply->element[i]->len,
                           0, NULL);
        if (entry != NULL) {
            json_array_append_new(list, entry);
        }
    }

    entry = list ? json_pack("{s:o}", "data", list) : NULL;
    rc = entry ? ngx_umlo_send_json(r, NGX_HTTP_OK, entry)
               : NGX_HTTP_INTERNAL_SERVER_ERROR;
    json_decref(entry);

    ngx_http_finalize_request(r, rc);
}


/* one line per user of each entry; an entry without users gets one line */

static ngx_int_t
ngx_umlo_bulk_csv(ngx_http_request_t *r, redisReply *reply)
{
    u_char           *p;
    size_t            i, j, k, n, size, prefix;
    json_t           *entry, *user, *users;
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t      *out, **ll, *cl;
    ngx_table_elt_t  *h;

    static const char  header[] =
        "at,job,who,action,params,target,dry_run,state,dry_run_id,user,"
        "outcome,reason\r\n";

    static const char  *fields[] = {
        "at", "id", "who", "action", "params", "target", "dry_run", "state",
        "dry_run_id", "id", "outcome", "reason"
    };

    b = ngx_calloc_buf(r->pool);
    out = ngx_alloc_chain_link(r->pool);
    if (b == NULL || out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = (u_char *) header;
    b->last = b->pos + sizeof(header) - 1;
    b->memory = 1;
    out->buf = b;
    out->next = NULL;
    ll = &out->next;
    size = sizeof(header) - 1;

    /* one buffer per entry, sized from its cells before writing them */
    for (i = 0; i < reply->elements; i++) {
        entry = json_loadb(reply->element[i]->str, reply->element[i]->len,
                           0, NULL);
        if (entry == NULL) {
            continue;
        }

        users = json_object_get(entry, "users");
        n = json_array_size(users);

        prefix = 0;
        for (k = 0; k < 9; k++) {
            prefix += ngx_umlo_bulk_cell_size(json_object_get(entry,
                                                              fields[k]));
        }

        size = 0;

        for (j = 0; j < (n ? n : 1); j++) {
            user = json_array_get(users, j);
            size += prefix + 2;

            for (k = 9; k < 12; k++) {
                size += ngx_umlo_bulk_cell_size(json_object_get(user,
                                                                fields[k]));
            }
        }

        b = ngx_create_temp_buf(r->pool, size);
        cl = ngx_alloc_chain_link(r->pool);
        if (b == NULL || cl == NULL) {
            json_decref(entry);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = b->last;

        for (j = 0; j < (n ? n : 1); j++) {
            user = json_array_get(users, j);

            for (k = 0; k < 12; k++) {
                p = ngx_umlo_bulk_cell(p, b->end,
                                       json_object_get(k < 9 ? entry : user,
                                                       fields[k]),
                                       k > 0);
            }

            *p++ = '\r';
            *p++ = '\n';
        }

        json_decref(entry);

        b->last = p;
        cl->buf = b;
        cl->next = NULL;
        *ll = cl;
        ll = &cl->next;
    }

    size = 0;
    for (cl = out; cl; cl = cl->next) {
        size += cl->buf->last - cl->buf->pos;
        b = cl->buf;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = size;
    ngx_str_set(&r->headers_out.content_type, "text/csv; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}


/*
 * A CSV cell, quoted as RFC 4180 says when needed; a cell a spreadsheet
 * would run as a formula gets a leading quote.
 */

static u_char *
ngx_umlo_bulk_cell(u_char *p, u_char *last, json_t *value, ngx_uint_t sep)
{
    char        *dump;
    size_t       len, i, n;
    const char  *s;

    dump = NULL;
    s = "";

    if (value == NULL || json_is_null(value)) {
        /* empty */

    } else if (json_is_string(value)) {
        s = json_string_value(value);

    } else if (json_is_true(value) || json_is_false(value)) {
        s = json_is_true(value) ? "true" : "false";

    } else {
        dump = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        s = dump ? dump : "";
    }

    len = ngx_strlen(s);

    if (sep) {
        *p++ = ',';
    }

    if (len == 0) {
        free(dump);
        return p;
    }

    n = 0;
    for (i = 0; i < len; i++) {
        n += (s[i] == '"') ? 2 : 1;
    }

    if (last - p < (ssize_t) (n + 3)) {
        free(dump);
        return p;
    }

    *p++ = '"';

    if (ngx_strchr("=+-@\t\r", s[0]) != NULL) {
        *p++ = '\'';
    }

    for (i = 0; i < len; i++) {
        if (s[i] == '"') {
            *p++ = '"';
        }

        *p++ = s[i];
    }

    *p++ = '"';

    free(dump);

    return p;
}


/* the most a cell and its separator can take */

static size_t
ngx_umlo_bulk_cell_size(json_t *value)
{
    char    *dump;
    size_t   len;

    if (value == NULL || json_is_null(value)) {
        return 1;
    }

    if (json_is_string(value)) {
        len = ngx_strlen(json_string_value(value));

    } else {
        dump = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        len = dump ? ngx_strlen(dump) : 0;
        free(dump);
    }

    return 2 * len + 4;
}


static ngx_int_t
ngx_umlo_bulk_redis_down(ngx_http_request_t *r, redisReply *reply)
{
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    return ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "redis_unavailable",
                               "%s; bulk jobs are kept in Redis, check "
                               "umlo_redis and that Redis is running",
                               reply && reply->type == REDIS_REPLY_ERROR
                               ? reply->str
                               : ngx_umlo_redis_error(umcf->redis));
}


/* how many leading characters may be part of a job id */

static size_t
ngx_umlo_bulk_span(u_char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9')
              || p[i] == '-'))
        {
            break;
        }
    }

    return i;
}
