/*
 * Copyright (C) ngx_umlo authors
 *
 * umlo_status: the org's sync state, read from Redis on every request so
 * that every worker and every instance gives the same answer.
 */


#include "ngx_umlo_handler.h"
#include "ngx_umlo_keys.h"
#include "ngx_umlo_redis.h"
#include "ngx_umlo_keyexp.h"


/*
 * One round trip, read atomically: the sync document, the lock's
 * remaining lease and the current snapshot pointer.
 */
static const char  ngx_umlo_status_script[] =
    "return {redis.call('GET', KEYS[1]) or '',"
    " redis.call('PTTL', KEYS[2]),"
    " redis.call('HGET', KEYS[3], 'json') or ''}";


static void ngx_umlo_status_reply(redisReply *reply, void *data);
static json_t *ngx_umlo_status_build(ngx_http_request_t *r,
    redisReply *reply);


ngx_int_t
ngx_umlo_status_handler(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_umlo_main_conf_t  *umcf;

    /* first, so that a refused body is never read as the next request */
    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_umlo_send_not_allowed(r, "GET, HEAD");
    }

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    if (ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_status_reply, r,
                                "EVAL %s 3 " NGX_UMLO_KEY_STATUS " "
                                NGX_UMLO_KEY_LOCK " " NGX_UMLO_KEY_CURRENT,
                                ngx_umlo_status_script, umcf->org.data,
                                umcf->org.data, umcf->org.data)
        != NGX_OK)
    {
        return ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "redis_unavailable",
                                   "%s; the status is kept in Redis, check "
                                   "umlo_redis and that Redis is running",
                                   ngx_umlo_redis_error(umcf->redis));
    }

    /* the request lives on until the reply callback finalizes it */
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_umlo_status_reply(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    json_t                *json;
    ngx_int_t              rc;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3)
    {
        rc = ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "redis_unavailable",
                                 "%s; the status is kept in Redis, check "
                                 "umlo_redis and that Redis is running",
                                 reply && reply->type == REDIS_REPLY_ERROR
                                 ? reply->str
                                 : ngx_umlo_redis_error(umcf->redis));
        ngx_http_finalize_request(r, rc);
        return;
    }

    json = ngx_umlo_status_build(r, reply);
    if (json == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_umlo_send_json_etag(r, json);
    json_decref(json);

    ngx_http_finalize_request(r, rc);
}


static json_t *
ngx_umlo_status_build(ngx_http_request_t *r, redisReply *reply)
{
    json_t                *out, *sync, *snapshot;
    const char            *state;
    long long              pttl;
    redisReply            *doc, *lease, *current;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    doc = reply->element[0];
    lease = reply->element[1];
    current = reply->element[2];

    sync = NULL;
    snapshot = NULL;

    if (doc->type == REDIS_REPLY_STRING && doc->len > 0) {
        sync = json_loadb(doc->str, doc->len, 0, NULL);
        if (sync == NULL || !json_is_object(sync)) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "umlo: sync status in Redis is not a JSON object");
            json_decref(sync);
            sync = NULL;
        }
    }

    if (current->type == REDIS_REPLY_STRING && current->len > 0) {
        snapshot = json_loadb(current->str, current->len, 0, NULL);
    }

    pttl = (lease->type == REDIS_REPLY_INTEGER) ? lease->integer : -2;

    state = "idle";

    if (sync != NULL) {
        state = json_string_value(json_object_get(sync, "state"));
        if (state == NULL) {
            state = "unknown";
        }

        /*
         * A running sync whose lock lapsed lost its worker or instance:
         * say so rather than report "running" for ever.
         */
        if ((ngx_strcmp(state, "running") == 0
             || ngx_strcmp(state, "queued") == 0)
            && pttl < 0)
        {
            json_object_set_new(sync, "state", json_string("failed"));
            json_object_set_new(sync, "error", json_pack("{s:s,s:s}",
                "where", "lock",
                "message", "the sync stopped without finishing: the nginx "
                           "worker or instance running it died or lost "
                           "Redis; start a new sync"));
            state = "failed";
        }
    }

    out = json_pack("{s:s%,s:s,s:b,s:o,s:o}",
                    "org", umcf->org.data, umcf->org.len,
                    "state", state,
                    "running", ngx_strcmp(state, "running") == 0
                               || ngx_strcmp(state, "queued") == 0,
                    "sync", sync ? sync : json_null(),
                    "snapshot", snapshot ? snapshot : json_null());

    if (out != NULL && umcf->key_expires) {
        json_object_set_new(out, "api_key", ngx_umlo_keyexp_json(umcf));
    }

    return out;
}
