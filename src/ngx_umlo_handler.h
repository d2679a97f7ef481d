/*
 * Copyright (C) ngx_umlo authors
 *
 * Location handlers and the JSON answers they share.
 */

#ifndef _NGX_UMLO_HANDLER_H_INCLUDED_
#define _NGX_UMLO_HANDLER_H_INCLUDED_


#include "ngx_umlo_module.h"
#include <jansson.h>


ngx_int_t ngx_umlo_status_handler(ngx_http_request_t *r);
ngx_int_t ngx_umlo_users_handler(ngx_http_request_t *r);
ngx_int_t ngx_umlo_dashboard_handler(ngx_http_request_t *r);
ngx_int_t ngx_umlo_history_handler(ngx_http_request_t *r);
ngx_int_t ngx_umlo_prom_handler(ngx_http_request_t *r);

/* Sends a JSON document (not consumed) with the given status. */
ngx_int_t ngx_umlo_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json);

/*
 * Sends a 200 JSON document with a strong ETag; a request whose
 * If-None-Match matches gets 304 without a body instead.
 */
ngx_int_t ngx_umlo_send_json_etag(ngx_http_request_t *r, json_t *json);

/*
 * Sends a 200 JSON body (without its final newline) that stays valid
 * until the request ends, with the strong ETag "etag" (the body's
 * ngx_umlo_body_hash()) and "Cache-Control: no-cache": a client that
 * sends the ETag back in If-None-Match gets 304 without the body
 * (nginx's not_modified filter).
 */
ngx_int_t ngx_umlo_send_tagged(ngx_http_request_t *r, u_char *body,
    size_t len, uint64_t etag);

/* 64 bits that change with the body: its ETag */
uint64_t ngx_umlo_body_hash(const u_char *p, size_t len);

/*
 * Sends {"error": {"status", "code", "message"}}; the message names the
 * problem and, where it helps, what to do about it.
 */
ngx_int_t ngx_umlo_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...);

/* Cache-Control: no-store and X-Content-Type-Options: nosniff. */
ngx_int_t ngx_umlo_add_safety_headers(ngx_http_request_t *r);

/* 405 with an Allow header, e.g. allow = "GET, HEAD". */
ngx_int_t ngx_umlo_send_not_allowed(ngx_http_request_t *r,
    const char *allow);


#endif /* _NGX_UMLO_HANDLER_H_INCLUDED_ */
