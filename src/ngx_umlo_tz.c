/*
 * Copyright (C) ngx_umlo authors
 *
 * TZif reader and local time conversion: see ngx_umlo_tz.h.
 */


#include "ngx_umlo_tz.h"


#define NGX_UMLO_TZ_MAX   (256 * 1024)     /* larger files are not TZif */
#define NGX_UMLO_TZ_HEAD  44


static ngx_int_t ngx_umlo_tz_parse(ngx_conf_t *cf, ngx_umlo_tz_t *tz,
    u_char *buf, size_t len);
static ngx_int_t ngx_umlo_tz_footer(ngx_umlo_tz_t *tz, u_char *p,
    u_char *last);
static u_char *ngx_umlo_tz_name(u_char *p, u_char *last);
static u_char *ngx_umlo_tz_num(u_char *p, u_char *last, long *v);
static u_char *ngx_umlo_tz_hms(u_char *p, u_char *last, long *v);
static u_char *ngx_umlo_tz_rule(u_char *p, u_char *last,
    ngx_umlo_tz_rule_t *r);
static long ngx_umlo_tz_rule_offset(ngx_umlo_tz_t *tz, int64_t t);
static int64_t ngx_umlo_tz_rule_day(int64_t year, ngx_umlo_tz_rule_t *r);
static int64_t ngx_umlo_tz_days(int64_t y, int64_t m, int64_t d);
static void ngx_umlo_tz_civil(int64_t z, int64_t *y, int64_t *m,
    int64_t *d);
static int64_t ngx_umlo_tz_floordiv(int64_t a, int64_t b);
static uint32_t ngx_umlo_tz_be32(u_char *p);
static int64_t ngx_umlo_tz_be64(u_char *p);


ngx_umlo_tz_t *
ngx_umlo_tz_load(ngx_conf_t *cf, ngx_str_t *name)
{
    u_char           *path, *buf, *p;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_uint_t        i;
    ngx_umlo_tz_t    *tz;

    tz = ngx_pcalloc(cf->pool, sizeof(ngx_umlo_tz_t));
    if (tz == NULL) {
        return NULL;
    }

    if (name == NULL || (name->len == 3
                         && ngx_strncmp(name->data, "UTC", 3) == 0))
    {
        ngx_str_set(&tz->name, "UTC");
        return tz;
    }

    tz->name = *name;

    /* a zone name, never a path out of the zoneinfo directory */
    for (i = 0; i < name->len; i++) {
        if (!(isalnum(name->data[i]) || ngx_strchr("/_+-", name->data[i])))
        {
            break;
        }
    }

    if (name->len == 0 || i < name->len || name->data[0] == '/'
        || ngx_strnstr(name->data, "..", name->len) != NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid time zone \"%V\": expected an IANA "
                           "name such as Europe/Berlin", name);
        return NULL;
    }

    path = ngx_pnalloc(cf->pool, sizeof(NGX_UMLO_TZ_DIR) + name->len);
    buf = ngx_pnalloc(cf->pool, NGX_UMLO_TZ_MAX + 1);
    if (path == NULL || buf == NULL) {
        return NULL;
    }

    p = ngx_cpymem(path, NGX_UMLO_TZ_DIR, sizeof(NGX_UMLO_TZ_DIR) - 1);
    p = ngx_cpymem(p, name->data, name->len);
    *p = '\0';

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "unknown time zone \"%V\": cannot open \"%s\" "
                           "(is the tzdata package installed?)", name, path);
        return NULL;
    }

    n = ngx_read_fd(fd, buf, NGX_UMLO_TZ_MAX + 1);
    (void) ngx_close_file(fd);

    if (n < NGX_UMLO_TZ_HEAD || n > NGX_UMLO_TZ_MAX
        || ngx_umlo_tz_parse(cf, tz, buf, n) != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "time zone \"%V\": \"%s\" is not a valid TZif "
                           "file", name, path);
        return NULL;
    }

    return tz;
}


static ngx_int_t
ngx_umlo_tz_parse(ngx_conf_t *cf, ngx_umlo_tz_t *tz, u_char *buf,
    size_t len)
{
    u_char      *p, *last, *times, *idx, *types;
    size_t       tsize, need;
    uint32_t     isut, isstd, leap, timecnt, typecnt, charcnt;
    ngx_uint_t   i, v2;

    p = buf;
    last = buf + len;
    v2 = 0;
    tsize = 4;

    for ( ;; ) {
        if (last - p < NGX_UMLO_TZ_HEAD || ngx_strncmp(p, "TZif", 4) != 0) {
            return NGX_ERROR;
        }

        isut = ngx_umlo_tz_be32(p + 20);
        isstd = ngx_umlo_tz_be32(p + 24);
        leap = ngx_umlo_tz_be32(p + 28);
        timecnt = ngx_umlo_tz_be32(p + 32);
        typecnt = ngx_umlo_tz_be32(p + 36);
        charcnt = ngx_umlo_tz_be32(p + 40);

        if (timecnt > 65536 || typecnt == 0 || typecnt > 256
            || leap > 65536 || charcnt > 65536 || isut > 256
            || isstd > 256)
        {
            return NGX_ERROR;
        }

        need = timecnt * tsize + timecnt + typecnt * 6 + charcnt
               + leap * (tsize + 4) + isstd + isut;

        if ((size_t) (last - p) < NGX_UMLO_TZ_HEAD + need) {
            return NGX_ERROR;
        }

        /* version 2 and later repeat the data with 64-bit times */
        if (!v2 && p[4] >= '2') {
            p += NGX_UMLO_TZ_HEAD + need;
            v2 = 1;
            tsize = 8;
            continue;
        }

        break;
    }

    times = p + NGX_UMLO_TZ_HEAD;
    idx = times + timecnt * tsize;
    types = idx + timecnt;

    tz->ntrans = timecnt;
    tz->trans = ngx_palloc(cf->pool, (timecnt + 1) * sizeof(int64_t));
    tz->offset = ngx_palloc(cf->pool, (timecnt + 1) * sizeof(long));
    if (tz->trans == NULL || tz->offset == NULL) {
        return NGX_ERROR;
    }

    /* RFC 8536: type 0 is the local time before the first transition */
    tz->first = (int32_t) ngx_umlo_tz_be32(types);

    for (i = 0; i < timecnt; i++) {
        tz->trans[i] = v2 ? ngx_umlo_tz_be64(times + i * 8)
                          : (int32_t) ngx_umlo_tz_be32(times + i * 4);

        if (idx[i] >= typecnt || (i > 0 && tz->trans[i] <= tz->trans[i - 1]))
        {
            return NGX_ERROR;
        }

        tz->offset[i] = (int32_t) ngx_umlo_tz_be32(types + idx[i] * 6);
    }

    if (!v2) {
        return NGX_OK;
    }

    p = times + need;

    if (p < last && *p == '\n') {
        return ngx_umlo_tz_footer(tz, p + 1, last);
    }

    return NGX_OK;
}


/* the POSIX TZ string after the data, e.g. CET-1CEST,M3.5.0,M10.5.0/3 */

static ngx_int_t
ngx_umlo_tz_footer(ngx_umlo_tz_t *tz, u_char *p, u_char *last)
{
    u_char  *end;
    long     off;

    end = ngx_strlchr(p, last, '\n');
    if (end == NULL) {
        return NGX_ERROR;
    }

    if (end == p) {
        return NGX_OK;          /* no rule: the last transition holds */
    }

    p = ngx_umlo_tz_name(p, end);
    p = p ? ngx_umlo_tz_hms(p, end, &off) : NULL;
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* POSIX offsets are west of Greenwich: the UTC offset is negated */
    tz->std_off = -off;
    tz->has_rule = 1;

    if (p == end) {
        return NGX_OK;
    }

    p = ngx_umlo_tz_name(p, end);
    if (p == NULL) {
        return NGX_ERROR;
    }

    tz->has_dst = 1;
    tz->dst_off = tz->std_off + 3600;

    if (p < end && *p != ',') {
        p = ngx_umlo_tz_hms(p, end, &off);
        if (p == NULL) {
            return NGX_ERROR;
        }

        tz->dst_off = -off;
    }

    if (p == end || *p != ',') {
        /* no rule given: POSIX leaves it to the implementation */
        tz->start.month = 3; tz->start.week = 2; tz->start.time = 7200;
        tz->end.month = 11; tz->end.week = 1; tz->end.time = 7200;
        return p == end ? NGX_OK : NGX_ERROR;
    }

    p = ngx_umlo_tz_rule(p + 1, end, &tz->start);
    if (p == NULL || p == end || *p != ',') {
        return NGX_ERROR;
    }

    p = ngx_umlo_tz_rule(p + 1, end, &tz->end);

    return (p == end) ? NGX_OK : NGX_ERROR;
}


static u_char *
ngx_umlo_tz_name(u_char *p, u_char *last)
{
    u_char  *start;

    if (p < last && *p == '<') {
        p = ngx_strlchr(p, last, '>');
        return p ? p + 1 : NULL;
    }

    start = p;

    while (p < last && ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
    {
        p++;
    }

    return (p - start >= 3) ? p : NULL;
}


static u_char *
ngx_umlo_tz_num(u_char *p, u_char *last, long *v)
{
    u_char  *start;

    start = p;
    *v = 0;

    while (p < last && *p >= '0' && *p <= '9' && p - start < 4) {
        *v = *v * 10 + (*p++ - '0');
    }

    return (p > start) ? p : NULL;
}


/* [+-]hh[:mm[:ss]] in seconds */

static u_char *
ngx_umlo_tz_hms(u_char *p, u_char *last, long *v)
{
    long  sign, n, i;

    sign = 1;

    if (p < last && (*p == '+' || *p == '-')) {
        sign = (*p++ == '-') ? -1 : 1;
    }

    p = ngx_umlo_tz_num(p, last, &n);
    if (p == NULL || n > 167) {
        return NULL;
    }

    *v = n * 3600;

    for (i = 60; i >= 1 && p < last && *p == ':'; i /= 60) {
        p = ngx_umlo_tz_num(p + 1, last, &n);
        if (p == NULL || n > 59) {
            return NULL;
        }

        *v += n * i;
    }

    *v *= sign;

    return p;
}


static u_char *
ngx_umlo_tz_rule(u_char *p, u_char *last, ngx_umlo_tz_rule_t *r)
{
    long  m, w, d;

    ngx_memzero(r, sizeof(ngx_umlo_tz_rule_t));
    r->time = 7200;

    if (p < last && *p == 'M') {
        p = ngx_umlo_tz_num(p + 1, last, &m);
        if (p == NULL || p == last || *p != '.') {
            return NULL;
        }

        p = ngx_umlo_tz_num(p + 1, last, &w);
        if (p == NULL || p == last || *p != '.') {
            return NULL;
        }

        p = ngx_umlo_tz_num(p + 1, last, &d);
        if (p == NULL || m < 1 || m > 12 || w < 1 || w > 5 || d > 6) {
            return NULL;
        }

        r->month = m;
        r->week = w;
        r->wday = d;

    } else if (p < last && *p == 'J') {
        p = ngx_umlo_tz_num(p + 1, last, &d);
        if (p == NULL || d < 1 || d > 365) {
            return NULL;
        }

        r->julian = 1;
        r->day = d;

    } else {
        p = ngx_umlo_tz_num(p, last, &d);
        if (p == NULL || d > 365) {
            return NULL;
        }

        r->day = d;
    }

    if (p < last && *p == '/') {
        p = ngx_umlo_tz_hms(p + 1, last, &r->time);
    }

    return p;
}


long
ngx_umlo_tz_offset(ngx_umlo_tz_t *tz, int64_t t)
{
    ngx_uint_t  lo, hi, mid;

    if (tz->ntrans == 0) {
        return tz->has_rule ? ngx_umlo_tz_rule_offset(tz, t) : tz->first;
    }

    if (t < tz->trans[0]) {
        return tz->first;
    }

    if (t >= tz->trans[tz->ntrans - 1] && tz->has_rule) {
        return ngx_umlo_tz_rule_offset(tz, t);
    }

    /* the last transition at or before t */
    lo = 0;
    hi = tz->ntrans;

    while (hi - lo > 1) {
        mid = lo + (hi - lo) / 2;

        if (tz->trans[mid] <= t) {
            lo = mid;

        } else {
            hi = mid;
        }
    }

    return tz->offset[lo];
}


static long
ngx_umlo_tz_rule_offset(ngx_umlo_tz_t *tz, int64_t t)
{
    int64_t  y, m, d, start, end;

    if (!tz->has_dst) {
        return tz->std_off;
    }

    ngx_umlo_tz_civil(ngx_umlo_tz_floordiv(t + tz->std_off, 86400),
                      &y, &m, &d);

    /* rule times are local: standard time for the start, DST for the end */
    start = ngx_umlo_tz_rule_day(y, &tz->start) * 86400 + tz->start.time
            - tz->std_off;
    end = ngx_umlo_tz_rule_day(y, &tz->end) * 86400 + tz->end.time
          - tz->dst_off;

    if (start < end) {
        return (t >= start && t < end) ? tz->dst_off : tz->std_off;
    }

    /* southern hemisphere: summer time spans the new year */
    return (t >= end && t < start) ? tz->std_off : tz->dst_off;
}


static int64_t
ngx_umlo_tz_rule_day(int64_t year, ngx_umlo_tz_rule_t *r)
{
    int64_t  first, next, wd, day;
    int      leap;

    if (r->month == 0) {
        first = ngx_umlo_tz_days(year, 1, 1);
        leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

        if (r->julian) {
            /* Jn counts 1..365 and never Feb 29 */
            return first + r->day - 1 + ((leap && r->day >= 60) ? 1 : 0);
        }

        return first + r->day;
    }

    first = ngx_umlo_tz_days(year, r->month, 1);
    next = (r->month == 12) ? ngx_umlo_tz_days(year + 1, 1, 1)
                            : ngx_umlo_tz_days(year, r->month + 1, 1);

    /* 1970-01-01 was a Thursday */
    wd = ((first + 4) % 7 + 7) % 7;
    day = first + (r->wday - wd + 7) % 7 + (r->week - 1) * 7;

    while (day >= next) {
        day -= 7;
    }

    return day;
}


int64_t
ngx_umlo_tz_utc(ngx_umlo_tz_t *tz, int64_t day, long secs)
{
    int64_t  local, ta, tb;
    int      va, vb;

    local = day * 86400 + secs;

    /* the offsets a day either side: at most one change lies between */
    ta = local - ngx_umlo_tz_offset(tz, local - 86400);
    tb = local - ngx_umlo_tz_offset(tz, local + 86400);

    va = (ta + ngx_umlo_tz_offset(tz, ta) == local);
    vb = (tb + ngx_umlo_tz_offset(tz, tb) == local);

    if (va && vb) {
        return ta < tb ? ta : tb;
    }

    if (vb) {
        return tb;
    }

    /* valid, or skipped by a change: ta is then as far after it */
    return ta;
}


int64_t
ngx_umlo_tz_day(ngx_umlo_tz_t *tz, int64_t t)
{
    return ngx_umlo_tz_floordiv(t + ngx_umlo_tz_offset(tz, t), 86400);
}


void
ngx_umlo_tz_date(int64_t day, u_char *buf)
{
    int64_t  y, m, d;

    ngx_umlo_tz_civil(day, &y, &m, &d);

    (void) ngx_sprintf(buf, "%04L-%02L-%02L%Z", y, m, d);
}


/* days since 1970-01-01 of a proleptic Gregorian date */

static int64_t
ngx_umlo_tz_days(int64_t y, int64_t m, int64_t d)
{
    int64_t  era, yoe, doy, doe;

    y -= (m <= 2);
    era = ngx_umlo_tz_floordiv(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}


static void
ngx_umlo_tz_civil(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
    int64_t  era, doe, yoe, doy, mp;

    z += 719468;
    era = ngx_umlo_tz_floordiv(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;

    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}


static int64_t
ngx_umlo_tz_floordiv(int64_t a, int64_t b)
{
    return (a >= 0) ? a / b : -((-a + b - 1) / b);
}


static uint32_t
ngx_umlo_tz_be32(u_char *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | p[3];
}


static int64_t
ngx_umlo_tz_be64(u_char *p)
{
    return (int64_t) (((uint64_t) ngx_umlo_tz_be32(p) << 32)
                      | ngx_umlo_tz_be32(p + 4));
}
