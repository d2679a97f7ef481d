/*
 * Copyright (C) ngx_umlo authors
 *
 * Each worker's cache of filtered lists (ngx_umlo_query.h): for a
 * loaded snapshot and a query key, the ordered matching rows, so that a
 * later page, a repeat or another inactive_days value of a query costs a
 * page rather than a pass over every user.  A miss is filtered in the
 * thread pool, off the event loop; identical queries arriving meanwhile
 * wait for that one list.  Bounded in bytes (umlo_users_cache), least
 * recently used out first; a newer snapshot empties it.
 */

#ifndef _NGX_UMLO_RESULTS_H_INCLUDED_
#define _NGX_UMLO_RESULTS_H_INCLUDED_


#include "ngx_umlo_module.h"
#include "ngx_umlo_cache.h"
#include "ngx_umlo_query.h"


typedef struct ngx_umlo_result_s  ngx_umlo_result_t;


/* the list is ready ("res" is a reference), or could not be made (NULL) */
typedef void (*ngx_umlo_results_pt)(ngx_http_request_t *r,
    ngx_umlo_result_t *res);


#define NGX_UMLO_RESULTS_HIT    0   /* in the cache */
#define NGX_UMLO_RESULTS_MISS   1   /* filtered for this request */
#define NGX_UMLO_RESULTS_WAIT   2   /* waited for another's filtering */


/*
 * The list of query "q", parsed from the request's arguments at "now",
 * on the request's snapshot "ref"; *how says where it came from (set
 * before "done" may run).  NGX_OK: a hit, *res is a reference.
 * NGX_AGAIN: "done" is called when the list is ready (possibly before
 * this returns).  NGX_ERROR: out of memory.
 */
ngx_int_t ngx_umlo_results_get(ngx_http_request_t *r,
    ngx_umlo_snapref_t *ref, ngx_umlo_query_t *q, int64_t now,
    ngx_umlo_results_pt done, ngx_umlo_result_t **res, ngx_uint_t *how);

const ngx_umlo_query_rows_t *ngx_umlo_results_rows(ngx_umlo_result_t *res);


/*
 * The last pages written from a list are kept with it (within the same
 * memory bound), so that a repeated request costs neither the page nor
 * its ETag.  A page is shared: each user holds a reference.
 */
typedef struct {
    uint64_t                  id[3];      /* ngx_umlo_query_page_id() */
    u_char                   *text;       /* malloc()ed */
    size_t                    len;
    uint64_t                  etag;       /* ngx_umlo_body_hash() */
    ngx_uint_t                refs;
} ngx_umlo_result_page_t;


/* the page "id" of the list, a reference; NULL when not kept */
ngx_umlo_result_page_t *ngx_umlo_results_page(ngx_umlo_result_t *res,
    const uint64_t id[3]);

/*
 * Makes "text" (malloc()ed, given up by the caller) page "id" of the
 * list, kept with it when the list is cached; a reference, or NULL when
 * memory runs out (the text is then freed).
 */
ngx_umlo_result_page_t *ngx_umlo_results_add_page(ngx_umlo_result_t *res,
    const uint64_t id[3], u_char *text, size_t len);

void ngx_umlo_results_page_release(ngx_umlo_result_page_t *page);

void ngx_umlo_results_release(ngx_umlo_result_t *res);

/* worker exit */
void ngx_umlo_results_exit(void);


#endif /* _NGX_UMLO_RESULTS_H_INCLUDED_ */
