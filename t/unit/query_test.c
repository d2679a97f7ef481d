/*
 * Test driver for src/ngx_umlo_query.c, run by t/unit/query.t.
 *
 *   query_test check
 *       builds a snapshot from fixture documents made here and checks the
 *       engine against a brute-force reference that reads the same
 *       documents; TAP lines on stdout, exit 1 on any failure
 *
 *   query_test bench N
 *       a generated N-user snapshot and the time of a few representative
 *       queries, "bench ..." lines on stdout
 *
 * The reference never looks at the snapshot's structures: it works on
 * the JSON documents, folds text with the C library's wide characters and
 * formats dates with gmtime_r(), so that it shares nothing with the code
 * under test but the documented rules.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wchar.h>
#include <wctype.h>

#include <jansson.h>

#include "ngx_umlo_snapshot.h"
#include "ngx_umlo_query.h"


#define DAY_MS        86400000LL
#define GEN           41

/* 2026-06-01T00:00:00Z */
#define NOW_MS        1780272000000LL


/* ---------------------------------------------------------------------- */
/* TAP                                                                     */
/* ---------------------------------------------------------------------- */


static int  ntests, nfailed;


static int
ok(int cond, const char *fmt, ...)
{
    va_list  ap;

    ntests++;
    printf("%sok %d - ", cond ? "" : "not ", ntests);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");

    if (!cond) {
        nfailed++;
    }

    return cond;
}


static void
diag(const char *fmt, ...)
{
    va_list  ap;

    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}


/* ---------------------------------------------------------------------- */
/* small helpers                                                           */
/* ---------------------------------------------------------------------- */


static uint64_t  rng_state = 0x9e3779b97f4a7c15ULL;


static uint32_t
rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;

    return n ? (uint32_t) (rng_state % n) : 0;
}


static int
chance(int percent)
{
    return (int) rnd(100) < percent;
}


static void
iso(int64_t ms, char *buf, size_t size)
{
    time_t     t;
    size_t     n;
    struct tm  tm;

    t = (time_t) (ms / 1000);
    gmtime_r(&t, &tm);
    n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03uZ", (unsigned) (ms % 1000) % 1000);
}


/* the fixture formats only: YYYY-MM-DD, ...THH:MM:SS[.mmm]Z */
static int64_t
parse_time(const char *s)
{
    int        ms, n;
    struct tm  tm;

    if (s == NULL) {
        return 0;
    }

    memset(&tm, 0, sizeof(tm));
    ms = 0;

    n = sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms);
    if (n < 3) {
        return 0;
    }

    tm.tm_year -= 1900;
    tm.tm_mon -= 1;

    return (int64_t) timegm(&tm) * 1000 + (n == 7 ? ms : 0);
}


/* lower-cased wide string of UTF-8 text; NULL stays NULL */
static wchar_t *
ref_fold(const char *s)
{
    size_t    n, i;
    wchar_t  *w;

    if (s == NULL) {
        return NULL;
    }

    n = mbstowcs(NULL, s, 0);
    if (n == (size_t) -1) {
        fprintf(stderr, "bad fixture text\n");
        exit(2);
    }

    w = malloc((n + 1) * sizeof(wchar_t));
    mbstowcs(w, s, n + 1);

    for (i = 0; i < n; i++) {
        w[i] = towlower(w[i]);
    }

    return w;
}


static const char *
jstr(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}


static int
streq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }

    return strcmp(a, b) == 0;
}


typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
} sbuf_t;


static void
sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = realloc(b->data, b->cap);
    }

    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}


static void
sb_str(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}


static void
sb_printf(sbuf_t *b, const char *fmt, ...)
{
    char     tmp[1024];
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);

    sb_str(b, tmp);
}


/* percent-encodes a value, commas raw or encoded, spaces as + or %20 */
static void
sb_enc(sbuf_t *b, const char *s)
{
    char  tmp[4];

    for ( ; *s; s++) {
        unsigned char  c = (unsigned char) *s;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
            || c == '~' || (c == ',' && chance(50))
            || (c == '/' && chance(50)))
        {
            sb_add(b, (char *) &c, 1);

        } else if (c == ' ' && chance(50)) {
            sb_add(b, "+", 1);

        } else {
            snprintf(tmp, sizeof(tmp), chance(50) ? "%%%02X" : "%%%02x", c);
            sb_add(b, tmp, 3);
        }
    }
}


/* ---------------------------------------------------------------------- */
/* the fixture world                                                       */
/* ---------------------------------------------------------------------- */


#define MAX_SITES     8
#define MAX_PRODUCTS  32
#define MAX_GROUPS    300


typedef struct {
    const char  *host;
    char         cloud[64];
} w_site_t;


typedef struct {
    int          site;
    const char  *key;
    char         ari[160];
} w_product_t;


typedef struct {
    char         id[64];
    const char  *name;
} w_group_t;


typedef struct {
    int          nsites;
    w_site_t     sites[MAX_SITES];
    int          nproducts;
    w_product_t  products[MAX_PRODUCTS];
    int          ngroups;
    w_group_t    groups[MAX_GROUPS];
    char         names[MAX_GROUPS][32];
    json_t      *users;        /* the user documents */
} world_t;


static const char  *site_hosts[MAX_SITES] = {
    "site-1.atlassian.net", "site-2.atlassian.net", "site-3.atlassian.net",
    "acme-eu.atlassian.net", "site-5.atlassian.net", "site-6.atlassian.net",
    "site-7.atlassian.net", "site-8.atlassian.net"
};

static const char  *statuses[] = {
    "active", "active", "active", "active", "suspended", "deactivated",
    "not_invited", "for_deletion"
};

static const char  *types[] = {
    "atlassian", "atlassian", "atlassian", "atlassian", "atlassian",
    "atlassian", "app", "customer"
};

static const char  *first_names[20] = {
    "Anna", "Zoë", "Émile", "Jürgen", "Ольга", "李", "José", "Björn",
    "Chloé", "Dmitri", "Eve", "Fatima", "Grace", "Hiro", "Ingrid", "Jonas",
    "Kai", "Lena", "Mateo", "Nia"
};

static const char  *last_names[25] = {
    "Ärger", "Berg", "Chen", "Dubois", "Eriksson", "Fischer", "García",
    "Hansen", "Ivanova", "Jensen", "Kowalski", "López", "Müller", "Nguyen",
    "O'Brien", "Petrov", "Quinn", "Rossi", "Schmidt", "Tanaka", "Ünal",
    "Varga", "Weiß", "Xu", "Young"
};


static json_t *
w_entry(world_t *w, int p, const char *roles, int64_t last)
{
    int          billable;
    char         ts[40], *copy, *r, *save;
    json_t      *e, *list;

    list = json_array();
    billable = 0;

    copy = strdup(roles);
    for (r = strtok_r(copy, " ", &save); r; r = strtok_r(NULL, " ", &save)) {
        json_array_append_new(list, json_string(r));
        billable |= strcmp(r, "atlassian/user") == 0
                    || strcmp(r, "atlassian/admin") == 0;
    }
    free(copy);

    if (last) {
        iso(last, ts, sizeof(ts));
    }

    if (p < 0) {
        /* an ARI no workspace listed: the model's "unknown" site */
        e = json_pack("{s:s,s:s,s:n,s:o,s:b,s:[],s:o}",
                      "resource_id", "ari:cloud:bitbucket::site/gone",
                      "site", "unknown", "product", "roles", list,
                      "billable", billable, "via_groups",
                      "last_active", last ? json_string(ts) : json_null());
        return e;
    }

    e = json_pack("{s:s,s:s,s:s,s:o,s:b,s:[],s:o}",
                  "resource_id", w->products[p].ari,
                  "site", w->sites[w->products[p].site].host,
                  "product", w->products[p].key,
                  "roles", list, "billable", billable, "via_groups",
                  "last_active", last ? json_string(ts) : json_null());

    return e;
}


/* a user document as ngx_umlo_model_user() writes it */
static json_t *
w_user(const char *id, const char *name, const char *email,
    const char *status, const char *type, const char *claim,
    int64_t created, const char *platform, json_t *groups, json_t *products)
{
    char         ts[40], *copy, *r, *save, *last;
    size_t       i;
    json_t      *doc, *sites, *roles, *e;
    const char  *la, *host;

    roles = json_array();
    if (platform) {
        copy = strdup(platform);
        for (r = strtok_r(copy, " ", &save); r;
             r = strtok_r(NULL, " ", &save))
        {
            json_array_append_new(roles, json_string(r));
        }
        free(copy);
    }

    sites = json_array();
    last = NULL;

    json_array_foreach(products, i, e) {
        host = jstr(e, "site");
        la = jstr(e, "last_active");

        if (la && (last == NULL || strcmp(la, last) > 0)) {
            last = (char *) la;
        }

        {
            size_t   j;
            json_t  *s;
            int      seen = 0;

            json_array_foreach(sites, j, s) {
                seen |= strcmp(json_string_value(s), host) == 0;
            }

            if (!seen) {
                json_array_append_new(sites, json_string(host));
            }
        }
    }

    if (created) {
        iso(created, ts, sizeof(ts));
        ts[19] = 'Z';
        ts[20] = '\0';
    }

    doc = json_pack("{s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,"
                    "s:o,s:o}",
                    "id", id,
                    "name", name ? json_string(name) : json_null(),
                    "email", email ? json_string(email) : json_null(),
                    "avatar", chance(50)
                              ? json_sprintf("https://avatars.example/%s",
                                             id)
                              : json_null(),
                    "account_status", json_string(
                        status && strcmp(status, "deactivated") == 0
                        ? "inactive" : "active"),
                    "account_type", type ? json_string(type) : json_null(),
                    "claim_status", claim ? json_string(claim)
                                          : json_null(),
                    "status", status ? json_string(status) : json_null(),
                    "membership_status", json_string("active"),
                    "added_to_org", created ? json_string(ts) : json_null(),
                    "platform_roles", roles,
                    "groups", groups,
                    "products", products,
                    "sites", sites,
                    "last_active", last ? json_string(last) : json_null());

    if (doc == NULL) {
        fprintf(stderr, "json_pack failed for %s\n", id);
        exit(2);
    }

    return doc;
}


static json_t *
w_groups(world_t *w, const int *idx)
{
    json_t  *list;

    list = json_array();

    for ( ; *idx >= 0; idx++) {
        json_array_append_new(list, json_pack("{s:s,s:o}", "id",
                              w->groups[*idx].id, "name",
                              w->groups[*idx].name
                              ? json_string(w->groups[*idx].name)
                              : json_null()));
    }

    return list;
}


static int64_t
w_time(int64_t from, int64_t to)
{
    return from + (int64_t) rnd((uint32_t) ((to - from) / 1000)) * 1000
           + rnd(1000);
}


static void
w_init(world_t *w, int nsites, int ngroups)
{
    int          s, p, k, g;
    char         cloud[64], ari[160];
    static const char  *keys[3] = { "jira-software", "confluence",
                                    "jira-servicedesk" };
    static const char  *special[6] = {
        "jira-software-users", "confluence-users", "site-admins",
        "Sales, EMEA", NULL, "Émigrés"
    };

    memset(w, 0, sizeof(world_t));

    w->nsites = nsites;

    for (s = 0; s < nsites; s++) {
        w->sites[s].host = site_hosts[s];
        snprintf(cloud, sizeof(cloud), "c0ffee%02d-1234-4abc-9def-%012d",
                 s + 1, s + 1);
        memcpy(w->sites[s].cloud, cloud, sizeof(cloud));

        /* the third site has confluence only, and no users */
        for (k = 0; k < (s == 2 ? 1 : (s == 1 ? 2 : 3)); k++) {
            p = w->nproducts++;
            w->products[p].site = s;
            w->products[p].key = keys[s == 2 ? 1 : k];
            snprintf(ari, sizeof(ari), "ari:cloud:%s::site/%s",
                     w->products[p].key, cloud);
            memcpy(w->products[p].ari, ari, sizeof(ari));
        }
    }

    w->ngroups = ngroups;

    for (g = 0; g < ngroups; g++) {
        snprintf(w->groups[g].id, sizeof(w->groups[g].id),
                 "%08x-0000-4000-8000-%012d", 0x7e40d078 + g * 7919, g);

        if (g < 6) {
            w->groups[g].name = special[g];

        } else {
            snprintf(w->names[g], sizeof(w->names[g]), "team-%03d", g);
            w->groups[g].name = w->names[g];
        }
    }

    w->users = json_array();
}


/* a user of the generated population */
static json_t *
w_random_user(world_t *w, int i)
{
    int          p, g, n;
    char         id[64], name[96], email[96], platform[96];
    int64_t      created, last;
    json_t      *products, *groups;
    const char  *roles;
    int          gidx[MAX_GROUPS + 1];

    snprintf(id, sizeof(id), "%s%06x%08x", (i % 3) ? "5b10" : "712020:",
             (unsigned) (i * 2654435761u) & 0xffffff, (unsigned) i);

    snprintf(name, sizeof(name), "%s %s %d", first_names[i % 20],
             last_names[(i / 20) % 25], i);
    snprintf(email, sizeof(email), "u%d.%s@example.com", i,
             (i % 7) ? "team" : "Ops");

    created = chance(90) ? (chance(15) ? 1600000000000LL + rnd(5) * DAY_MS
                                       : w_time(1546300800000LL,
                                                NOW_MS - DAY_MS))
                         : 0;
    created -= created % 1000;

    products = json_array();

    for (p = 0; p < w->nproducts; p++) {
        /* the third site has no users */
        if (w->products[p].site == 2 || !chance(35)) {
            continue;
        }

        n = rnd(10);
        roles = n < 6 ? "atlassian/user"
                : n < 7 ? "atlassian/admin atlassian/user"
                : n < 9 ? "atlassian/guest" : "";

        last = chance(60) ? (chance(10) ? 1770000000123LL
                                        : w_time(1704067200000LL,
                                                 NOW_MS - 1000))
                          : 0;

        json_array_append_new(products, w_entry(w, p, roles, last));
    }

    if (chance(3)) {
        json_array_append_new(products,
                              w_entry(w, -1, "atlassian/user",
                                      w_time(1704067200000LL, NOW_MS)));
    }

    n = 0;
    for (g = 0; g < w->ngroups; g++) {
        if (chance(w->ngroups > 20 ? 2 : 25)) {
            gidx[n++] = g;
        }
    }
    gidx[n] = -1;
    groups = w_groups(w, gidx);

    platform[0] = '\0';
    if (chance(5)) {
        strcat(platform, "atlassian/org-admin ");
    }
    if (chance(5)) {
        strcat(platform, "atlassian/site-admin");
    }

    return w_user(id, chance(4) ? NULL : name, chance(10) ? NULL : email,
                  chance(3) ? NULL : statuses[rnd(8)],
                  chance(2) ? NULL : types[rnd(8)],
                  chance(5) ? NULL : (chance(70) ? "managed" : "unmanaged"),
                  created, platform[0] ? platform : NULL, groups, products);
}


/* the hand-made users of the checks, each for a rule */
static void
w_special(world_t *w)
{
    int  none[] = { -1 };
    int  g01[] = { 0, 1, -1 };
    int  g3[] = { 3, -1 };
    int  g45[] = { 4, 5, -1 };
    int  g2[] = { 2, -1 };

#define ADD(doc)  json_array_append_new(w->users, doc)
#define T(s)      parse_time(s)

    /* Zoë: jira on site 1 (billable), confluence guest on site 2 */
    ADD(w_user("a0-zoe", "Zoë Ärger", "zoe@example.com", "active",
               "atlassian", "managed", T("2022-02-05T14:20:42Z"), NULL,
               w_groups(w, g01),
               json_pack("[o,o]",
                         w_entry(w, 0, "atlassian/user",
                                 T("2026-05-12T23:29:41.740Z")),
                         w_entry(w, 4, "atlassian/guest",
                                 T("2025-01-02T03:04:05.006Z")))));

    ADD(w_user("a1-emile", "ÉMILE", "emile@example.org", "active",
               "atlassian", "unmanaged", T("2023-07-01"), NULL,
               w_groups(w, g45),
               json_pack("[o]", w_entry(w, 1, "atlassian/admin "
                                        "atlassian/user", 0))));

    ADD(w_user("a2-lilei", "李雷", "li.lei@example.cn", "suspended",
               "atlassian", "managed", T("2021-03-03T00:00:00Z"),
               "atlassian/site-admin", w_groups(w, g3),
               json_pack("[o,o]",
                         w_entry(w, 3, "atlassian/user",
                                 T("2024-11-30T10:00:00.000Z")),
                         w_entry(w, 4, "", T("2026-04-01T08:00:00.500Z")))));

    /* no email, never active anywhere, but with billable access */
    ADD(w_user("a3-nomail", "No Mail", NULL, "active", "atlassian",
               "managed", T("2020-01-15T09:30:00Z"), NULL, w_groups(w, g01),
               json_pack("[o]", w_entry(w, 0, "atlassian/user", 0))));

    /* no name; never active, created unknown */
    ADD(w_user("a4-noname", NULL, "ghost@example.com", "not_invited",
               "atlassian", NULL, 0, NULL, w_groups(w, none),
               json_array()));

    /* active on site 2 only, with access to site 1 too */
    ADD(w_user("a5-half", "Half Active", "half@example.com", "active",
               "atlassian", "managed", T("2019-05-05T05:05:05Z"), NULL,
               w_groups(w, none),
               json_pack("[o,o]",
                         w_entry(w, 0, "atlassian/user", 0),
                         w_entry(w, 3, "atlassian/user",
                                 T("2026-05-30T00:00:00.000Z")))));

    /* what a spreadsheet would run, quotes, commas, newlines */
    ADD(w_user("a6-formula", "=SUM(A1:A9)", "+1@example.com", "active",
               "atlassian", "managed", T("2024-01-01T00:00:00Z"), NULL,
               w_groups(w, g3),
               json_pack("[o]", w_entry(w, 2, "atlassian/user",
                                        T("2026-01-01T00:00:00.000Z")))));

    ADD(w_user("a7-quote", "Smith, \"Bob\"", "-bob@example.com",
               "deactivated", "atlassian", "unmanaged",
               T("2024-02-02T00:00:00Z"), NULL, w_groups(w, none),
               json_array()));

    ADD(w_user("a8-newline", "Multi\nLine", "@at@example.com", "active",
               "app", "managed", T("2024-03-03T00:00:00Z"), NULL,
               w_groups(w, none), json_array()));

    ADD(w_user("a9-tab", "\tTab Start", "tab@example.com", "active",
               "customer", "managed", T("2024-04-04T00:00:00Z"), NULL,
               w_groups(w, none), json_array()));

    /* an org admin without products */
    ADD(w_user("b0-orgadmin", "Olga Admin", "olga@example.com", "active",
               "atlassian", "managed", T("2018-08-08T08:08:08Z"),
               "atlassian/org-admin", w_groups(w, g2), json_array()));

    /* used a product, holds no role on it */
    ADD(w_user("b1-norole", "Norbert Role", "norbert@example.com", "active",
               "atlassian", "managed", T("2023-03-03T03:03:03Z"), NULL,
               w_groups(w, none),
               json_pack("[o]", w_entry(w, 1, "",
                                        T("2026-03-03T03:03:03.303Z")))));

    /* two of one name: the id decides (their emails agree) */
    ADD(w_user("b2-same", "Alex Same", "alex1@example.com", "active",
               "atlassian", "managed", T("2023-01-01T00:00:00Z"), NULL,
               w_groups(w, none), json_array()));
    ADD(w_user("b3-same", "Alex Same", "alex2@example.com", "active",
               "atlassian", "managed", T("2023-01-01T00:00:00Z"), NULL,
               w_groups(w, none), json_array()));

    /* a product of a workspace the listing did not have */
    ADD(w_user("b4-unknown", "Una Known", "una@example.com", "active",
               "atlassian", "managed", T("2022-06-06T06:06:06Z"), NULL,
               w_groups(w, none),
               json_pack("[o]", w_entry(w, -1, "atlassian/user",
                                        T("2026-02-02T02:02:02.202Z")))));

    /* exactly 30 days before now, and 1 ms after that */
    ADD(w_user("c0-edge", "Edge Exact", "edge0@example.com", "active",
               "atlassian", "managed", T("2020-02-02T00:00:00Z"), NULL,
               w_groups(w, none),
               json_pack("[o]", w_entry(w, 0, "atlassian/user",
                                        NOW_MS - 30 * DAY_MS))));
    ADD(w_user("c1-edge", "Edge After", "edge1@example.com", "active",
               "atlassian", "managed", T("2020-02-02T00:00:00Z"), NULL,
               w_groups(w, none),
               json_pack("[o]", w_entry(w, 0, "atlassian/user",
                                        NOW_MS - 30 * DAY_MS + 1))));

    /* quotes without a comma still need quoting in CSV */
    ADD(w_user("c2-quote", "Quote \"Q\" Only", "q@example.com", "active",
               "atlassian", "managed", T("2024-05-05T00:00:00Z"), NULL,
               w_groups(w, none), json_array()));

    /* the org-wide date can be newer than any product entry's */
    {
        json_t  *doc;

        doc = w_user("c3-orgnewer", "Org Newer", "newer@example.com",
                     "active", "atlassian", "managed",
                     T("2021-01-01T00:00:00Z"), NULL, w_groups(w, none),
                     json_pack("[o]", w_entry(w, 3, "atlassian/user",
                                              T("2025-01-01T00:00:00Z"))));
        json_object_set_new(doc, "last_active",
                            json_string("2026-05-31T12:00:00.000Z"));
        ADD(doc);
    }

#undef ADD
#undef T
}


static ngx_umlo_snap_t *
w_snapshot(world_t *w, long long gen)
{
    int               s, p, g;
    size_t            i;
    json_t           *doc, *prods, *u;
    ngx_umlo_snap_t  *snap;

    snap = ngx_umlo_snap_create();
    if (snap == NULL) {
        return NULL;
    }

    for (s = 0; s < w->nsites; s++) {
        prods = json_array();

        for (p = 0; p < w->nproducts; p++) {
            if (w->products[p].site != s) {
                continue;
            }

            json_array_append_new(prods,
                json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:i}",
                          "id", w->products[p].ari,
                          "product", w->products[p].key,
                          "name", w->products[p].key,
                          "site", w->sites[s].host,
                          "status", "ONLINE",
                          "capacity", p == 1 ? json_null()
                                             : json_integer(100 + p),
                          "usage", 5));
        }

        doc = json_pack("{s:s,s:o}", "site", w->sites[s].host,
                        "products", prods);

        if (ngx_umlo_snap_add_site(snap, doc) != 0) {
            fprintf(stderr, "add_site failed\n");
            exit(2);
        }

        json_decref(doc);
    }

    for (g = 0; g < w->ngroups; g++) {
        doc = json_pack("{s:s,s:o,s:s,s:i,s:b,s:[]}", "id", w->groups[g].id,
                        "name", w->groups[g].name
                                ? json_string(w->groups[g].name)
                                : json_null(),
                        "directory_id", "dir", "users", 0,
                        "external_synced", 0, "grants");

        if (ngx_umlo_snap_add_group(snap, doc) != 0) {
            fprintf(stderr, "add_group failed\n");
            exit(2);
        }

        json_decref(doc);
    }

    json_array_foreach(w->users, i, u) {
        if (ngx_umlo_snap_add_user(snap, u) != 0) {
            fprintf(stderr, "add_user failed\n");
            exit(2);
        }
    }

    if (ngx_umlo_snap_finish(snap) != 0) {
        fprintf(stderr, "finish failed\n");
        exit(2);
    }

    /* the metadata ngx_umlo_snap_load() takes from the summary */
    snap->gen = gen;
    snap->sync_id = "s-1780271000000-0c1d2e3f";
    snap->data_as_of = "2026-05-31T23:50:00Z";
    snap->activity_as_of = NULL;

    return snap;
}


/* ---------------------------------------------------------------------- */
/* the reference                                                           */
/* ---------------------------------------------------------------------- */


typedef struct {
    json_t    *doc;
    const char *id;
    wchar_t   *fname;
    wchar_t   *femail;
    int64_t    created;
    int64_t    last;        /* org-wide */
} ref_user_t;


typedef struct {
    const char  *site;
    const char  *product;
    const char  *status;
    const char  *account_type;
    const char  *claim;
    const char  *group;
    const char  *role;
    int          billable;    /* -1: absent */
    int          never;
    int          inactive;
    const char  *q;
    const char  *after;
    const char  *before;
    const char  *sort;
    const char  *order;
} spec_t;


#define SPEC_NONE  { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1, \
                     NULL, NULL, NULL, NULL, NULL }


typedef struct {
    world_t     *w;
    ref_user_t  *users;
    size_t       n;
    json_t      *by_id;      /* id -> index */
} ref_t;


static int ref_text_cmp(const wchar_t *a, const wchar_t *b);


static void
ref_init(ref_t *r, world_t *w)
{
    size_t       i, j;
    json_t      *doc, *e;
    int64_t      t;

    r->w = w;
    r->n = json_array_size(w->users);
    r->users = calloc(r->n ? r->n : 1, sizeof(ref_user_t));
    r->by_id = json_object();

    json_array_foreach(w->users, i, doc) {
        r->users[i].doc = doc;
        r->users[i].id = jstr(doc, "id");
        r->users[i].fname = ref_fold(jstr(doc, "name"));
        r->users[i].femail = ref_fold(jstr(doc, "email"));
        r->users[i].created = parse_time(jstr(doc, "added_to_org"));
        r->users[i].last = parse_time(jstr(doc, "last_active"));
        json_object_set_new(r->by_id, r->users[i].id, json_integer(i));

        json_array_foreach(json_object_get(doc, "products"), j, e) {
            t = parse_time(jstr(e, "last_active"));
            if (t > r->users[i].last) {
                r->users[i].last = t;
            }
        }
    }
}


static void
ref_free(ref_t *r)
{
    size_t  i;

    for (i = 0; i < r->n; i++) {
        free(r->users[i].fname);
        free(r->users[i].femail);
    }

    free(r->users);
    json_decref(r->by_id);
}


static ref_user_t *
ref_user(ref_t *r, const char *id)
{
    json_t  *v;

    v = id ? json_object_get(r->by_id, id) : NULL;

    return v ? &r->users[json_integer_value(v)] : NULL;
}


/*
 * The primary key of the name and email orders: users it cannot tell
 * apart form a tie group.  ngx_umlo_snapshot.h says ties end on the id;
 * the snapshot's own tie order is not checked here (see check_spec).
 */
static int
ref_same_key(const ref_user_t *a, const ref_user_t *b, int sort)
{
    return sort == 0 ? ref_text_cmp(a->fname, b->fname) == 0
                     : ref_text_cmp(a->femail, b->femail) == 0;
}


/* an item of a comma-separated list equals s (items trimmed of spaces) */
static int
in_list(const char *list, const char *s)
{
    size_t       n;
    const char  *p, *e, *end;

    if (s == NULL) {
        return 0;
    }

    for (p = list; p; p = (*end == ',') ? end + 1 : NULL) {
        end = strchr(p, ',');
        if (end == NULL) {
            end = p + strlen(p);
        }

        e = end;
        while (p < e && *p == ' ') {
            p++;
        }
        while (e > p && e[-1] == ' ') {
            e--;
        }

        n = e - p;
        if (strlen(s) == n && strncmp(p, s, n) == 0) {
            return 1;
        }
    }

    return 0;
}


/* the host the site parameter names, "" for none, NULL without one */
static const char *
ref_site(world_t *w, const char *v)
{
    int  s;

    if (v == NULL) {
        return NULL;
    }

    for (s = 0; s < w->nsites; s++) {
        if (strcmp(v, w->sites[s].host) == 0
            || strcmp(v, w->sites[s].cloud) == 0)
        {
            return w->sites[s].host;
        }
    }

    return "";
}


static void
ref_context(world_t *w, const spec_t *sp, char *buf, size_t size)
{
    const char  *host;

    host = ref_site(w, sp->site);
    if (host && host[0] == '\0') {
        host = sp->site;
    }

    if (host && sp->product) {
        snprintf(buf, size, "site:%s/product:%s", host, sp->product);

    } else if (host) {
        snprintf(buf, size, "site:%s", host);

    } else if (sp->product) {
        snprintf(buf, size, "product:%s", sp->product);

    } else {
        snprintf(buf, size, "org");
    }
}


typedef struct {
    int        entries;
    int        billable;
    int64_t    last;
    int64_t    date;
    json_t    *roles;     /* borrowed strings: the union, in a list */
} ref_in_t;


static void
ref_eval(ref_t *r, ref_user_t *u, const spec_t *sp, ref_in_t *in)
{
    size_t       i, j;
    json_t      *e, *role;
    int64_t      t;
    const char  *host;

    host = ref_site(r->w, sp->site);

    in->entries = 0;
    in->billable = 0;
    in->last = 0;
    in->roles = json_array();

    json_array_foreach(json_object_get(u->doc, "products"), i, e) {
        if (host && !streq(jstr(e, "site"), host)) {
            continue;
        }

        if (sp->product && !streq(jstr(e, "product"), sp->product)) {
            continue;
        }

        in->entries++;
        in->billable |= json_is_true(json_object_get(e, "billable"));

        t = parse_time(jstr(e, "last_active"));
        if (t > in->last) {
            in->last = t;
        }

        json_array_foreach(json_object_get(e, "roles"), j, role) {
            json_array_append(in->roles, role);
        }
    }

    json_array_foreach(json_object_get(u->doc, "platform_roles"), j, role) {
        json_array_append(in->roles, role);
    }

    if (host == NULL && sp->product == NULL) {
        in->last = u->last;
    }

    in->date = in->last ? in->last : u->created;
}


static int
ref_match(ref_t *r, ref_user_t *u, const spec_t *sp, ref_in_t *in)
{
    int          hit;
    size_t       i;
    json_t      *g, *role;
    wchar_t     *needle;
    const char  *host, *gid;

    host = ref_site(r->w, sp->site);

    if (host && host[0] == '\0') {
        return 0;
    }

    if (sp->status && !in_list(sp->status, jstr(u->doc, "status"))) {
        return 0;
    }

    if (sp->account_type
        && !in_list(sp->account_type, jstr(u->doc, "account_type")))
    {
        return 0;
    }

    if (sp->claim && !in_list(sp->claim, jstr(u->doc, "claim_status"))) {
        return 0;
    }

    if (sp->group) {
        hit = 0;

        json_array_foreach(json_object_get(u->doc, "groups"), i, g) {
            int  k;

            gid = jstr(g, "id");

            for (k = 0; k < r->w->ngroups; k++) {
                if (strcmp(r->w->groups[k].id, gid) == 0) {
                    hit |= in_list(sp->group, gid)
                           || in_list(sp->group, r->w->groups[k].name);
                }
            }
        }

        if (!hit) {
            return 0;
        }
    }

    if (sp->after || sp->before) {
        if (u->created == 0
            || (sp->after && u->created < parse_time(sp->after))
            || (sp->before && u->created >= parse_time(sp->before)))
        {
            return 0;
        }
    }

    if ((host || sp->product) && in->entries == 0) {
        return 0;
    }

    if (sp->billable >= 0 && in->billable != sp->billable) {
        return 0;
    }

    if (sp->role) {
        hit = 0;

        json_array_foreach(in->roles, i, role) {
            hit |= in_list(sp->role, json_string_value(role));
        }

        if (!hit) {
            return 0;
        }
    }

    if (sp->never >= 0 && (in->last == 0) != sp->never) {
        return 0;
    }

    if (sp->inactive >= 0
        && in->date > NOW_MS - (int64_t) sp->inactive * DAY_MS)
    {
        return 0;
    }

    if (sp->q && sp->q[0]) {
        if (strchr(sp->q, '\n')) {
            return 0;
        }

        needle = ref_fold(sp->q);
        hit = (u->fname && wcsstr(u->fname, needle))
              || (u->femail && wcsstr(u->femail, needle));
        free(needle);

        if (!hit) {
            return 0;
        }
    }

    return 1;
}


typedef struct {
    ref_user_t  *u;
    int64_t      date;
    int          sort;
} ref_row_t;


static int
ref_text_cmp(const wchar_t *a, const wchar_t *b)
{
    int  ea, eb;

    ea = (a == NULL || a[0] == 0);
    eb = (b == NULL || b[0] == 0);

    if (ea || eb) {
        return ea - eb;
    }

    return wcscmp(a, b);
}


static int
ref_cmp(const void *x, const void *y)
{
    int               c;
    const ref_row_t  *a = x, *b = y;

    c = 0;

    switch (a->sort) {
    case 0:
        c = ref_text_cmp(a->u->fname, b->u->fname);
        break;
    case 1:
        c = ref_text_cmp(a->u->femail, b->u->femail);
        break;
    case 2:
        c = (a->date > b->date) - (a->date < b->date);
        break;
    default:
        c = (a->u->created > b->u->created)
            - (a->u->created < b->u->created);
    }

    return c ? c : strcmp(a->u->id, b->u->id);
}


static int
sort_index(const char *s)
{
    return s == NULL || strcmp(s, "name") == 0 ? 0
           : strcmp(s, "email") == 0 ? 1
           : strcmp(s, "last_active") == 0 ? 2 : 3;
}


/* the matching users in order: an array of ref_user_t pointers */
static ref_user_t **
ref_query(ref_t *r, const spec_t *sp, size_t *n)
{
    size_t        i, k;
    ref_in_t      in;
    ref_row_t    *rows;
    ref_user_t  **out;

    rows = calloc(r->n ? r->n : 1, sizeof(ref_row_t));
    k = 0;

    for (i = 0; i < r->n; i++) {
        ref_eval(r, &r->users[i], sp, &in);

        if (ref_match(r, &r->users[i], sp, &in)) {
            rows[k].u = &r->users[i];
            rows[k].date = in.date;
            rows[k].sort = sort_index(sp->sort);
            k++;
        }

        json_decref(in.roles);
    }

    qsort(rows, k, sizeof(ref_row_t), ref_cmp);

    out = calloc(k ? k : 1, sizeof(ref_user_t *));

    for (i = 0; i < k; i++) {
        out[i] = rows[(sp->order && strcmp(sp->order, "desc") == 0)
                      ? k - 1 - i : i].u;
    }

    free(rows);
    *n = k;

    return out;
}


static char *
spec_args(const spec_t *sp)
{
    sbuf_t  b;

    memset(&b, 0, sizeof(b));
    sb_str(&b, "");

#define P(name, v)                                                            \
    if (v) {                                                                  \
        sb_str(&b, "&" name "=");                                             \
        sb_enc(&b, v);                                                        \
    }

    P("site", sp->site);
    P("q", sp->q);
    P("product", sp->product);
    P("status", sp->status);
    P("account_type", sp->account_type);
    P("claim", sp->claim);
    P("group", sp->group);
    P("role", sp->role);
    P("created_after", sp->after);
    P("created_before", sp->before);
    P("sort", sp->sort);
    P("order", sp->order);

#undef P

    if (sp->billable >= 0) {
        sb_str(&b, sp->billable ? "&billable=true" : "&billable=false");
    }

    if (sp->never >= 0) {
        sb_str(&b, sp->never ? "&never_active=true" : "&never_active=false");
    }

    if (sp->inactive >= 0) {
        sb_printf(&b, "&inactive_days=%d", sp->inactive);
    }

    return b.data;
}


/* ---------------------------------------------------------------------- */
/* running the engine                                                      */
/* ---------------------------------------------------------------------- */


/*
 * The split path the server takes (ngx_umlo_results.c): the filtered
 * list made by another query of the same key, with the cursor left out
 * and another inactive_days value, then attached.  Counted in
 * split_checks / split_failed, reported once by check().
 */
static int  split_checks, split_failed;

static void
split_fail(const char *args, const char *what)
{
    if (split_failed++ < 10) {
        diag("split path: %s: ?%s", what, args);
    }
}


static void
split_check(ngx_umlo_snap_t *snap, const char *args, int64_t now,
    json_t *page)
{
    char                  *k1, *k2, *text, *dump, *p;
    size_t                 l1, l2, len;
    json_t                *page2;
    sbuf_t                 b;
    const char            *s, *amp;
    ngx_umlo_query_t      *q, *f;
    ngx_umlo_query_err_t   err;
    ngx_umlo_query_rows_t  rows;

    split_checks++;

    /* the filtering query: no cursor, inactive_days=7 */
    memset(&b, 0, sizeof(b));
    sb_str(&b, "");
    for (s = args; *s; s = amp + (*amp == '&')) {
        amp = strchr(s, '&');
        if (amp == NULL) {
            amp = s + strlen(s);
        }
        if (strncmp(s, "cursor=", 7) == 0) {
            continue;
        }
        if (b.len) {
            sb_str(&b, "&");
        }
        if (strncmp(s, "inactive_days=", 14) == 0) {
            sb_str(&b, "inactive_days=7");
        } else {
            sb_printf(&b, "%.*s", (int) (amp - s), s);
        }
    }

    q = ngx_umlo_query_parse(snap, args, strlen(args), now, &err);
    f = ngx_umlo_query_parse(snap, b.data, b.len, now - 86400000LL, &err);
    free(b.data);

    if (q == NULL || f == NULL) {
        split_fail(args, "parse");
        goto done;
    }

    k1 = ngx_umlo_query_key(q, &l1);
    k2 = ngx_umlo_query_key(f, &l2);
    if (k1 == NULL || k2 == NULL || l1 != l2 || memcmp(k1, k2, l1) != 0) {
        split_fail(args, "keys differ");
    }
    free(k1);
    free(k2);

    if (ngx_umlo_query_filter(f, &rows) != 0) {
        split_fail(args, "filter");
        goto done;
    }

    /* the list outlives the filtering query, as in the cache */
    ngx_umlo_query_free(f);
    f = NULL;

    if (ngx_umlo_query_attach(q, &rows, &err) != 0) {
        split_fail(args, "attach");
        ngx_umlo_query_rows_free(&rows);
        goto done;
    }

    page2 = ngx_umlo_query_page(q);
    if (!json_equal(page, page2)) {
        split_fail(args, "pages differ");
    }
    json_decref(page2);

    /* the text writer: byte for byte what jansson writes */
    text = ngx_umlo_query_page_text(q, &len);
    dump = json_dumps(page, JSON_COMPACT);
    if (text == NULL || dump == NULL || strlen(dump) != len
        || memcmp(text, dump, len) != 0)
    {
        split_fail(args, "text differs");
        if (text && dump && split_failed <= 3) {
            for (p = text; (size_t) (p - text) < len
                 && *p == dump[p - text]; p++) { /* void */ }
            diag("at %zu: %.60s | %.60s", (size_t) (p - text), p,
                 dump + (p - text));
        }
    }
    free(text);
    free(dump);

    ngx_umlo_query_free(q);
    q = NULL;
    ngx_umlo_query_rows_free(&rows);

done:

    ngx_umlo_query_free(q);
    ngx_umlo_query_free(f);
}


static json_t *
engine_page(ngx_umlo_snap_t *snap, const char *args, int64_t now,
    ngx_umlo_query_err_t *err)
{
    json_t            *page;
    ngx_umlo_query_t  *q;

    q = ngx_umlo_query_parse(snap, args, strlen(args), now, err);
    if (q == NULL) {
        return NULL;
    }

    if (ngx_umlo_query_run(q, err) != 0) {
        ngx_umlo_query_free(q);
        return NULL;
    }

    page = ngx_umlo_query_page(q);
    ngx_umlo_query_free(q);

    if (page == NULL) {
        err->status = 500;
        snprintf(err->code, sizeof(err->code), "page");
        return NULL;
    }

    split_check(snap, args, now, page);

    return page;
}


/*
 * Every row of a query through its pages; checks that the pages agree
 * with each other.  NULL with why[] on a failure.
 */
static json_t *
walk(ngx_umlo_snap_t *snap, const char *args, int limit, int64_t now2,
    json_t **meta, char *why, size_t whylen)
{
    int                   pages;
    char                 *cursor;
    json_t               *rows, *page, *data, *next;
    sbuf_t                b;
    json_int_t            total;
    ngx_umlo_query_err_t  err;

    rows = json_array();
    cursor = NULL;
    total = -1;
    *meta = NULL;

    for (pages = 0; ; pages++) {
        memset(&b, 0, sizeof(b));
        sb_str(&b, args);
        sb_printf(&b, "&limit=%d", limit);
        if (cursor) {
            sb_printf(&b, "&cursor=%s", cursor);
        }

        page = engine_page(snap, b.data, pages ? now2 : NOW_MS, &err);
        free(b.data);

        if (page == NULL) {
            snprintf(why, whylen, "page %d: %d %s %s: %s", pages, err.status,
                     err.code, err.param, err.message);
            goto failed;
        }

        data = json_object_get(page, "data");
        next = json_object_get(json_object_get(page, "links"), "next");

        if (total < 0) {
            total = json_integer_value(json_object_get(
                        json_object_get(page, "meta"), "total"));
            *meta = json_incref(json_object_get(page, "meta"));
        }

        if (json_integer_value(json_object_get(json_object_get(page, "meta"),
                                               "total")) != total
            || json_integer_value(json_object_get(json_object_get(page,
                                                                  "meta"),
                                                  "limit")) != limit
            || json_array_size(data) > (size_t) limit
            || (json_is_string(next) && json_array_size(data)
                                        != (size_t) limit)
            || !(json_is_string(next) || json_is_null(next)))
        {
            snprintf(why, whylen, "page %d: inconsistent (%zu rows)", pages,
                     json_array_size(data));
            json_decref(page);
            goto failed;
        }

        json_array_extend(rows, data);

        free(cursor);
        cursor = json_is_string(next) ? strdup(json_string_value(next))
                                      : NULL;
        json_decref(page);

        if (cursor == NULL) {
            break;
        }

        if (pages > total + 2) {
            snprintf(why, whylen, "more pages than rows");
            goto failed;
        }
    }

    if ((json_int_t) json_array_size(rows) != total) {
        snprintf(why, whylen, "pages add up to %zu rows, total says %lld",
                 json_array_size(rows), (long long) total);
        goto failed;
    }

    return rows;

failed:

    free(cursor);
    json_decref(rows);
    json_decref(*meta);
    *meta = NULL;

    return NULL;
}


/* a string list of a JSON array of strings, or of objects' members */
static char *
joined(json_t *list, const char *member, const char *alt, const char *sep)
{
    size_t       i;
    json_t      *v;
    sbuf_t       b;
    const char  *s;

    memset(&b, 0, sizeof(b));
    sb_str(&b, "");

    json_array_foreach(list, i, v) {
        s = member ? jstr(v, member) : json_string_value(v);
        if (s == NULL && alt) {
            s = jstr(v, alt);
        }

        if (i) {
            sb_str(&b, sep);
        }

        sb_str(&b, s ? s : "");
    }

    return b.data;
}


static int
str_cmp(const void *a, const void *b)
{
    return strcmp(*(char * const *) a, *(char * const *) b);
}


/* the entries of a products list as sorted strings, one per entry */
static char *
products_key(json_t *list, world_t *w)
{
    int          s, known;
    char       **items, *roles, *out;
    size_t       i, n;
    json_t      *e, *sorted;
    sbuf_t       b;
    const char  *host;

    n = json_array_size(list);
    items = calloc(n ? n : 1, sizeof(char *));

    json_array_foreach(list, i, e) {
        host = jstr(e, "site");
        known = 0;

        for (s = 0; s < w->nsites; s++) {
            known |= streq(host, w->sites[s].host);
        }

        /* sorted roles */
        sorted = json_array();
        {
            size_t   j, k, m;
            json_t  *r;
            char   **rs;

            m = json_array_size(json_object_get(e, "roles"));
            rs = calloc(m ? m : 1, sizeof(char *));
            json_array_foreach(json_object_get(e, "roles"), j, r) {
                rs[j] = (char *) json_string_value(r);
            }
            qsort(rs, m, sizeof(char *), str_cmp);
            for (k = 0; k < m; k++) {
                json_array_append_new(sorted, json_string(rs[k]));
            }
            free(rs);
        }

        roles = joined(sorted, NULL, NULL, " ");
        json_decref(sorted);

        memset(&b, 0, sizeof(b));
        sb_printf(&b, "%s|%s|%s|%d|", known ? host : "(null)",
                  jstr(e, "product") ? jstr(e, "product") : "(null)", roles,
                  json_is_true(json_object_get(e, "billable")));
        free(roles);

        /* ISO dates of the fixtures compare as ms */
        sb_printf(&b, "%lld",
                  (long long) parse_time(jstr(e, "last_active")));
        items[i] = b.data;
    }

    qsort(items, n, sizeof(char *), str_cmp);

    memset(&b, 0, sizeof(b));
    sb_str(&b, "");
    for (i = 0; i < n; i++) {
        sb_str(&b, items[i]);
        sb_str(&b, ";");
        free(items[i]);
    }
    free(items);

    out = b.data;
    return out;
}


static int
json_str_is(json_t *v, const char *s)
{
    return s ? streq(json_string_value(v), s) : json_is_null(v);
}


/* one engine row against the reference; why[] says what differs */
static int
check_row(ref_t *r, json_t *row, ref_user_t *u, const spec_t *sp,
    const char *ctx, int full, char *why, size_t whylen)
{
    char        at[40], *a, *b;
    size_t      i;
    json_t     *doc, *la, *v, *list;
    ref_in_t    in;
    int         bad;

    doc = u->doc;

    if (!json_str_is(json_object_get(row, "id"), u->id)) {
        snprintf(why, whylen, "id %s, expected %s",
                 jstr(row, "id"), u->id);
        return 0;
    }

    ref_eval(r, u, sp, &in);
    json_decref(in.roles);

    la = json_object_get(row, "last_active");
    if (in.date) {
        iso(in.date, at, sizeof(at));
    }

    if (!json_str_is(json_object_get(la, "at"), in.date ? at : NULL)
        || !json_str_is(json_object_get(la, "context"), ctx)
        || !json_str_is(json_object_get(la, "source"),
                        in.last ? "activity" : "created")
        || json_is_true(json_object_get(row, "never_active")) != !in.last
        || !json_is_boolean(json_object_get(row, "never_active"))
        || json_is_true(json_object_get(row, "billable")) != in.billable)
    {
        a = json_dumps(row, JSON_COMPACT);
        snprintf(why, whylen, "%s: context fields differ: expected at=%s "
                 "ctx=%s never=%d billable=%d; got %.300s", u->id,
                 in.date ? at : "null", ctx, !in.last, in.billable, a);
        free(a);
        return 0;
    }

    if (!full) {
        return 1;
    }

    bad = 0;

#define SAME(k, dk)                                                           \
    if (!json_str_is(json_object_get(row, k), jstr(doc, dk))) {              \
        snprintf(why, whylen, "%s: %s differs", u->id, k);                    \
        return 0;                                                             \
    }

    SAME("name", "name");
    SAME("email", "email");
    SAME("avatar", "avatar");
    SAME("status", "status");
    SAME("account_type", "account_type");
    SAME("claim_status", "claim_status");
    SAME("account_status", "account_status");
    SAME("membership_status", "membership_status");

#undef SAME

    if (u->created) {
        iso(u->created, at, sizeof(at));
    }

    if (!json_str_is(json_object_get(row, "created"),
                     u->created ? at : NULL))
    {
        snprintf(why, whylen, "%s: created differs", u->id);
        return 0;
    }

    /* platform roles by name */
    list = json_object_get(row, "platform_roles");
    a = joined(list, NULL, NULL, ",");
    {
        size_t   m, k;
        char   **rs;
        json_t  *pr;
        sbuf_t   sb;

        pr = json_object_get(doc, "platform_roles");
        m = json_array_size(pr);
        rs = calloc(m ? m : 1, sizeof(char *));
        json_array_foreach(pr, k, v) {
            rs[k] = (char *) json_string_value(v);
        }
        qsort(rs, m, sizeof(char *), str_cmp);
        memset(&sb, 0, sizeof(sb));
        sb_str(&sb, "");
        for (k = 0; k < m; k++) {
            if (k) {
                sb_str(&sb, ",");
            }
            sb_str(&sb, rs[k]);
        }
        free(rs);
        b = sb.data;
    }
    bad = strcmp(a, b) != 0;
    if (bad) {
        snprintf(why, whylen, "%s: platform_roles [%s], expected [%s]",
                 u->id, a, b);
    }
    free(a);
    free(b);
    if (bad) {
        return 0;
    }

    /* sites: the known hosts of the document, sorted */
    {
        size_t   k, m;
        char   **hs;
        json_t  *ds;
        sbuf_t   sb;
        int      s, known;

        ds = json_object_get(doc, "sites");
        m = 0;
        hs = calloc(json_array_size(ds) + 1, sizeof(char *));
        json_array_foreach(ds, k, v) {
            known = 0;
            for (s = 0; s < r->w->nsites; s++) {
                known |= streq(json_string_value(v), r->w->sites[s].host);
            }
            if (known) {
                hs[m++] = (char *) json_string_value(v);
            }
        }
        qsort(hs, m, sizeof(char *), str_cmp);
        memset(&sb, 0, sizeof(sb));
        sb_str(&sb, "");
        for (k = 0; k < m; k++) {
            if (k) {
                sb_str(&sb, ",");
            }
            sb_str(&sb, hs[k]);
        }
        free(hs);
        b = sb.data;
    }
    a = joined(json_object_get(row, "sites"), NULL, NULL, ",");
    bad = strcmp(a, b) != 0;
    if (bad) {
        snprintf(why, whylen, "%s: sites [%s], expected [%s]", u->id, a, b);
    }
    free(a);
    free(b);
    if (bad) {
        return 0;
    }

    a = products_key(json_object_get(row, "products"), r->w);
    b = products_key(json_object_get(doc, "products"), r->w);
    bad = strcmp(a, b) != 0;
    if (bad) {
        snprintf(why, whylen, "%s: products [%.200s], expected [%.200s]",
                 u->id, a, b);
    }
    free(a);
    free(b);
    if (bad) {
        return 0;
    }

    /* groups: same members; sorted by name, nameless last */
    list = json_object_get(row, "groups");
    if (json_array_size(list) != json_array_size(json_object_get(doc,
                                                                 "groups")))
    {
        snprintf(why, whylen, "%s: group count differs", u->id);
        return 0;
    }

    json_array_foreach(list, i, v) {
        size_t   k;
        json_t  *g;
        int      found = 0;

        json_array_foreach(json_object_get(doc, "groups"), k, g) {
            found |= streq(jstr(g, "id"), jstr(v, "id"))
                     && json_str_is(json_object_get(v, "name"),
                                    jstr(g, "name"));
        }

        if (!found) {
            snprintf(why, whylen, "%s: group %s not expected", u->id,
                     jstr(v, "id"));
            return 0;
        }

        if (i > 0) {
            json_t      *p = json_array_get(list, i - 1);
            const char  *pn = jstr(p, "name"), *n = jstr(v, "name");

            if ((pn == NULL && n != NULL)
                || (pn && n && strcmp(pn, n) > 0))
            {
                snprintf(why, whylen, "%s: groups not sorted by name",
                         u->id);
                return 0;
            }
        }
    }

    return 1;
}


static int
id_cmp(const void *a, const void *b)
{
    return strcmp(*(const char * const *) a, *(const char * const *) b);
}


/*
 * A query compared with the reference, through all its pages.  For the
 * name and email orders, rows of one tie group (the same folded name or
 * email) may come in any order the snapshot chose, but in the same order
 * whatever the page size.
 */
static int
check_spec(ref_t *r, ngx_umlo_snap_t *snap, const spec_t *sp, int limit,
    int64_t now2, int full, const char *label)
{
    int           good, sort;
    char         *args, why[1024], ctx[256];
    size_t        n, i;
    json_t       *rows, *meta, *all, *meta2;
    ref_user_t  **want, *got;
    const char  **a, **b;

    args = spec_args(sp);
    ref_context(r->w, sp, ctx, sizeof(ctx));
    want = ref_query(r, sp, &n);
    sort = sort_index(sp->sort);
    good = 1;
    why[0] = '\0';
    all = NULL;
    meta2 = NULL;

    rows = walk(snap, args, limit, now2, &meta, why, sizeof(why));

    if (rows == NULL) {
        good = 0;

    } else if (!json_str_is(json_object_get(meta, "context"), ctx)) {
        snprintf(why, sizeof(why), "meta.context %s, expected %s",
                 jstr(meta, "context"), ctx);
        good = 0;

    } else if (json_array_size(rows) != n) {
        snprintf(why, sizeof(why), "%zu rows, expected %zu",
                 json_array_size(rows), n);
        good = 0;

    } else {
        for (i = 0; i < n; i++) {
            got = ref_user(r, jstr(json_array_get(rows, i), "id"));

            if (got == NULL
                || (got != want[i]
                    && (sort > 1 || !ref_same_key(got, want[i], sort))))
            {
                snprintf(why, sizeof(why), "row %zu is %s, expected %s", i,
                         jstr(json_array_get(rows, i), "id"), want[i]->id);
                good = 0;
                break;
            }

            if (!check_row(r, json_array_get(rows, i), got, sp, ctx, full,
                           why, sizeof(why)))
            {
                good = 0;
                diag("row %zu", i);
                break;
            }
        }

        /* the same users, each once */
        a = calloc(n + 1, sizeof(char *));
        b = calloc(n + 1, sizeof(char *));

        for (i = 0; good && i < n; i++) {
            a[i] = jstr(json_array_get(rows, i), "id");
            b[i] = want[i]->id;
        }

        if (good) {
            qsort(a, n, sizeof(char *), id_cmp);
            qsort(b, n, sizeof(char *), id_cmp);

            for (i = 0; i < n; i++) {
                if (strcmp(a[i], b[i]) != 0) {
                    snprintf(why, sizeof(why), "the users differ: %s, %s",
                             a[i], b[i]);
                    good = 0;
                    break;
                }
            }
        }

        free(a);
        free(b);
    }

    /* small pages add up to what one large page has, in its order */
    if (good && limit < 1000) {
        all = walk(snap, args, 1000, NOW_MS, &meta2, why, sizeof(why));

        if (all == NULL) {
            good = 0;

        } else {
            for (i = 0; i < n; i++) {
                if (!streq(jstr(json_array_get(rows, i), "id"),
                           jstr(json_array_get(all, i), "id")))
                {
                    snprintf(why, sizeof(why), "row %zu: %s in pages of %d, "
                             "%s in one page", i,
                             jstr(json_array_get(rows, i), "id"), limit,
                             jstr(json_array_get(all, i), "id"));
                    good = 0;
                    break;
                }
            }
        }
    }

    ok(good, "%s: ?%s limit=%d: %zu rows", label, args[0] ? args + 1 : "",
       limit, n);
    if (!good) {
        diag("%s", why);
    }

    json_decref(rows);
    json_decref(meta);
    json_decref(all);
    json_decref(meta2);
    free(want);
    free(args);

    return good;
}


/* ---------------------------------------------------------------------- */
/* CSV                                                                     */
/* ---------------------------------------------------------------------- */


static char *
engine_csv(ngx_umlo_snap_t *snap, const char *args, size_t chunk,
    int accept, size_t *len, ngx_umlo_query_err_t *err)
{
    char              *buf;
    sbuf_t             b;
    ssize_t            n;
    ngx_umlo_query_t  *q;

    q = ngx_umlo_query_parse(snap, args, strlen(args), NOW_MS, err);
    if (q == NULL) {
        return NULL;
    }

    if (accept) {
        ngx_umlo_query_set_csv(q);
    }

    if (!ngx_umlo_query_csv_wanted(q)) {
        ngx_umlo_query_free(q);
        snprintf(err->code, sizeof(err->code), "not csv");
        return NULL;
    }

    if (ngx_umlo_query_run(q, err) != 0) {
        ngx_umlo_query_free(q);
        return NULL;
    }

    memset(&b, 0, sizeof(b));
    sb_str(&b, "");
    buf = malloc(chunk);

    while ((n = ngx_umlo_query_csv(q, buf, chunk)) > 0) {
        if ((size_t) n > chunk) {
            break;
        }
        sb_add(&b, buf, n);
    }

    /* done stays done */
    if (n == 0) {
        n = ngx_umlo_query_csv(q, buf, chunk);
    }

    free(buf);
    ngx_umlo_query_free(q);

    if (n != 0) {
        free(b.data);
        snprintf(err->code, sizeof(err->code), "csv returned %zd", n);
        return NULL;
    }

    *len = b.len;
    return b.data;
}


/* RFC 4180 into a JSON array of arrays of strings; NULL if malformed */
static json_t *
csv_parse(const char *s, size_t len)
{
    size_t   i;
    json_t  *rows, *row;
    sbuf_t   cell;
    int      any;

    rows = json_array();
    row = json_array();
    memset(&cell, 0, sizeof(cell));
    sb_str(&cell, "");
    any = 0;

    for (i = 0; i < len; ) {
        cell.len = 0;
        cell.data[0] = '\0';

        if (s[i] == '"') {
            i++;

            for ( ;; ) {
                if (i >= len) {
                    goto bad;
                }

                if (s[i] == '"') {
                    if (i + 1 < len && s[i + 1] == '"') {
                        sb_add(&cell, "\"", 1);
                        i += 2;
                        continue;
                    }

                    i++;
                    break;
                }

                sb_add(&cell, s + i, 1);
                i++;
            }

        } else {
            while (i < len && s[i] != ',' && s[i] != '\r') {
                if (s[i] == '"' || s[i] == '\n') {
                    goto bad;
                }

                sb_add(&cell, s + i, 1);
                i++;
            }
        }

        json_array_append_new(row, json_string(cell.data));
        any = 1;

        if (i < len && s[i] == ',') {
            i++;
            continue;
        }

        if (i + 1 < len && s[i] == '\r' && s[i + 1] == '\n') {
            i += 2;
            json_array_append_new(rows, row);
            row = json_array();
            any = 0;
            continue;
        }

        goto bad;
    }

    if (any) {
        goto bad;    /* the last line lacks its CRLF */
    }

    json_decref(row);
    free(cell.data);
    return rows;

bad:

    json_decref(row);
    json_decref(rows);
    free(cell.data);
    return NULL;
}


static char *
csv_safe(const char *s)
{
    char  *out;

    if (s == NULL) {
        return strdup("");
    }

    if (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@'
        || s[0] == '\t' || s[0] == '\r')
    {
        if (asprintf(&out, "'%s", s) < 0) {
            exit(2);
        }
        return out;
    }

    return strdup(s);
}


/* the CSV cells a JSON row should give */
static json_t *
csv_expected(json_t *row)
{
    int          i;
    char        *s, *cells[14];
    sbuf_t       b;
    size_t       k;
    json_t      *out, *e, *la;

    la = json_object_get(row, "last_active");

    cells[0] = csv_safe(jstr(row, "id"));
    cells[1] = csv_safe(jstr(row, "name"));
    cells[2] = csv_safe(jstr(row, "email"));
    cells[3] = csv_safe(jstr(row, "status"));
    cells[4] = csv_safe(jstr(row, "account_type"));
    cells[5] = csv_safe(jstr(row, "claim_status"));
    cells[6] = strdup(json_is_true(json_object_get(row, "billable"))
                      ? "true" : "false");
    cells[7] = csv_safe(jstr(la, "at"));
    cells[8] = csv_safe(jstr(la, "source"));
    cells[9] = strdup(json_is_true(json_object_get(row, "never_active"))
                      ? "true" : "false");
    cells[10] = csv_safe(jstr(row, "created"));

    s = joined(json_object_get(row, "sites"), NULL, NULL, "; ");
    cells[11] = csv_safe(s);
    free(s);

    memset(&b, 0, sizeof(b));
    sb_str(&b, "");
    json_array_foreach(json_object_get(row, "products"), k, e) {
        sb_printf(&b, "%s%s/%s", k ? "; " : "",
                  jstr(e, "site") ? jstr(e, "site") : "unknown",
                  jstr(e, "product") ? jstr(e, "product") : "unknown");
    }
    cells[12] = csv_safe(b.data);
    free(b.data);

    s = joined(json_object_get(row, "groups"), "name", "id", "; ");
    cells[13] = csv_safe(s);
    free(s);

    out = json_array();
    for (i = 0; i < 14; i++) {
        json_array_append_new(out, json_string(cells[i]));
        free(cells[i]);
    }

    return out;
}


static void
check_csv(ngx_umlo_snap_t *snap, const spec_t *sp, const char *label)
{
    int                   good, accept;
    char                 *args, *csv, *other, why[512], *a, *b;
    size_t                len, olen, i, k;
    json_t               *rows, *meta, *parsed, *want;
    ngx_umlo_query_err_t  err;
    static const size_t   chunks[] = { 1, 2, 7, 64, 1000, 1 << 20 };

    args = spec_args(sp);
    why[0] = '\0';

    rows = walk(snap, args, 1000, NOW_MS, &meta, why, sizeof(why));
    if (!ok(rows != NULL, "%s: JSON rows", label)) {
        diag("%s", why);
        free(args);
        return;
    }

    /* format=csv, or the handler's Accept: text/csv */
    accept = chance(50);
    {
        sbuf_t  sb;

        memset(&sb, 0, sizeof(sb));
        sb_str(&sb, args);
        if (!accept) {
            sb_str(&sb, "&format=csv");
        }
        sb_str(&sb, "&limit=2");
        free(args);
        args = sb.data;
    }

    csv = engine_csv(snap, args, 4096, accept, &len, &err);
    if (!ok(csv != NULL, "%s: CSV made", label)) {
        diag("%d %s %s %s", err.status, err.code, err.param, err.message);
        goto done;
    }

    good = 1;
    for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        other = engine_csv(snap, args, chunks[i], accept, &olen, &err);
        good &= other && olen == len && memcmp(other, csv, len) == 0;
        free(other);
    }
    ok(good, "%s: the same bytes in chunks of 1, 2, 7, 64, 1000, 1M",
       label);

    parsed = csv_parse(csv, len);
    if (!ok(parsed != NULL, "%s: valid RFC 4180, CRLF lines", label)) {
        free(csv);
        goto done;
    }

    a = joined(json_array_get(parsed, 0), NULL, NULL, ",");
    ok(strcmp(a, "id,name,email,status,account_type,claim_status,billable,"
              "last_active,last_active_source,never_active,created,sites,"
              "products,groups") == 0, "%s: header", label);
    free(a);

    good = json_array_size(parsed) == json_array_size(rows) + 1;
    ok(good, "%s: one line per row (limit ignored): %zu", label,
       json_array_size(rows));

    for (k = 0; good && k < json_array_size(rows); k++) {
        want = csv_expected(json_array_get(rows, k));
        if (!json_equal(want, json_array_get(parsed, k + 1))) {
            a = json_dumps(want, JSON_COMPACT);
            b = json_dumps(json_array_get(parsed, k + 1), JSON_COMPACT);
            diag("line %zu: expected %s", k + 1, a);
            diag("line %zu: got      %s", k + 1, b);
            free(a);
            free(b);
            good = 0;
        }
        json_decref(want);
    }

    ok(good, "%s: every CSV line equals its JSON row", label);

    json_decref(parsed);
    free(csv);

done:

    json_decref(rows);
    json_decref(meta);
    free(args);
}


/* ---------------------------------------------------------------------- */
/* the checks                                                              */
/* ---------------------------------------------------------------------- */


static void
check_errors(ngx_umlo_snap_t *snap)
{
    size_t                i;
    json_t               *page, *ej;
    ngx_umlo_query_err_t  err;

    static const struct {
        const char  *args;
        int          status;
        const char  *code;
        const char  *param;
        const char  *says;      /* a word of the message */
    } cases[] = {
        { "nope=1", 400, "unknown_parameter", "nope", "inactive_days" },
        { "Site=x", 400, "unknown_parameter", "Site", "site" },
        { "=x", 400, "unknown_parameter", "", "unknown" },
        { "limit=5&%zz=1", 400, "unknown_parameter", "%zz", "unknown" },
        { "status=active&status=suspended", 400, "invalid_parameter",
          "status", "commas" },
        { "sort=name&sort=name", 400, "invalid_parameter", "sort", "once" },
        { "l%69mit=0", 400, "invalid_parameter", "limit", "1 to 1000" },
        { "limit=0", 400, "invalid_parameter", "limit", "1 to 1000" },
        { "limit=1001", 400, "invalid_parameter", "limit", "1 to 1000" },
        { "limit=abc", 400, "invalid_parameter", "limit", "abc" },
        { "limit=", 400, "invalid_parameter", "limit", "1 to 1000" },
        { "limit", 400, "invalid_parameter", "limit", "1 to 1000" },
        { "limit=-1", 400, "invalid_parameter", "limit", "1 to 1000" },
        { "limit=+5", 400, "invalid_parameter", "limit", "1 to 1000" },
        { "limit=1.5", 400, "invalid_parameter", "limit", "1 to 1000" },
        { "limit=99999999999999999999", 400, "invalid_parameter", "limit",
          "1 to 1000" },
        { "inactive_days=x", 400, "invalid_parameter", "inactive_days",
          "0 to 36500" },
        { "inactive_days=-3", 400, "invalid_parameter", "inactive_days",
          "0 to 36500" },
        { "inactive_days=36501", 400, "invalid_parameter", "inactive_days",
          "0 to 36500" },
        { "inactive_days=", 400, "invalid_parameter", "inactive_days",
          "days" },
        { "billable=yes", 400, "invalid_parameter", "billable",
          "true or false" },
        { "billable=", 400, "invalid_parameter", "billable",
          "true or false" },
        { "billable=TRUE", 400, "invalid_parameter", "billable",
          "true or false" },
        { "never_active=1", 400, "invalid_parameter", "never_active",
          "true or false" },
        { "created_after=2024-13-01", 400, "invalid_parameter",
          "created_after", "ISO 8601" },
        { "created_before=yesterday", 400, "invalid_parameter",
          "created_before", "ISO 8601" },
        { "created_after=", 400, "invalid_parameter", "created_after",
          "ISO 8601" },
        { "created_after=2024-01-01T25:00:00Z", 400, "invalid_parameter",
          "created_after", "ISO 8601" },
        { "sort=age", 400, "invalid_parameter", "sort", "last_active" },
        { "sort=", 400, "invalid_parameter", "sort", "email" },
        { "sort=NAME", 400, "invalid_parameter", "sort", "email" },
        { "order=up", 400, "invalid_parameter", "order", "asc or desc" },
        { "format=xml", 400, "invalid_parameter", "format", "json or csv" },
        { "cursor=abc", 400, "invalid_parameter", "cursor", "links.next" },
        { "cursor=!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", 400,
          "invalid_parameter", "cursor", "links.next" },
        { "q=%zz", 400, "invalid_parameter", "q", "percent" },
        { "q=abc%", 400, "invalid_parameter", "q", "percent" },
        { "q=abc%4", 400, "invalid_parameter", "q", "percent" },
        { "q=%C3", 400, "invalid_parameter", "q", "UTF-8" },
        { "q=%ff", 400, "invalid_parameter", "q", "UTF-8" },
        { "q=\xff", 400, "invalid_parameter", "q", "UTF-8" },
        { "q=%ED%A0%80", 400, "invalid_parameter", "q", "UTF-8" },
        { "q=%C0%AF", 400, "invalid_parameter", "q", "UTF-8" },
        { "q=%F4%90%80%80", 400, "invalid_parameter", "q", "UTF-8" },
        { "q=a%00b", 400, "invalid_parameter", "q", "NUL" },
        { "site=%E2%82", 400, "invalid_parameter", "site", "UTF-8" },
        { "status=active,,suspended", 400, "invalid_parameter", "status",
          "empty" },
        { "status=", 400, "invalid_parameter", "status", "empty" },
        { "status=active,", 400, "invalid_parameter", "status", "empty" },
        { "group=", 400, "invalid_parameter", "group", "empty" },
        { "role=+", 400, "invalid_parameter", "role", "empty" },
        { "claim=managed,+", 400, "invalid_parameter", "claim", "empty" },
        { "account_type=", 400, "invalid_parameter", "account_type",
          "empty" },
        { "site=", 400, "invalid_parameter", "site", "host name" },
        { "site=+", 400, "invalid_parameter", "site", "host name" },
        { "product=", 400, "invalid_parameter", "product", "jira-software" },
        { "site=site-1.atlassian.net,site-2.atlassian.net", 400,
          "invalid_parameter", "site", "one value" },
        { "product=jira-software%2Cconfluence", 400, "invalid_parameter",
          "product", "one value" },
        { "q=ok&limit=5&bogus", 400, "unknown_parameter", "bogus",
          "unknown" },
        { "limit=10&limit=20", 400, "invalid_parameter", "limit", "once" },
        { "q=a&q=b", 400, "invalid_parameter", "q", "once" },
        { "%C3%A9t%C3%A9=1", 400, "unknown_parameter", "\xc3\xa9t\xc3\xa9",
          "unknown" },
        { "%FF=1", 400, "unknown_parameter", "?", "unknown" },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char         shown[64];
        size_t       k;
        const char  *a;

        /* the bytes that are not text shown as "?" */
        for (a = cases[i].args, k = 0; *a && k < sizeof(shown) - 1; a++) {
            shown[k++] = ((unsigned char) *a < 0x20
                          || (unsigned char) *a >= 0x7f) ? '?' : *a;
        }
        shown[k] = '\0';

        page = engine_page(snap, cases[i].args, NOW_MS, &err);

        if (!ok(page == NULL && err.status == cases[i].status
                && strcmp(err.code, cases[i].code) == 0
                && strcmp(err.param, cases[i].param) == 0
                && strstr(err.message, cases[i].says) != NULL,
                "bad input %.50s: %d %s param=%s", shown,
                cases[i].status, cases[i].code, cases[i].param))
        {
            diag("got %d %s param=\"%s\" \"%s\"", err.status, err.code,
                 err.param, err.message);
        }

        json_decref(page);

        /* always JSON-safe */
        ej = ngx_umlo_query_error(&err);
        if (!ok(ej != NULL, "error %zu makes a JSON document", i)) {
            diag("message: %s", err.message);
        }
        json_decref(ej);
    }
}


static void
check_lenient(ref_t *r, ngx_umlo_snap_t *snap)
{
    size_t                i, n;
    json_t               *page;
    ngx_umlo_query_err_t  err;

    static const struct {
        const char  *args;
        long         total;     /* -1: all users */
    } cases[] = {
        /* names that are not in the snapshot: no rows, no error */
        { "site=nope.atlassian.net", 0 },
        { "site=00000000-0000-0000-0000-000000000000", 0 },
        { "product=bitbucket", 0 },
        { "site=site-2.atlassian.net&product=jira-servicedesk", 0 },
        { "status=bogus", 0 },
        { "account_type=robot", 0 },
        { "claim=weird", 0 },
        { "group=no-such-group", 0 },
        { "role=atlassian/none", 0 },
        { "site=site-3.atlassian.net", 0 },
        { "q=%0A", 0 },
        /* empty values that mean "no filter" */
        { "q=", -1 },
        { "cursor=", -1 },
        { "", -1 },
        { "&", -1 },
        { "&&limit=5&", -1 },
        { "sort=created&order=desc&format=json", -1 },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        page = engine_page(snap, cases[i].args, NOW_MS, &err);
        n = page ? (size_t) json_integer_value(json_object_get(
                       json_object_get(page, "meta"), "total")) : 0;

        if (!ok(page != NULL
                && n == (cases[i].total < 0 ? r->n : (size_t) cases[i].total)
                && json_is_null(json_object_get(json_object_get(page,
                                                                "links"),
                                                "next"))
                   == (n <= (strstr(cases[i].args, "limit=5") ? 5 : 100)),
                "accepted: \"%s\" gives %ld rows", cases[i].args,
                cases[i].total < 0 ? (long) r->n : cases[i].total))
        {
            diag("got %zu rows; error %d %s %s", n, err.status, err.code,
                 err.message);
        }

        json_decref(page);
    }
}


static void
check_fixed(ref_t *r, ngx_umlo_snap_t *snap)
{
    size_t   i;
    spec_t   sp;
    static const char  *sorts[] = { "name", "email", "last_active",
                                    "created" };
    static const char  *orders[] = { "asc", "desc" };
    static const spec_t  fixed[] = {
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1,
          "zoë", NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1,
          "ZOË", NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1,
          "émile", NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1,
          "ärger", NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1,
          "李", NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1,
          "EXAMPLE.ORG", NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1,
          "Alex Same", NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1,
          "bob\"", NULL, NULL, NULL, NULL },
        { "site-1.atlassian.net", NULL, NULL, NULL, NULL, NULL, NULL, -1,
          -1, -1, NULL, NULL, NULL, "last_active", NULL },
        { "c0ffee02-1234-4abc-9def-000000000002", NULL, NULL, NULL, NULL,
          NULL, NULL, -1, -1, -1, NULL, NULL, NULL, "last_active", "desc" },
        { "site-1.atlassian.net", "jira-software", NULL, NULL, NULL, NULL,
          NULL, -1, -1, -1, NULL, NULL, NULL, "last_active", NULL },
        { NULL, "confluence", NULL, NULL, NULL, NULL, NULL, -1, -1, -1,
          NULL, NULL, NULL, "last_active", NULL },
        { NULL, "confluence", NULL, NULL, NULL, NULL, NULL, -1, 1, -1,
          NULL, NULL, NULL, NULL, NULL },
        { "site-1.atlassian.net", NULL, NULL, NULL, NULL, NULL, NULL, -1, 1,
          -1, NULL, NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, 1, -1, NULL, NULL,
          NULL, "created", NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, 0, 90, NULL, NULL,
          NULL, "last_active", NULL },
        { "site-2.atlassian.net", NULL, NULL, NULL, NULL, NULL, NULL, -1,
          -1, 30, NULL, NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, 30, "edge", NULL,
          NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, 30, NULL, NULL,
          NULL, "last_active", "desc" },
        { "site-2.atlassian.net", NULL, NULL, NULL, NULL, NULL, NULL, -1,
          -1, -1, "newer", NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1, "newer",
          NULL, NULL, NULL, NULL },
        { NULL, "jira-software", NULL, NULL, NULL, NULL, NULL, -1, -1, 0,
          NULL, NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1, -1, -1, NULL, NULL,
          NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, -1, -1, NULL, NULL,
          NULL, NULL, NULL },
        { "site-2.atlassian.net", NULL, NULL, NULL, NULL, NULL, NULL, 0, -1,
          -1, NULL, NULL, NULL, NULL, NULL },
        { NULL, "confluence", NULL, NULL, NULL, NULL, NULL, 1, -1, -1, NULL,
          NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, "atlassian/org-admin", -1, -1,
          -1, NULL, NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL,
          "atlassian/admin, atlassian/site-admin", -1, -1, -1, NULL, NULL,
          NULL, NULL, NULL },
        { "site-2.atlassian.net", NULL, NULL, NULL, NULL, NULL,
          "atlassian/guest", -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
        { NULL, "jira-software", NULL, NULL, NULL, NULL, "atlassian/user",
          -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
        { NULL, NULL, "active", NULL, NULL, NULL, NULL, -1, -1, -1, NULL,
          NULL, NULL, NULL, NULL },
        { NULL, NULL, "suspended,deactivated , bogus", NULL, NULL, NULL,
          NULL, -1, -1, -1, NULL, NULL, NULL, "email", "desc" },
        { NULL, NULL, "not_invited,for_deletion", NULL, NULL, NULL, NULL, -1,
          -1, -1, NULL, NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, "app,customer", NULL, NULL, NULL, -1, -1, -1,
          NULL, NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, "unmanaged", NULL, NULL, -1, -1, -1, NULL,
          NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, "managed,unmanaged", NULL, NULL, -1, -1,
          -1, NULL, NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, "jira-software-users", NULL, -1, -1,
          -1, NULL, NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, "Émigrés,site-admins", NULL, -1, -1,
          -1, NULL, NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, "7e40d078-0000-4000-8000-000000000000",
          NULL, -1, -1, -1, NULL, NULL, NULL, NULL, NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1, NULL,
          "2023-01-01", NULL, "created", NULL },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1, NULL, NULL,
          "2023-01-01T00:00:00Z", "created", "desc" },
        { NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, -1, -1, NULL,
          "2021-01-01", "2024-02-02T00:00:00.001Z", NULL, NULL },
        { "site-1.atlassian.net", "confluence", "active", NULL, "managed",
          NULL, NULL, 1, 0, 10, NULL, NULL, NULL, "last_active", "desc" },
        { NULL, "jira-software", "active,suspended", NULL, NULL, NULL, NULL,
          -1, -1, 90, "a", NULL, NULL, "email", NULL },
    };

    /* every filter and context on its own and in combinations */
    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        check_spec(r, snap, &fixed[i], 1000, NOW_MS, 1, "fixed");
    }

    /* the boundary of inactive_days: exactly N days ago counts */
    {
        ngx_umlo_query_err_t  err;
        json_t               *page;
        json_t               *d;

        page = engine_page(snap, "q=edge&inactive_days=30", NOW_MS, &err);
        d = json_object_get(page, "data");
        ok(json_array_size(d) == 1
           && streq(jstr(json_array_get(d, 0), "id"), "c0-edge"),
           "inactive_days=30: active exactly 30 days ago is in, 1 ms later "
           "is out");
        json_decref(page);
    }

    /* the case and Unicode folding of q, by name */
    {
        ngx_umlo_query_err_t  err;
        json_t               *page;
        static const struct {
            const char  *args;
            const char  *id;
        } q[] = {
            { "q=zo%C3%AB", "a0-zoe" },
            { "q=ZO%C3%8B", "a0-zoe" },
            { "q=Zo%C3%AB+%C3%84rger", "a0-zoe" },
            { "q=%C3%A9mile", "a1-emile" },
            { "q=%C3%89MILE", "a1-emile" },
            { "q=%E6%9D%8E%E9%9B%B7", "a2-lilei" },
            { "q=GHOST%40EXAMPLE", "a4-noname" },
        };

        for (i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
            size_t   k;
            json_t  *row;
            int      found = 0;

            page = engine_page(snap, q[i].args, NOW_MS, &err);
            json_array_foreach(json_object_get(page, "data"), k, row) {
                found |= streq(jstr(row, "id"), q[i].id);
            }
            ok(found, "%s finds %s", q[i].args, q[i].id);
            json_decref(page);
        }
    }

    /* pagination: every sort and order, small pages, no gaps */
    for (i = 0; i < 8; i++) {
        memset(&sp, 0, sizeof(sp));
        sp.billable = sp.never = sp.inactive = -1;
        sp.sort = sorts[i / 2];
        sp.order = orders[i % 2];
        check_spec(r, snap, &sp, 7, NOW_MS, 0, "pages");

        sp.site = "site-1.atlassian.net";
        check_spec(r, snap, &sp, 13, NOW_MS, 0, "pages in a site");

        sp.site = NULL;
        sp.product = "confluence";
        sp.never = 0;
        check_spec(r, snap, &sp, 1, NOW_MS, 0, "pages of one row");
    }

    /* the cursor keeps the first page's time for inactive_days */
    memset(&sp, 0, sizeof(sp));
    sp.billable = sp.never = -1;
    sp.inactive = 60;
    sp.sort = "last_active";
    check_spec(r, snap, &sp, 5, NOW_MS + 400 * DAY_MS, 0,
               "later pages, a year on");
}


typedef struct {
    char  status[64];
    char  group[160];
    char  role[64];
} spec_store_t;


static void
random_spec(world_t *w, spec_t *sp, spec_store_t *st)
{
    int          g;
    unsigned     k;
    static const char  *needles[] = { "zoë", "ZOË", "émile", "an", "AN",
        "example.com", "li", "李", "ö", "1", "ops", "x", "é" };
    static const char  *keys[] = { "jira-software", "confluence",
        "jira-servicedesk", "bitbucket" };
    static const char  *roles[] = { "atlassian/user", "atlassian/admin",
        "atlassian/guest", "atlassian/org-admin", "atlassian/site-admin",
        "nobody/none" };
    static const char  *dates[] = { "2020-01-01", "2022-06-15",
        "2024-01-01T12:00:00Z", "2020-09-13T12:26:40.000Z", "2025-12-31" };
    static const char  *sorts[] = { "name", "email", "last_active",
        "created" };
    static const int  days[] = { 0, 7, 30, 90, 365, 1000 };

    memset(sp, 0, sizeof(spec_t));
    sp->billable = sp->never = sp->inactive = -1;

    if (chance(25)) {
        k = rnd(w->nsites * 2 + 1);
        sp->site = k == (unsigned) w->nsites * 2 ? "nope.atlassian.net"
                   : (k % 2) ? w->sites[k / 2].cloud : w->sites[k / 2].host;
    }

    if (chance(20)) {
        sp->product = keys[rnd(4)];
    }

    if (chance(20)) {
        if (chance(40)) {
            snprintf(st->status, sizeof(st->status), "%s,%s",
                     statuses[rnd(8)], chance(20) ? "bogus"
                                                  : statuses[rnd(8)]);
        } else {
            snprintf(st->status, sizeof(st->status), "%s", statuses[rnd(8)]);
        }
        sp->status = st->status;
    }

    if (chance(10)) {
        sp->account_type = chance(50) ? "app,customer" : "atlassian";
    }

    if (chance(15)) {
        sp->claim = chance(50) ? "managed" : "unmanaged";
    }

    if (chance(15)) {
        g = rnd(w->ngroups);
        snprintf(st->group, sizeof(st->group), "%s,%s",
                 (chance(50) || w->groups[g].name == NULL
                  || strchr(w->groups[g].name, ','))
                 ? w->groups[g].id : w->groups[g].name,
                 w->groups[rnd(w->ngroups)].id);
        sp->group = st->group;
    }

    if (chance(15)) {
        snprintf(st->role, sizeof(st->role), "%s%s%s", roles[rnd(6)],
                 chance(30) ? "," : "", "");
        if (st->role[strlen(st->role) - 1] == ',') {
            snprintf(st->role + strlen(st->role),
                     sizeof(st->role) - strlen(st->role), "%s",
                     roles[rnd(6)]);
        }
        sp->role = st->role;
    }

    if (chance(15)) {
        sp->billable = rnd(2);
    }

    if (chance(15)) {
        sp->never = rnd(2);
    }

    if (chance(15)) {
        sp->inactive = days[rnd(6)];
    }

    if (chance(15)) {
        sp->q = needles[rnd(sizeof(needles) / sizeof(needles[0]))];
    }

    if (chance(10)) {
        sp->after = dates[rnd(5)];
    }

    if (chance(10)) {
        sp->before = dates[rnd(5)];
    }

    sp->sort = chance(20) ? NULL : sorts[rnd(4)];
    sp->order = chance(30) ? NULL : (chance(50) ? "asc" : "desc");
}


static void
check_random(ref_t *r, ngx_umlo_snap_t *snap, int n)
{
    int           i;
    spec_t        sp;
    spec_store_t  st;
    static const int  limits[] = { 1, 3, 7, 50, 1000 };

    for (i = 0; i < n; i++) {
        random_spec(r->w, &sp, &st);
        check_spec(r, snap, &sp, limits[rnd(5)], NOW_MS, i % 4 == 0,
                   "random");
    }
}


static void
check_cursors(ref_t *r, ngx_umlo_snap_t *snap)
{
    char                 *next, *args;
    json_t               *page, *p2;
    ngx_umlo_snap_t      *other;
    ngx_umlo_query_t     *q;
    ngx_umlo_query_err_t  err;

    page = engine_page(snap, "status=active&sort=email&limit=3", NOW_MS,
                       &err);
    next = page ? strdup(json_string_value(json_object_get(
                      json_object_get(page, "links"), "next"))) : NULL;
    json_decref(page);

    if (!ok(next != NULL, "a first page links to the next")) {
        return;
    }

    ok(strspn(next, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                    "0123456789-_") == strlen(next),
       "the cursor is base64url: %s", next);

    /* the same parameters in another order and spelling: accepted */
    if (asprintf(&args, "sort=e%%6Dail&limit=3&cursor=%s&status=active",
                 next) < 0)
    {
        exit(2);
    }
    page = engine_page(snap, args, NOW_MS, &err);
    ok(page != NULL && json_array_size(json_object_get(page, "data")) == 3,
       "the cursor with the same parameters reordered");
    free(args);

    /* another limit on the next page: allowed */
    if (asprintf(&args, "status=active&sort=email&limit=5&cursor=%s",
                 next) < 0)
    {
        exit(2);
    }
    p2 = engine_page(snap, args, NOW_MS, &err);
    ok(p2 != NULL && json_array_size(json_object_get(p2, "data")) == 5
       && json_equal(json_array_get(json_object_get(page, "data"), 0),
                     json_array_get(json_object_get(p2, "data"), 0)),
       "a cursor with another limit goes on from the same row");
    json_decref(page);
    json_decref(p2);
    free(args);

    /* other filters or sort */
    if (asprintf(&args, "status=suspended&sort=email&limit=3&cursor=%s",
                 next) < 0)
    {
        exit(2);
    }
    page = engine_page(snap, args, NOW_MS, &err);
    ok(page == NULL && err.status == 400
       && strcmp(err.code, "invalid_parameter") == 0
       && strcmp(err.param, "cursor") == 0,
       "a cursor with other filters: 400 cursor (%s)", err.message);
    json_decref(page);
    free(args);

    if (asprintf(&args, "status=active&limit=3&cursor=%s", next) < 0) {
        exit(2);
    }
    page = engine_page(snap, args, NOW_MS, &err);
    ok(page == NULL && err.status == 400 && strcmp(err.param, "cursor") == 0,
       "a cursor with another sort: 400 cursor");
    json_decref(page);
    free(args);

    if (asprintf(&args, "status=active&sort=email&order=desc&cursor=%s",
                 next) < 0)
    {
        exit(2);
    }
    page = engine_page(snap, args, NOW_MS, &err);
    ok(page == NULL && err.status == 400 && strcmp(err.param, "cursor") == 0,
       "a cursor with another order: 400 cursor");
    json_decref(page);
    free(args);

    /* broken cursors */
    {
        char  bad[64];
        int   i;

        for (i = 0; i < 4; i++) {
            snprintf(bad, sizeof(bad), "%s", next);

            switch (i) {
            case 0:
                bad[strlen(bad) - 1] = '\0';            /* short */
                break;
            case 1:
                bad[0] = bad[0] == 'A' ? 'B' : 'A';     /* version */
                break;
            case 2:
                bad[5] = '=';                            /* not base64url */
                break;
            default:
                bad[strlen(bad) - 1] = 'B';             /* padding bits */
            }

            if (asprintf(&args, "status=active&sort=email&cursor=%s", bad)
                < 0)
            {
                exit(2);
            }
            page = engine_page(snap, args, NOW_MS, &err);
            ok(page == NULL && err.status == 400
               && strcmp(err.param, "cursor") == 0,
               "a damaged cursor (%d): 400 cursor", i);
            json_decref(page);
            free(args);
        }
    }

    /* CSV has no pages */
    if (asprintf(&args, "status=active&sort=email&format=csv&cursor=%s",
                 next) < 0)
    {
        exit(2);
    }
    q = ngx_umlo_query_parse(snap, args, strlen(args), NOW_MS, &err);
    ok(q != NULL && ngx_umlo_query_run(q, &err) == -1 && err.status == 400
       && strcmp(err.param, "cursor") == 0,
       "format=csv with a cursor: 400 cursor");
    ngx_umlo_query_free(q);
    free(args);

    if (asprintf(&args, "status=active&sort=email&cursor=%s", next) < 0) {
        exit(2);
    }
    q = ngx_umlo_query_parse(snap, args, strlen(args), NOW_MS, &err);
    if (q) {
        ngx_umlo_query_set_csv(q);
    }
    ok(q != NULL && ngx_umlo_query_run(q, &err) == -1 && err.status == 400
       && strcmp(err.param, "cursor") == 0,
       "Accept: text/csv with a cursor: 400 cursor");
    ngx_umlo_query_free(q);

    /* another generation of the same data */
    other = w_snapshot(r->w, GEN + 1);
    page = engine_page(other, args, NOW_MS, &err);
    ok(page == NULL && err.status == 409
       && strcmp(err.code, "snapshot_changed") == 0
       && strcmp(err.param, "cursor") == 0
       && strstr(err.message, "start again from the first page") != NULL,
       "a cursor of another generation: 409 snapshot_changed");
    json_decref(page);
    free(args);

    page = engine_page(other, "status=active&sort=email&limit=3", NOW_MS,
                       &err);
    ok(page != NULL && json_integer_value(json_object_get(
           json_object_get(page, "meta"), "generation")) == GEN + 1,
       "the new generation's first page");
    json_decref(page);
    ngx_umlo_snap_free(other);

    free(next);
}


static void
check_page_shape(ref_t *r, ngx_umlo_snap_t *snap)
{
    json_t               *page, *meta, *row, *one;
    uint32_t              idx;
    ngx_umlo_query_err_t  err;

    page = engine_page(snap, "q=ZOE%40example.com", NOW_MS, &err);
    meta = json_object_get(page, "meta");

    ok(page != NULL && json_object_size(page) == 3
       && json_integer_value(json_object_get(meta, "total")) == 1
       && json_integer_value(json_object_get(meta, "limit")) == 100
       && json_str_is(json_object_get(meta, "data_as_of"),
                      "2026-05-31T23:50:00Z")
       && json_is_null(json_object_get(meta, "activity_as_of"))
       && json_str_is(json_object_get(meta, "sync_id"),
                      "s-1780271000000-0c1d2e3f")
       && json_integer_value(json_object_get(meta, "generation")) == GEN
       && json_str_is(json_object_get(meta, "context"), "org")
       && json_is_null(json_object_get(json_object_get(page, "links"),
                                       "next")),
       "page: data, links.next null on the last page, meta");

    row = json_array_get(json_object_get(page, "data"), 0);
    {
        size_t       i;
        int          good;
        static const char  *fields[] = { "id", "name", "email", "avatar",
            "status", "account_type", "claim_status", "account_status",
            "membership_status", "created", "billable", "platform_roles",
            "sites", "products", "groups", "last_active", "never_active" };

        good = json_object_size(row) == sizeof(fields) / sizeof(fields[0]);
        for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
            good &= json_object_get(row, fields[i]) != NULL;
        }

        ok(good, "row: the documented fields, no others");
    }

    ok(json_str_is(json_object_get(json_object_get(row, "last_active"),
                                   "at"), "2026-05-12T23:29:41.740Z")
       && json_str_is(json_object_get(row, "created"),
                      "2022-02-05T14:20:42.000Z"),
       "row: ISO 8601 UTC with milliseconds");

    {
        json_t  *p = json_array_get(json_object_get(row, "products"), 0);

        ok(json_str_is(json_object_get(p, "site"), "site-1.atlassian.net")
           && json_str_is(json_object_get(p, "product"), "jira-software")
           && json_is_true(json_object_get(p, "billable"))
           && json_str_is(json_array_get(json_object_get(p, "roles"), 0),
                          "atlassian/user")
           && json_str_is(json_object_get(p, "last_active"),
                          "2026-05-12T23:29:41.740Z")
           && json_object_size(p) == 5,
           "row: products sorted by site, with roles, billable, dates");
    }

    /* the single-user row equals the list row, org context */
    idx = ngx_umlo_snap_user(snap, "a0-zoe");
    one = ngx_umlo_query_row(snap, idx);
    ok(one != NULL && json_equal(one, row),
       "ngx_umlo_query_row() equals the list's row");
    json_decref(one);
    json_decref(page);

    ok(ngx_umlo_query_row(snap, snap->nusers) == NULL,
       "ngx_umlo_query_row() of no user: NULL");

    /* every user's row against the reference, org context */
    {
        size_t   i;
        int      good = 1;
        char     why[512];
        spec_t   sp = SPEC_NONE;

        for (i = 0; i < r->n && good; i++) {
            idx = ngx_umlo_snap_user(snap, r->users[i].id);
            one = ngx_umlo_query_row(snap, idx);
            good = one && check_row(r, one, &r->users[i], &sp, "org", 1, why,
                                    sizeof(why));
            json_decref(one);
        }

        ok(good, "ngx_umlo_query_row() of every user");
        if (!good) {
            diag("%s", why);
        }
    }

    /* nulls: no name, no email, no claim, never active, created unknown */
    page = engine_page(snap, "q=ghost", NOW_MS, &err);
    row = json_array_get(json_object_get(page, "data"), 0);
    ok(json_is_null(json_object_get(row, "name"))
       && json_is_null(json_object_get(row, "claim_status"))
       && json_is_null(json_object_get(row, "created"))
       && json_is_null(json_object_get(json_object_get(row, "last_active"),
                                       "at"))
       && json_str_is(json_object_get(json_object_get(row, "last_active"),
                                      "source"), "created")
       && json_is_true(json_object_get(row, "never_active")),
       "row: nulls where the snapshot has none");
    json_decref(page);

    /* the context names the host when the site was given by cloud id */
    page = engine_page(snap,
                       "site=c0ffee01-1234-4abc-9def-000000000001"
                       "&product=jira-software&q=zo%C3%AB",
                       NOW_MS, &err);
    row = json_array_get(json_object_get(page, "data"), 0);
    ok(json_str_is(json_object_get(json_object_get(page, "meta"),
                                   "context"),
                   "site:site-1.atlassian.net/product:jira-software")
       && json_str_is(json_object_get(json_object_get(row, "last_active"),
                                      "context"),
                      "site:site-1.atlassian.net/product:jira-software"),
       "context by cloud id: site:HOST/product:KEY");
    json_decref(page);

    /* never active on site 1, active on site 2 */
    page = engine_page(snap, "site=site-1.atlassian.net&q=half", NOW_MS,
                       &err);
    row = json_array_get(json_object_get(page, "data"), 0);
    ok(json_str_is(json_object_get(json_object_get(row, "last_active"),
                                   "at"), "2019-05-05T05:05:05.000Z")
       && json_str_is(json_object_get(json_object_get(row, "last_active"),
                                      "source"), "created")
       && json_is_true(json_object_get(row, "never_active")),
       "never active on the site: the created date, source created");
    json_decref(page);

    page = engine_page(snap, "q=half", NOW_MS, &err);
    row = json_array_get(json_object_get(page, "data"), 0);
    ok(json_str_is(json_object_get(json_object_get(row, "last_active"),
                                   "at"), "2026-05-30T00:00:00.000Z")
       && json_str_is(json_object_get(json_object_get(row, "last_active"),
                                      "source"), "activity")
       && json_is_false(json_object_get(row, "never_active")),
       "the same user in the org: active");
    json_decref(page);
}


static void
check_csv_escapes(ngx_umlo_snap_t *snap)
{
    char                 *csv;
    size_t                len;
    ngx_umlo_query_err_t  err;

    csv = engine_csv(snap, "format=csv&q=%3Dsum", 3, 0, &len, &err);
    ok(csv && strstr(csv, "\r\na6-formula,'=SUM(A1:A9),'+1@example.com,")
       != NULL, "CSV: = and + get a leading '");
    free(csv);

    csv = engine_csv(snap, "format=csv&q=bob", 5, 0, &len, &err);
    ok(csv && strstr(csv, "\r\na7-quote,\"Smith, \"\"Bob\"\"\","
                          "'-bob@example.com,deactivated,") != NULL,
       "CSV: quotes doubled, commas quoted, - guarded");
    free(csv);

    csv = engine_csv(snap, "format=csv&q=multi", 4096, 0, &len, &err);
    ok(csv && strstr(csv, "\r\na8-newline,\"Multi\nLine\",'@at@example.com,")
       != NULL, "CSV: a newline in a quoted cell, @ guarded");
    free(csv);

    csv = engine_csv(snap, "format=csv&q=tab+start", 4096, 0, &len, &err);
    ok(csv && strstr(csv, "\r\na9-tab,'\tTab Start,") != NULL,
       "CSV: a leading tab guarded");
    free(csv);

    csv = engine_csv(snap, "format=csv&site=nope", 2, 0, &len, &err);
    ok(csv && strcmp(csv, "id,name,email,status,account_type,claim_status,"
                          "billable,last_active,last_active_source,"
                          "never_active,created,sites,products,groups\r\n")
       == 0, "CSV: no rows, the header only");
    free(csv);

    csv = engine_csv(snap, "format=csv&q=zo%C3%AB&site=site-2.atlassian.net",
                     4096, 0, &len, &err);
    ok(csv && strstr(csv, "\r\na0-zoe,Zoë Ärger,zoe@example.com,active,"
                          "atlassian,managed,false,"
                          "2025-01-02T03:04:05.006Z,activity,false,"
                          "2022-02-05T14:20:42.000Z,"
                          "site-1.atlassian.net; site-2.atlassian.net,"
                          "site-1.atlassian.net/jira-software; "
                          "site-2.atlassian.net/confluence,"
                          "confluence-users; jira-software-users\r\n")
       != NULL, "CSV: a row in the site context");
    free(csv);
}


static void
check_facets(ref_t *r, ngx_umlo_snap_t *snap)
{
    int          s, good;
    size_t       i, j, k;
    json_t      *f, *f2, *list, *item, *doc, *e;
    long         users, bill;
    const char  *key;

    /* borrowed: the snapshot owns them, as the handler assigns them */
    f = ngx_umlo_query_facets(snap);
    f2 = ngx_umlo_query_facets(snap);

    ok(f != NULL && f == f2 && snap->facets == f && f->refcount == 1,
       "facets: built once, owned by the snapshot");

    if (f == NULL) {
        return;
    }

    ok(json_integer_value(json_object_get(f, "total")) == (json_int_t) r->n,
       "facets: total");

    /* sites by host, with their products and counts */
    list = json_object_get(f, "sites");
    good = json_array_size(list) == (size_t) r->w->nsites;

    json_array_foreach(list, i, item) {
        key = jstr(item, "host");

        if (i > 0 && strcmp(jstr(json_array_get(list, i - 1), "host"), key)
                     >= 0)
        {
            good = 0;
        }

        users = 0;
        for (k = 0; k < r->n; k++) {
            doc = r->users[k].doc;
            int hit = 0;
            json_array_foreach(json_object_get(doc, "products"), j, e) {
                hit |= streq(jstr(e, "site"), key);
            }
            users += hit;
        }

        if (json_integer_value(json_object_get(item, "users")) != users) {
            diag("site %s: %lld users, expected %ld", key,
                 (long long) json_integer_value(json_object_get(item,
                                                                "users")),
                 users);
            good = 0;
        }

        for (s = 0; s < r->w->nsites; s++) {
            if (streq(r->w->sites[s].host, key)
                && !json_str_is(json_object_get(item, "id"),
                                r->w->sites[s].cloud))
            {
                good = 0;
            }
        }

        {
            size_t   p;
            json_t  *pi;

            json_array_foreach(json_object_get(item, "products"), p, pi) {
                const char  *ari = jstr(pi, "id");

                users = 0;
                bill = 0;

                for (k = 0; k < r->n; k++) {
                    json_array_foreach(json_object_get(r->users[k].doc,
                                                       "products"), j, e)
                    {
                        if (streq(jstr(e, "resource_id"), ari)) {
                            users++;
                            bill += json_is_true(json_object_get(e,
                                                             "billable"));
                        }
                    }
                }

                if (json_integer_value(json_object_get(pi, "users")) != users
                    || json_integer_value(json_object_get(pi, "billable"))
                       != bill
                    || !json_str_is(json_object_get(pi, "name"),
                                    jstr(pi, "key")))
                {
                    diag("product %s: counts differ", ari);
                    good = 0;
                }
            }
        }
    }

    ok(good, "facets: sites by host, users and products per site");

    /* product keys */
    list = json_object_get(f, "products");
    good = json_array_size(list) == 3;

    json_array_foreach(list, i, item) {
        key = jstr(item, "key");
        users = bill = 0;

        for (k = 0; k < r->n; k++) {
            int  hit = 0, b = 0;

            json_array_foreach(json_object_get(r->users[k].doc, "products"),
                               j, e)
            {
                if (streq(jstr(e, "product"), key)) {
                    hit = 1;
                    b |= json_is_true(json_object_get(e, "billable"));
                }
            }

            users += hit;
            bill += b;
        }

        good &= json_integer_value(json_object_get(item, "users")) == users
                && json_integer_value(json_object_get(item, "billable"))
                   == bill;

        if (i > 0) {
            good &= strcmp(jstr(json_array_get(list, i - 1), "key"), key)
                    < 0;
        }
    }

    ok(good, "facets: product keys with users and billable users");

    /* groups */
    list = json_object_get(f, "groups");
    good = json_array_size(list) == (size_t) r->w->ngroups;

    json_array_foreach(list, i, item) {
        users = 0;

        for (k = 0; k < r->n; k++) {
            json_array_foreach(json_object_get(r->users[k].doc, "groups"),
                               j, e)
            {
                users += streq(jstr(e, "id"), jstr(item, "id"));
            }
        }

        good &= json_integer_value(json_object_get(item, "users")) == users;
    }

    ok(good, "facets: groups with members");

    /* enumerated values, counts descending */
    {
        static const char  *names[3] = { "status", "account_type", "claim" };
        static const char  *fields[3] = { "status", "account_type",
                                          "claim_status" };
        int   fi;

        for (fi = 0; fi < 3; fi++) {
            list = json_object_get(f, names[fi]);
            good = json_array_size(list) > 0;
            users = 0;

            json_array_foreach(list, i, item) {
                long  n = 0;

                for (k = 0; k < r->n; k++) {
                    n += json_str_is(json_object_get(item, "value"),
                                     jstr(r->users[k].doc, fields[fi]));
                }

                good &= json_integer_value(json_object_get(item, "users"))
                        == n;
                users += n;

                if (i > 0) {
                    good &= json_integer_value(json_object_get(
                                json_array_get(list, i - 1), "users")) >= n;
                }
            }

            ok(good && users == (long) r->n,
               "facets: %s values, most users first", names[fi]);
        }
    }

    /* roles */
    list = json_object_get(f, "roles");
    good = json_array_size(list) >= 5;

    json_array_foreach(list, i, item) {
        users = 0;
        key = jstr(item, "role");

        for (k = 0; k < r->n; k++) {
            spec_t    sp = SPEC_NONE;
            ref_in_t  in;
            json_t   *role;
            size_t    m;
            int       hit = 0;

            ref_eval(r, &r->users[k], &sp, &in);
            json_array_foreach(in.roles, m, role) {
                hit |= streq(json_string_value(role), key);
            }
            json_decref(in.roles);
            users += hit;
        }

        good &= json_integer_value(json_object_get(item, "users")) == users;
    }

    ok(good, "facets: roles, product or platform");
}


static int
check(void)
{
    world_t           w;
    ref_t             r;
    ngx_umlo_snap_t  *snap;
    int               i;

    w_init(&w, 3, 6);

    for (i = 0; i < 420; i++) {
        json_array_append_new(w.users, w_random_user(&w, i));
    }

    w_special(&w);

    snap = w_snapshot(&w, GEN);
    ref_init(&r, &w);

    ok(snap->nusers == r.n, "snapshot of %zu users", r.n);

    check_page_shape(&r, snap);
    check_errors(snap);
    check_lenient(&r, snap);
    check_fixed(&r, snap);
    check_random(&r, snap, 300);
    check_cursors(&r, snap);
    check_csv_escapes(snap);

    {
        spec_t  sp = SPEC_NONE;

        check_csv(snap, &sp, "CSV of everyone");

        sp.site = "site-2.atlassian.net";
        sp.sort = "last_active";
        sp.order = "desc";
        check_csv(snap, &sp, "CSV of a site");

        sp.site = NULL;
        sp.product = "jira-software";
        sp.status = "active,suspended";
        sp.sort = "email";
        check_csv(snap, &sp, "CSV of a product");
    }

    check_facets(&r, snap);

    ref_free(&r);
    ngx_umlo_snap_free(snap);
    json_decref(w.users);

    ok(split_checks >= 100 && split_failed == 0,
       "%d pages the same through a shared filtered list and attach(), "
       "and as text byte for byte (%d differ)", split_checks, split_failed);

    printf("1..%d\n", ntests);

    if (nfailed) {
        diag("%d of %d failed", nfailed, ntests);
    }

    return nfailed ? 1 : 0;
}


/* ---------------------------------------------------------------------- */
/* bench                                                                   */
/* ---------------------------------------------------------------------- */


static double
ms_since(struct timespec *t0)
{
    struct timespec  t;

    clock_gettime(CLOCK_MONOTONIC, &t);

    return (t.tv_sec - t0->tv_sec) * 1e3 + (t.tv_nsec - t0->tv_nsec) / 1e6;
}


static int
double_cmp(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


static int
bench(int n)
{
    int                   i, k, rounds;
    char                 *buf;
    double                t, times[16];
    world_t              *w;
    char                 *text;
    json_t               *f;
    ngx_umlo_query_rows_t rows;
    ssize_t               got;
    size_t                bytes, len;
    uint32_t              total;
    struct timespec       t0;
    ngx_umlo_snap_t      *snap;
    ngx_umlo_query_t     *q;
    ngx_umlo_query_err_t  err;

    static const char  *queries[] = {
        "",
        "status=active&product=jira-software&inactive_days=90"
        "&sort=last_active",
        "site=site-1.atlassian.net&billable=true&q=an&sort=email&order=desc",
        "group=team-007&claim=managed&never_active=false&sort=created",
        "status=active,suspended&role=atlassian/user&created_after=2022-01-01"
        "&sort=name&order=desc",
        "q=zo%C3%AB&sort=last_active",
        "product=confluence&never_active=true&claim=managed"
        "&sort=last_active&order=desc&limit=1000",
    };

    w = malloc(sizeof(world_t));
    w_init(w, 4, 250);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < n; i++) {
        json_array_append_new(w->users, w_random_user(w, i));
    }
    printf("bench documents: %d users in %.0f ms\n", n, ms_since(&t0));

    clock_gettime(CLOCK_MONOTONIC, &t0);
    snap = w_snapshot(w, GEN);
    printf("bench snapshot: built in %.0f ms, %zu KB arena\n",
           ms_since(&t0), snap->bytes / 1024);

    json_decref(w->users);
    w->users = NULL;

    /*
     * Round 0 is not timed: the first large malloc() after freeing the
     * documents consolidates the allocator's free lists (about a second
     * here), which nginx pays in the pool thread that built the snapshot.
     */
    rounds = 15;

    for (k = 0; k < (int) (sizeof(queries) / sizeof(queries[0])); k++) {
        text = NULL;
        len = 0;

        for (i = 0; i <= rounds; i++) {
            clock_gettime(CLOCK_MONOTONIC, &t0);

            q = ngx_umlo_query_parse(snap, queries[k], strlen(queries[k]),
                                     NOW_MS, &err);
            if (q == NULL || ngx_umlo_query_run(q, &err) != 0) {
                printf("bench error: %s: %s\n", queries[k], err.message);
                ngx_umlo_query_free(q);
                return 1;
            }

            free(text);
            text = ngx_umlo_query_page_text(q, &len);
            t = ms_since(&t0);
            total = ngx_umlo_query_total(q);
            ngx_umlo_query_free(q);

            if (i > 0) {
                times[i - 1] = t;
            }
        }

        qsort(times, rounds, sizeof(double), double_cmp);

        printf("bench query: %6.2f ms best, %6.2f ms median, %6u rows, "
               "%zu bytes, ?%s\n", times[0], times[rounds / 2], total, len,
               queries[k]);
        free(text);

        /* a cache hit: parse, key, attach to the list made once, page */
        q = ngx_umlo_query_parse(snap, queries[k], strlen(queries[k]),
                                 NOW_MS, &err);
        ngx_umlo_query_filter(q, &rows);
        ngx_umlo_query_free(q);

        for (i = 0; i <= rounds; i++) {
            clock_gettime(CLOCK_MONOTONIC, &t0);
            q = ngx_umlo_query_parse(snap, queries[k], strlen(queries[k]),
                                     NOW_MS, &err);
            free(ngx_umlo_query_key(q, &len));
            ngx_umlo_query_attach(q, &rows, &err);
            text = ngx_umlo_query_page_text(q, &len);
            t = ms_since(&t0);
            free(text);
            ngx_umlo_query_free(q);

            if (i > 0) {
                times[i - 1] = t;
            }
        }

        qsort(times, rounds, sizeof(double), double_cmp);
        printf("bench hit:   %6.2f ms best, %6.2f ms median (list cached)\n",
               times[0], times[rounds / 2]);
        ngx_umlo_query_rows_free(&rows);
    }

    /* the whole CSV, through a 16 KB buffer */
    buf = malloc(16384);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    q = ngx_umlo_query_parse(snap, "format=csv", 10, NOW_MS, &err);
    ngx_umlo_query_run(q, &err);
    bytes = 0;
    while ((got = ngx_umlo_query_csv(q, buf, 16384)) > 0) {
        bytes += got;
    }
    printf("bench csv: %u rows, %zu KB in %.0f ms\n",
           ngx_umlo_query_total(q), bytes / 1024, ms_since(&t0));
    ngx_umlo_query_free(q);
    free(buf);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    f = ngx_umlo_query_facets(snap);
    printf("bench facets: %.1f ms (first call)\n", ms_since(&t0));
    (void) f;

    ngx_umlo_snap_free(snap);
    free(w);

    return got < 0;
}


int
main(int argc, char **argv)
{
    if (setlocale(LC_CTYPE, "C.UTF-8") == NULL) {
        fprintf(stderr, "the C.UTF-8 locale is missing\n");
        return 2;
    }

    if (argc >= 2 && strcmp(argv[1], "check") == 0) {
        return check();
    }

    if (argc >= 3 && strcmp(argv[1], "bench") == 0) {
        return bench(atoi(argv[2]));
    }

    fprintf(stderr, "usage: query_test check | bench N\n");

    return 2;
}
