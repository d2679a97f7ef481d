/*
 * Copyright (C) ngx_umlo authors
 *
 * The daily sync and the activity refresh cadence.  Each instance arms
 * them in its worker 0 only; which instance runs a given occurrence is
 * decided by one Redis script that also takes the org lock, so a run
 * happens once across every instance sharing the Redis, whichever are up.
 *
 * The timers are cancelable: a worker that is told to quit or reload
 * never waits for them, and they start nothing once it is exiting.
 */


#include "ngx_umlo_timer.h"
#include "ngx_umlo_sync.h"
#include "ngx_umlo_keys.h"
#include "ngx_umlo_redis.h"
#include "ngx_umlo_tz.h"


#define NGX_UMLO_TIMER_RETRY    5000    /* ms: Redis down, or org busy */
#define NGX_UMLO_TIMER_MAX      60000   /* ms: look again at least this
                                           often (clock changes) */
#define NGX_UMLO_TIMER_START    500     /* ms after start: Redis connects */


/*
 * The day's slot, claimed once: done already (2), a full sync already
 * running counts as the day's run (3), any other job holds the lock so
 * try again soon (0), or the lock taken and the sync queued (1).
 * KEYS: lock, status, cancel, daily; ARGV: token, lease, doc, day.
 */
static const char  ngx_umlo_timer_daily_lua[] =
    "local last = redis.call('GET', KEYS[4])"
    " if last and last >= ARGV[4] then return {2, last} end"
    " if redis.call('EXISTS', KEYS[1]) == 1 then"
    "  local ok, d = pcall(cjson.decode, redis.call('GET', KEYS[2]) or '')"
    "  if ok and type(d) == 'table'"
    "   and (d.state == 'running' or d.state == 'queued')"
    "   and (d.kind == 'full'"
    "        or (d.kind == nil and d.users_requested == nil)) then"
    "   redis.call('SET', KEYS[4], ARGV[4])"
    "   return {3, type(d.id) == 'string' and d.id or ''} end"
    "  return {0, ''} end"
    " redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])"
    " redis.call('SET', KEYS[2], ARGV[3])"
    " redis.call('DEL', KEYS[3])"
    " redis.call('SET', KEYS[4], ARGV[4])"
    " return {1, ''}";

/*
 * The activity refresh is due when Redis' clock passes "next"; the first
 * instance to see that takes the lock and moves "next" on by the
 * interval.  Returns {1, 0} when started, else {0, ms to wait}.  A new
 * org starts counting at its first look: its full sync read activity.
 * KEYS: lock, status, cancel, next, current; ARGV: token, lease, doc,
 * interval.
 */
static const char  ngx_umlo_timer_activity_lua[] =
    "local t = redis.call('TIME')"
    " local now = t[1] * 1000 + math.floor(t[2] / 1000)"
    " local every = tonumber(ARGV[4])"
    " local nx = tonumber(redis.call('GET', KEYS[4]) or '')"
    " if not nx or nx > now + every then"
    "  redis.call('SET', KEYS[4], now + every) return {0, every} end"
    " if nx > now then return {0, nx - now} end"
    " if not redis.call('HGET', KEYS[5], 'gen') then return {0, 60000} end"
    " if redis.call('EXISTS', KEYS[1]) == 1 then return {0, 5000} end"
    " redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])"
    " redis.call('SET', KEYS[2], ARGV[3])"
    " redis.call('DEL', KEYS[3])"
    " redis.call('SET', KEYS[4], now + every)"
    " return {1, 0}";


typedef struct {
    ngx_event_t            ev;
    ngx_umlo_main_conf_t  *umcf;
    int64_t                day;         /* daily: the local day handled */
    int64_t                at;          /* its UTC time */
} ngx_umlo_timer_t;


static void ngx_umlo_timer_arm(ngx_umlo_timer_t *tm, ngx_msec_t ms);
static int64_t ngx_umlo_timer_next(ngx_umlo_main_conf_t *umcf,
    int64_t after, int64_t *day);
static void ngx_umlo_timer_daily(ngx_event_t *ev);
static void ngx_umlo_timer_daily_reply(redisReply *reply, void *data);
static void ngx_umlo_timer_daily_move(ngx_umlo_timer_t *tm);
static void ngx_umlo_timer_refresh(ngx_event_t *ev);
static void ngx_umlo_timer_refresh_reply(redisReply *reply, void *data);
static ngx_umlo_job_t *ngx_umlo_timer_job(ngx_umlo_timer_t *tm,
    const char *kind, char **doc);
static void ngx_umlo_timer_launch(ngx_umlo_timer_t *tm,
    ngx_umlo_job_t *job);


/* per worker process */
static ngx_umlo_timer_t  ngx_umlo_timer_daily_tm;
static ngx_umlo_timer_t  ngx_umlo_timer_refresh_tm;


ngx_int_t
ngx_umlo_timer_init(ngx_cycle_t *cycle, ngx_umlo_main_conf_t *umcf)
{
    int64_t            now, at, day;
    ngx_umlo_timer_t  *tm;

    /* one worker per instance is enough: Redis arbitrates between them */
    if (ngx_worker != 0) {
        return NGX_OK;
    }

    if (umcf->daily >= 0) {
        tm = &ngx_umlo_timer_daily_tm;
        ngx_memzero(tm, sizeof(ngx_umlo_timer_t));
        tm->umcf = umcf;
        tm->ev.handler = ngx_umlo_timer_daily;
        tm->ev.data = tm;
        tm->ev.log = cycle->log;
        tm->ev.cancelable = 1;

        now = ngx_time();

        /* catch-up: the latest slot not after now, if nobody ran it */
        at = ngx_umlo_timer_next(umcf, now, &day);
        if (umcf->catch_up) {
            at = ngx_umlo_timer_next(umcf, now - 86400 - 3600, &day);
            while (at <= now) {
                tm->day = day;
                tm->at = at;
                at = ngx_umlo_timer_next(umcf, at, &day);
            }
        }

        if (tm->at == 0) {
            tm->day = day;
            tm->at = at;
            ngx_umlo_timer_arm(tm, (tm->at - now) * 1000);

        } else {
            ngx_umlo_timer_arm(tm, NGX_UMLO_TIMER_START);
        }

        {
            u_char  date[16];

            ngx_umlo_tz_date(tm->day, date);
            ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                          "umlo: daily sync: next slot %s (%V) at %L UTC "
                          "epoch", date,
                          &((ngx_umlo_tz_t *) umcf->daily_tz)->name,
                          tm->at);
        }
    }

    if (umcf->activity_refresh > 0) {
        tm = &ngx_umlo_timer_refresh_tm;
        ngx_memzero(tm, sizeof(ngx_umlo_timer_t));
        tm->umcf = umcf;
        tm->ev.handler = ngx_umlo_timer_refresh;
        tm->ev.data = tm;
        tm->ev.log = cycle->log;
        tm->ev.cancelable = 1;

        ngx_umlo_timer_arm(tm, NGX_UMLO_TIMER_START);
    }

    return NGX_OK;
}


static void
ngx_umlo_timer_arm(ngx_umlo_timer_t *tm, ngx_msec_t ms)
{
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(&tm->ev, ngx_min(ms, NGX_UMLO_TIMER_MAX));
}


/* the first slot strictly after "after", and its local day */

static int64_t
ngx_umlo_timer_next(ngx_umlo_main_conf_t *umcf, int64_t after,
    int64_t *day)
{
    int64_t         d, at;
    ngx_umlo_tz_t  *tz;

    tz = umcf->daily_tz;

    for (d = ngx_umlo_tz_day(tz, after) - 1; /* void */ ; d++) {
        at = ngx_umlo_tz_utc(tz, d, (long) umcf->daily);

        if (at > after) {
            *day = d;
            return at;
        }
    }
}


static void
ngx_umlo_timer_daily(ngx_event_t *ev)
{
    ngx_umlo_timer_t  *tm = ev->data;

    char            *doc;
    int64_t          now;
    u_char           date[16];
    ngx_int_t        rc;
    ngx_umlo_job_t  *job;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    now = ngx_time();

    if (now < tm->at) {
        ngx_umlo_timer_arm(tm, (tm->at - now) * 1000);
        return;
    }

    job = ngx_umlo_timer_job(tm, "full", &doc);
    if (job == NULL) {
        ngx_umlo_timer_arm(tm, NGX_UMLO_TIMER_RETRY);
        return;
    }

    ngx_umlo_tz_date(tm->day, date);

    rc = ngx_umlo_redis_commandf(tm->umcf->redis, ngx_umlo_timer_daily_reply,
                                 job, "EVAL %s 4 " NGX_UMLO_KEY_LOCK " "
                                 NGX_UMLO_KEY_STATUS " " NGX_UMLO_KEY_CANCEL
                                 " " NGX_UMLO_KEY_DAILY " %s %u %s %s",
                                 ngx_umlo_timer_daily_lua, job->org,
                                 job->org, job->org, job->org, job->token,
                                 job->lease_ms, doc, date);
    free(doc);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "umlo: daily sync of %s: Redis unavailable (%s), "
                      "trying again", date,
                      ngx_umlo_redis_error(tm->umcf->redis));
        ngx_umlo_sync_free(job);
        ngx_umlo_timer_daily_move(tm);
    }
}


static void
ngx_umlo_timer_daily_reply(redisReply *reply, void *data)
{
    ngx_umlo_job_t  *job = data;

    u_char             date[16];
    ngx_umlo_timer_t  *tm;

    tm = &ngx_umlo_timer_daily_tm;
    ngx_umlo_tz_date(tm->day, date);

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        ngx_log_error(NGX_LOG_WARN, tm->ev.log, 0,
                      "umlo: daily sync of %s: %s, trying again", date,
                      reply && reply->type == REDIS_REPLY_ERROR
                      ? reply->str : "Redis did not answer");
        ngx_umlo_sync_free(job);
        ngx_umlo_timer_daily_move(tm);
        return;
    }

    switch (reply->element[0]->integer) {

    case 1:
        ngx_log_error(NGX_LOG_NOTICE, tm->ev.log, 0,
                      "umlo: daily sync of %s starts", date);
        ngx_umlo_timer_launch(tm, job);
        tm->at = 0;
        break;

    case 3:
        ngx_log_error(NGX_LOG_NOTICE, tm->ev.log, 0,
                      "umlo: daily sync of %s: sync %s, already running, "
                      "counts as the day's run", date,
                      reply->element[1]->type == REDIS_REPLY_STRING
                      ? reply->element[1]->str : "");
        ngx_umlo_sync_free(job);
        tm->at = 0;
        break;

    case 2:
        ngx_log_error(NGX_LOG_INFO, tm->ev.log, 0,
                      "umlo: daily sync of %s: already run", date);
        ngx_umlo_sync_free(job);
        tm->at = 0;
        break;

    default:
        /* an activity refresh or a selective sync: the day's run waits */
        ngx_umlo_sync_free(job);
        break;
    }

    ngx_umlo_timer_daily_move(tm);
}


/*
 * After a claim (tm->at cleared): on to the next slot.  Otherwise the
 * same slot again soon, until the next one is due.
 */

static void
ngx_umlo_timer_daily_move(ngx_umlo_timer_t *tm)
{
    int64_t  now, at, day;

    now = ngx_time();
    at = ngx_umlo_timer_next(tm->umcf, now, &day);

    if (tm->at == 0 || at <= now + NGX_UMLO_TIMER_RETRY / 1000
        || day > tm->day + 1)
    {
        tm->day = day;
        tm->at = at;
        ngx_umlo_timer_arm(tm, (at - now) * 1000);
        return;
    }

    ngx_umlo_timer_arm(tm, NGX_UMLO_TIMER_RETRY);
}


static void
ngx_umlo_timer_refresh(ngx_event_t *ev)
{
    ngx_umlo_timer_t  *tm = ev->data;

    char            *doc;
    ngx_int_t        rc;
    ngx_umlo_job_t  *job;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    job = ngx_umlo_timer_job(tm, "activity", &doc);
    if (job == NULL) {
        ngx_umlo_timer_arm(tm, NGX_UMLO_TIMER_RETRY);
        return;
    }

    rc = ngx_umlo_redis_commandf(tm->umcf->redis,
                                 ngx_umlo_timer_refresh_reply, job,
                                 "EVAL %s 5 " NGX_UMLO_KEY_LOCK " "
                                 NGX_UMLO_KEY_STATUS " " NGX_UMLO_KEY_CANCEL
                                 " " NGX_UMLO_KEY_ACTIVITY_NEXT " "
                                 NGX_UMLO_KEY_CURRENT " %s %u %s %lu",
                                 ngx_umlo_timer_activity_lua, job->org,
                                 job->org, job->org, job->org, job->org,
                                 job->token, job->lease_ms, doc,
                                 (unsigned long) tm->umcf->activity_refresh);
    free(doc);

    if (rc != NGX_OK) {
        ngx_umlo_sync_free(job);
        ngx_umlo_timer_arm(tm, NGX_UMLO_TIMER_RETRY);
    }
}


static void
ngx_umlo_timer_refresh_reply(redisReply *reply, void *data)
{
    ngx_umlo_job_t  *job = data;

    long long          wait;
    ngx_umlo_timer_t  *tm;

    tm = &ngx_umlo_timer_refresh_tm;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_INTEGER)
    {
        ngx_log_error(NGX_LOG_WARN, tm->ev.log, 0,
                      "umlo: activity refresh: %s, trying again",
                      reply && reply->type == REDIS_REPLY_ERROR
                      ? reply->str : "Redis did not answer");
        ngx_umlo_sync_free(job);
        ngx_umlo_timer_arm(tm, NGX_UMLO_TIMER_RETRY);
        return;
    }

    if (reply->element[0]->integer == 1) {
        ngx_log_error(NGX_LOG_NOTICE, tm->ev.log, 0,
                      "umlo: activity refresh %s starts", job->id);
        ngx_umlo_timer_launch(tm, job);
        ngx_umlo_timer_arm(tm, tm->umcf->activity_refresh);
        return;
    }

    ngx_umlo_sync_free(job);

    wait = reply->element[1]->integer;
    ngx_umlo_timer_arm(tm, wait < 200 ? 200 : (ngx_msec_t) wait);
}


static ngx_umlo_job_t *
ngx_umlo_timer_job(ngx_umlo_timer_t *tm, const char *kind, char **doc)
{
    ngx_umlo_job_t  *job;

    job = ngx_umlo_sync_job(tm->umcf, "scheduled");
    if (job == NULL) {
        return NULL;
    }

    ngx_umlo_sync_kind(job, kind);

    *doc = json_dumps(job->doc, JSON_COMPACT);
    if (*doc == NULL) {
        ngx_umlo_sync_free(job);
        return NULL;
    }

    return job;
}


/* the lock is ours: hand the job to the thread pool, or give it back */

static void
ngx_umlo_timer_launch(ngx_umlo_timer_t *tm, ngx_umlo_job_t *job)
{
    if (ngx_umlo_sync_post(job, tm->umcf) == NGX_OK) {
        ngx_log_error(NGX_LOG_NOTICE, tm->ev.log, 0,
                      "umlo: scheduled %s sync %s started", job->kind,
                      job->id);
        return;
    }

    ngx_snprintf((u_char *) job->where, sizeof(job->where) - 1, "start%Z");
    ngx_snprintf((u_char *) job->error, sizeof(job->error) - 1,
                 "the thread pool \"%V\" did not take the sync (queue "
                 "full?)%Z", &tm->umcf->thread_pool_name);
    job->state = "failed";

    ngx_log_error(NGX_LOG_ERR, tm->ev.log, 0, "umlo: scheduled sync %s: %s",
                  job->id, job->error);

    ngx_umlo_sync_release(job, tm->umcf);
    ngx_umlo_sync_free(job);
}
