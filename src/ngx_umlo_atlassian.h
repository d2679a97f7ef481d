
/*
 * ngx_umlo Atlassian admin API client (thread side).
 *
 * Threading contract:
 *
 *   - The client uses no nginx headers or nginx memory: only libc, libcurl
 *     and jansson, so that it runs in a thread-pool task and builds alone
 *     for unit tests and fuzzing.
 *   - curl_global_init() is the caller's job, done once per process before
 *     any client exists (the module does it in init_process).
 *   - One client belongs to one thread at a time.  Every function below,
 *     except ngx_umlo_api_wakeup(), must be called from that thread; done
 *     callbacks run on it too, inside ngx_umlo_api_run().
 *   - Clients share nothing: two jobs in two threads each create their own,
 *     with their own connections, rate-limit state and jitter PRNG.
 *   - Another thread stops a run by setting *conf->cancel and, to cut the
 *     wait short, calling ngx_umlo_api_wakeup() while the client exists;
 *     without the wakeup a run still sees the flag within
 *     NGX_UMLO_API_POLL_MS.
 *
 * Request lifetime: ngx_umlo_api_submit() queues a request; every request
 * it returns gets exactly one call of its done callback, on success, on a
 * final error, or with req->cancelled set when the run is cancelled,
 * aborted or the client destroyed.  After done returns, the client frees
 * the request and req->json; a callback that wants to keep the JSON takes
 * it by setting req->json to NULL (or keeps a json_incref()'d reference);
 * the same holds for req->body.  A request failed when req->error is not
 * empty: a 200 with a body that is not JSON fails too.  Callbacks may
 * submit more requests (the next page of a cursor chain) and may call
 * ngx_umlo_api_abort(), but must not run or destroy the client.
 *
 * ngx_umlo_api_create() copies the configuration and its strings; only
 * conf->cancel and conf->tick_data must outlive the client.
 *
 * The API key goes only into the Authorization header: it lives in the
 * client's header list alone, is never logged or put in an error string,
 * and is wiped on destroy.
 */


#ifndef _NGX_UMLO_ATLASSIAN_H_INCLUDED_
#define _NGX_UMLO_ATLASSIAN_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <jansson.h>


/* the longest the client sleeps before looking at cancel again */
#define NGX_UMLO_API_POLL_MS      50

/* rate-limit classes: the activity API is limited apart from the rest */
#define NGX_UMLO_API_ADMIN        0
#define NGX_UMLO_API_ACTIVITY     1
#define NGX_UMLO_API_NCLASSES     2

#define NGX_UMLO_API_ERRLEN       512


typedef struct ngx_umlo_api_s      ngx_umlo_api_t;
typedef struct ngx_umlo_api_req_s  ngx_umlo_api_req_t;

typedef void (*ngx_umlo_api_done_pt)(ngx_umlo_api_t *api,
    ngx_umlo_api_req_t *req);
typedef void (*ngx_umlo_api_tick_pt)(void *data);
typedef int (*ngx_umlo_api_idle_pt)(void *data);


/*
 * A zero selects the default: 16 in flight, 30 s per request, 10 s to
 * connect, 500 ms first backoff, 30 s longest backoff, 16 MiB per response,
 * a tick each second.  max_retries 0 means no retries.
 */

typedef struct {
    const char            *base_url;     /* "https://api.atlassian.com" */
    const char            *api_key;      /* Authorization header only */

    unsigned               max_concurrency;    /* requests in flight */
    unsigned               timeout_ms;         /* whole request */
    unsigned               connect_timeout_ms;
    unsigned               max_retries;  /* 5xx, 408, 429, transport */
    unsigned               backoff_ms;   /* first backoff, then doubled */
    unsigned               backoff_max_ms;
    size_t                 max_response; /* bytes; a larger body fails */

    volatile int          *cancel;       /* non-zero: stop, run() = -1 */

    ngx_umlo_api_tick_pt   tick;         /* lock renewal, progress */
    void                  *tick_data;
    unsigned               tick_ms;      /* at least this often */

    /*
     * Called, with tick_data, once the requests that callbacks submitted
     * are on the wire: work done here (parsing, storing what arrived)
     * overlaps with the network instead of delaying the next requests.
     * It returns non-zero when it stopped with work left: the client then
     * looks at the network without sleeping and calls it again.
     */
    ngx_umlo_api_idle_pt   idle;
} ngx_umlo_api_conf_t;


struct ngx_umlo_api_req_s {
    /* set by ngx_umlo_api_submit() */
    int                    klass;        /* NGX_UMLO_API_ADMIN, ... */
    const char            *method;       /* "GET", "POST", "DELETE", ... */
    char                  *path;         /* owned, appended to base_url */
    json_t                *body;         /* owned, NULL: no body */
    ngx_umlo_api_done_pt   done;
    void                  *data;

    /* results, valid in done */
    long                   status;       /* final HTTP status, 0: none */
    json_t                *json;         /* parsed body, error bodies too */
    char                   error[NGX_UMLO_API_ERRLEN]; /* "": success */
    unsigned               attempts;     /* requests sent */
    unsigned               cancelled:1;  /* never finished: run stopped */

    /* private to the client */
    ngx_umlo_api_t        *api;
    ngx_umlo_api_req_t    *next;
    void                  *easy;         /* CURL *, while in flight */
    char                  *out;          /* serialized body */
    size_t                 out_len;
    char                  *buf;          /* response body */
    size_t                 len;
    size_t                 cap;
    int64_t                not_before;   /* monotonic ms, for backoff */
    uint64_t               seq;          /* order sent, within the class */
    unsigned               too_large:1;
    char                   curl_error[256];
};


typedef struct {
    uint64_t               submitted;    /* ngx_umlo_api_submit() calls */
    uint64_t               sent;         /* HTTP requests started */
    uint64_t               succeeded;    /* done with a 2xx */
    uint64_t               failed;       /* done with an error */
    uint64_t               retries;
    uint64_t               http_429;
    uint64_t               http_5xx;
    uint64_t               transport_errors;
    uint64_t               bytes_received;
    uint64_t               rate_waits;   /* times a class had to wait */
    uint64_t               rate_wait_ms; /* time a class had to wait */
    unsigned               peak_in_flight;
} ngx_umlo_api_stats_t;


ngx_umlo_api_t *ngx_umlo_api_create(const ngx_umlo_api_conf_t *conf,
    char *err, size_t errlen);

/*
 * Queues a request; "path" is copied, "body" is stolen (also on failure).
 * Returns NULL when out of memory, when klass or method is invalid, or
 * once the client is aborted or cancelled.
 */
ngx_umlo_api_req_t *ngx_umlo_api_submit(ngx_umlo_api_t *api, int klass,
    const char *method, const char *path, json_t *body,
    ngx_umlo_api_done_pt done, void *data);

/*
 * Runs until nothing is queued or in flight (0), or until cancel or abort
 * (-1, see ngx_umlo_api_error()).  Not reentrant: done callbacks must not
 * call it.  Once it returned -1 the client only accepts destroy.
 */
int ngx_umlo_api_run(ngx_umlo_api_t *api);

/* from a done or tick callback: stop the run with this message */
void ngx_umlo_api_abort(ngx_umlo_api_t *api, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/*
 * Moves a queued request ahead of the others of its class: the next page
 * of a cursor chain on the critical path.  A request already sent, or
 * not queued, is left alone.
 */
void ngx_umlo_api_hurry(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req);

/* thread-safe: makes a run waiting in poll look at cancel now */
void ngx_umlo_api_wakeup(ngx_umlo_api_t *api);

/*
 * What a class learned of the server's rate limit, carried from one run to
 * the next so that a run starts at full concurrency instead of sending one
 * request and waiting for its headers.
 */
typedef struct {
    int64_t                at;           /* wall ms of the estimate, 0: none */
    int64_t                reset;        /* wall ms of the reset, 0: unknown */
    long                   limit;        /* per minute, 0: unknown */
    long                   remaining;    /* may be negative: a debt */
    unsigned               paced:1;      /* headers seen: pace by them */
    unsigned               windowed:1;   /* the budget resets, no refill */
} ngx_umlo_api_pace_t;

/*
 * An estimate older than this is not used: the org's limit may have
 * changed.  A week covers daily runs at any time of day.
 */
#define NGX_UMLO_API_PACE_TTL     (7 * 24 * 3600 * 1000)

/* pace->at is 0 if the class has heard nothing yet */
void ngx_umlo_api_pace_get(ngx_umlo_api_t *api, int klass,
    ngx_umlo_api_pace_t *pace);
/* before ngx_umlo_api_run(); an unusable estimate is ignored */
void ngx_umlo_api_pace_set(ngx_umlo_api_t *api, int klass,
    const ngx_umlo_api_pace_t *pace);

/* as text, "at reset limit remaining paced windowed"; parse: 0 or -1 */
void ngx_umlo_api_pace_format(char *buf, size_t size,
    const ngx_umlo_api_pace_t *pace);
int ngx_umlo_api_pace_parse(const char *text, ngx_umlo_api_pace_t *pace);

const char *ngx_umlo_api_error(ngx_umlo_api_t *api);
void ngx_umlo_api_stats(ngx_umlo_api_t *api, ngx_umlo_api_stats_t *st);
void ngx_umlo_api_destroy(ngx_umlo_api_t *api);

/*
 * Parses an X-RateLimit-Reset value into Unix epoch milliseconds: ISO 8601
 * UTC ("2026-08-01T10:15Z", "2026-08-01T10:15:30.250+00:00", "+0000",
 * lower-case "t" or a space), or a number of seconds (epoch seconds if
 * large, else seconds from "now_ms").  Returns 0 or -1 if unparseable.
 */
int ngx_umlo_api_parse_time(const char *s, size_t len, int64_t now_ms,
    int64_t *ms);

/* Retry-After: delta seconds or an HTTP-date; returns ms from now_ms */
int ngx_umlo_api_parse_retry_after(const char *s, size_t len,
    int64_t now_ms, int64_t *delay_ms);


#endif /* _NGX_UMLO_ATLASSIAN_H_INCLUDED_ */
