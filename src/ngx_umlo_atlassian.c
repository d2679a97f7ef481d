
/*
 * ngx_umlo Atlassian admin API client: libcurl multi, keep-alive, HTTP/2,
 * retries with backoff and jitter, and pacing by the rate-limit headers.
 * See ngx_umlo_atlassian.h for the threading contract.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ngx_umlo_atlassian.h"


#define NGX_UMLO_API_DEF_CONCURRENCY   16
#define NGX_UMLO_API_DEF_TIMEOUT       30000
#define NGX_UMLO_API_DEF_CONNECT       10000
#define NGX_UMLO_API_DEF_BACKOFF       500
#define NGX_UMLO_API_DEF_BACKOFF_MAX   30000
#define NGX_UMLO_API_DEF_RESPONSE      (16 * 1024 * 1024)
#define NGX_UMLO_API_DEF_TICK          1000

/* a 429 wait longer than this is taken for a broken header */
#define NGX_UMLO_API_MAX_PAUSE         120000

/* the published limits are per minute */
#define NGX_UMLO_API_WINDOW            60000

/* slack after a window reset: clocks and minute-precision resets round */
#define NGX_UMLO_API_RESET_SLACK       100

/* the error string shows at most this much of a path */
#define NGX_UMLO_API_PATH_SHOWN        240
#define NGX_UMLO_API_PATH_HEAD         80


typedef struct {
    ngx_umlo_api_req_t    *head;         /* queued, FIFO */
    ngx_umlo_api_req_t    *tail;
    unsigned               queued;
    unsigned               in_flight;

    /* rate-limit state from the freshest X-RateLimit-* headers */
    unsigned               heard:1;      /* any response yet */
    unsigned               known:1;      /* headers seen: pace by them */
    unsigned               probe:1;      /* after the wait, send only one */
    unsigned               windowed:1;   /* the budget resets, no refill */
    unsigned               suspect:1;    /* a 429 despite the estimate */
    long                   limit;        /* per minute, 0: unknown */
    long                   remaining;    /* what we may still send */
    long                   heard_left;   /* last X-RateLimit-Remaining */
    int64_t                stamp;        /* "remaining" as of, monotonic */
    int64_t                heard_reset;  /* last X-RateLimit-Reset, mono */
    int64_t                reset_at;     /* budget back, monotonic, 0: ? */
    int64_t                next_at;      /* spacing when over budget */
    int64_t                paused_until; /* after a 429 */
    int64_t                wait_start;   /* for the stats */
    uint64_t               seq;          /* requests sent */
    uint64_t               applied;      /* seq whose headers we hold */
    uint64_t               suspect_seq;  /* requests sent by that 429 */
} ngx_umlo_api_class_t;


struct ngx_umlo_api_s {
    ngx_umlo_api_conf_t    conf;         /* with defaults filled in */
    char                  *base_url;     /* own copy, no trailing '/' */
    size_t                 base_len;
    unsigned               https:1;
    unsigned               running:1;
    unsigned               stopped:1;    /* aborted or cancelled */

    CURLM                 *multi;
    struct curl_slist     *hdr_plain;
    struct curl_slist     *hdr_json;     /* with Content-Type */

    CURL                 **spare;        /* idle easy handles for reuse */
    unsigned               nspare;

    ngx_umlo_api_req_t    *flying;       /* in flight, unordered */
    unsigned               in_flight;
    unsigned               rr;           /* class served first */

    ngx_umlo_api_class_t   cls[NGX_UMLO_API_NCLASSES];

    uint64_t               prng;
    ngx_umlo_api_stats_t   stats;
    char                   error[512];
};


static int64_t ngx_umlo_api_mono(void);
static int64_t ngx_umlo_api_wall(void);
static uint64_t ngx_umlo_api_random(ngx_umlo_api_t *api);
static int64_t ngx_umlo_api_backoff(ngx_umlo_api_t *api, unsigned attempts);
static void ngx_umlo_api_wipe_slist(struct curl_slist *l);
static const char *ngx_umlo_api_method(const char *method);
static void ngx_umlo_api_enqueue(ngx_umlo_api_t *api,
    ngx_umlo_api_req_t *req, int front);
static long ngx_umlo_api_budget(ngx_umlo_api_class_t *cls, int64_t now);
static int ngx_umlo_api_may_send(ngx_umlo_api_t *api,
    ngx_umlo_api_class_t *cls, int64_t now, int64_t *wake);
static void ngx_umlo_api_dispatch(ngx_umlo_api_t *api, int64_t now,
    int64_t *wake);
static int ngx_umlo_api_start(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req);
static size_t ngx_umlo_api_write(char *ptr, size_t size, size_t nmemb,
    void *data);
static void ngx_umlo_api_collect(ngx_umlo_api_t *api);
static void ngx_umlo_api_finish(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req,
    CURLcode rc);
static void ngx_umlo_api_rate_update(ngx_umlo_api_class_t *cls,
    ngx_umlo_api_req_t *req, CURL *easy, int64_t now);
static int ngx_umlo_api_header(CURL *easy, const char *name,
    const char **value);
static void ngx_umlo_api_release(ngx_umlo_api_t *api, CURL *easy);
static int ngx_umlo_api_transient(CURLcode rc);
static void ngx_umlo_api_http_error(ngx_umlo_api_req_t *req, char *p,
    char *last);
static char *ngx_umlo_api_prefix(ngx_umlo_api_req_t *req, char *p,
    char *last);
static char *ngx_umlo_api_cat(char *p, char *last, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void ngx_umlo_api_complete(ngx_umlo_api_t *api,
    ngx_umlo_api_req_t *req);
static void ngx_umlo_api_free_req(ngx_umlo_api_req_t *req);
static void ngx_umlo_api_drain(ngx_umlo_api_t *api);
static int ngx_umlo_api_digits(const char **pp, const char *end, int n,
    int *v);
static int ngx_umlo_api_seconds(const char *p, const char *end, int64_t *ms);
static void ngx_umlo_api_trim(const char **s, const char **end);


ngx_umlo_api_t *
ngx_umlo_api_create(const ngx_umlo_api_conf_t *conf, char *err,
    size_t errlen)
{
    char             *auth;
    size_t            len, klen;
    unsigned          i;
    const char       *p;
    ngx_umlo_api_t   *api;
    struct timespec   ts;

    if (conf->base_url == NULL
        || (strncmp(conf->base_url, "http://", 7) != 0
            && strncmp(conf->base_url, "https://", 8) != 0))
    {
        snprintf(err, errlen, "API base URL must start with "
                 "\"http://\" or \"https://\"");
        return NULL;
    }

    if (conf->api_key == NULL || conf->api_key[0] == '\0') {
        snprintf(err, errlen, "API key is empty");
        return NULL;
    }

    /* the key becomes a header line: a CR or LF would inject headers */
    for (p = conf->api_key; *p; p++) {
        if ((unsigned char) *p < 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "API key contains a control character");
            return NULL;
        }
    }

    api = calloc(1, sizeof(ngx_umlo_api_t));
    if (api == NULL) {
        goto nomem;
    }

    api->conf = *conf;
    api->conf.api_key = NULL;

#define ngx_umlo_api_default(field, value)                                    \
    if (api->conf.field == 0) {                                               \
        api->conf.field = value;                                              \
    }

    ngx_umlo_api_default(max_concurrency, NGX_UMLO_API_DEF_CONCURRENCY);
    ngx_umlo_api_default(timeout_ms, NGX_UMLO_API_DEF_TIMEOUT);
    ngx_umlo_api_default(connect_timeout_ms, NGX_UMLO_API_DEF_CONNECT);
    ngx_umlo_api_default(backoff_ms, NGX_UMLO_API_DEF_BACKOFF);
    ngx_umlo_api_default(backoff_max_ms, NGX_UMLO_API_DEF_BACKOFF_MAX);
    ngx_umlo_api_default(max_response, NGX_UMLO_API_DEF_RESPONSE);
    ngx_umlo_api_default(tick_ms, NGX_UMLO_API_DEF_TICK);

#undef ngx_umlo_api_default

    if (api->conf.backoff_max_ms < api->conf.backoff_ms) {
        api->conf.backoff_max_ms = api->conf.backoff_ms;
    }

    len = strlen(conf->base_url);
    while (len > 0 && conf->base_url[len - 1] == '/') {
        len--;
    }

    api->base_url = malloc(len + 1);
    if (api->base_url == NULL) {
        goto nomem;
    }

    memcpy(api->base_url, conf->base_url, len);
    api->base_url[len] = '\0';
    api->base_len = len;
    api->conf.base_url = api->base_url;
    api->https = (conf->base_url[4] == 's');

    klen = strlen(conf->api_key);
    auth = malloc(sizeof("Authorization: Bearer ") + klen);
    if (auth == NULL) {
        goto nomem;
    }

    memcpy(auth, "Authorization: Bearer ", sizeof("Authorization: Bearer "));
    memcpy(auth + sizeof("Authorization: Bearer ") - 1, conf->api_key,
           klen + 1);

    for (i = 0; i < 2; i++) {
        struct curl_slist  **l, *n;

        l = (i == 0) ? &api->hdr_plain : &api->hdr_json;

        /* "Expect:" stops curl waiting for 100-continue on POST bodies */
        n = curl_slist_append(*l, "Accept: application/json");
        n = n ? curl_slist_append(n, "Expect:") : NULL;
        n = n ? curl_slist_append(n, auth) : NULL;

        if (n != NULL && i == 1) {
            n = curl_slist_append(n, "Content-Type: application/json");
        }

        if (n == NULL) {
            explicit_bzero(auth, klen + sizeof("Authorization: Bearer "));
            free(auth);
            goto nomem;
        }

        *l = n;
    }

    explicit_bzero(auth, klen + sizeof("Authorization: Bearer "));
    free(auth);

    api->spare = calloc(api->conf.max_concurrency, sizeof(CURL *));
    if (api->spare == NULL) {
        goto nomem;
    }

    api->multi = curl_multi_init();
    if (api->multi == NULL) {
        goto nomem;
    }

    if (curl_multi_setopt(api->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          (long) api->conf.max_concurrency) != CURLM_OK
        || curl_multi_setopt(api->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                             (long) api->conf.max_concurrency) != CURLM_OK
        || curl_multi_setopt(api->multi, CURLMOPT_MAXCONNECTS,
                             (long) api->conf.max_concurrency) != CURLM_OK
        || curl_multi_setopt(api->multi, CURLMOPT_PIPELINING,
                             (long) CURLPIPE_MULTIPLEX) != CURLM_OK)
    {
        snprintf(err, errlen, "curl_multi_setopt() failed");
        ngx_umlo_api_destroy(api);
        return NULL;
    }

    /* a per-client seed: jitter must differ between workers and jobs */
    clock_gettime(CLOCK_REALTIME, &ts);
    api->prng = ((uint64_t) ts.tv_sec << 30) ^ (uint64_t) ts.tv_nsec
                ^ ((uint64_t) getpid() << 48) ^ (uint64_t) (uintptr_t) api;

    return api;

nomem:

    snprintf(err, errlen, "out of memory creating the API client");

    if (api != NULL) {
        ngx_umlo_api_destroy(api);
    }

    return NULL;
}


ngx_umlo_api_req_t *
ngx_umlo_api_submit(ngx_umlo_api_t *api, int klass, const char *method,
    const char *path, json_t *body, ngx_umlo_api_done_pt done, void *data)
{
    const char          *p, *m;
    ngx_umlo_api_req_t  *req;

    m = ngx_umlo_api_method(method);

    if (api->stopped || m == NULL || klass < 0
        || klass >= NGX_UMLO_API_NCLASSES || path == NULL || path[0] != '/')
    {
        goto failed;
    }

    /* the path goes into the request line as it is */
    for (p = path; *p; p++) {
        if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f) {
            goto failed;
        }
    }

    req = calloc(1, sizeof(ngx_umlo_api_req_t));
    if (req == NULL) {
        goto failed;
    }

    req->path = strdup(path);
    if (req->path == NULL) {
        free(req);
        goto failed;
    }

    if (body != NULL) {
        req->out = json_dumps(body, JSON_COMPACT);
        if (req->out == NULL) {
            free(req->path);
            free(req);
            goto failed;
        }

        req->out_len = strlen(req->out);
    }

    req->klass = klass;
    req->method = m;
    req->body = body;
    req->done = done;
    req->data = data;
    req->api = api;

    ngx_umlo_api_enqueue(api, req, 0);
    api->stats.submitted++;

    return req;

failed:

    json_decref(body);
    return NULL;
}


int
ngx_umlo_api_run(ngx_umlo_api_t *api)
{
    int       n, more;
    int64_t   now, wake, next_tick, timeout;
    unsigned  i, queued;

    if (api->running) {
        ngx_umlo_api_abort(api, "ngx_umlo_api_run() called from a callback");
        return -1;
    }

    api->running = 1;
    next_tick = ngx_umlo_api_mono() + api->conf.tick_ms;

    for ( ;; ) {

        if (api->conf.cancel != NULL && *api->conf.cancel) {
            ngx_umlo_api_abort(api, "cancelled");
        }

        if (api->stopped) {
            break;
        }

        if (api->in_flight > 0) {
            if (curl_multi_perform(api->multi, &n) != CURLM_OK) {
                ngx_umlo_api_abort(api, "curl_multi_perform() failed");
                break;
            }

            ngx_umlo_api_collect(api);

            if (api->stopped) {
                break;
            }
        }

        now = ngx_umlo_api_mono();

        if (api->conf.tick != NULL && now >= next_tick) {
            api->conf.tick(api->conf.tick_data);
            now = ngx_umlo_api_mono();
            next_tick = now + api->conf.tick_ms;

            if (api->stopped) {
                break;
            }
        }

        wake = now + NGX_UMLO_API_POLL_MS;
        ngx_umlo_api_dispatch(api, now, &wake);
        more = 0;

        if (api->stopped) {
            break;
        }

        if (api->conf.idle != NULL) {
            /* send what was just added before the caller's slow work */
            if (api->in_flight > 0
                && curl_multi_perform(api->multi, &n) != CURLM_OK)
            {
                ngx_umlo_api_abort(api, "curl_multi_perform() failed");
                break;
            }

            more = api->conf.idle(api->conf.tick_data);

            if (api->stopped) {
                break;
            }

            /* the idle work may have submitted requests */
            now = ngx_umlo_api_mono();
            ngx_umlo_api_dispatch(api, now, &wake);

            if (api->stopped) {
                break;
            }
        }

        queued = 0;
        for (i = 0; i < NGX_UMLO_API_NCLASSES; i++) {
            queued |= (api->cls[i].head != NULL);
        }

        if (api->in_flight == 0 && !queued) {
            break;
        }

        if (api->conf.tick != NULL && next_tick < wake) {
            wake = next_tick;
        }

        timeout = wake - now;
        if (timeout < 0 || more) {
            timeout = 0;
        }

        /* curl shortens this further for its own timers */
        if (curl_multi_poll(api->multi, NULL, 0, (int) timeout, NULL)
            != CURLM_OK)
        {
            ngx_umlo_api_abort(api, "curl_multi_poll() failed");
            break;
        }
    }

    ngx_umlo_api_drain(api);
    api->running = 0;

    return api->stopped ? -1 : 0;
}


void
ngx_umlo_api_hurry(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    ngx_umlo_api_req_t    *prev, *r;
    ngx_umlo_api_class_t  *cls;

    if (req == NULL || req->easy != NULL || req->klass < 0
        || req->klass >= NGX_UMLO_API_NCLASSES)
    {
        return;
    }

    cls = &api->cls[req->klass];
    prev = NULL;

    for (r = cls->head; r != NULL && r != req; r = r->next) {
        prev = r;
    }

    if (r == NULL || prev == NULL) {
        /* not queued, or first already */
        return;
    }

    prev->next = req->next;

    if (cls->tail == req) {
        cls->tail = prev;
    }

    req->next = cls->head;
    cls->head = req;
}


void
ngx_umlo_api_abort(ngx_umlo_api_t *api, const char *fmt, ...)
{
    va_list  args;

    if (api->stopped) {
        return;         /* the first reason is the one worth reporting */
    }

    api->stopped = 1;

    va_start(args, fmt);
    vsnprintf(api->error, sizeof(api->error), fmt, args);
    va_end(args);
}


void
ngx_umlo_api_wakeup(ngx_umlo_api_t *api)
{
    if (api->multi != NULL) {
        (void) curl_multi_wakeup(api->multi);
    }
}


const char *
ngx_umlo_api_error(ngx_umlo_api_t *api)
{
    return api->error;
}


void
ngx_umlo_api_stats(ngx_umlo_api_t *api, ngx_umlo_api_stats_t *st)
{
    *st = api->stats;
}


void
ngx_umlo_api_pace_get(ngx_umlo_api_t *api, int klass,
    ngx_umlo_api_pace_t *pace)
{
    int64_t                now;
    ngx_umlo_api_class_t  *cls;

    memset(pace, 0, sizeof(ngx_umlo_api_pace_t));

    if (klass < 0 || klass >= NGX_UMLO_API_NCLASSES) {
        return;
    }

    cls = &api->cls[klass];

    if (!cls->heard) {
        return;
    }

    now = ngx_umlo_api_mono();

    pace->at = ngx_umlo_api_wall();
    pace->paced = cls->known;

    if (!cls->known) {
        return;
    }

    pace->windowed = cls->windowed;
    pace->limit = cls->limit;
    pace->remaining = ngx_umlo_api_budget(cls, now)
                      - (long) cls->in_flight;

    if (cls->reset_at > now) {
        pace->reset = pace->at + (cls->reset_at - now);
    }
}


void
ngx_umlo_api_pace_format(char *buf, size_t size,
    const ngx_umlo_api_pace_t *pace)
{
    snprintf(buf, size, "%lld %lld %ld %ld %d %d", (long long) pace->at,
             (long long) pace->reset, pace->limit, pace->remaining,
             (int) pace->paced, (int) pace->windowed);
}


int
ngx_umlo_api_pace_parse(const char *text, ngx_umlo_api_pace_t *pace)
{
    int        paced, windowed;
    long long  at, reset;
    long       limit, remaining;

    if (sscanf(text, "%lld %lld %ld %ld %d %d", &at, &reset, &limit,
               &remaining, &paced, &windowed)
        != 6)
    {
        return -1;
    }

    memset(pace, 0, sizeof(ngx_umlo_api_pace_t));
    pace->at = at;
    pace->reset = reset;
    pace->limit = limit;
    pace->remaining = remaining;
    pace->paced = (paced != 0);
    pace->windowed = (windowed != 0);

    return 0;
}


void
ngx_umlo_api_pace_set(ngx_umlo_api_t *api, int klass,
    const ngx_umlo_api_pace_t *pace)
{
    int64_t                now, wall, age;
    ngx_umlo_api_class_t  *cls;

    if (klass < 0 || klass >= NGX_UMLO_API_NCLASSES || pace->at <= 0) {
        return;
    }

    cls = &api->cls[klass];
    wall = ngx_umlo_api_wall();
    age = wall - pace->at;

    /* a clock that went back, or an old estimate: learn afresh */
    if (cls->heard || age < 0 || age > NGX_UMLO_API_PACE_TTL) {
        return;
    }

    if (pace->paced && (pace->limit <= 0 || pace->limit > 1000000)) {
        /* a budget without a known rate cannot be brought up to date */
        return;
    }

    cls->heard = 1;

    if (!pace->paced) {
        /* the server sent no budget last time: run unpaced, as then */
        return;
    }

    now = ngx_umlo_api_mono();

    cls->known = 1;
    cls->windowed = pace->windowed;
    cls->limit = pace->limit;
    cls->remaining = pace->remaining < cls->limit ? pace->remaining
                                                  : cls->limit;
    cls->heard_left = cls->remaining;
    cls->stamp = now - age;

    if (cls->windowed) {
        if (pace->reset > wall) {
            cls->reset_at = now + (pace->reset - wall)
                            + NGX_UMLO_API_RESET_SLACK;

        } else {
            /* the window was reset since: the budget is back */
            cls->remaining = cls->limit;
        }
    }
}


void
ngx_umlo_api_destroy(ngx_umlo_api_t *api)
{
    unsigned  i;

    if (api == NULL) {
        return;
    }

    if (!api->stopped) {
        ngx_umlo_api_abort(api, "client destroyed");
    }

    ngx_umlo_api_drain(api);

    for (i = 0; i < api->nspare; i++) {
        curl_easy_cleanup(api->spare[i]);
    }

    free(api->spare);

    if (api->multi != NULL) {
        curl_multi_cleanup(api->multi);
    }

    ngx_umlo_api_wipe_slist(api->hdr_plain);
    ngx_umlo_api_wipe_slist(api->hdr_json);
    curl_slist_free_all(api->hdr_plain);
    curl_slist_free_all(api->hdr_json);

    free(api->base_url);
    free(api);
}


static int64_t
ngx_umlo_api_mono(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static int64_t
ngx_umlo_api_wall(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/* splitmix64: small, per client, good enough for jitter */

static uint64_t
ngx_umlo_api_random(ngx_umlo_api_t *api)
{
    uint64_t  z;

    z = (api->prng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


/* exponential backoff with full jitter: uniform in [0, min(cap, b*2^n)] */

static int64_t
ngx_umlo_api_backoff(ngx_umlo_api_t *api, unsigned attempts)
{
    uint64_t  ceil;
    unsigned  i;

    ceil = api->conf.backoff_ms;

    for (i = 1; i < attempts && ceil < api->conf.backoff_max_ms; i++) {
        ceil *= 2;
    }

    if (ceil > api->conf.backoff_max_ms) {
        ceil = api->conf.backoff_max_ms;
    }

    return (int64_t) (ngx_umlo_api_random(api) % (ceil + 1));
}


static void
ngx_umlo_api_wipe_slist(struct curl_slist *l)
{
    for ( /* void */ ; l != NULL; l = l->next) {
        explicit_bzero(l->data, strlen(l->data));
    }
}


static const char *
ngx_umlo_api_method(const char *method)
{
    static const char  *methods[] = {
        "GET", "POST", "PUT", "PATCH", "DELETE", NULL
    };

    const char  **m;

    if (method == NULL) {
        return NULL;
    }

    for (m = methods; *m; m++) {
        if (strcmp(*m, method) == 0) {
            return *m;
        }
    }

    return NULL;
}


static void
ngx_umlo_api_enqueue(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req,
    int front)
{
    ngx_umlo_api_class_t  *cls;

    cls = &api->cls[req->klass];
    cls->queued++;

    if (front) {
        req->next = cls->head;
        cls->head = req;

        if (cls->tail == NULL) {
            cls->tail = req;
        }

        return;
    }

    req->next = NULL;

    if (cls->tail != NULL) {
        cls->tail->next = req;

    } else {
        cls->head = req;
    }

    cls->tail = req;
}


/*
 * Pacing, per rate-limit class.
 *
 * A run starts from the estimate the last run left (ngx_umlo_api_pace_set);
 * without one, the first wave goes out at max_concurrency: waiting for one
 * answer before sending more would add a round trip to every short run,
 * and the worst a first wave into an empty budget costs is one 429 per
 * request in flight, which the answers' headers then pace.  Without
 * X-RateLimit-* headers the class runs at max_concurrency throughout.
 *
 * With them, "remaining" is what the class may still send: it drops by one
 * per request sent and is set again from each fresh answer (an answer to
 * a request sent after the one we last used) as X-RateLimit-Remaining less
 * the requests still in flight, which the server may not have counted
 * yet.  So requests in flight never exceed the budget.  While the budget
 * refills, that difference may be below zero: a debt that the next tokens
 * pay first, since the requests in flight reach the server before any
 * request sent now.
 *
 * The published limits are per minute, and a per-minute quota is a bucket
 * that refills at limit/60 s: between answers the estimate grows by one
 * every minute/limit, up to the limit.  So the class spends what it has at
 * full concurrency and then, out of budget, waits for the next token only,
 * running at the refill rate without ever reaching the server's zero.
 *
 * A 429 despite the estimate may come from another client of the org
 * spending the same budget: the class waits until the requests in flight
 * have had their tokens and one more is there (or for Retry-After), and
 * goes on.  A second 429, on a request sent after the first came
 * back, shows a server whose budget comes back all at once at
 * X-RateLimit-Reset (fixed windows): the class waits for the reset and
 * turns "windowed".  Then at zero it waits for the reset, and once more
 * is queued than the budget, requests are spaced by the time to the reset
 * divided by what remains (never wider than minute / limit), so the
 * budget is spread up to the reset.  A Remaining that grows before the
 * reset shows refills after all, and the class paces by tokens again.
 * A 429 before any estimate (the first headers come with it) waits for
 * Retry-After or the reset.
 */

static long
ngx_umlo_api_budget(ngx_umlo_api_class_t *cls, int64_t now)
{
    int64_t  add;

    if (cls->windowed || cls->limit <= 0) {
        return cls->remaining;
    }

    if (cls->remaining >= cls->limit) {
        /* full: nothing accrues */
        cls->stamp = now;
        return cls->remaining;
    }

    add = (now - cls->stamp) * cls->limit / NGX_UMLO_API_WINDOW;

    if (add > 0) {
        if (add >= cls->limit - cls->remaining) {
            cls->remaining = cls->limit;
            cls->stamp = now;

        } else {
            cls->remaining += (long) add;
            /* keep the fraction of the next token */
            cls->stamp += add * NGX_UMLO_API_WINDOW / cls->limit;
        }
    }

    return cls->remaining;
}


static int
ngx_umlo_api_may_send(ngx_umlo_api_t *api, ngx_umlo_api_class_t *cls,
    int64_t now, int64_t *wake)
{
    int64_t  until;

    if (now < cls->paused_until) {
        until = cls->paused_until;
        goto wait;
    }

    if (!cls->known) {
        goto send;
    }

    if (!cls->windowed && cls->limit > 0) {

        if (ngx_umlo_api_budget(cls, now) > 0) {
            goto send;
        }

        /* the next token beyond any debt, rounded up */
        until = cls->stamp + ((1 - (int64_t) cls->remaining)
                              * NGX_UMLO_API_WINDOW + cls->limit - 1)
                             / cls->limit;
        if (until <= now) {
            until = now + 1;
        }

        goto wait;
    }

    if (cls->reset_at != 0 && now >= cls->reset_at) {
        /* the budget is back; after a 429 try one request first */
        cls->remaining = (cls->probe || cls->limit <= 0) ? 1 : cls->limit;
        cls->reset_at = 0;
        cls->next_at = 0;
        cls->probe = 0;
    }

    if (cls->remaining <= 0) {

        if (cls->reset_at == 0) {
            if (cls->in_flight > 0) {
                /* an answer will tell how much is left */
                return 0;
            }

            /* nothing will tell: wait a little, then probe */
            cls->reset_at = now + api->conf.backoff_ms;
            cls->probe = 1;
        }

        until = cls->reset_at;
        goto wait;
    }

    if (now < cls->next_at && cls->queued > (unsigned long) cls->remaining) {
        if (cls->next_at < *wake) {
            *wake = cls->next_at;
        }

        return 0;
    }

send:

    if (cls->wait_start != 0) {
        api->stats.rate_wait_ms += now - cls->wait_start;
        cls->wait_start = 0;
    }

    return 1;

wait:

    if (cls->wait_start == 0) {
        cls->wait_start = now;
        api->stats.rate_waits++;
    }

    if (until < *wake) {
        *wake = until;
    }

    return 0;
}


static void
ngx_umlo_api_dispatch(ngx_umlo_api_t *api, int64_t now, int64_t *wake)
{
    int64_t                gap;
    unsigned               i;
    ngx_umlo_api_req_t    *req, *prev, *next, *failed, *last;
    ngx_umlo_api_class_t  *cls;

    failed = NULL;
    last = NULL;

    /* take turns at who goes first, so neither class starves the other */
    api->rr ^= 1;

    for (i = 0; i < NGX_UMLO_API_NCLASSES; i++) {
        cls = &api->cls[(i + api->rr) % NGX_UMLO_API_NCLASSES];

        prev = NULL;

        for (req = cls->head; req != NULL; req = next) {
            next = req->next;

            if (api->in_flight >= api->conf.max_concurrency
                || !ngx_umlo_api_may_send(api, cls, now, wake))
            {
                break;
            }

            if (req->not_before > now) {
                if (req->not_before < *wake) {
                    *wake = req->not_before;
                }

                prev = req;
                continue;
            }

            if (prev != NULL) {
                prev->next = next;

            } else {
                cls->head = next;
            }

            if (cls->tail == req) {
                cls->tail = prev;
            }

            req->next = NULL;
            cls->queued--;

            if (ngx_umlo_api_start(api, req) != 0) {
                /* completed after the walk: done may touch the queues */
                if (last != NULL) {
                    last->next = req;

                } else {
                    failed = req;
                }

                last = req;
                continue;
            }

            if (!cls->known) {
                continue;
            }

            if (!cls->windowed && cls->limit > 0) {
                if (ngx_umlo_api_budget(cls, now) > 0) {
                    cls->remaining--;
                }

                continue;
            }

            if (cls->remaining > 0) {
                cls->remaining--;
            }

            /* the spacing used once the queue outgrows the budget */
            gap = -1;

            if (cls->reset_at > now) {
                gap = (cls->reset_at - now) / (cls->remaining + 1);
            }

            if (cls->limit > 0
                && (gap < 0 || gap > NGX_UMLO_API_WINDOW / cls->limit))
            {
                gap = NGX_UMLO_API_WINDOW / cls->limit;
            }

            cls->next_at = (gap > 0) ? now + gap : 0;
        }
    }

    while (failed != NULL) {
        req = failed;
        failed = req->next;
        req->next = NULL;
        ngx_umlo_api_complete(api, req);
    }
}


static int
ngx_umlo_api_start(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    int                    rc, body;
    char                  *url;
    size_t                 plen;
    CURL                  *easy;
    ngx_umlo_api_class_t  *cls;

    if (api->nspare > 0) {
        easy = api->spare[--api->nspare];

    } else {
        easy = curl_easy_init();
        if (easy == NULL) {
            snprintf(req->error, sizeof(req->error),
                     "%s %.*s: out of memory", req->method,
                     NGX_UMLO_API_PATH_SHOWN, req->path);
            return -1;
        }
    }

    plen = strlen(req->path);
    url = malloc(api->base_len + plen + 1);
    if (url == NULL) {
        curl_easy_cleanup(easy);
        snprintf(req->error, sizeof(req->error), "%s %.*s: out of memory",
                 req->method, NGX_UMLO_API_PATH_SHOWN, req->path);
        return -1;
    }

    memcpy(url, api->base_url, api->base_len);
    memcpy(url + api->base_len, req->path, plen + 1);

    req->len = 0;
    req->too_large = 0;
    req->curl_error[0] = '\0';

    rc = 0;
    rc |= curl_easy_setopt(easy, CURLOPT_URL, url);
    rc |= curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    rc |= curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
    rc |= curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);

    /*
     * HTTP/2 where TLS offers it, HTTP/1.1 on plain http://; a libcurl
     * without HTTP/2 refuses the option and speaks HTTP/1.1, which is fine
     */
    (void) curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
                            (long) CURL_HTTP_VERSION_2TLS);

    rc |= curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    rc |= curl_easy_setopt(easy, CURLOPT_TCP_KEEPIDLE, 30L);
    rc |= curl_easy_setopt(easy, CURLOPT_TCP_KEEPINTVL, 15L);
    rc |= curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                           (long) api->conf.timeout_ms);
    rc |= curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                           (long) api->conf.connect_timeout_ms);
    rc |= curl_easy_setopt(easy, CURLOPT_USERAGENT, "ngx_umlo/0.1");
    rc |= curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
    rc |= curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
                           (curl_off_t) api->conf.max_response);
    rc |= curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, ngx_umlo_api_write);
    rc |= curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
    rc |= curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->curl_error);

    if (api->https) {
        /* wait for the first connection to offer HTTP/2 multiplexing */
        rc |= curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
    }

    /* POST, PUT and PATCH always carry a body, DELETE only if given one */
    body = (req->out != NULL || (strcmp(req->method, "GET") != 0
                                 && strcmp(req->method, "DELETE") != 0));

    rc |= curl_easy_setopt(easy, CURLOPT_HTTPHEADER,
                           body ? api->hdr_json : api->hdr_plain);

    if (body) {
        rc |= curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE,
                               (long) req->out_len);
        rc |= curl_easy_setopt(easy, CURLOPT_POSTFIELDS,
                               req->out ? req->out : "");

    } else {
        rc |= curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }

    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0)
    {
        rc |= curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    }

    free(url);

    if (rc != CURLE_OK) {
        curl_easy_cleanup(easy);
        snprintf(req->error, sizeof(req->error),
                 "%s %.*s: cannot set up the request (curl)", req->method,
                 NGX_UMLO_API_PATH_SHOWN, req->path);
        return -1;
    }

    if (curl_multi_add_handle(api->multi, easy) != CURLM_OK) {
        curl_easy_cleanup(easy);
        snprintf(req->error, sizeof(req->error),
                 "%s %.*s: cannot start the request (curl)", req->method,
                 NGX_UMLO_API_PATH_SHOWN, req->path);
        return -1;
    }

    req->easy = easy;
    req->attempts++;
    req->next = api->flying;
    api->flying = req;

    cls = &api->cls[req->klass];
    cls->in_flight++;
    req->seq = ++cls->seq;
    api->in_flight++;

    api->stats.sent++;
    if (api->in_flight > api->stats.peak_in_flight) {
        api->stats.peak_in_flight = api->in_flight;
    }

    return 0;
}


static size_t
ngx_umlo_api_write(char *ptr, size_t size, size_t nmemb, void *data)
{
    char                *nb;
    size_t               n, cap, max;
    ngx_umlo_api_t      *api;
    ngx_umlo_api_req_t  *req;

    req = data;
    api = req->api;
    n = size * nmemb;
    max = api->conf.max_response;

    if (n > max - req->len) {
        req->too_large = 1;
        return 0;       /* curl fails the transfer with CURLE_WRITE_ERROR */
    }

    if (req->len + n > req->cap) {
        cap = req->cap ? req->cap : 16384;

        while (cap < req->len + n) {
            cap *= 2;
        }

        if (cap > max) {
            cap = max;
        }

        nb = realloc(req->buf, cap);
        if (nb == NULL) {
            return 0;
        }

        req->buf = nb;
        req->cap = cap;
    }

    memcpy(req->buf + req->len, ptr, n);
    req->len += n;
    api->stats.bytes_received += n;

    return n;
}


static void
ngx_umlo_api_collect(ngx_umlo_api_t *api)
{
    int                  left;
    CURL                *easy;
    CURLMsg             *msg;
    CURLcode             rc;
    ngx_umlo_api_req_t  *req;

    while ((msg = curl_multi_info_read(api->multi, &left)) != NULL) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        /* msg dies with curl_multi_remove_handle(): copy it out first */
        easy = msg->easy_handle;
        rc = msg->data.result;

        req = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);

        if (req == NULL) {
            continue;
        }

        ngx_umlo_api_finish(api, req, rc);

        if (api->stopped) {
            return;
        }
    }
}


static void
ngx_umlo_api_finish(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req,
    CURLcode rc)
{
    int                    retry, refill, known;
    long                   status;
    char                  *p, *last;
    CURL                  *easy;
    int64_t                now, wall, delay, t;
    const char            *v;
    json_error_t           jerr;
    ngx_umlo_api_req_t   **pp;
    ngx_umlo_api_class_t  *cls;

    easy = req->easy;
    cls = &api->cls[req->klass];

    for (pp = &api->flying; *pp != req; pp = &(*pp)->next) {
        /* void */
    }

    *pp = req->next;
    req->next = NULL;
    req->easy = NULL;

    curl_multi_remove_handle(api->multi, easy);
    cls->in_flight--;
    api->in_flight--;

    status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);

    now = ngx_umlo_api_mono();
    wall = ngx_umlo_api_wall();

    /* pacing by an estimate before this answer */
    refill = cls->known && !cls->windowed && cls->limit > 0;

    if (status > 0) {
        known = cls->known;
        ngx_umlo_api_rate_update(cls, req, easy, now);

        if (!known && cls->known && !cls->windowed && cls->limit > 0) {
            /*
             * The first budget came with this answer (a first wave into a
             * spent budget): a per-minute bucket, as any other, until a
             * second 429 shows a fixed window.  Waiting for the reset
             * instead would stall a refilling bucket for up to a minute.
             */
            refill = 1;
        }
    }

    if (status >= 200 && status < 300 && req->seq > cls->suspect_seq) {
        /* the estimate holds again */
        cls->suspect = 0;
    }

    retry = 0;
    delay = -1;
    req->status = (rc == CURLE_OK) ? status : 0;

    if (rc != CURLE_OK) {

        if (req->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
            retry = -1;

        } else {
            api->stats.transport_errors++;
            retry = ngx_umlo_api_transient(rc);
        }

    } else if (status == 429) {
        api->stats.http_429++;
        retry = 1;

        if (refill) {
            if (!cls->suspect) {
                /* once: another client of the org may spend the budget */
                cls->suspect = 1;
                cls->suspect_seq = cls->seq;

            } else if (req->seq > cls->suspect_seq) {
                /* again, on a request sent after: it does not refill */
                cls->windowed = 1;
                cls->suspect = 0;
                refill = 0;
            }
        }

        if (ngx_umlo_api_header(easy, "Retry-After", &v) == 0
            && ngx_umlo_api_parse_retry_after(v, strlen(v), wall, &delay)
               == 0)
        {
            /* the server said when */

        } else if (refill) {
            /* the next token */
            delay = (NGX_UMLO_API_WINDOW + cls->limit - 1) / cls->limit;

        } else if (ngx_umlo_api_header(easy, "X-RateLimit-Reset", &v) == 0
                   && ngx_umlo_api_parse_time(v, strlen(v), wall, &t) == 0
                   && t > wall)
        {
            delay = t - wall + NGX_UMLO_API_RESET_SLACK;

        } else {
            delay = ngx_umlo_api_backoff(api, req->attempts);
        }

        if (delay > NGX_UMLO_API_MAX_PAUSE) {
            delay = NGX_UMLO_API_MAX_PAUSE;
        }

        /* the limit is per org: the whole class waits, not one request */
        if (cls->paused_until < now + delay) {
            cls->paused_until = now + delay;
        }

        if (cls->known) {
            /* empty now; the requests in flight take the next tokens */
            cls->remaining = refill ? -(long) cls->in_flight : 0;
            cls->stamp = now;
            cls->reset_at = cls->paused_until;
            cls->probe = 1;
        }

    } else if (status >= 500 || status == 408) {
        api->stats.http_5xx += (status >= 500);
        retry = 1;

        if (ngx_umlo_api_header(easy, "Retry-After", &v) == 0
            && ngx_umlo_api_parse_retry_after(v, strlen(v), wall, &t) == 0)
        {
            delay = t < NGX_UMLO_API_MAX_PAUSE ? t : NGX_UMLO_API_MAX_PAUSE;
        }
    }

    if (retry == 1 && req->attempts <= api->conf.max_retries) {
        if (delay < 0) {
            delay = ngx_umlo_api_backoff(api, req->attempts);
        }

        ngx_umlo_api_release(api, easy);

        req->not_before = now + delay;
        req->status = 0;
        req->len = 0;
        api->stats.retries++;

        ngx_umlo_api_enqueue(api, req, 1);
        return;
    }

    p = req->error;
    last = req->error + sizeof(req->error);

    if (retry == -1) {
        p = ngx_umlo_api_prefix(req, p, last);
        ngx_umlo_api_cat(p, last, "response larger than %zu bytes "
                         "(max_response)", api->conf.max_response);

    } else if (rc != CURLE_OK) {
        p = ngx_umlo_api_prefix(req, p, last);
        p = ngx_umlo_api_cat(p, last, "%s (curl error %d)",
                             req->curl_error[0] ? req->curl_error
                                                : curl_easy_strerror(rc),
                             (int) rc);

        if (req->attempts > 1) {
            ngx_umlo_api_cat(p, last, " after %u attempts", req->attempts);
        }

    } else if (status >= 200 && status < 300) {

        if (req->len > 0) {
            req->json = json_loadb(req->buf, req->len, 0, &jerr);

            if (req->json == NULL) {
                p = ngx_umlo_api_prefix(req, p, last);
                ngx_umlo_api_cat(p, last, "HTTP %ld with invalid JSON: %s "
                                 "at line %d column %d (byte %d of %zu)",
                                 status, jerr.text, jerr.line, jerr.column,
                                 jerr.position, req->len);
            }
        }

    } else {
        if (req->len > 0) {
            /* error bodies explain themselves; any other body is noise */
            req->json = json_loadb(req->buf, req->len, 0, &jerr);
        }

        ngx_umlo_api_http_error(req, p, last);
    }

    ngx_umlo_api_release(api, easy);
    ngx_umlo_api_complete(api, req);
}


static void
ngx_umlo_api_rate_update(ngx_umlo_api_class_t *cls, ngx_umlo_api_req_t *req,
    CURL *easy, int64_t now)
{
    long         limit, remaining, est;
    char        *end;
    int64_t      wall, reset;
    const char  *v;

    cls->heard = 1;

    if (req->seq < cls->applied) {
        /* older news than what we hold: answers arrive out of order */
        return;
    }

    errno = 0;
    remaining = -1;

    if (ngx_umlo_api_header(easy, "X-RateLimit-Remaining", &v) == 0) {
        remaining = strtol(v, &end, 10);
        if (end == v || errno != 0) {
            remaining = -1;
        }
    }

    if (remaining < 0) {
        /* a fresh answer without a budget: run unpaced, as at the start */
        cls->applied = req->seq;
        cls->known = 0;
        cls->probe = 0;
        cls->reset_at = 0;
        cls->next_at = 0;
        return;
    }

    limit = 0;

    if (ngx_umlo_api_header(easy, "X-RateLimit-Limit", &v) == 0) {
        errno = 0;
        limit = strtol(v, &end, 10);
        if (end == v || errno != 0 || limit < 0) {
            limit = 0;
        }
    }

    cls->applied = req->seq;
    cls->known = 1;
    cls->probe = 0;

    if (limit > 0) {
        cls->limit = limit;
    }

    if (cls->windowed && cls->heard_reset > now
        && remaining > cls->heard_left)
    {
        /* more than before, and no reset in between: it refills */
        cls->windowed = 0;
    }

    cls->heard_left = remaining;
    cls->heard_reset = 0;

    /*
     * The server may not have counted the requests still in flight.  While
     * the budget refills, what they lack is a debt: they take the next
     * tokens before any request sent now, so it is kept, not rounded up
     * to 0 (a request sent after one token would meet an empty bucket).
     */
    est = remaining - (long) cls->in_flight;

    if (est < 0 && (cls->windowed || cls->limit <= 0)) {
        est = 0;
    }

    cls->remaining = est;
    cls->stamp = now;

    wall = ngx_umlo_api_wall();

    if (ngx_umlo_api_header(easy, "X-RateLimit-Reset", &v) == 0
        && ngx_umlo_api_parse_time(v, strlen(v), wall, &reset) == 0
        && reset > wall)
    {
        cls->heard_reset = now + (reset - wall);
        cls->reset_at = cls->heard_reset + NGX_UMLO_API_RESET_SLACK;

    } else {
        /* no usable reset, or clocks disagree: probe when out of budget */
        cls->reset_at = 0;
    }
}


static int
ngx_umlo_api_header(CURL *easy, const char *name, const char **value)
{
    struct curl_header  *h;

    /* request -1: the last response, after any 1xx */
    if (curl_easy_header(easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK) {
        return -1;
    }

    *value = h->value;

    return 0;
}


static void
ngx_umlo_api_release(ngx_umlo_api_t *api, CURL *easy)
{
    /* a reset handle keeps nothing of the request, not even req pointers */
    curl_easy_reset(easy);

    if (api->nspare < api->conf.max_concurrency) {
        api->spare[api->nspare++] = easy;
        return;
    }

    curl_easy_cleanup(easy);
}


static int
ngx_umlo_api_transient(CURLcode rc)
{
    switch (rc) {

    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return 1;

    default:
        /* bad URL, TLS verification, out of memory: retrying won't help */
        return 0;
    }
}


static void
ngx_umlo_api_http_error(ngx_umlo_api_req_t *req, char *p, char *last)
{
    json_t      *e, *v;
    const char  *code, *title, *detail, *s;

    p = ngx_umlo_api_prefix(req, p, last);
    p = ngx_umlo_api_cat(p, last, "HTTP %ld", req->status);

    if (req->attempts > 1) {
        p = ngx_umlo_api_cat(p, last, " after %u attempts", req->attempts);
    }

    e = json_object_get(req->json, "errors");
    e = json_array_get(e, 0);

    if (json_is_object(e)) {
        /* v1 and v2: {"errors":[{"id","status","code","title","detail"}]} */
        code = json_string_value(json_object_get(e, "code"));
        title = json_string_value(json_object_get(e, "title"));
        detail = json_string_value(json_object_get(e, "detail"));

        if (code != NULL || title != NULL || detail != NULL) {
            p = ngx_umlo_api_cat(p, last, " (%s%s%s%s%s)",
                                 code ? code : "",
                                 code && (title || detail) ? " " : "",
                                 title ? title : "",
                                 title && detail ? ": " : "",
                                 detail ? detail : "");
        }

    } else if ((s = json_string_value(json_object_get(req->json,
                                                      "message")))
               != NULL)
    {
        /* the gateway: {"code": 401, "message": "..."} */
        v = json_object_get(req->json, "code");

        if (json_is_integer(v)) {
            p = ngx_umlo_api_cat(p, last, " (code %lld: %s)",
                                 (long long) json_integer_value(v), s);

        } else {
            p = ngx_umlo_api_cat(p, last, " (%s)", s);
        }

    } else if ((s = json_string_value(json_object_get(req->json, "key")))
               != NULL)
    {
        /* user management: {"key": "unauthorized"} */
        p = ngx_umlo_api_cat(p, last, " (%s)", s);
    }

    switch (req->status) {

    case 401:
        ngx_umlo_api_cat(p, last, "; the API key was rejected: it is wrong "
                         "or has expired");
        break;

    case 403:
        ngx_umlo_api_cat(p, last, "; the API key may not do this, or the "
                         "account is not managed by the org");
        break;

    case 429:
        ngx_umlo_api_cat(p, last, "; still rate limited after the retries");
        break;

    default:
        break;
    }
}


static char *
ngx_umlo_api_prefix(ngx_umlo_api_req_t *req, char *p, char *last)
{
    size_t  n;

    /* no query string: it only adds an opaque cursor */
    n = strcspn(req->path, "?");

    /* the end of a long path names the endpoint: elide the middle */
    if (n > NGX_UMLO_API_PATH_SHOWN) {
        return ngx_umlo_api_cat(p, last, "%s %.*s...%.*s: ", req->method,
                                NGX_UMLO_API_PATH_HEAD, req->path,
                                NGX_UMLO_API_PATH_SHOWN
                                - NGX_UMLO_API_PATH_HEAD,
                                req->path + n - (NGX_UMLO_API_PATH_SHOWN
                                                 - NGX_UMLO_API_PATH_HEAD));
    }

    return ngx_umlo_api_cat(p, last, "%s %.*s: ", req->method, (int) n,
                            req->path);
}


/* appends, truncating; p always points at the terminating NUL */

static char *
ngx_umlo_api_cat(char *p, char *last, const char *fmt, ...)
{
    int      n;
    va_list  args;

    if (p >= last - 1) {
        return p;
    }

    va_start(args, fmt);
    n = vsnprintf(p, last - p, fmt, args);
    va_end(args);

    if (n < 0) {
        *p = '\0';
        return p;
    }

    return (n >= last - p) ? last - 1 : p + n;
}


static void
ngx_umlo_api_complete(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    if (req->error[0] != '\0') {
        api->stats.failed++;

    } else {
        api->stats.succeeded++;
    }

    if (req->done != NULL) {
        req->done(api, req);
    }

    ngx_umlo_api_free_req(req);
}


static void
ngx_umlo_api_free_req(ngx_umlo_api_req_t *req)
{
    json_decref(req->json);
    json_decref(req->body);
    free(req->out);
    free(req->buf);
    free(req->path);
    free(req);
}


/* every request still held gets its done call, marked cancelled */

static void
ngx_umlo_api_drain(ngx_umlo_api_t *api)
{
    unsigned               i;
    ngx_umlo_api_req_t    *req;
    ngx_umlo_api_class_t  *cls;

    for ( ;; ) {
        req = api->flying;

        if (req == NULL) {
            for (i = 0; i < NGX_UMLO_API_NCLASSES; i++) {
                cls = &api->cls[i];
                req = cls->head;

                if (req != NULL) {
                    cls->head = req->next;
                    cls->queued--;

                    if (cls->head == NULL) {
                        cls->tail = NULL;
                    }

                    break;
                }
            }

            if (req == NULL) {
                return;
            }

        } else {
            api->flying = req->next;

            curl_multi_remove_handle(api->multi, req->easy);
            ngx_umlo_api_release(api, req->easy);
            req->easy = NULL;
            api->cls[req->klass].in_flight--;
            api->in_flight--;
        }

        req->next = NULL;
        req->cancelled = 1;
        req->status = 0;
        json_decref(req->json);
        req->json = NULL;

        ngx_umlo_api_cat(ngx_umlo_api_prefix(req, req->error,
                                             req->error + sizeof(req->error)),
                         req->error + sizeof(req->error), "not finished: %s",
                         api->error);

        ngx_umlo_api_complete(api, req);
    }
}


static int
ngx_umlo_api_digits(const char **pp, const char *end, int n, int *v)
{
    const char  *p;

    p = *pp;
    *v = 0;

    if (end - p < n) {
        return -1;
    }

    while (n-- > 0) {
        if (*p < '0' || *p > '9') {
            return -1;
        }

        *v = *v * 10 + (*p++ - '0');
    }

    *pp = p;

    return 0;
}


/* "12" or "1.5" seconds, into milliseconds */

static int
ngx_umlo_api_seconds(const char *p, const char *end, int64_t *ms)
{
    int64_t  n, scale;

    if (p == end || *p < '0' || *p > '9') {
        return -1;
    }

    for (n = 0; p < end && *p >= '0' && *p <= '9'; p++) {
        if (n > 100000000000LL) {
            return -1;
        }

        n = n * 10 + (*p - '0');
    }

    n *= 1000;

    if (p < end && *p == '.') {
        p++;

        for (scale = 100; p < end && *p >= '0' && *p <= '9'; p++) {
            n += (*p - '0') * scale;
            scale /= 10;
        }
    }

    if (p != end) {
        return -1;
    }

    *ms = n;

    return 0;
}


static void
ngx_umlo_api_trim(const char **s, const char **end)
{
    while (*s < *end && (**s == ' ' || **s == '\t')) {
        (*s)++;
    }

    while (*end > *s && ((*end)[-1] == ' ' || (*end)[-1] == '\t'
                         || (*end)[-1] == '\r' || (*end)[-1] == '\n'))
    {
        (*end)--;
    }
}


int
ngx_umlo_api_parse_time(const char *s, size_t len, int64_t now_ms,
    int64_t *ms)
{
    int          year, mon, day, hour, min, sec, oh, om, sign, mdays, scale;
    int          y, era, yoe, doy, doe;
    int64_t      n, frac, t;
    const char  *p, *end;

    static const int  days[] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    p = s;
    end = s + len;
    ngx_umlo_api_trim(&p, &end);

    if (ngx_umlo_api_seconds(p, end, &n) == 0) {
        /* not ISO 8601, but seen in other APIs: epoch or delta seconds */
        *ms = (n >= 1000000000LL * 1000) ? n : now_ms + n;
        return 0;
    }

    if (ngx_umlo_api_digits(&p, end, 4, &year) != 0
        || p == end || *p++ != '-'
        || ngx_umlo_api_digits(&p, end, 2, &mon) != 0
        || p == end || *p++ != '-'
        || ngx_umlo_api_digits(&p, end, 2, &day) != 0
        || p == end || (*p != 'T' && *p != 't' && *p != ' '))
    {
        return -1;
    }

    p++;

    if (ngx_umlo_api_digits(&p, end, 2, &hour) != 0
        || p == end || *p++ != ':'
        || ngx_umlo_api_digits(&p, end, 2, &min) != 0)
    {
        return -1;
    }

    sec = 0;
    frac = 0;

    if (p < end && *p == ':') {
        p++;

        if (ngx_umlo_api_digits(&p, end, 2, &sec) != 0) {
            return -1;
        }

        if (p < end && (*p == '.' || *p == ',')) {
            p++;

            if (p == end || *p < '0' || *p > '9') {
                return -1;
            }

            for (scale = 100; p < end && *p >= '0' && *p <= '9'; p++) {
                frac += (*p - '0') * scale;
                scale /= 10;
            }
        }
    }

    sign = 0;
    oh = 0;
    om = 0;

    /* the API says UTC: a missing zone is taken as UTC too */
    if (p < end && (*p == 'Z' || *p == 'z')) {
        p++;

    } else if (p < end && (*p == '+' || *p == '-')) {
        sign = (*p++ == '-') ? -1 : 1;

        if (ngx_umlo_api_digits(&p, end, 2, &oh) != 0) {
            return -1;
        }

        if (p < end && *p == ':') {
            p++;
        }

        if (p < end && ngx_umlo_api_digits(&p, end, 2, &om) != 0) {
            return -1;
        }
    }

    if (p != end) {
        return -1;
    }

    if (year < 1970 || mon < 1 || mon > 12 || day < 1 || hour > 23
        || min > 59 || sec > 60 || oh > 23 || om > 59)
    {
        return -1;
    }

    mdays = days[mon - 1];
    if (mon == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) {
        mdays = 29;
    }

    if (day > mdays) {
        return -1;
    }

    /*
     * Days since the epoch by plain arithmetic (the civil-from-days method
     * run backwards): mktime() reads TZ, and glibc's timegm() keeps a
     * guess in a static; this shares nothing between threads.
     */
    y = year - (mon <= 2);
    era = y / 400;
    yoe = y - era * 400;
    doy = (153 * (mon + (mon > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    t = ((int64_t) era * 146097 + doe - 719468) * 86400
        + hour * 3600 + min * 60 + sec;

    *ms = t * 1000 + frac - (int64_t) sign * (oh * 60 + om) * 60000;

    return 0;
}


int
ngx_umlo_api_parse_retry_after(const char *s, size_t len, int64_t now_ms,
    int64_t *delay_ms)
{
    char         buf[64];
    time_t       t;
    int64_t      n;
    const char  *p, *end;

    p = s;
    end = s + len;
    ngx_umlo_api_trim(&p, &end);

    if (ngx_umlo_api_seconds(p, end, &n) == 0) {
        *delay_ms = n;
        return 0;
    }

    if (p == end || (size_t) (end - p) >= sizeof(buf)) {
        return -1;
    }

    memcpy(buf, p, end - p);
    buf[end - p] = '\0';

    /* an HTTP-date; curl_getdate() keeps no state, so is thread-safe */
    t = curl_getdate(buf, NULL);
    if (t == (time_t) -1 || (int64_t) t > INT64_MAX / 1000) {
        /* a date past the year 292 million: not a date (found by fuzz) */
        return -1;
    }

    n = (int64_t) t * 1000 - now_ms;
    *delay_ms = (n > 0) ? n : 0;

    return 0;
}
