/*
 * Copyright (C) ngx_umlo authors
 *
 * umlo_bulk on the event loop: POST plans a job (a dry run, or a job that
 * runs at once); the GETs below the location are in ngx_umlo_bulk_read.c.
 * A filter target is evaluated by the user browser's query engine on the
 * worker's snapshot; planning and running happen in pool threads
 * (ngx_umlo_bulk_plan.c, ngx_umlo_bulk_exec.c).
 */


#include "ngx_umlo_bulk.h"
#include "ngx_umlo_handler.h"
#include "ngx_umlo_guard.h"
#include "ngx_umlo_keys.h"
#include "ngx_umlo_redis.h"
#include "ngx_umlo_cache.h"
#include "ngx_umlo_query.h"


#define NGX_UMLO_BULK_WATCH_MS      250
#define NGX_UMLO_BULK_ID_MAX        128


typedef struct {
    const char  *name;
    unsigned     site_product:1;
    unsigned     group:1;
} ngx_umlo_bulk_action_t;


static ngx_umlo_bulk_action_t  ngx_umlo_bulk_actions[] = {
    { "remove_product",    1, 0 },
    { "remove_from_group", 0, 1 },
    { "add_to_group",      0, 1 },
    { "suspend",           0, 0 },
    { "restore",           0, 0 },
    { "deactivate",        0, 0 },
    { "reactivate",        0, 0 },
    { NULL,                0, 0 }
};

/* the filter is the users API's query, less what pages and formats it */
static const char  *ngx_umlo_bulk_no_filter[] = {
    "limit", "cursor", "format", "sort", "order", NULL
};


static void ngx_umlo_bulk_body(ngx_http_request_t *r);
static ngx_int_t ngx_umlo_bulk_parse(ngx_http_request_t *r,
    ngx_umlo_bulk_job_t *job);
static ngx_int_t ngx_umlo_bulk_parse_job(ngx_http_request_t *r,
    ngx_umlo_bulk_job_t *job, json_t *body);
static void ngx_umlo_bulk_filtered(ngx_http_request_t *r,
    ngx_umlo_snapref_t *ref, ngx_uint_t rc, const char *error);
static ngx_int_t ngx_umlo_bulk_post(ngx_umlo_bulk_job_t *job,
    ngx_uint_t execute);
static void ngx_umlo_bulk_plan_thread(void *data, ngx_log_t *log);
static void ngx_umlo_bulk_exec_thread(void *data, ngx_log_t *log);
static void ngx_umlo_bulk_planned(ngx_event_t *ev);
static void ngx_umlo_bulk_executed(ngx_event_t *ev);
static void ngx_umlo_bulk_watch(ngx_event_t *ev);
static void ngx_umlo_bulk_ignore(redisReply *reply, void *data);
static void ngx_umlo_bulk_mark(void *data);


ngx_int_t
ngx_umlo_bulk_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;
    ngx_str_t  rest;

    ngx_umlo_bulk_path(r, &rest);

    /* POST to the location itself; GET below it */
    if (rest.len == 0 ? r->method != NGX_HTTP_POST
                      : !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)))
    {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_umlo_send_not_allowed(r, rest.len ? "GET, HEAD" : "POST");
    }

    if (rest.len) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_umlo_bulk_get(r, &rest);
    }

    if (ngx_umlo_guard_request(r, &rc) != NGX_OK) {
        return rc;
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_umlo_bulk_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * The reference that reading the body took on the request travels with
 * the job: to the filter's snapshot callback, then to the plan task's
 * completion, which finalizes the request.
 */

static void
ngx_umlo_bulk_body(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_pool_cleanup_t   *cln;
    ngx_umlo_bulk_job_t  *job;

    job = ngx_umlo_bulk_job_create(r,
              ngx_http_get_module_main_conf(r, ngx_umlo_module));
    if (job == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_umlo_bulk_parse(r, job);
    if (rc != NGX_DECLINED) {
        ngx_umlo_bulk_job_free(job);
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (json_object_get(json_object_get(job->request, "target"), "filter")
        != NULL && job->token_in == NULL)
    {
        /* the snapshot cache has the module's ctx: the job goes here */
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            ngx_umlo_bulk_job_free(job);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        cln->handler = ngx_umlo_bulk_mark;
        cln->data = job;

        /* the cache's reference replaces the body's */
        (void) ngx_umlo_cache_get(r, ngx_umlo_bulk_filtered);
        ngx_http_finalize_request(r, NGX_DONE);
        return;
    }

    if (ngx_umlo_bulk_post(job, 0) != NGX_OK) {
        ngx_umlo_bulk_job_free(job);
        ngx_http_finalize_request(r,
            ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "thread_pool_busy", "the thread pool did "
                                "not take the job (queue full?); try "
                                "again"));
    }
}


/*
 * The body in one piece: request_body_in_single_buf is not always
 * honoured, the part read with the headers can stay a buffer of its own.
 */

ngx_int_t
ngx_umlo_bulk_read_body(ngx_http_request_t *r, u_char **body, size_t *len)
{
    u_char       *p;
    ngx_chain_t  *cl;

    cl = r->request_body->bufs;

    if (cl->next == NULL) {
        *body = cl->buf->pos;
        *len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    *len = 0;
    for ( /* void */ ; cl; cl = cl->next) {
        *len += cl->buf->last - cl->buf->pos;
    }

    p = ngx_pnalloc(r->pool, *len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *body = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    return NGX_OK;
}


/*
 * 4xx answers are sent here: anything but NGX_DECLINED (a valid body) is
 * what to finalize the request with.
 */

static ngx_int_t
ngx_umlo_bulk_parse(ngx_http_request_t *r, ngx_umlo_bulk_job_t *job)
{
    u_char        *p;
    size_t         len;
    json_t        *body, *value;
    ngx_int_t      rc;
    const char    *key, *token;
    json_error_t   err;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST, "invalid_body",
                                   "the body must be a JSON object with "
                                   "\"action\" and \"users\" or "
                                   "\"filter\", or with \"token\"");
    }

    if (r->request_body->temp_file) {
        return ngx_umlo_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                   "body_too_large", "the request body is "
                                   "larger than client_body_buffer_size");
    }

    if (ngx_umlo_bulk_read_body(r, &p, &len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body = json_loadb((char *) p, len, JSON_REJECT_DUPLICATES, &err);
    if (body == NULL) {
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                   "the body is not a JSON object: %s at "
                                   "character %d", err.text, err.position);
    }

    value = json_object_get(body, "token");

    if (value == NULL) {
        rc = ngx_umlo_bulk_parse_job(r, job, body);
        json_decref(body);
        return rc;
    }

    json_object_foreach(body, key, value) {
        if (ngx_strcmp(key, "token") != 0) {
            json_decref(body);
            return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "unexpected_field", "\"%s\" cannot "
                                       "go with \"token\": a token runs "
                                       "its dry run's plan unchanged", key);
        }
    }

    token = json_string_value(json_object_get(body, "token"));

    if (token == NULL || ngx_strlen(token) != 32
        || strspn(token, "0123456789abcdef") != 32)
    {
        json_decref(body);
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST, "invalid_token",
                                   "\"token\" must be the token of a dry "
                                   "run (32 hex digits)");
    }

    job->token_in = ngx_pnalloc(job->pool, 33);
    if (job->token_in == NULL) {
        json_decref(body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(job->token_in, token, 33);
    json_decref(body);

    job->request = json_pack("{s:s,s:{},s:{}}", "action", "",
                             "params", "target");

    return job->request ? NGX_DECLINED : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


ngx_int_t
ngx_umlo_bulk_parse_body(ngx_http_request_t *r, ngx_umlo_bulk_job_t *job,
    json_t *body)
{
    return ngx_umlo_bulk_parse_job(r, job, body);
}


static ngx_int_t
ngx_umlo_bulk_parse_job(ngx_http_request_t *r, ngx_umlo_bulk_job_t *job,
    json_t *body)
{
    size_t                   i, len;
    json_t                  *value, *users, *filter, *params, *target;
    const char              *key, *action, *s;
    ngx_umlo_bulk_action_t  *a;

    static const char  *fields[] = {
        "action", "site", "product", "group", "users", "filter", "dry_run",
        "force", NULL
    };

    if (!json_is_object(body)) {
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST, "invalid_body",
                                   "the body must be a JSON object");
    }

    json_object_foreach(body, key, value) {
        for (i = 0; fields[i]; i++) {
            if (ngx_strcmp(key, fields[i]) == 0) {
                break;
            }
        }

        if (fields[i] == NULL) {
            return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "unknown_field", "unknown field "
                                       "\"%s\"", key);
        }
    }

    action = json_string_value(json_object_get(body, "action"));
    a = ngx_umlo_bulk_actions;

    while (action != NULL && a->name && ngx_strcmp(a->name, action) != 0) {
        a++;
    }

    if (action == NULL || a->name == NULL) {
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST, "invalid_action",
                                   "\"action\" must be one of "
                                   "remove_product, remove_from_group, "
                                   "add_to_group, suspend, restore, "
                                   "deactivate, reactivate");
    }

    params = json_object();
    if (params == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    job->request = json_pack("{s:s,s:o}", "action", action, "params", params);
    if (job->request == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 1; i < 4; i++) {
        value = json_object_get(body, fields[i]);
        s = json_string_value(value);
        len = s ? ngx_strlen(s) : 0;

        if ((i < 3 && a->site_product) || (i == 3 && a->group)) {
            if (len == 0 || len > 256) {
                return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                           "missing_field", "%s needs "
                                           "\"%s\": a non-empty string",
                                           action, fields[i]);
            }

            json_object_set(params, fields[i], value);
            continue;
        }

        if (value != NULL) {
            return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "unexpected_field", "%s takes no "
                                       "\"%s\"", action, fields[i]);
        }
    }

    for (i = 6; i < 8; i++) {
        value = json_object_get(body, fields[i]);

        if (value != NULL && !json_is_boolean(value)) {
            return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "invalid_field", "\"%s\" must be "
                                       "true or false", fields[i]);
        }
    }

    users = json_object_get(body, "users");
    filter = json_object_get(body, "filter");

    if ((users == NULL) == (filter == NULL)) {
        return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST, "invalid_target",
                                   "give exactly one of \"users\" (account "
                                   "ids) and \"filter\" (a users API "
                                   "query such as \"status=active&"
                                   "inactive_days=90\")");
    }

    job->force = json_is_true(json_object_get(body, "force"));

    if (users != NULL) {
        if (!json_is_array(users) || json_array_size(users) == 0) {
            return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "invalid_users", "\"users\" must be "
                                       "a non-empty array of account ids");
        }

        job->ids = json_array();
        if (job->ids == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        json_array_foreach(users, i, value) {
            s = json_string_value(value);
            len = s ? ngx_strlen(s) : 0;

            if (len == 0 || len > NGX_UMLO_BULK_ID_MAX
                || strspn(s, "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.")
                   != len)
            {
                return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                           "invalid_users", "\"users\"[%uz] "
                                           "is not an account id", i);
            }

            /* the same user twice is one user */
            for (len = 0; len < json_array_size(job->ids); len++) {
                if (json_equal(json_array_get(job->ids, len), value)) {
                    break;
                }
            }

            if (len == json_array_size(job->ids)) {
                json_array_append(job->ids, value);
            }
        }

        /* explicit users run at once unless a dry run is asked for */
        job->dry_run = json_is_true(json_object_get(body, "dry_run"));
        target = json_pack("{s:O}", "users", job->ids);

    } else {
        s = json_string_value(filter);

        if (s == NULL || ngx_strlen(s) > 4096) {
            return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "invalid_filter", "\"filter\" must "
                                       "be a users API query string, such "
                                       "as \"site=acme.atlassian.net&"
                                       "inactive_days=90\"");
        }

        for (i = 0; ngx_umlo_bulk_no_filter[i]; i++) {
            len = ngx_strlen(ngx_umlo_bulk_no_filter[i]);
            key = s;

            while (key != NULL) {
                if (ngx_strncmp(key, ngx_umlo_bulk_no_filter[i], len) == 0
                    && key[len] == '=')
                {
                    return ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                               "invalid_filter", "\"filter\""
                                               " cannot use \"%s\": a job "
                                               "takes every matching user",
                                               ngx_umlo_bulk_no_filter[i]);
                }

                key = ngx_strchr(key, '&');
                key = key ? key + 1 : NULL;
            }
        }

        /* a filter is a dry run unless told otherwise */
        value = json_object_get(body, "dry_run");
        job->dry_run = value ? json_is_true(value) : 1;
        target = json_pack("{s:O}", "filter", filter);
    }

    if (target == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(job->request, "target", target);

    return NGX_DECLINED;
}


ngx_umlo_bulk_job_t *
ngx_umlo_bulk_job_create(ngx_http_request_t *r, ngx_umlo_main_conf_t *umcf)
{
    u_char                 rnd[16], *p, *last;
    ngx_str_t              actor;
    ngx_uint_t             i;
    ngx_pool_t            *pool;
    ngx_str_t             *group;
    ngx_thread_task_t     *task;
    ngx_umlo_bulk_job_t   *job;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    task = ngx_thread_task_alloc(pool, sizeof(ngx_umlo_bulk_job_t));
    if (task == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    job = task->ctx;
    job->task = task;
    job->pool = pool;
    job->log = ngx_cycle->log;

    /* C strings for the threads, copied: a reload frees the old conf */
    job->api_base = ngx_pcalloc(pool, umcf->api_base.len + 1);
    job->api_key = ngx_pcalloc(pool, umcf->api_key.len + 1);
    job->org = ngx_pcalloc(pool, umcf->org.len + 1);
    job->protected = json_array();

    if (job->api_base == NULL || job->api_key == NULL || job->org == NULL
        || job->protected == NULL)
    {
        json_decref(job->protected);
        ngx_destroy_pool(pool);
        return NULL;
    }

    ngx_memcpy(job->api_base, umcf->api_base.data, umcf->api_base.len);
    ngx_memcpy(job->api_key, umcf->api_key.data, umcf->api_key.len);
    ngx_memcpy(job->org, umcf->org.data, umcf->org.len);

    ngx_umlo_store_conf(umcf, &job->redis);

    job->timeout_ms = (unsigned) umcf->sync_timeout;
    job->retries = (unsigned) umcf->sync_retries;
    job->lease_ms = (unsigned) umcf->sync_lease;
    job->max_users = (unsigned) umcf->bulk_max_users;
    job->max_age_s = (long long) umcf->bulk_max_age;
    job->token_ttl_ms = (unsigned) umcf->bulk_token_ttl;
    job->retention_s = (unsigned) umcf->bulk_retention;
    job->audit_max = (unsigned) umcf->bulk_audit_max;

    if (umcf->bulk_protected != NULL) {
        group = umcf->bulk_protected->elts;

        for (i = 0; i < umcf->bulk_protected->nelts; i++) {
            json_array_append_new(job->protected,
                                  json_stringn((char *) group[i].data,
                                               group[i].len));
        }
    }

    /* who asked: the configured name, else the authenticated user */
    ngx_str_null(&actor);

    if (r == NULL) {
        ngx_str_set(&actor, "task");

    } else if (umcf->bulk_actor != NULL) {
        if (ngx_http_complex_value(r, umcf->bulk_actor, &actor) != NGX_OK) {
            ngx_str_null(&actor);
        }

    } else if (ngx_http_auth_basic_user(r) == NGX_OK) {
        actor = r->headers_in.user;
    }

    p = (u_char *) job->actor;
    last = p + sizeof(job->actor) - 1;

    for (i = 0; i < actor.len && p < last; i++) {
        *p++ = (actor.data[i] >= 0x20 && actor.data[i] < 0x7f)
               ? actor.data[i] : '?';
    }

    if (p == (u_char *) job->actor) {
        p = ngx_cpymem(p, "anonymous", 9);
    }

    *p = '\0';

    for (i = 0; i < sizeof(rnd); i++) {
        rnd[i] = (u_char) ngx_random();
    }

    p = ngx_snprintf((u_char *) job->id, NGX_UMLO_BULK_ID_LEN - 1,
                     "b-%T%03M-", ngx_time(), ngx_current_msec % 1000);
    p = ngx_hex_dump(p, rnd, 4);
    *p = '\0';

    p = ngx_snprintf((u_char *) job->lock, sizeof(job->lock) - 1, "%s/",
                     job->id);
    p = ngx_hex_dump(p, rnd + 4, 12);
    *p = '\0';

    job->r = r;

    return job;
}


void
ngx_umlo_bulk_job_free(ngx_umlo_bulk_job_t *job)
{
    ngx_explicit_memzero(job->api_key, ngx_strlen(job->api_key));

    ngx_umlo_model_free(&job->model);
    json_decref(job->docs);
    json_decref(job->doc);
    json_decref(job->request);
    json_decref(job->ids);
    json_decref(job->protected);
    json_decref(job->run_of);
    json_decref(job->event);

    ngx_destroy_pool(job->pool);
}


/* the filter, evaluated on the worker's snapshot like GET .../users */

static void
ngx_umlo_bulk_filtered(ngx_http_request_t *r, ngx_umlo_snapref_t *ref,
    ngx_uint_t rc, const char *error)
{
    u_char                *args;
    size_t                 i, len;
    json_t                *page, *row, *err;
    uint32_t               total;
    ngx_int_t              status;
    const char            *filter;
    ngx_umlo_query_t      *q;
    ngx_pool_cleanup_t    *cln;
    ngx_umlo_bulk_job_t   *job;
    ngx_umlo_query_err_t   qerr;

    job = NULL;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_umlo_bulk_mark) {
            job = cln->data;
            cln->data = NULL;
            break;
        }
    }

    if (job == NULL) {
        if (ref != NULL) {
            ngx_umlo_cache_release(ref);
        }

        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ref == NULL) {
        ngx_umlo_bulk_job_free(job);
        ngx_http_finalize_request(r, rc == NGX_UMLO_CACHE_NO_SNAPSHOT
            ? ngx_umlo_send_error(r, NGX_HTTP_NOT_FOUND, "no_snapshot", "%s",
                                  error)
            : ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "redis_unavailable", "%s", error));
        return;
    }

    filter = json_string_value(json_object_get(json_object_get(job->request,
                                                               "target"),
                                               "filter"));
    len = ngx_strlen(filter);

    /* every match on one page: the cap is at most the page's limit */
    args = ngx_pnalloc(r->pool, len + sizeof("&limit=1000"));
    if (args == NULL) {
        ngx_umlo_cache_release(ref);
        ngx_umlo_bulk_job_free(job);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    i = ngx_sprintf(args, "%s%slimit=%ui", filter, len ? "&" : "",
                    (ngx_uint_t) NGX_UMLO_QUERY_LIMIT_MAX) - args;

    q = ngx_umlo_query_parse(ref->snap, (char *) args, i,
                             (int64_t) ngx_time() * 1000, &qerr);

    if (q == NULL || ngx_umlo_query_run(q, &qerr) != 0) {
        if (q != NULL) {
            ngx_umlo_query_free(q);
        }

        ngx_umlo_cache_release(ref);
        ngx_umlo_bulk_job_free(job);

        err = ngx_umlo_query_error(&qerr);
        if (err != NULL) {
            json_object_set_new(json_object_get(err, "error"), "field",
                                json_string("filter"));
        }

        status = err ? ngx_umlo_send_json(r, qerr.status, err)
                     : NGX_HTTP_INTERNAL_SERVER_ERROR;
        json_decref(err);
        ngx_http_finalize_request(r, status);
        return;
    }

    total = ngx_umlo_query_total(q);

    if (total > job->max_users) {
        ngx_umlo_query_free(q);
        ngx_umlo_cache_release(ref);
        status = ngx_umlo_send_error(r, 422, "too_many_users", "the filter "
                                     "matches %uD users, more than "
                                     "umlo_bulk_max_users (%ui): narrow it "
                                     "down", total,
                                     (ngx_uint_t) job->max_users);
        ngx_umlo_bulk_job_free(job);
        ngx_http_finalize_request(r, status);
        return;
    }

    page = ngx_umlo_query_page(q);
    ngx_umlo_query_free(q);
    ngx_umlo_cache_release(ref);

    job->ids = json_array();

    if (page == NULL || job->ids == NULL) {
        json_decref(page);
        ngx_umlo_bulk_job_free(job);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    json_array_foreach(json_object_get(page, "data"), i, row) {
        json_array_append(job->ids, json_object_get(row, "id"));
    }

    json_decref(page);

    if (ngx_umlo_bulk_post(job, 0) != NGX_OK) {
        ngx_umlo_bulk_job_free(job);
        ngx_http_finalize_request(r,
            ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "thread_pool_busy", "the thread pool did "
                                "not take the job (queue full?); try "
                                "again"));
    }
}


static ngx_int_t
ngx_umlo_bulk_post(ngx_umlo_bulk_job_t *job, ngx_uint_t execute)
{
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_umlo_module);

    job->task->handler = execute ? ngx_umlo_bulk_exec_thread
                                 : ngx_umlo_bulk_plan_thread;
    job->task->event.handler = execute ? ngx_umlo_bulk_executed
                                       : ngx_umlo_bulk_planned;
    job->task->event.data = job;

    if (ngx_thread_task_post(umcf->thread_pool, job->task) != NGX_OK) {
        return NGX_ERROR;
    }

    if (execute) {
        /* a quitting worker waits for the job, and tells it to stop */
        job->watch.handler = ngx_umlo_bulk_watch;
        job->watch.data = job;
        job->watch.log = job->log;
        ngx_add_timer(&job->watch, NGX_UMLO_BULK_WATCH_MS);
    }

    return NGX_OK;
}


static void
ngx_umlo_bulk_plan_thread(void *data, ngx_log_t *log)
{
    ngx_umlo_bulk_plan(data);
}


static void
ngx_umlo_bulk_exec_thread(void *data, ngx_log_t *log)
{
    ngx_umlo_bulk_exec(data);
}


static void
ngx_umlo_bulk_planned(ngx_event_t *ev)
{
    ngx_umlo_bulk_job_t  *job = ev->data;

    char                  *text;
    json_t                *out;
    ngx_int_t              rc;
    ngx_http_request_t    *r;
    ngx_umlo_main_conf_t  *umcf;

    r = job->r;
    job->r = NULL;

    if (job->status >= 400 || job->doc == NULL) {
        rc = ngx_umlo_send_error(r, job->status ? job->status : 500,
                                 job->code[0] ? job->code : "internal_error",
                                 "%s", job->error);
        ngx_umlo_bulk_job_free(job);
        ngx_http_finalize_request(r, rc);
        return;
    }

    out = json_deep_copy(job->doc);
    if (out == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    json_object_set_new(out, "links",
                        json_pack("{s:s%}", "self", r->uri.data, r->uri.len));

    if (!job->execute) {
        rc = ngx_umlo_send_json(r, NGX_HTTP_OK, out);
        json_decref(out);
        goto done;
    }

    if (ngx_umlo_bulk_post(job, 1) != NGX_OK) {
        json_decref(out);

        /* nothing was done: give the lock back, record the failure */
        umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);
        json_object_set_new(job->doc, "state", json_string("failed"));
        json_object_set_new(job->doc, "error",
                            json_string("the thread pool did not take the "
                                        "job"));
        text = json_dumps(job->doc, JSON_COMPACT);

        (void) ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_bulk_ignore,
                                       NULL, "EVAL %s 1 " NGX_UMLO_KEY_LOCK
                                       " %s", "if redis.call('GET', KEYS[1])"
                                       " == ARGV[1] then return redis.call("
                                       "'DEL', KEYS[1]) end return 0",
                                       job->org, job->lock);
        if (text != NULL) {
            (void) ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_bulk_ignore,
                                           NULL, "SET " NGX_UMLO_KEY_BULK_JOB
                                           " %s EX %u", job->org, job->id,
                                           text, job->retention_s);
            free(text);
        }

        rc = ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "thread_pool_busy", "the thread pool did "
                                 "not take the job (queue full?); nothing "
                                 "was changed, try again");
        ngx_umlo_bulk_job_free(job);
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "umlo: bulk job %s (%s) started by \"%s\"", job->id,
                  json_string_value(json_object_get(job->doc, "action")),
                  job->actor);

    /* the job belongs to the exec thread now: answer from the copy */
    rc = ngx_umlo_send_json(r, NGX_HTTP_ACCEPTED, out);
    json_decref(out);
    ngx_http_finalize_request(r, rc);

    return;

done:

    ngx_umlo_bulk_job_free(job);
    ngx_http_finalize_request(r, rc);
}


static void
ngx_umlo_bulk_executed(ngx_event_t *ev)
{
    ngx_umlo_bulk_job_t  *job = ev->data;

    json_t  *counts;

    if (job->watch.timer_set) {
        ngx_del_timer(&job->watch);
    }

    counts = json_object_get(job->doc, "counts");

    ngx_log_error(NGX_LOG_NOTICE, job->log, 0,
                  "umlo: bulk job %s %s: %d done, %d failed, %d skipped",
                  job->id,
                  json_string_value(json_object_get(job->doc, "state")),
                  (int) json_integer_value(json_object_get(counts, "done")),
                  (int) json_integer_value(json_object_get(counts, "failed")),
                  (int) json_integer_value(json_object_get(counts,
                                                           "skipped")));

    ngx_umlo_bulk_job_free(job);
}


static void
ngx_umlo_bulk_watch(ngx_event_t *ev)
{
    ngx_umlo_bulk_job_t  *job = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        job->cancel = 1;
    }

    ngx_add_timer(&job->watch, NGX_UMLO_BULK_WATCH_MS);
}


static void
ngx_umlo_bulk_ignore(redisReply *reply, void *data)
{
}


/* ---------------------------------------------------------------- paths */

/* what follows the location's own path, without leading slashes */

void
ngx_umlo_bulk_path(ngx_http_request_t *r, ngx_str_t *rest)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    rest->len = 0;
    rest->data = r->uri.data;

    if (clcf->regex == NULL && r->uri.len > clcf->name.len
        && ngx_strncmp(r->uri.data, clcf->name.data, clcf->name.len) == 0)
    {
        rest->data = r->uri.data + clcf->name.len;
        rest->len = r->uri.len - clcf->name.len;
    }

    while (rest->len && rest->data[0] == '/') {
        rest->data++;
        rest->len--;
    }
}


/* marks the request pool's cleanup entry that carries a filtered job */

static void
ngx_umlo_bulk_mark(void *data)
{
}
