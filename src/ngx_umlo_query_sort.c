/*
 * Copyright (C) ngx_umlo authors
 *
 * Orders: sorting by a context date, and the sorted lists (roles,
 * product entries, sites, groups) a row is made from.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ngx_umlo_query_int.h"


static int ngx_umlo_query_entry_cmp(const void *a, const void *b);
static int ngx_umlo_query_site_cmp(const void *a, const void *b);
static int ngx_umlo_query_group_cmp(const void *a, const void *b);
static int ngx_umlo_query_list_room(ngx_umlo_query_t *q, uint32_t n);


/*
 * By date, then by user index (the users are sorted by id): an LSD radix
 * sort of the dates, stable, over pairs gathered in index order.  Digits
 * all the pairs share, such as the high bits of any date, cost one
 * counting pass and no move.
 */

int
ngx_umlo_query_sort_pairs(ngx_umlo_query_pair_t *pairs, uint32_t n)
{
    int                     shift;
    uint32_t                i, d, sum, c;
    uint64_t                key;
    ngx_umlo_query_pair_t  *src, *dst, *t;
    uint32_t                count[NGX_UMLO_RADIX];

    if (n < 2) {
        return 0;
    }

    dst = malloc(n * sizeof(ngx_umlo_query_pair_t));
    if (dst == NULL) {
        return -1;
    }

    src = pairs;

    for (shift = 0; shift < 64; shift += NGX_UMLO_RADIX_BITS) {
        memset(count, 0, sizeof(count));

        for (i = 0; i < n; i++) {
            /* the sign bit flipped: negative dates sort first */
            key = (uint64_t) src[i].date ^ 0x8000000000000000ULL;
            count[(key >> shift) & (NGX_UMLO_RADIX - 1)]++;
        }

        key = (uint64_t) src[0].date ^ 0x8000000000000000ULL;
        if (count[(key >> shift) & (NGX_UMLO_RADIX - 1)] == n) {
            continue;
        }

        sum = 0;

        for (d = 0; d < NGX_UMLO_RADIX; d++) {
            c = count[d];
            count[d] = sum;
            sum += c;
        }

        for (i = 0; i < n; i++) {
            key = (uint64_t) src[i].date ^ 0x8000000000000000ULL;
            dst[count[(key >> shift) & (NGX_UMLO_RADIX - 1)]++] = src[i];
        }

        t = src;
        src = dst;
        dst = t;
    }

    if (src != pairs) {
        memcpy(pairs, src, n * sizeof(ngx_umlo_query_pair_t));
        dst = src;
    }

    free(dst);

    return 0;
}


/* roles are listed by name, whatever order the snapshot met them in */

void
ngx_umlo_query_role_order(ngx_umlo_query_t *q)
{
    uint8_t           r;
    uint32_t          i, j, n;
    ngx_umlo_snap_t  *snap;

    snap = q->snap;
    n = snap->nroles < NGX_UMLO_ROLES_MAX ? snap->nroles : NGX_UMLO_ROLES_MAX;

    for (i = 0; i < n; i++) {
        r = (uint8_t) i;

        for (j = i; j > 0 && strcmp(snap->roles[q->role_order[j - 1]],
                                    snap->roles[r]) > 0; j--)
        {
            q->role_order[j] = q->role_order[j - 1];
        }

        q->role_order[j] = r;
    }
}


/* the user's product entries, sorted by site, product and ARI */

int
ngx_umlo_query_collect(ngx_umlo_query_t *q, ngx_umlo_snap_user_t *u)
{
    void                     *p;
    uint32_t                  i;
    ngx_umlo_snap_t          *snap;
    ngx_umlo_query_entry_t   *e;
    ngx_umlo_snap_access_t   *a;
    ngx_umlo_snap_product_t  *prod;

    snap = q->snap;

    if (u->naccess > q->cap_entries) {
        p = realloc(q->entries, u->naccess * sizeof(ngx_umlo_query_entry_t));
        if (p == NULL) {
            return -1;
        }

        q->entries = p;
        q->cap_entries = u->naccess;
    }

    for (i = 0; i < u->naccess; i++) {
        a = &u->access[i];
        e = &q->entries[i];
        prod = (a->product != NGX_UMLO_SNAP_NONE)
               ? &snap->products[a->product] : NULL;

        e->access = a;
        e->host = (a->site != NGX_UMLO_SNAP_NONE) ? snap->sites[a->site].host
                                                  : NULL;
        e->key = prod ? prod->key : NULL;
        e->ari = prod ? prod->ari : NULL;
    }

    if (u->naccess > 1) {
        qsort(q->entries, u->naccess, sizeof(ngx_umlo_query_entry_t),
              ngx_umlo_query_entry_cmp);
    }

    return 0;
}


/* NULLs last */

int
ngx_umlo_query_strcmp(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return (a == NULL) - (b == NULL);
    }

    return strcmp(a, b);
}


static int
ngx_umlo_query_entry_cmp(const void *a, const void *b)
{
    int                            c;
    const ngx_umlo_query_entry_t  *x = a;
    const ngx_umlo_query_entry_t  *y = b;

    c = ngx_umlo_query_strcmp(x->host, y->host);
    if (c == 0) {
        c = ngx_umlo_query_strcmp(x->key, y->key);
    }

    if (c == 0) {
        c = ngx_umlo_query_strcmp(x->ari, y->ari);
    }

    return c;
}


static int
ngx_umlo_query_site_cmp(const void *a, const void *b)
{
    const ngx_umlo_snap_site_t  *x = *(ngx_umlo_snap_site_t * const *) a;
    const ngx_umlo_snap_site_t  *y = *(ngx_umlo_snap_site_t * const *) b;

    return strcmp(x->host, y->host);
}


static int
ngx_umlo_query_group_cmp(const void *a, const void *b)
{
    int                           c;
    const ngx_umlo_snap_group_t  *x = *(ngx_umlo_snap_group_t * const *) a;
    const ngx_umlo_snap_group_t  *y = *(ngx_umlo_snap_group_t * const *) b;

    c = ngx_umlo_query_strcmp(x->name, y->name);

    return c ? c : strcmp(x->id, y->id);
}


static int
ngx_umlo_query_list_room(ngx_umlo_query_t *q, uint32_t n)
{
    void  *p;

    if (n <= q->cap_list) {
        return 0;
    }

    p = realloc(q->list, n * sizeof(void *));
    if (p == NULL) {
        return -1;
    }

    q->list = p;
    q->cap_list = n;

    return 0;
}


/* the user's distinct sites, by host, into q->list; -1 on ENOMEM */

uint32_t
ngx_umlo_query_sites(ngx_umlo_query_t *q, ngx_umlo_snap_user_t *u)
{
    uint32_t               i, j, n;
    ngx_umlo_snap_site_t  *s;

    if (ngx_umlo_query_list_room(q, u->naccess) != 0) {
        return (uint32_t) -1;
    }

    n = 0;

    for (i = 0; i < u->naccess; i++) {
        if (u->access[i].site == NGX_UMLO_SNAP_NONE) {
            continue;
        }

        s = &q->snap->sites[u->access[i].site];

        for (j = 0; j < n; j++) {
            if (q->list[j] == s) {
                break;
            }
        }

        if (j == n) {
            q->list[n++] = s;
        }
    }

    if (n > 1) {
        qsort(q->list, n, sizeof(void *), ngx_umlo_query_site_cmp);
    }

    return n;
}


/* the user's groups, by name, into q->list; -1 on ENOMEM */

uint32_t
ngx_umlo_query_groups(ngx_umlo_query_t *q, ngx_umlo_snap_user_t *u)
{
    uint32_t  i;

    if (ngx_umlo_query_list_room(q, u->ngroups) != 0) {
        return (uint32_t) -1;
    }

    for (i = 0; i < u->ngroups; i++) {
        q->list[i] = &q->snap->groups[u->groups[i]];
    }

    if (u->ngroups > 1) {
        qsort(q->list, u->ngroups, sizeof(void *), ngx_umlo_query_group_cmp);
    }

    return u->ngroups;
}
