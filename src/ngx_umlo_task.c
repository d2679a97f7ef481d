/*
 * Copyright (C) ngx_umlo authors
 *
 * umlo_tasks (create, list, read, delete, run now) on the event loop, the
 * per-worker timer that claims due tasks, and a task run in a pool
 * thread: org lock, filter, pre-sync of the matched users, filter again,
 * then the bulk job's plan and run (ngx_umlo_bulk_run.c).
 */


#include "ngx_umlo_task.h"
#include "ngx_umlo_bulk.h"
#include "ngx_umlo_handler.h"
#include "ngx_umlo_keys.h"
#include "ngx_umlo_redis.h"
#include "ngx_umlo_snapshot.h"
#include "ngx_umlo_query.h"

#include <curl/curl.h>


#define NGX_UMLO_TASK_CLAIM_MS   600000   /* a claimed run's slot */
#define NGX_UMLO_TASK_RETRY_MS   60000    /* org busy: try again then */
#define NGX_UMLO_TASK_WATCH_MS   250
#define NGX_UMLO_TASK_EVERY_MIN  60       /* seconds */


/* the first due task, pushed on so that no one else takes it meanwhile */
static const char  ngx_umlo_task_claim_lua[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1],"
    " 'LIMIT', 0, 1)"
    " if #due == 0 then return false end"
    " local t = redis.call('HGET', KEYS[2], due[1])"
    " if not t then redis.call('ZREM', KEYS[1], due[1]) return false end"
    " redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], due[1])"
    " return t";

static const char  ngx_umlo_task_save_lua[] =
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])"
    " redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) return 1";

/* after a run: only if the task was not deleted meanwhile */
static const char  ngx_umlo_task_done_lua[] =
    "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end"
    " redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])"
    " redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) return 1";

static const char  ngx_umlo_task_delete_lua[] =
    "if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end"
    " redis.call('ZREM', KEYS[2], ARGV[1])"
    " redis.call('DEL', KEYS[3]) return 1";

static const char  ngx_umlo_task_now_lua[] =
    "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end"
    " redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) return 1";


static void ngx_umlo_task_body(ngx_http_request_t *r);
static ngx_int_t ngx_umlo_task_create(ngx_http_request_t *r, json_t *body,
    json_t **doc);
static void ngx_umlo_task_reply(redisReply *reply, void *data);
static void ngx_umlo_task_tick(ngx_event_t *ev);
static void ngx_umlo_task_claimed(redisReply *reply, void *data);
static void ngx_umlo_task_thread(void *data, ngx_log_t *log);
static void ngx_umlo_task_finished(ngx_event_t *ev);
static void ngx_umlo_task_watch(ngx_event_t *ev);
static int ngx_umlo_task_match(ngx_umlo_bulk_job_t *job);
static int ngx_umlo_task_notice(ngx_umlo_bulk_job_t *job);
static void ngx_umlo_task_record(ngx_umlo_bulk_job_t *job);
static void ngx_umlo_task_webhook(ngx_umlo_bulk_job_t *job, json_t *event,
    char *result, size_t len);
static long long ngx_umlo_task_next(json_t *schedule, long long now_ms);
static long long ngx_umlo_task_now(void);
static void ngx_umlo_task_iso(char *buf, size_t size, long long ms);


typedef struct {
    const char  *what;      /* list, get, delete, run, create */
    json_t      *doc;       /* create: the task answered */
} ngx_umlo_task_ctx_t;


static ngx_event_t   ngx_umlo_task_timer;
static ngx_uint_t    ngx_umlo_task_busy;


/* ------------------------------------------------------------ the API */

ngx_int_t
ngx_umlo_tasks_handler(ngx_http_request_t *r)
{
    u_char                    *id;
    size_t                     len;
    ngx_int_t                  rc;
    ngx_str_t                  rest;
    ngx_uint_t                 run;
    ngx_umlo_task_ctx_t       *ctx;
    ngx_umlo_main_conf_t      *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    ngx_umlo_bulk_path(r, &rest);

    if (rest.len == 0 && r->method == NGX_HTTP_POST) {
        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_umlo_task_body);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_umlo_task_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_umlo_module);

    if (rest.len == 0) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_umlo_send_not_allowed(r, "GET, HEAD, POST");
        }

        ctx->what = "list";
        rc = ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_task_reply, r,
                                     "HVALS " NGX_UMLO_KEY_TASKS,
                                     umcf->org.data);
        goto sent;
    }

    run = (rest.len > 4
           && ngx_strncmp(rest.data + rest.len - 4, "/run", 4) == 0);
    len = rest.len - (run ? 4 : 0);

    id = ngx_pnalloc(r->pool, len + 1);
    if (id == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(id, rest.data, len);
    id[len] = '\0';

    if (len < 3 || len > 32 || ngx_strncmp(id, "t-", 2) != 0
        || strspn((char *) id + 2, "0123456789abcdef") != len - 2)
    {
        return ngx_umlo_send_error(r, NGX_HTTP_NOT_FOUND, "unknown_task",
                                   "no task has this id");
    }

    if (run) {
        if (r->method != NGX_HTTP_POST) {
            return ngx_umlo_send_not_allowed(r, "POST");
        }

        ctx->what = "run";
        rc = ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_task_reply, r,
                                     "EVAL %s 2 " NGX_UMLO_KEY_TASKS " "
                                     NGX_UMLO_KEY_TASKS_DUE " %s %lld",
                                     ngx_umlo_task_now_lua, umcf->org.data,
                                     umcf->org.data, id,
                                     (long long) ngx_umlo_task_now());

    } else if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        ctx->what = "get";
        rc = ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_task_reply, r,
                                     "HGET " NGX_UMLO_KEY_TASKS " %s",
                                     umcf->org.data, id);

    } else if (r->method == NGX_HTTP_DELETE) {
        ctx->what = "delete";
        rc = ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_task_reply, r,
                                     "EVAL %s 3 " NGX_UMLO_KEY_TASKS " "
                                     NGX_UMLO_KEY_TASKS_DUE " "
                                     NGX_UMLO_KEY_TASK_NOTICE " %s",
                                     ngx_umlo_task_delete_lua,
                                     umcf->org.data, umcf->org.data,
                                     umcf->org.data, id, id);

    } else {
        return ngx_umlo_send_not_allowed(r, "GET, HEAD, DELETE");
    }

sent:

    if (rc != NGX_OK) {
        return ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "redis_unavailable", "%s; tasks are kept "
                                   "in Redis", ngx_umlo_redis_error(
                                                   umcf->redis));
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_umlo_task_body(ngx_http_request_t *r)
{
    char                  *text;
    u_char                *p;
    size_t                 len;
    json_t                *body, *doc;
    ngx_int_t              rc;
    json_error_t           err;
    ngx_umlo_task_ctx_t   *ctx;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    if (r->request_body == NULL || r->request_body->bufs == NULL
        || r->request_body->temp_file)
    {
        ngx_http_finalize_request(r,
            ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST, "invalid_body",
                                "the body must be a JSON object (at most "
                                "client_body_buffer_size)"));
        return;
    }

    if (ngx_umlo_bulk_read_body(r, &p, &len) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    body = json_loadb((char *) p, len, JSON_REJECT_DUPLICATES, &err);
    if (body == NULL || !json_is_object(body)) {
        json_decref(body);
        ngx_http_finalize_request(r,
            ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                "the body is not a JSON object"));
        return;
    }

    doc = NULL;
    rc = ngx_umlo_task_create(r, body, &doc);
    json_decref(body);

    if (rc != NGX_DECLINED) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    text = json_dumps(doc, JSON_COMPACT);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_umlo_task_ctx_t));
    if (ctx == NULL || text == NULL) {
        free(text);
        json_decref(doc);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->what = "create";
    ctx->doc = doc;
    ngx_http_set_ctx(r, ctx, ngx_umlo_module);

    rc = ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_task_reply, r,
                                 "EVAL %s 2 " NGX_UMLO_KEY_TASKS " "
                                 NGX_UMLO_KEY_TASKS_DUE " %s %s %lld",
                                 ngx_umlo_task_save_lua, umcf->org.data,
                                 umcf->org.data,
                                 json_string_value(json_object_get(doc,
                                                                   "id")),
                                 text,
                                 (long long) json_integer_value(
                                     json_object_get(doc, "next_run_ms")));
    free(text);

    if (rc != NGX_OK) {
        json_decref(doc);
        ngx_http_finalize_request(r,
            ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "redis_unavailable", "%s; tasks are kept "
                                "in Redis",
                                ngx_umlo_redis_error(umcf->redis)));
    }

    /* the body's reference on the request is finalized by the reply */
}


/*
 * {"name", "filter", "action" (+ site, product, group), "schedule":
 * {"every": "6h"} or {"daily": "03:00"}}: the bulk fields are checked by
 * the bulk parser, as a POST to umlo_bulk would be.
 */

static ngx_int_t
ngx_umlo_task_create(ngx_http_request_t *r, json_t *body, json_t **doc)
{
    u_char                *p;
    json_t                *bulk, *schedule, *value, *sched;
    ngx_int_t              rc, every, notice;
    ngx_str_t              s;
    const char            *key, *name, *daily;
    long long              next, now;
    ngx_umlo_bulk_job_t   *job;
    ngx_umlo_main_conf_t  *umcf;
    u_char                 rnd[8], id[32];
    char                   at[32];
    ngx_uint_t             i;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    name = json_string_value(json_object_get(body, "name"));
    if (name == NULL || ngx_strlen(name) == 0 || ngx_strlen(name) > 128) {
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST, "missing_field",
                                   "a task needs \"name\": 1 to 128 "
                                   "characters");
    }

    if (json_object_get(body, "filter") == NULL) {
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST, "missing_field",
                                   "a task needs \"filter\": the saved "
                                   "users API query it acts on");
    }

    schedule = json_object_get(body, "schedule");
    every = 0;
    daily = NULL;

    json_object_foreach(schedule, key, value) {
        if (ngx_strcmp(key, "every") == 0 && json_is_string(value)) {
            s.data = (u_char *) json_string_value(value);
            s.len = ngx_strlen(s.data);
            every = ngx_parse_time(&s, 1);

        } else if (ngx_strcmp(key, "daily") == 0 && json_is_string(value)) {
            daily = json_string_value(value);
        } else {
            every = NGX_ERROR;
        }
    }

    if (!json_is_object(schedule) || json_object_size(schedule) != 1
        || every == NGX_ERROR
        || (daily == NULL && every < NGX_UMLO_TASK_EVERY_MIN)
        || (daily != NULL
            && !(ngx_strlen(daily) == 5 && daily[2] == ':'
                 && ngx_atoi((u_char *) daily, 2) >= 0
                 && ngx_atoi((u_char *) daily, 2) < 24
                 && ngx_atoi((u_char *) daily + 3, 2) >= 0
                 && ngx_atoi((u_char *) daily + 3, 2) < 60)))
    {
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                   "invalid_schedule", "\"schedule\" must "
                                   "be {\"every\": \"6h\"} (at least 60s) "
                                   "or {\"daily\": \"HH:MM\"} (UTC)");
    }

    notice = 0;
    value = json_object_get(body, "notice");

    if (value != NULL) {
        s.data = (u_char *) json_string_value(value);
        s.len = s.data ? ngx_strlen(s.data) : 0;
        notice = s.len ? ngx_parse_time(&s, 1) : NGX_ERROR;

        if (notice == NGX_ERROR || notice < 1 || notice > 366 * 86400) {
            return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "invalid_notice", "\"notice\" must "
                                       "be a time such as \"14d\" (1s to "
                                       "366d)");
        }
    }

    bulk = json_object();
    if (bulk == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_foreach(body, key, value) {
        if (ngx_strcmp(key, "name") == 0 || ngx_strcmp(key, "schedule") == 0
            || ngx_strcmp(key, "notice") == 0)
        {
            continue;
        }

        if (ngx_strcmp(key, "users") == 0 || ngx_strcmp(key, "dry_run") == 0
            || ngx_strcmp(key, "force") == 0)
        {
            json_decref(bulk);
            return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "unexpected_field", "a task takes no "
                                       "\"%s\": it acts on its filter, "
                                       "after re-reading those users", key);
        }

        json_object_set(bulk, key, value);
    }

    job = ngx_umlo_bulk_job_create(r, umcf);
    if (job == NULL) {
        json_decref(bulk);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_umlo_bulk_parse_body(r, job, bulk);
    json_decref(bulk);

    if (rc != NGX_DECLINED) {
        ngx_umlo_bulk_job_free(job);
        return rc;
    }

    for (i = 0; i < sizeof(rnd); i++) {
        rnd[i] = (u_char) ngx_random();
    }

    p = ngx_cpymem(id, "t-", 2);
    p = ngx_hex_dump(p, rnd, sizeof(rnd));
    *p = '\0';

    sched = daily ? json_pack("{s:s}", "daily", daily)
                  : json_pack("{s:I}", "every", (json_int_t) every);

    now = ngx_umlo_task_now();
    next = ngx_umlo_task_next(sched, now);
    ngx_umlo_task_iso(at, sizeof(at), now);

    *doc = json_pack("{s:s,s:s,s:O,s:O,s:O,s:o,s:s,s:s,s:I,s:n}",
                     "id", (char *) id, "name", name,
                     "filter", json_object_get(json_object_get(job->request,
                                                               "target"),
                                               "filter"),
                     "action", json_object_get(job->request, "action"),
                     "params", json_object_get(job->request, "params"),
                     "schedule", sched,
                     "created_by", job->actor,
                     "created_at", at,
                     "next_run_ms", (json_int_t) next,
                     "last_run");
    ngx_umlo_bulk_job_free(job);

    if (*doc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_umlo_task_iso(at, sizeof(at), next);
    json_object_set_new(*doc, "next_run_at", json_string(at));
    json_object_set_new(*doc, "notice", json_integer(notice));

    return NGX_DECLINED;
}


static void
ngx_umlo_task_reply(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    size_t                 i;
    json_t                *out, *doc;
    ngx_int_t              rc;
    ngx_umlo_task_ctx_t   *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_umlo_module);

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        json_decref(ctx->doc);
        ngx_http_finalize_request(r,
            ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "redis_unavailable", "%s; tasks are kept "
                                "in Redis", reply ? reply->str
                                                  : "Redis did not answer"));
        return;
    }

    out = NULL;
    rc = NGX_HTTP_OK;

    if (ngx_strcmp(ctx->what, "create") == 0) {
        out = ctx->doc;
        rc = NGX_HTTP_CREATED;

    } else if (ngx_strcmp(ctx->what, "list") == 0) {
        out = json_pack("{s:[]}", "data");

        for (i = 0; out && i < reply->elements; i++) {
            doc = json_loadb(reply->element[i]->str, reply->element[i]->len,
                             0, NULL);
            if (doc != NULL) {
                json_array_append_new(json_object_get(out, "data"), doc);
            }
        }

    } else if (ngx_strcmp(ctx->what, "get") == 0
               && reply->type == REDIS_REPLY_STRING)
    {
        out = json_loadb(reply->str, reply->len, 0, NULL);

    } else if (ngx_strcmp(ctx->what, "delete") == 0 && reply->integer == 1) {
        out = json_pack("{s:b}", "deleted", 1);

    } else if (ngx_strcmp(ctx->what, "run") == 0 && reply->integer == 1) {
        out = json_pack("{s:b,s:s}", "queued", 1, "message", "the task runs "
                        "within umlo_tasks_interval, once the org lock is "
                        "free; follow its last_run");
        rc = NGX_HTTP_ACCEPTED;

    } else {
        ngx_http_finalize_request(r,
            ngx_umlo_send_error(r, NGX_HTTP_NOT_FOUND, "unknown_task",
                                "no task has this id"));
        return;
    }

    rc = out ? ngx_umlo_send_json(r, rc, out)
             : NGX_HTTP_INTERNAL_SERVER_ERROR;
    json_decref(out);

    ngx_http_finalize_request(r, rc);
}


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
                                (long long) ngx_umlo_task_now(),
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

    json_t               *task;
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
    job->request = json_pack("{s:O,s:O,s:{s:O}}",
                             "action", json_object_get(task, "action"),
                             "params", json_object_get(task, "params"),
                             "target", "filter",
                             json_object_get(task, "filter"));
    ngx_snprintf((u_char *) job->actor, sizeof(job->actor) - 1, "task:%s%Z",
                 json_string_value(json_object_get(task, "name")));

    if (umcf->tasks_webhook.len) {
        job->webhook = ngx_pnalloc(job->pool, umcf->tasks_webhook.len + 1);
        if (job->webhook != NULL) {
            ngx_memcpy(job->webhook, umcf->tasks_webhook.data,
                       umcf->tasks_webhook.len);
            job->webhook[umcf->tasks_webhook.len] = '\0';
        }
    }

    job->task->handler = ngx_umlo_task_thread;
    job->task->event.handler = ngx_umlo_task_finished;
    job->task->event.data = job;

    if (job->request == NULL
        || ngx_thread_task_post(umcf->thread_pool, job->task) != NGX_OK)
    {
        /* the claim lapses and another look takes it again */
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
    }

    ngx_add_timer(&job->watch, NGX_UMLO_TASK_WATCH_MS);
}


static void
ngx_umlo_task_finished(ngx_event_t *ev)
{
    ngx_umlo_bulk_job_t  *job = ev->data;

    ngx_uint_t  level;

    if (job->watch.timer_set) {
        ngx_del_timer(&job->watch);
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

    int          locked;
    redisReply  *r;

    if (ngx_umlo_store_open(&job->store, &job->redis, job->org) != 0) {
        snprintf(job->error, sizeof(job->error), "%s", job->store.error);
        job->status = 503;
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

    /* the users the filter matches, re-read, then matched again */
    if (ngx_umlo_task_match(job) == 0) {
        ngx_umlo_store_close(&job->store);

        if (ngx_umlo_bulk_presync(job) == 0
            && ngx_umlo_store_open(&job->store, &job->redis, job->org) == 0
            && ngx_umlo_task_match(job) == 0
            && ngx_umlo_task_notice(job) == 0)
        {
            ngx_umlo_store_close(&job->store);
            ngx_umlo_bulk_plan(job);

            if (job->status == 202) {
                ngx_umlo_bulk_exec(job);
            }
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

    q = ngx_umlo_query_parse(snap, args, len, ngx_umlo_task_now(), &qerr);

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


/*
 * A notice period: a user is acted on only once the filter has matched
 * them for that long.  The first match is remembered per task; a user the
 * filter no longer matches is forgotten.  job->ids keeps the users whose
 * notice has run out.
 */

static int
ngx_umlo_task_notice(ngx_umlo_bulk_job_t *job)
{
    char          key[512];
    size_t        i;
    json_t       *id, *act, *seen;
    long long     notice, now, first;
    unsigned      fresh, waiting;
    redisReply   *r;
    const char   *account;

    notice = json_integer_value(json_object_get(job->run_of, "notice"));
    if (notice <= 0) {
        return 0;
    }

    now = ngx_umlo_task_now();

    snprintf(key, sizeof(key), NGX_UMLO_KEY_TASK_NOTICE, job->org,
             json_string_value(json_object_get(job->run_of, "id")));

    r = ngx_umlo_store_command(&job->store, "HGETALL %s", key);
    if (r == NULL) {
        snprintf(job->error, sizeof(job->error), "%s", job->store.error);
        job->status = 503;
        return -1;
    }

    seen = json_object();

    for (i = 0; i + 1 < r->elements; i += 2) {
        json_object_set_new(seen, r->element[i]->str,
                            json_integer(strtoll(r->element[i + 1]->str,
                                                 NULL, 10)));
    }

    freeReplyObject(r);

    act = json_array();
    fresh = 0;
    waiting = 0;

    json_array_foreach(job->ids, i, id) {
        account = json_string_value(id);
        first = json_integer_value(json_object_get(seen, account));

        if (json_object_get(seen, account) == NULL) {
            (void) ngx_umlo_store_append(&job->store, "HSET %s %s %lld", key,
                                         account, now);
            fresh++;

        } else if (now - first >= notice * 1000) {
            json_array_append(act, id);

        } else {
            waiting++;
        }

        json_object_del(seen, account);
    }

    /* no longer matched: the notice starts again if they match again */
    json_object_foreach(seen, account, id) {
        (void) ngx_umlo_store_append(&job->store, "HDEL %s %s", key,
                                     account);
    }

    json_decref(seen);

    if (ngx_umlo_store_flush(&job->store) != 0) {
        json_decref(act);
        snprintf(job->error, sizeof(job->error), "%s", job->store.error);
        job->status = 503;
        return -1;
    }

    json_decref(job->ids);
    job->ids = act;

    json_object_set_new(job->run_of, "notice_state",
                        json_pack("{s:i,s:i,s:I}", "new", fresh,
                                  "waiting", waiting,
                                  "due", (json_int_t) json_array_size(act)));

    return 0;
}


/* the run's outcome into the task, its next run, and the webhook */

static void
ngx_umlo_task_record(ngx_umlo_bulk_job_t *job)
{
    char         at[32], result[256], *text;
    json_t      *task, *last, *event;
    long long    now, next;
    redisReply  *r;
    const char  *state;

    now = ngx_umlo_task_now();
    ngx_umlo_task_iso(at, sizeof(at), now);

    state = (job->status == 202)
            ? json_string_value(json_object_get(job->doc, "state"))
            : (job->status == 409 ? "postponed" : "failed");
    state = state ? state : "failed";

    next = (job->status == 409)
           ? now + NGX_UMLO_TASK_RETRY_MS
           : ngx_umlo_task_next(json_object_get(job->run_of, "schedule"),
                                now);

    last = json_pack("{s:s,s:s,s:s,s:O?,s:s?,s:O?}",
                     "job", job->id, "at", at, "state", state,
                     "counts", json_object_get(job->doc, "counts"),
                     "error", job->error[0] ? job->error : NULL,
                     "notice", json_object_get(job->run_of, "notice_state"));

    if (strcmp(state, "postponed") != 0 && job->webhook != NULL) {
        event = json_pack("{s:s,s:O,s:O,s:s,s:s,s:O?,s:s?,s:s,s:O?}",
                          "event", strcmp(state, "succeeded") == 0
                                   ? "task.completed" : "task.failed",
                          "task", json_object_get(job->run_of, "id"),
                          "name", json_object_get(job->run_of, "name"),
                          "job", job->id, "state", state,
                          "counts", json_object_get(job->doc, "counts"),
                          "error", job->error[0] ? job->error : NULL,
                          "at", at,
                          "notice", json_object_get(job->run_of,
                                                    "notice_state"));
        ngx_umlo_task_webhook(job, event, result, sizeof(result));
        json_decref(event);
        json_object_set_new(last, "webhook", json_string(result));
    }

    task = json_deep_copy(job->run_of);
    json_object_del(task, "notice_state");
    json_object_set_new(task, "last_run", last);
    json_object_set_new(task, "next_run_ms", json_integer(next));
    ngx_umlo_task_iso(at, sizeof(at), next);
    json_object_set_new(task, "next_run_at", json_string(at));

    text = json_dumps(task, JSON_COMPACT);
    json_decref(task);

    if (text == NULL) {
        return;
    }

    r = ngx_umlo_store_command(&job->store, "EVAL %s 2 " NGX_UMLO_KEY_TASKS
                               " " NGX_UMLO_KEY_TASKS_DUE " %s %s %lld",
                               ngx_umlo_task_done_lua, job->org, job->org,
                               json_string_value(json_object_get(job->run_of,
                                                                 "id")),
                               text, next);
    free(text);

    if (r != NULL) {
        freeReplyObject(r);
    }
}


/* POST the event; the outcome goes into the task's last_run */

static void
ngx_umlo_task_webhook(ngx_umlo_bulk_job_t *job, json_t *event, char *result,
    size_t len)
{
    long                curl_status;
    char               *text;
    CURL               *h;
    CURLcode            rc;
    struct curl_slist  *headers;

    text = json_dumps(event, JSON_COMPACT);
    h = curl_easy_init();

    if (text == NULL || h == NULL) {
        snprintf(result, len, "not sent: out of memory");
        free(text);
        if (h != NULL) {
            curl_easy_cleanup(h);
        }

        return;
    }

    headers = curl_slist_append(NULL, "Content-Type: application/json");

    curl_easy_setopt(h, CURLOPT_URL, job->webhook);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);

    rc = curl_easy_perform(h);

    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &curl_status);
        snprintf(result, len, "HTTP %ld", curl_status);

    } else {
        snprintf(result, len, "not sent: %s", curl_easy_strerror(rc));
    }

    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    free(text);
}


/* {"every": seconds}: from now; {"daily": "HH:MM"}: the next one, UTC */

static long long
ngx_umlo_task_next(json_t *schedule, long long now_ms)
{
    long long    day, at;
    const char  *daily;

    daily = json_string_value(json_object_get(schedule, "daily"));

    if (daily == NULL) {
        return now_ms + 1000 * json_integer_value(json_object_get(schedule,
                                                                  "every"));
    }

    day = now_ms - now_ms % 86400000;
    at = day + ((daily[0] - '0') * 10 + (daily[1] - '0')) * 3600000LL
         + ((daily[3] - '0') * 10 + (daily[4] - '0')) * 60000LL;

    return at > now_ms ? at : at + 86400000;
}


static long long
ngx_umlo_task_now(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


static void
ngx_umlo_task_iso(char *buf, size_t size, long long ms)
{
    time_t     t;
    struct tm  tm;

    t = (time_t) (ms / 1000);
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
