/*
 * Copyright (C) ngx_umlo authors
 *
 * Tasks, after the users are known: the notice period, the run's record
 * in the task, and its webhook event.  Pool-thread side.
 */


#include "ngx_umlo_task_int.h"
#include "ngx_umlo_sync.h"
#include "ngx_umlo_webhook.h"


/* after a run: only if the task was not deleted meanwhile */
static const char  ngx_umlo_task_done_lua[] =
    "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end"
    " redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])"
    " redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) return 1";


/*
 * A notice period: a user is acted on only once the filter has matched
 * them for that long.  The first match is remembered per task (the
 * "noticed" state, readable at umlo_tasks/ID/notice); a user the filter
 * no longer matches is forgotten.  job->ids keeps the users whose notice
 * has run out; the newly noticed, with their dates, go to the task event.
 */

int
ngx_umlo_task_notice(ngx_umlo_bulk_job_t *job)
{
    char          key[512], at[32], due[32];
    size_t        i;
    json_t       *id, *act, *seen, *noticed;
    long long     notice, now, first;
    unsigned      fresh, waiting;
    redisReply   *r;
    const char   *account;

    notice = json_integer_value(json_object_get(job->run_of, "notice"));
    if (notice <= 0) {
        return 0;
    }

    now = ngx_umlo_clock_ms();

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
    noticed = json_array();
    fresh = 0;
    waiting = 0;

    json_array_foreach(job->ids, i, id) {
        account = json_string_value(id);
        first = json_integer_value(json_object_get(seen, account));

        if (json_object_get(seen, account) == NULL) {
            (void) ngx_umlo_store_append(&job->store, "HSET %s %s %lld", key,
                                         account, now);
            fresh++;

            ngx_umlo_clock_iso(at, sizeof(at), now);
            ngx_umlo_clock_iso(due, sizeof(due), now + notice * 1000);
            json_array_append_new(noticed,
                                  json_pack("{s:s,s:s,s:s}", "id", account,
                                            "noticed_at", at, "due_at", due));

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

    json_object_set_new(job->run_of, "notice_new", noticed);

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


/* the run's outcome into the task, its next run, and its event */

void
ngx_umlo_task_record(ngx_umlo_bulk_job_t *job)
{
    char         at[32], *text;
    json_t      *task, *last, *sync, *notice;
    long long    now, next;
    redisReply  *r;
    const char  *state;

    now = ngx_umlo_clock_ms();
    ngx_umlo_clock_iso(at, sizeof(at), now);

    state = (job->status == 202)
            ? json_string_value(json_object_get(job->doc, "state"))
            : (job->status == 409 ? "postponed" : "failed");
    state = state ? state : "failed";

    next = (job->status == 409)
           ? now + NGX_UMLO_TASK_RETRY_MS
           : ngx_umlo_task_next(json_object_get(job->run_of, "schedule"),
                                now);

    /* the full sync the run made first, if it started */
    sync = (job->sync != NULL && job->sync->state != NULL)
           ? json_pack("{s:s,s:s}", "id", job->sync->id,
                       "state", job->sync->state)
           : NULL;

    notice = json_object_get(job->run_of, "notice_state");

    last = json_pack("{s:s,s:s,s:s,s:O?,s:s?,s:O?}",
                     "job", job->id, "at", at, "state", state,
                     "counts", json_object_get(job->doc, "counts"),
                     "error", job->error[0] ? job->error : NULL,
                     "notice", notice);

    if (sync != NULL) {
        json_object_set(last, "sync", sync);
    }

    /* the event also names who was newly put on notice, and until when */
    if (notice != NULL) {
        notice = json_deep_copy(notice);
        json_object_set(notice, "noticed",
                        json_object_get(job->run_of, "notice_new"));
    }

    /*
     * Sent from the event loop once the run ends (ngx_umlo_task_run.c),
     * like any event: signed, retried, in the deliveries log.
     */
    if (strcmp(state, "postponed") != 0) {
        job->event_type = strcmp(state, "succeeded") == 0
                          ? NGX_UMLO_EV_TASK_COMPLETED
                          : NGX_UMLO_EV_TASK_FAILED;
        job->event = json_pack("{s:O,s:O,s:s,s:s,s:O?,s:s?,s:s,s:O?,s:O?}",
                               "id", json_object_get(job->run_of, "id"),
                               "name", json_object_get(job->run_of, "name"),
                               "job", job->id, "state", state,
                               "counts", json_object_get(job->doc, "counts"),
                               "error", job->error[0] ? job->error : NULL,
                               "at", at,
                               "sync", sync,
                               "notice", notice);
    }

    json_decref(notice);
    json_decref(sync);

    task = json_deep_copy(job->run_of);
    json_object_del(task, "notice_state");
    json_object_del(task, "notice_new");
    json_object_set_new(task, "last_run", last);
    json_object_set_new(task, "next_run_ms", json_integer(next));
    ngx_umlo_clock_iso(at, sizeof(at), next);
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
