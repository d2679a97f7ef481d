/*
 * Copyright (C) ngx_umlo authors
 *
 * The Redis key schema, written down once and used by the event-loop side
 * (ngx_umlo_redis.c, handlers) and the thread side (store, sync) alike.
 *
 * Every key of an org carries the hash tag {ORG} so that MULTI/EXEC and
 * scripts touching several keys also work on Redis Cluster.  ORG is
 * checked at configuration time to hold only [A-Za-z0-9._-], so it is safe
 * inside a hiredis format string.  The layout is described in
 * docs/ARCHITECTURE.md.
 */

#ifndef _NGX_UMLO_KEYS_H_INCLUDED_
#define _NGX_UMLO_KEYS_H_INCLUDED_


/* string: random token of the sync holding the org's lock, PX lease */
#define NGX_UMLO_KEY_LOCK        "umlo:{%s}:lock"

/* string: JSON document of the running or last sync */
#define NGX_UMLO_KEY_STATUS      "umlo:{%s}:status"

/* string: id of a sync that a DELETE asked to stop */
#define NGX_UMLO_KEY_CANCEL      "umlo:{%s}:cancel"

/*
 * hash: the current snapshot: "gen", "json" (its summary) and "rev",
 * bumped by every selective sync and reset by every full one
 */
#define NGX_UMLO_KEY_CURRENT     "umlo:{%s}:current"

/* string: local date (YYYY-MM-DD) of the last daily sync slot handled */
#define NGX_UMLO_KEY_DAILY       "umlo:{%s}:daily"

/* string: when the next activity refresh is due (Redis clock, ms) */
#define NGX_UMLO_KEY_ACTIVITY_NEXT  "umlo:{%s}:activity:next"

/* string: activity lookups' pacing, the next free slot (Redis clock, ms) */
#define NGX_UMLO_KEY_ACTIVITY_RATE  "umlo:{%s}:activity:rate"

/* list: JSON summaries of finished syncs, newest first */
#define NGX_UMLO_KEY_HISTORY     "umlo:{%s}:history"

/*
 * hash: counters of finished syncs and webhook deliveries, the same for
 * every instance (the metrics location reads it); fields are described
 * in ngx_umlo_store_stats()
 */
#define NGX_UMLO_KEY_STATS       "umlo:{%s}:stats"

/* list: JSON outcomes of webhook deliveries, newest first, trimmed */
#define NGX_UMLO_KEY_DELIVERIES  "umlo:{%s}:deliveries"

/* string: the day (UTC, YYYY-MM-DD) whose key.expiring webhook is sent */
#define NGX_UMLO_KEY_KEYWARN     "umlo:{%s}:keywarn:%s"

/* counter: source of generation numbers */
#define NGX_UMLO_KEY_GENSEQ      "umlo:{%s}:genseq"

/* zset: generations no longer current, scored by the time to drop them */
#define NGX_UMLO_KEY_RETIRED     "umlo:{%s}:retired"

/* zset: generations being written; any left here at a sync's start died */
#define NGX_UMLO_KEY_BUILDING    "umlo:{%s}:building"

/* prefix of generation keys, completed by "GEN:users" and so on */
#define NGX_UMLO_KEY_GEN_PREFIX  "umlo:{%s}:g:"

/*
 * One snapshot generation; GEN is a number (long long).  A generation is
 * written completely before "current" points at it, and is never written
 * again except by a selective sync, which replaces whole users atomically.
 * users, sites and groups are hashes of id -> JSON document.
 */
#define NGX_UMLO_KEY_GEN_USERS   "umlo:{%s}:g:%lld:users"
#define NGX_UMLO_KEY_GEN_SITES   "umlo:{%s}:g:%lld:sites"
#define NGX_UMLO_KEY_GEN_GROUPS  "umlo:{%s}:g:%lld:groups"
#define NGX_UMLO_KEY_GEN_META    "umlo:{%s}:g:%lld:meta"

/* list: users pages that arrived before the groups they refer to */
#define NGX_UMLO_KEY_GEN_STAGE   "umlo:{%s}:g:%lld:stage"

/* string: the API client's rate-limit estimate of one class, see pace.h */
#define NGX_UMLO_KEY_PACE        "umlo:{%s}:pace:%s"

/* string: a bulk job's document (plan, progress, per-user results) */
#define NGX_UMLO_KEY_BULK_JOB    "umlo:{%s}:bulk:job:%s"

/* string: a dry run's plan, kept for its token's lifetime */
#define NGX_UMLO_KEY_BULK_TOKEN  "umlo:{%s}:bulk:token:%s"

/* list: audit entries of bulk jobs, newest first */
#define NGX_UMLO_KEY_BULK_AUDIT  "umlo:{%s}:bulk:audit"

/* hash: task id -> task document (saved filter, action, schedule) */
#define NGX_UMLO_KEY_TASKS       "umlo:{%s}:tasks"

/* zset: task ids scored by their next run (ms), pushed on when claimed */
#define NGX_UMLO_KEY_TASKS_DUE   "umlo:{%s}:tasks:due"

/* hash: a task's users in their notice period: account id -> first match */
#define NGX_UMLO_KEY_TASK_NOTICE "umlo:{%s}:tasks:notice:%s"


#endif /* _NGX_UMLO_KEYS_H_INCLUDED_ */
