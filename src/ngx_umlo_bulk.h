/*
 * Copyright (C) ngx_umlo authors
 *
 * Bulk operations: umlo_bulk plans a job (an action and its users) in a
 * pool thread, answers a dry run with the plan and a token, and runs a
 * job in a second pool task that holds the org lock, so that it never
 * overlaps a sync.  The job owns copies of everything its threads need.
 */

#ifndef _NGX_UMLO_BULK_H_INCLUDED_
#define _NGX_UMLO_BULK_H_INCLUDED_


#include "ngx_umlo_module.h"
#include "ngx_umlo_store.h"
#include "ngx_umlo_model.h"
#include "ngx_umlo_atlassian.h"


#define NGX_UMLO_BULK_ID_LEN     48
#define NGX_UMLO_BULK_ERR_LEN    512


typedef struct {
    /* inputs, immutable once a task is posted */
    char                    *org;
    char                    *api_base;
    char                    *api_key;         /* wiped when the job ends */
    ngx_umlo_store_conf_t    redis;
    unsigned                 timeout_ms;
    unsigned                 retries;
    unsigned                 lease_ms;
    unsigned                 max_users;
    unsigned                 token_ttl_ms;
    unsigned                 retention_s;
    unsigned                 audit_max;
    long long                max_age_s;
    json_t                  *protected;       /* group ids or names */

    json_t                  *request;         /* action, params, target */
    json_t                  *ids;             /* target account ids */
    char                    *token_in;        /* executes a dry run */
    char                     actor[128];
    unsigned                 dry_run:1;
    unsigned                 force:1;
    unsigned                 execute:1;       /* plan done: run it */
    unsigned                 locked:1;        /* a task took the lock */
    unsigned                 presynced:1;     /* users just re-read */
    json_t                  *run_of;          /* the task run, or NULL */
    struct ngx_umlo_job_s   *sync;            /* a task's full sync first */
    json_t                  *event;           /* a task run's webhook
                                                 event, or NULL */
    ngx_uint_t               event_type;      /* NGX_UMLO_EV_TASK_* */

    char                     id[NGX_UMLO_BULK_ID_LEN];
    char                     lock[2 * NGX_UMLO_BULK_ID_LEN];

    volatile int             cancel;

    /* the plan task's answer, read on the event loop */
    ngx_uint_t               status;          /* HTTP status */
    char                     code[32];
    char                     error[NGX_UMLO_BULK_ERR_LEN];
    json_t                  *doc;             /* the job document */

    /* the thread's working state */
    ngx_umlo_store_t         store;
    ngx_umlo_model_t         model;
    ngx_umlo_api_t          *api;
    json_t                  *docs;            /* id -> snapshot user */
    long long                gen;
    long long                rev;
    long long                renewed_ms;

    /* event loop side */
    ngx_pool_t              *pool;
    ngx_log_t               *log;
    ngx_thread_task_t       *task;
    ngx_event_t              watch;
    ngx_http_request_t      *r;
} ngx_umlo_bulk_job_t;


ngx_int_t ngx_umlo_bulk_handler(ngx_http_request_t *r);

/* GET below the location: jobs/ID, audit (ngx_umlo_bulk_read.c) */
ngx_int_t ngx_umlo_bulk_get(ngx_http_request_t *r, ngx_str_t *path);

/* a job with the configuration's copies; r (or NULL) names who asked */
ngx_umlo_bulk_job_t *ngx_umlo_bulk_job_create(ngx_http_request_t *r,
    ngx_umlo_main_conf_t *umcf);
void ngx_umlo_bulk_job_free(ngx_umlo_bulk_job_t *job);

/* the part of the URI below the location, without leading slashes */
void ngx_umlo_bulk_path(ngx_http_request_t *r, ngx_str_t *rest);

/* the request body in one piece (r->request_body->bufs is not NULL) */
ngx_int_t ngx_umlo_bulk_read_body(ngx_http_request_t *r, u_char **body,
    size_t *len);

/*
 * A job's action, params and target from a JSON object, as POST takes
 * them; NGX_DECLINED when valid, else a 4xx was sent and the result is
 * what to finalize the request with.
 */
ngx_int_t ngx_umlo_bulk_parse_body(ngx_http_request_t *r,
    ngx_umlo_bulk_job_t *job, json_t *body);

/* pool threads (ngx_umlo_bulk_plan.c, ngx_umlo_bulk_exec.c) */
void ngx_umlo_bulk_plan(ngx_umlo_bulk_job_t *job);
void ngx_umlo_bulk_exec(ngx_umlo_bulk_job_t *job);

/*
 * While the caller holds the org lock: the users of job->ids as Atlassian
 * has them now replace theirs in the current generation; 0 or -1 with
 * job->error.
 */
int ngx_umlo_bulk_presync(ngx_umlo_bulk_job_t *job);


#endif /* _NGX_UMLO_BULK_H_INCLUDED_ */
