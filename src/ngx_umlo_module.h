/*
 * Copyright (C) ngx_umlo authors
 *
 * Shared configuration of the module: what every other file needs to know
 * about the http{}-level settings and the per-worker runtime.
 */

#ifndef _NGX_UMLO_MODULE_H_INCLUDED_
#define _NGX_UMLO_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_UMLO_VERSION          "0.1.0"
#define NGX_UMLO_ORG_MAX          128


typedef struct ngx_umlo_redis_s  ngx_umlo_redis_t;


typedef struct {
    ngx_str_t             redis_addr;        /* umlo_redis, as written */
    ngx_str_t             redis_host;        /* numeric, NUL-terminated */
    in_port_t             redis_port;
    ngx_str_t             redis_unix;        /* NUL-terminated socket path */
    ngx_int_t             redis_db;          /* umlo_redis db= */
    ngx_str_t             redis_password;    /* umlo_redis password_file= */
    ngx_msec_t            redis_timeout;     /* umlo_redis_timeout */

    ngx_str_t             org;               /* umlo_org */
    ngx_str_t             api_base;          /* umlo_api_base */
    ngx_str_t             api_key_file;      /* umlo_api_key_file */
    ngx_str_t             api_key;           /* file contents: never logged */

    ngx_str_t             thread_pool_name;  /* umlo_thread_pool */
    ngx_thread_pool_t    *thread_pool;

    ngx_uint_t            sync_concurrency;  /* umlo_sync_concurrency */
    ngx_msec_t            sync_timeout;      /* umlo_sync_timeout */
    ngx_uint_t            sync_retries;      /* umlo_sync_retries */
    ngx_msec_t            sync_lease;        /* umlo_sync_lock_lease */
    ngx_msec_t            sync_grace;        /* umlo_sync_grace */
    ngx_uint_t            selective_max;     /* umlo_sync_selective_max */
    ngx_uint_t            history;           /* umlo_sync_history */
    size_t                users_cache;       /* umlo_users_cache */
    size_t                body_max;          /* umlo_body_max */
    ngx_str_t             admin_token_file;  /* umlo_admin_token_file */
    ngx_str_t             admin_token;       /* file contents: never logged */

    ngx_array_t          *webhooks;          /* umlo_webhook: of
                                                ngx_umlo_webhook_t */
    ngx_msec_t            webhook_timeout;   /* umlo_webhook_timeout */
    ngx_uint_t            webhook_retries;   /* umlo_webhook_retries */
    ngx_msec_t            webhook_backoff;   /* umlo_webhook_backoff */
    ngx_uint_t            webhook_log;       /* umlo_webhook_log */

    time_t                key_expires;       /* umlo_api_key_expires,
                                                0: not set */
    ngx_uint_t            key_warn_days;     /* ... warn=DAYS */
    ngx_uint_t            bulk_max_users;    /* umlo_bulk_max_users */
    time_t                bulk_max_age;      /* umlo_bulk_max_data_age */
    ngx_msec_t            bulk_token_ttl;    /* umlo_bulk_token_ttl */
    time_t                bulk_retention;    /* umlo_bulk_retention */
    ngx_uint_t            bulk_audit_max;    /* umlo_bulk_audit_max */
    ngx_array_t          *bulk_protected;    /* umlo_bulk_protected_group */
    ngx_http_complex_value_t  *bulk_actor;   /* umlo_bulk_actor */

    ngx_flag_t            tasks_used;        /* a umlo_tasks location */
    ngx_msec_t            tasks_interval;    /* umlo_tasks_interval */
    time_t                tasks_filter_min;  /* umlo_tasks_filter_min_every */

    ngx_flag_t            used;              /* a umlo_* handler exists */

    ngx_umlo_redis_t     *redis;             /* per worker, init_process */
} ngx_umlo_main_conf_t;


typedef struct {
    ngx_str_t             status_uri;        /* umlo_sync status= */
} ngx_umlo_loc_conf_t;


extern ngx_module_t  ngx_umlo_module;


struct ngx_umlo_store_conf_s;

/*
 * Reads a secret file whole, without its trailing newline; nothing ever
 * logs its contents.
 */
ngx_int_t ngx_umlo_read_secret(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *secret, const char *directive);

/* The thread side's Redis settings, pointing into the configuration. */
void ngx_umlo_store_conf(ngx_umlo_main_conf_t *umcf,
    struct ngx_umlo_store_conf_s *conf);


#endif /* _NGX_UMLO_MODULE_H_INCLUDED_ */
