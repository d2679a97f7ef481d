/*
 * Copyright (C) ngx_umlo authors
 *
 * Timers of a worker: the daily full sync (umlo_sync_daily) and the
 * activity refresh cadence (umlo_activity_refresh).  Redis decides which
 * instance runs what, so that each run happens once across all of them.
 */

#ifndef _NGX_UMLO_TIMER_H_INCLUDED_
#define _NGX_UMLO_TIMER_H_INCLUDED_


#include "ngx_umlo_module.h"


/* From init_process: arms the timers in worker 0 of each instance. */
ngx_int_t ngx_umlo_timer_init(ngx_cycle_t *cycle,
    ngx_umlo_main_conf_t *umcf);


#endif /* _NGX_UMLO_TIMER_H_INCLUDED_ */
