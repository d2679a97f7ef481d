/*
 * Copyright (C) ngx_umlo authors
 *
 * Webhooks: a signed JSON POST per event and endpoint, sent from a
 * thread-pool task with timeouts and retries; the outcome of each
 * delivery is kept in Redis (ngx_umlo_store_delivery()).
 */

#ifndef _NGX_UMLO_WEBHOOK_H_INCLUDED_
#define _NGX_UMLO_WEBHOOK_H_INCLUDED_


#include "ngx_umlo_module.h"
#include <jansson.h>


#define NGX_UMLO_EV_SYNC_STARTED    0x01
#define NGX_UMLO_EV_SYNC_SUCCEEDED  0x02
#define NGX_UMLO_EV_SYNC_FAILED     0x04
#define NGX_UMLO_EV_SYNC_CANCELLED  0x08
#define NGX_UMLO_EV_KEY_EXPIRING    0x10
#define NGX_UMLO_EV_TASK_COMPLETED  0x20
#define NGX_UMLO_EV_TASK_FAILED     0x40
#define NGX_UMLO_EV_TASKS           0x60
#define NGX_UMLO_EV_ALL             0x7f


typedef struct {
    ngx_str_t     url;        /* NUL-terminated */
    ngx_str_t     name;       /* url without credentials or query */
    ngx_str_t     secret;     /* secret_file= contents, or empty */
    ngx_uint_t    events;     /* NGX_UMLO_EV_* */
} ngx_umlo_webhook_t;


char *ngx_umlo_webhook_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* umlo_tasks_webhook URL: deprecated, an unsigned task-events receiver */
char *ngx_umlo_webhook_tasks_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* NGX_UMLO_EV_* of "sync.STATE", 0 when there is none. */
ngx_uint_t ngx_umlo_webhook_sync_event(const char *state);

/*
 * Sends the event to every webhook subscribed to it, as
 * {"id", "event", "timestamp", "org", FIELD: DATA}; DATA is not consumed
 * and must never carry the API key.  sync_id (or NULL) ties the outcome
 * to a sync in the history.
 */
void ngx_umlo_webhook_emit(ngx_umlo_main_conf_t *umcf, ngx_uint_t event,
    const char *sync_id, const char *field, json_t *data);


#endif /* _NGX_UMLO_WEBHOOK_H_INCLUDED_ */
