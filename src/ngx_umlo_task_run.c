/*
 * Copyright (C) ngx_umlo authors
 *
 * Tasks: the per-worker timer that claims a due task, and a run in a pool
 * thread: the sync the task needs first, the org lock, its users, the
 * notice period, then the bulk job's plan and run.
 */


#include "ngx_umlo_task_int.h"
#include "ngx_umlo_sync.h"
#include "ngx_umlo_webhook.h"
#include "ngx_umlo_redis.h"
#include "ngx_umlo_snapshot.h"
#include "ngx_umlo_query.h"


/* the first due task, pushed on so that no one else takes it meanwhile */
static const char  ngx_umlo_task_claim_lua[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1],"
    " 'LIMIT', 0, 1)"
    " if #due == 0 then return false end"
    " local t = redis.call('HGET', KEYS[2], due[1])"
    " if not t then redis.call('ZREM', KEYS[1], due[1]) return false end"
    " redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], due[1])"
    " return t";


static void ngx_umlo_task_tick(ngx_event_t *ev);
static void ngx_umlo_task_claimed(redisReply *reply, void *data);
static void ngx_umlo_task_thread(void *data, ngx_log_t *log);
static void ngx_umlo_task_finished(ngx_event_t *ev);
static void ngx_umlo_task_watch(ngx_event_t *ev);
static int ngx_umlo_task_sync(ngx_umlo_bulk_job_t *job);
static int ngx_umlo_task_match(ngx_umlo_bulk_job_t *job);


static ngx_event_t   ngx_umlo_task_timer;
static ngx_uint_t    ngx_umlo_task_busy;


/* ------------------------------------------------------------ the timer */

ngx_int_t
ngx_umlo_tasks_init_process(ngx_cycle_t *cycle, ngx_umlo_main_conf_t *umcf)
{
    if (!umcf->tasks_used) {
        return NGX_OK;
    }

    ngx_umlo_task_timer.handler = ngx_umlo_task_tick;
    ngx_umlo_task_timer.log = cycle->log;
    ngx_umlo_task_timer.data = umcf;
    ngx_umlo_task_timer.cancelable = 1;

    /* workers and instances look at different moments */
    ngx_add_timer(&ngx_umlo_task_timer,
                  umcf->tasks_interval / 2
                  + ngx_random() % (umcf->tasks_interval / 2 + 1));

    return NGX_OK;
}


static void
ngx_umlo_task_tick(ngx_event_t *ev)
{
    ngx_umlo_main_conf_t  *umcf = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(ev, umcf->tasks_interval);

    if (ngx_umlo_task_busy || umcf->redis == NULL) {
        return;
    }

    ngx_umlo_task_busy = 1;

    if (ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_task_claimed, umcf,
                                "EVAL %s 2 " NGX_UMLO_KEY_TASKS_DUE " "
                                NGX_UMLO_KEY_TASKS " %lld %d",
                                ngx_umlo_task_claim_lua, umcf->org.data,
                                umcf->org.data,
                                (long long) ngx_umlo_clock_ms(),
                                NGX_UMLO_TASK_CLAIM_MS)
        != NGX_OK)
    {
        ngx_umlo_task_busy = 0;
    }
}


static void
ngx_umlo_task_claimed(redisReply *reply, void *data)
{
    ngx_umlo_main_conf_t  *umcf = data;

    json_t               *task, *users;
    ngx_umlo_bulk_job_t  *job;

    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        ngx_umlo_task_busy = 0;
        return;
    }

    task = json_loadb(reply->str, reply->len, 0, NULL);
    job = task ? ngx_umlo_bulk_job_create(NULL, umcf) : NULL;

    if (job == NULL) {
        json_decref(task);
        ngx_umlo_task_busy = 0;
        return;
    }

    job->run_of = task;
    users = json_object_get(task, "users");
    users = json_is_array(users) ? users : NULL;
    job->request = json_pack("{s:O,s:O,s:{s:O}}",
                             "action", json_object_get(task, "action"),
                             "params", json_object_get(task, "params"),
                             "target", users ? "users" : "filter",
                             users ? users : json_object_get(task, "filter"));

    if (users != NULL) {
        job->ids = json_deep_copy(users);

    } else {
        /* a filter can newly match anyone: the whole org is synced first */
        job->sync = ngx_umlo_sync_job(umcf, "task");

        if (job->sync == NULL
            || json_object_set_new(job->sync->doc, "task",
                                   json_pack("{s:O,s:O}",
                                             "id", json_object_get(task, "id"),
                                             "name", json_object_get(task,
                                                                     "name")))
               != 0)
        {
            if (job->sync != NULL) {
                ngx_umlo_sync_free(job->sync);
            }

            ngx_umlo_bulk_job_free(job);
            ngx_umlo_task_busy = 0;
            return;
        }
    }

    ngx_snprintf((u_char *) job->actor, sizeof(job->actor) - 1, "task:%s%Z",
                 json_string_value(json_object_get(task, "name")));

    job->task->handler = ngx_umlo_task_thread;
    job->task->event.handler = ngx_umlo_task_finished;
    job->task->event.data = job;

    if (job->request == NULL
        || ngx_thread_task_post(umcf->thread_pool, job->task) != NGX_OK)
    {
        /* the claim lapses and another look takes it again */
        if (job->sync != NULL) {
            ngx_umlo_sync_free(job->sync);
        }

        ngx_umlo_bulk_job_free(job);
        ngx_umlo_task_busy = 0;
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, job->log, 0, "umlo: task %s run %s started",
                  json_string_value(json_object_get(task, "id")), job->id);

    job->watch.handler = ngx_umlo_task_watch;
    job->watch.data = job;
    job->watch.log = job->log;
    ngx_add_timer(&job->watch, NGX_UMLO_TASK_WATCH_MS);
}


static void
ngx_umlo_task_watch(ngx_event_t *ev)
{
    ngx_umlo_bulk_job_t  *job = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        job->cancel = 1;

        if (job->sync != NULL) {
            job->sync->cancel = 1;
        }
    }

    ngx_add_timer(&job->watch, NGX_UMLO_TASK_WATCH_MS);
}


static void
ngx_umlo_task_finished(ngx_event_t *ev)
{
    ngx_umlo_bulk_job_t  *job = ev->data;

    ngx_uint_t             level;
    ngx_umlo_job_t        *sync;
    ngx_umlo_main_conf_t  *umcf;

    if (job->watch.timer_set) {
        ngx_del_timer(&job->watch);
    }

    sync = job->sync;

    if (sync != NULL && sync->state != NULL) {
        level = (ngx_strcmp(sync->state, "succeeded") == 0)
                ? NGX_LOG_NOTICE : NGX_LOG_ERR;

        ngx_log_error(level, job->log, 0,
                      "umlo: task sync %s %s%s%s", sync->id, sync->state,
                      sync->error[0] ? ": " : "", sync->error);

        umcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_umlo_module);

        if (sync->store_failed && umcf != NULL && umcf->redis != NULL) {
            /* the thread could not record the end: try from here */
            ngx_umlo_sync_release(sync, umcf);
        }

        /* as for any sync; sync.started is not sent: the thread began it */
        if (umcf != NULL) {
            ngx_umlo_webhook_emit(umcf,
                                  ngx_umlo_webhook_sync_event(sync->state),
                                  sync->id, "sync", sync->doc);
        }
    }

    /* the task event after its sync's, through the same receivers */
    if (job->event != NULL) {
        umcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_umlo_module);
        if (umcf != NULL) {
            ngx_umlo_webhook_emit(umcf, job->event_type,
                                  (sync != NULL && sync->state != NULL)
                                  ? sync->id : NULL, "task", job->event);
        }
    }

    if (sync != NULL) {
        ngx_umlo_sync_free(sync);
        job->sync = NULL;
    }

    level = (job->status >= 400 && job->status != 409) ? NGX_LOG_ERR
                                                       : NGX_LOG_NOTICE;

    ngx_log_error(level, job->log, 0,
                  "umlo: task %s run %s: %s",
                  json_string_value(json_object_get(job->run_of, "id")),
                  job->id, job->error[0] ? job->error
                  : json_string_value(json_object_get(job->doc, "state")));

    ngx_umlo_bulk_job_free(job);
    ngx_umlo_task_busy = 0;
}


/* ------------------------------------------------------------ a run */

static void
ngx_umlo_task_thread(void *data, ngx_log_t *log)
{
    ngx_umlo_bulk_job_t  *job = data;

    int          locked, ok;
    redisReply  *r;

    if (ngx_umlo_store_open(&job->store, &job->redis, job->org) != 0) {
        snprintf(job->error, sizeof(job->error), "%s", job->store.error);
        job->status = 503;
        return;
    }

    if (job->sync != NULL && ngx_umlo_task_sync(job) != 0) {
        ngx_umlo_task_record(job);
        ngx_umlo_store_close(&job->store);
        return;
    }

    r = ngx_umlo_store_command(&job->store, "SET " NGX_UMLO_KEY_LOCK
                               " %s NX PX %u", job->org, job->lock,
                               job->lease_ms);
    locked = (r != NULL && r->type == REDIS_REPLY_STATUS);
    if (r != NULL) {
        freeReplyObject(r);
    }

    if (!locked) {
        /* a sync or another task: this one waits its turn */
        job->status = 409;
        snprintf(job->code, sizeof(job->code), "org_busy");
        snprintf(job->error, sizeof(job->error), "the org lock is held "
                 "(a sync or another job): tried again in %d s",
                 NGX_UMLO_TASK_RETRY_MS / 1000);
        ngx_umlo_task_record(job);
        ngx_umlo_store_close(&job->store);
        return;
    }

    job->locked = 1;
    job->presynced = 1;
    job->dry_run = 0;

    if (job->sync != NULL) {
        /* the org was just synced: the filter on that snapshot */
        ok = (ngx_umlo_task_match(job) == 0);

    } else {
        /* explicit users: those alone are re-read */
        ngx_umlo_store_close(&job->store);

        ok = (ngx_umlo_bulk_presync(job) == 0
              && ngx_umlo_store_open(&job->store, &job->redis, job->org)
                 == 0);
    }

    if (ok && ngx_umlo_task_notice(job) == 0) {
        ngx_umlo_store_close(&job->store);
        ngx_umlo_bulk_plan(job);

        if (job->status == 202) {
            ngx_umlo_bulk_exec(job);
        }
    }

    if (job->store.c == NULL
        && ngx_umlo_store_open(&job->store, &job->redis, job->org) != 0)
    {
        return;
    }

    if (job->status != 202) {
        if (job->status == 0) {
            job->status = 500;
        }

        r = ngx_umlo_store_command(&job->store, "EVAL %s 1 "
                                   NGX_UMLO_KEY_LOCK " %s",
                                   "if redis.call('GET', KEYS[1]) == ARGV[1]"
                                   " then return redis.call('DEL', KEYS[1])"
                                   " end return 0", job->org, job->lock);
        if (r != NULL) {
            freeReplyObject(r);
        }
    }

    ngx_umlo_task_record(job);
    ngx_umlo_store_close(&job->store);
}


/*
 * The full sync a filter needs, through the sync's own code: it takes the
 * org lock as umlo_sync does (so a running sync or job makes the run wait)
 * and gives it back when done; the run then takes it for itself.
 */

static int
ngx_umlo_task_sync(ngx_umlo_bulk_job_t *job)
{
    int              started;
    char            *doc;
    redisReply      *r;
    ngx_umlo_job_t  *sync;

    sync = job->sync;

    doc = json_dumps(sync->doc, JSON_COMPACT);
    if (doc == NULL) {
        snprintf(job->error, sizeof(job->error), "out of memory");
        job->status = 500;
        return -1;
    }

    r = ngx_umlo_store_command(&job->store, "EVAL %s 3 " NGX_UMLO_KEY_LOCK
                               " " NGX_UMLO_KEY_STATUS " "
                               NGX_UMLO_KEY_CANCEL " %s %u %s",
                               ngx_umlo_sync_start_lua, job->org, job->org,
                               job->org, sync->token, sync->lease_ms, doc);
    free(doc);

    if (r == NULL) {
        snprintf(job->error, sizeof(job->error), "%s", job->store.error);
        job->status = 503;
        return -1;
    }

    started = (r->type == REDIS_REPLY_ARRAY && r->elements == 2
               && r->element[0]->type == REDIS_REPLY_INTEGER
               && r->element[0]->integer == 1);
    freeReplyObject(r);

    if (!started) {
        job->status = 409;
        snprintf(job->code, sizeof(job->code), "org_busy");
        snprintf(job->error, sizeof(job->error), "the org lock is held "
                 "(a sync or another job): tried again in %d s",
                 NGX_UMLO_TASK_RETRY_MS / 1000);
        return -1;
    }

    ngx_umlo_fetch_run(sync);

    if (sync->state == NULL || strcmp(sync->state, "succeeded") != 0) {
        job->status = 503;
        snprintf(job->code, sizeof(job->code), "sync_failed");
        snprintf(job->error, sizeof(job->error), "the full sync %s %s "
                 "before the run: %.400s", sync->id,
                 sync->state ? sync->state : "failed", sync->error);
        return -1;
    }

    return 0;
}


/* job->ids: the users the task's filter matches in the current snapshot */

static int
ngx_umlo_task_match(ngx_umlo_bulk_job_t *job)
{
    int                    rc;
    char                   args[4200];
    size_t                 i, len;
    json_t                *page, *row;
    long long              gen;
    redisReply            *r;
    const char            *filter;
    ngx_umlo_snap_t       *snap;
    ngx_umlo_query_t      *q;
    ngx_umlo_query_err_t   qerr;

    r = ngx_umlo_store_command(&job->store, "HMGET " NGX_UMLO_KEY_CURRENT
                               " gen json", job->org);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_STRING)
    {
        snprintf(job->error, sizeof(job->error), "%s", r == NULL
                 ? job->store.error : "no full sync has completed yet");
        if (r != NULL) {
            freeReplyObject(r);
        }

        job->status = 404;
        return -1;
    }

    gen = strtoll(r->element[0]->str, NULL, 10);

    snap = ngx_umlo_snap_create();
    rc = snap ? ngx_umlo_snap_load(snap, job->store.c, job->org, gen,
                                   r->element[1]->type == REDIS_REPLY_STRING
                                   ? r->element[1]->str : NULL,
                                   job->error, sizeof(job->error))
              : -1;
    freeReplyObject(r);

    if (rc != 0) {
        ngx_umlo_snap_free(snap);
        job->status = 503;
        return -1;
    }

    filter = json_string_value(json_object_get(json_object_get(job->request,
                                                               "target"),
                                               "filter"));
    filter = filter ? filter : "";

    len = snprintf(args, sizeof(args), "%s%slimit=%d", filter,
                   filter[0] ? "&" : "", NGX_UMLO_QUERY_LIMIT_MAX);

    q = ngx_umlo_query_parse(snap, args, len, ngx_umlo_clock_ms(), &qerr);

    if (q == NULL || ngx_umlo_query_run(q, &qerr) != 0) {
        snprintf(job->error, sizeof(job->error), "the filter: %s",
                 qerr.message);
        job->status = 400;
        rc = -1;

    } else if (ngx_umlo_query_total(q) > job->max_users) {
        snprintf(job->error, sizeof(job->error), "the filter matches %u "
                 "users, more than umlo_bulk_max_users (%u)",
                 (unsigned) ngx_umlo_query_total(q), job->max_users);
        job->status = 422;
        rc = -1;

    } else {
        page = ngx_umlo_query_page(q);
        json_decref(job->ids);
        job->ids = json_array();

        json_array_foreach(json_object_get(page, "data"), i, row) {
            json_array_append(job->ids, json_object_get(row, "id"));
        }

        json_decref(page);
        rc = 0;
    }

    if (q != NULL) {
        ngx_umlo_query_free(q);
    }

    ngx_umlo_snap_free(snap);

    return rc;
}
