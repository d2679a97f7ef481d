/*
 * Copyright (C) ngx_umlo authors
 *
 * UTF-8 checks for text that goes into JSON answers, which must be valid
 * UTF-8: query parameters, error messages quoting a client's input.
 */

#ifndef _NGX_UMLO_UTF8_H_INCLUDED_
#define _NGX_UMLO_UTF8_H_INCLUDED_


#include <stddef.h>


/* the length of the UTF-8 character at p, 0 when it is not one */
size_t ngx_umlo_utf8_char(const unsigned char *p, size_t len);

/* 0 if s[0 .. len) is UTF-8, else -1 */
int ngx_umlo_utf8_check(const char *s, size_t len);

/*
 * Each byte that does not start a valid character becomes '?' (what
 * follows is looked at again), and so do control characters if asked.
 */
void ngx_umlo_utf8_clean(char *s, int controls);


#endif /* _NGX_UMLO_UTF8_H_INCLUDED_ */
