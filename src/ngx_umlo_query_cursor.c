/*
 * Copyright (C) ngx_umlo authors
 *
 * Cursors: the parameters hash a cursor is bound to, encoding and
 * decoding cursors, and the cache key of a page.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ngx_umlo_query_int.h"


static const char  ngx_umlo_query_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


/* FNV-1a over the filters, sort and order, defaults made explicit */

void
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


int
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


json_t *
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

void
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
