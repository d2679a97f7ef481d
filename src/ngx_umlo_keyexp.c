/*
 * Copyright (C) ngx_umlo authors
 *
 * API key expiry.  Each worker checks once a minute whether the key is
 * within its warning window; the first worker of any instance to claim
 * the day (SET NX on a per-day key) sends key.expiring, so the webhook
 * fires once a day however many instances share the Redis.
 */


#include "ngx_umlo_keyexp.h"
#include "ngx_umlo_keys.h"
#include "ngx_umlo_redis.h"
#include "ngx_umlo_webhook.h"


#define NGX_UMLO_KEYEXP_FIRST_MS  1000
#define NGX_UMLO_KEYEXP_EVERY_MS  60000
#define NGX_UMLO_KEYEXP_CLAIM_S   (2 * 86400)


static void ngx_umlo_keyexp_check(ngx_event_t *ev);
static void ngx_umlo_keyexp_claimed(redisReply *reply, void *data);
static u_char *ngx_umlo_keyexp_date(u_char *buf, time_t t);


/* umlo_api_key_expires YYYY-MM-DD [warn=DAYS] */

char *
ngx_umlo_keyexp_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_umlo_main_conf_t  *umcf = conf;

    u_char     *p;
    ngx_int_t   n, y, m, d;
    ngx_str_t  *value;
    struct tm   tm;

    static ngx_uint_t  mdays[] = { 31, 29, 31, 30, 31, 30,
                                   31, 31, 30, 31, 30, 31 };

    if (umcf->key_expires != 0) {
        return "is duplicate";
    }

    value = cf->args->elts;
    p = value[1].data;

    if (value[1].len != 10 || p[4] != '-' || p[7] != '-'
        || (y = ngx_atoi(p, 4)) == NGX_ERROR
        || (m = ngx_atoi(p + 5, 2)) == NGX_ERROR
        || (d = ngx_atoi(p + 8, 2)) == NGX_ERROR
        || y < 2000 || m < 1 || m > 12 || d < 1
        || d > (ngx_int_t) mdays[m - 1]
        || (m == 2 && d == 29
            && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid date \"%V\": expected YYYY-MM-DD, the "
                           "day the key expires (UTC)", &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&tm, sizeof(struct tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;

    /* the key's last day is the day before: it expires at 00:00 UTC */
    umcf->key_expires = timegm(&tm);

    if (umcf->key_expires <= 0) {
        return "has a date out of range";
    }

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "warn=", 5) != 0
            || (n = ngx_atoi(value[2].data + 5, value[2].len - 5))
               == NGX_ERROR
            || n > 365)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected "
                               "\"warn=DAYS\" (0 to 365)", &value[2]);
            return NGX_CONF_ERROR;
        }

        umcf->key_warn_days = n;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_umlo_keyexp_days_left(ngx_umlo_main_conf_t *umcf)
{
    time_t  left;

    left = umcf->key_expires - ngx_time();

    /* floor: a key expiring later today has 0 days left */
    return (ngx_int_t) (left >= 0 ? left / 86400 : -((-left + 86399) / 86400));
}


json_t *
ngx_umlo_keyexp_json(ngx_umlo_main_conf_t *umcf)
{
    u_char      date[16], msg[256], *p;
    ngx_int_t   left;
    ngx_uint_t  expiring, expired;

    if (umcf->key_expires == 0) {
        return NULL;
    }

    left = ngx_umlo_keyexp_days_left(umcf);
    expired = (ngx_time() >= umcf->key_expires);
    expiring = (left <= (ngx_int_t) umcf->key_warn_days);

    *ngx_umlo_keyexp_date(date, umcf->key_expires) = '\0';

    if (expired) {
        p = ngx_snprintf(msg, sizeof(msg) - 1, "the Organization API key "
                         "expired on %s: syncs fail until a new key is in "
                         "umlo_api_key_file and umlo_api_key_expires, and "
                         "nginx is reloaded", date);

    } else {
        p = ngx_snprintf(msg, sizeof(msg) - 1, "the Organization API key "
                         "expires on %s, in %i day(s): create a new key "
                         "at admin.atlassian.com, put it in "
                         "umlo_api_key_file, update umlo_api_key_expires "
                         "and reload nginx", date, left);
    }

    *p = '\0';

    return json_pack("{s:s,s:I,s:b,s:b,s:s?}",
                     "expires", (char *) date,
                     "days_left", (json_int_t) left,
                     "expiring", (int) expiring,
                     "expired", (int) expired,
                     "warning", expiring ? (char *) msg : NULL);
}


ngx_int_t
ngx_umlo_keyexp_init_process(ngx_cycle_t *cycle, ngx_umlo_main_conf_t *umcf)
{
    ngx_event_t  *ev;

    if (umcf->key_expires == 0) {
        return NGX_OK;
    }

    ev = ngx_pcalloc(cycle->pool, sizeof(ngx_event_t));
    if (ev == NULL) {
        return NGX_ERROR;
    }

    ev->handler = ngx_umlo_keyexp_check;
    ev->data = umcf;
    ev->log = cycle->log;
    ev->cancelable = 1;

    ngx_add_timer(ev, NGX_UMLO_KEYEXP_FIRST_MS);

    return NGX_OK;
}


static void
ngx_umlo_keyexp_check(ngx_event_t *ev)
{
    ngx_umlo_main_conf_t  *umcf = ev->data;

    u_char  day[16];

    /* a graceful exit runs cancelable timers' handlers once: stop here */
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(ev, NGX_UMLO_KEYEXP_EVERY_MS);

    if (ngx_umlo_keyexp_days_left(umcf) > (ngx_int_t) umcf->key_warn_days
        || umcf->redis == NULL)
    {
        return;
    }

    *ngx_umlo_keyexp_date(day, ngx_time()) = '\0';

    (void) ngx_umlo_redis_commandf(umcf->redis, ngx_umlo_keyexp_claimed,
                                   umcf, "SET " NGX_UMLO_KEY_KEYWARN
                                   " %d NX EX %d", umcf->org.data, day,
                                   (int) ngx_pid, NGX_UMLO_KEYEXP_CLAIM_S);
}


static void
ngx_umlo_keyexp_claimed(redisReply *reply, void *data)
{
    ngx_umlo_main_conf_t  *umcf = data;

    json_t  *info;

    /* nil: another worker or instance has sent today's */
    if (reply == NULL || reply->type != REDIS_REPLY_STATUS) {
        return;
    }

    info = ngx_umlo_keyexp_json(umcf);
    if (info == NULL) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0, "umlo: %s",
                  json_string_value(json_object_get(info, "warning")));

    ngx_umlo_webhook_emit(umcf, NGX_UMLO_EV_KEY_EXPIRING, NULL, "api_key",
                          info);
    json_decref(info);
}


static u_char *
ngx_umlo_keyexp_date(u_char *buf, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02d", tm.ngx_tm_year, tm.ngx_tm_mon,
                       tm.ngx_tm_mday);
}
