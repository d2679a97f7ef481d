/*
 * Copyright (C) ngx_umlo authors
 *
 * CSV export, streamed a line at a time into the caller's buffer.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ngx_umlo_query_int.h"


static const char  ngx_umlo_query_csv_header[] =
    "id,name,email,status,account_type,claim_status,billable,last_active,"
    "last_active_source,never_active,created,sites,products,groups\r\n";


static void ngx_umlo_query_csv_cell(ngx_umlo_query_t *q, const char *s,
    int last);
static void ngx_umlo_query_csv_line(ngx_umlo_query_t *q, uint32_t user);


ssize_t
ngx_umlo_query_csv(ngx_umlo_query_t *q, char *buf, size_t size)
{
    size_t  out, n;

    out = 0;

    while (out < size) {

        if (q->line_pos == q->line.len) {
            if (q->csv_next > q->total) {
                break;
            }

            q->line.len = 0;
            q->line_pos = 0;

            if (q->csv_next == 0) {
                ngx_umlo_query_role_order(q);
                ngx_umlo_query_add(&q->line, ngx_umlo_query_csv_header,
                                   sizeof(ngx_umlo_query_csv_header) - 1);

            } else {
                ngx_umlo_query_csv_line(q, q->rows[q->csv_next - 1]);
            }

            q->csv_next++;

            if (q->line.failed || q->cell.failed) {
                return -1;
            }

            continue;
        }

        n = q->line.len - q->line_pos;
        if (n > size - out) {
            n = size - out;
        }

        memcpy(buf + out, q->line.data + q->line_pos, n);
        q->line_pos += n;
        out += n;
    }

    return (ssize_t) out;
}


static void
ngx_umlo_query_csv_line(ngx_umlo_query_t *q, uint32_t user)
{
    char                     date[NGX_UMLO_ISO_LEN];
    int64_t                  at;
    uint32_t                 i, n;
    const char              *v;
    ngx_umlo_snap_t         *snap;
    ngx_umlo_query_in_t      in;
    ngx_umlo_snap_user_t    *u;
    ngx_umlo_snap_group_t   *g;
    ngx_umlo_query_entry_t  *e;

    snap = q->snap;
    u = &snap->users[user];

    ngx_umlo_query_eval(q, u, &in);

    ngx_umlo_query_csv_cell(q, u->id, 0);
    ngx_umlo_query_csv_cell(q, u->name, 0);
    ngx_umlo_query_csv_cell(q, u->email, 0);

    for (i = 0; i < 3; i++) {
        n = u->field[ngx_umlo_query_fields[i]];
        v = n < snap->nvalues[ngx_umlo_query_fields[i]]
            ? snap->values[ngx_umlo_query_fields[i]][n] : NULL;
        ngx_umlo_query_csv_cell(q, v, 0);
    }

    ngx_umlo_query_csv_cell(q, in.billable ? "true" : "false", 0);

    at = in.last ? in.last : u->created;
    if (at) {
        ngx_umlo_query_iso(at, date);
    }

    ngx_umlo_query_csv_cell(q, at ? date : NULL, 0);
    ngx_umlo_query_csv_cell(q, in.last ? "activity" : "created", 0);
    ngx_umlo_query_csv_cell(q, in.last ? "false" : "true", 0);

    if (u->created) {
        ngx_umlo_query_iso(u->created, date);
    }

    ngx_umlo_query_csv_cell(q, u->created ? date : NULL, 0);

    /* multi-valued cells: "a; b", made in q->cell then quoted */

    q->cell.len = 0;
    n = ngx_umlo_query_sites(q, u);
    if (n == (uint32_t) -1) {
        q->line.failed = 1;
        return;
    }

    for (i = 0; i < n; i++) {
        v = ((ngx_umlo_snap_site_t *) q->list[i])->host;
        ngx_umlo_query_add(&q->cell, "; ", i ? 2 : 0);
        ngx_umlo_query_add(&q->cell, v, strlen(v));
    }

    ngx_umlo_query_add(&q->cell, "", 1);
    ngx_umlo_query_csv_cell(q, q->cell.failed ? NULL : q->cell.data, 0);

    q->cell.len = 0;
    if (ngx_umlo_query_collect(q, u) != 0) {
        q->line.failed = 1;
        return;
    }

    for (i = 0; i < u->naccess; i++) {
        e = &q->entries[i];
        v = e->host ? e->host : "unknown";
        ngx_umlo_query_add(&q->cell, "; ", i ? 2 : 0);
        ngx_umlo_query_add(&q->cell, v, strlen(v));
        ngx_umlo_query_add(&q->cell, "/", 1);
        v = e->key ? e->key : "unknown";
        ngx_umlo_query_add(&q->cell, v, strlen(v));
    }

    ngx_umlo_query_add(&q->cell, "", 1);
    ngx_umlo_query_csv_cell(q, q->cell.failed ? NULL : q->cell.data, 0);

    q->cell.len = 0;
    n = ngx_umlo_query_groups(q, u);
    if (n == (uint32_t) -1) {
        q->line.failed = 1;
        return;
    }

    for (i = 0; i < n; i++) {
        g = q->list[i];
        v = g->name ? g->name : g->id;
        ngx_umlo_query_add(&q->cell, "; ", i ? 2 : 0);
        ngx_umlo_query_add(&q->cell, v, strlen(v));
    }

    ngx_umlo_query_add(&q->cell, "", 1);
    ngx_umlo_query_csv_cell(q, q->cell.failed ? NULL : q->cell.data, 1);
}


/*
 * RFC 4180: a cell with a comma, quote, CR or LF is quoted, quotes
 * doubled.  A cell a spreadsheet would take for a formula gets a leading
 * "'" first.  NULL is an empty cell.
 */

static void
ngx_umlo_query_csv_cell(ngx_umlo_query_t *q, const char *s, int last)
{
    int          quote;
    const char  *p, *dq;

    if (s == NULL) {
        s = "";
    }

    quote = (strpbrk(s, ",\"\r\n") != NULL);

    if (quote) {
        ngx_umlo_query_add(&q->line, "\"", 1);
    }

    if (strchr("=+-@\t\r", s[0]) != NULL && s[0] != '\0') {
        ngx_umlo_query_add(&q->line, "'", 1);
    }

    for (p = s; quote && (dq = strchr(p, '"')) != NULL; p = dq + 1) {
        ngx_umlo_query_add(&q->line, p, dq - p + 1);
        ngx_umlo_query_add(&q->line, "\"", 1);
    }

    ngx_umlo_query_add(&q->line, p, strlen(p));

    if (quote) {
        ngx_umlo_query_add(&q->line, "\"", 1);
    }

    ngx_umlo_query_add(&q->line, last ? "\r\n" : ",", last ? 2 : 1);
}
