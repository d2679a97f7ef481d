/*
 * Copyright (C) ngx_umlo authors
 *
 * Directives, configuration and the worker life cycle.
 */


#include "ngx_umlo_module.h"
#include "ngx_umlo_handler.h"
#include "ngx_umlo_redis.h"
#include "ngx_umlo_sync.h"
#include "ngx_umlo_cache.h"
#include "ngx_umlo_results.h"
#include "ngx_umlo_store.h"
#include "ngx_umlo_webhook.h"
#include "ngx_umlo_keyexp.h"
#include "ngx_umlo_bulk.h"
#include "ngx_umlo_task.h"

#include <curl/curl.h>


#define NGX_UMLO_SECRET_MAX  4096


static void *ngx_umlo_create_main_conf(ngx_conf_t *cf);
static char *ngx_umlo_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_umlo_create_loc_conf(ngx_conf_t *cf);
static char *ngx_umlo_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_umlo_org(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_umlo_api_base(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_umlo_api_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_umlo_admin_token_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_umlo_handler_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_umlo_tasks_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_umlo_init_process(ngx_cycle_t *cycle);
static void ngx_umlo_exit_process(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_umlo_concurrency_bounds = {
    ngx_conf_check_num_bounds, 1, 256
};

static ngx_conf_num_bounds_t  ngx_umlo_retries_bounds = {
    ngx_conf_check_num_bounds, 0, 20
};

static ngx_conf_num_bounds_t  ngx_umlo_selective_bounds = {
    ngx_conf_check_num_bounds, 1, 10000
};

static ngx_conf_num_bounds_t  ngx_umlo_history_bounds = {
    ngx_conf_check_num_bounds, 1, 10000
};

/* a filter's matches fit on one page of the query engine */
static ngx_conf_num_bounds_t  ngx_umlo_bulk_users_bounds = {
    ngx_conf_check_num_bounds, 1, 1000
};

static ngx_conf_num_bounds_t  ngx_umlo_bulk_audit_bounds = {
    ngx_conf_check_num_bounds, 1, 100000
};


static ngx_conf_num_bounds_t  ngx_umlo_webhook_log_bounds = {
    ngx_conf_check_num_bounds, 1, 10000
};


static ngx_command_t  ngx_umlo_commands[] = {

    { ngx_string("umlo_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_umlo_redis_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("umlo_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, redis_timeout),
      NULL },

    { ngx_string("umlo_org"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_umlo_org,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("umlo_api_base"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_umlo_api_base,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("umlo_api_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_umlo_api_key_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("umlo_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, thread_pool_name),
      NULL },

    { ngx_string("umlo_sync_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, sync_concurrency),
      &ngx_umlo_concurrency_bounds },

    { ngx_string("umlo_sync_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, sync_timeout),
      NULL },

    { ngx_string("umlo_sync_retries"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, sync_retries),
      &ngx_umlo_retries_bounds },

    { ngx_string("umlo_sync_lock_lease"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, sync_lease),
      NULL },

    { ngx_string("umlo_sync_grace"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, sync_grace),
      NULL },

    { ngx_string("umlo_sync_selective_max"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, selective_max),
      &ngx_umlo_selective_bounds },

    { ngx_string("umlo_sync_history"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, history),
      &ngx_umlo_history_bounds },

    { ngx_string("umlo_users_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, users_cache),
      NULL },

    { ngx_string("umlo_body_max"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, body_max),
      NULL },

    { ngx_string("umlo_admin_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_umlo_admin_token_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("umlo_bulk_max_users"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, bulk_max_users),
      &ngx_umlo_bulk_users_bounds },

    { ngx_string("umlo_bulk_max_data_age"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, bulk_max_age),
      NULL },

    { ngx_string("umlo_bulk_token_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, bulk_token_ttl),
      NULL },

    { ngx_string("umlo_bulk_retention"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, bulk_retention),
      NULL },

    { ngx_string("umlo_bulk_audit_max"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, bulk_audit_max),
      &ngx_umlo_bulk_audit_bounds },

    { ngx_string("umlo_bulk_protected_group"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, bulk_protected),
      NULL },

    { ngx_string("umlo_bulk_actor"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, bulk_actor),
      NULL },

    { ngx_string("umlo_bulk"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_umlo_handler_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_umlo_bulk_handler },

    { ngx_string("umlo_tasks"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_umlo_tasks_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_umlo_tasks_handler },

    { ngx_string("umlo_tasks_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, tasks_interval),
      NULL },

    { ngx_string("umlo_tasks_filter_min_every"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, tasks_filter_min),
      NULL },

    /* deprecated: nginx -t warns; see docs/directives.md */
    { ngx_string("umlo_tasks_webhook"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_umlo_webhook_tasks_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("umlo_webhook"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_umlo_webhook_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("umlo_webhook_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, webhook_timeout),
      NULL },

    { ngx_string("umlo_webhook_retries"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, webhook_retries),
      &ngx_umlo_retries_bounds },

    { ngx_string("umlo_webhook_backoff"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, webhook_backoff),
      NULL },

    { ngx_string("umlo_webhook_log"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_umlo_main_conf_t, webhook_log),
      &ngx_umlo_webhook_log_bounds },

    { ngx_string("umlo_api_key_expires"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_umlo_keyexp_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("umlo_history"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_umlo_handler_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_umlo_history_handler },

    { ngx_string("umlo_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_umlo_handler_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_umlo_prom_handler },

    { ngx_string("umlo_sync"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_umlo_handler_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_umlo_sync_handler },

    { ngx_string("umlo_users"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_umlo_handler_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_umlo_users_handler },

    { ngx_string("umlo_dashboard"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_umlo_handler_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_umlo_dashboard_handler },

    { ngx_string("umlo_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_umlo_handler_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_umlo_status_handler },

      ngx_null_command
};


static ngx_http_module_t  ngx_umlo_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_umlo_create_main_conf,             /* create main configuration */
    ngx_umlo_init_main_conf,               /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_umlo_create_loc_conf,              /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_umlo_module = {
    NGX_MODULE_V1,
    &ngx_umlo_module_ctx,                  /* module context */
    ngx_umlo_commands,                     /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_umlo_init_process,                 /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_umlo_exit_process,                 /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_umlo_create_main_conf(ngx_conf_t *cf)
{
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_pcalloc(cf->pool, sizeof(ngx_umlo_main_conf_t));
    if (umcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     umcf->redis_addr = { 0, NULL };
     *     umcf->org = { 0, NULL };
     *     umcf->api_key = { 0, NULL };
     *     umcf->thread_pool_name = { 0, NULL };
     *     umcf->used = 0;
     */

    umcf->redis_db = NGX_CONF_UNSET;
    umcf->redis_timeout = NGX_CONF_UNSET_MSEC;
    umcf->sync_concurrency = NGX_CONF_UNSET_UINT;
    umcf->sync_timeout = NGX_CONF_UNSET_MSEC;
    umcf->sync_retries = NGX_CONF_UNSET_UINT;
    umcf->sync_lease = NGX_CONF_UNSET_MSEC;
    umcf->sync_grace = NGX_CONF_UNSET_MSEC;
    umcf->selective_max = NGX_CONF_UNSET_UINT;
    umcf->history = NGX_CONF_UNSET_UINT;
    umcf->users_cache = NGX_CONF_UNSET_SIZE;
    umcf->body_max = NGX_CONF_UNSET_SIZE;
    umcf->webhook_timeout = NGX_CONF_UNSET_MSEC;
    umcf->webhook_retries = NGX_CONF_UNSET_UINT;
    umcf->webhook_backoff = NGX_CONF_UNSET_MSEC;
    umcf->webhook_log = NGX_CONF_UNSET_UINT;
    umcf->key_warn_days = NGX_CONF_UNSET_UINT;
    umcf->bulk_max_users = NGX_CONF_UNSET_UINT;
    umcf->bulk_max_age = NGX_CONF_UNSET;
    umcf->bulk_token_ttl = NGX_CONF_UNSET_MSEC;
    umcf->bulk_retention = NGX_CONF_UNSET;
    umcf->bulk_audit_max = NGX_CONF_UNSET_UINT;
    umcf->bulk_protected = NGX_CONF_UNSET_PTR;
    umcf->tasks_interval = NGX_CONF_UNSET_MSEC;
    umcf->tasks_filter_min = NGX_CONF_UNSET;

    return umcf;
}


static char *
ngx_umlo_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_umlo_main_conf_t  *umcf = conf;

    ngx_conf_init_value(umcf->redis_db, 0);
    ngx_conf_init_msec_value(umcf->redis_timeout, 2000);
    ngx_conf_init_uint_value(umcf->sync_concurrency, 16);
    ngx_conf_init_msec_value(umcf->sync_timeout, 30000);
    ngx_conf_init_uint_value(umcf->sync_retries, 5);
    ngx_conf_init_msec_value(umcf->sync_lease, 30000);
    ngx_conf_init_msec_value(umcf->sync_grace, 300000);
    ngx_conf_init_uint_value(umcf->selective_max, 100);
    ngx_conf_init_uint_value(umcf->history, 50);
    ngx_conf_init_size_value(umcf->users_cache, 32 * 1024 * 1024);
    ngx_conf_init_size_value(umcf->body_max, 64 * 1024);
    ngx_conf_init_msec_value(umcf->webhook_timeout, 5000);
    ngx_conf_init_uint_value(umcf->webhook_retries, 3);
    ngx_conf_init_msec_value(umcf->webhook_backoff, 1000);
    ngx_conf_init_uint_value(umcf->webhook_log, 100);
    ngx_conf_init_uint_value(umcf->key_warn_days, 14);
    ngx_conf_init_uint_value(umcf->bulk_max_users, 100);
    ngx_conf_init_value(umcf->bulk_max_age, 86400);
    ngx_conf_init_msec_value(umcf->bulk_token_ttl, 900000);
    ngx_conf_init_value(umcf->bulk_retention, 30 * 86400);
    ngx_conf_init_uint_value(umcf->bulk_audit_max, 10000);
    ngx_conf_init_ptr_value(umcf->bulk_protected, NULL);
    ngx_conf_init_msec_value(umcf->tasks_interval, 30000);

    if (umcf->tasks_interval < 1000) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "umlo: \"umlo_tasks_interval\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    /* a daily task runs once a day: it must always be allowed */
    ngx_conf_init_value(umcf->tasks_filter_min, 3600);

    if (umcf->tasks_filter_min < 60 || umcf->tasks_filter_min > 86400) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "umlo: \"umlo_tasks_filter_min_every\" must be "
                      "from 60s to 1d");
        return NGX_CONF_ERROR;
    }

    if (umcf->sync_lease < 3000) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "umlo: \"umlo_sync_lock_lease\" must be at least 3s "
                      "so that a running sync can renew it in time");
        return NGX_CONF_ERROR;
    }

    if (umcf->api_base.data == NULL) {
        ngx_str_set(&umcf->api_base, "https://api.atlassian.com");
    }

    if (umcf->thread_pool_name.data == NULL) {
        ngx_str_set(&umcf->thread_pool_name, "default");
    }

    if (!umcf->used) {
        return NGX_CONF_OK;
    }

    if (umcf->redis_addr.data == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "umlo: \"umlo_redis\" is required in the http block "
                      "when a umlo_* handler is used");
        return NGX_CONF_ERROR;
    }

    if (umcf->org.data == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "umlo: \"umlo_org\" is required in the http block "
                      "when a umlo_* handler is used");
        return NGX_CONF_ERROR;
    }

    if (umcf->api_key.data == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "umlo: \"umlo_api_key_file\" is required in the http "
                      "block when a umlo_* handler is used");
        return NGX_CONF_ERROR;
    }

    /* nginx itself reports a pool that no "thread_pool" defines */
    umcf->thread_pool = ngx_thread_pool_add(cf, &umcf->thread_pool_name);
    if (umcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_umlo_create_loc_conf(ngx_conf_t *cf)
{
    /*
     * set by ngx_pcalloc():
     *
     *     ulcf->status_uri = { 0, NULL };
     */

    return ngx_pcalloc(cf->pool, sizeof(ngx_umlo_loc_conf_t));
}


static char *
ngx_umlo_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_umlo_main_conf_t  *umcf = conf;

    u_char     *p;
    size_t      len;
    ngx_str_t  *value, s;
    ngx_url_t   u;
    ngx_uint_t  i;

    if (umcf->redis_addr.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    umcf->redis_addr = value[1];

    if (ngx_strncmp(value[1].data, "unix:", 5) == 0) {
        len = value[1].len - 5;
        if (len == 0) {
            return "has an empty unix socket path";
        }

        p = ngx_pnalloc(cf->pool, len + 1);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(p, value[1].data + 5, len);
        p[len] = '\0';
        umcf->redis_unix.data = p;
        umcf->redis_unix.len = len;

    } else {
        ngx_memzero(&u, sizeof(ngx_url_t));
        u.url = value[1];
        u.default_port = 6379;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid redis address \"%V\"%s%s",
                               &value[1], u.err ? ": " : "",
                               u.err ? u.err : "");
            return NGX_CONF_ERROR;
        }

        /* resolve now: hiredis would resolve synchronously in a worker */
        p = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p,
                            NGX_SOCKADDR_STRLEN, 0);
        p[len] = '\0';
        umcf->redis_host.data = p;
        umcf->redis_host.len = len;
        umcf->redis_port = u.port;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            umcf->redis_db = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (umcf->redis_db == NGX_ERROR || umcf->redis_db > 65535) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid redis database \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            s.data = value[i].data + 14;
            s.len = value[i].len - 14;

            if (ngx_umlo_read_secret(cf, &s, &umcf->redis_password,
                                     "umlo_redis password_file")
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_umlo_org(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_umlo_main_conf_t  *umcf = conf;

    u_char     *p;
    ngx_str_t  *value;
    ngx_uint_t  i;

    if (umcf->org.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > NGX_UMLO_ORG_MAX) {
        return "needs an organization id of 1 to 128 characters";
    }

    /* the id becomes part of Redis keys and API paths */
    for (i = 0; i < value[1].len; i++) {
        if (!(isalnum(value[1].data[i]) || value[1].data[i] == '-'
              || value[1].data[i] == '_' || value[1].data[i] == '.'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid organization id \"%V\": only "
                               "letters, digits, \"-\", \"_\" and \".\" "
                               "are allowed", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    p = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(p, value[1].data, value[1].len);
    p[value[1].len] = '\0';

    umcf->org.data = p;
    umcf->org.len = value[1].len;

    return NGX_CONF_OK;
}


static char *
ngx_umlo_api_base(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_umlo_main_conf_t  *umcf = conf;

    u_char     *p;
    size_t      len;
    ngx_str_t  *value;

    if (umcf->api_base.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    len = value[1].len;

    if (!(len > 7 && ngx_strncmp(value[1].data, "http://", 7) == 0)
        && !(len > 8 && ngx_strncmp(value[1].data, "https://", 8) == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URL \"%V\": it must start with "
                           "\"https://\" or \"http://\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    while (value[1].data[len - 1] == '/') {
        len--;
    }

    p = ngx_pnalloc(cf->pool, len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(p, value[1].data, len);
    p[len] = '\0';

    umcf->api_base.data = p;
    umcf->api_base.len = len;

    return NGX_CONF_OK;
}


static char *
ngx_umlo_api_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_umlo_main_conf_t  *umcf = conf;

    ngx_str_t  *value;

    if (umcf->api_key_file.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    umcf->api_key_file = value[1];

    if (ngx_umlo_read_secret(cf, &umcf->api_key_file, &umcf->api_key,
                             "umlo_api_key_file")
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_umlo_admin_token_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_umlo_main_conf_t  *umcf = conf;

    ngx_str_t  *value;

    if (umcf->admin_token_file.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    umcf->admin_token_file = value[1];

    if (ngx_umlo_read_secret(cf, &umcf->admin_token_file, &umcf->admin_token,
                             "umlo_admin_token_file")
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_umlo_handler_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_umlo_loc_conf_t  *ulcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_umlo_main_conf_t      *umcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = (ngx_http_handler_pt) cmd->post;

    /* umlo_sync status=URI: where answers point clients to follow a sync */
    if (cf->args->nelts == 2) {
        value = cf->args->elts;

        if (value[1].len < 8
            || ngx_strncmp(value[1].data, "status=", 7) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected "
                               "\"status=URI\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        ulcf->status_uri.data = value[1].data + 7;
        ulcf->status_uri.len = value[1].len - 7;
    }

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_umlo_module);
    umcf->used = 1;

    return NGX_CONF_OK;
}


/* umlo_tasks also starts each worker's look for due tasks */

static char *
ngx_umlo_tasks_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_umlo_module);
    umcf->tasks_used = 1;

    return ngx_umlo_handler_directive(cf, cmd, conf);
}


/*
 * Reads a secret file whole, without the trailing newline.  The secret is
 * kept only in memory; no message here ever prints it.
 */

ngx_int_t
ngx_umlo_read_secret(ngx_conf_t *cf, ngx_str_t *path, ngx_str_t *secret,
    const char *directive)
{
    u_char           *buf;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t         name;
    ngx_file_info_t   fi;

    name = *path;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s: cannot open \"%V\"", directive, &name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s: cannot stat \"%V\"", directive, &name);
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    if (fi.st_mode & S_IROTH) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "%s: \"%V\" is readable by every user of this "
                           "machine; make it mode 0600 or 0640",
                           directive, &name);
    }

    buf = ngx_pnalloc(cf->pool, NGX_UMLO_SECRET_MAX + 1);
    if (buf == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    n = ngx_read_fd(fd, buf, NGX_UMLO_SECRET_MAX + 1);
    (void) ngx_close_file(fd);

    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s: cannot read \"%V\"", directive, &name);
        return NGX_ERROR;
    }

    if (n > NGX_UMLO_SECRET_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: \"%V\" is larger than %d bytes",
                           directive, &name, NGX_UMLO_SECRET_MAX);
        return NGX_ERROR;
    }

    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'
                     || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
    {
        n--;
    }

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: \"%V\" is empty", directive, &name);
        return NGX_ERROR;
    }

    buf[n] = '\0';
    secret->data = buf;
    secret->len = n;

    return NGX_OK;
}


void
ngx_umlo_store_conf(ngx_umlo_main_conf_t *umcf, ngx_umlo_store_conf_t *conf)
{
    conf->host = (char *) umcf->redis_host.data;
    conf->port = umcf->redis_port;
    conf->unix_path = umcf->redis_unix.len
                      ? (char *) umcf->redis_unix.data : NULL;
    conf->password = umcf->redis_password.len
                     ? (char *) umcf->redis_password.data : NULL;
    conf->db = (int) umcf->redis_db;
    conf->timeout_ms = (unsigned) umcf->redis_timeout;
}


static ngx_int_t
ngx_umlo_init_process(ngx_cycle_t *cycle)
{
    ngx_umlo_main_conf_t  *umcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    umcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_umlo_module);
    if (umcf == NULL || !umcf->used) {
        return NGX_OK;
    }

    /* not in the master: libcurl's global state must not cross fork() */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "umlo: curl_global_init() failed");
        return NGX_ERROR;
    }

    umcf->redis = ngx_umlo_redis_create(cycle, umcf);
    if (umcf->redis == NULL) {
        return NGX_ERROR;
    }

    if (ngx_umlo_keyexp_init_process(cycle, umcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_umlo_tasks_init_process(cycle, umcf);
}


static void
ngx_umlo_exit_process(ngx_cycle_t *cycle)
{
    ngx_umlo_main_conf_t  *umcf;

    umcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_umlo_module);
    if (umcf == NULL || umcf->redis == NULL) {
        return;
    }

    ngx_umlo_redis_destroy(umcf->redis);
    umcf->redis = NULL;

    ngx_umlo_results_exit();
    ngx_umlo_cache_exit();

    curl_global_cleanup();
}
