/*
 * Copyright (C) ngx_umlo authors
 *
 * JSON responses shared by every location handler.
 */


#include "ngx_umlo_handler.h"
#include "ngx_umlo_utf8.h"
#include <ngx_md5.h>


#define NGX_UMLO_ERROR_MAX  512


static ngx_int_t ngx_umlo_send_json_ext(ngx_http_request_t *r,
    ngx_uint_t status, json_t *json, ngx_uint_t etag);
static ngx_int_t ngx_umlo_add_header(ngx_http_request_t *r, const char *name,
    const char *value);
static ngx_int_t ngx_umlo_set_etag(ngx_http_request_t *r, u_char *text,
    size_t len);


ngx_int_t
ngx_umlo_send_json(ngx_http_request_t *r, ngx_uint_t status, json_t *json)
{
    return ngx_umlo_send_json_ext(r, status, json, 0);
}


ngx_int_t
ngx_umlo_send_json_etag(ngx_http_request_t *r, json_t *json)
{
    return ngx_umlo_send_json_ext(r, NGX_HTTP_OK, json, 1);
}


static ngx_int_t
ngx_umlo_send_json_ext(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json, ngx_uint_t etag)
{
    char         *text;
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    text = json_dumps(json, JSON_COMPACT);
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, text, len);
    *b->last++ = '\n';
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    free(text);

    if (etag && ngx_umlo_set_etag(r, b->pos, b->last - b->pos) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    /* dashboards poll: every answer is current state, never cached */
    if (ngx_umlo_add_safety_headers(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_umlo_send_tagged(ngx_http_request_t *r, u_char *body, size_t len,
    uint64_t etag)
{
    u_char            *tag;
    ngx_int_t          rc;
    ngx_buf_t         *b, *nl;
    ngx_chain_t        out[2];
    ngx_table_elt_t   *h;
    static u_char      newline[] = "\n";

    tag = ngx_pnalloc(r->pool, sizeof("\"0123456789abcdef\"") - 1);
    b = ngx_calloc_buf(r->pool);
    nl = ngx_calloc_buf(r->pool);
    h = ngx_list_push(&r->headers_out.headers);

    if (tag == NULL || b == NULL || nl == NULL || h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "ETag");
    h->value.data = tag;
    h->value.len = ngx_sprintf(tag, "\"%016uxL\"", etag) - tag;
    r->headers_out.etag = h;

    /* revalidated on every use, so still always current */
    if (ngx_umlo_add_header(r, "Cache-Control", "no-cache") != NGX_OK
        || ngx_umlo_add_header(r, "X-Content-Type-Options", "nosniff")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len + 1;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = 1;

    nl->pos = newline;
    nl->last = newline + 1;
    nl->memory = 1;
    nl->last_buf = (r == r->main) ? 1 : 0;
    nl->last_in_chain = 1;

    out[0].buf = b;
    out[0].next = &out[1];
    out[1].buf = nl;
    out[1].next = NULL;

    return ngx_http_output_filter(r, &out[0]);
}


/*
 * 64 bits a word at a time: an ETag needs only to change with the body,
 * and a page is a quarter of a megabyte.
 */

uint64_t
ngx_umlo_body_hash(const u_char *p, size_t len)
{
    uint64_t  h, w;

    h = 0x9e3779b97f4a7c15ULL ^ len;

    for ( /* void */ ; len >= 8; p += 8, len -= 8) {
        ngx_memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 31;
    }

    w = 0;
    ngx_memcpy(&w, p, len);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 29;

    return h;
}


ngx_int_t
ngx_umlo_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    u_char     msg[NGX_UMLO_ERROR_MAX], *p;
    va_list    args;
    json_t    *json;
    ngx_int_t  rc;

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg) - 1, fmt, args);
    va_end(args);

    if (p == msg + sizeof(msg) - 1) {
        /* cut short: do not end inside a UTF-8 sequence */
        while (p > msg && (p[-1] & 0xc0) == 0x80) {
            p--;
        }

        if (p > msg && p[-1] >= 0xc0) {
            p--;
        }
    }

    *p = '\0';

    /* a client's bytes quoted back (a parser's "near '...'") may not be text */
    ngx_umlo_utf8_clean((char *) msg, 0);

    json = json_pack("{s:{s:i,s:s,s:s}}", "error",
                     "status", (json_int_t) status,
                     "code", code,
                     "message", (char *) msg);
    if (json == NULL) {
        /* out of memory: answer without the detail */
        json = json_pack("{s:{s:i,s:s}}", "error", "status",
                         (json_int_t) status, "code", code);
        if (json == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_umlo_send_json(r, status, json);
    json_decref(json);

    return rc;
}


ngx_int_t
ngx_umlo_add_safety_headers(ngx_http_request_t *r)
{
    /* never cached; never sniffed into HTML by a browser */
    if (ngx_umlo_add_header(r, "Cache-Control", "no-store") != NGX_OK
        || ngx_umlo_add_header(r, "X-Content-Type-Options", "nosniff")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_umlo_send_not_allowed(ngx_http_request_t *r, const char *allow)
{
    if (ngx_umlo_add_header(r, "Allow", allow) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_umlo_send_error(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
                               "method %V is not allowed here; use %s",
                               &r->method_name, allow);
}


static ngx_int_t
ngx_umlo_add_header(ngx_http_request_t *r, const char *name,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


/*
 * A strong ETag from the body's MD5: nginx's not-modified filter then
 * answers a matching If-None-Match with 304 and no body, so an idle
 * dashboard's poll costs one Redis round trip and a few header bytes.
 */
static ngx_int_t
ngx_umlo_set_etag(ngx_http_request_t *r, u_char *text, size_t len)
{
    u_char            *p, digest[16];
    ngx_md5_t          md5;
    ngx_table_elt_t   *h;

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, text, len);
    ngx_md5_final(digest, &md5);

    p = ngx_pnalloc(r->pool, 2 + 2 * sizeof(digest));
    if (p == NULL) {
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "ETag");
    h->value.data = p;
    *p++ = '"';
    p = ngx_hex_dump(p, digest, sizeof(digest));
    *p++ = '"';
    h->value.len = p - h->value.data;

    r->headers_out.etag = h;

    return NGX_OK;
}
