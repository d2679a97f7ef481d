/*
 * Copyright (C) ngx_umlo authors
 *
 * umlo_api_key_expires: the Organization API key's expiry date, the
 * warning that status, dashboard and metrics show before it, and the
 * daily key.expiring webhook, sent by one worker of one instance a day.
 */

#ifndef _NGX_UMLO_KEYEXP_H_INCLUDED_
#define _NGX_UMLO_KEYEXP_H_INCLUDED_


#include "ngx_umlo_module.h"
#include <jansson.h>


char *ngx_umlo_keyexp_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * {"expires", "days_left", "expiring", "expired", "warning"}, or NULL when
 * no expiry is configured.
 */
json_t *ngx_umlo_keyexp_json(ngx_umlo_main_conf_t *umcf);

/* Whole days left (negative once expired); only when configured. */
ngx_int_t ngx_umlo_keyexp_days_left(ngx_umlo_main_conf_t *umcf);

/* Starts the worker's daily check; cancelable, so it never holds exit. */
ngx_int_t ngx_umlo_keyexp_init_process(ngx_cycle_t *cycle,
    ngx_umlo_main_conf_t *umcf);


#endif /* _NGX_UMLO_KEYEXP_H_INCLUDED_ */
