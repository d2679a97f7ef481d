/*
 * Copyright (C) ngx_umlo authors
 *
 * Filtering: the pass over the users keeping those that match, and the
 * per-user context evaluation it rests on.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ngx_umlo_query_int.h"


static const int  ngx_umlo_query_sort_order[] = {
    NGX_UMLO_ORDER_NAME, NGX_UMLO_ORDER_EMAIL, NGX_UMLO_ORDER_ACTIVE,
    NGX_UMLO_ORDER_CREATED
};

/* the query fields in the order of fmask, and their snapshot fields */
const int  ngx_umlo_query_fields[3] = {
    NGX_UMLO_F_STATUS, NGX_UMLO_F_ACCOUNT_TYPE, NGX_UMLO_F_CLAIM
};


static int ngx_umlo_query_match(ngx_umlo_query_t *q,
    ngx_umlo_snap_user_t *u, int64_t *date);
static uint8_t *ngx_umlo_query_search(ngx_umlo_query_t *q);
static int ngx_umlo_query_everyone(ngx_umlo_query_t *q);


void
ngx_umlo_query_rows_free(ngx_umlo_query_rows_t *rows)
{
    free(rows->rows);
    free(rows->dates);

    rows->rows = NULL;
    rows->dates = NULL;
    rows->n = 0;
}


int
ngx_umlo_query_filter(ngx_umlo_query_t *q, ngx_umlo_query_rows_t *out)
{
    uint8_t                *hit, *found;
    int64_t                 date, *udate;
    uint32_t                i, n, k, j, *order;
    ngx_umlo_snap_t        *snap;
    ngx_umlo_query_pair_t  *pairs;

    snap = q->snap;
    n = snap->nusers;

    out->n = 0;
    out->dates = NULL;

    out->rows = malloc((n ? n : 1) * sizeof(uint32_t));
    if (out->rows == NULL) {
        return -1;
    }

    /* inactive_days is applied by attach(): keep each row's date */
    if (q->has_inactive) {
        out->dates = malloc((n ? n : 1) * sizeof(int64_t));
        if (out->dates == NULL) {
            goto failed;
        }
    }

    if (q->nothing || n == 0) {
        return 0;
    }

    found = NULL;

    if (q->needle != NULL) {
        found = ngx_umlo_query_search(q);
        if (found == NULL) {
            goto failed;
        }
    }

    if (q->sort == NGX_UMLO_SORT_LAST_ACTIVE && q->ctx != NGX_UMLO_CTX_ORG) {

        /* the context date is the query's own: sort the matches by it */
        pairs = malloc(n * sizeof(ngx_umlo_query_pair_t));
        if (pairs == NULL) {
            free(found);
            goto failed;
        }

        k = 0;

        for (i = 0; i < n; i++) {
            if ((found == NULL || found[i])
                && ngx_umlo_query_match(q, &snap->users[i], &date))
            {
                pairs[k].date = date;
                pairs[k].user = i;
                k++;
            }
        }

        free(found);

        if (ngx_umlo_query_sort_pairs(pairs, k) != 0) {
            free(pairs);
            goto failed;
        }

        for (i = 0; i < k; i++) {
            j = q->desc ? k - 1 - i : i;
            out->rows[i] = pairs[j].user;

            if (out->dates) {
                out->dates[i] = pairs[j].date;
            }
        }

        out->n = k;
        free(pairs);

        return 0;
    }

    if (found == NULL && ngx_umlo_query_everyone(q)) {

        /* nothing to filter: the rows are the sort order itself */
        order = snap->order[ngx_umlo_query_sort_order[q->sort]];

        if (!q->desc) {
            memcpy(out->rows, order, n * sizeof(uint32_t));

        } else {
            for (i = 0; i < n; i++) {
                out->rows[i] = order[n - 1 - i];
            }
        }

        out->n = n;

        return 0;
    }

    /*
     * Filtered in memory order, then read in the sort order: the users
     * are visited one after the other rather than in the order's random
     * jumps, and only the byte map is read at random.
     */
    hit = malloc(n);
    if (hit == NULL) {
        free(found);
        goto failed;
    }

    udate = NULL;

    if (q->has_inactive) {
        udate = malloc(n * sizeof(int64_t));
        if (udate == NULL) {
            free(hit);
            free(found);
            goto failed;
        }
    }

    for (i = 0; i < n; i++) {
        hit[i] = (found == NULL || found[i])
                 && ngx_umlo_query_match(q, &snap->users[i], &date);

        if (udate && hit[i]) {
            udate[i] = date;
        }
    }

    free(found);

    order = snap->order[ngx_umlo_query_sort_order[q->sort]];
    k = 0;

    for (i = 0; i < n; i++) {
        j = order[q->desc ? n - 1 - i : i];

        if (hit[j]) {
            if (udate) {
                out->dates[k] = udate[j];
            }

            out->rows[k++] = j;
        }
    }

    out->n = k;
    free(hit);
    free(udate);

    return 0;

failed:

    ngx_umlo_query_rows_free(out);

    return -1;
}


/*
 * The rows of the query from its filtered list: all of them, or those
 * inactive since q->inactive_at.  Sorted by the same date, these are one
 * run of the list, found by bisection; otherwise a copy.
 */

int
ngx_umlo_query_attach(ngx_umlo_query_t *q, const ngx_umlo_query_rows_t *rows,
    ngx_umlo_query_err_t *err)
{
    int       inside;
    uint32_t  i, k, lo, hi, mid;

    if (ngx_umlo_query_check(q, err) != 0) {
        return -1;
    }

    free(q->copy);
    q->copy = NULL;

    if (!q->has_inactive || rows->dates == NULL || rows->n == 0) {
        q->rows = rows->rows;
        q->total = rows->n;
        return 0;
    }

    if (q->sort == NGX_UMLO_SORT_LAST_ACTIVE) {

        /* ascending: a prefix is old enough; descending: a suffix */
        lo = 0;
        hi = rows->n;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;
            inside = (rows->dates[mid] <= q->inactive_at);

            if (inside == (int) q->desc) {
                hi = mid;

            } else {
                lo = mid + 1;
            }
        }

        if (q->desc) {
            q->rows = rows->rows + lo;
            q->total = rows->n - lo;

        } else {
            q->rows = rows->rows;
            q->total = lo;
        }

        return 0;
    }

    q->copy = malloc(rows->n * sizeof(uint32_t));
    if (q->copy == NULL) {
        ngx_umlo_query_nomem(err);
        return -1;
    }

    k = 0;

    for (i = 0; i < rows->n; i++) {
        if (rows->dates[i] <= q->inactive_at) {
            q->copy[k++] = rows->rows[i];
        }
    }

    q->rows = q->copy;
    q->total = k;

    return 0;
}


/* the latest activity, roles and billable flag of the context entries */

void
ngx_umlo_query_eval(ngx_umlo_query_t *q, ngx_umlo_snap_user_t *u,
    ngx_umlo_query_in_t *in)
{
    uint32_t                 i;
    ngx_umlo_snap_access_t  *a;

    in->last = 0;
    in->roles = 0;
    in->entries = 0;
    in->billable = 0;

    for (i = 0; i < u->naccess; i++) {
        a = &u->access[i];

        switch (q->ctx) {

        case NGX_UMLO_CTX_SITE:
            if (a->site != q->site) {
                continue;
            }
            break;

        case NGX_UMLO_CTX_SITE_PRODUCT:
            if (a->site != q->site) {
                continue;
            }

            /* fall through */

        case NGX_UMLO_CTX_PRODUCT:
            if (a->product == NGX_UMLO_SNAP_NONE || !q->pmatch[a->product]) {
                continue;
            }
            break;

        default:
            break;
        }

        in->entries++;
        in->roles |= a->roles;
        in->billable |= a->billable;

        if (a->last_active > in->last) {
            in->last = a->last_active;
        }
    }

    if (q->ctx == NGX_UMLO_CTX_ORG) {
        in->last = u->last_active;
    }
}


/*
 * 1 when no filter can drop a user: every user matches (see
 * ngx_umlo_query_match()) and no row needs its date, so the filter pass
 * can be skipped.  The search is checked by the caller.
 */

static int
ngx_umlo_query_everyone(ngx_umlo_query_t *q)
{
    return q->ctx == NGX_UMLO_CTX_ORG
           && !q->need_access
           && !q->has_inactive
           && !q->has_after
           && !q->has_before
           && q->groups == NULL
           && q->never == -1
           && (q->fmask[0] | q->fmask[1] | q->fmask[2]) == 0;
}


/* 1 when the user matches every filter; *date: the context date */

static int
ngx_umlo_query_match(ngx_umlo_query_t *q, ngx_umlo_snap_user_t *u,
    int64_t *date)
{
    int                  f;
    uint32_t             i;
    ngx_umlo_query_in_t  in;

    for (f = 0; f < 3; f++) {
        if (q->fmask[f] != 0
            && (u->field[ngx_umlo_query_fields[f]] >= 32
                || !(q->fmask[f] & (1u << u->field[ngx_umlo_query_fields[f]]))))
        {
            return 0;
        }
    }

    if (q->has_after || q->has_before) {
        if (u->created == 0
            || (q->has_after && u->created < q->after)
            || (q->has_before && u->created >= q->before))
        {
            return 0;
        }
    }

    if (q->groups != NULL) {
        for (i = 0; i < u->ngroups; i++) {
            if (q->groups[u->groups[i]]) {
                break;
            }
        }

        if (i == u->ngroups) {
            return 0;
        }
    }

    if (q->ctx != NGX_UMLO_CTX_ORG || q->need_access) {
        ngx_umlo_query_eval(q, u, &in);

        if (q->ctx != NGX_UMLO_CTX_ORG && in.entries == 0) {
            return 0;
        }

        if (q->billable != -1 && (int) in.billable != q->billable) {
            return 0;
        }

        if (q->roles != 0 && !((in.roles | u->platform_roles) & q->roles)) {
            return 0;
        }

    } else {
        in.last = u->last_active;
    }

    *date = in.last ? in.last : u->created;

    if (q->never != -1 && (in.last == 0) != q->never) {
        return 0;
    }

    /* q: ngx_umlo_query_search() chose the users before */

    return 1;
}


/*
 * The users whose fold contains the needle, as a byte per user: one
 * memmem() over all the folds from each match on, instead of a strstr()
 * per user, whose setup cost more than the search of a short text.
 */

static uint8_t *
ngx_umlo_query_search(ngx_umlo_query_t *q)
{
    char             *p, *end;
    size_t            len;
    uint8_t          *found;
    uint32_t          lo, hi, mid;
    ngx_umlo_snap_t  *snap;

    snap = q->snap;

    found = calloc(snap->nusers ? snap->nusers : 1, 1);
    if (found == NULL) {
        return NULL;
    }

    len = strlen(q->needle);
    p = snap->folds;
    end = snap->folds + snap->fold_at[snap->nusers];
    lo = 0;

    while (p < end) {
        p = memmem(p, end - p, q->needle, len);
        if (p == NULL) {
            break;
        }

        /* the user whose text holds p: the last start at or before it */
        hi = snap->nusers;

        while (hi - lo > 1) {
            mid = lo + (hi - lo) / 2;

            if (snap->fold_at[mid] <= (uint32_t) (p - snap->folds)) {
                lo = mid;

            } else {
                hi = mid;
            }
        }

        found[lo] = 1;
        p = snap->folds + snap->fold_at[lo + 1];
    }

    return found;
}
