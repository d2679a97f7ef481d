/*
 * Copyright (C) ngx_umlo authors
 *
 * Bulk jobs: per user, what to call or why not.  Protections come
 * first; then the action's calls, as steps the run replays unchanged.
 */


#include "ngx_umlo_bulk_int.h"

#include <stdarg.h>
#include <string.h>


static void ngx_umlo_bulk_decide(ngx_umlo_bulk_job_t *job, json_t *user,
    json_t *item);
static void ngx_umlo_bulk_product(ngx_umlo_bulk_job_t *job, json_t *user,
    json_t *item);
static void ngx_umlo_bulk_step(ngx_umlo_bulk_job_t *job, json_t *item,
    const char *method, json_t *body, const char *what, const char *fmt,
    ...);


json_t *
ngx_umlo_bulk_items(ngx_umlo_bulk_job_t *job)
{
    size_t       i, k;
    json_t      *items, *item, *protected, *id, *ref, *g;
    const char  *gid;

    /* the protected groups, by id, whatever the directive named them by */
    protected = json_array();

    json_array_foreach(job->protected, k, ref) {
        g = ngx_umlo_bulk_group(job, json_string_value(ref));
        gid = g ? ngx_umlo_bulk_str(g, "id") : json_string_value(ref);
        json_array_append_new(protected, json_string(gid));
    }

    items = json_array();

    json_array_foreach(job->ids, i, id) {
        item = ngx_umlo_bulk_item(job, json_object_get(job->docs,
                                                       json_string_value(id)),
                                  json_string_value(id), protected);
        if (item == NULL || json_array_append_new(items, item) != 0) {
            json_decref(items);
            json_decref(protected);
            ngx_umlo_bulk_fail(job, 500, "internal_error", "out of memory");
            return NULL;
        }
    }

    json_decref(protected);

    return items;
}


json_t *
ngx_umlo_bulk_item(ngx_umlo_bulk_job_t *job, json_t *user, const char *id,
    json_t *protected)
{
    size_t   i;
    json_t  *item, *pg;

    item = json_pack("{s:s,s:O?,s:O?,s:O?,s:O?,s:O?,s:s,s:n,s:[]}",
                     "id", id,
                     "name", json_object_get(user, "name"),
                     "email", json_object_get(user, "email"),
                     "claim_status", json_object_get(user, "claim_status"),
                     "account_status", json_object_get(user,
                                                       "account_status"),
                     "membership_status",
                     json_object_get(user, "membership_status"),
                     "outcome", "planned",
                     "reason",
                     "steps");
    if (item == NULL) {
        return NULL;
    }

    if (user == NULL) {
        ngx_umlo_bulk_outcome(item, "unknown", "not in the snapshot: no such "
                              "user, or not synced yet");
        return item;
    }

    /* protections that no request can switch off */
    if (ngx_umlo_bulk_in(json_object_get(user, "platform_roles"), NULL,
                         "atlassian/org-admin"))
    {
        ngx_umlo_bulk_outcome(item, "protected", "organization admins are "
                              "never changed by bulk jobs");
        return item;
    }

    json_array_foreach(protected, i, pg) {
        if (ngx_umlo_bulk_in(json_object_get(user, "groups"), "id",
                             json_string_value(pg)))
        {
            ngx_umlo_bulk_outcome(item, "protected", "member of the "
                                  "protected group %s "
                                  "(umlo_bulk_protected_group)",
                                  json_string_value(pg));
            return item;
        }
    }

    ngx_umlo_bulk_decide(job, user, item);

    return item;
}


static void
ngx_umlo_bulk_decide(ngx_umlo_bulk_job_t *job, json_t *user, json_t *item)
{
    json_t      *params, *group;
    const char  *action, *id, *account, *membership, *claim, *gid, *gname;

    action = ngx_umlo_bulk_str(job->request, "action");
    params = json_object_get(job->request, "params");
    id = ngx_umlo_bulk_str(user, "id");
    account = ngx_umlo_bulk_str(user, "account_status");
    membership = ngx_umlo_bulk_str(user, "membership_status");
    claim = ngx_umlo_bulk_str(user, "claim_status");

    account = account ? account : "";
    membership = membership ? membership : "";
    claim = claim ? claim : "";

    if (strcmp(action, "suspend") == 0 || strcmp(action, "restore") == 0) {
        if ((action[0] == 's') == (strcmp(membership, "suspended") == 0)) {
            ngx_umlo_bulk_outcome(item, "no_change", action[0] == 's'
                                  ? "already suspended" : "not suspended");
            return;
        }

        ngx_umlo_bulk_step(job, item, "POST", NULL, action,
                           "/admin/v2/orgs/%s/directories/-/users/%s/%s",
                           job->org, id, action);
        return;
    }

    if (strcmp(action, "deactivate") == 0
        || strcmp(action, "reactivate") == 0)
    {
        if (strcmp(claim, "managed") != 0) {
            ngx_umlo_bulk_outcome(item, "refused", "the account is not "
                                  "managed by the organization: Atlassian "
                                  "only lets the org suspend or restore it, "
                                  "not %s it", action);
            return;
        }

        if (strcmp(account, "closed") == 0) {
            ngx_umlo_bulk_outcome(item, "refused", "the account is closed");
            return;
        }

        if ((action[0] == 'd') == (strcmp(account, "inactive") == 0)) {
            ngx_umlo_bulk_outcome(item, "no_change", action[0] == 'd'
                                  ? "already deactivated" : "not deactivated");
            return;
        }

        ngx_umlo_bulk_step(job, item, "POST",
                           action[0] == 'd' ? json_object() : NULL, action,
                           "/users/%s/manage/lifecycle/%s", id,
                           action[0] == 'd' ? "disable" : "enable");
        return;
    }

    if (strcmp(action, "remove_product") == 0) {
        ngx_umlo_bulk_product(job, user, item);
        return;
    }

    /* add_to_group, remove_from_group: the group exists (checked first) */
    group = ngx_umlo_bulk_group(job, ngx_umlo_bulk_str(params, "group"));
    gid = ngx_umlo_bulk_str(group, "id");
    gname = ngx_umlo_bulk_str(group, "name");
    gname = gname ? gname : gid;

    if (json_is_true(json_object_get(group, "external_synced"))) {
        ngx_umlo_bulk_outcome(item, "refused", "the group %s is synced from "
                              "an identity provider: change it there", gname);
        return;
    }

    if (strcmp(action, "add_to_group") == 0) {
        if (ngx_umlo_bulk_in(json_object_get(user, "groups"), "id", gid)) {
            ngx_umlo_bulk_outcome(item, "no_change", "already in %s", gname);
            return;
        }

        ngx_umlo_bulk_step(job, item, "POST",
                           json_pack("{s:s}", "accountId", id),
                           "add to group",
                           "/admin/v2/orgs/%s/directories/-/groups/%s/"
                           "memberships", job->org, gid);
        return;
    }

    if (!ngx_umlo_bulk_in(json_object_get(user, "groups"), "id", gid)) {
        ngx_umlo_bulk_outcome(item, "no_change", "not in %s", gname);
        return;
    }

    ngx_umlo_bulk_step(job, item, "DELETE", NULL, "remove from group",
                       "/admin/v2/orgs/%s/directories/-/groups/%s/"
                       "memberships/%s", job->org, gid, id);
}


/*
 * Product access comes from groups: removing it means leaving every group
 * that grants a role on that product instance.  Whatever else those
 * groups alone grant the user is lost too, and the plan says so.  A role
 * held directly has no revoke call in the admin API: refused, with why.
 */

static void
ngx_umlo_bulk_product(ngx_umlo_bulk_job_t *job, json_t *user, json_t *item)
{
    int          held, direct;
    size_t       i, j;
    json_t      *params, *entry, *via, *leave, *lost, *g;
    const char  *site, *key, *gid;

    params = json_object_get(job->request, "params");
    site = ngx_umlo_bulk_str(params, "site");
    key = ngx_umlo_bulk_str(params, "product");

    leave = json_array();
    held = 0;
    direct = 0;

    json_array_foreach(json_object_get(user, "products"), i, entry) {
        if (ngx_umlo_bulk_str(entry, "site") == NULL
            || strcmp(ngx_umlo_bulk_str(entry, "site"), site) != 0
            || ngx_umlo_bulk_str(entry, "product") == NULL
            || strcmp(ngx_umlo_bulk_str(entry, "product"), key) != 0)
        {
            continue;
        }

        if (json_array_size(json_object_get(entry, "roles")) == 0) {
            continue;
        }

        held = 1;
        via = json_object_get(entry, "via_groups");

        if (json_array_size(via) == 0) {
            direct = 1;
        }

        json_array_foreach(via, j, g) {
            if (!ngx_umlo_bulk_in(leave, NULL, json_string_value(g))) {
                json_array_append(leave, g);
            }
        }
    }

    if (!held) {
        json_decref(leave);
        ngx_umlo_bulk_outcome(item, "no_change", "no role on %s on %s", key,
                              site);
        return;
    }

    if (direct) {
        json_decref(leave);
        ngx_umlo_bulk_outcome(item, "refused", "the role on %s on %s is "
                              "held directly, not through a group, and the "
                              "admin API has no call to revoke it", key,
                              site);
        return;
    }

    json_array_foreach(leave, i, g) {
        gid = json_string_value(g);

        if (json_is_true(json_object_get(json_object_get(job->model.groups,
                                                         gid),
                                         "external_synced")))
        {
            json_array_clear(json_object_get(item, "steps"));
            json_decref(leave);
            ngx_umlo_bulk_outcome(item, "refused", "the access comes from "
                                  "the group %s, synced from an identity "
                                  "provider: change it there", gid);
            return;
        }

        ngx_umlo_bulk_step(job, item, "DELETE", NULL, "remove from group",
                           "/admin/v2/orgs/%s/directories/-/groups/%s/"
                           "memberships/%s", job->org, gid,
                           ngx_umlo_bulk_str(user, "id"));
    }

    /* other products the user reaches only through the groups left */
    lost = json_array();

    json_array_foreach(json_object_get(user, "products"), i, entry) {
        via = json_object_get(entry, "via_groups");

        if (json_array_size(via) == 0
            || (ngx_umlo_bulk_str(entry, "site") != NULL
                && ngx_umlo_bulk_str(entry, "product") != NULL
                && strcmp(ngx_umlo_bulk_str(entry, "site"), site) == 0
                && strcmp(ngx_umlo_bulk_str(entry, "product"), key) == 0))
        {
            continue;
        }

        held = 1;

        json_array_foreach(via, j, g) {
            if (!ngx_umlo_bulk_in(leave, NULL, json_string_value(g))) {
                held = 0;
            }
        }

        if (held) {
            json_array_append_new(lost, json_pack("{s:O?,s:O?}",
                                  "site", json_object_get(entry, "site"),
                                  "product", json_object_get(entry,
                                                             "product")));
        }
    }

    json_object_set_new(item, "also_removes", lost);
    json_decref(leave);
}


/* a group of the snapshot by id or, failing that, by name */

json_t *
ngx_umlo_bulk_group(ngx_umlo_bulk_job_t *job, const char *ref)
{
    json_t      *g;
    const char  *id, *name;

    if (ref == NULL) {
        return NULL;
    }

    g = json_object_get(job->model.groups, ref);
    if (g != NULL) {
        return g;
    }

    json_object_foreach(job->model.groups, id, g) {
        name = ngx_umlo_bulk_str(g, "name");
        if (name != NULL && strcmp(name, ref) == 0) {
            return g;
        }
    }

    return NULL;
}


static void
ngx_umlo_bulk_step(ngx_umlo_bulk_job_t *job, json_t *item,
    const char *method, json_t *body, const char *what, const char *fmt, ...)
{
    char     path[1024];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(path, sizeof(path), fmt, args);
    va_end(args);

    json_array_append_new(json_object_get(item, "steps"),
                          json_pack("{s:s,s:s,s:o,s:s}", "method", method,
                                    "path", path,
                                    "body", body ? body : json_null(),
                                    "what", what));
}
