/*
 * Copyright (C) ngx_umlo authors
 *
 * Snapshot documents from API objects: see ngx_umlo_model.h.  Field names
 * in the snapshot are snake_case whatever the API version said.
 */


#include "ngx_umlo_model.h"

#include <string.h>


static const char *ngx_umlo_model_group_id(const char *id);
static int ngx_umlo_model_has(json_t *array, const char *s);
static const char *ngx_umlo_model_str(json_t *obj, const char *key);
static json_t *ngx_umlo_model_opt(json_t *obj, const char *key);
static json_t *ngx_umlo_model_host(const char *url);
static json_t *ngx_umlo_model_access(ngx_umlo_model_t *m, json_t *access,
    const char *ari);
static void ngx_umlo_model_later(json_t *entry, const char *key,
    const char *ts);


int
ngx_umlo_model_init(ngx_umlo_model_t *m)
{
    m->products = json_object();
    m->groups = json_object();

    if (m->products == NULL || m->groups == NULL) {
        ngx_umlo_model_free(m);
        return -1;
    }

    return 0;
}


void
ngx_umlo_model_free(ngx_umlo_model_t *m)
{
    json_decref(m->products);
    json_decref(m->groups);
    m->products = NULL;
    m->groups = NULL;
}


int
ngx_umlo_model_workspace(ngx_umlo_model_t *m, json_t *ws)
{
    json_t      *attrs, *product, *host;
    const char  *id, *key;

    id = ngx_umlo_model_str(ws, "id");
    if (id == NULL) {
        return -1;
    }

    attrs = json_object_get(ws, "attributes");

    key = ngx_umlo_model_str(attrs, "typeKey");
    if (key == NULL) {
        key = ngx_umlo_model_str(attrs, "type");
    }

    host = ngx_umlo_model_host(ngx_umlo_model_str(attrs, "hostUrl"));

    product = json_pack("{s:s,s:s?,s:o?,s:o,s:o,s:o,s:o}",
                        "id", id,
                        "product", key,
                        "name", ngx_umlo_model_opt(attrs, "name"),
                        "site", host ? host : json_string(id),
                        "status", ngx_umlo_model_opt(attrs, "status"),
                        "capacity", ngx_umlo_model_opt(attrs, "capacity"),
                        "usage", ngx_umlo_model_opt(attrs, "usage"));
    if (product == NULL) {
        return -1;
    }

    return json_object_set_new(m->products, id, product);
}


int
ngx_umlo_model_group(ngx_umlo_model_t *m, json_t *group)
{
    json_t      *g, *counts;
    const char  *id;

    id = ngx_umlo_model_str(group, "id");
    if (id == NULL) {
        return -1;
    }

    counts = json_object_get(group, "counts");

    g = json_pack("{s:s,s:o,s:o,s:o,s:o,s:[]}",
                  "id", id,
                  "name", ngx_umlo_model_opt(group, "name"),
                  "directory_id", ngx_umlo_model_opt(group, "directoryId"),
                  "users", ngx_umlo_model_opt(counts, "users"),
                  "external_synced",
                  ngx_umlo_model_opt(group, "externalSynced"),
                  "grants");
    if (g == NULL) {
        return -1;
    }

    return json_object_set_new(m->groups, id, g);
}


int
ngx_umlo_model_grant(ngx_umlo_model_t *m, const char *group_id,
    json_t *assignment)
{
    json_t      *group, *grant, *roles;
    const char  *ari;

    group = json_object_get(m->groups, group_id);
    ari = ngx_umlo_model_str(assignment, "resourceId");

    if (group == NULL || ari == NULL) {
        return -1;
    }

    roles = json_object_get(assignment, "roles");
    if (!json_is_array(roles)) {
        roles = NULL;
    }

    grant = json_pack("{s:s,s:O?,s:o}",
                      "resource_id", ari,
                      "roles", roles,
                      "default_role",
                      ngx_umlo_model_opt(assignment, "defaultRole"));
    if (grant == NULL) {
        return -1;
    }

    if (roles == NULL) {
        json_object_set_new(grant, "roles", json_array());
    }

    return json_array_append_new(json_object_get(group, "grants"), grant);
}


json_t *
ngx_umlo_model_user(ngx_umlo_model_t *m, json_t *user)
{
    size_t       i, j, k;
    json_t      *out, *groups, *access, *list, *sites, *item, *group, *grant;
    json_t      *role, *entry, *ugroups;
    const char  *id, *avatar, *last, *ts, *gid, *ari;

    id = ngx_umlo_model_str(user, "accountId");
    if (id == NULL) {
        return NULL;
    }

    avatar = ngx_umlo_model_str(user, "avatar");
    if (avatar == NULL) {
        avatar = ngx_umlo_model_str(user, "picture");
    }

    out = json_pack("{s:s,s:o,s:o,s:o,s:s?,s:o,s:o,s:o,s:o,s:o,s:o,s:o,"
                    "s:o,s:o,s:o}",
                    "id", id,
                    "name", ngx_umlo_model_opt(user, "name"),
                    "nickname", ngx_umlo_model_opt(user, "nickname"),
                    "email", ngx_umlo_model_opt(user, "email"),
                    "avatar", avatar,
                    "account_status", ngx_umlo_model_opt(user, "accountStatus"),
                    "account_type", ngx_umlo_model_opt(user, "accountType"),
                    "claim_status", ngx_umlo_model_opt(user, "claimStatus"),
                    "status", ngx_umlo_model_opt(user, "status"),
                    "membership_status",
                    ngx_umlo_model_opt(user, "membershipStatus"),
                    "added_to_org", ngx_umlo_model_opt(user, "addedToOrg"),
                    "email_verified",
                    ngx_umlo_model_opt(user, "emailVerified"),
                    "mfa_enabled", ngx_umlo_model_opt(user, "mfaEnabled"),
                    "management_source",
                    ngx_umlo_model_opt(user, "managementSource"),
                    "platform_roles", json_array());
    if (out == NULL) {
        return NULL;
    }

    list = json_object_get(user, "platformRoles");
    json_array_foreach(list, i, role) {
        if (json_is_string(role)) {
            json_array_append(json_object_get(out, "platform_roles"), role);
        }
    }

    /* product instance ARI -> access entry, turned into an array below */
    access = json_object();
    groups = json_array();
    sites = json_object();
    last = NULL;

    ugroups = json_object_get(user, "groups");
    json_array_foreach(ugroups, i, item) {
        gid = ngx_umlo_model_group_id(ngx_umlo_model_str(item, "id"));
        if (gid == NULL) {
            continue;
        }

        json_array_append_new(groups, json_pack("{s:s,s:o}", "id", gid,
                              "name", ngx_umlo_model_opt(item, "name")));

        group = json_object_get(m->groups, gid);

        json_array_foreach(json_object_get(group, "grants"), j, grant) {
            ari = json_string_value(json_object_get(grant, "resource_id"));

            /* org and site admin roles are platform_roles, not products */
            if (ari == NULL || strncmp(ari, "ari:cloud:platform::", 20) == 0)
            {
                continue;
            }

            entry = ngx_umlo_model_access(m, access, ari);
            if (entry == NULL) {
                continue;
            }

            json_array_foreach(json_object_get(grant, "roles"), k, role) {
                if (!json_is_string(role)) {
                    continue;
                }

                if (!ngx_umlo_model_has(json_object_get(entry, "roles"),
                                        json_string_value(role)))
                {
                    json_array_append(json_object_get(entry, "roles"), role);
                }

                if (ngx_umlo_model_billable(json_string_value(role))) {
                    json_object_set_new(entry, "billable", json_true());
                }
            }

            json_array_append_new(json_object_get(entry, "via_groups"),
                                  json_string(gid));
        }
    }

    list = json_object_get(user, "productAccess");
    json_array_foreach(list, i, item) {
        entry = ngx_umlo_model_access(m, access,
                                      ngx_umlo_model_str(item, "id"));
        ts = ngx_umlo_model_str(item, "lastActiveTimestamp");

        if (entry == NULL || ts == NULL) {
            continue;
        }

        ngx_umlo_model_later(entry, "last_active", ts);

        if (last == NULL || strcmp(ts, last) > 0) {
            last = ts;
        }
    }

    /* one array of access entries, each naming its site */
    list = json_array();
    {
        json_object_foreach(access, ari, entry) {
            json_array_append(list, entry);
            json_object_set_new(sites,
                                json_string_value(json_object_get(entry,
                                                                  "site")),
                                json_true());
        }
    }

    json_object_set_new(out, "groups", groups);
    json_object_set_new(out, "products", list);
    json_object_set_new(out, "sites", json_array());
    {
        const char  *host;

        json_object_foreach(sites, host, item) {
            json_array_append_new(json_object_get(out, "sites"),
                                  json_string(host));
        }
    }

    json_object_set_new(out, "last_active",
                        last ? json_string(last) : json_null());

    json_decref(access);
    json_decref(sites);

    return out;
}


json_t *
ngx_umlo_model_sites(ngx_umlo_model_t *m)
{
    json_t      *sites, *site, *product;
    const char  *ari, *host;

    sites = json_object();
    if (sites == NULL) {
        return NULL;
    }

    json_object_foreach(m->products, ari, product) {
        host = json_string_value(json_object_get(product, "site"));

        site = json_object_get(sites, host);
        if (site == NULL) {
            site = json_pack("{s:s,s:[]}", "site", host, "products");
            if (site == NULL || json_object_set_new(sites, host, site) != 0)
            {
                json_decref(sites);
                return NULL;
            }
        }

        json_array_append(json_object_get(site, "products"), product);
    }

    return sites;
}


int
ngx_umlo_model_billable(const char *role)
{
    return role != NULL && (strcmp(role, "atlassian/user") == 0
                            || strcmp(role, "atlassian/admin") == 0);
}


/*
 * The user's entry for a product instance, created on first use.  An ARI
 * that no workspace listed still gets an entry (site unknown) rather than
 * being dropped: the data is real even if the workspace list lagged.
 */

static json_t *
ngx_umlo_model_access(ngx_umlo_model_t *m, json_t *access, const char *ari)
{
    json_t  *entry, *product;

    if (ari == NULL) {
        return NULL;
    }

    entry = json_object_get(access, ari);
    if (entry != NULL) {
        return entry;
    }

    product = json_object_get(m->products, ari);

    entry = json_pack("{s:s,s:O,s:O,s:[],s:b,s:[],s:n}",
                      "resource_id", ari,
                      "site", product ? json_object_get(product, "site")
                                      : json_null(),
                      "product", product ? json_object_get(product, "product")
                                         : json_null(),
                      "roles",
                      "billable", 0,
                      "via_groups",
                      "last_active");
    if (entry == NULL) {
        return NULL;
    }

    if (product == NULL || json_is_null(json_object_get(entry, "site"))) {
        json_object_set_new(entry, "site", json_string("unknown"));
    }

    if (json_object_set_new(access, ari, entry) != 0) {
        return NULL;
    }

    return entry;
}


static void
ngx_umlo_model_later(json_t *entry, const char *key, const char *ts)
{
    const char  *cur;

    /* ISO 8601 UTC timestamps of one format compare as strings */
    cur = json_string_value(json_object_get(entry, key));

    if (cur == NULL || strcmp(ts, cur) > 0) {
        json_object_set_new(entry, key, json_string(ts));
    }
}


/*
 * groups/search names a group by its id, a user's "groups" by the group's
 * ARI (ari:cloud:identity::group/ID): both become the plain id.
 */

static const char *
ngx_umlo_model_group_id(const char *id)
{
    const char  *p;

    if (id == NULL || strncmp(id, "ari:", 4) != 0) {
        return id;
    }

    p = strstr(id, "::group/");

    return p ? p + sizeof("::group/") - 1 : id;
}


static int
ngx_umlo_model_has(json_t *array, const char *s)
{
    size_t   i;
    json_t  *v;

    json_array_foreach(array, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) {
            return 1;
        }
    }

    return 0;
}


static const char *
ngx_umlo_model_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}


/* a field's value, or JSON null when it is absent: a new reference */

static json_t *
ngx_umlo_model_opt(json_t *obj, const char *key)
{
    json_t  *v;

    v = json_object_get(obj, key);

    return v ? json_incref(v) : json_null();
}


static json_t *
ngx_umlo_model_host(const char *url)
{
    const char  *p, *end;

    if (url == NULL) {
        return NULL;
    }

    p = strstr(url, "://");
    p = p ? p + 3 : url;

    end = p;
    while (*end && *end != '/' && *end != ':') {
        end++;
    }

    if (end == p) {
        return NULL;
    }

    return json_stringn(p, end - p);
}
