/*
 * Copyright (C) ngx_umlo authors
 *
 * Bulk jobs: outcomes and counts, the job document and the audit
 * log in Redis, the lock's release and a user's write into the snapshot.
 */


#include "ngx_umlo_bulk_int.h"

#include <stdarg.h>


const char  ngx_umlo_bulk_release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then"
    " return redis.call('DEL', KEYS[1]) end return 0";

/* one snapshot user, written only while the generation is still current */
const char  ngx_umlo_bulk_update_lua[] =
    "if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return 0 end"
    " if ARGV[3] == '' then redis.call('HDEL', KEYS[2], ARGV[2])"
    " else redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end"
    " redis.call('HINCRBY', KEYS[1], 'rev', 1) return 1";


void
ngx_umlo_bulk_outcome(json_t *item, const char *outcome, const char *fmt,
    ...)
{
    char     reason[512];
    va_list  args;

    json_object_set_new(item, "outcome", json_string(outcome));

    if (fmt == NULL) {
        json_object_set_new(item, "reason", json_null());
        return;
    }

    va_start(args, fmt);
    vsnprintf(reason, sizeof(reason), fmt, args);
    va_end(args);

    json_object_set_new(item, "reason", json_string(reason));
}


json_t *
ngx_umlo_bulk_counts(json_t *items)
{
    size_t       i;
    json_t      *counts, *item;
    const char  *outcome;

    counts = json_pack("{s:I,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}",
                       "targets", (json_int_t) json_array_size(items),
                       "planned", 0, "no_change", 0, "protected", 0,
                       "refused", 0, "unknown", 0, "done", 0, "failed", 0,
                       "skipped", 0, "not_run", 0);

    json_array_foreach(items, i, item) {
        outcome = ngx_umlo_bulk_str(item, "outcome");
        if (outcome != NULL && json_object_get(counts, outcome) != NULL) {
            json_object_set_new(counts, outcome, json_integer(
                json_integer_value(json_object_get(counts, outcome)) + 1));
        }
    }

    return counts;
}


int
ngx_umlo_bulk_save(ngx_umlo_bulk_job_t *job)
{
    int          rc;
    char        *text;
    redisReply  *r;

    text = json_dumps(job->doc, JSON_COMPACT);
    if (text == NULL) {
        return -1;
    }

    r = ngx_umlo_store_command(&job->store, "SET " NGX_UMLO_KEY_BULK_JOB
                               " %s EX %u", job->org, job->id, text,
                               job->retention_s);
    free(text);

    rc = (r == NULL) ? -1 : 0;
    if (r != NULL) {
        freeReplyObject(r);
    }

    return rc;
}


/* who, when, what, dry run or not, and each user's outcome */

int
ngx_umlo_bulk_audit(ngx_umlo_bulk_job_t *job)
{
    size_t   i;
    char    *text;
    json_t  *entry, *users, *item;

    users = json_array();

    json_array_foreach(json_object_get(job->doc, "users"), i, item) {
        json_array_append_new(users, json_pack("{s:O,s:O,s:O}",
                              "id", json_object_get(item, "id"),
                              "outcome", json_object_get(item, "outcome"),
                              "reason", json_object_get(item, "reason")));
    }

    entry = json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:o}",
                      "id", json_object_get(job->doc, "id"),
                      "at", json_object_get(job->doc, "requested_at"),
                      "who", json_object_get(job->doc, "requested_by"),
                      "action", json_object_get(job->doc, "action"),
                      "params", json_object_get(job->doc, "params"),
                      "target", json_object_get(job->doc, "target"),
                      "dry_run", json_object_get(job->doc, "dry_run"),
                      "state", json_object_get(job->doc, "state"),
                      "counts", json_object_get(job->doc, "counts"),
                      "users", users);
    if (entry == NULL) {
        return -1;
    }

    if (json_object_get(job->doc, "dry_run_id") != NULL) {
        json_object_set(entry, "dry_run_id",
                        json_object_get(job->doc, "dry_run_id"));
    }

    text = json_dumps(entry, JSON_COMPACT);
    json_decref(entry);

    if (text == NULL) {
        return -1;
    }

    (void) ngx_umlo_store_append(&job->store, "LPUSH "
                                 NGX_UMLO_KEY_BULK_AUDIT " %s", job->org,
                                 text);
    free(text);

    (void) ngx_umlo_store_append(&job->store, "LTRIM "
                                 NGX_UMLO_KEY_BULK_AUDIT " 0 %u", job->org,
                                 job->audit_max - 1);

    return ngx_umlo_store_flush(&job->store);
}
