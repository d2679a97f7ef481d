/*
 * Copyright (C) ngx_umlo authors
 *
 * The parts of automated tasks that their files share: the API
 * (ngx_umlo_task.c), the timer and a run (ngx_umlo_task_run.c), and a
 * run's notice list, record and event (ngx_umlo_task_record.c).
 */

#ifndef _NGX_UMLO_TASK_INT_H_INCLUDED_
#define _NGX_UMLO_TASK_INT_H_INCLUDED_


#include "ngx_umlo_clock.h"
#include "ngx_umlo_task.h"
#include "ngx_umlo_bulk.h"
#include "ngx_umlo_keys.h"


#define NGX_UMLO_TASK_CLAIM_MS   600000   /* a claimed run's slot */
#define NGX_UMLO_TASK_RETRY_MS   60000    /* org busy: try again then */
#define NGX_UMLO_TASK_WATCH_MS   250
#define NGX_UMLO_TASK_EVERY_MIN  60       /* seconds */


/* the users a run may act on: notice period applied (job->ids) */
int ngx_umlo_task_notice(ngx_umlo_bulk_job_t *job);

/* the run's outcome into the task, its next run, and its event */
void ngx_umlo_task_record(ngx_umlo_bulk_job_t *job);

/* {"every": seconds}: from now; {"daily": "HH:MM"}: the next one, UTC */
long long ngx_umlo_task_next(json_t *schedule, long long now_ms);


#endif /* _NGX_UMLO_TASK_INT_H_INCLUDED_ */
