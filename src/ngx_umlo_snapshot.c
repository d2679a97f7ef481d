/*
 * Copyright (C) ngx_umlo authors
 *
 * The in-memory snapshot: see ngx_umlo_snapshot.h.  Strings and arrays
 * live in an arena of large chunks, so that a 100,000-user snapshot is a
 * few hundred allocations and is freed at once.
 */


#define _GNU_SOURCE

#include "ngx_umlo_snapshot.h"
#include "ngx_umlo_keys.h"

#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>
#include <hiredis/hiredis.h>


#define NGX_UMLO_CHUNK     (256 * 1024)
#define NGX_UMLO_SCAN      "1000"


struct ngx_umlo_snap_chunk_s {
    ngx_umlo_snap_chunk_t  *next;
    size_t                  used;
    size_t                  size;
    char                    data[];
};


static void *ngx_umlo_snap_alloc(ngx_umlo_snap_t *snap, size_t size);
static char *ngx_umlo_snap_strdup(ngx_umlo_snap_t *snap, const char *s);
static char *ngx_umlo_snap_str(ngx_umlo_snap_t *snap, json_t *obj,
    const char *key);
static int ngx_umlo_snap_grow(void **array, uint32_t *cap, uint32_t n,
    size_t size);
static int ngx_umlo_snap_index(ngx_umlo_snap_t *snap, char kind,
    const char *key, uint32_t i);
static uint32_t ngx_umlo_snap_find(ngx_umlo_snap_t *snap, char kind,
    const char *key);
static uint8_t ngx_umlo_snap_intern(ngx_umlo_snap_t *snap, int field,
    json_t *value);
static uint32_t ngx_umlo_snap_role_bit(ngx_umlo_snap_t *snap,
    const char *role);
static uint32_t ngx_umlo_snap_roles(ngx_umlo_snap_t *snap, json_t *roles);
static int64_t ngx_umlo_snap_ms(json_t *value);
static const char *ngx_umlo_snap_cloud_id(const char *ari);
static int ngx_umlo_snap_by_id(const void *a, const void *b);
static int ngx_umlo_snap_cmp(const void *a, const void *b, void *data);
static int ngx_umlo_snap_scan(ngx_umlo_snap_t *snap, redisContext *c,
    const char *key, int (*add)(ngx_umlo_snap_t *, json_t *), char *err,
    size_t errlen);


typedef struct {
    ngx_umlo_snap_t  *snap;
    int               order;
} ngx_umlo_snap_sort_t;


ngx_umlo_snap_t *
ngx_umlo_snap_create(void)
{
    ngx_umlo_snap_t  *snap;

    snap = calloc(1, sizeof(ngx_umlo_snap_t));
    if (snap == NULL) {
        return NULL;
    }

    snap->index = json_object();
    if (snap->index == NULL) {
        free(snap);
        return NULL;
    }

    return snap;
}


void
ngx_umlo_snap_free(ngx_umlo_snap_t *snap)
{
    int                     k;
    ngx_umlo_snap_chunk_t  *ch, *next;

    if (snap == NULL) {
        return;
    }

    for (ch = snap->arena; ch; ch = next) {
        next = ch->next;
        free(ch);
    }

    for (k = 0; k < NGX_UMLO_ORDER_MAX; k++) {
        free(snap->order[k]);
    }

    free(snap->sites);
    free(snap->products);
    free(snap->groups);
    free(snap->users);
    free(snap->access);
    free(snap->folds);
    free(snap->fold_at);
    json_decref(snap->index);
    json_decref(snap->metrics);
    json_decref(snap->facets);
    free(snap->dashboard);
    free(snap);
}


int
ngx_umlo_snap_add_site(ngx_umlo_snap_t *snap, json_t *doc)
{
    size_t                    i;
    json_t                   *product;
    uint32_t                  site;
    const char               *host, *ari, *cloud;
    ngx_umlo_snap_site_t     *s;
    ngx_umlo_snap_product_t  *p;

    host = json_string_value(json_object_get(doc, "site"));
    if (host == NULL) {
        return -1;
    }

    site = ngx_umlo_snap_find(snap, 's', host);

    if (site == NGX_UMLO_SNAP_NONE) {
        if (ngx_umlo_snap_grow((void **) &snap->sites, &snap->cap_sites,
                               snap->nsites, sizeof(ngx_umlo_snap_site_t))
            != 0)
        {
            return -1;
        }

        site = snap->nsites++;
        s = &snap->sites[site];
        s->host = ngx_umlo_snap_strdup(snap, host);
        s->cloud_id = NULL;

        if (s->host == NULL || ngx_umlo_snap_index(snap, 's', host, site)) {
            return -1;
        }
    }

    json_array_foreach(json_object_get(doc, "products"), i, product) {
        ari = json_string_value(json_object_get(product, "id"));
        if (ari == NULL || ngx_umlo_snap_find(snap, 'p', ari)
                           != NGX_UMLO_SNAP_NONE)
        {
            continue;
        }

        if (ngx_umlo_snap_grow((void **) &snap->products,
                               &snap->cap_products, snap->nproducts,
                               sizeof(ngx_umlo_snap_product_t))
            != 0)
        {
            return -1;
        }

        p = &snap->products[snap->nproducts];
        p->ari = ngx_umlo_snap_strdup(snap, ari);
        p->key = ngx_umlo_snap_str(snap, product, "product");
        p->name = ngx_umlo_snap_str(snap, product, "name");
        p->site = site;
        p->capacity = json_is_integer(json_object_get(product, "capacity"))
                      ? json_integer_value(json_object_get(product,
                                                           "capacity"))
                      : -1;

        if (p->ari == NULL
            || ngx_umlo_snap_index(snap, 'p', ari, snap->nproducts) != 0
            || (p->key && ngx_umlo_snap_index(snap, 'k', p->key, 0) != 0))
        {
            return -1;
        }

        snap->nproducts++;

        /* a site's cloud id is in its products' ARIs: .../site/CLOUDID */
        cloud = ngx_umlo_snap_cloud_id(ari);
        s = &snap->sites[site];

        if (cloud != NULL && s->cloud_id == NULL) {
            s->cloud_id = ngx_umlo_snap_strdup(snap, cloud);
            if (s->cloud_id == NULL
                || ngx_umlo_snap_index(snap, 'c', cloud, site) != 0)
            {
                return -1;
            }
        }
    }

    return 0;
}


int
ngx_umlo_snap_add_group(ngx_umlo_snap_t *snap, json_t *doc)
{
    const char             *id;
    ngx_umlo_snap_group_t  *g;

    id = json_string_value(json_object_get(doc, "id"));
    if (id == NULL) {
        return -1;
    }

    if (ngx_umlo_snap_find(snap, 'g', id) != NGX_UMLO_SNAP_NONE) {
        return 0;
    }

    if (ngx_umlo_snap_grow((void **) &snap->groups, &snap->cap_groups,
                           snap->ngroups, sizeof(ngx_umlo_snap_group_t))
        != 0)
    {
        return -1;
    }

    g = &snap->groups[snap->ngroups];
    g->id = ngx_umlo_snap_strdup(snap, id);
    g->name = ngx_umlo_snap_str(snap, doc, "name");

    if (g->id == NULL
        || ngx_umlo_snap_index(snap, 'g', id, snap->ngroups) != 0
        || (g->name != NULL
            && ngx_umlo_snap_find(snap, 'n', g->name) == NGX_UMLO_SNAP_NONE
            && ngx_umlo_snap_index(snap, 'n', g->name, snap->ngroups) != 0))
    {
        return -1;
    }

    snap->ngroups++;

    return 0;
}


int
ngx_umlo_snap_add_user(ngx_umlo_snap_t *snap, json_t *doc)
{
    char                    *name_fold, *email_fold;
    size_t                   i, n, len;
    json_t                  *list, *item;
    uint32_t                 k, g;
    const char              *s, *ari, *host;
    ngx_umlo_snap_user_t    *u;
    ngx_umlo_snap_access_t  *a;

    if (json_string_value(json_object_get(doc, "id")) == NULL) {
        return -1;
    }

    if (ngx_umlo_snap_grow((void **) &snap->users, &snap->cap_users,
                           snap->nusers, sizeof(ngx_umlo_snap_user_t))
        != 0)
    {
        return -1;
    }

    u = &snap->users[snap->nusers];
    memset(u, 0, sizeof(ngx_umlo_snap_user_t));

    u->id = ngx_umlo_snap_str(snap, doc, "id");
    u->name = ngx_umlo_snap_str(snap, doc, "name");
    u->email = ngx_umlo_snap_str(snap, doc, "email");
    u->avatar = ngx_umlo_snap_str(snap, doc, "avatar");

    if (u->id == NULL) {
        return -1;
    }

    u->field[NGX_UMLO_F_STATUS] =
        ngx_umlo_snap_intern(snap, NGX_UMLO_F_STATUS,
                             json_object_get(doc, "status"));
    u->field[NGX_UMLO_F_ACCOUNT_TYPE] =
        ngx_umlo_snap_intern(snap, NGX_UMLO_F_ACCOUNT_TYPE,
                             json_object_get(doc, "account_type"));
    u->field[NGX_UMLO_F_CLAIM] =
        ngx_umlo_snap_intern(snap, NGX_UMLO_F_CLAIM,
                             json_object_get(doc, "claim_status"));
    u->field[NGX_UMLO_F_ACCOUNT_STATUS] =
        ngx_umlo_snap_intern(snap, NGX_UMLO_F_ACCOUNT_STATUS,
                             json_object_get(doc, "account_status"));
    u->field[NGX_UMLO_F_MEMBERSHIP] =
        ngx_umlo_snap_intern(snap, NGX_UMLO_F_MEMBERSHIP,
                             json_object_get(doc, "membership_status"));

    u->platform_roles = ngx_umlo_snap_roles(snap,
                                            json_object_get(doc,
                                                            "platform_roles"));
    u->created = ngx_umlo_snap_ms(json_object_get(doc, "added_to_org"));
    u->last_active = ngx_umlo_snap_ms(json_object_get(doc, "last_active"));

    /* "name\nemail", folded, for the case-insensitive search */
    name_fold = u->name ? ngx_umlo_snap_fold(u->name, strlen(u->name))
                        : strdup("");
    email_fold = u->email ? ngx_umlo_snap_fold(u->email, strlen(u->email))
                          : strdup("");

    if (name_fold == NULL || email_fold == NULL) {
        free(name_fold);
        free(email_fold);
        return -1;
    }

    for (s = name_fold; *s; s++) {
        if (*s == '\n') {
            name_fold[s - name_fold] = ' ';
        }
    }

    len = strlen(name_fold);
    u->fold = ngx_umlo_snap_alloc(snap, len + strlen(email_fold) + 2);

    if (u->fold != NULL) {
        memcpy(u->fold, name_fold, len);
        u->fold[len] = '\n';
        strcpy(u->fold + len + 1, email_fold);
    }

    free(name_fold);
    free(email_fold);

    if (u->fold == NULL) {
        return -1;
    }

    list = json_object_get(doc, "groups");
    n = json_array_size(list);
    u->groups = ngx_umlo_snap_alloc(snap, (n ? n : 1) * sizeof(uint32_t));
    if (u->groups == NULL) {
        return -1;
    }

    json_array_foreach(list, i, item) {
        s = json_string_value(json_object_get(item, "id"));
        if (s == NULL) {
            continue;
        }

        g = ngx_umlo_snap_find(snap, 'g', s);

        /* a group the groups listing missed still counts for the user */
        if (g == NGX_UMLO_SNAP_NONE) {
            if (ngx_umlo_snap_add_group(snap, item) != 0) {
                return -1;
            }

            g = snap->ngroups - 1;
        }

        u->groups[u->ngroups++] = g;
    }

    list = json_object_get(doc, "products");
    n = json_array_size(list);
    u->access = ngx_umlo_snap_alloc(snap, (n ? n : 1)
                                          * sizeof(ngx_umlo_snap_access_t));
    if (u->access == NULL) {
        return -1;
    }

    json_array_foreach(list, i, item) {
        ari = json_string_value(json_object_get(item, "resource_id"));
        host = json_string_value(json_object_get(item, "site"));

        a = &u->access[u->naccess++];
        memset(a, 0, sizeof(ngx_umlo_snap_access_t));

        a->product = ari ? ngx_umlo_snap_find(snap, 'p', ari)
                         : NGX_UMLO_SNAP_NONE;
        a->site = (a->product != NGX_UMLO_SNAP_NONE)
                  ? snap->products[a->product].site
                  : (host ? ngx_umlo_snap_find(snap, 's', host)
                          : NGX_UMLO_SNAP_NONE);
        a->roles = ngx_umlo_snap_roles(snap, json_object_get(item, "roles"));
        a->last_active = ngx_umlo_snap_ms(json_object_get(item,
                                                          "last_active"));
        a->billable = json_is_true(json_object_get(item, "billable"));
    }

    /* the org-wide date, should the document lack it */
    for (k = 0; k < u->naccess; k++) {
        if (u->access[k].last_active > u->last_active) {
            u->last_active = u->access[k].last_active;
        }
    }

    snap->nusers++;

    return 0;
}


int
ngx_umlo_snap_finish(ngx_umlo_snap_t *snap)
{
    int                    k;
    size_t                 n, len;
    uint32_t               i;
    ngx_umlo_snap_user_t  *u;
    ngx_umlo_snap_sort_t   ctx;

    /* an org without users has no array: qsort() must not see NULL */
    if (snap->nusers > 1) {
        qsort(snap->users, snap->nusers, sizeof(ngx_umlo_snap_user_t),
              ngx_umlo_snap_by_id);
    }

    /* users sorted by id are found by binary search: no index entries */
    for (i = 1; i < snap->nusers; i++) {
        if (strcmp(snap->users[i - 1].id, snap->users[i].id) == 0) {
            /* the same user from two chains: keep one */
            memmove(&snap->users[i], &snap->users[i + 1],
                    (snap->nusers - i - 1) * sizeof(ngx_umlo_snap_user_t));
            snap->nusers--;
            i--;
        }
    }

    /*
     * Filters walk users in order and read their product entries: one
     * array in that order keeps the walk in cache.
     */
    n = 0;
    for (i = 0; i < snap->nusers; i++) {
        n += snap->users[i].naccess;
    }

    snap->access = malloc((n ? n : 1) * sizeof(ngx_umlo_snap_access_t));
    if (snap->access == NULL) {
        return -1;
    }

    n = 0;
    for (i = 0; i < snap->nusers; i++) {
        u = &snap->users[i];
        memcpy(&snap->access[n], u->access,
               u->naccess * sizeof(ngx_umlo_snap_access_t));
        u->access = &snap->access[n];
        n += u->naccess;
    }

    n = 0;
    for (i = 0; i < snap->nusers; i++) {
        n += strlen(snap->users[i].fold) + 1;
    }

    snap->folds = malloc(n ? n : 1);
    snap->fold_at = malloc((snap->nusers + 1) * sizeof(uint32_t));
    if (snap->folds == NULL || snap->fold_at == NULL || n > UINT32_MAX) {
        return -1;
    }

    n = 0;
    for (i = 0; i < snap->nusers; i++) {
        u = &snap->users[i];
        snap->fold_at[i] = (uint32_t) n;
        len = strlen(u->fold) + 1;
        memcpy(snap->folds + n, u->fold, len);
        u->fold = snap->folds + n;
        n += len;
    }

    snap->fold_at[snap->nusers] = (uint32_t) n;

    for (k = 0; k < NGX_UMLO_ORDER_MAX; k++) {
        snap->order[k] = malloc((snap->nusers ? snap->nusers : 1)
                                * sizeof(uint32_t));
        if (snap->order[k] == NULL) {
            return -1;
        }

        for (i = 0; i < snap->nusers; i++) {
            snap->order[k][i] = i;
        }

        ctx.snap = snap;
        ctx.order = k;

        qsort_r(snap->order[k], snap->nusers, sizeof(uint32_t),
                ngx_umlo_snap_cmp, &ctx);
    }

    return 0;
}


int
ngx_umlo_snap_load(ngx_umlo_snap_t *snap, redisContext *c, const char *org,
    long long gen, const char *summary, char *err, size_t errlen)
{
    char    key[512];
    json_t  *doc;

    snap->gen = gen;

    doc = summary ? json_loads(summary, 0, NULL) : NULL;
    snap->sync_id = ngx_umlo_snap_str(snap, doc, "sync_id");
    snap->data_as_of = ngx_umlo_snap_str(snap, doc, "data_as_of");
    snap->activity_as_of = ngx_umlo_snap_str(snap, doc, "activity_as_of");
    json_decref(doc);

    snprintf(key, sizeof(key), NGX_UMLO_KEY_GEN_SITES, org, gen);
    if (ngx_umlo_snap_scan(snap, c, key, ngx_umlo_snap_add_site, err,
                           errlen)
        != 0)
    {
        return -1;
    }

    snprintf(key, sizeof(key), NGX_UMLO_KEY_GEN_GROUPS, org, gen);
    if (ngx_umlo_snap_scan(snap, c, key, ngx_umlo_snap_add_group, err,
                           errlen)
        != 0)
    {
        return -1;
    }

    snprintf(key, sizeof(key), NGX_UMLO_KEY_GEN_USERS, org, gen);
    if (ngx_umlo_snap_scan(snap, c, key, ngx_umlo_snap_add_user, err,
                           errlen)
        != 0)
    {
        return -1;
    }

    if (ngx_umlo_snap_finish(snap) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    return 0;
}


/* HSCAN: bounded replies, so that Redis never builds one huge answer */

static int
ngx_umlo_snap_scan(ngx_umlo_snap_t *snap, redisContext *c, const char *key,
    int (*add)(ngx_umlo_snap_t *, json_t *), char *err, size_t errlen)
{
    char         cursor[32];
    size_t       i;
    json_t      *doc;
    redisReply  *r, *items;

    strcpy(cursor, "0");

    do {
        r = redisCommand(c, "HSCAN %s %s COUNT " NGX_UMLO_SCAN, key, cursor);

        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2
            || r->element[0]->type != REDIS_REPLY_STRING)
        {
            snprintf(err, errlen, "Redis: %s",
                     r == NULL ? c->errstr
                     : r->type == REDIS_REPLY_ERROR ? r->str
                     : "unexpected HSCAN reply");
            if (r) {
                freeReplyObject(r);
            }
            return -1;
        }

        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        items = r->element[1];

        for (i = 1; i < items->elements; i += 2) {
            doc = json_loadb(items->element[i]->str, items->element[i]->len,
                             0, NULL);

            if (doc == NULL || add(snap, doc) != 0) {
                snprintf(err, errlen, "a document of %s (%.*s) cannot be "
                         "read", key, (int) items->element[i - 1]->len,
                         items->element[i - 1]->str);
                json_decref(doc);
                freeReplyObject(r);
                return -1;
            }

            json_decref(doc);
        }

        freeReplyObject(r);

    } while (strcmp(cursor, "0") != 0);

    return 0;
}


uint32_t
ngx_umlo_snap_user(ngx_umlo_snap_t *snap, const char *id)
{
    int       c;
    uint32_t  lo, hi, mid;

    lo = 0;
    hi = snap->nusers;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = strcmp(snap->users[mid].id, id);

        if (c == 0) {
            return mid;
        }

        if (c < 0) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return NGX_UMLO_SNAP_NONE;
}


uint32_t
ngx_umlo_snap_site(ngx_umlo_snap_t *snap, const char *host_or_id)
{
    uint32_t  i;

    i = ngx_umlo_snap_find(snap, 's', host_or_id);

    return (i != NGX_UMLO_SNAP_NONE) ? i
                                     : ngx_umlo_snap_find(snap, 'c',
                                                          host_or_id);
}


uint32_t
ngx_umlo_snap_group(ngx_umlo_snap_t *snap, const char *id_or_name)
{
    uint32_t  i;

    i = ngx_umlo_snap_find(snap, 'g', id_or_name);

    return (i != NGX_UMLO_SNAP_NONE) ? i
                                     : ngx_umlo_snap_find(snap, 'n',
                                                          id_or_name);
}


uint32_t
ngx_umlo_snap_role(ngx_umlo_snap_t *snap, const char *role)
{
    uint32_t  i;

    for (i = 0; i < snap->nroles; i++) {
        if (strcmp(snap->roles[i], role) == 0) {
            return i;
        }
    }

    return NGX_UMLO_SNAP_NONE;
}


uint32_t
ngx_umlo_snap_value(ngx_umlo_snap_t *snap, int field, const char *value)
{
    uint32_t  i;

    for (i = 0; i < snap->nvalues[field]; i++) {
        if (strcmp(snap->values[field][i], value) == 0) {
            return i;
        }
    }

    return NGX_UMLO_SNAP_NONE;
}


int
ngx_umlo_snap_has_product(ngx_umlo_snap_t *snap, const char *key)
{
    return ngx_umlo_snap_find(snap, 'k', key) != NGX_UMLO_SNAP_NONE;
}


/*
 * Full Unicode simple case mapping comes from the C library's "C.UTF-8"
 * locale, used explicitly (towlower_l) so that nginx's own locale, and
 * other threads, are never touched.
 */

static locale_t        ngx_umlo_snap_locale;
static pthread_once_t  ngx_umlo_snap_locale_once = PTHREAD_ONCE_INIT;


static void
ngx_umlo_snap_locale_init(void)
{
    ngx_umlo_snap_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t) 0);
}


char *
ngx_umlo_snap_fold(const char *s, size_t len)
{
    char           *out, *p;
    size_t          i, n;
    uint32_t        cp;
    unsigned char   c;

    pthread_once(&ngx_umlo_snap_locale_once, ngx_umlo_snap_locale_init);

    /* lower case never needs more than 4 bytes where upper case had 1 */
    out = malloc(len * 4 + 1);
    if (out == NULL) {
        return NULL;
    }

    p = out;

    for (i = 0; i < len; i += n) {
        c = (unsigned char) s[i];

        if (c < 0x80) {
            *p++ = (c >= 'A' && c <= 'Z') ? c + 32 : c;
            n = 1;
            continue;
        }

        n = (c >= 0xf0) ? 4 : (c >= 0xe0) ? 3 : (c >= 0xc0) ? 2 : 1;

        if (n == 1 || i + n > len) {
            /* not UTF-8: keep the byte, it can still match itself */
            *p++ = c;
            n = 1;
            continue;
        }

        cp = (n == 2) ? (c & 0x1f) : (n == 3) ? (c & 0x0f) : (c & 0x07);

        {
            size_t  k;

            for (k = 1; k < n; k++) {
                cp = (cp << 6) | ((unsigned char) s[i + k] & 0x3f);
            }
        }

        if (ngx_umlo_snap_locale != (locale_t) 0) {
            cp = towlower_l(cp, ngx_umlo_snap_locale);
        }

        if (cp < 0x80) {
            *p++ = cp;

        } else if (cp < 0x800) {
            *p++ = 0xc0 | (cp >> 6);
            *p++ = 0x80 | (cp & 0x3f);

        } else if (cp < 0x10000) {
            *p++ = 0xe0 | (cp >> 12);
            *p++ = 0x80 | ((cp >> 6) & 0x3f);
            *p++ = 0x80 | (cp & 0x3f);

        } else {
            *p++ = 0xf0 | (cp >> 18);
            *p++ = 0x80 | ((cp >> 12) & 0x3f);
            *p++ = 0x80 | ((cp >> 6) & 0x3f);
            *p++ = 0x80 | (cp & 0x3f);
        }
    }

    *p = '\0';

    return out;
}


/* days since 1970-01-01 of a proleptic Gregorian date */

static int64_t
ngx_umlo_snap_days(int64_t y, int64_t m, int64_t d)
{
    int64_t  era, yoe, doy, doe;

    y -= (m <= 2);
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}


static int
ngx_umlo_snap_mdays(int y, int m)
{
    static const int  days[] = { 31, 28, 31, 30, 31, 30,
                                 31, 31, 30, 31, 30, 31 };

    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) {
        return 29;
    }

    return days[m - 1];
}


static int
ngx_umlo_snap_num(const char **p, const char *end, int digits, int *v)
{
    int  i;

    *v = 0;

    for (i = 0; i < digits; i++) {
        if (*p >= end || **p < '0' || **p > '9') {
            return -1;
        }

        *v = *v * 10 + (*(*p)++ - '0');
    }

    return 0;
}


int
ngx_umlo_snap_time(const char *s, size_t len, int64_t *ms)
{
    int          y, mo, d, h, mi, sec, frac, scale, sign, oh, om;
    const char  *p, *end;

    p = s;
    end = s + len;
    h = mi = sec = frac = 0;
    scale = 1000;

    if (ngx_umlo_snap_num(&p, end, 4, &y) || p >= end || *p++ != '-'
        || ngx_umlo_snap_num(&p, end, 2, &mo) || p >= end || *p++ != '-'
        || ngx_umlo_snap_num(&p, end, 2, &d)
        || mo < 1 || mo > 12 || d < 1 || d > ngx_umlo_snap_mdays(y, mo))
    {
        return -1;
    }

    if (p < end && (*p == 'T' || *p == 't' || *p == ' ')) {
        p++;

        if (ngx_umlo_snap_num(&p, end, 2, &h) || p >= end || *p++ != ':'
            || ngx_umlo_snap_num(&p, end, 2, &mi) || h > 23 || mi > 59)
        {
            return -1;
        }

        if (p < end && *p == ':') {
            p++;
            if (ngx_umlo_snap_num(&p, end, 2, &sec) || sec > 60) {
                return -1;
            }

            if (p < end && *p == '.') {
                p++;
                if (p >= end || *p < '0' || *p > '9') {
                    return -1;
                }

                while (p < end && *p >= '0' && *p <= '9') {
                    if (scale > 1) {
                        scale /= 10;
                        frac += (*p - '0') * scale;
                    }
                    p++;
                }
            }
        }

        sign = 0;
        oh = om = 0;

        if (p < end && (*p == 'Z' || *p == 'z')) {
            p++;

        } else if (p < end && (*p == '+' || *p == '-')) {
            sign = (*p++ == '-') ? -1 : 1;

            if (ngx_umlo_snap_num(&p, end, 2, &oh)) {
                return -1;
            }

            if (p < end && *p == ':') {
                p++;
            }

            if (ngx_umlo_snap_num(&p, end, 2, &om) || oh > 23 || om > 59) {
                return -1;
            }
        }

        mi -= sign * (oh * 60 + om);
    }

    if (p != end) {
        return -1;
    }

    *ms = ((ngx_umlo_snap_days(y, mo, d) * 86400 + (int64_t) h * 3600
            + (int64_t) mi * 60 + sec) * 1000) + frac;

    return 0;
}


static void *
ngx_umlo_snap_alloc(ngx_umlo_snap_t *snap, size_t size)
{
    void                   *p;
    size_t                  want;
    ngx_umlo_snap_chunk_t  *ch;

    size = (size + 7) & ~(size_t) 7;
    ch = snap->arena;

    if (ch == NULL || ch->size - ch->used < size) {
        want = size > NGX_UMLO_CHUNK ? size : NGX_UMLO_CHUNK;

        ch = malloc(sizeof(ngx_umlo_snap_chunk_t) + want);
        if (ch == NULL) {
            return NULL;
        }

        ch->next = snap->arena;
        ch->used = 0;
        ch->size = want;
        snap->arena = ch;
        snap->bytes += want;
    }

    p = ch->data + ch->used;
    ch->used += size;

    return p;
}


static char *
ngx_umlo_snap_strdup(ngx_umlo_snap_t *snap, const char *s)
{
    char    *p;
    size_t   len;

    len = strlen(s);

    p = ngx_umlo_snap_alloc(snap, len + 1);
    if (p != NULL) {
        memcpy(p, s, len + 1);
    }

    return p;
}


/* a string field's copy; NULL when absent or not a string */

static char *
ngx_umlo_snap_str(ngx_umlo_snap_t *snap, json_t *obj, const char *key)
{
    const char  *s;

    s = json_string_value(json_object_get(obj, key));

    return s ? ngx_umlo_snap_strdup(snap, s) : NULL;
}


static int
ngx_umlo_snap_grow(void **array, uint32_t *cap, uint32_t n, size_t size)
{
    void      *p;
    uint32_t   want;

    if (n < *cap) {
        return 0;
    }

    want = *cap ? *cap * 2 : 64;

    p = realloc(*array, (size_t) want * size);
    if (p == NULL) {
        return -1;
    }

    *array = p;
    *cap = want;

    return 0;
}


/*
 * One JSON object serves every small lookup, its keys prefixed by kind:
 * s: site host, c: site cloud id, p: product ARI, k: product key,
 * g: group id, n: group name.
 */

static int
ngx_umlo_snap_index(ngx_umlo_snap_t *snap, char kind, const char *key,
    uint32_t i)
{
    int      rc;
    char    *k;
    size_t   len;

    len = strlen(key);

    k = malloc(len + 3);
    if (k == NULL) {
        return -1;
    }

    k[0] = kind;
    k[1] = ':';
    memcpy(k + 2, key, len + 1);

    rc = json_object_set_new(snap->index, k, json_integer(i));
    free(k);

    return rc;
}


static uint32_t
ngx_umlo_snap_find(ngx_umlo_snap_t *snap, char kind, const char *key)
{
    char     buf[512];
    json_t  *v;
    size_t   len;

    len = strlen(key);
    if (len + 3 > sizeof(buf)) {
        return NGX_UMLO_SNAP_NONE;
    }

    buf[0] = kind;
    buf[1] = ':';
    memcpy(buf + 2, key, len + 1);

    v = json_object_get(snap->index, buf);

    return v ? (uint32_t) json_integer_value(v) : NGX_UMLO_SNAP_NONE;
}


static uint8_t
ngx_umlo_snap_intern(ngx_umlo_snap_t *snap, int field, json_t *value)
{
    uint32_t     i;
    const char  *s;

    s = json_is_string(value) ? json_string_value(value) : "";

    i = ngx_umlo_snap_value(snap, field, s);
    if (i != NGX_UMLO_SNAP_NONE) {
        return (uint8_t) i;
    }

    /* more distinct values than any API enum has: share the last slot */
    if (snap->nvalues[field] == NGX_UMLO_VALUES_MAX) {
        return NGX_UMLO_VALUES_MAX - 1;
    }

    snap->values[field][snap->nvalues[field]] =
                                          ngx_umlo_snap_strdup(snap, s);
    if (snap->values[field][snap->nvalues[field]] == NULL) {
        return 0;
    }

    return (uint8_t) snap->nvalues[field]++;
}


static uint32_t
ngx_umlo_snap_role_bit(ngx_umlo_snap_t *snap, const char *role)
{
    uint32_t  i;

    i = ngx_umlo_snap_role(snap, role);
    if (i != NGX_UMLO_SNAP_NONE) {
        return 1u << i;
    }

    if (snap->nroles == NGX_UMLO_ROLES_MAX) {
        return 0;
    }

    snap->roles[snap->nroles] = ngx_umlo_snap_strdup(snap, role);
    if (snap->roles[snap->nroles] == NULL) {
        return 0;
    }

    return 1u << snap->nroles++;
}


static uint32_t
ngx_umlo_snap_roles(ngx_umlo_snap_t *snap, json_t *roles)
{
    size_t     i;
    json_t    *role;
    uint32_t   bits;

    bits = 0;

    json_array_foreach(roles, i, role) {
        if (json_is_string(role)) {
            bits |= ngx_umlo_snap_role_bit(snap, json_string_value(role));
        }
    }

    return bits;
}


static int64_t
ngx_umlo_snap_ms(json_t *value)
{
    int64_t      ms;
    const char  *s;

    s = json_string_value(value);

    if (s == NULL || ngx_umlo_snap_time(s, strlen(s), &ms) != 0) {
        return 0;
    }

    return ms;
}


static const char *
ngx_umlo_snap_cloud_id(const char *ari)
{
    const char  *p;

    p = strstr(ari, "::site/");

    return (p && p[7]) ? p + 7 : NULL;
}


static int
ngx_umlo_snap_by_id(const void *a, const void *b)
{
    return strcmp(((const ngx_umlo_snap_user_t *) a)->id,
                  ((const ngx_umlo_snap_user_t *) b)->id);
}


/* the orders of ngx_umlo_snapshot.h; ties always end on the id */

static int
ngx_umlo_snap_cmp(const void *a, const void *b, void *data)
{
    ngx_umlo_snap_sort_t  *ctx = data;

    int                    c;
    int64_t                x, y;
    const char            *s, *t;
    ngx_umlo_snap_user_t  *u, *v;

    u = &ctx->snap->users[*(const uint32_t *) a];
    v = &ctx->snap->users[*(const uint32_t *) b];

    switch (ctx->order) {

    case NGX_UMLO_ORDER_NAME:
    case NGX_UMLO_ORDER_EMAIL:
        s = u->fold;
        t = v->fold;

        if (ctx->order == NGX_UMLO_ORDER_EMAIL) {
            s = strchr(s, '\n') + 1;
            t = strchr(t, '\n') + 1;
        }

        /* missing values sort last */
        if ((*s == '\0' || *s == '\n') != (*t == '\0' || *t == '\n')) {
            return (*s == '\0' || *s == '\n') ? 1 : -1;
        }

        c = strcmp(s, t);
        if (c != 0) {
            return c;
        }

        break;

    default:
        if (ctx->order == NGX_UMLO_ORDER_CREATED) {
            x = u->created;
            y = v->created;

        } else {
            x = u->last_active ? u->last_active : u->created;
            y = v->last_active ? v->last_active : v->created;
        }

        if (x != y) {
            return x < y ? -1 : 1;
        }
    }

    return strcmp(u->id, v->id);
}
