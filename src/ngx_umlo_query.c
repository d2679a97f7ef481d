/*
 * Copyright (C) ngx_umlo authors
 *
 * The user browser's query engine: see ngx_umlo_query.h.  A query is one
 * pass over the users in a precomputed order (only last_active in a site
 * or product context needs a sort), keeping the indexes that match; pages
 * and CSV lines are then made from that list.
 *
 * This file: the query engine's entry points: parsing the query string into
 * decoded, checked values, running a query, freeing it and its errors.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ngx_umlo_query_int.h"
#include "ngx_umlo_utf8.h"


static int ngx_umlo_query_hex(int c);
static int ngx_umlo_query_decode(const char *s, size_t len, char *out,
    size_t *outlen);
static int ngx_umlo_query_store(ngx_umlo_query_t *q, const char *name,
    size_t nlen, const char *value, size_t vlen, char **p,
    ngx_umlo_query_err_t *err);


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

    if (ngx_umlo_utf8_check(*p, n) != 0) {
        ngx_umlo_query_fail(err, 400, "invalid_parameter", pname,
                            "%s is not valid UTF-8", pname);
        return -1;
    }

    (*p)[n] = '\0';
    q->val[i] = *p;
    *p += n + 1;

    return 0;
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


void
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
    ngx_umlo_utf8_clean(err->param, 1);
    ngx_umlo_utf8_clean(err->message, 1);
}


void
ngx_umlo_query_nomem(ngx_umlo_query_err_t *err)
{
    ngx_umlo_query_fail(err, 500, "internal_error", "", "out of memory");
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
