/*
 * Copyright (C) ngx_umlo authors
 *
 * hiredis' async API on nginx events.  The hiredis socket is wrapped in an
 * ngx_connection_t and registered level-triggered, so a single
 * redisAsyncHandleRead() per event is enough even though hiredis reads at
 * most one buffer at a time (no draining loop under edge-triggered epoll).
 */


#include "ngx_umlo_redis.h"
#include <hiredis/async.h>


#define NGX_UMLO_REDIS_RETRY  1000    /* ms between connection attempts */


struct ngx_umlo_redis_s {
    ngx_umlo_main_conf_t     *umcf;
    ngx_log_t                *log;
    redisAsyncContext        *ac;
    ngx_connection_t         *conn;
    ngx_msec_t                retry_at;
    ngx_uint_t                errors;        /* for the metrics location */
    u_char                    error[160];
};


typedef struct {
    ngx_umlo_redis_t         *rd;
    ngx_umlo_redis_reply_pt   handler;
    void                     *data;
    ngx_event_t               timer;
} ngx_umlo_redis_call_t;


static ngx_int_t ngx_umlo_redis_connect(ngx_umlo_redis_t *rd);
static void ngx_umlo_redis_connected(const redisAsyncContext *ac, int status);
static void ngx_umlo_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_umlo_redis_setup_reply(redisAsyncContext *ac, void *r,
    void *data);
static void ngx_umlo_redis_add_read(void *privdata);
static void ngx_umlo_redis_del_read(void *privdata);
static void ngx_umlo_redis_add_write(void *privdata);
static void ngx_umlo_redis_del_write(void *privdata);
static void ngx_umlo_redis_cleanup(void *privdata);
static void ngx_umlo_redis_read_handler(ngx_event_t *ev);
static void ngx_umlo_redis_write_handler(ngx_event_t *ev);
static ngx_umlo_redis_call_t *ngx_umlo_redis_call(ngx_umlo_redis_t *rd,
    ngx_umlo_redis_reply_pt handler, void *data);
static void ngx_umlo_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_umlo_redis_timeout(ngx_event_t *ev);
static void ngx_umlo_redis_set_error(ngx_umlo_redis_t *rd, const char *what,
    const char *detail);


ngx_umlo_redis_t *
ngx_umlo_redis_create(ngx_cycle_t *cycle, ngx_umlo_main_conf_t *umcf)
{
    ngx_umlo_redis_t  *rd;

    rd = ngx_pcalloc(cycle->pool, sizeof(ngx_umlo_redis_t));
    if (rd == NULL) {
        return NULL;
    }

    rd->umcf = umcf;
    rd->log = cycle->log;

    return rd;
}


void
ngx_umlo_redis_destroy(ngx_umlo_redis_t *rd)
{
    if (rd != NULL && rd->ac != NULL) {
        /* pending callbacks run with NULL, cleanup frees the connection */
        redisAsyncFree(rd->ac);
        rd->ac = NULL;
    }
}


const char *
ngx_umlo_redis_error(ngx_umlo_redis_t *rd)
{
    return (const char *) rd->error;
}


ngx_uint_t
ngx_umlo_redis_errors(ngx_umlo_redis_t *rd)
{
    return rd->errors;
}


ngx_int_t
ngx_umlo_redis_command(ngx_umlo_redis_t *rd, ngx_umlo_redis_reply_pt handler,
    void *data, int argc, const char **argv, const size_t *argvlen)
{
    ngx_umlo_redis_call_t  *call;

    if (ngx_umlo_redis_connect(rd) != NGX_OK) {
        return NGX_ERROR;
    }

    call = ngx_umlo_redis_call(rd, handler, data);
    if (call == NULL) {
        return NGX_ERROR;
    }

    if (redisAsyncCommandArgv(rd->ac, ngx_umlo_redis_reply, call, argc,
                              argv, argvlen)
        != REDIS_OK)
    {
        ngx_del_timer(&call->timer);
        ngx_free(call);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_umlo_redis_commandf(ngx_umlo_redis_t *rd, ngx_umlo_redis_reply_pt handler,
    void *data, const char *fmt, ...)
{
    int                     rc;
    va_list                 args;
    ngx_umlo_redis_call_t  *call;

    if (ngx_umlo_redis_connect(rd) != NGX_OK) {
        return NGX_ERROR;
    }

    call = ngx_umlo_redis_call(rd, handler, data);
    if (call == NULL) {
        return NGX_ERROR;
    }

    va_start(args, fmt);
    rc = redisvAsyncCommand(rd->ac, ngx_umlo_redis_reply, call, fmt, args);
    va_end(args);

    if (rc != REDIS_OK) {
        ngx_del_timer(&call->timer);
        ngx_free(call);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_umlo_redis_call_t *
ngx_umlo_redis_call(ngx_umlo_redis_t *rd, ngx_umlo_redis_reply_pt handler,
    void *data)
{
    ngx_umlo_redis_call_t  *call;

    /* heap, not a request pool: hiredis may call back after a timeout */
    call = ngx_calloc(sizeof(ngx_umlo_redis_call_t), rd->log);
    if (call == NULL) {
        return NULL;
    }

    call->rd = rd;
    call->handler = handler;
    call->data = data;

    call->timer.handler = ngx_umlo_redis_timeout;
    call->timer.data = call;
    call->timer.log = rd->log;
    call->timer.cancelable = 1;

    ngx_add_timer(&call->timer, rd->umcf->redis_timeout);

    return call;
}


static void
ngx_umlo_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply             *reply = r;
    ngx_umlo_redis_call_t  *call = privdata;

    if (call->timer.timer_set) {
        ngx_del_timer(&call->timer);
    }

    if (reply == NULL && call->rd->error[0] == '\0') {
        ngx_umlo_redis_set_error(call->rd, "connection lost",
                                 ac->errstr[0] ? ac->errstr : NULL);
    }

    call->handler(reply, call->data);

    ngx_free(call);
}


static void
ngx_umlo_redis_timeout(ngx_event_t *ev)
{
    ngx_umlo_redis_call_t  *call = ev->data;

    ngx_umlo_redis_t  *rd;

    rd = call->rd;

    ngx_umlo_redis_set_error(rd, "no answer in time (umlo_redis_timeout)",
                             NULL);

    ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                  "umlo: redis %V did not answer within %M ms, reconnecting",
                  &rd->umcf->redis_addr, rd->umcf->redis_timeout);

    /*
     * A silent Redis may never answer: dropping the context answers every
     * pending command (this one included) with NULL and frees the calls.
     */
    if (rd->ac != NULL) {
        redisAsyncFree(rd->ac);
    }
}


static ngx_int_t
ngx_umlo_redis_connect(ngx_umlo_redis_t *rd)
{
    redisAsyncContext     *ac;
    ngx_connection_t      *c;
    ngx_umlo_main_conf_t  *umcf;

    if (rd->ac != NULL) {
        return NGX_OK;
    }

    if (ngx_current_msec < rd->retry_at) {
        return NGX_ERROR;
    }

    rd->retry_at = ngx_current_msec + NGX_UMLO_REDIS_RETRY;

    umcf = rd->umcf;

    /* the address is numeric (resolved at configuration time): no DNS */
    if (umcf->redis_unix.len) {
        ac = redisAsyncConnectUnix((char *) umcf->redis_unix.data);

    } else {
        ac = redisAsyncConnect((char *) umcf->redis_host.data,
                               umcf->redis_port);
    }

    if (ac == NULL) {
        ngx_umlo_redis_set_error(rd, "out of memory", NULL);
        return NGX_ERROR;
    }

    if (ac->err) {
        ngx_umlo_redis_set_error(rd, "cannot connect", ac->errstr);
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "umlo: cannot connect to redis %V: %s",
                      &umcf->redis_addr, ac->errstr);
        redisAsyncFree(ac);
        return NGX_ERROR;
    }

    c = ngx_get_connection(ac->c.fd, rd->log);
    if (c == NULL) {
        ngx_umlo_redis_set_error(rd, "no free worker connection", NULL);
        redisAsyncFree(ac);
        return NGX_ERROR;
    }

    c->data = rd;
    c->read->handler = ngx_umlo_redis_read_handler;
    c->write->handler = ngx_umlo_redis_write_handler;
    c->read->log = rd->log;
    c->write->log = rd->log;

    rd->ac = ac;
    rd->conn = c;

    ac->data = rd;
    ac->ev.data = rd;
    ac->ev.addRead = ngx_umlo_redis_add_read;
    ac->ev.delRead = ngx_umlo_redis_del_read;
    ac->ev.addWrite = ngx_umlo_redis_add_write;
    ac->ev.delWrite = ngx_umlo_redis_del_write;
    ac->ev.cleanup = ngx_umlo_redis_cleanup;

    redisAsyncSetConnectCallback(ac, ngx_umlo_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_umlo_redis_disconnected);

    /* hiredis sends queued commands in order: these go first */
    if (umcf->redis_password.len) {
        redisAsyncCommand(ac, ngx_umlo_redis_setup_reply, "AUTH", "AUTH %b",
                          umcf->redis_password.data,
                          umcf->redis_password.len);
    }

    if (umcf->redis_db) {
        redisAsyncCommand(ac, ngx_umlo_redis_setup_reply, "SELECT",
                          "SELECT %d", (int) umcf->redis_db);
    }

    return NGX_OK;
}


static void
ngx_umlo_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_umlo_redis_t  *rd = ac->data;

    if (status != REDIS_OK) {
        ngx_umlo_redis_set_error(rd, "cannot connect", ac->errstr);
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "umlo: cannot connect to redis %V: %s",
                      &rd->umcf->redis_addr, ac->errstr);
        return;
    }

    rd->error[0] = '\0';

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rd->log, 0,
                   "umlo: connected to redis %V", &rd->umcf->redis_addr);
}


static void
ngx_umlo_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_umlo_redis_t  *rd = ac->data;

    if (status != REDIS_OK) {
        ngx_umlo_redis_set_error(rd, "connection lost", ac->errstr);
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "umlo: lost connection to redis %V: %s",
                      &rd->umcf->redis_addr, ac->errstr);
    }
}


static void
ngx_umlo_redis_setup_reply(redisAsyncContext *ac, void *r, void *data)
{
    redisReply        *reply = r;
    ngx_umlo_redis_t  *rd = ac->data;

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        ngx_umlo_redis_set_error(rd, data, reply->str);
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "umlo: redis %V refused %s: %s",
                      &rd->umcf->redis_addr, (char *) data, reply->str);
    }
}


static void
ngx_umlo_redis_set_error(ngx_umlo_redis_t *rd, const char *what,
    const char *detail)
{
    u_char  *p, *last;

    rd->errors++;

    last = rd->error + sizeof(rd->error) - 1;

    p = ngx_slprintf(rd->error, last, "redis %V: %s", &rd->umcf->redis_addr,
                     what);
    if (detail != NULL) {
        p = ngx_slprintf(p, last, " (%s)", detail);
    }

    *p = '\0';
}


static void
ngx_umlo_redis_add_read(void *privdata)
{
    ngx_umlo_redis_t  *rd = privdata;

    if (rd->conn != NULL && !rd->conn->read->active) {
        if (ngx_add_event(rd->conn->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, rd->log, 0,
                          "umlo: cannot add redis read event");
        }
    }
}


static void
ngx_umlo_redis_del_read(void *privdata)
{
    ngx_umlo_redis_t  *rd = privdata;

    if (rd->conn != NULL && rd->conn->read->active) {
        (void) ngx_del_event(rd->conn->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_umlo_redis_add_write(void *privdata)
{
    ngx_umlo_redis_t  *rd = privdata;

    if (rd->conn != NULL && !rd->conn->write->active) {
        if (ngx_add_event(rd->conn->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, rd->log, 0,
                          "umlo: cannot add redis write event");
        }
    }
}


static void
ngx_umlo_redis_del_write(void *privdata)
{
    ngx_umlo_redis_t  *rd = privdata;

    if (rd->conn != NULL && rd->conn->write->active) {
        (void) ngx_del_event(rd->conn->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_umlo_redis_cleanup(void *privdata)
{
    ngx_umlo_redis_t  *rd = privdata;

    ngx_connection_t  *c;

    c = rd->conn;

    rd->ac = NULL;
    rd->conn = NULL;

    if (c == NULL) {
        return;
    }

    /* hiredis closes the socket itself, right after this returns */
    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


static void
ngx_umlo_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ngx_umlo_redis_t  *rd;

    rd = c->data;

    /* may free the context and c: touch neither afterwards */
    redisAsyncHandleRead(rd->ac);
}


static void
ngx_umlo_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ngx_umlo_redis_t  *rd;

    rd = c->data;

    redisAsyncHandleWrite(rd->ac);
}
