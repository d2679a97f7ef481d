/*
 * Copyright (C) ngx_umlo authors
 *
 * The API client's rate-limit estimate, kept in Redis between the runs of
 * one org (syncs, activity refreshes, bulk jobs), so that a run starts at
 * full concurrency instead of probing with a single request.
 */

#ifndef _NGX_UMLO_PACE_H_INCLUDED_
#define _NGX_UMLO_PACE_H_INCLUDED_


#include "ngx_umlo_atlassian.h"
#include "ngx_umlo_store.h"


/* before ngx_umlo_api_run(); nothing stored or unreadable: no harm */
void ngx_umlo_pace_load(ngx_umlo_store_t *st, ngx_umlo_api_t *api);

/* after the run: what each class has learned */
void ngx_umlo_pace_save(ngx_umlo_store_t *st, ngx_umlo_api_t *api);


#endif /* _NGX_UMLO_PACE_H_INCLUDED_ */
