/*
 * metrics.c - the backend's metrics: counters and fixed-bucket histograms
 * of atomics fed by lifecycle (creates), the API (refused creates), the
 * runtime wrapper (runtime_timed.c) and the reaper; rendered as
 * Prometheus text format 0.0.4 with what Redis holds (sessions by status)
 * and what the store counted (Redis errors).
 *
 * A histogram keeps one count per bucket (not cumulative) and the sum in
 * microseconds; rendering adds the buckets up, and _count is that total,
 * so _count and the +Inf bucket always agree even while observing.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "core/util.h"

#define BUCKETS_MAX 16

typedef struct {
    const double *le; /* upper bounds, seconds, ascending */
    int n;
    atomic_llong count[BUCKETS_MAX + 1]; /* the last: above every bound */
    atomic_llong sum_us;
} histogram;

static const double create_le[] = {0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120};
static const double op_le[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25,
                               0.5,   1,     2.5,  5,    10,  30};
static const double lag_le[] = {0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60};

#define NLE(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* error codes of POST /v1/sessions (docs/api.md) kept as labels */
static const char *const fail_reasons[] = {"invalid_request",
                                           "unknown_image",
                                           "body_too_large",
                                           "unsupported_media_type",
                                           "too_many_sessions",
                                           "redis_unavailable",
                                           "sandbox_failed",
                                           "conflict",
                                           "idempotency",
                                           "internal",
                                           "other"};
#define NFAIL NLE(fail_reasons)

static const char *const op_names[METRIC_OP_N] = {
    "image_exists", "create", "destroy", "alive", "running",
    "list",         "health", "pause",   "resume"};

static const char *const statuses[] = {"pending", "running", "paused",
                                       "terminating", "failed"};
#define NSTATUS NLE(statuses)

static atomic_llong creates;
static atomic_llong failures[NFAIL];
static histogram create_h = {create_le, NLE(create_le), {0}, 0};
static histogram lag_h = {lag_le, NLE(lag_le), {0}, 0};
static histogram op_h[METRIC_OP_N] = {
    {op_le, NLE(op_le), {0}, 0}, {op_le, NLE(op_le), {0}, 0},
    {op_le, NLE(op_le), {0}, 0}, {op_le, NLE(op_le), {0}, 0},
    {op_le, NLE(op_le), {0}, 0}, {op_le, NLE(op_le), {0}, 0},
    {op_le, NLE(op_le), {0}, 0}, {op_le, NLE(op_le), {0}, 0},
    {op_le, NLE(op_le), {0}, 0}};

static void observe(histogram *h, long long us)
{
    int i = 0;

    if (us < 0)
        us = 0;
    while (i < h->n && (double)us > h->le[i] * 1e6)
        i++;
    atomic_fetch_add(&h->count[i], 1);
    atomic_fetch_add(&h->sum_us, us);
}

void metrics_create_done(long long ms)
{
    atomic_fetch_add(&creates, 1);
    observe(&create_h, ms * 1000);
}

void metrics_create_failed(const char *code)
{
    int i;

    /* the Idempotency-Key codes are many: one label for them all */
    if (code && !strncmp(code, "idempotency", 11))
        code = "idempotency";
    for (i = 0; i < NFAIL - 1; i++)
        if (code && !strcmp(code, fail_reasons[i]))
            break;
    atomic_fetch_add(&failures[i], 1);
}

void metrics_runtime_op(metric_op op, long long us)
{
    if (op >= 0 && op < METRIC_OP_N)
        observe(&op_h[op], us);
}

void metrics_reaper_lag(long long ms)
{
    observe(&lag_h, ms * 1000);
}

/* a growing text buffer; on out of memory it stays failed */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} text;

static void put(text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        if (t->oom)
            return;
        va_start(ap, fmt);
        n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        {
            size_t cap = t->cap * 2 + (size_t)n;
            char *q = realloc(t->p, cap);
            if (q == NULL) {
                t->oom = 1;
                return;
            }
            t->p = q;
            t->cap = cap;
        }
    }
}

static void header(text *t, const char *name, const char *type,
                   const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* label: "" or `op="create",` (ours: no character needs escaping) */
static void put_histogram(text *t, const char *name, const char *label,
                          histogram *h)
{
    long long cum = 0;
    int i;

    for (i = 0; i <= h->n; i++) {
        cum += atomic_load(&h->count[i]);
        if (i < h->n)
            put(t, "%s_bucket{%sle=\"%g\"} %lld\n", name, label, h->le[i], cum);
        else
            put(t, "%s_bucket{%sle=\"+Inf\"} %lld\n", name, label, cum);
    }
    /* the label without its trailing comma, in braces, or nothing */
    if (label[0])
        put(t, "%s_sum{%.*s} %.6f\n%s_count{%.*s} %lld\n", name,
            (int)strlen(label) - 1, label,
            (double)atomic_load(&h->sum_us) / 1e6, name, (int)strlen(label) - 1,
            label, cum);
    else
        put(t, "%s_sum %.6f\n%s_count %lld\n", name,
            (double)atomic_load(&h->sum_us) / 1e6, name, cum);
}

static void put_sessions(text *t, pico_app *app)
{
    long long counts[NSTATUS];
    int up =
        app->st && store_count_status(app->st, statuses, counts, NSTATUS) == 0;
    int i;

    header(t, "pico_redis_up", "gauge",
           "1 when this scrape could read the sessions from Redis.");
    put(t, "pico_redis_up %d\n", up);
    if (!up)
        return;
    header(t, "pico_sessions", "gauge", "Live sessions by status.");
    for (i = 0; i < NSTATUS; i++)
        put(t, "pico_sessions{status=\"%s\"} %lld\n", statuses[i], counts[i]);
}

char *metrics_render(pico_app *app, size_t *len)
{
    text t = {malloc(8192), 0, 8192, 0};
    char label[32];
    int i;

    if (t.p == NULL)
        return NULL;
    put_sessions(&t, app);
    header(&t, "pico_session_creates_total", "counter",
           "Sessions created (POST /v1/sessions answered 201).");
    put(&t, "pico_session_creates_total %lld\n", atomic_load(&creates));
    header(&t, "pico_session_create_failures_total", "counter",
           "POST /v1/sessions refused or failed, by error code.");
    for (i = 0; i < NFAIL; i++)
        put(&t, "pico_session_create_failures_total{reason=\"%s\"} %lld\n",
            fail_reasons[i], atomic_load(&failures[i]));
    header(&t, "pico_session_create_duration_seconds", "histogram",
           "Time from the create request to the session running.");
    put_histogram(&t, "pico_session_create_duration_seconds", "", &create_h);
    header(&t, "pico_runtime_operation_duration_seconds", "histogram",
           "Duration of the runtime driver's operations, by operation.");
    for (i = 0; i < METRIC_OP_N; i++) {
        snprintf(label, sizeof(label), "op=\"%s\",", op_names[i]);
        put_histogram(&t, "pico_runtime_operation_duration_seconds", label,
                      &op_h[i]);
    }
    header(&t, "pico_reaper_lag_seconds", "histogram",
           "How late past its deadline the reaper claimed an expired session.");
    put_histogram(&t, "pico_reaper_lag_seconds", "", &lag_h);
    header(&t, "pico_redis_errors_total", "counter",
           "Redis commands of this backend that failed, by kind.");
    put(&t, "pico_redis_errors_total{kind=\"connection\"} %lld\n",
        store_errors(STORE_ERR_CONNECTION));
    put(&t, "pico_redis_errors_total{kind=\"reply\"} %lld\n",
        store_errors(STORE_ERR_REPLY));
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    *len = t.len;
    return t.p;
}
