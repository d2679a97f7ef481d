/*
 * Copyright (C) ngx_umlo authors
 *
 * The user browser's query engine: filters, sorts and pages the users of
 * one snapshot (ngx_umlo_snapshot.h) for GET .../users, and streams them
 * as CSV.  Plain C with jansson, no nginx headers: the handler passes the
 * raw query string and sends what comes back.
 *
 * Use:
 *
 *     q = ngx_umlo_query_parse(snap, args, len, now_ms, &err);
 *     if (accept_csv) ngx_umlo_query_set_csv(q);
 *     ngx_umlo_query_run(q, &err);
 *     if (ngx_umlo_query_csv_wanted(q))
 *         while ((n = ngx_umlo_query_csv(q, buf, size)) > 0) send(buf, n);
 *     else
 *         send(ngx_umlo_query_page(q));
 *     ngx_umlo_query_free(q);
 *
 * The query only points into the snapshot: the caller keeps the snapshot
 * alive until ngx_umlo_query_free().
 *
 * Parameters (each at most once; "A,B" is "A or B" where noted):
 *
 *   site=HOST|CLOUD_ID       users with product access or activity on
 *                            the site; sets the context (one value)
 *   product=KEY              same for a product key ("jira-software"),
 *                            on the site when site is given (one value)
 *   status=A,B  account_type=A,B  claim=A,B     the user's values
 *   group=ID|NAME,...        member of any (a name with a comma: use the
 *                            group's id)
 *   role=ROLE,...            holds any of the roles on a product in the
 *                            context, or as a platform role
 *   billable=true|false      holds a billable role in the context
 *   never_active=true|false  never active in the context
 *   inactive_days=N          context date at least N days before now
 *                            (0..36500); a user with no date at all
 *                            (never active, created unknown) counts as
 *                            inactive
 *   q=TEXT                   substring of name or email, case-folded;
 *                            empty: no filter
 *   created_after=T          created >= T; T an ISO 8601 date or
 *   created_before=T         date-time (UTC); created < T; users whose
 *                            created date is unknown match neither
 *   sort=name|email|last_active|created, order=asc|desc
 *   limit=1..1000 (default 100), cursor=... (empty: first page)
 *   format=json|csv
 *
 * Values naming nothing in the snapshot (a site, group, status, role or
 * product key it does not have) match no user; they are not errors.
 * List items are trimmed of spaces; empty values are errors except for q
 * and cursor.
 *
 * The context: "org" (no site, no product), "site:HOST",
 * "site:HOST/product:KEY" or "product:KEY".  A row's last_active is the
 * latest activity on the product entries of the context; a user never
 * active there shows the created date with source "created" and
 * never_active true.  The filters billable, role, never_active,
 * inactive_days and sort=last_active use the same context.
 *
 * Cursors carry the generation, the offset, the time of the first page
 * when inactive_days is given (so that it means the same on every page)
 * and a hash of the filters, sort and order; limit may change from page
 * to page.  With CSV, limit is checked then ignored (every matching row
 * is written) and a cursor is an error.
 */

#ifndef _NGX_UMLO_QUERY_H_INCLUDED_
#define _NGX_UMLO_QUERY_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

#include "ngx_umlo_snapshot.h"


#define NGX_UMLO_QUERY_LIMIT      100
#define NGX_UMLO_QUERY_LIMIT_MAX  1000


/*
 * status: 400 (code "invalid_parameter" or "unknown_parameter", param
 * names it), 409 ("snapshot_changed", param "cursor"), 500
 * ("internal_error": out of memory, param "").  Every string is valid
 * UTF-8, fit for JSON.
 */
typedef struct {
    int                       status;
    char                      code[32];
    char                      param[64];
    char                      message[256];
} ngx_umlo_query_err_t;


typedef struct ngx_umlo_query_s  ngx_umlo_query_t;


/* NULL with *err filled on bad input or when memory runs out. */
ngx_umlo_query_t *ngx_umlo_query_parse(ngx_umlo_snap_t *snap,
    const char *args, size_t len, int64_t now_ms, ngx_umlo_query_err_t *err);

/* format=csv was given; set_csv() for "Accept: text/csv", before run(). */
int ngx_umlo_query_csv_wanted(ngx_umlo_query_t *q);
void ngx_umlo_query_set_csv(ngx_umlo_query_t *q);

/* Filters and orders: 0, or -1 with *err (a cursor with CSV, ENOMEM). */
int ngx_umlo_query_run(ngx_umlo_query_t *q, ngx_umlo_query_err_t *err);

/*
 * run() in two steps, so that the filtered list can be made in another
 * thread and shared by many queries (ngx_umlo_results.c):
 *
 *   check():  the bad input that only shows with the format (a cursor
 *             with CSV): 0, or -1 with *err;
 *   key():    the key of the filtered list, a malloc()ed byte string:
 *             queries with the same key and snapshot version have the
 *             same list;
 *   filter(): makes the list (every match in order, with the date each
 *             row has in the context when the query has inactive_days,
 *             whose value is applied by attach()); reads only the query
 *             and the immutable snapshot, so any thread may run it;
 *             0, or -1 when memory runs out;
 *   attach(): the query's rows from a list, which must outlive the
 *             query; 0, or -1 with *err.
 */
typedef struct {
    uint32_t                 *rows;       /* user indexes, in order */
    int64_t                  *dates;      /* per row, or NULL */
    uint32_t                  n;
} ngx_umlo_query_rows_t;

int ngx_umlo_query_check(ngx_umlo_query_t *q, ngx_umlo_query_err_t *err);
char *ngx_umlo_query_key(ngx_umlo_query_t *q, size_t *len);
int ngx_umlo_query_filter(ngx_umlo_query_t *q, ngx_umlo_query_rows_t *out);
int ngx_umlo_query_attach(ngx_umlo_query_t *q,
    const ngx_umlo_query_rows_t *rows, ngx_umlo_query_err_t *err);
void ngx_umlo_query_rows_free(ngx_umlo_query_rows_t *rows);

/*
 * Two queries with the same key(), snapshot version and page_id() have
 * the same page_text().
 */
void ngx_umlo_query_page_id(ngx_umlo_query_t *q, uint64_t id[3]);

/* After run(): the number of matching users. */
uint32_t ngx_umlo_query_total(ngx_umlo_query_t *q);

/*
 * After run(): {"data": [rows], "links": {"next": cursor or null},
 * "meta": {"total", "limit", "data_as_of", "activity_as_of", "sync_id",
 * "generation", "context"}}, a new reference; NULL when memory runs out.
 */
json_t *ngx_umlo_query_page(ngx_umlo_query_t *q);

/* The same page as compact JSON text, malloc()ed; NULL on ENOMEM. */
char *ngx_umlo_query_page_text(ngx_umlo_query_t *q, size_t *len);

/*
 * After run(): the next bytes of the CSV (header, then one CRLF-ended
 * line per matching user), at most "size" (>= 1) at a time; rows longer
 * than the buffer are split across calls.  0 when done, -1 when memory
 * runs out.
 */
ssize_t ngx_umlo_query_csv(ngx_umlo_query_t *q, char *buf, size_t size);

void ngx_umlo_query_free(ngx_umlo_query_t *q);

/* {"error": {"status", "code", "param", "message"}}; NULL on ENOMEM. */
json_t *ngx_umlo_query_error(const ngx_umlo_query_err_t *err);

/*
 * One user's row, org context, the shape of the list's rows; a new
 * reference, NULL when memory runs out.
 */
json_t *ngx_umlo_query_row(ngx_umlo_snap_t *snap, uint32_t user);

/*
 * The values each filter can take, with user counts over the whole
 * snapshot:
 *
 *   {"sites": [{"host", "id", "users", "products": [{"key", "name",
 *               "id", "users", "billable", "capacity"}]}],
 *    "products": [{"key", "users", "billable"}],
 *    "groups": [{"id", "name", "users"}],
 *    "status": [{"value", "users"}], "account_type": [...],
 *    "claim": [...], "roles": [{"role", "users"}], "total": n}
 *
 * Sites, products, groups and roles are sorted by name (groups without
 * one last, by id), the enumerated values by users, most first, then
 * value.  "users" of a product counts users with an entry for it,
 * "billable" those holding a billable role on it.  Built on the first
 * call and kept in snap->facets, which owns it (freed with the
 * snapshot): the result is borrowed, not to be decref'ed; NULL when
 * memory runs out.  The event loop only.
 */
json_t *ngx_umlo_query_facets(ngx_umlo_snap_t *snap);


#endif /* _NGX_UMLO_QUERY_H_INCLUDED_ */
