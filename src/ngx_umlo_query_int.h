/*
 * Copyright (C) ngx_umlo authors
 *
 * Internals of the query engine shared by its files
 * (src/ngx_umlo_query*.c); the interface is ngx_umlo_query.h.
 */


#ifndef _NGX_UMLO_QUERY_INT_H_INCLUDED_
#define _NGX_UMLO_QUERY_INT_H_INCLUDED_


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


/* a string literal; ngx_umlo_query_cstr() for any other string */
#define ngx_umlo_query_lit(b, s)  ngx_umlo_query_add(b, "" s, sizeof(s) - 1)
#define ngx_umlo_query_cstr(b, s)  ngx_umlo_query_add(b, s, strlen(s))


extern const char  *ngx_umlo_query_names[NGX_UMLO_QP_MAX];
/* the query fields in the order of fmask, and their snapshot fields */
extern const int  ngx_umlo_query_fields[3];


void ngx_umlo_query_fail(ngx_umlo_query_err_t *err, int status,
    const char *code, const char *param, const char *fmt, ...);
void ngx_umlo_query_nomem(ngx_umlo_query_err_t *err);
int ngx_umlo_query_interpret(ngx_umlo_query_t *q,
    ngx_umlo_query_err_t *err);
int ngx_umlo_query_context(ngx_umlo_query_t *q);
void ngx_umlo_query_hash(ngx_umlo_query_t *q);
int ngx_umlo_query_cursor(ngx_umlo_query_t *q, uint64_t *hash,
    ngx_umlo_query_err_t *err);
json_t *ngx_umlo_query_next(ngx_umlo_query_t *q, uint32_t offset);
void ngx_umlo_query_cursor_text(ngx_umlo_query_t *q, uint32_t offset,
    char *out);
void ngx_umlo_query_eval(ngx_umlo_query_t *q,
    ngx_umlo_snap_user_t *u, ngx_umlo_query_in_t *in);
int ngx_umlo_query_sort_pairs(ngx_umlo_query_pair_t *pairs,
    uint32_t n);
void ngx_umlo_query_role_order(ngx_umlo_query_t *q);
int ngx_umlo_query_collect(ngx_umlo_query_t *q,
    ngx_umlo_snap_user_t *u);
int ngx_umlo_query_strcmp(const char *a, const char *b);
uint32_t ngx_umlo_query_sites(ngx_umlo_query_t *q,
    ngx_umlo_snap_user_t *u);
uint32_t ngx_umlo_query_groups(ngx_umlo_query_t *q,
    ngx_umlo_snap_user_t *u);
json_t *ngx_umlo_query_row_json(ngx_umlo_query_t *q, uint32_t user);
json_t *ngx_umlo_query_str(const char *s);
void ngx_umlo_query_iso(int64_t ms, char *buf);
void ngx_umlo_query_add(ngx_umlo_query_buf_t *b, const char *s,
    size_t len);
int ngx_umlo_query_room(ngx_umlo_query_buf_t *b, size_t n);
void ngx_umlo_query_int(ngx_umlo_query_buf_t *b, int64_t v);
void ngx_umlo_query_jstr(ngx_umlo_query_buf_t *b, const char *s);
void ngx_umlo_query_esc(ngx_umlo_query_buf_t *b, const char *s);
void ngx_umlo_query_jtime(ngx_umlo_query_buf_t *b, int64_t ms);


#endif /* _NGX_UMLO_QUERY_INT_H_INCLUDED_ */
