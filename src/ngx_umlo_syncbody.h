/*
 * Copyright (C) ngx_umlo authors
 *
 * The body of POST umlo_sync, checked: plain C with jansson and no nginx
 * headers, so that it can be fuzzed on its own (fuzz/).
 */

#ifndef _NGX_UMLO_SYNCBODY_H_INCLUDED_
#define _NGX_UMLO_SYNCBODY_H_INCLUDED_


#include <stddef.h>
#include <jansson.h>


#define NGX_UMLO_ACCOUNT_ID_MAX  128


typedef struct {
    int          status;          /* 400 */
    const char  *code;            /* "invalid_json", "invalid_users", ... */
    char         message[320];
} ngx_umlo_syncbody_err_t;


/*
 * The body is empty or white space (full sync), {"scope": "full"}, or
 * {"users": ["<accountId>", ...]} with 1 to selective_max ids.  Returns
 * 0 with *users NULL (full) or a new array of the ids (selective); -1
 * with *err filled for bad input, or with err->status 0 when memory ran
 * out.
 */
int ngx_umlo_syncbody_parse(const char *p, size_t len, size_t selective_max,
    json_t **users, ngx_umlo_syncbody_err_t *err);


#endif /* _NGX_UMLO_SYNCBODY_H_INCLUDED_ */
