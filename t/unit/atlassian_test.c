
/*
 * Test driver for src/ngx_umlo_atlassian.c, run by t/unit/atlassian.t.
 *
 *   atlassian_test parse
 *       unit tests of the time parsers, TAP lines on stdout
 *
 *   atlassian_test run BASE_URL KEY_FILE name=value...
 *       runs one scenario against a server and prints "name=value" lines
 *       (results and client stats) for the .t to check
 *
 * The key is read from a file so that it never shows in a process list.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ngx_umlo_atlassian.h"


#define MAX_ERRORS  8


typedef struct {
    const char            *name;
    const char            *value;
} opt_t;


typedef struct job_s  job_t;

struct job_s {
    /* scenario */
    const char            *base_url;
    const char            *key;
    const char            *mode;        /* "walk" or "fanout" */
    const char            *method;
    const char            *path;
    const char            *body;
    const char            *act_path;    /* with %s for the accountId */
    const char            *pace;        /* a former run's estimate */
    int                    klass;
    unsigned               n;
    unsigned               chains;
    unsigned               limit;
    unsigned               activity;
    unsigned               abort_after;
    unsigned               cancel_ms;
    ngx_umlo_api_conf_t    conf;

    /* results */
    ngx_umlo_api_t        *api;
    int                    rc;
    volatile int           cancel;
    int64_t                cancel_at;
    int64_t                returned_at;
    int64_t                started_at;
    unsigned               ticks;
    unsigned               ok;
    unsigned               failed;
    unsigned               cancelled;
    unsigned               done_calls;
    unsigned               pages;
    unsigned               users;
    unsigned               act_sent;
    unsigned               act_ok;
    unsigned               bad_chain;
    unsigned               nerrors;
    char                   errors[MAX_ERRORS][NGX_UMLO_API_ERRLEN];
    char                   status_line[512];
    pthread_t              canceller;
};


static void pace_seed(ngx_umlo_api_t *api, int klass, const char *text);


static int tests;
static int failures;


static int64_t
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static void
ok(int cond, const char *fmt, ...)
{
    va_list  args;

    tests++;

    if (!cond) {
        failures++;
    }

    printf("%sok %d - ", cond ? "" : "not ", tests);
    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);
    printf("\n");
}


/* a test name must stay on one TAP line */

static void
shown(const char *in, char *buf, size_t size)
{
    size_t  n;

    for (n = 0; *in && n + 3 < size; in++) {
        if (*in == '\r' || *in == '\n') {
            buf[n++] = '\\';
            buf[n++] = (*in == '\r') ? 'r' : 'n';

        } else {
            buf[n++] = *in;
        }
    }

    buf[n] = '\0';
}


/* ISO 8601 reset times and Retry-After values */

static int
parse_tests(void)
{
    int          rc, bad;
    char         buf[64];
    time_t       tt;
    int64_t      ms, now, t;
    size_t       i;
    struct tm    tm;

    static const struct {
        const char  *in;
        int64_t      ms;      /* -1: must be rejected */
    } iso[] = {
        /* 2026-08-01T10:15:00Z is 1785579300 */
        { "2026-08-01T10:15Z",                  1785579300000LL },
        { "2026-08-01T10:15+0000",              1785579300000LL },
        { "2026-08-01T10:15+00:00",             1785579300000LL },
        { "2026-08-01T10:15:00Z",               1785579300000LL },
        { "2026-08-01T10:15:30Z",               1785579330000LL },
        { "2026-08-01T10:15:30.250Z",           1785579330250LL },
        { "2026-08-01T10:15:30.25Z",            1785579330250LL },
        { "2026-08-01T10:15:30.123456789Z",     1785579330123LL },
        { "2026-08-01T10:15:30,5Z",             1785579330500LL },
        { "2026-08-01T10:15:30+00:00",          1785579330000LL },
        { "2026-08-01T12:15:30+02:00",          1785579330000LL },
        { "2026-08-01T05:15:30-0500",           1785579330000LL },
        { "2026-08-01t10:15:30z",               1785579330000LL },
        { "2026-08-01 10:15:30Z",               1785579330000LL },
        { "2026-08-01T10:15:30",                1785579330000LL },
        { "  2026-08-01T10:15Z \r\n",           1785579300000LL },
        { "2024-02-29T00:00Z",                  1709164800000LL },
        { "1785579330",                         1785579330000LL },
        { "2026-02-29T00:00Z",                  -1 },
        { "2026-13-01T00:00Z",                  -1 },
        { "2026-08-01T24:00Z",                  -1 },
        { "2026-08-01T10:60Z",                  -1 },
        { "2026-08-01T10:15:30.Z",              -1 },
        { "2026-08-01T10:15:30+2",              -1 },
        { "2026-08-01T10:15:30Zjunk",           -1 },
        { "2026-08-01",                         -1 },
        { "2026-8-01T10:15Z",                   -1 },
        { "tomorrow",                           -1 },
        { "",                                   -1 },
    };

    for (i = 0; i < sizeof(iso) / sizeof(iso[0]); i++) {
        ms = 0;
        rc = ngx_umlo_api_parse_time(iso[i].in, strlen(iso[i].in), 0, &ms);
        shown(iso[i].in, buf, sizeof(buf));

        if (iso[i].ms < 0) {
            ok(rc == -1, "reset \"%s\" rejected", buf);

        } else {
            ok(rc == 0 && ms == iso[i].ms, "reset \"%s\" = %lld (got %lld)",
               buf, (long long) iso[i].ms, (long long) ms);
        }
    }

    /* against libc's gmtime_r() over 1970..2100, leap days included */
    bad = 0;

    for (t = 0; t < 4102444800LL; t += 86400 * 3 + 3607) {
        tt = (time_t) t;
        gmtime_r(&tt, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);

        if (ngx_umlo_api_parse_time(buf, strlen(buf), 0, &ms) != 0
            || ms != t * 1000)
        {
            if (bad++ == 0) {
                printf("# %s: got %lld\n", buf, (long long) ms);
            }
        }
    }

    ok(bad == 0, "1970..2100 agrees with gmtime_r() (%d wrong)", bad);

    /* a length, not a C string: the header value need not end in NUL */
    ok(ngx_umlo_api_parse_time("2026-08-01T10:15Zxyz", 17, 0, &ms) == 0
       && ms == 1785579300000LL, "reset parsed within the given length");

    now = 1785579300000LL;

    ok(ngx_umlo_api_parse_time("30", 2, now, &ms) == 0
       && ms == now + 30000, "reset as delta seconds");

    ok(ngx_umlo_api_parse_retry_after("7", 1, now, &ms) == 0 && ms == 7000,
       "Retry-After 7 = 7000 ms");
    ok(ngx_umlo_api_parse_retry_after(" 0 ", 3, now, &ms) == 0 && ms == 0,
       "Retry-After 0");
    ok(ngx_umlo_api_parse_retry_after("1.5", 3, now, &ms) == 0 && ms == 1500,
       "Retry-After 1.5");
    rc = ngx_umlo_api_parse_retry_after("Sat, 01 Aug 2026 10:15:12 GMT", 29,
                                        now, &ms);
    ok(rc == 0 && ms == 12000, "Retry-After HTTP-date (got %lld)",
       (long long) ms);

    rc = ngx_umlo_api_parse_retry_after("Sat, 01 Aug 2026 10:14:00 GMT", 29,
                                        now, &ms);
    ok(rc == 0 && ms == 0, "Retry-After HTTP-date in the past is 0");

    ok(ngx_umlo_api_parse_retry_after("soon", 4, now, &ms) == -1,
       "Retry-After garbage rejected");
    ok(ngx_umlo_api_parse_retry_after("-5", 2, now, &ms) == -1,
       "Retry-After negative rejected");

    printf("1..%d\n", tests);

    return failures ? 1 : 0;
}


static void
record_error(job_t *job, ngx_umlo_api_req_t *req)
{
    unsigned  i;

    for (i = 0; i < job->nerrors; i++) {
        if (strcmp(job->errors[i], req->error) == 0) {
            return;
        }
    }

    if (job->nerrors < MAX_ERRORS) {
        memcpy(job->errors[job->nerrors++], req->error,
               NGX_UMLO_API_ERRLEN);
    }
}


static void
account(job_t *job, ngx_umlo_api_req_t *req)
{
    char  buf[32];
    int   n;

    job->done_calls++;

    if (req->cancelled) {
        job->cancelled++;

    } else if (req->error[0] != '\0') {
        job->failed++;

    } else {
        job->ok++;
    }

    if (req->error[0] != '\0') {
        record_error(job, req);
    }

    n = snprintf(buf, sizeof(buf), " %ld", req->status);
    if (strlen(job->status_line) + n < sizeof(job->status_line) - 1
        && strstr(job->status_line, buf) == NULL)
    {
        strcat(job->status_line, buf);
    }

    if (job->abort_after && job->done_calls == job->abort_after) {
        ngx_umlo_api_abort(job->api, "test abort after %u requests",
                           job->abort_after);
    }
}


static void
act_done(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    job_t  *job;

    (void) api;

    job = req->data;
    account(job, req);

    if (req->error[0] == '\0' && json_is_object(req->json)) {
        job->act_ok++;
    }
}


static void
page_done(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    char         path[512];
    job_t       *job;
    json_t      *data, *user, *next, *body;
    size_t       i;
    const char  *cursor, *id;

    job = req->data;

    account(job, req);

    if (req->error[0] != '\0') {
        return;
    }

    data = json_object_get(req->json, "data");
    if (!json_is_array(data)) {
        job->bad_chain++;
        return;
    }

    job->pages++;
    job->users += json_array_size(data);

    json_array_foreach(data, i, user) {
        id = json_string_value(json_object_get(user, "accountId"));

        if (id != NULL && job->act_sent < job->activity) {
            snprintf(path, sizeof(path), job->act_path, id);
            job->act_sent++;

            if (ngx_umlo_api_submit(api, NGX_UMLO_API_ACTIVITY, "GET", path,
                                    NULL, act_done, job) == NULL)
            {
                job->bad_chain++;
            }
        }
    }

    next = json_object_get(json_object_get(req->json, "links"), "next");
    cursor = json_string_value(next);

    if (cursor == NULL) {
        return;
    }

    /* the next page: the same query with the cursor */
    body = json_deep_copy(req->body);
    if (body == NULL || json_object_set_new(body, "cursor",
                                            json_string(cursor)) != 0)
    {
        json_decref(body);
        job->bad_chain++;
        return;
    }

    if (ngx_umlo_api_submit(api, req->klass, req->method, req->path, body,
                            page_done, job) == NULL)
    {
        job->bad_chain++;
    }
}


static void
fanout_done(ngx_umlo_api_t *api, ngx_umlo_api_req_t *req)
{
    (void) api;

    account(req->data, req);
}


static void
tick(void *data)
{
    job_t  *job;

    job = data;
    job->ticks++;
}


static void *
canceller(void *data)
{
    job_t  *job;

    job = data;
    usleep(job->cancel_ms * 1000);

    job->cancel_at = now_ms();
    job->cancel = 1;

    /* no ngx_umlo_api_wakeup(): the poll timeout alone must be enough */

    return NULL;
}


static void *
run_job(void *data)
{
    char           err[256];
    job_t         *job;
    json_t        *body;
    unsigned       i;
    json_error_t   jerr;

    job = data;

    job->conf.base_url = job->base_url;
    job->conf.api_key = job->key;
    job->conf.cancel = &job->cancel;
    job->conf.tick = tick;
    job->conf.tick_data = job;

    job->api = ngx_umlo_api_create(&job->conf, err, sizeof(err));
    if (job->api == NULL) {
        fprintf(stderr, "create: %s\n", err);
        job->rc = -2;
        return NULL;
    }

    if (job->pace != NULL) {
        pace_seed(job->api, job->klass, job->pace);
    }

    if (strcmp(job->mode, "walk") == 0) {
        for (i = 0; i < job->chains; i++) {
            body = json_pack("{s:i, s:[s, s, s]}", "limit", (int) job->limit,
                             "expand", "productAccess", "groups",
                             "platformRoles");
            if (ngx_umlo_api_submit(job->api, NGX_UMLO_API_ADMIN, "POST",
                                    job->path, body, page_done, job) == NULL)
            {
                job->bad_chain++;
            }
        }

    } else {
        for (i = 0; i < job->n; i++) {
            body = NULL;

            if (job->body != NULL) {
                body = json_loads(job->body, 0, &jerr);
                if (body == NULL) {
                    fprintf(stderr, "body: %s\n", jerr.text);
                    job->rc = -2;
                    ngx_umlo_api_destroy(job->api);
                    job->api = NULL;
                    return NULL;
                }
            }

            if (ngx_umlo_api_submit(job->api, job->klass, job->method,
                                    job->path, body, fanout_done, job)
                == NULL)
            {
                job->bad_chain++;
            }
        }
    }

    if (job->cancel_ms) {
        if (pthread_create(&job->canceller, NULL, canceller, job) != 0) {
            job->rc = -2;
            return NULL;
        }
    }

    job->started_at = now_ms();
    job->rc = ngx_umlo_api_run(job->api);
    job->returned_at = now_ms();

    if (job->cancel_ms) {
        pthread_join(job->canceller, NULL);
    }

    return NULL;
}


/* "at reset limit remaining paced windowed", as the module stores it */

static void
pace_seed(ngx_umlo_api_t *api, int klass, const char *text)
{
    ngx_umlo_api_pace_t  pace;

    if (ngx_umlo_api_pace_parse(text, &pace) != 0) {
        fprintf(stderr, "bad pace: %s\n", text);
        return;
    }

    ngx_umlo_api_pace_set(api, klass, &pace);
}


static void
report(job_t *job, const char *p)
{
    char                  text[128];
    unsigned              i;
    ngx_umlo_api_pace_t   pace;
    ngx_umlo_api_stats_t  st;

    printf("%src=%d\n", p, job->rc);

    if (job->api == NULL) {
        return;
    }

    ngx_umlo_api_stats(job->api, &st);

    printf("%serror=%s\n", p, ngx_umlo_api_error(job->api));
    printf("%selapsed_ms=%lld\n", p,
           (long long) (job->returned_at - job->started_at));

    if (job->cancel_at) {
        printf("%scancel_latency_ms=%lld\n", p,
               (long long) (job->returned_at - job->cancel_at));
    }

    printf("%sok=%u\n%sfailed=%u\n%scancelled=%u\n%sdone_calls=%u\n",
           p, job->ok, p, job->failed, p, job->cancelled, p,
           job->done_calls);
    printf("%spages=%u\n%susers=%u\n%sact_ok=%u\n%sbad_chain=%u\n",
           p, job->pages, p, job->users, p, job->act_ok, p, job->bad_chain);
    printf("%sticks=%u\n%sstatuses=%s\n", p, job->ticks, p,
           job->status_line);

    printf("%ssubmitted=%llu\n%ssent=%llu\n%ssucceeded=%llu\n"
           "%sfailed_stat=%llu\n%sretries=%llu\n%shttp_429=%llu\n"
           "%shttp_5xx=%llu\n%stransport_errors=%llu\n"
           "%sbytes_received=%llu\n%srate_waits=%llu\n"
           "%srate_wait_ms=%llu\n%speak_in_flight=%u\n",
           p, (unsigned long long) st.submitted,
           p, (unsigned long long) st.sent,
           p, (unsigned long long) st.succeeded,
           p, (unsigned long long) st.failed,
           p, (unsigned long long) st.retries,
           p, (unsigned long long) st.http_429,
           p, (unsigned long long) st.http_5xx,
           p, (unsigned long long) st.transport_errors,
           p, (unsigned long long) st.bytes_received,
           p, (unsigned long long) st.rate_waits,
           p, (unsigned long long) st.rate_wait_ms,
           p, st.peak_in_flight);

    ngx_umlo_api_pace_get(job->api, job->klass, &pace);
    ngx_umlo_api_pace_format(text, sizeof(text), &pace);
    printf("%space=%s\n", p, text);

    for (i = 0; i < job->nerrors; i++) {
        printf("%sreq_error=%s\n", p, job->errors[i]);
    }
}


static const char *
opt(opt_t *opts, int n, const char *name, const char *def)
{
    int  i;

    for (i = 0; i < n; i++) {
        if (strcmp(opts[i].name, name) == 0) {
            return opts[i].value;
        }
    }

    return def;
}


static unsigned
uopt(opt_t *opts, int n, const char *name, unsigned def)
{
    const char  *v;

    v = opt(opts, n, name, NULL);

    return v ? (unsigned) strtoul(v, NULL, 10) : def;
}


static char *
read_key(const char *file)
{
    FILE    *f;
    char     buf[512];
    size_t   len;

    f = fopen(file, "r");
    if (f == NULL) {
        return NULL;
    }

    if (fgets(buf, sizeof(buf), f) == NULL) {
        fclose(f);
        return NULL;
    }

    fclose(f);

    len = strcspn(buf, "\r\n");
    buf[len] = '\0';

    return strdup(buf);
}


int
main(int argc, char **argv)
{
    int        i, n, nthreads, rc;
    char      *key, *eq;
    opt_t      opts[64];
    job_t     *jobs;
    pthread_t  th[8];

    setvbuf(stdout, NULL, _IOLBF, 0);

    if (argc >= 2 && strcmp(argv[1], "parse") == 0) {
        return parse_tests();
    }

    if (argc < 4 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: %s parse | run BASE_URL KEY_FILE "
                "name=value...\n", argv[0]);
        return 2;
    }

    key = read_key(argv[3]);
    if (key == NULL) {
        fprintf(stderr, "cannot read the key file\n");
        return 2;
    }

    n = 0;
    for (i = 4; i < argc && n < 64; i++) {
        eq = strchr(argv[i], '=');
        if (eq == NULL) {
            fprintf(stderr, "bad option: %s\n", argv[i]);
            free(key);
            return 2;
        }

        *eq = '\0';
        opts[n].name = argv[i];
        opts[n].value = eq + 1;
        n++;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(key);
        return 2;
    }

    nthreads = (int) uopt(opts, n, "threads", 1);
    if (nthreads < 1 || nthreads > 8) {
        nthreads = 1;
    }

    jobs = calloc(nthreads, sizeof(job_t));
    if (jobs == NULL) {
        free(key);
        return 2;
    }

    for (i = 0; i < nthreads; i++) {
        jobs[i].base_url = argv[2];
        jobs[i].key = key;
        jobs[i].mode = opt(opts, n, "mode", "fanout");
        jobs[i].method = opt(opts, n, "method", "GET");
        jobs[i].path = opt(opts, n, "path", "/");
        jobs[i].body = opt(opts, n, "body", NULL);
        jobs[i].act_path = opt(opts, n, "act_path", NULL);
        jobs[i].pace = opt(opts, n, "pace", NULL);
        jobs[i].klass = (int) uopt(opts, n, "klass", 0);
        jobs[i].n = uopt(opts, n, "n", 1);
        jobs[i].chains = uopt(opts, n, "chains", 1);
        jobs[i].limit = uopt(opts, n, "limit", 50);
        jobs[i].activity = jobs[i].act_path ? uopt(opts, n, "activity", 0)
                                            : 0;
        jobs[i].abort_after = uopt(opts, n, "abort_after", 0);
        jobs[i].cancel_ms = uopt(opts, n, "cancel_ms", 0);

        jobs[i].conf.max_concurrency = uopt(opts, n, "conc", 8);
        jobs[i].conf.timeout_ms = uopt(opts, n, "timeout", 5000);
        jobs[i].conf.connect_timeout_ms = uopt(opts, n, "connect", 2000);
        jobs[i].conf.max_retries = uopt(opts, n, "retries", 3);
        jobs[i].conf.backoff_ms = uopt(opts, n, "backoff", 50);
        jobs[i].conf.backoff_max_ms = uopt(opts, n, "backoff_max", 1000);
        jobs[i].conf.max_response = uopt(opts, n, "max_response", 0);
        jobs[i].conf.tick_ms = uopt(opts, n, "tick", 100);
    }

    if (nthreads == 1) {
        run_job(&jobs[0]);
        report(&jobs[0], "");

    } else {
        for (i = 0; i < nthreads; i++) {
            if (pthread_create(&th[i], NULL, run_job, &jobs[i]) != 0) {
                fprintf(stderr, "pthread_create failed\n");
                return 2;
            }
        }

        for (i = 0; i < nthreads; i++) {
            char  prefix[16];

            pthread_join(th[i], NULL);
            snprintf(prefix, sizeof(prefix), "t%d.", i);
            report(&jobs[i], prefix);
        }
    }

    rc = 0;

    for (i = 0; i < nthreads; i++) {
        if (jobs[i].rc == -2) {
            rc = 2;
        }

        ngx_umlo_api_destroy(jobs[i].api);
    }

    free(jobs);
    free(key);
    curl_global_cleanup();

    return rc;
}
