/*
 * Copyright (C) ngx_umlo authors
 *
 * Redis from the event loop: one hiredis async connection per worker,
 * driven by nginx events.  Every command gets exactly one callback: with
 * the reply, or with NULL when Redis is unreachable, the connection drops
 * or umlo_redis_timeout passes first.
 */

#ifndef _NGX_UMLO_REDIS_H_INCLUDED_
#define _NGX_UMLO_REDIS_H_INCLUDED_


#include "ngx_umlo_module.h"
#include <hiredis/hiredis.h>


typedef void (*ngx_umlo_redis_reply_pt)(redisReply *reply, void *data);


ngx_umlo_redis_t *ngx_umlo_redis_create(ngx_cycle_t *cycle,
    ngx_umlo_main_conf_t *umcf);
void ngx_umlo_redis_destroy(ngx_umlo_redis_t *rd);

/*
 * Queues a command built from argv; returns NGX_ERROR (and does not call
 * the callback) only when memory runs out or Redis is known to be down, so
 * that the caller answers 503 at once.
 */
ngx_int_t ngx_umlo_redis_command(ngx_umlo_redis_t *rd,
    ngx_umlo_redis_reply_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen);

/* Same, with a hiredis format string: only for trusted formats. */
ngx_int_t ngx_umlo_redis_commandf(ngx_umlo_redis_t *rd,
    ngx_umlo_redis_reply_pt handler, void *data, const char *fmt, ...);

/* The last connection error, for the error JSON ("" when none). */
const char *ngx_umlo_redis_error(ngx_umlo_redis_t *rd);

/* Errors this worker met (connection, timeout, refusal) since it started. */
ngx_uint_t ngx_umlo_redis_errors(ngx_umlo_redis_t *rd);


#endif /* _NGX_UMLO_REDIS_H_INCLUDED_ */
