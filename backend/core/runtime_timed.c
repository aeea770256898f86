/*
 * runtime_timed.c - a runtime_ops that times every call of the driver's
 * and forwards it: main.c puts it in front of the driver it picked, so
 * the core's calls are measured (pico_runtime_operation_duration_seconds)
 * without a timer at each call site. One driver per process: the driver's
 * table is kept in a static.
 */
#include <time.h>

#include "core/metrics.h"

static const runtime_ops *inner;
static runtime_ops timed;

static long long mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int t_image_exists(runtime *rt, const char *image)
{
    long long t0 = mono_us();
    int rc = inner->image_exists(rt, image);

    metrics_runtime_op(METRIC_OP_IMAGE_EXISTS, mono_us() - t0);
    return rc;
}

static int t_create(runtime *rt, session *s, char *err, size_t errlen)
{
    long long t0 = mono_us();
    int rc = inner->create(rt, s, err, errlen);

    metrics_runtime_op(METRIC_OP_CREATE, mono_us() - t0);
    return rc;
}

static int t_destroy(runtime *rt, const char *id, char *err, size_t errlen)
{
    long long t0 = mono_us();
    int rc = inner->destroy(rt, id, err, errlen);

    metrics_runtime_op(METRIC_OP_DESTROY, mono_us() - t0);
    return rc;
}

static int t_pause(runtime *rt, const char *id, char *err, size_t errlen)
{
    long long t0 = mono_us();
    int rc = inner->pause(rt, id, err, errlen);

    metrics_runtime_op(METRIC_OP_PAUSE, mono_us() - t0);
    return rc;
}

static int t_resume(runtime *rt, const char *id, char *err, size_t errlen)
{
    long long t0 = mono_us();
    int rc = inner->resume(rt, id, err, errlen);

    metrics_runtime_op(METRIC_OP_RESUME, mono_us() - t0);
    return rc;
}

static int t_alive(runtime *rt, const char *id)
{
    long long t0 = mono_us();
    int rc = inner->alive(rt, id);

    metrics_runtime_op(METRIC_OP_ALIVE, mono_us() - t0);
    return rc;
}

static int t_running(runtime *rt, const char *id)
{
    long long t0 = mono_us();
    int rc = inner->running(rt, id);

    metrics_runtime_op(METRIC_OP_RUNNING, mono_us() - t0);
    return rc;
}

static int t_list(runtime *rt, runtime_list_cb cb, void *arg, char *err,
                  size_t errlen)
{
    long long t0 = mono_us();
    int rc = inner->list(rt, cb, arg, err, errlen);

    metrics_runtime_op(METRIC_OP_LIST, mono_us() - t0);
    return rc;
}

static int t_health(runtime *rt, char *err, size_t errlen)
{
    long long t0 = mono_us();
    int rc = inner->health(rt, err, errlen);

    metrics_runtime_op(METRIC_OP_HEALTH, mono_us() - t0);
    return rc;
}

const runtime_ops *runtime_timed(const runtime_ops *ops)
{
    if (ops == NULL)
        return NULL;
    inner = ops;
    timed = *ops; /* name, open, close, destroy_max_ms, watch as they are */
    timed.image_exists = ops->image_exists ? t_image_exists : NULL;
    timed.create = ops->create ? t_create : NULL;
    timed.destroy = ops->destroy ? t_destroy : NULL;
    timed.pause = ops->pause ? t_pause : NULL;
    timed.resume = ops->resume ? t_resume : NULL;
    timed.alive = ops->alive ? t_alive : NULL;
    timed.running = ops->running ? t_running : NULL;
    timed.list = ops->list ? t_list : NULL;
    timed.health = ops->health ? t_health : NULL;
    return &timed;
}
