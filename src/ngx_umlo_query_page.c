/*
 * Copyright (C) ngx_umlo authors
 *
 * Pages: the page object, as jansson JSON or as text written directly,
 * and single rows.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ngx_umlo_query_int.h"


static void ngx_umlo_query_row_text(ngx_umlo_query_t *q, uint32_t user,
    ngx_umlo_query_buf_t *b);
static void ngx_umlo_query_roles_text(ngx_umlo_query_t *q, uint32_t bits,
    ngx_umlo_query_buf_t *b);


json_t *
ngx_umlo_query_page(ngx_umlo_query_t *q)
{
    int               rc;
    json_t           *page, *data, *links, *meta;
    uint32_t          i, from, to;
    ngx_umlo_snap_t  *snap;

    snap = q->snap;

    from = q->offset < q->total ? q->offset : q->total;
    to = (q->total - from > q->limit) ? from + q->limit : q->total;

    page = json_object();
    data = json_array();
    links = json_object();
    meta = json_object();

    rc = (page == NULL || data == NULL || links == NULL || meta == NULL);

    rc |= json_object_set(page, "data", data);
    rc |= json_object_set(page, "links", links);
    rc |= json_object_set(page, "meta", meta);

    rc |= json_object_set_new(links, "next",
                              to < q->total ? ngx_umlo_query_next(q, to)
                                            : json_null());

    rc |= json_object_set_new(meta, "total", json_integer(q->total));
    rc |= json_object_set_new(meta, "limit", json_integer(q->limit));
    rc |= json_object_set_new(meta, "data_as_of",
                              ngx_umlo_query_str(snap->data_as_of));
    rc |= json_object_set_new(meta, "activity_as_of",
                              ngx_umlo_query_str(snap->activity_as_of));
    rc |= json_object_set_new(meta, "sync_id",
                              ngx_umlo_query_str(snap->sync_id));
    rc |= json_object_set_new(meta, "generation", json_integer(snap->gen));
    rc |= json_object_set_new(meta, "context", json_string(q->ctx_name));

    ngx_umlo_query_role_order(q);

    for (i = from; rc == 0 && i < to; i++) {
        rc |= json_array_append_new(data,
                                    ngx_umlo_query_row_json(q, q->rows[i]));
    }

    json_decref(data);
    json_decref(links);
    json_decref(meta);

    if (rc != 0) {
        json_decref(page);
        return NULL;
    }

    return page;
}


/*
 * The page as compact JSON text, written directly: the same document as
 * ngx_umlo_query_page() and json_dumps(JSON_COMPACT), without building
 * a tree of a few thousand values per page.
 */

char *
ngx_umlo_query_page_text(ngx_umlo_query_t *q, size_t *len)
{
    char                   cursor[NGX_UMLO_CURSOR_CHARS + 1];
    uint32_t               i, from, to;
    ngx_umlo_snap_t       *snap;
    ngx_umlo_query_buf_t   b;

    snap = q->snap;

    from = q->offset < q->total ? q->offset : q->total;
    to = (q->total - from > q->limit) ? from + q->limit : q->total;

    memset(&b, 0, sizeof(ngx_umlo_query_buf_t));

    /* rows are about 2.5 KB: one allocation for most pages */
    ngx_umlo_query_room(&b, 1024 + (size_t) (to - from) * 3072);

    ngx_umlo_query_lit(&b, "{\"data\":[");

    ngx_umlo_query_role_order(q);

    for (i = from; i < to && !b.failed; i++) {
        if (i > from) {
            ngx_umlo_query_lit(&b, ",");
        }

        ngx_umlo_query_row_text(q, q->rows[i], &b);
    }

    ngx_umlo_query_lit(&b, "],\"links\":{\"next\":");

    if (to < q->total) {
        ngx_umlo_query_cursor_text(q, to, cursor);
        ngx_umlo_query_jstr(&b, cursor);

    } else {
        ngx_umlo_query_lit(&b, "null");
    }

    ngx_umlo_query_lit(&b, "},\"meta\":{\"total\":");
    ngx_umlo_query_int(&b, q->total);
    ngx_umlo_query_lit(&b, ",\"limit\":");
    ngx_umlo_query_int(&b, q->limit);
    ngx_umlo_query_lit(&b, ",\"data_as_of\":");
    ngx_umlo_query_jstr(&b, snap->data_as_of);
    ngx_umlo_query_lit(&b, ",\"activity_as_of\":");
    ngx_umlo_query_jstr(&b, snap->activity_as_of);
    ngx_umlo_query_lit(&b, ",\"sync_id\":");
    ngx_umlo_query_jstr(&b, snap->sync_id);
    ngx_umlo_query_lit(&b, ",\"generation\":");
    ngx_umlo_query_int(&b, snap->gen);
    ngx_umlo_query_lit(&b, ",\"context\":");
    ngx_umlo_query_jstr(&b, q->ctx_name);
    ngx_umlo_query_lit(&b, "}}");

    if (b.failed) {
        free(b.data);
        return NULL;
    }

    *len = b.len;

    return b.data;
}


/* one row, as ngx_umlo_query_row_json() makes it */

static void
ngx_umlo_query_row_text(ngx_umlo_query_t *q, uint32_t user,
    ngx_umlo_query_buf_t *b)
{
    int                      f;
    uint32_t                 i, n;
    ngx_umlo_snap_t         *snap;
    ngx_umlo_query_in_t      in;
    ngx_umlo_snap_user_t    *u;
    ngx_umlo_snap_group_t   *g;
    ngx_umlo_query_entry_t  *e;
    static const char       *names[] = {
        ",\"status\":", ",\"account_type\":", ",\"claim_status\":",
        ",\"account_status\":", ",\"membership_status\":"
    };
    static const int         fields[] = {
        NGX_UMLO_F_STATUS, NGX_UMLO_F_ACCOUNT_TYPE, NGX_UMLO_F_CLAIM,
        NGX_UMLO_F_ACCOUNT_STATUS, NGX_UMLO_F_MEMBERSHIP
    };

    snap = q->snap;
    u = &snap->users[user];

    ngx_umlo_query_eval(q, u, &in);

    ngx_umlo_query_lit(b, "{\"id\":");
    ngx_umlo_query_jstr(b, u->id);
    ngx_umlo_query_lit(b, ",\"name\":");
    ngx_umlo_query_jstr(b, u->name);
    ngx_umlo_query_lit(b, ",\"email\":");
    ngx_umlo_query_jstr(b, u->email);
    ngx_umlo_query_lit(b, ",\"avatar\":");
    ngx_umlo_query_jstr(b, u->avatar);

    for (f = 0; f < 5; f++) {
        ngx_umlo_query_add(b, names[f], strlen(names[f]));
        n = u->field[fields[f]];
        ngx_umlo_query_jstr(b, (n < snap->nvalues[fields[f]]
                                && snap->values[fields[f]][n][0])
                               ? snap->values[fields[f]][n] : NULL);
    }

    ngx_umlo_query_lit(b, ",\"created\":");
    ngx_umlo_query_jtime(b, u->created);
    ngx_umlo_query_cstr(b, in.billable ? ",\"billable\":true"
                                      : ",\"billable\":false");
    ngx_umlo_query_lit(b, ",\"platform_roles\":");
    ngx_umlo_query_roles_text(q, u->platform_roles, b);

    ngx_umlo_query_lit(b, ",\"sites\":[");

    n = ngx_umlo_query_sites(q, u);
    if (n == (uint32_t) -1) {
        b->failed = 1;
        return;
    }

    for (i = 0; i < n; i++) {
        ngx_umlo_query_cstr(b, i ? ",\"" : "\"");
        ngx_umlo_query_esc(b, ((ngx_umlo_snap_site_t *) q->list[i])->host);
        ngx_umlo_query_lit(b, "\"");
    }

    ngx_umlo_query_lit(b, "],\"products\":[");

    if (ngx_umlo_query_collect(q, u) != 0) {
        b->failed = 1;
        return;
    }

    for (i = 0; i < u->naccess; i++) {
        e = &q->entries[i];

        ngx_umlo_query_cstr(b, i ? ",{\"site\":" : "{\"site\":");
        ngx_umlo_query_jstr(b, e->host);
        ngx_umlo_query_lit(b, ",\"product\":");
        ngx_umlo_query_jstr(b, e->key);
        ngx_umlo_query_lit(b, ",\"roles\":");
        ngx_umlo_query_roles_text(q, e->access->roles, b);
        ngx_umlo_query_cstr(b, e->access->billable ? ",\"billable\":true"
                                                  : ",\"billable\":false");
        ngx_umlo_query_lit(b, ",\"last_active\":");
        ngx_umlo_query_jtime(b, e->access->last_active);
        ngx_umlo_query_lit(b, "}");
    }

    ngx_umlo_query_lit(b, "],\"groups\":[");

    n = ngx_umlo_query_groups(q, u);
    if (n == (uint32_t) -1) {
        b->failed = 1;
        return;
    }

    for (i = 0; i < n; i++) {
        g = q->list[i];

        ngx_umlo_query_cstr(b, i ? ",{\"id\":\"" : "{\"id\":\"");
        ngx_umlo_query_esc(b, g->id);
        ngx_umlo_query_lit(b, "\",\"name\":");
        ngx_umlo_query_jstr(b, g->name);
        ngx_umlo_query_lit(b, "}");
    }

    ngx_umlo_query_lit(b, "],\"last_active\":{\"at\":");
    ngx_umlo_query_jtime(b, in.last ? in.last : u->created);
    ngx_umlo_query_lit(b, ",\"context\":");
    ngx_umlo_query_jstr(b, q->ctx_name);
    ngx_umlo_query_cstr(b, in.last ? ",\"source\":\"activity\"}"
                                    ",\"never_active\":false}"
                                  : ",\"source\":\"created\"}"
                                    ",\"never_active\":true}");
}


static void
ngx_umlo_query_roles_text(ngx_umlo_query_t *q, uint32_t bits,
    ngx_umlo_query_buf_t *b)
{
    int       first;
    uint32_t  i, n, r;

    ngx_umlo_query_lit(b, "[");

    first = 1;
    n = q->snap->nroles < 32 ? q->snap->nroles : 32;

    for (i = 0; bits && i < n; i++) {
        r = q->role_order[i];

        if (bits & (1u << r)) {
            ngx_umlo_query_cstr(b, first ? "\"" : ",\"");
            ngx_umlo_query_esc(b, q->snap->roles[r]);
            ngx_umlo_query_lit(b, "\"");
            first = 0;
        }
    }

    ngx_umlo_query_lit(b, "]");
}


json_t *
ngx_umlo_query_row(ngx_umlo_snap_t *snap, uint32_t user)
{
    json_t            *row;
    ngx_umlo_query_t  *q;

    if (user >= snap->nusers) {
        return NULL;
    }

    q = calloc(1, sizeof(ngx_umlo_query_t));
    if (q == NULL) {
        return NULL;
    }

    q->snap = snap;
    q->ctx = NGX_UMLO_CTX_ORG;
    q->site = NGX_UMLO_SNAP_NONE;
    q->ctx_name = strdup("org");

    row = NULL;

    if (q->ctx_name != NULL) {
        ngx_umlo_query_role_order(q);
        row = ngx_umlo_query_row_json(q, user);
    }

    ngx_umlo_query_free(q);

    return row;
}
