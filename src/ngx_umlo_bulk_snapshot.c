/*
 * Copyright (C) ngx_umlo authors
 *
 * Bulk jobs: what the plan reads of the current generation (its
 * number and summary, groups, products, the target users' documents).
 */


#include "ngx_umlo_bulk_int.h"

#include <string.h>


int
ngx_umlo_bulk_current(ngx_umlo_bulk_job_t *job, json_t **summary)
{
    redisReply  *r, *e;

    r = ngx_umlo_store_command(&job->store, "HMGET " NGX_UMLO_KEY_CURRENT
                               " gen json rev", job->org);
    if (r == NULL) {
        return -1;
    }

    e = (r->type == REDIS_REPLY_ARRAY && r->elements == 3) ? r->element[0]
                                                            : NULL;

    if (e == NULL || e->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        ngx_umlo_bulk_fail(job, 404, "no_snapshot", "no full sync has "
                           "completed yet: run one first");
        return -1;
    }

    job->gen = strtoll(e->str, NULL, 10);
    e = r->element[2];
    job->rev = (e->type == REDIS_REPLY_STRING) ? strtoll(e->str, NULL, 10)
                                               : 0;
    e = r->element[1];
    *summary = (e->type == REDIS_REPLY_STRING)
               ? json_loadb(e->str, e->len, 0, NULL) : NULL;

    freeReplyObject(r);

    return 0;
}


/* the generation's groups and product instances, for model_user() */

int
ngx_umlo_bulk_load(ngx_umlo_bulk_job_t *job)
{
    size_t       i, k;
    json_t      *doc, *product;
    redisReply  *r;

    r = ngx_umlo_store_command(&job->store, "HVALS " NGX_UMLO_KEY_GEN_GROUPS,
                               job->org, job->gen);
    if (r == NULL) {
        return -1;
    }

    for (i = 0; i < r->elements; i++) {
        doc = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
        if (doc != NULL) {
            json_object_set_new(job->model.groups,
                                ngx_umlo_bulk_str(doc, "id"), doc);
        }
    }

    freeReplyObject(r);

    r = ngx_umlo_store_command(&job->store, "HVALS " NGX_UMLO_KEY_GEN_SITES,
                               job->org, job->gen);
    if (r == NULL) {
        return -1;
    }

    for (i = 0; i < r->elements; i++) {
        doc = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);

        json_array_foreach(json_object_get(doc, "products"), k, product) {
            if (ngx_umlo_bulk_str(product, "id") != NULL) {
                json_object_set(job->model.products,
                                ngx_umlo_bulk_str(product, "id"), product);
            }
        }

        json_decref(doc);
    }

    freeReplyObject(r);

    return 0;
}


/* the group, or the product on the site, the action names exists */

int
ngx_umlo_bulk_known(ngx_umlo_bulk_job_t *job)
{
    json_t      *params, *product;
    const char  *ref, *site, *key, *ari;

    params = json_object_get(job->request, "params");
    ref = ngx_umlo_bulk_str(params, "group");

    if (ref != NULL && ngx_umlo_bulk_group(job, ref) == NULL) {
        ngx_umlo_bulk_fail(job, 422, "unknown_group", "the snapshot has no "
                           "group with the id or name \"%s\"", ref);
        return -1;
    }

    site = ngx_umlo_bulk_str(params, "site");
    key = ngx_umlo_bulk_str(params, "product");

    if (site == NULL || key == NULL) {
        return 0;
    }

    json_object_foreach(job->model.products, ari, product) {
        if (ngx_umlo_bulk_str(product, "site") != NULL
            && ngx_umlo_bulk_str(product, "product") != NULL
            && strcmp(ngx_umlo_bulk_str(product, "site"), site) == 0
            && strcmp(ngx_umlo_bulk_str(product, "product"), key) == 0)
        {
            return 0;
        }
    }

    ngx_umlo_bulk_fail(job, 422, "unknown_product", "the snapshot has no "
                       "product \"%s\" on the site \"%s\"", key, site);
    return -1;
}


int
ngx_umlo_bulk_users(ngx_umlo_bulk_job_t *job)
{
    size_t        i, n;
    json_t       *doc, *id;
    redisReply   *r;
    const char  **argv;
    size_t       *lens;
    char          key[256];

    n = json_array_size(job->ids);

    job->docs = json_object();
    if (job->docs == NULL) {
        return -1;
    }

    if (n == 0) {
        return 0;
    }

    argv = malloc((n + 2) * sizeof(char *));
    lens = malloc((n + 2) * sizeof(size_t));

    if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        ngx_umlo_bulk_fail(job, 500, "internal_error", "out of memory");
        return -1;
    }

    snprintf(key, sizeof(key), NGX_UMLO_KEY_GEN_USERS, job->org, job->gen);

    argv[0] = "HMGET";
    argv[1] = key;

    json_array_foreach(job->ids, i, id) {
        argv[i + 2] = json_string_value(id);
    }

    for (i = 0; i < n + 2; i++) {
        lens[i] = strlen(argv[i]);
    }

    if (ngx_umlo_store_flush(&job->store) != 0) {
        free(argv);
        free(lens);
        return -1;
    }

    r = redisCommandArgv(job->store.c, (int) n + 2, argv, lens);
    free(argv);
    free(lens);

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        snprintf(job->store.error, sizeof(job->store.error), "Redis: HMGET "
                 "of the users failed");
        if (r != NULL) {
            freeReplyObject(r);
        }

        return -1;
    }

    for (i = 0; i < n; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING) {
            continue;
        }

        doc = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
        if (doc != NULL) {
            json_object_set_new(job->docs,
                                json_string_value(json_array_get(job->ids, i)),
                                doc);
        }
    }

    freeReplyObject(r);

    return 0;
}
