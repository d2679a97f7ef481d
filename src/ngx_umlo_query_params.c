/*
 * Copyright (C) ngx_umlo authors
 *
 * Interpreting the decoded parameters: filters, the context, sort,
 * order and limit, each bad value a 400 naming it.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ngx_umlo_query_int.h"


const char  *ngx_umlo_query_names[NGX_UMLO_QP_MAX] = {
    "site", "product", "status", "account_type", "claim", "group", "role",
    "billable", "never_active", "inactive_days", "q", "created_after",
    "created_before", "sort", "order", "limit", "cursor", "format"
};

static const char  *ngx_umlo_query_sorts[] = {
    "name", "email", "last_active", "created"
};


static int ngx_umlo_query_list(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err);
static int ngx_umlo_query_single(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err);
static char *ngx_umlo_query_item(char **p);
static int ngx_umlo_query_bool(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err);
static int ngx_umlo_query_number(const char *s, int64_t max, int64_t *n);
static int ngx_umlo_query_word(ngx_umlo_query_t *q, int param,
    const char **words, int n, const char *allowed,
    ngx_umlo_query_err_t *err);


int
ngx_umlo_query_interpret(ngx_umlo_query_t *q, ngx_umlo_query_err_t *err)
{
    int          i;
    char        *v;
    int64_t      n;
    const char  *orders[] = { "asc", "desc" };
    const char  *formats[] = { "json", "csv" };

    for (i = NGX_UMLO_QP_SITE; i <= NGX_UMLO_QP_ROLE; i++) {
        if (q->val[i] == NULL) {
            continue;
        }

        if (i <= NGX_UMLO_QP_PRODUCT) {
            if (ngx_umlo_query_single(q, i, err) != 0) {
                return -1;
            }

        } else if (ngx_umlo_query_list(q, i, err) != 0) {
            return -1;
        }
    }

    if (ngx_umlo_query_bool(q, NGX_UMLO_QP_BILLABLE, err) != 0
        || ngx_umlo_query_bool(q, NGX_UMLO_QP_NEVER_ACTIVE, err) != 0)
    {
        return -1;
    }

    v = q->val[NGX_UMLO_QP_INACTIVE_DAYS];
    if (v != NULL) {
        if (ngx_umlo_query_number(v, NGX_UMLO_INACTIVE_MAX, &n) != 0) {
            ngx_umlo_query_fail(err, 400, "invalid_parameter",
                                "inactive_days", "inactive_days must be a "
                                "whole number of days from 0 to %d, not "
                                "\"%.40s\"", NGX_UMLO_INACTIVE_MAX, v);
            return -1;
        }

        q->has_inactive = 1;
        q->inactive_at = q->now - n * NGX_UMLO_DAY_MS;
    }

    v = q->val[NGX_UMLO_QP_Q];
    if (v != NULL && v[0] != '\0') {
        q->needle = ngx_umlo_snap_fold(v, strlen(v));
        if (q->needle == NULL) {
            ngx_umlo_query_nomem(err);
            return -1;
        }

        /* the folded text is "name\nemail": never match across them */
        if (strchr(q->needle, '\n') != NULL) {
            q->nothing = 1;
        }
    }

    for (i = NGX_UMLO_QP_CREATED_AFTER; i <= NGX_UMLO_QP_CREATED_BEFORE;
         i++)
    {
        v = q->val[i];
        if (v == NULL) {
            continue;
        }

        if (ngx_umlo_snap_time(v, strlen(v),
                               i == NGX_UMLO_QP_CREATED_AFTER ? &q->after
                                                              : &q->before)
            != 0)
        {
            ngx_umlo_query_fail(err, 400, "invalid_parameter",
                                ngx_umlo_query_names[i],
                                "%s must be an ISO 8601 date (2024-05-31) "
                                "or UTC date-time (2024-05-31T12:00:00Z), "
                                "not \"%.40s\"", ngx_umlo_query_names[i], v);
            return -1;
        }

        if (i == NGX_UMLO_QP_CREATED_AFTER) {
            q->has_after = 1;

        } else {
            q->has_before = 1;
        }
    }

    q->sort = ngx_umlo_query_word(q, NGX_UMLO_QP_SORT,
                                  ngx_umlo_query_sorts, 4,
                                  "name, email, last_active or created",
                                  err);
    if (q->sort < 0) {
        return -1;
    }

    i = ngx_umlo_query_word(q, NGX_UMLO_QP_ORDER, orders, 2, "asc or desc",
                            err);
    if (i < 0) {
        return -1;
    }

    q->desc = (i == 1);

    i = ngx_umlo_query_word(q, NGX_UMLO_QP_FORMAT, formats, 2,
                            "json or csv", err);
    if (i < 0) {
        return -1;
    }

    q->csv = (i == 1);

    v = q->val[NGX_UMLO_QP_LIMIT];
    if (v != NULL) {
        if (ngx_umlo_query_number(v, NGX_UMLO_QUERY_LIMIT_MAX, &n) != 0
            || n < 1)
        {
            ngx_umlo_query_fail(err, 400, "invalid_parameter", "limit",
                                "limit must be a whole number from 1 to %d,"
                                " not \"%.40s\"", NGX_UMLO_QUERY_LIMIT_MAX, v);
            return -1;
        }

        q->limit = (uint32_t) n;
    }

    /* the org-wide date is the user's own; these need the entries */
    q->need_access = (q->billable != -1 || q->roles != 0);

    return 0;
}


/* site and product: one value each, as they set the context */

static int
ngx_umlo_query_single(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err)
{
    char        *p, *v;
    const char  *name;

    name = ngx_umlo_query_names[param];
    p = q->val[param];

    if (strchr(p, ',') != NULL) {
        ngx_umlo_query_fail(err, 400, "invalid_parameter", name,
                            "%s takes one value, as it sets the context of "
                            "last_active", name);
        return -1;
    }

    v = ngx_umlo_query_item(&p);
    if (v == NULL || v[0] == '\0') {
        ngx_umlo_query_fail(err, 400, "invalid_parameter", name,
                            "%s needs a value: %s", name,
                            param == NGX_UMLO_QP_SITE
                            ? "a host name or cloud id"
                            : "a product key such as jira-software");
        return -1;
    }

    q->val[param] = v;

    if (param == NGX_UMLO_QP_SITE) {
        q->site = ngx_umlo_snap_site(q->snap, v);
        if (q->site == NGX_UMLO_SNAP_NONE) {
            q->nothing = 1;
        }
    }

    return 0;
}


/* the enumerated parameters: comma-separated values, any of them */

static int
ngx_umlo_query_list(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err)
{
    int          any;
    char        *p, *v;
    uint32_t     i, mask;
    const char  *name;

    name = ngx_umlo_query_names[param];
    p = q->val[param];

    if (param == NGX_UMLO_QP_GROUP) {
        q->groups = calloc(q->snap->ngroups ? q->snap->ngroups : 1, 1);
        if (q->groups == NULL) {
            ngx_umlo_query_nomem(err);
            return -1;
        }
    }

    any = 0;
    mask = 0;

    for ( ;; ) {
        v = ngx_umlo_query_item(&p);
        if (v == NULL) {
            break;
        }

        if (v[0] == '\0') {
            ngx_umlo_query_fail(err, 400, "invalid_parameter", name,
                                "%s has an empty value; give one or more "
                                "values separated by commas", name);
            return -1;
        }

        switch (param) {

        case NGX_UMLO_QP_GROUP:
            i = ngx_umlo_snap_group(q->snap, v);
            if (i != NGX_UMLO_SNAP_NONE) {
                q->groups[i] = 1;
                any = 1;
            }
            break;

        case NGX_UMLO_QP_ROLE:
            i = ngx_umlo_snap_role(q->snap, v);
            if (i < 32) {
                mask |= 1u << i;
            }
            break;

        default:
            i = ngx_umlo_snap_value(q->snap,
                                    ngx_umlo_query_fields[param
                                                   - NGX_UMLO_QP_STATUS],
                                    v);
            if (i < 32) {
                mask |= 1u << i;
            }
        }
    }

    if (param == NGX_UMLO_QP_GROUP) {
        q->nothing |= !any;

    } else if (param == NGX_UMLO_QP_ROLE) {
        q->roles = mask;
        q->nothing |= (mask == 0);

    } else {
        q->fmask[param - NGX_UMLO_QP_STATUS] = mask;
        q->nothing |= (mask == 0);
    }

    return 0;
}


/*
 * The next item of a comma-separated list, trimmed of spaces, split in
 * place; NULL at the end.  An empty value gives one empty item.
 */

static char *
ngx_umlo_query_item(char **p)
{
    char  *s, *e, *comma;

    s = *p;
    if (s == NULL) {
        return NULL;
    }

    comma = strchr(s, ',');

    if (comma) {
        *comma = '\0';
        *p = comma + 1;

    } else {
        *p = NULL;
    }

    while (*s == ' ') {
        s++;
    }

    e = s + strlen(s);
    while (e > s && e[-1] == ' ') {
        *--e = '\0';
    }

    return s;
}


static int
ngx_umlo_query_bool(ngx_umlo_query_t *q, int param,
    ngx_umlo_query_err_t *err)
{
    int          b;
    const char  *v;

    v = q->val[param];
    if (v == NULL) {
        return 0;
    }

    if (strcmp(v, "true") == 0) {
        b = 1;

    } else if (strcmp(v, "false") == 0) {
        b = 0;

    } else {
        ngx_umlo_query_fail(err, 400, "invalid_parameter",
                            ngx_umlo_query_names[param],
                            "%s must be true or false, not \"%.40s\"",
                            ngx_umlo_query_names[param], v);
        return -1;
    }

    if (param == NGX_UMLO_QP_BILLABLE) {
        q->billable = b;

    } else {
        q->never = b;
    }

    return 0;
}


/* digits only, at most max */

static int
ngx_umlo_query_number(const char *s, int64_t max, int64_t *n)
{
    *n = 0;

    if (*s == '\0') {
        return -1;
    }

    for ( ; *s; s++) {
        if (*s < '0' || *s > '9') {
            return -1;
        }

        *n = *n * 10 + (*s - '0');

        if (*n > max) {
            return -1;
        }
    }

    return 0;
}


/* the index of the value among words; 0 (the default) when absent */

static int
ngx_umlo_query_word(ngx_umlo_query_t *q, int param, const char **words,
    int n, const char *allowed, ngx_umlo_query_err_t *err)
{
    int          i;
    const char  *v;

    v = q->val[param];
    if (v == NULL) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (strcmp(v, words[i]) == 0) {
            return i;
        }
    }

    ngx_umlo_query_fail(err, 400, "invalid_parameter",
                        ngx_umlo_query_names[param],
                        "%s must be %s, not \"%.40s\"",
                        ngx_umlo_query_names[param], allowed, v);

    return -1;
}


/* the product instances of the context, and its name for "context" */

int
ngx_umlo_query_context(ngx_umlo_query_t *q)
{
    int                       any, n;
    size_t                    len;
    uint32_t                  i;
    const char               *site, *key;
    ngx_umlo_snap_t          *snap;
    ngx_umlo_snap_product_t  *p;

    snap = q->snap;
    site = q->val[NGX_UMLO_QP_SITE];
    key = q->val[NGX_UMLO_QP_PRODUCT];

    if (site != NULL && q->site != NGX_UMLO_SNAP_NONE) {
        site = snap->sites[q->site].host;
    }

    q->ctx = site ? (key ? NGX_UMLO_CTX_SITE_PRODUCT : NGX_UMLO_CTX_SITE)
                  : (key ? NGX_UMLO_CTX_PRODUCT : NGX_UMLO_CTX_ORG);

    len = sizeof("site:/product:") + (site ? strlen(site) : 0)
          + (key ? strlen(key) : 0);

    q->ctx_name = malloc(len);
    if (q->ctx_name == NULL) {
        return -1;
    }

    n = site ? (key ? snprintf(q->ctx_name, len, "site:%s/product:%s",
                               site, key)
                    : snprintf(q->ctx_name, len, "site:%s", site))
             : (key ? snprintf(q->ctx_name, len, "product:%s", key)
                    : snprintf(q->ctx_name, len, "org"));
    (void) n;

    if (key == NULL) {
        return 0;
    }

    q->pmatch = calloc(snap->nproducts ? snap->nproducts : 1, 1);
    if (q->pmatch == NULL) {
        return -1;
    }

    any = 0;

    for (i = 0; i < snap->nproducts; i++) {
        p = &snap->products[i];

        if (p->key != NULL && strcmp(p->key, key) == 0
            && (q->ctx == NGX_UMLO_CTX_PRODUCT || p->site == q->site))
        {
            q->pmatch[i] = 1;
            any = 1;
        }
    }

    q->nothing |= !any;

    return 0;
}
