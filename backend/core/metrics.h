/*
 * metrics.h - the backend's counters and histograms, served as
 * Prometheus text by GET /metrics (api/metrics.c, docs/api.md "Metrics").
 *
 * Process-wide like the process they describe: fixed arrays of atomics,
 * so observing is a few atomic adds, from any thread, with no lock and no
 * allocation. Labels come from fixed tables here, never from a request.
 */
#ifndef PICO_CORE_METRICS_H
#define PICO_CORE_METRICS_H

#include <stddef.h>

#include "app.h"

/* runtime_ops calls, timed by the wrapper of runtime_timed() */
typedef enum {
    METRIC_OP_IMAGE_EXISTS = 0,
    METRIC_OP_CREATE,
    METRIC_OP_DESTROY,
    METRIC_OP_ALIVE,
    METRIC_OP_RUNNING,
    METRIC_OP_LIST,
    METRIC_OP_HEALTH,
    METRIC_OP_PAUSE,
    METRIC_OP_RESUME,
    METRIC_OP_N
} metric_op;

/* a successful create, ms from the request to running */
void metrics_create_done(long long ms);

/* a refused or failed POST /v1/sessions, by its error code (mapped to a
 * fixed set of labels; a code not in it counts as "other") */
void metrics_create_failed(const char *code);

void metrics_runtime_op(metric_op op, long long us);

/* a session claimed by the reaper ms after its deadline */
void metrics_reaper_lag(long long ms);

/* the runtime_ops that time every call of inner's (one per process) */
const runtime_ops *runtime_timed(const runtime_ops *inner);

/* The whole text (text format 0.0.4), malloc'd; NULL when out of memory.
 * Reads the sessions by status from Redis: a Redis error leaves them out
 * and sets pico_redis_up 0. */
char *metrics_render(pico_app *app, size_t *len);

#endif
