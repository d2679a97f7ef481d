/*
 * Copyright (C) ngx_umlo authors
 *
 * Webhooks.  The event loop builds the payload and posts one thread task
 * per endpoint; the thread signs and POSTs it with blocking libcurl,
 * retries with exponential backoff, and records the outcome in Redis
 * itself, so that the record survives a worker that exits meanwhile.
 *
 * Signature: hex HMAC-SHA256, keyed with the secret, of
 * "TIMESTAMP.BODY", where TIMESTAMP is the X-Umlo-Timestamp header (unix
 * seconds of this attempt): a receiver that checks the timestamp's age
 * rejects replays, and one that remembers X-Umlo-Delivery drops retries
 * it already processed.
 */


#include "ngx_umlo_webhook.h"
#include "ngx_umlo_store.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>


#define NGX_UMLO_HOOK_ID_LEN      48
#define NGX_UMLO_HOOK_ERRLEN      256
#define NGX_UMLO_HOOK_WATCH_MS    250
#define NGX_UMLO_HOOK_BACKOFF_MAX 300000    /* ms */


typedef struct {
    /* inputs, immutable once posted */
    char                    *url;
    char                    *name;
    char                    *secret;          /* NULL: unsigned */
    size_t                   secret_len;
    char                    *body;            /* malloc()ed */
    const char              *event;
    char                    *org;
    char                    *sync_id;         /* or NULL */
    char                     id[NGX_UMLO_HOOK_ID_LEN];
    ngx_umlo_store_conf_t    redis;
    unsigned                 timeout_ms;
    unsigned                 retries;
    unsigned                 backoff_ms;
    unsigned                 log_max;

    volatile int             cancel;          /* worker exiting */

    /* outcome, read by the event loop when the task completes */
    long                     http_status;
    unsigned                 attempts;
    unsigned                 delivered:1;
    unsigned                 store_failed:1;
    char                     error[NGX_UMLO_HOOK_ERRLEN];

    /* event loop side */
    ngx_pool_t              *pool;
    ngx_log_t               *log;
    ngx_thread_task_t       *task;
    ngx_event_t              watch;
} ngx_umlo_hook_t;


static ngx_umlo_webhook_t *ngx_umlo_webhook_add(ngx_conf_t *cf,
    ngx_umlo_main_conf_t *umcf, ngx_str_t *url);
static ngx_int_t ngx_umlo_webhook_events(ngx_str_t *list, ngx_uint_t *events);
static ngx_int_t ngx_umlo_webhook_name(ngx_pool_t *pool, ngx_str_t *url,
    ngx_str_t *name);
static void ngx_umlo_webhook_post(ngx_umlo_main_conf_t *umcf,
    ngx_umlo_webhook_t *wh, ngx_uint_t event, const char *sync_id,
    const char *field, json_t *data);
static void ngx_umlo_webhook_thread(void *data, ngx_log_t *log);
static int ngx_umlo_webhook_attempt(ngx_umlo_hook_t *hook, CURL *curl);
static int ngx_umlo_webhook_stopped(ngx_umlo_hook_t *hook);
static size_t ngx_umlo_webhook_discard(char *ptr, size_t size, size_t n,
    void *data);
static int ngx_umlo_webhook_progress(void *data, curl_off_t dltotal,
    curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);
static void ngx_umlo_webhook_record(ngx_umlo_hook_t *hook,
    long long started_ms);
static long long ngx_umlo_webhook_now(void);
static void ngx_umlo_webhook_watch(ngx_event_t *ev);
static void ngx_umlo_webhook_done(ngx_event_t *ev);
static void ngx_umlo_webhook_free(ngx_umlo_hook_t *hook);


static const char  *ngx_umlo_webhook_names[] = {
    "sync.started", "sync.succeeded", "sync.failed", "sync.cancelled",
    "key.expiring", "task.completed", "task.failed", NULL
};


/* umlo_webhook URL [secret_file=PATH] [events=LIST] */

char *
ngx_umlo_webhook_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_umlo_main_conf_t  *umcf = conf;

    ngx_str_t           *value, s;
    ngx_uint_t           i;
    ngx_umlo_webhook_t  *wh;

    value = cf->args->elts;

    wh = ngx_umlo_webhook_add(cf, umcf, &value[1]);
    if (wh == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "secret_file=", 12) == 0) {
            s.data = value[i].data + 12;
            s.len = value[i].len - 12;

            if (s.len == 0
                || ngx_umlo_read_secret(cf, &s, &wh->secret,
                                        "umlo_webhook secret_file")
                   != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "events=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            if (ngx_umlo_webhook_events(&s, &wh->events) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": expected a comma list "
                                   "of sync.started, sync.succeeded, "
                                   "sync.failed, sync.cancelled, "
                                   "key.expiring, task.completed, "
                                   "task.failed, or \"all\"", &value[i]);
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


/*
 * The old, unsigned task receiver: kept so that a configuration still
 * loads, but it is now an ordinary receiver of the task events, with
 * retries and the deliveries log.
 */

char *
ngx_umlo_webhook_tasks_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_umlo_main_conf_t  *umcf = conf;

    ngx_str_t           *value;
    ngx_umlo_webhook_t  *wh;

    value = cf->args->elts;

    ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                       "\"umlo_tasks_webhook\" is deprecated, use "
                       "\"umlo_webhook %V events=task.completed,"
                       "task.failed\" (with secret_file=)", &value[1]);

    wh = ngx_umlo_webhook_add(cf, umcf, &value[1]);
    if (wh == NULL) {
        return NGX_CONF_ERROR;
    }

    wh->events = NGX_UMLO_EV_TASKS;

    return NGX_CONF_OK;
}


/* a receiver of every event, unsigned, until its parameters say more */

static ngx_umlo_webhook_t *
ngx_umlo_webhook_add(ngx_conf_t *cf, ngx_umlo_main_conf_t *umcf,
    ngx_str_t *url)
{
    ngx_umlo_webhook_t  *wh;

    if (!(url->len > 7 && ngx_strncmp(url->data, "http://", 7) == 0)
        && !(url->len > 8 && ngx_strncmp(url->data, "https://", 8) == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid webhook URL \"%V\": it must start with "
                           "\"https://\" or \"http://\"", url);
        return NULL;
    }

    if (umcf->webhooks == NULL) {
        umcf->webhooks = ngx_array_create(cf->pool, 2,
                                          sizeof(ngx_umlo_webhook_t));
        if (umcf->webhooks == NULL) {
            return NULL;
        }
    }

    wh = ngx_array_push(umcf->webhooks);
    if (wh == NULL) {
        return NULL;
    }

    ngx_memzero(wh, sizeof(ngx_umlo_webhook_t));
    wh->events = NGX_UMLO_EV_ALL;

    /* the configuration parser NUL-terminates its strings */
    wh->url = *url;

    if (ngx_umlo_webhook_name(cf->pool, &wh->url, &wh->name) != NGX_OK) {
        return NULL;
    }

    return wh;
}


static ngx_int_t
ngx_umlo_webhook_events(ngx_str_t *list, ngx_uint_t *events)
{
    u_char      *p, *last, *comma;
    size_t       len;
    ngx_uint_t   i, found;

    *events = 0;
    p = list->data;
    last = list->data + list->len;

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        len = comma - p;
        found = 0;

        if (len == 3 && ngx_strncmp(p, "all", 3) == 0) {
            *events |= NGX_UMLO_EV_ALL;
            found = 1;
        }

        for (i = 0; !found && ngx_umlo_webhook_names[i]; i++) {
            if (len == ngx_strlen(ngx_umlo_webhook_names[i])
                && ngx_strncmp(p, ngx_umlo_webhook_names[i], len) == 0)
            {
                *events |= (ngx_uint_t) 1 << i;
                found = 1;
            }
        }

        if (!found) {
            return NGX_ERROR;
        }

        p = comma + 1;
    }

    return *events ? NGX_OK : NGX_ERROR;
}


/* what outcomes show: scheme, host and path, never userinfo or query */

static ngx_int_t
ngx_umlo_webhook_name(ngx_pool_t *pool, ngx_str_t *url, ngx_str_t *name)
{
    u_char  *p, *host, *end, *at, *out;

    host = (u_char *) ngx_strstr(url->data, "://") + 3;

    end = host;
    while (*end && *end != '/' && *end != '?' && *end != '#') {
        end++;
    }

    at = NULL;
    for (p = host; p < end; p++) {
        if (*p == '@') {
            at = p;
        }
    }

    out = ngx_pnalloc(pool, url->len + 1);
    if (out == NULL) {
        return NGX_ERROR;
    }

    name->data = out;
    out = ngx_cpymem(out, url->data, host - url->data);

    p = at ? at + 1 : host;
    while (*p && *p != '?' && *p != '#') {
        *out++ = *p++;
    }

    *out = '\0';
    name->len = out - name->data;

    return NGX_OK;
}


ngx_uint_t
ngx_umlo_webhook_sync_event(const char *state)
{
    ngx_uint_t  i;

    for (i = 1; i < 4; i++) {
        if (ngx_strcmp(state, ngx_umlo_webhook_names[i] + 5) == 0) {
            return (ngx_uint_t) 1 << i;
        }
    }

    return 0;
}


void
ngx_umlo_webhook_emit(ngx_umlo_main_conf_t *umcf, ngx_uint_t event,
    const char *sync_id, const char *field, json_t *data)
{
    ngx_uint_t           i;
    ngx_umlo_webhook_t  *wh;

    if (umcf->webhooks == NULL || umcf->thread_pool == NULL) {
        return;
    }

    wh = umcf->webhooks->elts;

    for (i = 0; i < umcf->webhooks->nelts; i++) {
        if (wh[i].events & event) {
            ngx_umlo_webhook_post(umcf, &wh[i], event, sync_id, field, data);
        }
    }
}


static char *
ngx_umlo_webhook_strdup(ngx_pool_t *pool, u_char *s, size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s, len);
    p[len] = '\0';

    return (char *) p;
}


static void
ngx_umlo_webhook_post(ngx_umlo_main_conf_t *umcf, ngx_umlo_webhook_t *wh,
    ngx_uint_t event, const char *sync_id, const char *field, json_t *data)
{
    u_char              rnd[6], *p;
    json_t             *payload;
    ngx_uint_t          i, bit;
    ngx_pool_t         *pool;
    ngx_umlo_hook_t    *hook;
    ngx_thread_task_t  *task;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    task = ngx_thread_task_alloc(pool, sizeof(ngx_umlo_hook_t));
    if (task == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    hook = task->ctx;
    hook->task = task;
    hook->pool = pool;
    hook->log = ngx_cycle->log;

    for (i = 0, bit = 1; !(event & bit); i++, bit <<= 1) { /* void */ }
    hook->event = ngx_umlo_webhook_names[i];

    /* copies: a reload frees the configuration under a running task */
    hook->url = ngx_umlo_webhook_strdup(pool, wh->url.data, wh->url.len);
    hook->name = ngx_umlo_webhook_strdup(pool, wh->name.data, wh->name.len);
    hook->org = ngx_umlo_webhook_strdup(pool, umcf->org.data, umcf->org.len);
    hook->sync_id = sync_id ? ngx_umlo_webhook_strdup(pool,
                                  (u_char *) sync_id, ngx_strlen(sync_id))
                            : NULL;

    if (wh->secret.len) {
        hook->secret = ngx_umlo_webhook_strdup(pool, wh->secret.data,
                                               wh->secret.len);
        hook->secret_len = wh->secret.len;
    }

    if (hook->url == NULL || hook->name == NULL || hook->org == NULL
        || (sync_id && hook->sync_id == NULL)
        || (wh->secret.len && hook->secret == NULL))
    {
        ngx_umlo_webhook_free(hook);
        return;
    }

    ngx_umlo_store_conf(umcf, &hook->redis);
    hook->timeout_ms = (unsigned) umcf->webhook_timeout;
    hook->retries = (unsigned) umcf->webhook_retries;
    hook->backoff_ms = (unsigned) umcf->webhook_backoff;
    hook->log_max = (unsigned) umcf->webhook_log;

    for (i = 0; i < sizeof(rnd); i++) {
        rnd[i] = (u_char) ngx_random();
    }

    p = ngx_snprintf((u_char *) hook->id, NGX_UMLO_HOOK_ID_LEN - 1,
                     "d-%T%03M-", ngx_time(), ngx_current_msec % 1000);
    p = ngx_hex_dump(p, rnd, sizeof(rnd));
    *p = '\0';

    payload = json_pack("{s:s,s:s,s:I,s:s,s:O}",
                        "id", hook->id, "event", hook->event,
                        "timestamp", (json_int_t) ngx_time(),
                        "org", hook->org, field, data);
    if (payload == NULL) {
        ngx_umlo_webhook_free(hook);
        return;
    }

    hook->body = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);

    if (hook->body == NULL) {
        ngx_umlo_webhook_free(hook);
        return;
    }

    task->handler = ngx_umlo_webhook_thread;
    task->event.handler = ngx_umlo_webhook_done;
    task->event.data = hook;

    if (ngx_thread_task_post(umcf->thread_pool, task) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, hook->log, 0,
                      "umlo: webhook %s %s to %s not sent: the thread pool "
                      "\"%V\" did not take it", hook->event, hook->id,
                      hook->name, &umcf->thread_pool_name);
        ngx_umlo_webhook_free(hook);
        return;
    }

    /* like a sync: keeps an exiting worker until the task is done */
    hook->watch.handler = ngx_umlo_webhook_watch;
    hook->watch.data = hook;
    hook->watch.log = hook->log;
    ngx_add_timer(&hook->watch, NGX_UMLO_HOOK_WATCH_MS);
}


static void
ngx_umlo_webhook_thread(void *data, ngx_log_t *log)
{
    ngx_umlo_hook_t  *hook = data;

    CURL       *curl;
    unsigned    delay;
    long long   started, until;

    started = ngx_umlo_webhook_now();

    curl = curl_easy_init();
    if (curl == NULL) {
        ngx_cpystrn((u_char *) hook->error, (u_char *) "curl_easy_init() "
                    "failed", NGX_UMLO_HOOK_ERRLEN);
        ngx_umlo_webhook_record(hook, started);
        return;
    }

    delay = hook->backoff_ms;

    for ( ;; ) {
        hook->attempts++;

        if (ngx_umlo_webhook_attempt(hook, curl) == 0) {
            hook->delivered = 1;
            hook->error[0] = '\0';
            break;
        }

        if (hook->attempts > hook->retries
            || ngx_umlo_webhook_stopped(hook))
        {
            break;
        }

        /* sleep in slices, so that an exiting worker is not held */
        until = ngx_umlo_webhook_now() + delay;

        while (ngx_umlo_webhook_now() < until
               && !ngx_umlo_webhook_stopped(hook))
        {
            ngx_msleep(50);
        }

        if (ngx_umlo_webhook_stopped(hook)) {
            break;
        }

        delay = (delay * 2 > NGX_UMLO_HOOK_BACKOFF_MAX)
                ? NGX_UMLO_HOOK_BACKOFF_MAX : delay * 2;
    }

    curl_easy_cleanup(curl);

    ngx_umlo_webhook_record(hook, started);
}


/* 0: a 2xx answer; -1: hook->error says what went wrong */

static int
ngx_umlo_webhook_attempt(ngx_umlo_hook_t *hook, CURL *curl)
{
    int                 rc;
    char                ts[32], hex[2 * EVP_MAX_MD_SIZE + 1];
    char                header[64 + sizeof(hex)];
    char                cerr[CURL_ERROR_SIZE], *signed_text;
    u_char              mac[EVP_MAX_MD_SIZE];
    size_t              tslen, len;
    CURLcode            code;
    unsigned int        maclen;
    struct curl_slist  *headers, *h;

    headers = NULL;
    rc = -1;

    tslen = snprintf(ts, sizeof(ts), "%lld",
                     ngx_umlo_webhook_now() / 1000);

#define ngx_umlo_webhook_header(...)                                          \
    snprintf(header, sizeof(header), __VA_ARGS__);                            \
    h = curl_slist_append(headers, header);                                   \
    if (h == NULL) {                                                          \
        goto nomem;                                                           \
    }                                                                         \
    headers = h

    ngx_umlo_webhook_header("Content-Type: application/json");
    ngx_umlo_webhook_header("User-Agent: ngx_umlo/" NGX_UMLO_VERSION);
    ngx_umlo_webhook_header("X-Umlo-Event: %s", hook->event);
    ngx_umlo_webhook_header("X-Umlo-Delivery: %s", hook->id);
    ngx_umlo_webhook_header("X-Umlo-Timestamp: %s", ts);
    ngx_umlo_webhook_header("X-Umlo-Attempt: %u", hook->attempts);
    ngx_umlo_webhook_header("Expect:");

    if (hook->secret != NULL) {
        len = tslen + 1 + strlen(hook->body);

        signed_text = malloc(len);
        if (signed_text == NULL) {
            goto nomem;
        }

        memcpy(signed_text, ts, tslen);
        signed_text[tslen] = '.';
        memcpy(signed_text + tslen + 1, hook->body, len - tslen - 1);

        maclen = 0;

        if (HMAC(EVP_sha256(), hook->secret, (int) hook->secret_len,
                 (u_char *) signed_text, len, mac, &maclen)
            == NULL)
        {
            free(signed_text);
            ngx_cpystrn((u_char *) hook->error,
                        (u_char *) "HMAC-SHA256 failed", NGX_UMLO_HOOK_ERRLEN);
            goto done;
        }

        free(signed_text);

        *ngx_hex_dump((u_char *) hex, mac, maclen) = '\0';
        ngx_umlo_webhook_header("X-Umlo-Signature: sha256=%s", hex);
    }

#undef ngx_umlo_webhook_header

    curl_easy_reset(curl);

    cerr[0] = '\0';

    curl_easy_setopt(curl, CURLOPT_URL, hook->url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, hook->body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long) strlen(hook->body));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long) hook->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) hook->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, ngx_umlo_webhook_discard);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION,
                     ngx_umlo_webhook_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, hook);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, cerr);

    code = curl_easy_perform(curl);

    if (code != CURLE_OK) {
        hook->http_status = 0;
        snprintf(hook->error, NGX_UMLO_HOOK_ERRLEN, "%s",
                 code == CURLE_OPERATION_TIMEDOUT
                 ? "no answer within umlo_webhook_timeout"
                 : code == CURLE_ABORTED_BY_CALLBACK
                 ? "stopped: nginx is shutting down"
                 : cerr[0] ? cerr : curl_easy_strerror(code));
        goto done;
    }

    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &hook->http_status);

    if (hook->http_status >= 200 && hook->http_status < 300) {
        rc = 0;

    } else {
        snprintf(hook->error, NGX_UMLO_HOOK_ERRLEN,
                 "the receiver answered HTTP %ld", hook->http_status);
    }

done:

    curl_slist_free_all(headers);

    return rc;

nomem:

    ngx_cpystrn((u_char *) hook->error, (u_char *) "out of memory",
                NGX_UMLO_HOOK_ERRLEN);
    goto done;
}


static int
ngx_umlo_webhook_stopped(ngx_umlo_hook_t *hook)
{
    return hook->cancel || ngx_quit || ngx_terminate || ngx_exiting;
}


static size_t
ngx_umlo_webhook_discard(char *ptr, size_t size, size_t n, void *data)
{
    return size * n;
}


static int
ngx_umlo_webhook_progress(void *data, curl_off_t dltotal, curl_off_t dlnow,
    curl_off_t ultotal, curl_off_t ulnow)
{
    /* only a terminating worker aborts an attempt; a quit lets it end */
    return ngx_terminate ? 1 : 0;
}


static void
ngx_umlo_webhook_record(ngx_umlo_hook_t *hook, long long started_ms)
{
    json_t            *outcome;
    long long          now;
    ngx_umlo_store_t   st;

    now = ngx_umlo_webhook_now();

    outcome = json_pack("{s:s,s:s,s:s?,s:s,s:s,s:o,s:i,s:s?,s:I,s:I}",
                        "id", hook->id, "event", hook->event,
                        "sync_id", hook->sync_id,
                        "webhook", hook->name,
                        "status", hook->delivered ? "delivered" : "failed",
                        "http_status", hook->http_status
                                       ? json_integer(hook->http_status)
                                       : json_null(),
                        "attempts", (int) hook->attempts,
                        "error", hook->error[0] ? hook->error : NULL,
                        "at", (json_int_t) (now / 1000),
                        "duration_ms", (json_int_t) (now - started_ms));
    if (outcome == NULL) {
        hook->store_failed = 1;
        return;
    }

    if (ngx_umlo_store_open(&st, &hook->redis, hook->org) != 0
        || ngx_umlo_store_delivery(&st, outcome, hook->log_max) != 0)
    {
        hook->store_failed = 1;
    }

    ngx_umlo_store_close(&st);
    json_decref(outcome);
}


static long long
ngx_umlo_webhook_now(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


static void
ngx_umlo_webhook_watch(ngx_event_t *ev)
{
    ngx_umlo_hook_t  *hook = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        hook->cancel = 1;
    }

    ngx_add_timer(&hook->watch, NGX_UMLO_HOOK_WATCH_MS);
}


static void
ngx_umlo_webhook_done(ngx_event_t *ev)
{
    ngx_umlo_hook_t  *hook = ev->data;

    if (hook->watch.timer_set) {
        ngx_del_timer(&hook->watch);
    }

    if (hook->delivered) {
        ngx_log_error(NGX_LOG_INFO, hook->log, 0,
                      "umlo: webhook %s %s delivered to %s (HTTP %l, "
                      "attempt %ui)", hook->event, hook->id, hook->name,
                      hook->http_status, (ngx_uint_t) hook->attempts);

    } else {
        ngx_log_error(NGX_LOG_WARN, hook->log, 0,
                      "umlo: webhook %s %s to %s failed after %ui "
                      "attempt(s): %s", hook->event, hook->id, hook->name,
                      (ngx_uint_t) hook->attempts, hook->error);
    }

    if (hook->store_failed) {
        ngx_log_error(NGX_LOG_ERR, hook->log, 0,
                      "umlo: the outcome of webhook %s %s could not be "
                      "recorded in Redis", hook->event, hook->id);
    }

    ngx_umlo_webhook_free(hook);
}


static void
ngx_umlo_webhook_free(ngx_umlo_hook_t *hook)
{
    if (hook->secret != NULL) {
        ngx_explicit_memzero(hook->secret, hook->secret_len);
    }

    free(hook->body);
    ngx_destroy_pool(hook->pool);
}
