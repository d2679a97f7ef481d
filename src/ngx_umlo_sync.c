/*
 * Copyright (C) ngx_umlo authors
 *
 * umlo_sync: POST starts a full or selective sync, DELETE cancels the
 * running one.  The org lock is taken here, on the event loop, with one
 * atomic Redis script, so that a 409 answers at once and exactly one of
 * any number of simultaneous POSTs (from any worker or instance) wins.
 */


#include "ngx_umlo_sync.h"
#include "ngx_umlo_handler.h"
#include "ngx_umlo_guard.h"
#include "ngx_umlo_syncbody.h"
#include "ngx_umlo_keys.h"
#include "ngx_umlo_redis.h"
#include "ngx_umlo_webhook.h"


#define NGX_UMLO_WATCH_MS        250


const char  ngx_umlo_sync_start_lua[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then"
    " redis.call('SET', KEYS[2], ARGV[3])"
    " redis.call('DEL', KEYS[3])"
    " return {1, ARGV[3]} end"
    " return {0, redis.call('GET', KEYS[2]) or ''}";

static const char  ngx_umlo_sync_cancel_lua[] =
    "local holder = redis.call('GET', KEYS[1])"
    " local doc = redis.call('GET', KEYS[2]) or ''"
    " if not holder then return {0, doc} end"
    " redis.call('SET', KEYS[3], holder, 'PX', ARGV[1])"
    " return {1, doc}";

static const char  ngx_umlo_sync_release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then"
    " redis.call('DEL', KEYS[1]) redis.call('SET', KEYS[2], ARGV[2]) end"
    " return 0";


static void ngx_umlo_sync_body(ngx_http_request_t *r);
static ngx_int_t ngx_umlo_sync_parse(ngx_http_request_t *r,
    ngx_umlo_job_t *job, ngx_int_t *rc);
static void ngx_umlo_sync_started(redisReply *reply, void *data);
static ngx_int_t ngx_umlo_sync_post(ngx_umlo_job_t *job,
    ngx_umlo_main_conf_t *umcf);
static void ngx_umlo_sync_thread(void *data, ngx_log_t *log);
static void ngx_umlo_sync_done(ngx_event_t *ev);
static void ngx_umlo_sync_watch(ngx_event_t *ev);
static void ngx_umlo_sync_ignore(redisReply *reply, void *data);
static ngx_int_t ngx_umlo_sync_cancel(ngx_http_request_t *r);
static void ngx_umlo_sync_cancelled(redisReply *reply, void *data);
static json_t *ngx_umlo_sync_doc(redisReply *reply);
static ngx_int_t ngx_umlo_sync_redis_down(ngx_http_request_t *r,
    redisReply *reply);


typedef struct {
    ngx_umlo_job_t  *job;
} ngx_umlo_sync_ctx_t;


ngx_int_t
ngx_umlo_sync_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (r->method != NGX_HTTP_POST && r->method != NGX_HTTP_DELETE) {
        /* a refused body must not be read as the next request */
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_umlo_send_not_allowed(r, "POST, DELETE");
    }

    if (ngx_umlo_guard_request(r, &rc) != NGX_OK) {
        return rc;
    }

    if (r->method == NGX_HTTP_DELETE) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_umlo_sync_cancel(r);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_umlo_sync_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_umlo_sync_body(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_umlo_job_t        *job;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    job = ngx_umlo_sync_job(umcf, "manual");
    if (job == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_umlo_sync_parse(r, job, &rc) != NGX_OK) {
        ngx_umlo_sync_free(job);
        ngx_http_finalize_request(r, rc);
        return;
    }

    {
        char  *doc;

        doc = json_dumps(job->doc, JSON_COMPACT);
        if (doc == NULL) {
            ngx_umlo_sync_free(job);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        rc = ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_sync_started, r,
                                     "EVAL %s 3 " NGX_UMLO_KEY_LOCK " "
                                     NGX_UMLO_KEY_STATUS " "
                                     NGX_UMLO_KEY_CANCEL " %s %u %s",
                                     ngx_umlo_sync_start_lua, job->org,
                                     job->org, job->org, job->token,
                                     job->lease_ms, doc);
        free(doc);
    }

    if (rc != NGX_OK) {
        ngx_umlo_sync_free(job);
        ngx_http_finalize_request(r, ngx_umlo_sync_redis_down(r, NULL));
        return;
    }

    /*
     * The reference ngx_http_read_client_request_body() took keeps the
     * request until ngx_umlo_sync_started() finalizes it.
     */
    ngx_http_set_ctx(r, job, ngx_umlo_module);
}


/* The body, checked by ngx_umlo_syncbody_parse(). */

static ngx_int_t
ngx_umlo_sync_parse(ngx_http_request_t *r, ngx_umlo_job_t *job,
    ngx_int_t *rc)
{
    ngx_str_t                 text;
    ngx_umlo_main_conf_t     *umcf;
    ngx_umlo_syncbody_err_t   err;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    if (ngx_umlo_guard_body(r, &text, rc) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_umlo_syncbody_parse((char *) text.data, text.len,
                                umcf->selective_max, &job->users, &err)
        != 0)
    {
        *rc = err.status
              ? ngx_umlo_send_error(r, err.status, err.code, "%s",
                                    err.message)
              : NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_ERROR;
    }

    if (job->users != NULL) {
        job->trigger = "selective";
        json_object_set_new(job->doc, "trigger", json_string("selective"));
        json_object_set(job->doc, "users_requested", job->users);
    }

    return NGX_OK;
}


ngx_umlo_job_t *
ngx_umlo_sync_job(ngx_umlo_main_conf_t *umcf, const char *trigger)
{
    u_char             rnd[16], *p;
    ngx_uint_t         i;
    ngx_pool_t        *pool;
    ngx_umlo_job_t    *job;
    ngx_thread_task_t *task;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    task = ngx_thread_task_alloc(pool, sizeof(ngx_umlo_job_t));
    if (task == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    job = task->ctx;
    job->task = task;
    job->pool = pool;
    job->log = ngx_cycle->log;

    /* C strings for the thread, copied: a reload frees the old conf */
    job->api_base = ngx_pcalloc(pool, umcf->api_base.len + 1);
    job->api_key = ngx_pcalloc(pool, umcf->api_key.len + 1);
    job->org = ngx_pcalloc(pool, umcf->org.len + 1);

    if (job->api_base == NULL || job->api_key == NULL || job->org == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    ngx_memcpy(job->api_base, umcf->api_base.data, umcf->api_base.len);
    ngx_memcpy(job->api_key, umcf->api_key.data, umcf->api_key.len);
    ngx_memcpy(job->org, umcf->org.data, umcf->org.len);

    ngx_umlo_store_conf(umcf, &job->redis);

    job->concurrency = (unsigned) umcf->sync_concurrency;
    job->timeout_ms = (unsigned) umcf->sync_timeout;
    job->retries = (unsigned) umcf->sync_retries;
    job->lease_ms = (unsigned) umcf->sync_lease;
    job->grace_ms = (unsigned) umcf->sync_grace;
    job->history = (unsigned) umcf->history;
    job->key_expires = (long long) umcf->key_expires;
    job->trigger = trigger;

    for (i = 0; i < sizeof(rnd); i++) {
        rnd[i] = (u_char) ngx_random();
    }

    p = ngx_snprintf((u_char *) job->id, NGX_UMLO_ID_LEN - 1, "s-%T%03M-",
                     ngx_time(), ngx_current_msec % 1000);
    p = ngx_hex_dump(p, rnd, 4);
    *p = '\0';

    p = ngx_snprintf((u_char *) job->token, sizeof(job->token) - 1, "%s/",
                     job->id);
    p = ngx_hex_dump(p, rnd + 4, 12);
    *p = '\0';

    job->doc = json_pack("{s:s,s:s,s:s,s:n,s:I,s:n,s:n,s:n}",
                         "id", job->id,
                         "trigger", job->trigger,
                         "state", "queued",
                         "phase",
                         "requested_at", (json_int_t) ngx_time(),
                         "started_at",
                         "finished_at",
                         "error");
    if (job->doc == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    return job;
}


void
ngx_umlo_sync_free(ngx_umlo_job_t *job)
{
    ngx_explicit_memzero(job->api_key, ngx_strlen(job->api_key));

    json_decref(job->users);
    json_decref(job->doc);

    ngx_destroy_pool(job->pool);
}


static void
ngx_umlo_sync_started(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    json_t                *doc, *out;
    ngx_int_t              rc;
    ngx_umlo_job_t        *job;
    ngx_umlo_loc_conf_t   *ulcf;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);
    job = ngx_http_get_module_ctx(r, ngx_umlo_module);
    ngx_http_set_ctx(r, NULL, ngx_umlo_module);

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        ngx_umlo_sync_free(job);
        ngx_http_finalize_request(r, ngx_umlo_sync_redis_down(r, reply));
        return;
    }

    if (reply->element[0]->integer == 0) {
        ngx_umlo_sync_free(job);

        doc = ngx_umlo_sync_doc(reply);
        out = json_pack("{s:{s:i,s:s,s:s},s:o}",
                        "error", "status", 409, "code", "sync_running",
                        "message", "a sync or a bulk job of this "
                                   "organization is already running; "
                                   "follow a sync with the status endpoint",
                        "sync", doc ? doc : json_null());

        rc = out ? ngx_umlo_send_json(r, NGX_HTTP_CONFLICT, out)
                 : NGX_HTTP_INTERNAL_SERVER_ERROR;
        json_decref(out);
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* once posted, the job belongs to the thread: answer from a copy */
    out = json_deep_copy(job->doc);
    if (out == NULL) {
        ngx_umlo_sync_release(job, umcf);
        ngx_umlo_sync_free(job);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ulcf = ngx_http_get_module_loc_conf(r, ngx_umlo_module);

    json_object_set_new(out, "links",
                        json_pack("{s:s%}", "self", r->uri.data, r->uri.len));

    if (ulcf->status_uri.len) {
        json_object_set_new(json_object_get(out, "links"), "status",
                            json_stringn((char *) ulcf->status_uri.data,
                                         ulcf->status_uri.len));
    }

    if (ngx_umlo_sync_post(job, umcf) != NGX_OK) {
        json_decref(out);
        ngx_umlo_sync_release(job, umcf);
        ngx_umlo_sync_free(job);
        ngx_http_finalize_request(r,
            ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "thread_pool_busy",
                                "the thread pool \"%V\" did not take the "
                                "sync (queue full?); try again, or raise "
                                "its max_queue", &umcf->thread_pool_name));
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "umlo: %s sync %s started", job->trigger, job->id);

    rc = ngx_umlo_send_json(r, NGX_HTTP_ACCEPTED, out);
    json_decref(out);

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_umlo_sync_post(ngx_umlo_job_t *job, ngx_umlo_main_conf_t *umcf)
{
    json_t  *started;

    job->task->handler = ngx_umlo_sync_thread;
    job->task->event.handler = ngx_umlo_sync_done;
    job->task->event.data = job;

    /* built before posting: job->doc belongs to the thread afterwards */
    started = json_pack("{s:s,s:s,s:s,s:O}", "id", job->id,
                        "trigger", job->trigger, "state", "running",
                        "requested_at",
                        json_object_get(job->doc, "requested_at"));

    if (ngx_thread_task_post(umcf->thread_pool, job->task) != NGX_OK) {
        json_decref(started);
        return NGX_ERROR;
    }

    if (started != NULL) {
        ngx_umlo_webhook_emit(umcf, NGX_UMLO_EV_SYNC_STARTED, job->id,
                              "sync", started);
        json_decref(started);
    }

    /*
     * nginx 1.22 does not wait for thread tasks on a graceful exit: a
     * non-cancelable timer keeps the worker until the task is done, and
     * tells the job to stop early.
     */
    job->watch.handler = ngx_umlo_sync_watch;
    job->watch.data = job;
    job->watch.log = job->log;
    ngx_add_timer(&job->watch, NGX_UMLO_WATCH_MS);

    return NGX_OK;
}


static void
ngx_umlo_sync_thread(void *data, ngx_log_t *log)
{
    ngx_umlo_job_t  *job = data;

    ngx_umlo_fetch_run(job);
}


static void
ngx_umlo_sync_watch(ngx_event_t *ev)
{
    ngx_umlo_job_t  *job = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        job->cancel = 1;
    }

    ngx_add_timer(&job->watch, NGX_UMLO_WATCH_MS);
}


static void
ngx_umlo_sync_done(ngx_event_t *ev)
{
    ngx_umlo_job_t  *job = ev->data;

    ngx_umlo_main_conf_t  *umcf;

    if (job->watch.timer_set) {
        ngx_del_timer(&job->watch);
    }

    if (ngx_strcmp(job->state, "succeeded") == 0) {
        ngx_log_error(NGX_LOG_NOTICE, job->log, 0,
                      "umlo: %s sync %s succeeded: %uL users",
                      job->trigger, job->id, job->users_done);

    } else {
        ngx_log_error(NGX_LOG_ERR, job->log, 0,
                      "umlo: %s sync %s %s at %s: %s", job->trigger, job->id,
                      job->state, job->where, job->error);
    }

    umcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_umlo_module);

    if (job->store_failed) {
        /* the thread could not record the end: try from here */
        if (umcf != NULL && umcf->redis != NULL) {
            ngx_umlo_sync_release(job, umcf);
        }
    }

    if (umcf != NULL) {
        ngx_umlo_webhook_emit(umcf, ngx_umlo_webhook_sync_event(job->state),
                              job->id, "sync", job->doc);
    }

    ngx_umlo_sync_free(job);
}


/* gives the lock back and records the job's document, if still ours */

void
ngx_umlo_sync_release(ngx_umlo_job_t *job, ngx_umlo_main_conf_t *umcf)
{
    char  *doc;

    json_object_set_new(job->doc, "state",
                        json_string(job->state ? job->state : "failed"));
    if (job->state == NULL || job->error[0] != '\0') {
        json_object_set_new(job->doc, "error",
                            json_pack("{s:s,s:s}",
                                      "where", job->where[0] ? job->where
                                                             : "start",
                                      "message", job->error[0]
                                                 ? job->error
                                                 : "the sync could not be "
                                                   "started"));
    }

    doc = json_dumps(job->doc, JSON_COMPACT);
    if (doc == NULL) {
        return;
    }

    (void) ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_sync_ignore, NULL,
                                   "EVAL %s 2 " NGX_UMLO_KEY_LOCK " "
                                   NGX_UMLO_KEY_STATUS " %s %s",
                                   ngx_umlo_sync_release_lua, job->org,
                                   job->org, job->token, doc);
    free(doc);
}


static void
ngx_umlo_sync_ignore(redisReply *reply, void *data)
{
}


static ngx_int_t
ngx_umlo_sync_cancel(ngx_http_request_t *r)
{
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    if (ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_sync_cancelled, r,
                                "EVAL %s 3 " NGX_UMLO_KEY_LOCK " "
                                NGX_UMLO_KEY_STATUS " " NGX_UMLO_KEY_CANCEL
                                " %u", ngx_umlo_sync_cancel_lua,
                                umcf->org.data, umcf->org.data,
                                umcf->org.data, (unsigned) umcf->sync_lease)
        != NGX_OK)
    {
        return ngx_umlo_sync_redis_down(r, NULL);
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_umlo_sync_cancelled(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    json_t     *doc, *out;
    ngx_int_t   rc;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        ngx_http_finalize_request(r, ngx_umlo_sync_redis_down(r, reply));
        return;
    }

    doc = ngx_umlo_sync_doc(reply);

    if (reply->element[0]->integer == 0) {
        out = json_pack("{s:{s:i,s:s,s:s},s:o}",
                        "error", "status", 409, "code", "not_running",
                        "message", "no sync of this organization is running",
                        "sync", doc ? doc : json_null());
        rc = NGX_HTTP_CONFLICT;

    } else {
        out = json_pack("{s:b,s:o}", "cancelling", 1,
                        "sync", doc ? doc : json_null());
        rc = NGX_HTTP_ACCEPTED;
    }

    rc = out ? ngx_umlo_send_json(r, rc, out)
             : NGX_HTTP_INTERNAL_SERVER_ERROR;
    json_decref(out);

    ngx_http_finalize_request(r, rc);
}


static json_t *
ngx_umlo_sync_doc(redisReply *reply)
{
    redisReply  *doc;

    doc = reply->element[1];

    if (doc->type != REDIS_REPLY_STRING || doc->len == 0) {
        return NULL;
    }

    return json_loadb(doc->str, doc->len, 0, NULL);
}


static ngx_int_t
ngx_umlo_sync_redis_down(ngx_http_request_t *r, redisReply *reply)
{
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    return ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "redis_unavailable",
                               "%s; syncs are coordinated through Redis, "
                               "check umlo_redis and that Redis is running",
                               reply && reply->type == REDIS_REPLY_ERROR
                               ? reply->str
                               : ngx_umlo_redis_error(umcf->redis));
}
