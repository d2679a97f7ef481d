/*
 * Copyright (C) ngx_umlo authors
 *
 * A small fixed snapshot for the query and cursor harnesses: two sites,
 * three products, three groups and six users covering the fields the
 * query engine reads (null and missing ones included).
 */

#ifndef _FUZZ_SNAP_H_INCLUDED_
#define _FUZZ_SNAP_H_INCLUDED_


#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>

#include "ngx_umlo_snapshot.h"


#define FUZZ_NOW_MS  1795680000000LL


static const char  fuzz_snap_json[] =
    "{\"sites\":["
    "{\"site\":\"a.atlassian.net\",\"id\":\"cloud-a\",\"products\":["
    "{\"id\":\"ari:cloud:jira-software::site/cloud-a\","
    "\"product\":\"jira-software\",\"name\":\"Jira\","
    "\"site\":\"a.atlassian.net\",\"status\":\"ONLINE\",\"capacity\":10,"
    "\"usage\":3},"
    "{\"id\":\"ari:cloud:confluence::site/cloud-a\",\"product\":\"confluence\","
    "\"name\":\"Confluence\",\"site\":\"a.atlassian.net\",\"capacity\":null}]},"
    "{\"site\":\"b.atlassian.net\",\"products\":["
    "{\"id\":\"ari:cloud:jira-software::site/cloud-b\","
    "\"product\":\"jira-software\",\"site\":\"b.atlassian.net\"}]}],"
    "\"groups\":["
    "{\"id\":\"g1\",\"name\":\"jira-users\",\"grants\":[]},"
    "{\"id\":\"g2\",\"name\":\"admins, all\",\"grants\":[]},"
    "{\"id\":\"g3\",\"name\":null}],"
    "\"users\":["
    "{\"id\":\"u1\",\"name\":\"Zo\\u00eb M\\u00fcller\",\"email\":\"zoe@x.example\","
    "\"account_status\":\"active\",\"account_type\":\"atlassian\","
    "\"claim_status\":\"managed\",\"status\":\"active\","
    "\"membership_status\":\"active\",\"added_to_org\":\"2022-02-05T14:20:42Z\","
    "\"platform_roles\":[\"atlassian/org-admin\"],"
    "\"groups\":[{\"id\":\"g1\",\"name\":\"jira-users\"}],"
    "\"products\":[{\"resource_id\":\"ari:cloud:jira-software::site/cloud-a\","
    "\"site\":\"a.atlassian.net\",\"product\":\"jira-software\","
    "\"roles\":[\"atlassian/user\"],\"billable\":true,\"via_groups\":[\"g1\"],"
    "\"last_active\":\"2026-05-12T23:29:41.740Z\"}],"
    "\"sites\":[\"a.atlassian.net\"],\"last_active\":\"2026-05-12T23:29:41.740Z\"},"
    "{\"id\":\"u2\",\"name\":\"=cmd|' /C calc'!A0\",\"email\":null,"
    "\"status\":\"suspended\",\"claim_status\":\"unmanaged\","
    "\"added_to_org\":\"2024-02-29\",\"groups\":[{\"id\":\"g2\"}],"
    "\"products\":[{\"resource_id\":\"ari:cloud:confluence::site/cloud-a\","
    "\"site\":\"a.atlassian.net\",\"product\":\"confluence\",\"roles\":[],"
    "\"billable\":false,\"last_active\":\"2025-01-01T00:00:00.000Z\"},"
    "{\"resource_id\":\"ari:cloud:jira-software::site/cloud-b\","
    "\"site\":\"b.atlassian.net\",\"product\":\"jira-software\","
    "\"roles\":[\"atlassian/admin\"],\"billable\":true,\"last_active\":null}]},"
    "{\"id\":\"u3\",\"name\":\"\\u0130stanbul \\u00df\",\"email\":\"i@y.example\","
    "\"status\":\"deactivated\",\"account_type\":\"app\"},"
    "{\"id\":\"u4\",\"name\":null,\"email\":\"\\\"quoted\\\",comma@z\","
    "\"status\":\"not_invited\",\"added_to_org\":null,\"groups\":[],"
    "\"products\":[]},"
    "{\"id\":\"u5\",\"name\":\"\\u4e2d\\u6587\",\"status\":\"for_deletion\","
    "\"added_to_org\":\"2020-01-01T00:00:00+02:00\","
    "\"platform_roles\":[\"atlassian/site-admin\"],"
    "\"groups\":[{\"id\":\"g1\"},{\"id\":\"g2\"},{\"id\":\"g3\"}]},"
    "{\"id\":\"u6\",\"name\":\"A\",\"email\":\"a@a\",\"status\":\"active\","
    "\"products\":[{\"resource_id\":\"ari:cloud:jira-software::site/cloud-a\","
    "\"site\":\"a.atlassian.net\",\"product\":\"jira-software\","
    "\"roles\":[\"atlassian/user\",\"atlassian/admin\"],\"billable\":true,"
    "\"last_active\":\"2026-11-01T00:00:00Z\"}]}]}";


static ngx_umlo_snap_t *
fuzz_snapshot(void)
{
    size_t            i;
    json_t           *all, *doc;
    json_error_t      err;
    ngx_umlo_snap_t  *snap;

    all = json_loads(fuzz_snap_json, 0, &err);
    snap = ngx_umlo_snap_create();

    if (all == NULL || snap == NULL) {
        fprintf(stderr, "fixture: %s\n", all ? "no memory" : err.text);
        abort();
    }

    json_array_foreach(json_object_get(all, "sites"), i, doc) {
        if (ngx_umlo_snap_add_site(snap, doc) != 0) {
            abort();
        }
    }

    json_array_foreach(json_object_get(all, "groups"), i, doc) {
        if (ngx_umlo_snap_add_group(snap, doc) != 0) {
            abort();
        }
    }

    json_array_foreach(json_object_get(all, "users"), i, doc) {
        if (ngx_umlo_snap_add_user(snap, doc) != 0) {
            abort();
        }
    }

    if (ngx_umlo_snap_finish(snap) != 0) {
        abort();
    }

    json_decref(all);

    /* what ngx_umlo_snap_load() takes from the summary */
    snap->gen = 7;
    snap->sync_id = "s-1795680000000-0c1d2e3f";
    snap->data_as_of = "2026-11-26T06:00:00Z";

    return snap;
}


#endif /* _FUZZ_SNAP_H_INCLUDED_ */
