/*
 * Copyright (C) ngx_umlo authors
 *
 * Checks on state-changing requests.  A browser can send a cross-site
 * POST without asking the server first only with a form content type
 * (urlencoded, multipart, text/plain), so requiring application/json
 * keeps a web page from starting syncs with a visitor's credentials.
 */


#include "ngx_umlo_guard.h"
#include "ngx_umlo_handler.h"


static ngx_int_t ngx_umlo_guard_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *fmt, ...);
static ngx_uint_t ngx_umlo_guard_is_json(ngx_table_elt_t *h);
static ngx_table_elt_t *ngx_umlo_guard_header(ngx_http_request_t *r,
    ngx_str_t *name);


static ngx_str_t  ngx_umlo_guard_token_header =
    ngx_string("X-Umlo-Admin-Token");


ngx_int_t
ngx_umlo_guard_request(ngx_http_request_t *r, ngx_int_t *rc)
{
    ngx_table_elt_t       *h;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    if (umcf->admin_token.len) {
        h = ngx_umlo_guard_header(r, &ngx_umlo_guard_token_header);

        if (h == NULL
            || !ngx_umlo_guard_equal(umcf->admin_token.data,
                                     umcf->admin_token.len,
                                     h->value.data, h->value.len))
        {
            *rc = ngx_umlo_guard_refuse(r, NGX_HTTP_UNAUTHORIZED,
                                         "unauthorized",
                                         "this location needs the admin "
                                         "token (umlo_admin_token_file) "
                                         "in the X-Umlo-Admin-Token "
                                         "header");
            return NGX_ERROR;
        }
    }

    h = r->headers_in.content_type;

    if (r->method == NGX_HTTP_POST
        ? !ngx_umlo_guard_is_json(h)
        : (h != NULL && !ngx_umlo_guard_is_json(h)))
    {
        *rc = ngx_umlo_guard_refuse(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                    "unsupported_media_type",
                                    "send \"Content-Type: "
                                    "application/json\" (also with an "
                                    "empty body), so that a web form "
                                    "cannot change state");
        return NGX_ERROR;
    }

    if (r->method == NGX_HTTP_POST
        && r->headers_in.content_length_n > (off_t) umcf->body_max)
    {
        *rc = ngx_umlo_guard_refuse(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "body_too_large",
                                    "the body has %O bytes; at most %uz "
                                    "are accepted (umlo_body_max)",
                                    r->headers_in.content_length_n,
                                    umcf->body_max);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_umlo_guard_body(ngx_http_request_t *r, ngx_str_t *body, ngx_int_t *rc)
{
    off_t                  size;
    u_char                *p;
    ssize_t                n;
    ngx_buf_t             *b;
    ngx_chain_t           *cl;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    body->len = 0;
    body->data = NULL;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    /* a chunked body has no Content-Length to check in advance */
    if (r->request_body->temp_file) {
        size = r->request_body->temp_file->file.offset;

    } else {
        size = 0;
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            size += ngx_buf_size(cl->buf);
        }
    }

    if (size > (off_t) umcf->body_max) {
        *rc = ngx_umlo_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "body_too_large",
                                  "the body has %O bytes; at most %uz are "
                                  "accepted (umlo_body_max)",
                                  size, umcf->body_max);
        return NGX_ERROR;
    }

    if (size == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, (size_t) size);
    if (p == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_ERROR;
    }

    body->data = p;
    body->len = (size_t) size;

    if (r->request_body->temp_file) {
        n = ngx_read_file(&r->request_body->temp_file->file, p,
                          (size_t) size, 0);
        if (n != (ssize_t) size) {
            *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            /* a body partly in memory, partly in a file is not expected */
            *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return NGX_ERROR;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    return NGX_OK;
}


ngx_uint_t
ngx_umlo_guard_equal(const u_char *expected, size_t len, const u_char *given,
    size_t given_len)
{
    size_t      i;
    ngx_uint_t  diff;

    diff = (len != given_len);

    for (i = 0; i < len; i++) {
        diff |= expected[i] ^ (i < given_len ? given[i] : 0);
    }

    return diff == 0;
}


static ngx_int_t
ngx_umlo_guard_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    u_char     msg[NGX_MAX_ERROR_STR], *p;
    va_list    args;
    ngx_int_t  rc;

    /* a refused body must not be read as the next request */
    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg) - 1, fmt, args);
    va_end(args);
    *p = '\0';

    return ngx_umlo_send_error(r, status, code, "%s", msg);
}


static ngx_uint_t
ngx_umlo_guard_is_json(ngx_table_elt_t *h)
{
    u_char  *p, *last;
    size_t   n;

    if (h == NULL) {
        return 0;
    }

    p = h->value.data;
    last = p + h->value.len;
    n = sizeof("application/json") - 1;

    if ((size_t) (last - p) < n
        || ngx_strncasecmp(p, (u_char *) "application/json", n) != 0)
    {
        return 0;
    }

    p += n;

    return p == last || *p == ';' || *p == ' ' || *p == '\t';
}


static ngx_table_elt_t *
ngx_umlo_guard_header(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
        {
            return &h[i];
        }
    }
}
