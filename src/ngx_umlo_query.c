/*
 * Copyright (C) ngx_umlo authors
 *
 * The user browser's query engine: see ngx_umlo_query.h.  A query is one
 * pass over the users in a precomputed order (only last_active in a site
 * or product context needs a sort), keeping the indexes that match; pages
 * and CSV lines are then made from that list.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ngx_umlo_query.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>


#define NGX_UMLO_QP_SITE            0
#define NGX_UMLO_QP_PRODUCT         1
#define NGX_UMLO_QP_STATUS          2
#define NGX_UMLO_QP_ACCOUNT_TYPE    3
#define NGX_UMLO_QP_CLAIM           4
#define NGX_UMLO_QP_GROUP           5
#define NGX_UMLO_QP_ROLE            6
#define NGX_UMLO_QP_BILLABLE        7
#define NGX_UMLO_QP_NEVER_ACTIVE    8
#define NGX_UMLO_QP_INACTIVE_DAYS   9
#define NGX_UMLO_QP_Q               10
#define NGX_UMLO_QP_CREATED_AFTER   11
#define NGX_UMLO_QP_CREATED_BEFORE  12
#define NGX_UMLO_QP_SORT            13
#define NGX_UMLO_QP_ORDER           14
#define NGX_UMLO_QP_LIMIT           15
#define NGX_UMLO_QP_CURSOR          16
#define NGX_UMLO_QP_FORMAT          17
#define NGX_UMLO_QP_MAX             18

/* the parameters a cursor is bound to: filters, sort and order */
#define NGX_UMLO_QP_HASHED          (NGX_UMLO_QP_ORDER + 1)

#define NGX_UMLO_CTX_ORG            0
#define NGX_UMLO_CTX_SITE           1
#define NGX_UMLO_CTX_PRODUCT        2
#define NGX_UMLO_CTX_SITE_PRODUCT   3

#define NGX_UMLO_SORT_NAME          0
#define NGX_UMLO_SORT_EMAIL         1
#define NGX_UMLO_SORT_LAST_ACTIVE   2
#define NGX_UMLO_SORT_CREATED       3

#define NGX_UMLO_DAY_MS             86400000LL
#define NGX_UMLO_INACTIVE_MAX       36500

/* version, generation, offset, time of the first page, parameters hash */
#define NGX_UMLO_CURSOR_BYTES       29
#define NGX_UMLO_CURSOR_CHARS       39
#define NGX_UMLO_CURSOR_VERSION     1

#define NGX_UMLO_ISO_LEN            32

#define NGX_UMLO_RADIX_BITS         11
#define NGX_UMLO_RADIX              (1 << NGX_UMLO_RADIX_BITS)


typedef struct {
    char                     *data;
    size_t                    len;
    size_t                    cap;
    unsigned                  failed:1;
} ngx_umlo_query_buf_t;


/* what a user has in the context */
typedef struct {
    int64_t                   last;       /* latest activity, 0: never */
    uint32_t                  roles;
    uint32_t                  entries;
    unsigned                  billable:1;
} ngx_umlo_query_in_t;


/* one product entry of a row, sortable without the snapshot */
typedef struct {
    const char               *host;
    const char               *key;
    const char               *ari;
    ngx_umlo_snap_access_t   *access;
} ngx_umlo_query_entry_t;


typedef struct {
    int64_t                   date;
    uint32_t                  user;
} ngx_umlo_query_pair_t;


typedef struct {
    const char               *name;
    const char               *id;
    uint32_t                  index;
    uint32_t                  users;
} ngx_umlo_query_named_t;


struct ngx_umlo_query_s {
    ngx_umlo_snap_t          *snap;
    int64_t                   now;

    char                     *buf;        /* decoded values */
    char                     *val[NGX_UMLO_QP_MAX];
    uint64_t                  hash;

    /* filters */
    unsigned                  nothing:1;  /* a value named nothing */
    unsigned                  need_access:1;
    unsigned                  has_after:1;
    unsigned                  has_before:1;
    unsigned                  has_inactive:1;
    int                       billable;   /* -1: any */
    int                       never;      /* -1: any */
    uint32_t                  fmask[3];   /* status, account_type, claim */
    uint32_t                  roles;
    uint8_t                  *groups;     /* per group, or NULL */
    int64_t                   after;
    int64_t                   before;
    int64_t                   inactive_at;
    char                     *needle;

    /* the context */
    int                       ctx;
    uint32_t                  site;
    uint8_t                  *pmatch;     /* per product instance */
    char                     *ctx_name;

    int                       sort;
    unsigned                  desc:1;
    unsigned                  csv:1;
    unsigned                  has_cursor:1;
    uint32_t                  limit;
    uint32_t                  offset;

    /* results: rows points into own, copy or a caller's list */
    uint32_t                 *rows;
    uint32_t                  total;
    ngx_umlo_query_rows_t     own;
    uint32_t                 *copy;

    /* row making: roles by name, scratch arrays */
    uint8_t                   role_order[NGX_UMLO_ROLES_MAX];
    ngx_umlo_query_entry_t   *entries;
    uint32_t                  cap_entries;
    void                    **list;
    uint32_t                  cap_list;

    /* CSV streaming: line is sent from line_pos; next 0 is the header */
    ngx_umlo_query_buf_t      line;
    ngx_umlo_query_buf_t      cell;
    size_t                    line_pos;
    uint32_t                  csv_next;
};


static const char  *ngx_umlo_query_names[NGX_UMLO_QP_MAX] = {
    "site", "product", "status", "account_type", "claim", "group", "role",
    "billable", "never_active", "inactive_days", "q", "created_after",
    "created_before", "sort", "order", "limit", "cursor", "format"
};

static const char  *ngx_umlo_query_sorts[] = {
    "name", "email", "last_active", "created"
};

static const int  ngx_umlo_query_sort_order[] = {
    NGX_UMLO_ORDER_NAME, NGX_UMLO_ORDER_EMAIL, NGX_UMLO_ORDER_ACTIVE,
    NGX_UMLO_ORDER_CREATED
};

/* the query fields in the order of fmask, and their snapshot fields */
static const int  ngx_umlo_query_fields[3] = {
    NGX_UMLO_F_STATUS, NGX_UMLO_F_ACCOUNT_TYPE, NGX_UMLO_F_CLAIM
};

static const char  ngx_umlo_query_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char  ngx_umlo_query_csv_header[] =
    "id,name,email,status,account_type,claim_status,billable,last_active,"
    "last_active_source,never_active,created,sites,products,groups\r\n";


static void ngx_umlo_query_fail(ngx_umlo_query_err_t *err, int status,
    const char *code, const char *param, const char *fmt, ...);
static void ngx_umlo_query_nomem(ngx_umlo_query_err_t *err);
static size_t ngx_umlo_query_utf8_char(const unsigned char *p, size_t len);
static int ngx_umlo_query_utf8(const char *s, size_t len);
static void ngx_umlo_query_clean(char *s);
static int ngx_umlo_query_hex(int c);
static int ngx_umlo_query_decode(const char *s, size_t len, char *out,
    size_t *outlen);
static int ngx_umlo_query_store(ngx_umlo_query_t *q, const char *name,
    size_t nlen, const char *value, size_t vlen, char **p,
    ngx_umlo_query_err_t *err);
static int ngx_umlo_query_interpret(ngx_umlo_query_t *q,
    ngx_umlo_query_err_t *err);
static int ngx_umlo_query_list(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err);
static int ngx_umlo_query_single(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err);
static char *ngx_umlo_query_item(char **p);
static int ngx_umlo_query_bool(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err);
static int ngx_umlo_query_number(const char *s, int64_t max, int64_t *n);
static int ngx_umlo_query_word(ngx_umlo_query_t *q, int param,
    const char **words, int n, const char *allowed,
    ngx_umlo_query_err_t *err);
static int ngx_umlo_query_context(ngx_umlo_query_t *q);
static void ngx_umlo_query_hash(ngx_umlo_query_t *q);
static int ngx_umlo_query_cursor(ngx_umlo_query_t *q, uint64_t *hash,
    ngx_umlo_query_err_t *err);
static json_t *ngx_umlo_query_next(ngx_umlo_query_t *q, uint32_t offset);
static void ngx_umlo_query_cursor_text(ngx_umlo_query_t *q, uint32_t offset,
    char *out);
static void ngx_umlo_query_eval(ngx_umlo_query_t *q,
    ngx_umlo_snap_user_t *u, ngx_umlo_query_in_t *in);
static int ngx_umlo_query_match(ngx_umlo_query_t *q,
    ngx_umlo_snap_user_t *u, int64_t *date);
static uint8_t *ngx_umlo_query_search(ngx_umlo_query_t *q);
static int ngx_umlo_query_sort_pairs(ngx_umlo_query_pair_t *pairs,
    uint32_t n);
static void ngx_umlo_query_role_order(ngx_umlo_query_t *q);
static int ngx_umlo_query_collect(ngx_umlo_query_t *q,
    ngx_umlo_snap_user_t *u);
static int ngx_umlo_query_strcmp(const char *a, const char *b);
static int ngx_umlo_query_entry_cmp(const void *a, const void *b);
static int ngx_umlo_query_site_cmp(const void *a, const void *b);
static int ngx_umlo_query_group_cmp(const void *a, const void *b);
static int ngx_umlo_query_list_room(ngx_umlo_query_t *q, uint32_t n);
static uint32_t ngx_umlo_query_sites(ngx_umlo_query_t *q,
    ngx_umlo_snap_user_t *u);
static uint32_t ngx_umlo_query_groups(ngx_umlo_query_t *q,
    ngx_umlo_snap_user_t *u);
static json_t *ngx_umlo_query_row_json(ngx_umlo_query_t *q, uint32_t user);
static json_t *ngx_umlo_query_roles_json(ngx_umlo_query_t *q,
    uint32_t bits);
static json_t *ngx_umlo_query_str(const char *s);
static json_t *ngx_umlo_query_value(ngx_umlo_snap_t *snap, int field,
    ngx_umlo_snap_user_t *u);
static json_t *ngx_umlo_query_time(int64_t ms);
static void ngx_umlo_query_iso(int64_t ms, char *buf);
static void ngx_umlo_query_digits(char *p, int64_t v, int n);
static void ngx_umlo_query_add(ngx_umlo_query_buf_t *b, const char *s,
    size_t len);
static void ngx_umlo_query_row_text(ngx_umlo_query_t *q, uint32_t user,
    ngx_umlo_query_buf_t *b);
static void ngx_umlo_query_roles_text(ngx_umlo_query_t *q, uint32_t bits,
    ngx_umlo_query_buf_t *b);
static int ngx_umlo_query_room(ngx_umlo_query_buf_t *b, size_t n);
static void ngx_umlo_query_int(ngx_umlo_query_buf_t *b, int64_t v);
static void ngx_umlo_query_jstr(ngx_umlo_query_buf_t *b, const char *s);
static void ngx_umlo_query_esc(ngx_umlo_query_buf_t *b, const char *s);
static void ngx_umlo_query_jtime(ngx_umlo_query_buf_t *b, int64_t ms);

/* a string literal; ngx_umlo_query_cstr() for any other string */
#define ngx_umlo_query_lit(b, s)  ngx_umlo_query_add(b, "" s, sizeof(s) - 1)
#define ngx_umlo_query_cstr(b, s)  ngx_umlo_query_add(b, s, strlen(s))
static void ngx_umlo_query_csv_cell(ngx_umlo_query_t *q, const char *s,
    int last);
static void ngx_umlo_query_csv_line(ngx_umlo_query_t *q, uint32_t user);
static int ngx_umlo_query_named_cmp(const void *a, const void *b);
static int ngx_umlo_query_count_cmp(const void *a, const void *b);
static json_t *ngx_umlo_query_facets_make(ngx_umlo_snap_t *snap);


ngx_umlo_query_t *
ngx_umlo_query_parse(ngx_umlo_snap_t *snap, const char *args, size_t len,
    int64_t now_ms, ngx_umlo_query_err_t *err)
{
    char              *p;
    uint64_t           hash;
    const char        *s, *end, *amp, *eq;
    ngx_umlo_query_t  *q;

    memset(err, 0, sizeof(ngx_umlo_query_err_t));

    q = calloc(1, sizeof(ngx_umlo_query_t));
    if (q == NULL) {
        ngx_umlo_query_nomem(err);
        return NULL;
    }

    q->snap = snap;
    q->now = now_ms;
    q->billable = -1;
    q->never = -1;
    q->site = NGX_UMLO_SNAP_NONE;
    q->limit = NGX_UMLO_QUERY_LIMIT;

    /* a decoded value is never longer than its raw text */
    q->buf = malloc(len + 1);
    if (q->buf == NULL) {
        ngx_umlo_query_nomem(err);
        goto failed;
    }

    p = q->buf;
    s = args ? args : "";
    end = s + (args ? len : 0);

    while (s < end) {
        amp = memchr(s, '&', end - s);
        if (amp == NULL) {
            amp = end;
        }

        if (amp > s) {
            eq = memchr(s, '=', amp - s);

            if (ngx_umlo_query_store(q, s, (eq ? eq : amp) - s,
                                     eq ? eq + 1 : amp,
                                     eq ? (size_t) (amp - eq - 1) : 0, &p,
                                     err)
                != 0)
            {
                goto failed;
            }
        }

        s = amp + 1;
    }

    /* the hash first: the interpretation splits lists in place */
    ngx_umlo_query_hash(q);

    hash = 0;

    if (q->val[NGX_UMLO_QP_CURSOR] && q->val[NGX_UMLO_QP_CURSOR][0]) {
        if (ngx_umlo_query_cursor(q, &hash, err) != 0) {
            goto failed;
        }
    }

    if (ngx_umlo_query_interpret(q, err) != 0) {
        goto failed;
    }

    if (q->has_cursor && hash != q->hash) {
        ngx_umlo_query_fail(err, 400, "invalid_parameter", "cursor",
                            "cursor was issued for other filters or another "
                            "sort: send it with the parameters of the "
                            "first page, or leave it out to start again");
        goto failed;
    }

    if (ngx_umlo_query_context(q) != 0) {
        ngx_umlo_query_nomem(err);
        goto failed;
    }

    return q;

failed:

    ngx_umlo_query_free(q);

    return NULL;
}


/* one name=value pair, decoded and checked, into q->val */

static int
ngx_umlo_query_store(ngx_umlo_query_t *q, const char *name, size_t nlen,
    const char *value, size_t vlen, char **p, ngx_umlo_query_err_t *err)
{
    int          i;
    char         dn[64];
    size_t       n;
    const char  *pname;

    if (nlen >= sizeof(dn) || ngx_umlo_query_decode(name, nlen, dn, &n) != 0
        || memchr(dn, '\0', n) != NULL)
    {
        n = nlen < sizeof(dn) ? nlen : sizeof(dn) - 1;
        memcpy(dn, name, n);
        dn[n] = '\0';
        i = NGX_UMLO_QP_MAX;

    } else {
        dn[n] = '\0';

        for (i = 0; i < NGX_UMLO_QP_MAX; i++) {
            if (strcmp(dn, ngx_umlo_query_names[i]) == 0) {
                break;
            }
        }
    }

    if (i == NGX_UMLO_QP_MAX) {
        ngx_umlo_query_fail(err, 400, "unknown_parameter", dn,
                            "unknown parameter \"%.32s\"; the parameters "
                            "are site, product, status, account_type, "
                            "claim, group, role, billable, never_active, "
                            "inactive_days, q, created_after, "
                            "created_before, sort, order, limit, cursor, "
                            "format", dn);
        return -1;
    }

    pname = ngx_umlo_query_names[i];

    if (q->val[i] != NULL) {
        ngx_umlo_query_fail(err, 400, "invalid_parameter", pname,
                            "%s is given more than once; give it once%s",
                            pname,
                            (i >= NGX_UMLO_QP_STATUS && i <= NGX_UMLO_QP_ROLE)
                            ? ", with values separated by commas" : "");
        return -1;
    }

    if (ngx_umlo_query_decode(value, vlen, *p, &n) != 0) {
        ngx_umlo_query_fail(err, 400, "invalid_parameter", pname,
                            "%s has an invalid percent-encoding: \"%%\" "
                            "must be followed by two hex digits", pname);
        return -1;
    }

    if (memchr(*p, '\0', n) != NULL) {
        ngx_umlo_query_fail(err, 400, "invalid_parameter", pname,
                            "%s must not contain a NUL character (%%00)",
                            pname);
        return -1;
    }

    if (ngx_umlo_query_utf8(*p, n) != 0) {
        ngx_umlo_query_fail(err, 400, "invalid_parameter", pname,
                            "%s is not valid UTF-8", pname);
        return -1;
    }

    (*p)[n] = '\0';
    q->val[i] = *p;
    *p += n + 1;

    return 0;
}


static int
ngx_umlo_query_interpret(ngx_umlo_query_t *q, ngx_umlo_query_err_t *err)
{
    int          i;
    char        *v;
    int64_t      n;
    const char  *orders[] = { "asc", "desc" };
    const char  *formats[] = { "json", "csv" };

    for (i = NGX_UMLO_QP_SITE; i <= NGX_UMLO_QP_ROLE; i++) {
        if (q->val[i] == NULL) {
            continue;
        }

        if (i <= NGX_UMLO_QP_PRODUCT) {
            if (ngx_umlo_query_single(q, i, err) != 0) {
                return -1;
            }

        } else if (ngx_umlo_query_list(q, i, err) != 0) {
            return -1;
        }
    }

    if (ngx_umlo_query_bool(q, NGX_UMLO_QP_BILLABLE, err) != 0
        || ngx_umlo_query_bool(q, NGX_UMLO_QP_NEVER_ACTIVE, err) != 0)
    {
        return -1;
    }

    v = q->val[NGX_UMLO_QP_INACTIVE_DAYS];
    if (v != NULL) {
        if (ngx_umlo_query_number(v, NGX_UMLO_INACTIVE_MAX, &n) != 0) {
            ngx_umlo_query_fail(err, 400, "invalid_parameter",
                                "inactive_days", "inactive_days must be a "
                                "whole number of days from 0 to %d, not "
                                "\"%.40s\"", NGX_UMLO_INACTIVE_MAX, v);
            return -1;
        }

        q->has_inactive = 1;
        q->inactive_at = q->now - n * NGX_UMLO_DAY_MS;
    }

    v = q->val[NGX_UMLO_QP_Q];
    if (v != NULL && v[0] != '\0') {
        q->needle = ngx_umlo_snap_fold(v, strlen(v));
        if (q->needle == NULL) {
            ngx_umlo_query_nomem(err);
            return -1;
        }

        /* the folded text is "name\nemail": never match across them */
        if (strchr(q->needle, '\n') != NULL) {
            q->nothing = 1;
        }
    }

    for (i = NGX_UMLO_QP_CREATED_AFTER; i <= NGX_UMLO_QP_CREATED_BEFORE;
         i++)
    {
        v = q->val[i];
        if (v == NULL) {
            continue;
        }

        if (ngx_umlo_snap_time(v, strlen(v),
                               i == NGX_UMLO_QP_CREATED_AFTER ? &q->after
                                                              : &q->before)
            != 0)
        {
            ngx_umlo_query_fail(err, 400, "invalid_parameter",
                                ngx_umlo_query_names[i],
                                "%s must be an ISO 8601 date (2024-05-31) "
                                "or UTC date-time (2024-05-31T12:00:00Z), "
                                "not \"%.40s\"", ngx_umlo_query_names[i], v);
            return -1;
        }

        if (i == NGX_UMLO_QP_CREATED_AFTER) {
            q->has_after = 1;

        } else {
            q->has_before = 1;
        }
    }

    q->sort = ngx_umlo_query_word(q, NGX_UMLO_QP_SORT,
                                  ngx_umlo_query_sorts, 4,
                                  "name, email, last_active or created",
                                  err);
    if (q->sort < 0) {
        return -1;
    }

    i = ngx_umlo_query_word(q, NGX_UMLO_QP_ORDER, orders, 2, "asc or desc",
                            err);
    if (i < 0) {
        return -1;
    }

    q->desc = (i == 1);

    i = ngx_umlo_query_word(q, NGX_UMLO_QP_FORMAT, formats, 2,
                            "json or csv", err);
    if (i < 0) {
        return -1;
    }

    q->csv = (i == 1);

    v = q->val[NGX_UMLO_QP_LIMIT];
    if (v != NULL) {
        if (ngx_umlo_query_number(v, NGX_UMLO_QUERY_LIMIT_MAX, &n) != 0
            || n < 1)
        {
            ngx_umlo_query_fail(err, 400, "invalid_parameter", "limit",
                                "limit must be a whole number from 1 to %d,"
                                " not \"%.40s\"", NGX_UMLO_QUERY_LIMIT_MAX, v);
            return -1;
        }

        q->limit = (uint32_t) n;
    }

    /* the org-wide date is the user's own; these need the entries */
    q->need_access = (q->billable != -1 || q->roles != 0);

    return 0;
}


/* site and product: one value each, as they set the context */

static int
ngx_umlo_query_single(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err)
{
    char        *p, *v;
    const char  *name;

    name = ngx_umlo_query_names[param];
    p = q->val[param];

    if (strchr(p, ',') != NULL) {
        ngx_umlo_query_fail(err, 400, "invalid_parameter", name,
                            "%s takes one value, as it sets the context of "
                            "last_active", name);
        return -1;
    }

    v = ngx_umlo_query_item(&p);
    if (v == NULL || v[0] == '\0') {
        ngx_umlo_query_fail(err, 400, "invalid_parameter", name,
                            "%s needs a value: %s", name,
                            param == NGX_UMLO_QP_SITE
                            ? "a host name or cloud id"
                            : "a product key such as jira-software");
        return -1;
    }

    q->val[param] = v;

    if (param == NGX_UMLO_QP_SITE) {
        q->site = ngx_umlo_snap_site(q->snap, v);
        if (q->site == NGX_UMLO_SNAP_NONE) {
            q->nothing = 1;
        }
    }

    return 0;
}


/* the enumerated parameters: comma-separated values, any of them */

static int
ngx_umlo_query_list(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err)
{
    int          any;
    char        *p, *v;
    uint32_t     i, mask;
    const char  *name;

    name = ngx_umlo_query_names[param];
    p = q->val[param];

    if (param == NGX_UMLO_QP_GROUP) {
        q->groups = calloc(q->snap->ngroups ? q->snap->ngroups : 1, 1);
        if (q->groups == NULL) {
            ngx_umlo_query_nomem(err);
            return -1;
        }
    }

    any = 0;
    mask = 0;

    for ( ;; ) {
        v = ngx_umlo_query_item(&p);
        if (v == NULL) {
            break;
        }

        if (v[0] == '\0') {
            ngx_umlo_query_fail(err, 400, "invalid_parameter", name,
                                "%s has an empty value; give one or more "
                                "values separated by commas", name);
            return -1;
        }

        switch (param) {

        case NGX_UMLO_QP_GROUP:
            i = ngx_umlo_snap_group(q->snap, v);
            if (i != NGX_UMLO_SNAP_NONE) {
                q->groups[i] = 1;
                any = 1;
            }
            break;

        case NGX_UMLO_QP_ROLE:
            i = ngx_umlo_snap_role(q->snap, v);
            if (i < 32) {
                mask |= 1u << i;
            }
            break;

        default:
            i = ngx_umlo_snap_value(q->snap,
                                    ngx_umlo_query_fields[param
                                                   - NGX_UMLO_QP_STATUS],
                                    v);
            if (i < 32) {
                mask |= 1u << i;
            }
        }
    }

    if (param == NGX_UMLO_QP_GROUP) {
        q->nothing |= !any;

    } else if (param == NGX_UMLO_QP_ROLE) {
        q->roles = mask;
        q->nothing |= (mask == 0);

    } else {
        q->fmask[param - NGX_UMLO_QP_STATUS] = mask;
        q->nothing |= (mask == 0);
    }

    return 0;
}


/*
 * The next item of a comma-separated list, trimmed of spaces, split in
 * place; NULL at the end.  An empty value gives one empty item.
 */

static char *
ngx_umlo_query_item(char **p)
{
    char  *s, *e, *comma;

    s = *p;
    if (s == NULL) {
        return NULL;
    }

    comma = strchr(s, ',');

    if (comma) {
        *comma = '\0';
        *p = comma + 1;

    } else {
        *p = NULL;
    }

    while (*s == ' ') {
        s++;
    }

    e = s + strlen(s);
    while (e > s && e[-1] == ' ') {
        *--e = '\0';
    }

    return s;
}


static int
ngx_umlo_query_bool(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err)
{
    int          b;
    const char  *v;

    v = q->val[param];
    if (v == NULL) {
        return 0;
    }

    if (strcmp(v, "true") == 0) {
        b = 1;

    } else if (strcmp(v, "false") == 0) {
        b = 0;

    } else {
        ngx_umlo_query_fail(err, 400, "invalid_parameter",
                            ngx_umlo_query_names[param],
                            "%s must be true or false, not \"%.40s\"",
                            ngx_umlo_query_names[param], v);
        return -1;
    }

    if (param == NGX_UMLO_QP_BILLABLE) {
        q->billable = b;

    } else {
        q->never = b;
    }

    return 0;
}


/* digits only, at most max */

static int
ngx_umlo_query_number(const char *s, int64_t max, int64_t *n)
{
    *n = 0;

    if (*s == '\0') {
        return -1;
    }

    for ( ; *s; s++) {
        if (*s < '0' || *s > '9') {
            return -1;
        }

        *n = *n * 10 + (*s - '0');

        if (*n > max) {
            return -1;
        }
    }

    return 0;
}


/* the index of the value among words; 0 (the default) when absent */

static int
ngx_umlo_query_word(ngx_umlo_query_t *q, int param, const char **words,
    int n, const char *allowed, ngx_umlo_query_err_t *err)
{
    int          i;
    const char  *v;

    v = q->val[param];
    if (v == NULL) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (strcmp(v, words[i]) == 0) {
            return i;
        }
    }

    ngx_umlo_query_fail(err, 400, "invalid_parameter",
                        ngx_umlo_query_names[param],
                        "%s must be %s, not \"%.40s\"",
                        ngx_umlo_query_names[param], allowed, v);

    return -1;
}


/* the product instances of the context, and its name for "context" */

static int
ngx_umlo_query_context(ngx_umlo_query_t *q)
{
    int                       any, n;
    size_t                    len;
    uint32_t                  i;
    const char               *site, *key;
    ngx_umlo_snap_t          *snap;
    ngx_umlo_snap_product_t  *p;

    snap = q->snap;
    site = q->val[NGX_UMLO_QP_SITE];
    key = q->val[NGX_UMLO_QP_PRODUCT];

    if (site != NULL && q->site != NGX_UMLO_SNAP_NONE) {
        site = snap->sites[q->site].host;
    }

    q->ctx = site ? (key ? NGX_UMLO_CTX_SITE_PRODUCT : NGX_UMLO_CTX_SITE)
                  : (key ? NGX_UMLO_CTX_PRODUCT : NGX_UMLO_CTX_ORG);

    len = sizeof("site:/product:") + (site ? strlen(site) : 0)
          + (key ? strlen(key) : 0);

    q->ctx_name = malloc(len);
    if (q->ctx_name == NULL) {
        return -1;
    }

    n = site ? (key ? snprintf(q->ctx_name, len, "site:%s/product:%s",
                               site, key)
                    : snprintf(q->ctx_name, len, "site:%s", site))
             : (key ? snprintf(q->ctx_name, len, "product:%s", key)
                    : snprintf(q->ctx_name, len, "org"));
    (void) n;

    if (key == NULL) {
        return 0;
    }

    q->pmatch = calloc(snap->nproducts ? snap->nproducts : 1, 1);
    if (q->pmatch == NULL) {
        return -1;
    }

    any = 0;

    for (i = 0; i < snap->nproducts; i++) {
        p = &snap->products[i];

        if (p->key != NULL && strcmp(p->key, key) == 0
            && (q->ctx == NGX_UMLO_CTX_PRODUCT || p->site == q->site))
        {
            q->pmatch[i] = 1;
            any = 1;
        }
    }

    q->nothing |= !any;

    return 0;
}


/* FNV-1a over the filters, sort and order, defaults made explicit */

static void
ngx_umlo_query_hash(ngx_umlo_query_t *q)
{
    int             i;
    uint64_t        h;
    const char     *v;
    unsigned char   c;

    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < NGX_UMLO_QP_HASHED; i++) {
        v = q->val[i];

        if (v == NULL && i == NGX_UMLO_QP_SORT) {
            v = "name";

        } else if (v == NULL && i == NGX_UMLO_QP_ORDER) {
            v = "asc";
        }

        /* absent and empty differ; the index separates the values */
        h = (h ^ (unsigned char) (i + (v ? 0x40 : 0))) * 0x100000001b3ULL;

        for ( ; v && *v; v++) {
            c = (unsigned char) *v;
            h = (h ^ c) * 0x100000001b3ULL;
        }
    }

    q->hash = h;
}


static int
ngx_umlo_query_cursor(ngx_umlo_query_t *q, uint64_t *hash,
    ngx_umlo_query_err_t *err)
{
    int             i, k, bits;
    uint32_t        acc;
    const char     *v, *pos;
    unsigned char   raw[NGX_UMLO_CURSOR_BYTES + 2];
    uint64_t        gen, now;

    v = q->val[NGX_UMLO_QP_CURSOR];

    if (strlen(v) != NGX_UMLO_CURSOR_CHARS) {
        goto invalid;
    }

    acc = 0;
    bits = 0;
    k = 0;

    for (i = 0; i < NGX_UMLO_CURSOR_CHARS; i++) {
        pos = strchr(ngx_umlo_query_b64, v[i]);
        if (pos == NULL) {
            goto invalid;
        }

        acc = (acc << 6) | (uint32_t) (pos - ngx_umlo_query_b64);
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            raw[k++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }

    /* one canonical spelling: the unused low bits are zero */
    if (k != NGX_UMLO_CURSOR_BYTES || acc != 0
        || raw[0] != NGX_UMLO_CURSOR_VERSION)
    {
        goto invalid;
    }

    gen = 0;
    now = 0;
    *hash = 0;

    for (i = 0; i < 8; i++) {
        gen = (gen << 8) | raw[1 + i];
        now = (now << 8) | raw[13 + i];
        *hash = (*hash << 8) | raw[21 + i];
    }

    q->offset = ((uint32_t) raw[9] << 24) | ((uint32_t) raw[10] << 16)
                | ((uint32_t) raw[11] << 8) | raw[12];

    if ((long long) gen != q->snap->gen) {
        ngx_umlo_query_fail(err, 409, "snapshot_changed", "cursor",
                            "the data was re-synced since this cursor was "
                            "issued; start again from the first page");
        return -1;
    }

    q->now = (int64_t) now;
    q->has_cursor = 1;

    return 0;

invalid:

    ngx_umlo_query_fail(err, 400, "invalid_parameter", "cursor",
                        "cursor is not one this API issued: pass "
                        "links.next unchanged, or leave cursor out for the "
                        "first page");
    return -1;
}


static json_t *
ngx_umlo_query_next(ngx_umlo_query_t *q, uint32_t offset)
{
    char  out[NGX_UMLO_CURSOR_CHARS + 1];

    ngx_umlo_query_cursor_text(q, offset, out);

    return json_string(out);
}


/*
 * The time of the first page matters to inactive_days only: other
 * queries carry 0, so that the same page is the same text (and ETag)
 * from one second to the next.
 */

static void
ngx_umlo_query_cursor_text(ngx_umlo_query_t *q, uint32_t offset, char *out)
{
    int             i, k, bits;
    uint32_t        acc;
    uint64_t        gen, now, hash;
    unsigned char   raw[NGX_UMLO_CURSOR_BYTES];

    gen = (uint64_t) q->snap->gen;
    now = q->has_inactive ? (uint64_t) q->now : 0;
    hash = q->hash;

    raw[0] = NGX_UMLO_CURSOR_VERSION;

    for (i = 7; i >= 0; i--) {
        raw[1 + i] = (unsigned char) gen;
        raw[13 + i] = (unsigned char) now;
        raw[21 + i] = (unsigned char) hash;
        gen >>= 8;
        now >>= 8;
        hash >>= 8;
    }

    raw[9] = (unsigned char) (offset >> 24);
    raw[10] = (unsigned char) (offset >> 16);
    raw[11] = (unsigned char) (offset >> 8);
    raw[12] = (unsigned char) offset;

    acc = 0;
    bits = 0;
    k = 0;

    for (i = 0; i < NGX_UMLO_CURSOR_BYTES; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;

        while (bits >= 6) {
            bits -= 6;
            out[k++] = ngx_umlo_query_b64[(acc >> bits) & 0x3f];
        }

        acc &= (1u << bits) - 1;
    }

    if (bits > 0) {
        out[k++] = ngx_umlo_query_b64[(acc << (6 - bits)) & 0x3f];
    }

    out[k] = '\0';
}


int
ngx_umlo_query_csv_wanted(ngx_umlo_query_t *q)
{
    return q->csv;
}


void
ngx_umlo_query_set_csv(ngx_umlo_query_t *q)
{
    q->csv = 1;
}


uint32_t
ngx_umlo_query_total(ngx_umlo_query_t *q)
{
    return q->total;
}


int
ngx_umlo_query_check(ngx_umlo_query_t *q, ngx_umlo_query_err_t *err)
{
    memset(err, 0, sizeof(ngx_umlo_query_err_t));

    if (q->csv && q->has_cursor) {
        ngx_umlo_query_fail(err, 400, "invalid_parameter", "cursor",
                            "cursor does not apply to CSV, which has every "
                            "matching row: leave it out");
        return -1;
    }

    return 0;
}


int
ngx_umlo_query_run(ngx_umlo_query_t *q, ngx_umlo_query_err_t *err)
{
    if (ngx_umlo_query_check(q, err) != 0) {
        return -1;
    }

    ngx_umlo_query_rows_free(&q->own);

    if (ngx_umlo_query_filter(q, &q->own) != 0) {
        ngx_umlo_query_nomem(err);
        return -1;
    }

    return ngx_umlo_query_attach(q, &q->own, err);
}


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

static void
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


/*
 * By date, then by user index (the users are sorted by id): an LSD radix
 * sort of the dates, stable, over pairs gathered in index order.  Digits
 * all the pairs share, such as the high bits of any date, cost one
 * counting pass and no move.
 */

static int
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


/* room for n more bytes */

static int
ngx_umlo_query_room(ngx_umlo_query_buf_t *b, size_t n)
{
    char    *p;
    size_t   cap;

    if (b->failed) {
        return -1;
    }

    if (b->len + n <= b->cap) {
        return 0;
    }

    cap = b->cap ? b->cap : 512;

    while (cap < b->len + n) {
        cap *= 2;
    }

    p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }

    b->data = p;
    b->cap = cap;

    return 0;
}


static void
ngx_umlo_query_int(ngx_umlo_query_buf_t *b, int64_t v)
{
    char  num[24];

    ngx_umlo_query_add(b, num, snprintf(num, sizeof(num), "%lld",
                                        (long long) v));
}


/* a JSON string, or null */

static void
ngx_umlo_query_jstr(ngx_umlo_query_buf_t *b, const char *s)
{
    if (s == NULL) {
        ngx_umlo_query_lit(b, "null");
        return;
    }

    ngx_umlo_query_lit(b, "\"");
    ngx_umlo_query_esc(b, s);
    ngx_umlo_query_lit(b, "\"");
}


/* a string's JSON escapes, as jansson writes them */

static void
ngx_umlo_query_esc(ngx_umlo_query_buf_t *b, const char *s)
{
    char           *p;
    size_t          n;
    const char     *run;
    unsigned char   c;
    static const char  hex[] = "0123456789ABCDEF";

    for (run = s; /* void */ ; s++) {
        c = (unsigned char) *s;

        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }

        ngx_umlo_query_add(b, run, s - run);

        if (c == '\0') {
            return;
        }

        run = s + 1;

        if (ngx_umlo_query_room(b, 6) != 0) {
            return;
        }

        p = b->data + b->len;
        n = 2;
        p[0] = '\\';

        switch (c) {
        case '"':  p[1] = '"'; break;
        case '\\': p[1] = '\\'; break;
        case '\b': p[1] = 'b'; break;
        case '\f': p[1] = 'f'; break;
        case '\n': p[1] = 'n'; break;
        case '\r': p[1] = 'r'; break;
        case '\t': p[1] = 't'; break;
        default:
            p[1] = 'u';
            p[2] = '0';
            p[3] = '0';
            p[4] = hex[c >> 4];
            p[5] = hex[c & 0xf];
            n = 6;
        }

        b->len += n;
    }
}


/* "2026-05-12T23:29:41.740Z", or null for 0 */

static void
ngx_umlo_query_jtime(ngx_umlo_query_buf_t *b, int64_t ms)
{
    char  buf[NGX_UMLO_ISO_LEN];

    if (ms == 0) {
        ngx_umlo_query_lit(b, "null");
        return;
    }

    ngx_umlo_query_iso(ms, buf);

    ngx_umlo_query_lit(b, "\"");
    ngx_umlo_query_add(b, buf, strlen(buf));
    ngx_umlo_query_lit(b, "\"");
}


/*
 * What tells one page of a list from another: offset, limit, the
 * parameters as spelled (the cursor's hash) and, with inactive_days, the
 * time of the first page.  The page's text follows from these and the
 * list's key and snapshot.
 */

void
ngx_umlo_query_page_id(ngx_umlo_query_t *q, uint64_t id[3])
{
    id[0] = ((uint64_t) q->offset << 32) | q->limit;
    id[1] = q->hash;
    id[2] = q->has_inactive ? (uint64_t) q->now : 0;
}


/*
 * The cache key of the query's filtered list: everything that decides
 * which users match and in what order, as interpreted (a site by host or
 * by id is one key), except the value of inactive_days, which
 * attach() applies to the list.  NULL when memory runs out.
 */

char *
ngx_umlo_query_key(ngx_umlo_query_t *q, size_t *len)
{
    int64_t                v[12];
    uint32_t               i;
    const char            *key;
    ngx_umlo_query_buf_t   b;

    memset(&b, 0, sizeof(ngx_umlo_query_buf_t));

    v[0] = q->nothing;
    v[1] = q->ctx;
    v[2] = q->site;
    v[3] = ((int64_t) q->fmask[0] << 32) | q->fmask[1];
    v[4] = ((int64_t) q->fmask[2] << 32) | q->roles;
    v[5] = q->billable * 4 + q->never;
    v[6] = q->has_after ? q->after : INT64_MIN;
    v[7] = q->has_before ? q->before : INT64_MIN;
    v[8] = q->has_inactive;
    v[9] = q->sort * 2 + q->desc;
    v[10] = q->groups != NULL;
    v[11] = q->needle ? (int64_t) strlen(q->needle) : -1;

    ngx_umlo_query_add(&b, (char *) v, sizeof(v));

    key = q->val[NGX_UMLO_QP_PRODUCT];
    if (key != NULL) {
        ngx_umlo_query_add(&b, key, strlen(key) + 1);
    }

    if (q->needle != NULL) {
        ngx_umlo_query_add(&b, q->needle, strlen(q->needle));
    }

    for (i = 0; q->groups != NULL && i < q->snap->ngroups; i++) {
        if (q->groups[i]) {
            ngx_umlo_query_add(&b, (char *) &i, sizeof(uint32_t));
        }
    }

    if (b.failed) {
        free(b.data);
        return NULL;
    }

    *len = b.len;

    return b.data;
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


/* roles are listed by name, whatever order the snapshot met them in */

static void
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

static int
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

static int
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

static uint32_t
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

static uint32_t
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


static json_t *
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


static json_t *
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

static void
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


static void
ngx_umlo_query_add(ngx_umlo_query_buf_t *b, const char *s, size_t len)
{
    if (len == 0 || ngx_umlo_query_room(b, len) != 0) {
        return;
    }

    memcpy(b->data + b->len, s, len);
    b->len += len;
}


void
ngx_umlo_query_free(ngx_umlo_query_t *q)
{
    if (q == NULL) {
        return;
    }

    free(q->buf);
    free(q->groups);
    free(q->needle);
    free(q->pmatch);
    free(q->ctx_name);
    ngx_umlo_query_rows_free(&q->own);
    free(q->copy);
    free(q->entries);
    free(q->list);
    free(q->line.data);
    free(q->cell.data);
    free(q);
}


json_t *
ngx_umlo_query_error(const ngx_umlo_query_err_t *err)
{
    return json_pack("{s:{s:i,s:s,s:s?,s:s}}", "error",
                     "status", err->status,
                     "code", err->code,
                     "param", err->param[0] ? err->param : NULL,
                     "message", err->message);
}


static void
ngx_umlo_query_fail(ngx_umlo_query_err_t *err, int status, const char *code,
    const char *param, const char *fmt, ...)
{
    va_list  args;

    err->status = status;
    snprintf(err->code, sizeof(err->code), "%s", code);
    snprintf(err->param, sizeof(err->param), "%s", param);

    va_start(args, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, args);
    va_end(args);

    /* names and values quoted back may be cut mid-character, or not text */
    ngx_umlo_query_clean(err->param);
    ngx_umlo_query_clean(err->message);
}


static void
ngx_umlo_query_nomem(ngx_umlo_query_err_t *err)
{
    ngx_umlo_query_fail(err, 500, "internal_error", "", "out of memory");
}


/* the length of the UTF-8 character at p, 0 when it is not one */

static size_t
ngx_umlo_query_utf8_char(const unsigned char *p, size_t len)
{
    size_t    n, i;
    uint32_t  cp, min;

    if (p[0] < 0x80) {
        return 1;
    }

    if ((p[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = p[0] & 0x1f;
        min = 0x80;

    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = p[0] & 0x0f;
        min = 0x800;

    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = p[0] & 0x07;
        min = 0x10000;

    } else {
        return 0;
    }

    if (n > len) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        cp = (cp << 6) | (p[i] & 0x3f);
    }

    /* overlong forms, surrogates and beyond U+10FFFF are not UTF-8 */
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return n;
}


static int
ngx_umlo_query_utf8(const char *s, size_t len)
{
    size_t  i, n;

    for (i = 0; i < len; i += n) {
        n = ngx_umlo_query_utf8_char((const unsigned char *) s + i, len - i);
        if (n == 0) {
            return -1;
        }
    }

    return 0;
}


/* invalid bytes and control characters become '?' */

static void
ngx_umlo_query_clean(char *s)
{
    size_t  i, n, len;

    len = strlen(s);

    for (i = 0; i < len; i += n) {
        n = ngx_umlo_query_utf8_char((unsigned char *) s + i, len - i);

        if (n == 0 || (unsigned char) s[i] < 0x20 || s[i] == 0x7f) {
            s[i] = '?';
            n = 1;
        }
    }
}


/* "+" is a space, %XX a byte; -1 on a "%" without two hex digits */

static int
ngx_umlo_query_hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}


static int
ngx_umlo_query_decode(const char *s, size_t len, char *out, size_t *outlen)
{
    int     hi, lo;
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[n++] = ' ';

        } else if (s[i] == '%') {
            if (len - i < 3) {
                return -1;
            }

            hi = ngx_umlo_query_hex((unsigned char) s[i + 1]);
            lo = ngx_umlo_query_hex((unsigned char) s[i + 2]);

            if (hi < 0 || lo < 0) {
                return -1;
            }

            out[n++] = (char) (hi << 4 | lo);
            i += 2;

        } else {
            out[n++] = s[i];
        }
    }

    *outlen = n;

    return 0;
}


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
