/*
 * Copyright (C) ngx_umlo authors
 *
 * Bulk jobs: one Atlassian call at a time, run to its end, and the
 * lease of the org lock renewed while calls wait.
 */


#include "ngx_umlo_bulk_int.h"

#include <string.h>


static void ngx_umlo_bulk_done(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req);


/* the client of a job: one call at a time, paced, stopped with the job */

void
ngx_umlo_bulk_api_conf(ngx_umlo_bulk_job_t *job, ngx_umlo_api_conf_t *conf)
{
    memset(conf, 0, sizeof(ngx_umlo_api_conf_t));
    conf->base_url = job->api_base;
    conf->api_key = job->api_key;
    conf->max_concurrency = 1;
    conf->timeout_ms = job->timeout_ms;
    conf->connect_timeout_ms = 10000;
    conf->max_retries = job->retries;
    conf->backoff_ms = 500;
    conf->backoff_max_ms = 30000;
    conf->max_response = NGX_UMLO_BULK_MAX_RESPONSE;
    conf->cancel = &job->cancel;
    conf->tick = ngx_umlo_bulk_tick;
    conf->tick_data = job;
    conf->tick_ms = 1000;
}


/* one API call, run to its end; -1 when the client was stopped */

int
ngx_umlo_bulk_call(ngx_umlo_bulk_job_t *job, const char *method,
    const char *path, json_t *body, ngx_umlo_bulk_call_t *call)
{
    int  klass;

    memset(call, 0, sizeof(ngx_umlo_bulk_call_t));

    klass = NGX_UMLO_API_ADMIN;

    if (ngx_umlo_api_submit(job->api, klass, method, path, body,
                            ngx_umlo_bulk_done, call)
        == NULL)
    {
        return -1;
    }

    if (ngx_umlo_api_run(job->api) != 0) {
        json_decref(call->json);
        call->json = NULL;

        if (!job->cancel) {
            /* the client only accepts destroy now: stop the job */
            job->cancel = 1;
        }

        return -1;
    }

    return 0;
}


/* also from the client while a call waits: a slow call keeps the lock */

void
ngx_umlo_bulk_tick(void *data)
{
    ngx_umlo_bulk_job_t  *job = data;

    if (job->error[0] != '\0'
        || ngx_umlo_clock_ms() - job->renewed_ms < job->lease_ms / 3)
    {
        return;
    }

    if (ngx_umlo_store_renew(&job->store, job->lock, job->lease_ms) != 1) {
        snprintf(job->error, sizeof(job->error), "the org lock was lost "
                 "(Redis unreachable or too slow?)");

        if (job->api != NULL) {
            ngx_umlo_api_abort(job->api, "%s", job->error);
        }

        return;
    }

    job->renewed_ms = ngx_umlo_clock_ms();
}


static void
ngx_umlo_bulk_done(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    ngx_umlo_bulk_call_t  *call = req->data;

    call->status = req->status;
    call->json = req->json;
    req->json = NULL;

    if (req->cancelled && req->error[0] == '\0') {
        snprintf(call->error, sizeof(call->error), "cancelled");

    } else {
        snprintf(call->error, sizeof(call->error), "%s", req->error);
    }
}
