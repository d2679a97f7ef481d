/*
 * Copyright (C) ngx_umlo authors
 *
 * What a state-changing request (umlo_sync) must show before it is
 * served: a JSON content type, the admin token when one is configured,
 * and a body no larger than umlo_body_max.
 */

#ifndef _NGX_UMLO_GUARD_H_INCLUDED_
#define _NGX_UMLO_GUARD_H_INCLUDED_


#include "ngx_umlo_module.h"


/*
 * NGX_OK when the request may go on; otherwise the error has been sent
 * and *rc holds the result of sending it (the caller returns it).
 */
ngx_int_t ngx_umlo_guard_request(ngx_http_request_t *r, ngx_int_t *rc);

/*
 * The request body, read by ngx_http_read_client_request_body(), as one
 * contiguous piece (from memory or its temporary file).  NGX_OK with
 * body->len == 0 when there is none; otherwise the error has been sent
 * and *rc holds the result.
 */
ngx_int_t ngx_umlo_guard_body(ngx_http_request_t *r, ngx_str_t *body,
    ngx_int_t *rc);

/* Compares a secret in time that depends only on the expected length. */
ngx_uint_t ngx_umlo_guard_equal(const u_char *expected, size_t len,
    const u_char *given, size_t given_len);


#endif /* _NGX_UMLO_GUARD_H_INCLUDED_ */
