/*
 * Copyright (C) ngx_umlo authors
 *
 * umlo_history: the last syncs, newest first, each with the outcome of
 * the webhooks it sent, read from Redis in one round trip so that every
 * worker and instance answers the same.
 */


#include "ngx_umlo_handler.h"
#include "ngx_umlo_keys.h"
#include "ngx_umlo_redis.h"


static const char  ngx_umlo_history_script[] =
    "return {redis.call('LRANGE', KEYS[1], 0, ARGV[1] - 1),"
    " redis.call('LRANGE', KEYS[2], 0, ARGV[2] - 1)}";


static ngx_int_t ngx_umlo_history_limit(ngx_http_request_t *r,
    ngx_uint_t *limit, ngx_int_t *rc);
static void ngx_umlo_history_reply(redisReply *reply, void *data);
static json_t *ngx_umlo_history_list(redisReply *list);


ngx_int_t
ngx_umlo_history_handler(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_uint_t             limit;
    ngx_umlo_main_conf_t  *umcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_umlo_send_not_allowed(r, "GET, HEAD");
    }

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);
    limit = umcf->history;

    /* a bad parameter is answered there, its result kept in rc */
    if (ngx_umlo_history_limit(r, &limit, &rc) != NGX_OK) {
        return rc;
    }

    if (ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_history_reply, r,
                                "EVAL %s 2 " NGX_UMLO_KEY_HISTORY " "
                                NGX_UMLO_KEY_DELIVERIES " %u %u",
                                ngx_umlo_history_script, umcf->org.data,
                                umcf->org.data, (unsigned) limit,
                                (unsigned) umcf->webhook_log)
        != NGX_OK)
    {
        return ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "redis_unavailable",
                                   "%s; the history is kept in Redis, check "
                                   "umlo_redis and that Redis is running",
                                   ngx_umlo_redis_error(umcf->redis));
    }

    r->main->count++;

    return NGX_DONE;
}


/* "limit" is the only parameter: 1 to umlo_sync_history */

static ngx_int_t
ngx_umlo_history_limit(ngx_http_request_t *r, ngx_uint_t *limit,
    ngx_int_t *rc)
{
    u_char                *p, *last, *amp, *eq;
    ngx_int_t              n;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    p = r->args.data;
    last = r->args.data + r->args.len;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        eq = ngx_strlchr(p, amp, '=');

        if (amp == p) {
            p++;
            continue;
        }

        if (eq == NULL || eq - p != 5 || ngx_strncmp(p, "limit", 5) != 0) {
            *rc = ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "unknown_parameter",
                                       "unknown parameter \"%*s\": the "
                                       "history takes only \"limit\"",
                                       (size_t) ((eq ? eq : amp) - p), p);
            return NGX_ERROR;
        }

        n = ngx_atoi(eq + 1, amp - eq - 1);

        if (n == NGX_ERROR || n < 1 || (ngx_uint_t) n > umcf->history) {
            *rc = ngx_umlo_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "invalid_limit",
                                       "\"limit\" must be a number from 1 "
                                       "to %ui (umlo_sync_history)",
                                       umcf->history);
            return NGX_ERROR;
        }

        *limit = n;
        p = amp + 1;
    }

    return NGX_OK;
}


static void
ngx_umlo_history_reply(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    json_t                *out, *syncs, *deliveries, *sync, *hooks, *d;
    size_t                 i, j;
    ngx_int_t              rc;
    const char            *id, *sid;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2)
    {
        rc = ngx_umlo_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "redis_unavailable",
                                 "%s; the history is kept in Redis, check "
                                 "umlo_redis and that Redis is running",
                                 reply && reply->type == REDIS_REPLY_ERROR
                                 ? reply->str
                                 : ngx_umlo_redis_error(umcf->redis));
        ngx_http_finalize_request(r, rc);
        return;
    }

    syncs = ngx_umlo_history_list(reply->element[0]);
    deliveries = ngx_umlo_history_list(reply->element[1]);

    if (syncs == NULL || deliveries == NULL) {
        json_decref(syncs);
        json_decref(deliveries);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* each sync with the deliveries of its events, oldest event first */
    json_array_foreach(syncs, i, sync) {
        id = json_string_value(json_object_get(sync, "id"));
        hooks = json_array();

        if (hooks == NULL) {
            break;
        }

        for (j = json_array_size(deliveries); id && j-- > 0; /* void */) {
            d = json_array_get(deliveries, j);
            sid = json_string_value(json_object_get(d, "sync_id"));

            if (sid != NULL && ngx_strcmp(sid, id) == 0) {
                json_array_append(hooks, d);
            }
        }

        json_object_set_new(sync, "webhooks", hooks);
    }

    out = json_pack("{s:s%,s:I,s:o,s:o}",
                    "org", umcf->org.data, umcf->org.len,
                    "count", (json_int_t) json_array_size(syncs),
                    "syncs", syncs,
                    "deliveries", deliveries);

    rc = out ? ngx_umlo_send_json(r, NGX_HTTP_OK, out)
             : NGX_HTTP_INTERNAL_SERVER_ERROR;
    json_decref(out);

    ngx_http_finalize_request(r, rc);
}


/* a Redis list of JSON documents; entries that do not parse are skipped */

static json_t *
ngx_umlo_history_list(redisReply *list)
{
    size_t       i;
    json_t      *out, *doc;
    redisReply  *e;

    out = json_array();
    if (out == NULL || list->type != REDIS_REPLY_ARRAY) {
        return out;
    }

    for (i = 0; i < list->elements; i++) {
        e = list->element[i];

        if (e->type != REDIS_REPLY_STRING) {
            continue;
        }

        doc = json_loadb(e->str, e->len, 0, NULL);

        if (json_is_object(doc)) {
            json_array_append_new(out, doc);

        } else {
            json_decref(doc);
        }
    }

    return out;
}
