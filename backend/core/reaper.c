/*
 * reaper.c - expiry. Every reaper_interval_ms the thread claims the
 * sessions whose score in pico:expiry is due with one Lua script (see
 * store.c and docs/redis.md): the claim moves them to pico:reaping with a
 * lease, so of several backends exactly one deletes each session, and a
 * session whose deleting backend died is taken over when its lease ends.
 * Keyspace notifications are not used: they are lost while no backend
 * listens, the sorted set is not.
 *
 * The same thread runs the liveness check (liveness.c) about once a
 * second: a sandbox that died under a running session turns it failed;
 * and the idle stop (idle.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "core/events.h"
#include "core/lifecycle.h"
#include "core/liveness.h"
#include "core/metrics.h"
#include "core/pause.h"
#include "core/reaper.h"
#include "core/util.h"

#define REAP_BATCH 64
#define REAP_WORKERS 8

struct reaper {
    pico_app *app;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
};

/* One batch of claimed ids, destroyed by a few threads at once so a burst
 * of expiries still finishes within the 2 s promise. */
typedef struct {
    pico_app *app;
    char (*ids)[PICO_ID_LEN + 1];
    int n;
    atomic_int next;
    atomic_int done;
} reap_batch;

static void *reap_worker(void *arg)
{
    reap_batch *b = arg;
    int i;

    while ((i = atomic_fetch_add(&b->next, 1)) < b->n) {
        if (lifecycle_destroy_claimed(b->app, b->ids[i]) == 0) {
            log_info("reaped %s", b->ids[i]);
            atomic_fetch_add(&b->done, 1);
        }
    }
    return NULL;
}

int reaper_run_once(pico_app *app)
{
    char ids[REAP_BATCH][PICO_ID_LEN + 1];
    pthread_t workers[REAP_WORKERS];
    reap_batch b;
    long long now = now_ms(), deadline = 0;
    int n, i, started = 0;

    /* the lag: how late the most overdue session is claimed */
    if (store_oldest_due(app->st, now, &deadline) != 1)
        deadline = 0;
    n = store_claim_due(app->st, now, lifecycle_lease_ms(app->ops),
                        app->cfg.node_name, ids, REAP_BATCH);
    if (n <= 0)
        return 0;
    if (deadline > 0)
        metrics_reaper_lag(now - deadline);
    b.app = app;
    b.ids = ids;
    b.n = n;
    atomic_init(&b.next, 0);
    atomic_init(&b.done, 0);
    for (i = 1; i < n && i < REAP_WORKERS; i++)
        if (pthread_create(&workers[started], NULL, reap_worker, &b) == 0)
            started++;
    reap_worker(&b); /* this thread works too, so one failure is no stall */
    for (i = 0; i < started; i++)
        pthread_join(workers[i], NULL);
    return atomic_load(&b.done);
}

static void *reaper_main(void *arg)
{
    reaper *r = arg;
    struct timespec ts;
    long long checked = 0;

    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        pthread_mutex_unlock(&r->lock);
        reaper_run_once(r->app);
        if (now_ms() - checked >= PICO_LIVENESS_INTERVAL_MS) {
            liveness_check(r->app);
            idle_check(r->app); /* idle.c: idle_timeout's stop */
            /* about once a second: "expiring" 60 s before each deadline */
            store_event_warn_expiring(r->app->st, now_ms(),
                                      PICO_EXPIRING_WARN_MS);
            checked = now_ms();
        }
        pthread_mutex_lock(&r->lock);
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(r->app->cfg.reaper_interval_ms % 1000) * 1000000;
        ts.tv_sec +=
            r->app->cfg.reaper_interval_ms / 1000 + ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        while (!r->stop &&
               pthread_cond_timedwait(&r->cond, &r->lock, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

reaper *reaper_start(pico_app *app)
{
    reaper *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->app = app;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    if (pthread_create(&r->thread, NULL, reaper_main, r) != 0) {
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->cond);
        free(r);
        return NULL;
    }
    return r;
}

void reaper_stop(reaper *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = 1;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}
