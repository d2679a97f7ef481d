/*
 * Copyright (C) ngx_umlo authors
 */


#include "ngx_umlo_clock.h"

#include <sys/time.h>
#include <time.h>


long long
ngx_umlo_clock_ms(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


void
ngx_umlo_clock_iso(char *buf, size_t size, long long ms)
{
    time_t     t;
    struct tm  tm;

    t = (time_t) (ms / 1000);
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
