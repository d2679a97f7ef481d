/*
 * Copyright (C) ngx_umlo authors
 *
 * umlo_tasks on the event loop: create, list, read, delete, run now; and
 * the schedule's arithmetic.  The timer and a run are in
 * ngx_umlo_task_run.c, a run's notice list and record in
 * ngx_umlo_task_record.c.
 */




#include "ngx_umlo_clock.h"
#include "ngx_umlo_task_int.h"
#include "ngx_umlo_handler.h"
#include "ngx_umlo_guard.h"
#include "ngx_umlo_redis.h"

#include <sys/time.h>


static const char  ngx_umlo_task_save_lua[] =
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])"
    " redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) return 1";

static const char  ngx_umlo_task_delete_lua[] =
    "if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end"
    " redis.call('ZREM', KEYS[2], ARGV[1])"
    " redis.call('DEL', KEYS[3]) return 1";

/* a task and the users on its notice list */
static const char  ngx_umlo_task_notice_lua[] =
    "local t = redis.call('HGET', KEYS[1], ARGV[1])"
    " if not t then return false end"
    " return {t, redis.call('HGETALL', KEYS[2])}";

static const char  ngx_umlo_task_now_lua[] =
    "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end"
    " redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) return 1";


static void ngx_umlo_task_body(ngx_http_request_t *r);
static ngx_int_t ngx_umlo_task_create(ngx_http_request_t *r, json_t *body,
    json_t **doc);
static void ngx_umlo_task_reply(redisReply *reply, void *data);
static json_t *ngx_umlo_task_notice_list(redisReply *reply);


typedef struct {
    const char  *what;      /* list, get, delete, run, notice, create */
    json_t      *doc;       /* create: the task answered */
} ngx_umlo_task_ctx_t;


/* ------------------------------------------------------------ the API */

ngx_int_t
ngx_umlo_tasks_handler(ngx_http_request_t *r)
{
    u_char                    *id;
    size_t                     len;
    ngx_int_t                  rc;
    ngx_str_t                  rest;
    ngx_uint_t                 run, notice;
    ngx_umlo_task_ctx_t       *ctx;
    ngx_umlo_main_conf_t      *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    ngx_umlo_bulk_path(r, &rest);

    /* state changes: a JSON content type, the admin token, a sane body */
    if ((r->method & (NGX_HTTP_POST|NGX_HTTP_DELETE))
        && ngx_umlo_guard_request(r, &rc) != NGX_OK)
    {
        return rc;
    }

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
    notice = (rest.len > 7
              && ngx_strncmp(rest.data + rest.len - 7, "/notice", 7) == 0);
    len = rest.len - (run ? 4 : 0) - (notice ? 7 : 0);

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
                                     (long long) ngx_umlo_clock_ms());

    } else if (notice) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_umlo_send_not_allowed(r, "GET, HEAD");
        }

        ctx->what = "notice";
        rc = ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_task_reply, r,
                                     "EVAL %s 2 " NGX_UMLO_KEY_TASKS " "
                                     NGX_UMLO_KEY_TASK_NOTICE " %s",
                                     ngx_umlo_task_notice_lua,
                                     umcf->org.data, umcf->org.data, id, id);

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
 * {"name", "filter" or "users", "action" (+ site, product, group),
 * "schedule": {"every": "6h"} or {"daily": "03:00"}}: the bulk fields are
 * checked by the bulk parser, as a POST to umlo_bulk would be.
 */

static ngx_int_t
ngx_umlo_task_create(ngx_http_request_t *r, json_t *body, json_t **doc)
{
    u_char                *p;
    json_t                *bulk, *schedule, *value, *sched, *target;
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

    if (json_object_get(body, "filter") == NULL
        && json_object_get(body, "users") == NULL)
    {
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST, "missing_field",
                                   "a task needs \"filter\" (the saved "
                                   "users API query it acts on) or "
                                   "\"users\" (account ids)");
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

        if (ngx_strcmp(key, "dry_run") == 0 || ngx_strcmp(key, "force") == 0)
        {
            json_decref(bulk);
            return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "unexpected_field", "a task takes no "
                                       "\"%s\": it runs on data synced "
                                       "just before", key);
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

    target = json_object_get(job->request, "target");

    /* a filter's run is a full sync of the org: not too often */
    if (daily == NULL && json_object_get(target, "filter") != NULL
        && every < umcf->tasks_filter_min)
    {
        ngx_umlo_bulk_job_free(job);
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                   "invalid_schedule", "\"schedule.every\" "
                                   "must be at least %T seconds for a "
                                   "\"filter\" task, whose every run syncs "
                                   "the whole org first "
                                   "(umlo_tasks_filter_min_every)",
                                   umcf->tasks_filter_min);
    }

    for (i = 0; i < sizeof(rnd); i++) {
        rnd[i] = (u_char) ngx_random();
    }

    p = ngx_cpymem(id, "t-", 2);
    p = ngx_hex_dump(p, rnd, sizeof(rnd));
    *p = '\0';

    sched = daily ? json_pack("{s:s}", "daily", daily)
                  : json_pack("{s:I}", "every", (json_int_t) every);

    now = ngx_umlo_clock_ms();
    next = ngx_umlo_task_next(sched, now);
    ngx_umlo_clock_iso(at, sizeof(at), now);

    /*
     * What a run syncs first.  Only an explicit list of users bounds whom
     * the task can act on; any filter can newly match someone the
     * snapshot has otherwise (a status, group, product, role, name or
     * activity change, a new member), so a filter needs the whole org.
     */
    *doc = json_pack("{s:s,s:s,s:O?,s:O?,s:s,s:O,s:O,s:o,s:s,s:s,s:I,s:n}",
                     "id", (char *) id, "name", name,
                     "filter", json_object_get(target, "filter"),
                     "users", json_object_get(target, "users"),
                     "presync", json_object_get(target, "users") ? "users"
                                                                 : "full",
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

    /* one of the two */
    json_object_del(*doc, json_is_null(json_object_get(*doc, "users"))
                          ? "users" : "filter");

    ngx_umlo_clock_iso(at, sizeof(at), next);
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

    } else if (ngx_strcmp(ctx->what, "notice") == 0
               && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2)
    {
        out = ngx_umlo_task_notice_list(reply);

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



/* {task, [account, first matched ms, ...]}: who is on notice, until when */

static json_t *
ngx_umlo_task_notice_list(redisReply *reply)
{
    char         at[32], due[32];
    size_t       i;
    json_t      *task, *out;
    redisReply  *list;
    long long    notice, first;

    task = json_loadb(reply->element[0]->str, reply->element[0]->len, 0,
                      NULL);
    if (task == NULL) {
        return NULL;
    }

    notice = json_integer_value(json_object_get(task, "notice"));
    out = json_pack("{s:O,s:O,s:I,s:[]}",
                    "task", json_object_get(task, "id"),
                    "name", json_object_get(task, "name"),
                    "notice", (json_int_t) notice, "data");
    json_decref(task);

    list = reply->element[1];

    for (i = 0; out != NULL && i + 1 < list->elements; i += 2) {
        first = strtoll(list->element[i + 1]->str, NULL, 10);
        ngx_umlo_clock_iso(at, sizeof(at), first);
        ngx_umlo_clock_iso(due, sizeof(due), first + notice * 1000);

        json_array_append_new(json_object_get(out, "data"),
                              json_pack("{s:s,s:s,s:s}",
                                        "id", list->element[i]->str,
                                        "noticed_at", at, "due_at", due));
    }

    return out;
}


/* {"every": seconds}: from now; {"daily": "HH:MM"}: the next one, UTC */

long long
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


