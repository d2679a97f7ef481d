/*
 * Copyright (C) ngx_umlo authors
 *
 * libFuzzer harness: Atlassian's API answers as the sync turns them into
 * documents (ngx_umlo_model.c) and as the user browser loads those
 * documents (ngx_umlo_snapshot.c), then a query and the facets over the
 * result.  The input is JSON:
 *
 *     {"workspaces": [items], "groups": [items],
 *      "grants": {"<group id>": [role-assignments items]},
 *      "users": [users/search items]}
 *
 * Any other JSON value is fed to every step as one item.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_umlo_model.h"
#include "ngx_umlo_query.h"


#define FUZZ_NOW_MS  1795680000000LL


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static json_t *
items(json_t *in, const char *key)
{
    json_t  *v, *a;

    v = json_is_object(in) ? json_object_get(in, key) : in;

    if (json_is_array(v)) {
        return json_incref(v);
    }

    a = json_array();
    if (v != NULL) {
        json_array_append(a, v);
    }

    return a;
}


static void
query(ngx_umlo_snap_t *snap, const char *args)
{
    json_t                *page;
    ngx_umlo_query_t      *q;
    ngx_umlo_query_err_t   err;

    memset(&err, 0, sizeof(err));
    q = ngx_umlo_query_parse(snap, args, strlen(args), FUZZ_NOW_MS, &err);

    if (q != NULL && ngx_umlo_query_run(q, &err) == 0) {
        page = ngx_umlo_query_page(q);
        if (page == NULL) {
            abort();
        }
        json_decref(page);
    }

    ngx_umlo_query_free(q);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char              *text;
    size_t             i, j;
    json_t            *in, *list, *v, *a, *doc, *docs, *sites, *grants;
    const char        *gid;
    ngx_umlo_snap_t   *snap;
    ngx_umlo_model_t   m;

    in = json_loadb((const char *) data, size, JSON_DECODE_ANY, NULL);
    if (in == NULL) {
        return 0;
    }

    if (ngx_umlo_model_init(&m) != 0) {
        abort();
    }

    list = items(in, "workspaces");
    json_array_foreach(list, i, v) {
        (void) ngx_umlo_model_workspace(&m, v);
    }
    json_decref(list);

    list = items(in, "groups");
    json_array_foreach(list, i, v) {
        (void) ngx_umlo_model_group(&m, v);
    }
    json_decref(list);

    grants = json_object_get(in, "grants");
    if (json_is_object(grants)) {
        json_object_foreach(grants, gid, a) {
            json_array_foreach(a, j, v) {
                (void) ngx_umlo_model_grant(&m, gid, v);
            }
        }

    } else if (!json_is_object(in)) {
        (void) ngx_umlo_model_grant(&m, "g", in);
    }

    docs = json_array();
    list = items(in, "users");
    json_array_foreach(list, i, v) {
        doc = ngx_umlo_model_user(&m, v);
        if (doc != NULL) {
            /* stored as text in Redis: must always serialise */
            text = json_dumps(doc, JSON_COMPACT);
            if (text == NULL) {
                abort();
            }
            free(text);
            json_array_append_new(docs, doc);
        }
    }
    json_decref(list);

    sites = ngx_umlo_model_sites(&m);
    snap = ngx_umlo_snap_create();

    if (sites == NULL || snap == NULL) {
        abort();
    }

    {
        const char  *host;

        json_object_foreach(sites, host, v) {
            (void) ngx_umlo_snap_add_site(snap, v);
        }
    }

    {
        const char  *id;

        json_object_foreach(m.groups, id, v) {
            (void) ngx_umlo_snap_add_group(snap, v);
        }
    }

    json_array_foreach(docs, i, v) {
        (void) ngx_umlo_snap_add_user(snap, v);
    }

    if (ngx_umlo_snap_finish(snap) == 0) {
        snap->gen = 1;
        snap->sync_id = "s-0";
        query(snap, "");
        query(snap, "sort=last_active&order=desc&billable=true");
        query(snap, "site=a.atlassian.net&product=jira-software&"
                    "inactive_days=30&sort=last_active");
        if (ngx_umlo_query_facets(snap) == NULL) {
            abort();
        }
    }

    ngx_umlo_snap_free(snap);
    json_decref(sites);
    json_decref(docs);
    ngx_umlo_model_free(&m);
    json_decref(in);

    return 0;
}
