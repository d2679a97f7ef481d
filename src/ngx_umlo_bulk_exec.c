/*
 * Copyright (C) ngx_umlo authors
 *
 * Bulk jobs: the run.  Users one after another: re-read from
 * Atlassian, skip anyone whose state changed since the snapshot, call,
 * re-read, and write the user into the current generation.
 */


#include "ngx_umlo_bulk_int.h"

#include <string.h>


static int ngx_umlo_bulk_user(ngx_umlo_bulk_job_t *job, json_t *item);


void
ngx_umlo_bulk_exec(ngx_umlo_bulk_job_t *job)
{
    char                  err[NGX_UMLO_API_ERRLEN], at[32];
    size_t                i, done, total;
    json_t               *items, *item;
    redisReply           *r;
    const char           *state;
    ngx_umlo_api_conf_t   conf;

    state = "succeeded";

    if (ngx_umlo_store_open(&job->store, &job->redis, job->org) != 0) {
        /* the lease lapses by itself: nothing was changed */
        return;
    }

    ngx_umlo_bulk_api_conf(job, &conf);

    job->api = ngx_umlo_api_create(&conf, err, sizeof(err));

    ngx_umlo_clock_iso(at, sizeof(at), ngx_umlo_clock_ms());
    json_object_set_new(job->doc, "started_at", json_string(at));
    json_object_set_new(job->doc, "state", json_string("running"));

    items = json_object_get(job->doc, "users");
    total = 0;

    json_array_foreach(items, i, item) {
        if (strcmp(ngx_umlo_bulk_str(item, "outcome"), "planned") == 0) {
            total++;
        }
    }

    done = 0;
    json_object_set_new(job->doc, "progress",
                        json_pack("{s:i,s:I}", "done", 0,
                                  "total", (json_int_t) total));
    (void) ngx_umlo_bulk_save(job);

    json_array_foreach(items, i, item) {
        if (strcmp(ngx_umlo_bulk_str(item, "outcome"), "planned") != 0) {
            continue;
        }

        if (job->api == NULL) {
            snprintf(job->error, sizeof(job->error), "%s", err);
        }

        /* the lease, renewed at a third of it; lost means stop */
        ngx_umlo_bulk_tick(job);

        if (job->api == NULL || job->cancel || job->error[0] != '\0') {
            ngx_umlo_bulk_outcome(item, "not_run", "the job stopped first: "
                                  "%s", job->error[0] ? job->error
                                  : "nginx is reloading or shutting down");
            continue;
        }

        if (ngx_umlo_bulk_user(job, item) != 0) {
            ngx_umlo_bulk_outcome(item, "not_run", "the job stopped first: "
                                  "%s", job->error[0] ? job->error
                                  : "nginx is reloading or shutting down");
        }

        json_object_set_new(json_object_get(job->doc, "progress"), "done",
                            json_integer(++done));
        json_object_set_new(job->doc, "counts",
                            ngx_umlo_bulk_counts(items));
        (void) ngx_umlo_bulk_save(job);
    }

    if (job->api != NULL) {
        ngx_umlo_api_destroy(job->api);
        job->api = NULL;
    }

    if (job->error[0] != '\0') {
        state = "failed";

    } else if (job->cancel) {
        state = "cancelled";
    }

    ngx_umlo_clock_iso(at, sizeof(at), ngx_umlo_clock_ms());
    json_object_set_new(job->doc, "finished_at", json_string(at));
    json_object_set_new(job->doc, "state", json_string(state));
    json_object_set_new(job->doc, "counts", ngx_umlo_bulk_counts(items));

    if (job->error[0] != '\0') {
        json_object_set_new(job->doc, "error", json_string(job->error));
    }

    (void) ngx_umlo_bulk_save(job);
    (void) ngx_umlo_bulk_audit(job);

    r = ngx_umlo_store_command(&job->store, "EVAL %s 1 " NGX_UMLO_KEY_LOCK
                               " %s", ngx_umlo_bulk_release_lua, job->org,
                               job->lock);
    if (r != NULL) {
        freeReplyObject(r);
    }

    ngx_umlo_store_close(&job->store);
}


/*
 * One user: the state Atlassian has now must be the snapshot's, else the
 * user is skipped; then the calls, then the user as it is afterwards goes
 * into the current generation.  -1 only when the job must stop.
 */

static int
ngx_umlo_bulk_user(ngx_umlo_bulk_job_t *job, json_t *item)
{
    int                    rc;
    char                   why[512], *text, gen[32];
    size_t                 i;
    json_t                *now, *step;
    const char            *id;
    redisReply            *r;
    ngx_umlo_bulk_call_t   call;

    id = ngx_umlo_bulk_str(item, "id");

    now = ngx_umlo_bulk_reread(job, id, why, sizeof(why));
    if (now == NULL) {
        if (job->cancel) {
            return -1;
        }

        ngx_umlo_bulk_outcome(item, why[0] ? "failed" : "skipped",
                              why[0] ? "re-reading the user failed: %s"
                                     : "no longer in the organization",
                              why);
        return 0;
    }

    if (ngx_umlo_bulk_changed(json_object_get(job->docs, id), now, why,
                              sizeof(why)))
    {
        json_decref(now);
        ngx_umlo_bulk_outcome(item, "skipped", "changed in Atlassian since "
                              "the data was read: %s", why);
        return 0;
    }

    json_decref(now);

    call.error[0] = '\0';

    json_array_foreach(json_object_get(item, "steps"), i, step) {
        rc = ngx_umlo_bulk_call(job, ngx_umlo_bulk_str(step, "method"),
                                ngx_umlo_bulk_str(step, "path"),
                                json_is_null(json_object_get(step, "body"))
                                ? NULL
                                : json_deep_copy(json_object_get(step,
                                                                 "body")),
                                &call);
        json_decref(call.json);

        if (rc != 0) {
            return -1;
        }

        if (call.error[0] != '\0') {
            ngx_umlo_bulk_outcome(item, "failed", "%s", call.error);

            if (i == 0) {
                return 0;
            }

            /* earlier steps changed the user: the snapshot must say so */
            break;
        }
    }

    if (call.error[0] == '\0') {
        ngx_umlo_bulk_outcome(item, "done", NULL);
    }

    /* the user as Atlassian has it now, into the current snapshot */
    now = ngx_umlo_bulk_reread(job, id, why, sizeof(why));
    if (now == NULL) {
        if (job->cancel) {
            return 0;
        }

        json_object_set_new(item, "snapshot", json_string(why[0]
                            ? "not updated: the user could not be re-read"
                            : "not updated: the user is gone"));
        return 0;
    }

    text = json_dumps(now, JSON_COMPACT);
    json_decref(now);

    if (text == NULL) {
        return 0;
    }

    snprintf(gen, sizeof(gen), "%lld", job->gen);

    r = ngx_umlo_store_command(&job->store, "EVAL %s 2 " NGX_UMLO_KEY_CURRENT
                               " " NGX_UMLO_KEY_GEN_USERS " %s %s %s",
                               ngx_umlo_bulk_update_lua, job->org, job->org,
                               job->gen, gen, id, text);
    free(text);

    json_object_set_new(item, "snapshot", json_string(
                        r != NULL && r->type == REDIS_REPLY_INTEGER
                        && r->integer == 1
                        ? "updated" : "not updated: the generation changed"));
    if (r != NULL) {
        freeReplyObject(r);
    }

    return 0;
}
