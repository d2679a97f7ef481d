/*
 * Copyright (C) ngx_umlo authors
 *
 * Bulk jobs: small helpers of the pool-thread side.
 */


#include "ngx_umlo_clock.h"
#include "ngx_umlo_bulk_int.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/time.h>


void
ngx_umlo_bulk_fail(ngx_umlo_bulk_job_t *job, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    va_list  args;

    if (job->status != 0) {
        return;
    }

    job->status = status;
    snprintf(job->code, sizeof(job->code), "%s", code);

    va_start(args, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, args);
    va_end(args);
}


/* "value" is in the array, as a string or as the item's "field" */

int
ngx_umlo_bulk_in(json_t *list, const char *field, const char *value)
{
    size_t       i;
    json_t      *e;
    const char  *s;

    if (value == NULL) {
        return 0;
    }

    json_array_foreach(list, i, e) {
        s = field ? ngx_umlo_bulk_str(e, field) : json_string_value(e);
        if (s != NULL && strcmp(s, value) == 0) {
            return 1;
        }
    }

    return 0;
}


const char *
ngx_umlo_bulk_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}




/* tokens must not be guessable: the kernel's randomness */

int
ngx_umlo_bulk_random(char *hex, size_t bytes)
{
    int            fd;
    size_t         i;
    unsigned char  buf[32];

    static const char  digits[] = "0123456789abcdef";

    if (bytes > sizeof(buf)) {
        return -1;
    }

    fd = open("/dev/urandom", O_RDONLY);
    if (fd == -1) {
        return -1;
    }

    if (read(fd, buf, bytes) != (ssize_t) bytes) {
        close(fd);
        return -1;
    }

    close(fd);

    for (i = 0; i < bytes; i++) {
        hex[2 * i] = digits[buf[i] >> 4];
        hex[2 * i + 1] = digits[buf[i] & 0xf];
    }

    hex[2 * bytes] = '\0';

    return 0;
}
