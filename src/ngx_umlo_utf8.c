/*
 * Copyright (C) ngx_umlo authors
 */


#include "ngx_umlo_utf8.h"

#include <stdint.h>
#include <string.h>


size_t
ngx_umlo_utf8_char(const unsigned char *p, size_t len)
{
    size_t    n, i;
    uint32_t  cp, min;

    if (p[0] < 0x80) {
        return 1;
    }

    if ((p[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = p[0] & 0x1f;
        min = 0x80;

    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = p[0] & 0x0f;
        min = 0x800;

    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = p[0] & 0x07;
        min = 0x10000;

    } else {
        return 0;
    }

    if (n > len) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        cp = (cp << 6) | (p[i] & 0x3f);
    }

    /* overlong forms, surrogates and beyond U+10FFFF are not UTF-8 */
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return n;
}


int
ngx_umlo_utf8_check(const char *s, size_t len)
{
    size_t  i, n;

    for (i = 0; i < len; i += n) {
        n = ngx_umlo_utf8_char((const unsigned char *) s + i, len - i);
        if (n == 0) {
            return -1;
        }
    }

    return 0;
}


void
ngx_umlo_utf8_clean(char *s, int controls)
{
    size_t  i, n, len;

    len = strlen(s);

    for (i = 0; i < len; i += n) {
        n = ngx_umlo_utf8_char((unsigned char *) s + i, len - i);

        if (n == 0
            || (controls && ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)))
        {
            s[i] = '?';
            n = 1;
        }
    }
}
