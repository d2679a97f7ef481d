/*
 * Copyright (C) ngx_umlo authors
 *
 * Thread-side Redis: see ngx_umlo_store.h.  Multi-key steps are Lua
 * scripts so that each is atomic; all their keys share the org's hash tag.
 */


#include "ngx_umlo_store.h"
#include "ngx_umlo_keys.h"

#include <hiredis/sds.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>


/*
 * Pipelined commands sent before their replies are read: at most this
 * many, and at most this many bytes.  hiredis keeps the commands in its
 * output buffer until the replies are read, so 512 staged users pages
 * of 150 KB each grew the worker by up to 75 MB (1 MiB cost a tenth
 * more sync time on the fast profile, 4 MiB nothing measurable).
 */
#define NGX_UMLO_STORE_BATCH        512
#define NGX_UMLO_STORE_BATCH_BYTES  (4 * 1024 * 1024)


static int ngx_umlo_store_appended(ngx_umlo_store_t *st);


static const char  ngx_umlo_store_renew_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then"
    " return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

/*
 * The status document is written only by the lock's holder: a sync that
 * lost its lock must not overwrite the one that took over.
 */
static const char  ngx_umlo_store_status_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then"
    " redis.call('SET', KEYS[2], ARGV[2]) return 1 end return 0";

/* the last status document and the release, in one step */
static const char  ngx_umlo_store_release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then"
    " redis.call('SET', KEYS[2], ARGV[2])"
    " return redis.call('DEL', KEYS[1]) end return 0";

/* drops the generations listed in a zset, up to a score */
#define NGX_UMLO_STORE_DROP_LUA                                             \
    "local function drop(z, upto)"                                          \
    " for _, g in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', upto)) do"  \
    "  for _, s in ipairs({'users', 'sites', 'groups', 'meta',"           \
    "                      'stage'}) do"                                    \
    "   redis.call('UNLINK', ARGV[1] .. g .. ':' .. s) end"                 \
    "  redis.call('ZREM', z, g) end end "

static const char  ngx_umlo_store_swap_lua[] =
    NGX_UMLO_STORE_DROP_LUA
    "if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end"
    " local old = redis.call('HGET', KEYS[2], 'gen')"
    " redis.call('HSET', KEYS[2], 'gen', ARGV[3], 'json', ARGV[4],"
    " 'rev', 0)"
    " redis.call('ZREM', KEYS[4], ARGV[3])"
    " if old and old ~= ARGV[3] then"
    "  redis.call('ZADD', KEYS[3], ARGV[5] + ARGV[6], old)"
    "  for _, s in ipairs({'users', 'sites', 'groups', 'meta'}) do"
    "   redis.call('PEXPIRE', ARGV[1] .. old .. ':' .. s, ARGV[6]) end end"
    " drop(KEYS[3], ARGV[5])"
    " return 1";

static const char  ngx_umlo_store_begin_lua[] =
    NGX_UMLO_STORE_DROP_LUA
    "drop(KEYS[1], '+inf')"
    " local gen = redis.call('INCR', KEYS[2])"
    " redis.call('ZADD', KEYS[1], gen, gen)"
    " return gen";


static int ngx_umlo_store_check(ngx_umlo_store_t *st, redisReply *r,
    const char *what);
static int ngx_umlo_store_status(ngx_umlo_store_t *st, const char *script,
    const char *token, json_t *doc);
static long long ngx_umlo_store_now_ms(void);
static int ngx_umlo_store_stats(ngx_umlo_store_t *st, json_t *summary);


int
ngx_umlo_store_open(ngx_umlo_store_t *st, const ngx_umlo_store_conf_t *conf,
    const char *org)
{
    redisReply      *r;
    struct timeval   tv;

    memset(st, 0, sizeof(ngx_umlo_store_t));
    st->org = org;

    tv.tv_sec = conf->timeout_ms / 1000;
    tv.tv_usec = (conf->timeout_ms % 1000) * 1000;

    if (conf->unix_path != NULL) {
        st->c = redisConnectUnixWithTimeout(conf->unix_path, tv);

    } else {
        st->c = redisConnectWithTimeout(conf->host, conf->port, tv);
    }

    if (st->c == NULL || st->c->err) {
        snprintf(st->error, sizeof(st->error), "cannot connect to Redis: %s",
                 st->c ? st->c->errstr : "out of memory");
        ngx_umlo_store_close(st);
        return -1;
    }

    /* a hung Redis must not hold the job for ever */
    if (redisSetTimeout(st->c, tv) != REDIS_OK) {
        snprintf(st->error, sizeof(st->error), "cannot set Redis timeout");
        ngx_umlo_store_close(st);
        return -1;
    }

    if (conf->password != NULL) {
        r = redisCommand(st->c, "AUTH %s", conf->password);
        if (ngx_umlo_store_check(st, r, "AUTH") != 0) {
            ngx_umlo_store_close(st);
            return -1;
        }
    }

    if (conf->db) {
        r = redisCommand(st->c, "SELECT %d", conf->db);
        if (ngx_umlo_store_check(st, r, "SELECT") != 0) {
            ngx_umlo_store_close(st);
            return -1;
        }
    }

    return 0;
}


void
ngx_umlo_store_close(ngx_umlo_store_t *st)
{
    if (st->c != NULL) {
        redisFree(st->c);
        st->c = NULL;
    }
}


int
ngx_umlo_store_append(ngx_umlo_store_t *st, const char *fmt, ...)
{
    int      rc;
    va_list  args;

    va_start(args, fmt);
    rc = redisvAppendCommand(st->c, fmt, args);
    va_end(args);

    if (rc != REDIS_OK) {
        snprintf(st->error, sizeof(st->error), "Redis: %s", st->c->errstr);
        return -1;
    }

    return ngx_umlo_store_appended(st);
}


int
ngx_umlo_store_appendv(ngx_umlo_store_t *st, int argc, const char **argv,
    const size_t *argvlen)
{
    if (redisAppendCommandArgv(st->c, argc, argv, argvlen) != REDIS_OK) {
        snprintf(st->error, sizeof(st->error), "Redis: %s", st->c->errstr);
        return -1;
    }

    return ngx_umlo_store_appended(st);
}


static int
ngx_umlo_store_appended(ngx_umlo_store_t *st)
{
    if (++st->pending >= NGX_UMLO_STORE_BATCH
        || sdslen(st->c->obuf) >= NGX_UMLO_STORE_BATCH_BYTES)
    {
        return ngx_umlo_store_flush(st);
    }

    return 0;
}


int
ngx_umlo_store_flush(ngx_umlo_store_t *st)
{
    int          rc;
    void        *p;
    redisReply  *r;

    rc = 0;

    while (st->pending) {
        st->pending--;

        if (redisGetReply(st->c, &p) != REDIS_OK) {
            snprintf(st->error, sizeof(st->error), "Redis: %s",
                     st->c->errstr);
            st->pending = 0;
            return -1;
        }

        r = p;

        /* keep reading: every reply must be consumed */
        if (r->type == REDIS_REPLY_ERROR && rc == 0) {
            snprintf(st->error, sizeof(st->error), "Redis refused a write: "
                     "%s", r->str);
            rc = -1;
        }

        freeReplyObject(r);
    }

    return rc;
}


redisReply *
ngx_umlo_store_command(ngx_umlo_store_t *st, const char *fmt, ...)
{
    va_list      args;
    redisReply  *r;

    if (ngx_umlo_store_flush(st) != 0) {
        return NULL;
    }

    va_start(args, fmt);
    r = redisvCommand(st->c, fmt, args);
    va_end(args);

    if (r == NULL) {
        snprintf(st->error, sizeof(st->error), "Redis: %s", st->c->errstr);
        return NULL;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(st->error, sizeof(st->error), "Redis: %s", r->str);
        freeReplyObject(r);
        return NULL;
    }

    return r;
}


int
ngx_umlo_store_renew(ngx_umlo_store_t *st, const char *token,
    unsigned lease_ms)
{
    int          rc;
    redisReply  *r;

    r = ngx_umlo_store_command(st, "EVAL %s 1 " NGX_UMLO_KEY_LOCK " %s %u",
                               ngx_umlo_store_renew_lua, st->org, token,
                               lease_ms);
    if (r == NULL) {
        return -1;
    }

    rc = (r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);

    return rc;
}


int
ngx_umlo_store_release(ngx_umlo_store_t *st, const char *token, json_t *doc)
{
    return ngx_umlo_store_status(st, ngx_umlo_store_release_lua, token, doc);
}


int
ngx_umlo_store_cancelled(ngx_umlo_store_t *st, const char *id)
{
    int          rc;
    redisReply  *r;

    r = ngx_umlo_store_command(st, "GET " NGX_UMLO_KEY_CANCEL, st->org);
    if (r == NULL) {
        return -1;
    }

    rc = (r->type == REDIS_REPLY_STRING && strcmp(r->str, id) == 0);
    freeReplyObject(r);

    return rc;
}


int
ngx_umlo_store_set_status(ngx_umlo_store_t *st, const char *token,
    json_t *doc)
{
    return ngx_umlo_store_status(st, ngx_umlo_store_status_lua, token, doc);
}


static int
ngx_umlo_store_status(ngx_umlo_store_t *st, const char *script,
    const char *token, json_t *doc)
{
    int          rc;
    char        *text;
    redisReply  *r;

    text = json_dumps(doc, JSON_COMPACT);
    if (text == NULL) {
        snprintf(st->error, sizeof(st->error), "out of memory");
        return -1;
    }

    r = ngx_umlo_store_command(st, "EVAL %s 2 " NGX_UMLO_KEY_LOCK " "
                               NGX_UMLO_KEY_STATUS " %s %s", script, st->org,
                               st->org, token, text);
    free(text);

    if (r == NULL) {
        return -1;
    }

    rc = (r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);

    return rc;
}


long long
ngx_umlo_store_begin(ngx_umlo_store_t *st)
{
    long long    gen;
    redisReply  *r;

    r = ngx_umlo_store_command(st, "EVAL %s 2 " NGX_UMLO_KEY_BUILDING " "
                               NGX_UMLO_KEY_GENSEQ " " NGX_UMLO_KEY_GEN_PREFIX,
                               ngx_umlo_store_begin_lua, st->org, st->org,
                               st->org);
    if (r == NULL) {
        return -1;
    }

    gen = (r->type == REDIS_REPLY_INTEGER) ? r->integer : -1;
    freeReplyObject(r);

    return gen;
}


int
ngx_umlo_store_swap(ngx_umlo_store_t *st, const char *token, long long gen,
    json_t *snapshot, unsigned grace_ms)
{
    int          rc;
    char        *text;
    redisReply  *r;

    text = json_dumps(snapshot, JSON_COMPACT);
    if (text == NULL) {
        snprintf(st->error, sizeof(st->error), "out of memory");
        return -1;
    }

    r = ngx_umlo_store_command(st, "EVAL %s 4 " NGX_UMLO_KEY_LOCK " "
                               NGX_UMLO_KEY_CURRENT " " NGX_UMLO_KEY_RETIRED
                               " " NGX_UMLO_KEY_BUILDING " "
                               NGX_UMLO_KEY_GEN_PREFIX " %s %lld %s %lld %u",
                               ngx_umlo_store_swap_lua, st->org, st->org,
                               st->org, st->org, st->org, token, gen, text,
                               ngx_umlo_store_now_ms(), grace_ms);
    free(text);

    if (r == NULL) {
        return -1;
    }

    rc = (r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);

    return rc;
}


long long
ngx_umlo_store_current(ngx_umlo_store_t *st)
{
    long long    gen;
    redisReply  *r;

    r = ngx_umlo_store_command(st, "HGET " NGX_UMLO_KEY_CURRENT " gen",
                               st->org);
    if (r == NULL) {
        return -1;
    }

    gen = (r->type == REDIS_REPLY_STRING) ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);

    return gen;
}


int
ngx_umlo_store_drop(ngx_umlo_store_t *st, long long gen)
{
    redisReply  *r;

    r = ngx_umlo_store_command(st, "EVAL %s 1 " NGX_UMLO_KEY_BUILDING " "
                               NGX_UMLO_KEY_GEN_PREFIX " %lld",
                               NGX_UMLO_STORE_DROP_LUA
                               "drop(KEYS[1], ARGV[2])",
                               st->org, st->org, gen);
    if (r == NULL) {
        return -1;
    }

    freeReplyObject(r);

    return 0;
}


int
ngx_umlo_store_history(ngx_umlo_store_t *st, json_t *summary, unsigned max)
{
    char  *text;

    text = json_dumps(summary, JSON_COMPACT);
    if (text == NULL) {
        snprintf(st->error, sizeof(st->error), "out of memory");
        return -1;
    }

    if (ngx_umlo_store_append(st, "LPUSH " NGX_UMLO_KEY_HISTORY " %s",
                              st->org, text)
        != 0)
    {
        free(text);
        return -1;
    }

    free(text);

    if (ngx_umlo_store_append(st, "LTRIM " NGX_UMLO_KEY_HISTORY " 0 %u",
                              st->org, max ? max - 1 : 0)
        != 0
        || ngx_umlo_store_stats(st, summary) != 0)
    {
        return -1;
    }

    return ngx_umlo_store_flush(st);
}


/*
 * Counters in the stats hash, so that every instance's metrics agree:
 * "syncs:TRIGGER:STATE", "duration_bucket:TRIGGER:I" (I indexes
 * NGX_UMLO_DURATION_BUCKETS, "inf" beyond), "duration_sum_ms:TRIGGER",
 * "duration_count:TRIGGER", "last:STATE" (unix time), "api_calls",
 * "api_rate_limited", "api_retries"; ngx_umlo_store_delivery() adds
 * "webhook:EVENT:delivered" and "webhook:EVENT:failed".
 */

static int
ngx_umlo_store_stats(ngx_umlo_store_t *st, json_t *summary)
{
    char         bucket[32];
    size_t       i;
    json_t      *api;
    long long    ms, calls, limited, retries;
    const char  *trigger, *state;

    static const long long  bounds[] = NGX_UMLO_DURATION_BUCKETS;

    trigger = json_string_value(json_object_get(summary, "trigger"));
    state = json_string_value(json_object_get(summary, "state"));
    ms = json_integer_value(json_object_get(summary, "duration_ms"));

    if (trigger == NULL || state == NULL) {
        return 0;
    }

    snprintf(bucket, sizeof(bucket), "inf");

    for (i = 0; i < NGX_UMLO_DURATION_NBUCKETS; i++) {
        if (ms <= bounds[i] * 1000) {
            snprintf(bucket, sizeof(bucket), "%u", (unsigned) i);
            break;
        }
    }

    api = json_object_get(summary, "api");
    calls = json_integer_value(json_object_get(api, "calls"));
    limited = json_integer_value(json_object_get(api, "rate_limited"));
    retries = json_integer_value(json_object_get(api, "retries"));

    if (ngx_umlo_store_append(st, "HINCRBY " NGX_UMLO_KEY_STATS
                              " syncs:%s:%s 1", st->org, trigger, state)
        != 0
        || ngx_umlo_store_append(st, "HINCRBY " NGX_UMLO_KEY_STATS
                                 " duration_bucket:%s:%s 1", st->org, trigger,
                                 bucket)
           != 0
        || ngx_umlo_store_append(st, "HINCRBY " NGX_UMLO_KEY_STATS
                                 " duration_sum_ms:%s %lld", st->org, trigger,
                                 ms)
           != 0
        || ngx_umlo_store_append(st, "HINCRBY " NGX_UMLO_KEY_STATS
                                 " duration_count:%s 1", st->org, trigger)
           != 0
        || ngx_umlo_store_append(st, "HSET " NGX_UMLO_KEY_STATS
                                 " last:%s %lld", st->org, state,
                                 json_integer_value(
                                     json_object_get(summary, "finished_at")))
           != 0
        || ngx_umlo_store_append(st, "HINCRBY " NGX_UMLO_KEY_STATS
                                 " api_calls %lld", st->org, calls)
           != 0
        || ngx_umlo_store_append(st, "HINCRBY " NGX_UMLO_KEY_STATS
                                 " api_rate_limited %lld", st->org, limited)
           != 0
        || ngx_umlo_store_append(st, "HINCRBY " NGX_UMLO_KEY_STATS
                                 " api_retries %lld", st->org, retries)
           != 0)
    {
        return -1;
    }

    return 0;
}


int
ngx_umlo_store_delivery(ngx_umlo_store_t *st, json_t *outcome, unsigned max)
{
    int          rc;
    char        *text;
    const char  *status, *event;

    text = json_dumps(outcome, JSON_COMPACT);
    if (text == NULL) {
        snprintf(st->error, sizeof(st->error), "out of memory");
        return -1;
    }

    status = json_string_value(json_object_get(outcome, "status"));
    event = json_string_value(json_object_get(outcome, "event"));

    rc = ngx_umlo_store_append(st, "LPUSH " NGX_UMLO_KEY_DELIVERIES " %s",
                               st->org, text);
    free(text);

    if (rc != 0
        || ngx_umlo_store_append(st, "LTRIM " NGX_UMLO_KEY_DELIVERIES
                                 " 0 %u", st->org, max ? max - 1 : 0)
           != 0
        || ngx_umlo_store_append(st, "HINCRBY " NGX_UMLO_KEY_STATS
                                 " webhook:%s:%s 1", st->org,
                                 event ? event : "unknown",
                                 status && strcmp(status, "delivered") == 0
                                 ? "delivered" : "failed")
           != 0)
    {
        return -1;
    }

    return ngx_umlo_store_flush(st);
}


static int
ngx_umlo_store_check(ngx_umlo_store_t *st, redisReply *r, const char *what)
{
    if (r == NULL) {
        snprintf(st->error, sizeof(st->error), "Redis %s: %s", what,
                 st->c->errstr);
        return -1;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(st->error, sizeof(st->error), "Redis refused %s: %s", what,
                 r->str);
        freeReplyObject(r);
        return -1;
    }

    freeReplyObject(r);

    return 0;
}


static long long
ngx_umlo_store_now_ms(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}
