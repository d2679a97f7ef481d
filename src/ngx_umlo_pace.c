/*
 * Copyright (C) ngx_umlo authors
 */


#include "ngx_umlo_pace.h"
#include "ngx_umlo_keys.h"


static const char  *ngx_umlo_pace_class[NGX_UMLO_API_NCLASSES] = {
    "admin", "activity"
};


void
ngx_umlo_pace_load(ngx_umlo_store_t *st, ngx_umlo_api_t *api)
{
    int                   i;
    redisReply           *r;
    ngx_umlo_api_pace_t   pace;

    for (i = 0; i < NGX_UMLO_API_NCLASSES; i++) {
        r = ngx_umlo_store_command(st, "GET " NGX_UMLO_KEY_PACE, st->org,
                                   ngx_umlo_pace_class[i]);
        if (r == NULL) {
            /* a hint only: the run learns the limit from its answers */
            st->error[0] = '\0';
            return;
        }

        if (r->type == REDIS_REPLY_STRING
            && ngx_umlo_api_pace_parse(r->str, &pace) == 0)
        {
            ngx_umlo_api_pace_set(api, i, &pace);
        }

        freeReplyObject(r);
    }
}


void
ngx_umlo_pace_save(ngx_umlo_store_t *st, ngx_umlo_api_t *api)
{
    int                   i;
    char                  text[128];
    redisReply           *r;
    ngx_umlo_api_pace_t   pace;

    for (i = 0; i < NGX_UMLO_API_NCLASSES; i++) {
        ngx_umlo_api_pace_get(api, i, &pace);

        if (pace.at == 0) {
            continue;
        }

        ngx_umlo_api_pace_format(text, sizeof(text), &pace);

        r = ngx_umlo_store_command(st, "SET " NGX_UMLO_KEY_PACE " %s PX %d",
                                   st->org, ngx_umlo_pace_class[i], text,
                                   NGX_UMLO_API_PACE_TTL);
        if (r == NULL) {
            st->error[0] = '\0';
            return;
        }

        freeReplyObject(r);
    }
}
