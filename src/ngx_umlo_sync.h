/*
 * Copyright (C) ngx_umlo authors
 *
 * A sync job: started by umlo_sync (or a timer) on the event loop, run in
 * a thread-pool task, finished back on the event loop.  The job owns a
 * copy of everything the thread needs, so a reload cannot pull
 * configuration out from under a running sync.
 */

#ifndef _NGX_UMLO_SYNC_H_INCLUDED_
#define _NGX_UMLO_SYNC_H_INCLUDED_


#include "ngx_umlo_module.h"
#include "ngx_umlo_store.h"
#include "ngx_umlo_model.h"
#include "ngx_umlo_atlassian.h"


#define NGX_UMLO_ID_LEN      40
#define NGX_UMLO_ERROR_LEN   512


typedef struct ngx_umlo_job_s  ngx_umlo_job_t;

struct ngx_umlo_job_s {
    /* inputs, immutable once the task is posted */
    char                    *org;
    char                    *api_base;
    char                    *api_key;         /* wiped when the job ends */
    ngx_umlo_store_conf_t    redis;
    unsigned                 concurrency;
    unsigned                 timeout_ms;
    unsigned                 retries;
    unsigned                 lease_ms;
    unsigned                 grace_ms;
    unsigned                 history;
    long long                key_expires;     /* unix time, 0: unknown */
    char                     id[NGX_UMLO_ID_LEN];
    char                     token[2 * NGX_UMLO_ID_LEN]; /* lock value */
    const char              *trigger;         /* manual, scheduled, ... */
    json_t                  *users;           /* selective: account ids */
    json_t                  *doc;             /* the sync's status JSON */

    volatile int             cancel;          /* stop as soon as possible */

    /* the thread's working state */
    ngx_umlo_store_t         store;
    ngx_umlo_api_t          *api;
    ngx_umlo_model_t         model;
    long long                gen;
    long long                started_ms;
    long long                renewed_ms;
    long long                reported_ms;
    unsigned                 prereq_pending;  /* workspaces, groups and
                                                 grant chains: users wait */
    json_t                  *grant_queue;     /* [group id, directory] */
    json_t                  *pending;         /* users pages to store */
    json_t                  *unstaged;        /* staged pages read back,
                                                 not yet converted */
    json_t                  *unstaging;       /* the page being converted */
    size_t                   unstage_next;    /* its next user */
    size_t                   grant_next;      /* first not yet started */
    unsigned                 grants_active;   /* grant chains in flight */
    unsigned                 users_active;    /* users chains walking */
    unsigned                 lists_active;    /* workspaces, groups and
                                                 total requests walking */
    unsigned                 prereq_done:1;
    unsigned                 staged:1;
    unsigned                 cancel_seen:1;
    uint64_t                 users_fetched;   /* progress: users read */
    uint64_t                 users_done;      /* users written */
    uint64_t                 users_expected;
    uint64_t                 groups;
    uint64_t                 api_calls_base;

    /* the outcome, read by the event loop when the task completes */
    const char              *state;           /* succeeded, failed, ... */
    char                     error[NGX_UMLO_ERROR_LEN];
    char                     where[128];
    unsigned                 store_failed:1;  /* status could not be saved */

    /* event loop side */
    ngx_pool_t              *pool;
    ngx_log_t               *log;
    ngx_thread_task_t       *task;
    ngx_event_t              watch;           /* keeps a quitting worker */
};


ngx_int_t ngx_umlo_sync_handler(ngx_http_request_t *r);

/*
 * A job not tied to a request (tasks, timers).  The caller takes the org
 * lock with the job's token and document (ngx_umlo_sync_start_lua: KEYS
 * lock, status, cancel; ARGV token, lease, document), and on a failure
 * after that gives it back with ngx_umlo_sync_release().
 */
extern const char  ngx_umlo_sync_start_lua[];

ngx_umlo_job_t *ngx_umlo_sync_job(ngx_umlo_main_conf_t *umcf,
    const char *trigger);
void ngx_umlo_sync_release(ngx_umlo_job_t *job, ngx_umlo_main_conf_t *umcf);
void ngx_umlo_sync_free(ngx_umlo_job_t *job);

/* The thread's work: full or selective sync (ngx_umlo_fetch.c). */
void ngx_umlo_fetch_run(ngx_umlo_job_t *job);


#endif /* _NGX_UMLO_SYNC_H_INCLUDED_ */
