/*
 * Copyright (C) ngx_umlo authors
 *
 * Each worker keeps the current snapshot generation in memory for the
 * user browser and the dashboard.  A request first asks Redis which
 * generation is current (one round trip); when the worker does not hold
 * it yet, a pool thread loads it while the request waits, and every
 * request that arrives meanwhile waits for the same load.
 */

#ifndef _NGX_UMLO_CACHE_H_INCLUDED_
#define _NGX_UMLO_CACHE_H_INCLUDED_


#include "ngx_umlo_module.h"
#include "ngx_umlo_snapshot.h"


typedef struct {
    ngx_umlo_snap_t      *snap;
    ngx_uint_t            refs;
    uint64_t              summary;    /* hash of the "current" summary it
                                         was loaded with */
} ngx_umlo_snapref_t;


#define NGX_UMLO_CACHE_OK           0
#define NGX_UMLO_CACHE_NO_SNAPSHOT  1   /* no full sync has completed */
#define NGX_UMLO_CACHE_REDIS        2   /* Redis unreachable */
#define NGX_UMLO_CACHE_FAILED       3   /* loading failed */


/*
 * Called on the event loop with a reference to the current snapshot
 * (release it with ngx_umlo_cache_release()), or NULL and why.
 */
typedef void (*ngx_umlo_cache_ready_pt)(ngx_http_request_t *r,
    ngx_umlo_snapref_t *ref, ngx_uint_t rc, const char *error);


/* Returns NGX_DONE: "ready" finalizes the request later. */
ngx_int_t ngx_umlo_cache_get(ngx_http_request_t *r,
    ngx_umlo_cache_ready_pt ready);

void ngx_umlo_cache_release(ngx_umlo_snapref_t *ref);

/* worker exit: drop the snapshot */
void ngx_umlo_cache_exit(void);


#endif /* _NGX_UMLO_CACHE_H_INCLUDED_ */
