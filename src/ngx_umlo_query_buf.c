/*
 * Copyright (C) ngx_umlo authors
 *
 * The growable text buffer and the JSON text primitives (integers,
 * escaped strings, times) written exactly as jansson writes them.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ngx_umlo_query_int.h"


/* room for n more bytes */

int
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


void
ngx_umlo_query_int(ngx_umlo_query_buf_t *b, int64_t v)
{
    char  num[24];

    ngx_umlo_query_add(b, num, snprintf(num, sizeof(num), "%lld",
                                        (long long) v));
}


/* a JSON string, or null */

void
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

void
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

void
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


void
ngx_umlo_query_add(ngx_umlo_query_buf_t *b, const char *s, size_t len)
{
    if (len == 0 || ngx_umlo_query_room(b, len) != 0) {
        return;
    }

    memcpy(b->data + b->len, s, len);
    b->len += len;
}
