/*
 * Copyright (C) ngx_umlo authors
 *
 * Turns Atlassian's API objects into the snapshot's documents: sites with
 * their products, groups with what they grant, and users with product
 * access per site, billable flags and last-active dates.  Pure jansson,
 * used from pool threads; tolerant of every optional or null field.
 */

#ifndef _NGX_UMLO_MODEL_H_INCLUDED_
#define _NGX_UMLO_MODEL_H_INCLUDED_


#include <jansson.h>


typedef struct {
    json_t  *products;   /* ARI -> product instance */
    json_t  *groups;     /* group id -> group with "grants" */
} ngx_umlo_model_t;


int ngx_umlo_model_init(ngx_umlo_model_t *m);
void ngx_umlo_model_free(ngx_umlo_model_t *m);

/* From a workspaces page item; -1 when it has no id. */
int ngx_umlo_model_workspace(ngx_umlo_model_t *m, json_t *ws);

/* From a groups/search item; -1 when it has no id. */
int ngx_umlo_model_group(ngx_umlo_model_t *m, json_t *group);

/* From a group's role-assignments item. */
int ngx_umlo_model_grant(ngx_umlo_model_t *m, const char *group_id,
    json_t *assignment);

/* A snapshot user from a users/search item; NULL without accountId. */
json_t *ngx_umlo_model_user(ngx_umlo_model_t *m, json_t *user);

/* Sites keyed by host, each with its product instances. */
json_t *ngx_umlo_model_sites(ngx_umlo_model_t *m);

/* The roles that make a seat billable (README: product roles). */
int ngx_umlo_model_billable(const char *role);


#endif /* _NGX_UMLO_MODEL_H_INCLUDED_ */
