/*
 * Copyright (C) ngx_umlo authors
 *
 * What the pool-thread side of bulk jobs shares between its files:
 * plan (ngx_umlo_bulk_plan.c) reading the snapshot (_snapshot.c),
 * deciding per user (_decide.c); the run (_exec.c) re-reading users
 * (_reread.c) through one call at a time (_call.c); outcomes, the job
 * document and the audit log (_results.c); helpers (_util.c).  Nothing
 * here touches nginx memory or logs.
 */

#ifndef _NGX_UMLO_BULK_INT_H_INCLUDED_
#define _NGX_UMLO_BULK_INT_H_INCLUDED_


#include "ngx_umlo_clock.h"
#include "ngx_umlo_bulk.h"
#include "ngx_umlo_keys.h"

#include <stdio.h>


#define NGX_UMLO_BULK_MAX_RESPONSE  (4 * 1024 * 1024)


typedef struct {
    long         status;
    json_t      *json;
    char         error[NGX_UMLO_API_ERRLEN];
} ngx_umlo_bulk_call_t;


/* Lua: the org lock given back if still ours; a user into the snapshot */
extern const char  ngx_umlo_bulk_release_lua[];
extern const char  ngx_umlo_bulk_update_lua[];


/* the snapshot: generation, summary, groups, products, target users */
int ngx_umlo_bulk_current(ngx_umlo_bulk_job_t *job, json_t **summary);
int ngx_umlo_bulk_load(ngx_umlo_bulk_job_t *job);
int ngx_umlo_bulk_known(ngx_umlo_bulk_job_t *job);
int ngx_umlo_bulk_users(ngx_umlo_bulk_job_t *job);

/* per user: what to call, or why not */
json_t *ngx_umlo_bulk_items(ngx_umlo_bulk_job_t *job);
json_t *ngx_umlo_bulk_item(ngx_umlo_bulk_job_t *job, json_t *user,
    const char *id, json_t *protected);
json_t *ngx_umlo_bulk_group(ngx_umlo_bulk_job_t *job, const char *ref);

/* results */
void ngx_umlo_bulk_outcome(json_t *item, const char *outcome,
    const char *fmt, ...);
json_t *ngx_umlo_bulk_counts(json_t *items);
int ngx_umlo_bulk_save(ngx_umlo_bulk_job_t *job);
int ngx_umlo_bulk_audit(ngx_umlo_bulk_job_t *job);

/* Atlassian */
void ngx_umlo_bulk_api_conf(ngx_umlo_bulk_job_t *job,
    ngx_umlo_api_conf_t *conf);
json_t *ngx_umlo_bulk_reread(ngx_umlo_bulk_job_t *job, const char *id,
    char *err, size_t len);
int ngx_umlo_bulk_changed(json_t *old, json_t *now, char *why, size_t len);
int ngx_umlo_bulk_call(ngx_umlo_bulk_job_t *job, const char *method,
    const char *path, json_t *body, ngx_umlo_bulk_call_t *call);
void ngx_umlo_bulk_tick(void *data);

/* helpers */
void ngx_umlo_bulk_fail(ngx_umlo_bulk_job_t *job, ngx_uint_t status,
    const char *code, const char *fmt, ...);
int ngx_umlo_bulk_in(json_t *list, const char *field, const char *value);
const char *ngx_umlo_bulk_str(json_t *obj, const char *key);
int ngx_umlo_bulk_random(char *hex, size_t bytes);


#endif /* _NGX_UMLO_BULK_INT_H_INCLUDED_ */
