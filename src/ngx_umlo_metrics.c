/*
 * Copyright (C) ngx_umlo authors
 *
 * Dashboard metrics: see ngx_umlo_metrics.h.  The context rule of the
 * user browser applies: a user's date on a product is the last activity
 * there, or the created date when never active there.
 */


#define _GNU_SOURCE

#include "ngx_umlo_metrics.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>


#define NGX_UMLO_DAY_MS  (24LL * 60 * 60 * 1000)


static const int  ngx_umlo_windows[] = { 30, 60, 90, 180 };

#define NGX_UMLO_NWINDOWS  (sizeof(ngx_umlo_windows) / sizeof(int))


typedef struct {
    uint64_t  billable;
    uint64_t  users;                  /* with a role or activity */
    uint64_t  inactive[NGX_UMLO_NWINDOWS];
    uint64_t  never_active;           /* billable, never used it */
} ngx_umlo_metrics_product_t;


static json_t *ngx_umlo_metrics_values(ngx_umlo_snap_t *snap, int field);
static json_t *ngx_umlo_metrics_windows(const uint64_t *counts);
static int ngx_umlo_metrics_by_host(const void *a, const void *b,
    void *data);


json_t *
ngx_umlo_metrics_build(ngx_umlo_snap_t *snap, int64_t now_ms)
{
    int                          billable;
    int64_t                      date;
    uint32_t                     i, k, w;
    uint64_t                     never, waste, billable_users;
    uint64_t                     inactive[NGX_UMLO_NWINDOWS];
    json_t                      *out, *sites, *site, *product;
    ngx_umlo_snap_user_t        *u;
    ngx_umlo_snap_access_t      *a;
    ngx_umlo_snap_product_t     *p;
    ngx_umlo_metrics_product_t  *pm;

    pm = calloc(snap->nproducts ? snap->nproducts : 1,
                sizeof(ngx_umlo_metrics_product_t));
    if (pm == NULL) {
        return NULL;
    }

    never = 0;
    waste = 0;
    billable_users = 0;
    memset(inactive, 0, sizeof(inactive));

    for (i = 0; i < snap->nusers; i++) {
        u = &snap->users[i];

        if (u->last_active == 0) {
            never++;
        }

        billable = 0;

        for (k = 0; k < u->naccess; k++) {
            a = &u->access[k];

            if (a->product == NGX_UMLO_SNAP_NONE) {
                continue;
            }

            pm[a->product].users++;

            if (!a->billable) {
                continue;
            }

            billable = 1;
            pm[a->product].billable++;

            if (a->last_active == 0) {
                pm[a->product].never_active++;
            }

            date = a->last_active ? a->last_active : u->created;

            for (w = 0; w < NGX_UMLO_NWINDOWS; w++) {
                if (date <= now_ms - ngx_umlo_windows[w] * NGX_UMLO_DAY_MS) {
                    pm[a->product].inactive[w]++;
                }
            }
        }

        if (!billable) {
            continue;
        }

        billable_users++;
        date = u->last_active ? u->last_active : u->created;

        for (w = 0; w < NGX_UMLO_NWINDOWS; w++) {
            if (date <= now_ms - ngx_umlo_windows[w] * NGX_UMLO_DAY_MS) {
                inactive[w]++;
            }
        }

        if (date <= now_ms - NGX_UMLO_WASTE_DAYS * NGX_UMLO_DAY_MS) {
            waste++;
        }
    }

    sites = json_object();

    for (i = 0; sites != NULL && i < snap->nproducts; i++) {
        p = &snap->products[i];

        site = json_object_get(sites, snap->sites[p->site].host);
        if (site == NULL) {
            site = json_pack("{s:s,s:s?,s:[]}",
                             "host", snap->sites[p->site].host,
                             "id", snap->sites[p->site].cloud_id,
                             "products");
            json_object_set_new(sites, snap->sites[p->site].host, site);
        }

        product = json_pack("{s:s?,s:s?,s:s,s:I,s:I,s:o,s:o,s:o,s:I}",
                            "product", p->key,
                            "name", p->name,
                            "id", p->ari,
                            "users", (json_int_t) pm[i].users,
                            "billable", (json_int_t) pm[i].billable,
                            "capacity", p->capacity >= 0
                                        ? json_integer(p->capacity)
                                        : json_null(),
                            "utilisation_percent",
                            p->capacity > 0
                            ? json_real((double) (pm[i].billable * 1000
                                                  / p->capacity) / 10)
                            : json_null(),
                            "inactive_billable",
                            ngx_umlo_metrics_windows(pm[i].inactive),
                            "never_active_billable",
                            (json_int_t) pm[i].never_active);

        json_array_append_new(json_object_get(site, "products"), product);
    }

    free(pm);

    /* sites as an array, in host order */
    {
        json_t    *list, *s;
        uint32_t  *order;

        list = json_array();
        order = malloc((snap->nsites ? snap->nsites : 1) * sizeof(uint32_t));

        if (list != NULL && order != NULL) {
            for (i = 0; i < snap->nsites; i++) {
                order[i] = i;
            }

            qsort_r(order, snap->nsites, sizeof(uint32_t),
                    ngx_umlo_metrics_by_host, snap);

            for (i = 0; i < snap->nsites; i++) {
                s = json_object_get(sites, snap->sites[order[i]].host);
                if (s != NULL) {
                    json_array_append(list, s);
                }
            }
        }

        free(order);
        json_decref(sites);
        sites = list;
    }

    out = json_pack("{s:I,s:I,s:I,s:o,s:I,s:i,s:o,s:o,s:o,s:o,s:o,s:s?,"
                    "s:s?,s:s?,s:I}",
                    "generation", (json_int_t) snap->gen,
                    "users", (json_int_t) snap->nusers,
                    "billable_users", (json_int_t) billable_users,
                    "inactive_billable",
                    ngx_umlo_metrics_windows(inactive),
                    "licence_waste", (json_int_t) waste,
                    "licence_waste_days", NGX_UMLO_WASTE_DAYS,
                    "never_active", json_integer(never),
                    "by_status",
                    ngx_umlo_metrics_values(snap, NGX_UMLO_F_STATUS),
                    "by_account_type",
                    ngx_umlo_metrics_values(snap, NGX_UMLO_F_ACCOUNT_TYPE),
                    "by_claim",
                    ngx_umlo_metrics_values(snap, NGX_UMLO_F_CLAIM),
                    "sites", sites ? sites : json_array(),
                    "sync_id", snap->sync_id,
                    "data_as_of", snap->data_as_of,
                    "activity_as_of", snap->activity_as_of,
                    "computed_at", (json_int_t) (now_ms / 1000));

    return out;
}


static json_t *
ngx_umlo_metrics_values(ngx_umlo_snap_t *snap, int field)
{
    uint32_t   i, counts[NGX_UMLO_VALUES_MAX];
    json_t    *out;

    memset(counts, 0, sizeof(counts));

    for (i = 0; i < snap->nusers; i++) {
        counts[snap->users[i].field[field]]++;
    }

    out = json_object();

    for (i = 0; out != NULL && i < snap->nvalues[field]; i++) {
        /* "" stands for a missing value */
        json_object_set_new(out, snap->values[field][i][0]
                                 ? snap->values[field][i] : "unknown",
                            json_integer(counts[i]));
    }

    return out;
}


static json_t *
ngx_umlo_metrics_windows(const uint64_t *counts)
{
    json_t    *out;
    char       key[16];
    unsigned   w;

    out = json_object();

    for (w = 0; out != NULL && w < NGX_UMLO_NWINDOWS; w++) {
        snprintf(key, sizeof(key), "%d", ngx_umlo_windows[w]);
        json_object_set_new(out, key, json_integer(counts[w]));
    }

    return out;
}


static int
ngx_umlo_metrics_by_host(const void *a, const void *b, void *data)
{
    ngx_umlo_snap_t  *snap = data;

    return strcmp(snap->sites[*(const uint32_t *) a].host,
                  snap->sites[*(const uint32_t *) b].host);
}
