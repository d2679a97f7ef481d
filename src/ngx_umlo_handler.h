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
 * Sends {"error": {"status", "code", "message"}}; the message names the
 * problem and, where it helps, what to do about it.
 */
ngx_int_t ngx_umlo_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...);

/* 405 with an Allow header, e.g. allow = "GET, HEAD". */
ngx_int_t ngx_umlo_send_not_allowed(ngx_http_request_t *r,
    const char *allow);


#endif /* _NGX_UMLO_HANDLER_H_INCLUDED_ */
