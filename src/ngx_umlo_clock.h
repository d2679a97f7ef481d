/*
 * Copyright (C) ngx_umlo authors
 *
 * Wall clock for thread-side code, which must not use nginx's cached time.
 */

#ifndef _NGX_UMLO_CLOCK_H_INCLUDED_
#define _NGX_UMLO_CLOCK_H_INCLUDED_


#include <stddef.h>


/* milliseconds since the epoch */
long long ngx_umlo_clock_ms(void);

/* ms as "YYYY-MM-DDTHH:MM:SSZ" */
void ngx_umlo_clock_iso(char *buf, size_t size, long long ms);


#endif /* _NGX_UMLO_CLOCK_H_INCLUDED_ */
