/*
 * Copyright (C) ngx_umlo authors
 *
 * Facets: the counts per site, product, key and group for the user
 * browser's filter choices.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ngx_umlo_query_int.h"


static int ngx_umlo_query_named_cmp(const void *a, const void *b);
static int ngx_umlo_query_count_cmp(const void *a, const void *b);
static json_t *ngx_umlo_query_facets_make(ngx_umlo_snap_t *snap);


json_t *
ngx_umlo_query_facets(ngx_umlo_snap_t *snap)
{
    if (snap->facets == NULL) {
        snap->facets = ngx_umlo_query_facets_make(snap);
    }

    return snap->facets;
}


static int
ngx_umlo_query_named_cmp(const void *a, const void *b)
{
    int                            c;
    const ngx_umlo_query_named_t  *x = a;
    const ngx_umlo_query_named_t  *y = b;

    c = ngx_umlo_query_strcmp(x->name, y->name);
    if (c == 0) {
        c = ngx_umlo_query_strcmp(x->id, y->id);
    }

    return c ? c : (x->index > y->index) - (x->index < y->index);
}


static int
ngx_umlo_query_count_cmp(const void *a, const void *b)
{
    const ngx_umlo_query_named_t  *x = a;
    const ngx_umlo_query_named_t  *y = b;

    if (x->users != y->users) {
        return x->users > y->users ? -1 : 1;
    }

    return ngx_umlo_query_named_cmp(a, b);
}


/*
 * One pass over the users.  Per-user stamps (the last user counted) keep
 * a user from counting twice for one site, product or key.
 */

typedef struct {
    uint32_t                 *site_users, *site_stamp;
    uint32_t                 *prod_users, *prod_bill, *prod_stamp;
    uint32_t                 *prod_key;   /* key index of each product */
    uint32_t                 *key_users, *key_bill, *key_stamp, *key_bstamp;
    uint32_t                 *group_users, *group_stamp;
    ngx_umlo_query_named_t   *named;
    const char              **keys;
    uint32_t                  nkeys;
} ngx_umlo_query_facet_t;


static void
ngx_umlo_query_facet_free(ngx_umlo_query_facet_t *f)
{
    free(f->site_users);
    free(f->site_stamp);
    free(f->prod_users);
    free(f->prod_bill);
    free(f->prod_stamp);
    free(f->prod_key);
    free(f->key_users);
    free(f->key_bill);
    free(f->key_stamp);
    free(f->key_bstamp);
    free(f->group_users);
    free(f->group_stamp);
    free(f->named);
    free(f->keys);
}


static uint32_t *
ngx_umlo_query_stamps(uint32_t n, int *failed)
{
    uint32_t  *a, i;

    a = malloc((n ? n : 1) * sizeof(uint32_t));
    if (a == NULL) {
        *failed = 1;
        return NULL;
    }

    for (i = 0; i < n; i++) {
        a[i] = NGX_UMLO_SNAP_NONE;
    }

    return a;
}


static uint32_t *
ngx_umlo_query_zeros(uint32_t n, int *failed)
{
    uint32_t  *a;

    a = calloc(n ? n : 1, sizeof(uint32_t));
    if (a == NULL) {
        *failed = 1;
    }

    return a;
}


static json_t *
ngx_umlo_query_facets_make(ngx_umlo_snap_t *snap)
{
    int                       failed, rc, f;
    json_t                   *out, *list, *item, *prods;
    uint32_t                  i, j, k, n, p, s, bits, max;
    uint32_t                  values[3][NGX_UMLO_VALUES_MAX];
    uint32_t                  roles[NGX_UMLO_ROLES_MAX];
    const char               *v;
    ngx_umlo_query_facet_t    fc;
    ngx_umlo_snap_user_t     *u;
    ngx_umlo_snap_access_t   *a;
    ngx_umlo_snap_product_t  *prod;
    static const char        *fnames[3] = { "status", "account_type",
                                            "claim" };

    memset(&fc, 0, sizeof(ngx_umlo_query_facet_t));
    memset(values, 0, sizeof(values));
    memset(roles, 0, sizeof(roles));

    failed = 0;

    /* named[] holds the sites then one site's products, or the groups */
    max = snap->nsites + snap->nproducts;
    max = snap->ngroups > max ? snap->ngroups : max;
    max = NGX_UMLO_VALUES_MAX > max ? NGX_UMLO_VALUES_MAX : max;
    max = NGX_UMLO_ROLES_MAX > max ? NGX_UMLO_ROLES_MAX : max;

    fc.site_users = ngx_umlo_query_zeros(snap->nsites, &failed);
    fc.site_stamp = ngx_umlo_query_stamps(snap->nsites, &failed);
    fc.prod_users = ngx_umlo_query_zeros(snap->nproducts, &failed);
    fc.prod_bill = ngx_umlo_query_zeros(snap->nproducts, &failed);
    fc.prod_stamp = ngx_umlo_query_stamps(snap->nproducts, &failed);
    fc.prod_key = ngx_umlo_query_stamps(snap->nproducts, &failed);
    fc.key_users = ngx_umlo_query_zeros(snap->nproducts, &failed);
    fc.key_bill = ngx_umlo_query_zeros(snap->nproducts, &failed);
    fc.key_stamp = ngx_umlo_query_stamps(snap->nproducts, &failed);
    fc.key_bstamp = ngx_umlo_query_stamps(snap->nproducts, &failed);
    fc.group_users = ngx_umlo_query_zeros(snap->ngroups, &failed);
    fc.group_stamp = ngx_umlo_query_stamps(snap->ngroups, &failed);
    fc.named = malloc(max * sizeof(ngx_umlo_query_named_t));
    fc.keys = malloc((snap->nproducts ? snap->nproducts : 1)
                     * sizeof(char *));

    if (failed || fc.named == NULL || fc.keys == NULL) {
        ngx_umlo_query_facet_free(&fc);
        return NULL;
    }

    /* the distinct product keys; a few dozen at most */
    for (p = 0; p < snap->nproducts; p++) {
        v = snap->products[p].key;
        if (v == NULL) {
            continue;
        }

        for (k = 0; k < fc.nkeys; k++) {
            if (strcmp(fc.keys[k], v) == 0) {
                break;
            }
        }

        if (k == fc.nkeys) {
            fc.keys[fc.nkeys++] = v;
        }

        fc.prod_key[p] = k;
    }

    for (i = 0; i < snap->nusers; i++) {
        u = &snap->users[i];
        bits = u->platform_roles;

        for (f = 0; f < 3; f++) {
            if (u->field[ngx_umlo_query_fields[f]] < NGX_UMLO_VALUES_MAX) {
                values[f][u->field[ngx_umlo_query_fields[f]]]++;
            }
        }

        for (j = 0; j < u->ngroups; j++) {
            if (fc.group_stamp[u->groups[j]] != i) {
                fc.group_stamp[u->groups[j]] = i;
                fc.group_users[u->groups[j]]++;
            }
        }

        for (j = 0; j < u->naccess; j++) {
            a = &u->access[j];
            bits |= a->roles;

            if (a->site != NGX_UMLO_SNAP_NONE && fc.site_stamp[a->site] != i) {
                fc.site_stamp[a->site] = i;
                fc.site_users[a->site]++;
            }

            p = a->product;
            if (p == NGX_UMLO_SNAP_NONE) {
                continue;
            }

            if (fc.prod_stamp[p] != i) {
                fc.prod_stamp[p] = i;
                fc.prod_users[p]++;
            }

            /* one entry per instance: billable counts once per user */
            fc.prod_bill[p] += a->billable;

            k = fc.prod_key[p];
            if (k == NGX_UMLO_SNAP_NONE) {
                continue;
            }

            if (fc.key_stamp[k] != i) {
                fc.key_stamp[k] = i;
                fc.key_users[k]++;
            }

            if (a->billable && fc.key_bstamp[k] != i) {
                fc.key_bstamp[k] = i;
                fc.key_bill[k]++;
            }
        }

        for (k = 0; k < NGX_UMLO_ROLES_MAX; k++) {
            roles[k] += (bits >> k) & 1;
        }
    }

    out = json_object();
    if (out == NULL) {
        ngx_umlo_query_facet_free(&fc);
        return NULL;
    }

    rc = 0;

    /* sites by host, each with its products by key */

    list = json_array();
    rc |= json_object_set_new(out, "sites", list);

    for (s = 0; s < snap->nsites; s++) {
        fc.named[s].name = snap->sites[s].host;
        fc.named[s].id = NULL;
        fc.named[s].index = s;
    }

    qsort(fc.named, snap->nsites, sizeof(ngx_umlo_query_named_t),
          ngx_umlo_query_named_cmp);

    for (i = 0; rc == 0 && i < snap->nsites; i++) {
        s = fc.named[i].index;

        prods = json_array();
        item = json_pack("{s:s,s:o,s:I,s:o}",
                         "host", snap->sites[s].host,
                         "id", ngx_umlo_query_str(snap->sites[s].cloud_id),
                         "users", (json_int_t) fc.site_users[s],
                         "products", prods);
        rc |= json_array_append_new(list, item);
        if (rc) {
            break;
        }

        /* the site's products after the sites in named[]: by key, ARI */
        n = 0;

        for (p = 0; p < snap->nproducts; p++) {
            if (snap->products[p].site == s) {
                fc.named[snap->nsites + n].name = snap->products[p].key;
                fc.named[snap->nsites + n].id = snap->products[p].ari;
                fc.named[snap->nsites + n].index = p;
                n++;
            }
        }

        qsort(fc.named + snap->nsites, n, sizeof(ngx_umlo_query_named_t),
              ngx_umlo_query_named_cmp);

        for (j = 0; rc == 0 && j < n; j++) {
            p = fc.named[snap->nsites + j].index;
            prod = &snap->products[p];

            rc |= json_array_append_new(prods,
                      json_pack("{s:o,s:o,s:s,s:I,s:I,s:o}",
                                "key", ngx_umlo_query_str(prod->key),
                                "name", ngx_umlo_query_str(prod->name),
                                "id", prod->ari,
                                "users", (json_int_t) fc.prod_users[p],
                                "billable", (json_int_t) fc.prod_bill[p],
                                "capacity",
                                prod->capacity >= 0
                                ? json_integer(prod->capacity)
                                : json_null()));
        }
    }

    /* product keys, by key */

    list = json_array();
    rc |= json_object_set_new(out, "products", list);

    for (k = 0; k < fc.nkeys; k++) {
        fc.named[k].name = fc.keys[k];
        fc.named[k].id = NULL;
        fc.named[k].index = k;
    }

    qsort(fc.named, fc.nkeys, sizeof(ngx_umlo_query_named_t),
          ngx_umlo_query_named_cmp);

    for (i = 0; rc == 0 && i < fc.nkeys; i++) {
        k = fc.named[i].index;
        rc |= json_array_append_new(list,
                  json_pack("{s:s,s:I,s:I}", "key", fc.keys[k],
                            "users", (json_int_t) fc.key_users[k],
                            "billable", (json_int_t) fc.key_bill[k]));
    }

    /* groups, by name */

    list = json_array();
    rc |= json_object_set_new(out, "groups", list);

    for (i = 0; i < snap->ngroups; i++) {
        fc.named[i].name = snap->groups[i].name;
        fc.named[i].id = snap->groups[i].id;
        fc.named[i].index = i;
    }

    qsort(fc.named, snap->ngroups, sizeof(ngx_umlo_query_named_t),
          ngx_umlo_query_named_cmp);

    for (i = 0; rc == 0 && i < snap->ngroups; i++) {
        k = fc.named[i].index;
        rc |= json_array_append_new(list,
                  json_pack("{s:s,s:o,s:I}", "id", snap->groups[k].id,
                            "name", ngx_umlo_query_str(snap->groups[k].name),
                            "users", (json_int_t) fc.group_users[k]));
    }

    /* the enumerated values, most users first */

    for (f = 0; f < 3; f++) {
        list = json_array();
        rc |= json_object_set_new(out, fnames[f], list);

        n = snap->nvalues[ngx_umlo_query_fields[f]];

        for (i = 0; i < n; i++) {
            fc.named[i].name = snap->values[ngx_umlo_query_fields[f]][i];
            fc.named[i].id = NULL;
            fc.named[i].index = i;
            fc.named[i].users = values[f][i];
        }

        qsort(fc.named, n, sizeof(ngx_umlo_query_named_t),
              ngx_umlo_query_count_cmp);

        for (i = 0; rc == 0 && i < n; i++) {
            v = fc.named[i].name;
            rc |= json_array_append_new(list,
                      json_pack("{s:o,s:I}",
                                "value", (v && v[0]) ? json_string(v)
                                                     : json_null(),
                                "users", (json_int_t) fc.named[i].users));
        }
    }

    /* roles, by name */

    list = json_array();
    rc |= json_object_set_new(out, "roles", list);

    n = snap->nroles < NGX_UMLO_ROLES_MAX ? snap->nroles : NGX_UMLO_ROLES_MAX;

    for (i = 0; i < n; i++) {
        fc.named[i].name = snap->roles[i];
        fc.named[i].id = NULL;
        fc.named[i].index = i;
    }

    qsort(fc.named, n, sizeof(ngx_umlo_query_named_t),
          ngx_umlo_query_named_cmp);

    for (i = 0; rc == 0 && i < n; i++) {
        k = fc.named[i].index;
        rc |= json_array_append_new(list,
                  json_pack("{s:s,s:I}", "role", snap->roles[k],
                            "users", (json_int_t) roles[k]));
    }

    rc |= json_object_set_new(out, "total", json_integer(snap->nusers));

    ngx_umlo_query_facet_free(&fc);

    if (rc != 0) {
        json_decref(out);
        return NULL;
    }

    return out;
}
