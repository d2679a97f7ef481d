/*
 * Copyright (C) ngx_umlo authors
 *
 * umlo_metrics: Prometheus text exposition format 0.0.4.  The org's
 * figures come from Redis (sync state, current snapshot, the counters the
 * sync threads keep in the stats hash), in one round trip, so every
 * worker of every instance reports the same values; only
 * umlo_redis_errors_total is this worker's own and says so with a label.
 * When Redis cannot be read, the answer is still 200 with umlo_redis_up 0,
 * so that the scrape itself shows the outage.
 */


#include "ngx_umlo_handler.h"
#include "ngx_umlo_keys.h"
#include "ngx_umlo_redis.h"
#include "ngx_umlo_store.h"
#include "ngx_umlo_keyexp.h"


#define NGX_UMLO_PROM_BASE   8192
#define NGX_UMLO_PROM_FIELD  256


static const char  ngx_umlo_prom_script[] =
    "return {redis.call('GET', KEYS[1]) or '',"
    " redis.call('PTTL', KEYS[2]),"
    " redis.call('HGET', KEYS[3], 'json') or '',"
    " redis.call('HGETALL', KEYS[4])}";


static void ngx_umlo_prom_reply(redisReply *reply, void *data);
static u_char *ngx_umlo_prom_org(u_char *p, u_char *last, redisReply *reply);
static u_char *ngx_umlo_prom_labelled(u_char *p, u_char *last,
    redisReply *stats, const char *prefix, const char *metric,
    const char *label1, const char *label2);
static u_char *ngx_umlo_prom_durations(u_char *p, u_char *last,
    redisReply *stats);
static long long ngx_umlo_prom_field(redisReply *stats, const char *name);
static ngx_int_t ngx_umlo_prom_valid(const char *s, size_t len);


ngx_int_t
ngx_umlo_prom_handler(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_umlo_main_conf_t  *umcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_umlo_send_not_allowed(r, "GET, HEAD");
    }

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    if (ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_prom_reply, r,
                                "EVAL %s 4 " NGX_UMLO_KEY_STATUS " "
                                NGX_UMLO_KEY_LOCK " " NGX_UMLO_KEY_CURRENT
                                " " NGX_UMLO_KEY_STATS,
                                ngx_umlo_prom_script, umcf->org.data,
                                umcf->org.data, umcf->org.data,
                                umcf->org.data)
        != NGX_OK)
    {
        /* answered below, from this worker's own figures */
        r->main->count++;
        ngx_umlo_prom_reply(NULL, r);
        return NGX_DONE;
    }

    r->main->count++;

    return NGX_DONE;
}


#define ngx_umlo_prom_head(p, last, name, type, help)                        \
    ngx_slprintf(p, last, "# HELP " name " " help "\n# TYPE " name " "       \
                 type "\n")


static void
ngx_umlo_prom_reply(redisReply *reply, void *data)
{
    ngx_http_request_t  *r = data;

    size_t                 size;
    u_char                *p, *last;
    ngx_int_t              rc, up;
    ngx_buf_t             *b;
    ngx_chain_t            out;
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_get_module_main_conf(r, ngx_umlo_module);

    up = (reply != NULL && reply->type == REDIS_REPLY_ARRAY
          && reply->elements == 4
          && reply->element[3]->type == REDIS_REPLY_ARRAY);

    size = NGX_UMLO_PROM_BASE;
    if (up) {
        size += NGX_UMLO_PROM_FIELD * reply->element[3]->elements;
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = b->pos;
    last = b->end;

    p = ngx_umlo_prom_head(p, last, "umlo_info", "gauge",
                           "Module version and organization.");
    p = ngx_slprintf(p, last, "umlo_info{version=\"" NGX_UMLO_VERSION
                     "\",org=\"%V\"} 1\n", &umcf->org);

    p = ngx_umlo_prom_head(p, last, "umlo_redis_up", "gauge",
                           "1 when this scrape could read the org's state "
                           "from Redis.");
    p = ngx_slprintf(p, last, "umlo_redis_up %i\n", up);

    p = ngx_umlo_prom_head(p, last, "umlo_redis_errors_total", "counter",
                           "Redis errors met by this nginx worker "
                           "(connection, timeout, refused command).");
    p = ngx_slprintf(p, last, "umlo_redis_errors_total{pid=\"%P\"} %ui\n",
                     ngx_pid, ngx_umlo_redis_errors(umcf->redis));

    if (umcf->key_expires) {
        p = ngx_umlo_prom_head(p, last, "umlo_api_key_expiry_days", "gauge",
                               "Whole days until the API key expires "
                               "(umlo_api_key_expires); negative once "
                               "expired.");
        p = ngx_slprintf(p, last, "umlo_api_key_expiry_days %i\n",
                         ngx_umlo_keyexp_days_left(umcf));

        p = ngx_umlo_prom_head(p, last, "umlo_api_key_expiring", "gauge",
                               "1 within the warning window before the "
                               "key's expiry, and after it.");
        p = ngx_slprintf(p, last, "umlo_api_key_expiring %d\n",
                         ngx_umlo_keyexp_days_left(umcf)
                         <= (ngx_int_t) umcf->key_warn_days);
    }

    if (up) {
        p = ngx_umlo_prom_org(p, last, reply);
    }

    if (p == last) {
        /* the estimate was too small: never send a cut exposition */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "umlo: metrics larger than their buffer");
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));
}


static u_char *
ngx_umlo_prom_org(u_char *p, u_char *last, redisReply *reply)
{
    json_t      *doc;
    long long    n, running;
    const char  *state;
    redisReply  *status, *lease, *current, *stats;

    status = reply->element[0];
    lease = reply->element[1];
    current = reply->element[2];
    stats = reply->element[3];

    running = 0;

    if (status->type == REDIS_REPLY_STRING && status->len
        && lease->type == REDIS_REPLY_INTEGER && lease->integer > 0)
    {
        doc = json_loadb(status->str, status->len, 0, NULL);
        state = json_string_value(json_object_get(doc, "state"));
        running = state != NULL && (ngx_strcmp(state, "running") == 0
                                    || ngx_strcmp(state, "queued") == 0);
        json_decref(doc);
    }

    p = ngx_umlo_prom_head(p, last, "umlo_sync_running", "gauge",
                           "1 while a sync of the org runs on any "
                           "instance.");
    p = ngx_slprintf(p, last, "umlo_sync_running %L\n", running);

    n = 0;

    if (current->type == REDIS_REPLY_STRING && current->len) {
        doc = json_loadb(current->str, current->len, 0, NULL);
        n = json_integer_value(json_object_get(json_object_get(doc,
                                                               "counts"),
                                               "users"));
        json_decref(doc);
    }

    p = ngx_umlo_prom_head(p, last, "umlo_snapshot_users", "gauge",
                           "Users in the current snapshot.");
    p = ngx_slprintf(p, last, "umlo_snapshot_users %L\n", n);

    p = ngx_umlo_prom_head(p, last, "umlo_sync_duration_seconds",
                           "histogram", "Duration of finished syncs, by "
                           "trigger.");
    p = ngx_umlo_prom_durations(p, last, stats);

    p = ngx_umlo_prom_head(p, last, "umlo_syncs_total", "counter",
                           "Finished syncs by trigger and outcome.");
    p = ngx_umlo_prom_labelled(p, last, stats, "syncs:", "umlo_syncs_total",
                               "trigger", "outcome");

    p = ngx_umlo_prom_head(p, last,
                           "umlo_sync_last_success_timestamp_seconds",
                           "gauge", "When the last successful sync "
                           "finished (0: never).");
    p = ngx_slprintf(p, last, "umlo_sync_last_success_timestamp_seconds "
                     "%L\n", ngx_umlo_prom_field(stats, "last:succeeded"));

    p = ngx_umlo_prom_head(p, last,
                           "umlo_sync_last_failure_timestamp_seconds",
                           "gauge", "When the last failed sync finished "
                           "(0: never).");
    p = ngx_slprintf(p, last, "umlo_sync_last_failure_timestamp_seconds "
                     "%L\n", ngx_umlo_prom_field(stats, "last:failed"));

    p = ngx_umlo_prom_head(p, last, "umlo_api_calls_total", "counter",
                           "Atlassian API requests made by finished "
                           "syncs.");
    p = ngx_slprintf(p, last, "umlo_api_calls_total %L\n",
                     ngx_umlo_prom_field(stats, "api_calls"));

    p = ngx_umlo_prom_head(p, last, "umlo_api_rate_limited_total",
                           "counter", "HTTP 429 answers met by finished "
                           "syncs.");
    p = ngx_slprintf(p, last, "umlo_api_rate_limited_total %L\n",
                     ngx_umlo_prom_field(stats, "api_rate_limited"));

    p = ngx_umlo_prom_head(p, last, "umlo_api_retries_total", "counter",
                           "Atlassian API requests retried by finished "
                           "syncs.");
    p = ngx_slprintf(p, last, "umlo_api_retries_total %L\n",
                     ngx_umlo_prom_field(stats, "api_retries"));

    p = ngx_umlo_prom_head(p, last, "umlo_webhook_deliveries_total",
                           "counter", "Webhook deliveries by event and "
                           "outcome (delivered or failed after all "
                           "attempts).");
    p = ngx_umlo_prom_labelled(p, last, stats, "webhook:",
                               "umlo_webhook_deliveries_total", "event",
                               "outcome");

    return p;
}


/* one sample per "PREFIX:A:B" field, as METRIC{LABEL1="A",LABEL2="B"} */

static u_char *
ngx_umlo_prom_labelled(u_char *p, u_char *last, redisReply *stats,
    const char *prefix, const char *metric, const char *label1,
    const char *label2)
{
    char        *colon;
    size_t       i, plen, alen;
    redisReply  *f, *v;

    plen = ngx_strlen(prefix);

    for (i = 0; i + 1 < stats->elements; i += 2) {
        f = stats->element[i];
        v = stats->element[i + 1];

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING
            || f->len <= plen || ngx_strncmp(f->str, prefix, plen) != 0)
        {
            continue;
        }

        colon = (char *) ngx_strlchr((u_char *) f->str + plen,
                                     (u_char *) f->str + f->len, ':');
        if (colon == NULL) {
            continue;
        }

        alen = colon - (f->str + plen);

        /* label values come from Redis: only plain names pass */
        if (!ngx_umlo_prom_valid(f->str + plen, alen)
            || !ngx_umlo_prom_valid(colon + 1, f->str + f->len - colon - 1)
            || ngx_atoi((u_char *) v->str, v->len) == NGX_ERROR)
        {
            continue;
        }

        p = ngx_slprintf(p, last, "%s{%s=\"%*s\",%s=\"%*s\"} %*s\n", metric,
                         label1, alen, f->str + plen, label2,
                         (size_t) (f->str + f->len - colon - 1), colon + 1,
                         v->len, v->str);
    }

    return p;
}


/* one histogram per trigger that has a "duration_count:TRIGGER" field */

static u_char *
ngx_umlo_prom_durations(u_char *p, u_char *last, redisReply *stats)
{
    char         field[128], trigger[65];
    size_t       i, len;
    ngx_uint_t   b;
    long long    cumulative, sum;
    redisReply  *f;

    static const long long  bounds[] = NGX_UMLO_DURATION_BUCKETS;

    for (i = 0; i + 1 < stats->elements; i += 2) {
        f = stats->element[i];

        if (f->type != REDIS_REPLY_STRING || f->len <= 15
            || ngx_strncmp(f->str, "duration_count:", 15) != 0
            || !ngx_umlo_prom_valid(f->str + 15, f->len - 15))
        {
            continue;
        }

        len = f->len - 15;
        ngx_memcpy(trigger, f->str + 15, len);
        trigger[len] = '\0';

        cumulative = 0;

        for (b = 0; b < NGX_UMLO_DURATION_NBUCKETS; b++) {
            ngx_sprintf((u_char *) field, "duration_bucket:%s:%ui%Z",
                        trigger, b);
            cumulative += ngx_umlo_prom_field(stats, field);

            p = ngx_slprintf(p, last, "umlo_sync_duration_seconds_bucket"
                             "{trigger=\"%s\",le=\"%L\"} %L\n", trigger,
                             bounds[b], cumulative);
        }

        ngx_sprintf((u_char *) field, "duration_bucket:%s:inf%Z", trigger);
        cumulative += ngx_umlo_prom_field(stats, field);

        ngx_sprintf((u_char *) field, "duration_sum_ms:%s%Z", trigger);
        sum = ngx_umlo_prom_field(stats, field);

        p = ngx_slprintf(p, last, "umlo_sync_duration_seconds_bucket"
                         "{trigger=\"%s\",le=\"+Inf\"} %L\n"
                         "umlo_sync_duration_seconds_sum{trigger=\"%s\"} "
                         "%L.%03L\n"
                         "umlo_sync_duration_seconds_count{trigger=\"%s\"} "
                         "%L\n", trigger, cumulative, trigger, sum / 1000,
                         sum % 1000, trigger,
                         ngx_umlo_prom_field(stats, f->str));
    }

    return p;
}


static long long
ngx_umlo_prom_field(redisReply *stats, const char *name)
{
    size_t       i, len;
    ngx_int_t    n;
    redisReply  *f, *v;

    len = ngx_strlen(name);

    for (i = 0; i + 1 < stats->elements; i += 2) {
        f = stats->element[i];
        v = stats->element[i + 1];

        if (f->type == REDIS_REPLY_STRING && f->len == len
            && ngx_strncmp(f->str, name, len) == 0
            && v->type == REDIS_REPLY_STRING)
        {
            n = ngx_atoi((u_char *) v->str, v->len);
            return n == NGX_ERROR ? 0 : n;
        }
    }

    return 0;
}


static ngx_int_t
ngx_umlo_prom_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > 64) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!(s[i] >= 'a' && s[i] <= 'z') && s[i] != '.' && s[i] != '_'
            && s[i] != '-' && !(s[i] >= '0' && s[i] <= '9'))
        {
            return 0;
        }
    }

    return 1;
}
