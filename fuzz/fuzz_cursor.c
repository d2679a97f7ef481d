/*
 * Copyright (C) ngx_umlo authors
 *
 * libFuzzer harness: the user browser's cursor decoder.  The input is the
 * cursor's raw bytes, base64url-encoded here so that the decoder itself
 * (not the base64 check) is what gets explored: by the first byte, either
 * the bytes as given, or a real cursor of the query with the input
 * XOR-ed over it, or a real cursor cut or extended with the input.
 */


#include <stdint.h>
#include <string.h>

#include "fuzz_snap.h"
#include "ngx_umlo_query.h"


#define FUZZ_QUERY  "status=active,suspended&limit=1&sort=email&cursor="


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static ngx_umlo_snap_t  *snap;
static uint8_t           real[512];
static size_t            nreal;


static int
b64_value(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}


static size_t
b64_decode(const char *s, uint8_t *out, size_t max)
{
    int       v;
    size_t    n;
    uint32_t  acc, bits;

    n = 0;
    acc = 0;
    bits = 0;

    for (; *s && (v = b64_value((unsigned char) *s)) >= 0; s++) {
        acc = (acc << 6) | (uint32_t) v;
        bits += 6;

        if (bits >= 8 && n < max) {
            bits -= 8;
            out[n++] = (uint8_t) (acc >> bits);
        }
    }

    return n;
}


static size_t
b64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t           i, n;
    uint32_t         acc, bits;
    static const char  tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    n = 0;
    acc = 0;
    bits = 0;

    for (i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;

        while (bits >= 6) {
            bits -= 6;
            out[n++] = tab[(acc >> bits) & 63];
        }
    }

    if (bits) {
        out[n++] = tab[(acc << (6 - bits)) & 63];
    }

    return n;
}


static void
fuzz_init(void)
{
    json_t                *page;
    const char            *next;
    ngx_umlo_query_t      *q;
    ngx_umlo_query_err_t   err;

    snap = fuzz_snapshot();

    memset(&err, 0, sizeof(err));
    q = ngx_umlo_query_parse(snap, FUZZ_QUERY, sizeof(FUZZ_QUERY) - 1,
                             FUZZ_NOW_MS, &err);
    if (q == NULL || ngx_umlo_query_run(q, &err) != 0) {
        abort();
    }

    page = ngx_umlo_query_page(q);
    next = json_string_value(json_object_get(json_object_get(page, "links"),
                                             "next"));
    if (next == NULL) {
        abort();
    }

    nreal = b64_decode(next, real, sizeof(real));

    json_decref(page);
    ngx_umlo_query_free(q);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                  *args;
    size_t                 i, n, len;
    uint8_t                raw[1024];
    json_t                *out;
    ngx_umlo_query_t      *q;
    ngx_umlo_query_err_t   err;

    if (snap == NULL) {
        fuzz_init();
    }

    if (size == 0 || size > 512) {
        return 0;
    }

    switch (data[0] % 3) {

    case 0:
        n = size - 1;
        memcpy(raw, data + 1, n);
        break;

    case 1:
        /* the real cursor with the input XOR-ed over it */
        n = nreal;
        memcpy(raw, real, n);
        for (i = 1; i < size; i++) {
            raw[(i - 1) % n] ^= data[i];
        }
        break;

    default:
        /* a prefix of the real cursor, then the input but its last byte */
        n = data[size - 1] % (nreal + 1);
        memcpy(raw, real, n);
        if (size > 2) {
            memcpy(raw + n, data + 1, size - 2);
            n += size - 2;
        }
        break;
    }

    len = sizeof(FUZZ_QUERY) - 1;
    args = malloc(len + 2 * n + 8);
    if (args == NULL) {
        return 0;
    }

    memcpy(args, FUZZ_QUERY, len);
    len += b64_encode(raw, n, args + len);

    memset(&err, 0, sizeof(err));
    q = ngx_umlo_query_parse(snap, args, len, FUZZ_NOW_MS, &err);

    if (q == NULL || ngx_umlo_query_run(q, &err) != 0) {
        if (err.status < 400 || err.status >= 500) {
            abort();
        }

        out = ngx_umlo_query_error(&err);
        if (out == NULL) {
            abort();
        }

        json_decref(out);

    } else {
        out = ngx_umlo_query_page(q);
        if (out == NULL) {
            abort();
        }

        json_decref(out);
    }

    ngx_umlo_query_free(q);
    free(args);

    return 0;
}
