/*
 * Copyright (C) ngx_umlo authors
 *
 * libFuzzer harness: the small text parsers of Atlassian's answers and
 * of stored documents: Retry-After and X-RateLimit-Reset values
 * (ngx_umlo_atlassian.c), ISO 8601 times and the case folding of the
 * user browser (ngx_umlo_snapshot.c).
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_umlo_atlassian.h"
#include "ngx_umlo_snapshot.h"


#define FUZZ_NOW_MS  1795680000000LL


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char     *folded;
    int64_t   ms;

    (void) ngx_umlo_api_parse_time((const char *) data, size, FUZZ_NOW_MS,
                                   &ms);
    if (ngx_umlo_api_parse_retry_after((const char *) data, size,
                                       FUZZ_NOW_MS, &ms)
        == 0 && ms < 0)
    {
        /* a delay is never negative */
        abort();
    }

    (void) ngx_umlo_snap_time((const char *) data, size, &ms);

    folded = ngx_umlo_snap_fold((const char *) data, size);
    free(folded);

    return 0;
}
