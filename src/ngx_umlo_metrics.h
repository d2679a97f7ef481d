/*
 * Copyright (C) ngx_umlo authors
 *
 * Dashboard metrics of a snapshot, computed once when the snapshot is
 * built (in a pool thread), never per request.  Plain C with jansson.
 */

#ifndef _NGX_UMLO_METRICS_H_INCLUDED_
#define _NGX_UMLO_METRICS_H_INCLUDED_


#include "ngx_umlo_snapshot.h"


/* billable users idle this long anywhere are the licence-waste figure */
#define NGX_UMLO_WASTE_DAYS  90


json_t *ngx_umlo_metrics_build(ngx_umlo_snap_t *snap, int64_t now_ms);


#endif /* _NGX_UMLO_METRICS_H_INCLUDED_ */
