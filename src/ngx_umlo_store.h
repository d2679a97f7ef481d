/*
 * Copyright (C) ngx_umlo authors
 *
 * Redis from a pool thread: a blocking hiredis connection owned by one
 * job, with pipelined writes, the org lock, the sync document, snapshot
 * generations and history.  No nginx memory or logging is touched here.
 */

#ifndef _NGX_UMLO_STORE_H_INCLUDED_
#define _NGX_UMLO_STORE_H_INCLUDED_


#include <stddef.h>
#include <hiredis/hiredis.h>
#include <jansson.h>


#define NGX_UMLO_STORE_ERRLEN  256

/*
 * Upper bounds (seconds) of the sync duration histogram's buckets: the
 * thread counts each finished sync in the first bucket that holds it, the
 * metrics location sums them into Prometheus' cumulative buckets.
 */
#define NGX_UMLO_DURATION_BUCKETS                                           \
    { 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200 }
#define NGX_UMLO_DURATION_NBUCKETS  11


typedef struct ngx_umlo_store_conf_s {
    const char    *host;         /* numeric address, or NULL */
    int            port;
    const char    *unix_path;    /* or NULL */
    const char    *password;     /* or NULL */
    int            db;
    unsigned       timeout_ms;
} ngx_umlo_store_conf_t;


typedef struct {
    redisContext  *c;
    const char    *org;
    unsigned       pending;      /* pipelined replies not yet read */
    char           error[NGX_UMLO_STORE_ERRLEN];
} ngx_umlo_store_t;


int ngx_umlo_store_open(ngx_umlo_store_t *st,
    const ngx_umlo_store_conf_t *conf, const char *org);
void ngx_umlo_store_close(ngx_umlo_store_t *st);

/* Pipelined write; replies are checked at the next flush. */
int ngx_umlo_store_append(ngx_umlo_store_t *st, const char *fmt, ...);
int ngx_umlo_store_appendv(ngx_umlo_store_t *st, int argc,
    const char **argv, const size_t *argvlen);
int ngx_umlo_store_flush(ngx_umlo_store_t *st);

/* A command answered at once (pending writes are flushed first). */
redisReply *ngx_umlo_store_command(ngx_umlo_store_t *st,
    const char *fmt, ...);

/* 1: still ours and renewed, 0: lost, -1: Redis error. */
int ngx_umlo_store_renew(ngx_umlo_store_t *st, const char *token,
    unsigned lease_ms);

/*
 * The sync document is written only while "token" holds the lock: 1 when
 * written, 0 when the lock is someone else's, -1 on a Redis error.
 * Release writes the last document and frees the lock in one step.
 */
int ngx_umlo_store_set_status(ngx_umlo_store_t *st, const char *token,
    json_t *doc);
int ngx_umlo_store_release(ngx_umlo_store_t *st, const char *token,
    json_t *doc);

/* 1: a DELETE asked to cancel sync "id", 0: no, -1: Redis error. */
int ngx_umlo_store_cancelled(ngx_umlo_store_t *st, const char *id);


/*
 * Starts a new generation: drops any generation an earlier, dead sync
 * left half-written, and returns the new number (-1 on error).  Only the
 * lock holder calls it.
 */
long long ngx_umlo_store_begin(ngx_umlo_store_t *st);

/*
 * Makes generation "gen" current in one step if "token" still holds the
 * lock; the previous generation is retired for grace_ms, then dropped.
 * Returns 1 on success, 0 when the lock was lost, -1 on error.
 */
int ngx_umlo_store_swap(ngx_umlo_store_t *st, const char *token,
    long long gen, json_t *snapshot, unsigned grace_ms);

/* The current generation, 0 when none, -1 on error. */
long long ngx_umlo_store_current(ngx_umlo_store_t *st);

/* Drops a generation that never became current. */
int ngx_umlo_store_drop(ngx_umlo_store_t *st, long long gen);

/* Records a finished sync: history entry (trimmed) and the counters. */
int ngx_umlo_store_history(ngx_umlo_store_t *st, json_t *summary,
    unsigned max);

/*
 * Records a webhook delivery's outcome (trimmed to max entries) and counts
 * it as delivered or failed.
 */
int ngx_umlo_store_delivery(ngx_umlo_store_t *st, json_t *outcome,
    unsigned max);


#endif /* _NGX_UMLO_STORE_H_INCLUDED_ */
