/*
 * Copyright (C) ngx_umlo authors
 *
 * Automated tasks: a saved filter (or list of users), a bulk action and
 * a schedule, kept in Redis and managed through umlo_tasks.  Each worker
 * looks for a due task every umlo_tasks_interval; a task is claimed by
 * one worker of one instance, syncs what it needs (the whole org for a
 * filter, the listed users otherwise), runs under the org lock (so never
 * during a sync or another task), applies its notice period and runs as
 * a bulk job.
 *
 * The scheduling here is a minimal stand-in: it should share the timer of
 * the daily-sync schedule (ngx_umlo_timer.c) once that exists.
 */

#ifndef _NGX_UMLO_TASK_H_INCLUDED_
#define _NGX_UMLO_TASK_H_INCLUDED_


#include "ngx_umlo_module.h"


ngx_int_t ngx_umlo_tasks_handler(ngx_http_request_t *r);

/* worker start: arms the timer when a umlo_tasks location exists */
ngx_int_t ngx_umlo_tasks_init_process(ngx_cycle_t *cycle,
    ngx_umlo_main_conf_t *umcf);


#endif /* _NGX_UMLO_TASK_H_INCLUDED_ */
