/*
 * Copyright (C) ngx_umlo authors
 *
 * Bulk jobs in pool threads: the plan.  It reads the current
 * snapshot, refuses stale data, checks a dry run's token, decides per
 * user (ngx_umlo_bulk_decide.c) and, to run, takes the org lock.
 */


#include "ngx_umlo_bulk_int.h"

#include <string.h>
#include <time.h>


static int ngx_umlo_bulk_plan_do(ngx_umlo_bulk_job_t *job);


void
ngx_umlo_bulk_plan(ngx_umlo_bulk_job_t *job)
{
    if (ngx_umlo_store_open(&job->store, &job->redis, job->org) != 0) {
        ngx_umlo_bulk_fail(job, 503, "redis_unavailable", "%s",
                           job->store.error);
        return;
    }

    if (ngx_umlo_model_init(&job->model) != 0) {
        ngx_umlo_bulk_fail(job, 500, "internal_error", "out of memory");

    } else if (ngx_umlo_bulk_plan_do(job) != 0 && job->status == 0) {
        ngx_umlo_bulk_fail(job, 503, "redis_unavailable", "%s",
                           job->store.error);
    }

    ngx_umlo_store_close(&job->store);
}


static int
ngx_umlo_bulk_plan_do(ngx_umlo_bulk_job_t *job)
{
    int          locked;
    char         asof[32], expires[32], token[33], *text;
    json_t      *summary, *saved, *items, *target;
    long long    age, now, t;
    redisReply  *r;
    const char  *s;

    now = ngx_umlo_clock_ms();

    if (ngx_umlo_bulk_current(job, &summary) != 0) {
        return -1;
    }

    s = ngx_umlo_bulk_str(summary, "data_as_of");
    age = -1;

    if (s != NULL) {
        struct tm  tm;

        memset(&tm, 0, sizeof(tm));
        if (strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) != NULL) {
            t = (long long) timegm(&tm);
            age = now / 1000 - t;
            if (age < 0) {
                age = 0;
            }
        }
    }

    snprintf(asof, sizeof(asof), "%s", s ? s : "");
    json_decref(summary);

    saved = NULL;

    if (job->token_in != NULL) {
        r = ngx_umlo_store_command(&job->store, "GET " NGX_UMLO_KEY_BULK_TOKEN,
                                   job->org, job->token_in);
        if (r == NULL) {
            return -1;
        }

        if (r->type == REDIS_REPLY_STRING) {
            saved = json_loadb(r->str, r->len, 0, NULL);
        }

        freeReplyObject(r);

        if (saved == NULL) {
            ngx_umlo_bulk_fail(job, 404, "unknown_token", "no dry run has "
                               "this token, or it expired or was used "
                               "(umlo_bulk_token_ttl): make a new dry run");
            return -1;
        }

        if (json_integer_value(json_object_get(saved, "generation"))
            != job->gen
            || json_integer_value(json_object_get(saved, "revision"))
               != job->rev)
        {
            json_decref(saved);
            ngx_umlo_bulk_fail(job, 409, "plan_outdated", "the data changed "
                               "since the dry run (a sync or another bulk "
                               "job ran): make a new dry run");
            return -1;
        }

        json_decref(job->request);
        job->request = json_incref(json_object_get(saved, "request"));
        json_decref(job->ids);
        job->ids = json_incref(json_object_get(saved, "ids"));
        job->force = json_is_true(json_object_get(saved, "force"));
        job->dry_run = 0;
    }

    /* a task re-read its users first: their data is fresh */
    if (!job->presynced && (age < 0 || (age > job->max_age_s && !job->force)))
    {
        json_decref(saved);
        ngx_umlo_bulk_fail(job, 409, "stale_data", age < 0
                           ? "the snapshot does not say how old it is; run "
                             "a full sync first"
                           : "the data is %lld s old, more than "
                             "umlo_bulk_max_data_age (%lld s): sync first, "
                             "or send \"force\": true", age, job->max_age_s);
        return -1;
    }

    if (json_array_size(job->ids) > job->max_users) {
        json_decref(saved);
        ngx_umlo_bulk_fail(job, 422, "too_many_users", "the job targets %zu "
                           "users, more than umlo_bulk_max_users (%u): "
                           "narrow it down", json_array_size(job->ids),
                           job->max_users);
        return -1;
    }

    if (ngx_umlo_bulk_load(job) != 0 || ngx_umlo_bulk_known(job) != 0
        || ngx_umlo_bulk_users(job) != 0)
    {
        json_decref(saved);
        return -1;
    }

    items = ngx_umlo_bulk_items(job);
    if (items == NULL) {
        json_decref(saved);
        return -1;
    }

    if (saved != NULL) {
        if (!json_equal(items, json_object_get(saved, "users"))) {
            json_decref(saved);
            json_decref(items);
            ngx_umlo_bulk_fail(job, 409, "plan_changed", "the plan is no "
                               "longer the one the dry run showed: make a "
                               "new dry run");
            return -1;
        }
    }

    target = json_object_get(job->request, "target");

    job->doc = json_pack("{s:s,s:O,s:O,s:O,s:b,s:b,s:s,s:s,s:s,"
                         "s:{s:I,s:I,s:s,s:I,s:b,s:I},s:o,s:o,s:n}",
                         "id", job->id,
                         "action", json_object_get(job->request, "action"),
                         "params", json_object_get(job->request, "params"),
                         "target", target,
                         "dry_run", (int) job->dry_run,
                         "force", (int) job->force,
                         "state", job->dry_run ? "planned" : "queued",
                         "requested_by", job->actor,
                         "requested_at", "",
                         "data", "generation", (json_int_t) job->gen,
                         "revision", (json_int_t) job->rev,
                         "data_as_of", asof,
                         "age_seconds", (json_int_t) age,
                         "presynced", (int) job->presynced,
                         "max_age_seconds", (json_int_t) job->max_age_s,
                         "counts", ngx_umlo_bulk_counts(items),
                         "users", items,
                         "error");
    if (job->doc == NULL) {
        json_decref(saved);
        ngx_umlo_bulk_fail(job, 500, "internal_error", "out of memory");
        return -1;
    }

    ngx_umlo_clock_iso(expires, sizeof(expires), now);
    json_object_set_new(job->doc, "requested_at", json_string(expires));

    if (saved != NULL) {
        json_object_set(job->doc, "dry_run_id", json_object_get(saved, "id"));
        json_decref(saved);
    }

    if (job->dry_run) {
        if (ngx_umlo_bulk_random(token, 16) != 0) {
            ngx_umlo_bulk_fail(job, 500, "internal_error", "no randomness");
            return -1;
        }

        saved = json_pack("{s:s,s:O,s:O,s:I,s:I,s:b,s:O}",
                          "id", job->id, "request", job->request,
                          "ids", job->ids, "generation", (json_int_t) job->gen,
                          "revision", (json_int_t) job->rev,
                          "force", (int) job->force, "users", items);
        text = saved ? json_dumps(saved, JSON_COMPACT) : NULL;
        json_decref(saved);

        if (text == NULL) {
            ngx_umlo_bulk_fail(job, 500, "internal_error", "out of memory");
            return -1;
        }

        r = ngx_umlo_store_command(&job->store, "SET "
                                   NGX_UMLO_KEY_BULK_TOKEN " %s PX %u",
                                   job->org, token, text, job->token_ttl_ms);
        free(text);

        if (r == NULL) {
            return -1;
        }

        freeReplyObject(r);

        ngx_umlo_clock_iso(expires, sizeof(expires), now + job->token_ttl_ms);
        json_object_set_new(job->doc, "token", json_string(token));
        json_object_set_new(job->doc, "token_expires_at",
                            json_string(expires));

        if (ngx_umlo_bulk_save(job) != 0 || ngx_umlo_bulk_audit(job) != 0) {
            return -1;
        }

        job->status = 200;
        return 0;
    }

    if (job->run_of != NULL) {
        json_object_set_new(job->doc, "task",
                            json_pack("{s:O?,s:O?}",
                                      "id", json_object_get(job->run_of, "id"),
                                      "name", json_object_get(job->run_of,
                                                              "name")));
    }

    /* a job holds the org lock: no sync swaps data under it */
    locked = job->locked;

    if (!locked) {
        r = ngx_umlo_store_command(&job->store, "SET " NGX_UMLO_KEY_LOCK
                                   " %s NX PX %u", job->org, job->lock,
                                   job->lease_ms);
        if (r == NULL) {
            return -1;
        }

        locked = (r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }

    if (!locked) {
        ngx_umlo_bulk_fail(job, 409, "org_busy", "a sync or another bulk "
                           "job of this organization is running; try again "
                           "when it has finished");
        return -1;
    }

    job->renewed_ms = now;

    if (job->token_in != NULL) {
        /* a token runs once, even when two requests race for it */
        r = ngx_umlo_store_command(&job->store, "DEL "
                                   NGX_UMLO_KEY_BULK_TOKEN, job->org,
                                   job->token_in);
        if (r == NULL || r->integer != 1) {
            if (r != NULL) {
                freeReplyObject(r);
            }

            r = ngx_umlo_store_command(&job->store, "EVAL %s 1 "
                                       NGX_UMLO_KEY_LOCK " %s",
                                       ngx_umlo_bulk_release_lua, job->org,
                                       job->lock);
            if (r != NULL) {
                freeReplyObject(r);
            }

            ngx_umlo_bulk_fail(job, 404, "unknown_token", "this dry run's "
                               "token was used by another request");
            return -1;
        }

        freeReplyObject(r);
    }

    if (ngx_umlo_bulk_save(job) != 0) {
        return -1;
    }

    job->execute = 1;
    job->status = 202;

    return 0;
}
