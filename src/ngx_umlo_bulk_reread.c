/*
 * Copyright (C) ngx_umlo authors
 *
 * Bulk jobs: a user as Atlassian has it now, what counts as changed,
 * and a task's pre-sync of the users it may act on.
 */


#include "ngx_umlo_bulk_int.h"

#include <string.h>


/* a task's users, re-read before its filter is evaluated again */

int
ngx_umlo_bulk_presync(ngx_umlo_bulk_job_t *job)
{
    int                   rc;
    char                  err[NGX_UMLO_API_ERRLEN], gen[32], *text;
    size_t                i;
    json_t               *user, *id, *summary;
    redisReply           *r;
    ngx_umlo_api_conf_t   conf;

    rc = -1;

    if (ngx_umlo_store_open(&job->store, &job->redis, job->org) != 0) {
        snprintf(job->error, sizeof(job->error), "%s", job->store.error);
        return -1;
    }

    ngx_umlo_bulk_api_conf(job, &conf);

    summary = NULL;
    job->renewed_ms = ngx_umlo_clock_ms();

    if (ngx_umlo_model_init(&job->model) != 0
        || ngx_umlo_bulk_current(job, &summary) != 0
        || ngx_umlo_bulk_load(job) != 0)
    {
        snprintf(job->error, sizeof(job->error), "%s", job->code[0]
                 ? "no full sync has completed yet" : job->store.error);
        goto done;
    }

    job->api = ngx_umlo_api_create(&conf, err, sizeof(err));
    if (job->api == NULL) {
        snprintf(job->error, sizeof(job->error), "%s", err);
        goto done;
    }

    snprintf(gen, sizeof(gen), "%lld", job->gen);

    json_array_foreach(job->ids, i, id) {
        user = ngx_umlo_bulk_reread(job, json_string_value(id), err,
                                    sizeof(err));
        if (user == NULL && err[0] != '\0') {
            snprintf(job->error, sizeof(job->error), "re-reading %.64s: %.400s",
                     json_string_value(id), err);
            goto done;
        }

        text = user ? json_dumps(user, JSON_COMPACT) : NULL;
        json_decref(user);

        r = ngx_umlo_store_command(&job->store, "EVAL %s 2 "
                                   NGX_UMLO_KEY_CURRENT " "
                                   NGX_UMLO_KEY_GEN_USERS " %s %s %s",
                                   ngx_umlo_bulk_update_lua, job->org,
                                   job->org, job->gen, gen,
                                   json_string_value(id), text ? text : "");
        free(text);

        if (r == NULL) {
            snprintf(job->error, sizeof(job->error), "%s", job->store.error);
            goto done;
        }

        freeReplyObject(r);
    }

    rc = 0;

done:

    json_decref(summary);

    if (job->api != NULL) {
        ngx_umlo_api_destroy(job->api);
        job->api = NULL;
    }

    /* the plan starts afresh */
    ngx_umlo_model_free(&job->model);
    memset(&job->model, 0, sizeof(ngx_umlo_model_t));
    job->code[0] = '\0';
    job->status = 0;

    ngx_umlo_store_close(&job->store);

    return rc;
}


/* the user as Atlassian has it now, as a snapshot document, or NULL */

json_t *
ngx_umlo_bulk_reread(ngx_umlo_bulk_job_t *job, const char *id, char *err,
    size_t len)
{
    char                   path[512];
    size_t                 i;
    json_t                *item, *user;
    ngx_umlo_bulk_call_t   call;

    err[0] = '\0';

    snprintf(path, sizeof(path), "/admin/v2/orgs/%s/directories/-/users/"
             "search", job->org);

    if (ngx_umlo_bulk_call(job, "POST", path,
                           json_pack("{s:i,s:[s],s:[sss]}", "limit", 10,
                                     "accountIds", id, "expand",
                                     "productAccess", "groups",
                                     "platformRoles"),
                           &call)
        != 0)
    {
        snprintf(err, len, "the job was stopped");
        return NULL;
    }

    if (call.error[0] != '\0') {
        snprintf(err, len, "%s", call.error);
        json_decref(call.json);
        return NULL;
    }

    user = NULL;

    json_array_foreach(json_object_get(call.json, "data"), i, item) {
        if (ngx_umlo_bulk_str(item, "accountId") != NULL
            && strcmp(ngx_umlo_bulk_str(item, "accountId"), id) == 0)
        {
            user = ngx_umlo_model_user(&job->model, item);
            break;
        }
    }

    json_decref(call.json);

    return user;
}


/* what a bulk action depends on: any difference means "changed" */

int
ngx_umlo_bulk_changed(json_t *old, json_t *now, char *why, size_t len)
{
    size_t       i, k;
    json_t      *a, *b, *e;
    const char  *field;

    static const char  *fields[] = {
        "account_status", "membership_status", "claim_status", "status"
    };

    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        a = json_object_get(old, fields[i]);
        b = json_object_get(now, fields[i]);

        if (!json_equal(a, b) && !(a == NULL && json_is_null(b))) {
            snprintf(why, len, "%s was %s, is now %s", fields[i],
                     json_is_string(a) ? json_string_value(a) : "null",
                     json_is_string(b) ? json_string_value(b) : "null");
            return 1;
        }
    }

    for (k = 0; k < 2; k++) {
        field = k ? "platform_roles" : "groups";
        a = json_object_get(old, field);
        b = json_object_get(now, field);

        if (json_array_size(a) != json_array_size(b)) {
            snprintf(why, len, "%s changed", k ? "platform roles"
                                               : "group memberships");
            return 1;
        }

        json_array_foreach(a, i, e) {
            if (!ngx_umlo_bulk_in(b, k ? NULL : "id",
                                  k ? json_string_value(e)
                                    : ngx_umlo_bulk_str(e, "id")))
            {
                snprintf(why, len, "%s changed", k ? "platform roles"
                                                   : "group memberships");
                return 1;
            }
        }
    }

    return 0;
}
