/*
 * Copyright (C) ngx_umlo authors
 *
 * One snapshot generation in a worker's memory, compact and read-only
 * once built: what the user browser filters, sorts and counts.  Built in a
 * pool thread from the generation's Redis hashes (or, in unit tests, from
 * JSON documents), then handed to the event loop, which only reads it.
 *
 * Plain C with jansson and hiredis: no nginx headers, so that the query
 * engine and its tests can use it alone.
 */

#ifndef _NGX_UMLO_SNAPSHOT_H_INCLUDED_
#define _NGX_UMLO_SNAPSHOT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <jansson.h>


#define NGX_UMLO_SNAP_NONE     UINT32_MAX   /* no such index */
#define NGX_UMLO_SNAP_ERRLEN   256

/* the enumerated user fields, each with its own table of values */
#define NGX_UMLO_F_STATUS          0   /* status: active, suspended, ... */
#define NGX_UMLO_F_ACCOUNT_TYPE    1
#define NGX_UMLO_F_CLAIM           2   /* claim_status: managed, ... */
#define NGX_UMLO_F_ACCOUNT_STATUS  3
#define NGX_UMLO_F_MEMBERSHIP      4   /* membership_status */
#define NGX_UMLO_F_MAX             5

/* user orders computed once by ngx_umlo_snap_finish(), ascending */
#define NGX_UMLO_ORDER_NAME        0   /* folded name, nulls last, then
                                          folded email, then id */
#define NGX_UMLO_ORDER_EMAIL       1   /* folded email, nulls last, id */
#define NGX_UMLO_ORDER_CREATED     2   /* created, unknown first, id */
#define NGX_UMLO_ORDER_ACTIVE      3   /* org-wide last-active date, the
                                          created date for never active
                                          users (the context rule), id */
#define NGX_UMLO_ORDER_MAX         4

/* at most this many distinct values per field, and distinct roles */
#define NGX_UMLO_VALUES_MAX        32
#define NGX_UMLO_ROLES_MAX         32


typedef struct {
    char                     *host;       /* "acme.atlassian.net" */
    char                     *cloud_id;   /* from the product ARIs, or NULL */
} ngx_umlo_snap_site_t;


typedef struct {
    char                     *ari;        /* product instance ARI */
    char                     *key;        /* "jira-software", or NULL */
    char                     *name;       /* or NULL */
    uint32_t                  site;       /* index into sites */
    int64_t                   capacity;   /* seats, -1: unknown */
} ngx_umlo_snap_product_t;


typedef struct {
    char                     *id;
    char                     *name;       /* or NULL */
} ngx_umlo_snap_group_t;


/* what one user has, or did, on one product instance */
typedef struct {
    uint32_t                  product;    /* index, or NGX_UMLO_SNAP_NONE */
    uint32_t                  site;       /* index, or NGX_UMLO_SNAP_NONE */
    uint32_t                  roles;      /* bit i: snap->roles[i] */
    int64_t                   last_active; /* ms since epoch, 0: never */
    unsigned                  billable:1;
} ngx_umlo_snap_access_t;


typedef struct {
    char                     *id;
    char                     *name;       /* or NULL */
    char                     *email;      /* or NULL */
    char                     *avatar;     /* or NULL */
    char                     *fold;       /* case-folded name "\n" email */
    uint8_t                   field[NGX_UMLO_F_MAX]; /* value indexes */
    uint32_t                  platform_roles;         /* role bits */
    int64_t                   created;    /* added_to_org, ms; 0: unknown */
    int64_t                   last_active; /* latest anywhere, 0: never */
    uint32_t                 *groups;     /* indexes into groups */
    uint32_t                  ngroups;
    ngx_umlo_snap_access_t   *access;
    uint32_t                  naccess;
} ngx_umlo_snap_user_t;


typedef struct ngx_umlo_snap_chunk_s  ngx_umlo_snap_chunk_t;

typedef struct {
    long long                 gen;
    long long                 version;        /* gen and selective syncs */
    uint64_t                  serial;         /* the worker's loads, in
                                                 order: a version may
                                                 come again after Redis
                                                 lost its data */
    char                     *sync_id;
    char                     *data_as_of;     /* ISO 8601, or NULL */
    char                     *activity_as_of; /* ISO 8601, or NULL */

    ngx_umlo_snap_site_t     *sites;
    uint32_t                  nsites;
    ngx_umlo_snap_product_t  *products;
    uint32_t                  nproducts;
    ngx_umlo_snap_group_t    *groups;
    uint32_t                  ngroups;
    ngx_umlo_snap_user_t     *users;          /* sorted by id (strcmp) */
    uint32_t                  nusers;

    /* value tables of the enumerated fields; "" stands for null */
    char                     *values[NGX_UMLO_F_MAX][NGX_UMLO_VALUES_MAX];
    uint32_t                  nvalues[NGX_UMLO_F_MAX];

    char                     *roles[NGX_UMLO_ROLES_MAX];
    uint32_t                  nroles;

    /* order[k][i]: index of the i-th user in order k */
    uint32_t                 *order[NGX_UMLO_ORDER_MAX];

    /*
     * Every user's fold, in user order, each ended by NUL: user i's is
     * at folds + fold_at[i] (fold_at[nusers] is the end), so that a text
     * search is one scan of the whole text, not a search per user.
     */
    char                     *folds;
    uint32_t                 *fold_at;

    json_t                   *metrics;        /* dashboard, built once */
    json_t                   *facets;         /* built on first use */
    char                     *dashboard;      /* metrics as text, made on
                                                 first use (event loop) */
    size_t                    dashboard_len;

    /* private: building state and the arena */
    uint32_t                  cap_sites, cap_products, cap_groups;
    uint32_t                  cap_users;
    json_t                   *index;          /* id/host/ari -> index */
    ngx_umlo_snap_access_t   *access;         /* every user's entries, in
                                                 user order */
    ngx_umlo_snap_chunk_t    *arena;
    size_t                    bytes;          /* arena size, for stats */
} ngx_umlo_snap_t;


ngx_umlo_snap_t *ngx_umlo_snap_create(void);
void ngx_umlo_snap_free(ngx_umlo_snap_t *snap);

/*
 * Building, in this order: sites (a site document with its "products"),
 * groups, users (the documents the sync writes, see
 * docs/ARCHITECTURE.md), then finish.  Unknown fields are ignored and
 * missing ones taken as null; -1 only when a document has no id or memory
 * runs out.
 */
int ngx_umlo_snap_add_site(ngx_umlo_snap_t *snap, json_t *doc);
int ngx_umlo_snap_add_group(ngx_umlo_snap_t *snap, json_t *doc);
int ngx_umlo_snap_add_user(ngx_umlo_snap_t *snap, json_t *doc);
int ngx_umlo_snap_finish(ngx_umlo_snap_t *snap);

/*
 * Loads generation "gen" of "org" from Redis (blocking: pool threads
 * only) with the "current" summary JSON for its metadata, and finishes
 * the snapshot.
 */
struct redisContext;
int ngx_umlo_snap_load(ngx_umlo_snap_t *snap, struct redisContext *c,
    const char *org, long long gen, const char *summary, char *err,
    size_t errlen);

/* lookups: an index, or NGX_UMLO_SNAP_NONE */
uint32_t ngx_umlo_snap_user(ngx_umlo_snap_t *snap, const char *id);
uint32_t ngx_umlo_snap_site(ngx_umlo_snap_t *snap, const char *host_or_id);
uint32_t ngx_umlo_snap_group(ngx_umlo_snap_t *snap, const char *id_or_name);
uint32_t ngx_umlo_snap_role(ngx_umlo_snap_t *snap, const char *role);
uint32_t ngx_umlo_snap_value(ngx_umlo_snap_t *snap, int field,
    const char *value);

/* a product key is known (on any site) */
int ngx_umlo_snap_has_product(ngx_umlo_snap_t *snap, const char *key);

/*
 * Case folding for "q": UTF-8 in, lower-case UTF-8 out (full Unicode
 * simple case mapping); returns a malloc()ed string, or NULL.
 */
char *ngx_umlo_snap_fold(const char *s, size_t len);

/* ISO 8601 UTC (date, or date-time with optional fraction) -> ms */
int ngx_umlo_snap_time(const char *s, size_t len, int64_t *ms);


#endif /* _NGX_UMLO_SNAPSHOT_H_INCLUDED_ */
