/*
 * Copyright (C) ngx_umlo authors
 *
 * A row as a jansson object, and the time formatting shared by the
 * JSON and text writers.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ngx_umlo_query_int.h"


static json_t *ngx_umlo_query_roles_json(ngx_umlo_query_t *q,
    uint32_t bits);
static json_t *ngx_umlo_query_value(ngx_umlo_snap_t *snap, int field,
    ngx_umlo_snap_user_t *u);
static json_t *ngx_umlo_query_time(int64_t ms);
static void ngx_umlo_query_digits(char *p, int64_t v, int n);


json_t *
ngx_umlo_query_row_json(ngx_umlo_query_t *q, uint32_t user)
{
    int                      rc;
    json_t                  *row, *list, *item, *last;
    uint32_t                 i, n;
    ngx_umlo_snap_t         *snap;
    ngx_umlo_query_in_t      in;
    ngx_umlo_snap_user_t    *u;
    ngx_umlo_snap_group_t   *g;
    ngx_umlo_query_entry_t  *e;

    snap = q->snap;
    u = &snap->users[user];

    ngx_umlo_query_eval(q, u, &in);

    row = json_object();
    if (row == NULL) {
        return NULL;
    }

    rc = 0;
    rc |= json_object_set_new(row, "id", json_string(u->id));
    rc |= json_object_set_new(row, "name", ngx_umlo_query_str(u->name));
    rc |= json_object_set_new(row, "email", ngx_umlo_query_str(u->email));
    rc |= json_object_set_new(row, "avatar", ngx_umlo_query_str(u->avatar));
    rc |= json_object_set_new(row, "status",
                              ngx_umlo_query_value(snap, NGX_UMLO_F_STATUS,
                                                   u));
    rc |= json_object_set_new(row, "account_type",
                              ngx_umlo_query_value(snap,
                                                   NGX_UMLO_F_ACCOUNT_TYPE,
                                                   u));
    rc |= json_object_set_new(row, "claim_status",
                              ngx_umlo_query_value(snap, NGX_UMLO_F_CLAIM, u));
    rc |= json_object_set_new(row, "account_status",
                              ngx_umlo_query_value(snap,
                                                   NGX_UMLO_F_ACCOUNT_STATUS,
                                                   u));
    rc |= json_object_set_new(row, "membership_status",
                              ngx_umlo_query_value(snap, NGX_UMLO_F_MEMBERSHIP,
                                                   u));
    rc |= json_object_set_new(row, "created", ngx_umlo_query_time(u->created));
    rc |= json_object_set_new(row, "billable", json_boolean(in.billable));
    rc |= json_object_set_new(row, "platform_roles",
                              ngx_umlo_query_roles_json(q, u->platform_roles));

    /* sites */

    list = json_array();
    rc |= json_object_set_new(row, "sites", list);

    n = ngx_umlo_query_sites(q, u);
    rc |= (n == (uint32_t) -1);

    for (i = 0; rc == 0 && i < n; i++) {
        rc |= json_array_append_new(list, json_string(
                         ((ngx_umlo_snap_site_t *) q->list[i])->host));
    }

    /* products */

    list = json_array();
    rc |= json_object_set_new(row, "products", list);
    rc |= (rc == 0 && ngx_umlo_query_collect(q, u) != 0);

    for (i = 0; rc == 0 && i < u->naccess; i++) {
        e = &q->entries[i];

        item = json_object();
        rc |= json_array_append_new(list, item);
        if (rc) {
            break;
        }

        rc |= json_object_set_new(item, "site", ngx_umlo_query_str(e->host));
        rc |= json_object_set_new(item, "product",
                                  ngx_umlo_query_str(e->key));
        rc |= json_object_set_new(item, "roles",
                                  ngx_umlo_query_roles_json(q,
                                                            e->access->roles));
        rc |= json_object_set_new(item, "billable",
                                  json_boolean(e->access->billable));
        rc |= json_object_set_new(item, "last_active",
                                  ngx_umlo_query_time(e->access->last_active));
    }

    /* groups */

    list = json_array();
    rc |= json_object_set_new(row, "groups", list);

    n = (rc == 0) ? ngx_umlo_query_groups(q, u) : 0;
    rc |= (n == (uint32_t) -1);

    for (i = 0; rc == 0 && i < n; i++) {
        g = q->list[i];
        rc |= json_array_append_new(list,
                                    json_pack("{s:s,s:o}", "id", g->id,
                                              "name",
                                              ngx_umlo_query_str(g->name)));
    }

    /* last active, by the context rule */

    last = json_object();
    rc |= json_object_set_new(row, "last_active", last);

    if (rc == 0) {
        rc |= json_object_set_new(last, "at",
                                  ngx_umlo_query_time(in.last ? in.last
                                                              : u->created));
        rc |= json_object_set_new(last, "context", json_string(q->ctx_name));
        rc |= json_object_set_new(last, "source",
                                  json_string(in.last ? "activity"
                                                      : "created"));
    }

    rc |= json_object_set_new(row, "never_active", json_boolean(!in.last));

    if (rc != 0) {
        json_decref(row);
        return NULL;
    }

    return row;
}


static json_t *
ngx_umlo_query_roles_json(ngx_umlo_query_t *q, uint32_t bits)
{
    int        rc;
    json_t    *list;
    uint32_t   i, n, r;

    list = json_array();
    if (list == NULL) {
        return NULL;
    }

    rc = 0;
    n = q->snap->nroles < 32 ? q->snap->nroles : 32;

    for (i = 0; i < n; i++) {
        r = q->role_order[i];

        if (bits & (1u << r)) {
            rc |= json_array_append_new(list,
                                        json_string(q->snap->roles[r]));
        }
    }

    if (rc != 0) {
        json_decref(list);
        return NULL;
    }

    return list;
}


json_t *
ngx_umlo_query_str(const char *s)
{
    return s ? json_string(s) : json_null();
}


/* "" in a value table stands for null */

static json_t *
ngx_umlo_query_value(ngx_umlo_snap_t *snap, int field,
    ngx_umlo_snap_user_t *u)
{
    const char  *v;

    v = (u->field[field] < snap->nvalues[field])
        ? snap->values[field][u->field[field]] : NULL;

    return (v && v[0]) ? json_string(v) : json_null();
}


static json_t *
ngx_umlo_query_time(int64_t ms)
{
    char  buf[NGX_UMLO_ISO_LEN];

    if (ms == 0) {
        return json_null();
    }

    ngx_umlo_query_iso(ms, buf);

    return json_string(buf);
}


/* 2026-05-12T23:29:41.740Z, from a civil date of days since 1970 */

void
ngx_umlo_query_iso(int64_t ms, char *buf)
{
    int64_t  days, rem, z, era, doe, yoe, doy, mp, y, m, d;

    days = ms / NGX_UMLO_DAY_MS;
    rem = ms % NGX_UMLO_DAY_MS;

    if (rem < 0) {
        rem += NGX_UMLO_DAY_MS;
        days--;
    }

    /* 400-year eras of 146097 days, counted from 0000-03-01 */
    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = yoe + era * 400 + (m <= 2);

    if (y < 0 || y > 9999) {
        snprintf(buf, NGX_UMLO_ISO_LEN,
                 "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 (long long) y, (int) m, (int) d, (int) (rem / 3600000),
                 (int) (rem / 60000 % 60), (int) (rem / 1000 % 60),
                 (int) (rem % 1000));
        return;
    }

    /* by hand: snprintf() was a tenth of the time of a page */
    ngx_umlo_query_digits(buf, y, 4);
    buf[4] = '-';
    ngx_umlo_query_digits(buf + 5, m, 2);
    buf[7] = '-';
    ngx_umlo_query_digits(buf + 8, d, 2);
    buf[10] = 'T';
    ngx_umlo_query_digits(buf + 11, rem / 3600000, 2);
    buf[13] = ':';
    ngx_umlo_query_digits(buf + 14, rem / 60000 % 60, 2);
    buf[16] = ':';
    ngx_umlo_query_digits(buf + 17, rem / 1000 % 60, 2);
    buf[19] = '.';
    ngx_umlo_query_digits(buf + 20, rem % 1000, 3);
    buf[23] = 'Z';
    buf[24] = '\0';
}


static void
ngx_umlo_query_digits(char *p, int64_t v, int n)
{
    while (n-- > 0) {
        p[n] = (char) ('0' + v % 10);
        v /= 10;
    }
}
