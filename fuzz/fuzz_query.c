/*
 * Copyright (C) ngx_umlo authors
 *
 * libFuzzer harness: the user browser's query string (ngx_umlo_query.c),
 * parsed and run against a fixed snapshot; the first byte chooses JSON
 * or CSV.  Every error must make a JSON error document.
 */


#include <stdint.h>
#include <string.h>

#include "fuzz_snap.h"
#include "ngx_umlo_query.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static ngx_umlo_snap_t  *snap;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                    csv;
    char                  *text, buf[97];
    json_t                *out;
    ssize_t                n;
    ngx_umlo_query_t      *q;
    ngx_umlo_query_err_t   err;

    if (snap == NULL) {
        snap = fuzz_snapshot();
        if (ngx_umlo_query_facets(snap) == NULL) {
            abort();
        }
    }

    csv = 0;

    if (size > 0) {
        csv = data[0] & 1;
        data++;
        size--;
    }

    memset(&err, 0, sizeof(err));

    q = ngx_umlo_query_parse(snap, (const char *) data, size, FUZZ_NOW_MS,
                             &err);

    if (q != NULL && csv) {
        ngx_umlo_query_set_csv(q);
    }

    if (q == NULL || ngx_umlo_query_run(q, &err) != 0) {
        ngx_umlo_query_free(q);

        /* bad input is a 4xx the handler can send, never a 5xx */
        if (err.status < 400 || err.status >= 500) {
            abort();
        }

        out = ngx_umlo_query_error(&err);
        text = out ? json_dumps(out, JSON_COMPACT) : NULL;
        if (text == NULL) {
            abort();
        }

        free(text);
        json_decref(out);
        return 0;
    }

    if (ngx_umlo_query_csv_wanted(q)) {
        while ((n = ngx_umlo_query_csv(q, buf, sizeof(buf))) > 0) {
            /* void */
        }

        if (n < 0) {
            abort();
        }

    } else {
        out = ngx_umlo_query_page(q);
        text = out ? json_dumps(out, JSON_COMPACT) : NULL;
        if (text == NULL) {
            abort();
        }

        free(text);
        json_decref(out);
    }

    ngx_umlo_query_free(q);

    return 0;
}
