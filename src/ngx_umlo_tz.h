/*
 * Copyright (C) ngx_umlo authors
 *
 * Time zones for the daily schedule, read from the system's zoneinfo
 * (TZif files, RFC 8536) at configuration time.  The C library's own
 * zone handling would need TZ set in the environment, which is not safe
 * in a process that runs a thread pool; this reader keeps each zone in
 * its own structure instead.
 */

#ifndef _NGX_UMLO_TZ_H_INCLUDED_
#define _NGX_UMLO_TZ_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_UMLO_TZ_DIR  "/usr/share/zoneinfo/"


typedef struct {
    int             month;        /* Mm.w.d: 1..12; 0 for Jn and n forms */
    int             week;         /* 1..5, 5 = last */
    int             wday;         /* 0..6, Sunday = 0 */
    int             julian;       /* Jn: 1 (no Feb 29) or n: 0 based */
    int             day;
    long            time;         /* seconds after local midnight */
} ngx_umlo_tz_rule_t;


typedef struct {
    ngx_str_t       name;

    ngx_uint_t      ntrans;
    int64_t        *trans;        /* UTC transition times, ascending */
    long           *offset;       /* UTC offset from each transition */
    long            first;        /* UTC offset before the first one */

    /* the footer's POSIX TZ rule, for times after the last transition */
    unsigned        has_rule:1;
    unsigned        has_dst:1;
    long            std_off;
    long            dst_off;
    ngx_umlo_tz_rule_t  start;
    ngx_umlo_tz_rule_t  end;
} ngx_umlo_tz_t;


/* NULL name: UTC.  Logs and returns NULL when the zone cannot be read. */
ngx_umlo_tz_t *ngx_umlo_tz_load(ngx_conf_t *cf, ngx_str_t *name);

/* The zone's UTC offset, in seconds, at UTC time t. */
long ngx_umlo_tz_offset(ngx_umlo_tz_t *tz, int64_t t);

/*
 * The UTC time of local time "secs" seconds after midnight on the local
 * day "day" (days since 1970-01-01).  A local time that a clock change
 * skips maps to the same distance after the change; one that occurs twice
 * maps to its first occurrence.
 */
int64_t ngx_umlo_tz_utc(ngx_umlo_tz_t *tz, int64_t day, long secs);

/* The local day (days since 1970-01-01) of UTC time t. */
int64_t ngx_umlo_tz_day(ngx_umlo_tz_t *tz, int64_t t);

/* "YYYY-MM-DD" of a day number; buf holds at least 11 bytes. */
void ngx_umlo_tz_date(int64_t day, u_char *buf);


#endif /* _NGX_UMLO_TZ_H_INCLUDED_ */
