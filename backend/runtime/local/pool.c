/*
 * pool.c - the local driver's warm pool (warm_pool N > 0, off by
 * default): a driver thread keeps N sandboxes with the default image and
 * limits started and ready in <state_dir>/pool/pool-<node>.<n>/; a
 * matching create claims one (pool_claim) instead of starting its own.
 * docs/runtime-local.md, "The warm pool", has the invariants.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <time.h>
#include <unistd.h>
#include "runtime/local/local.h"

static int pool_destroy(const runtime *rt, const char *name)
{
    char why[PICO_REASON_MAX] = "path too long";
    session_paths p;

    if (paths_in(rt->pool.dir, name, name, &p) < 0 ||
        destroy_paths(rt, &p, why, sizeof(why)) < 0) {
        log_error("warm pool: cannot remove %s: %s", name, why);
        return -1;
    }
    return 0;
}

/* Starts one pool sandbox: default image and limits, no user key. */
static int pool_start_one(runtime *rt, pool_entry *e, char *err, size_t errlen)
{
    session s;
    session_paths p;
    hostkey hk;
    int rc, running = 0;

    memset(&s, 0, sizeof(s));
    snprintf(s.image, sizeof(s.image), "%s", rt->pool.image);
    s.limits = rt->pool.limits;
    if (fmt_exact(e->name, sizeof(e->name), "%s%llx", rt->pool.prefix,
                  rt->pool.seq++) < 0 ||
        paths_in(rt->pool.dir, e->name, e->name, &p) < 0) {
        snprintf(err, errlen, "pool path too long");
        return -1;
    }
    if (start_sandbox(rt, &s, &p, e->name, &hk, err, errlen) < 0)
        return -1;
    rc = fmt_exact(e->host_key, sizeof(e->host_key), "%s", hk.public_key) |
         fmt_exact(e->host_key_fpr, sizeof(e->host_key_fpr), "%s",
                   hk.fingerprint);
    hostkey_wipe(&hk);
    if (rc < 0 || runc_state(rt, &p, &e->init, &running) != 1 || !running) {
        (void)pool_destroy(rt, e->name);
        snprintf(err, errlen, "pool sandbox %s: no host key or init", e->name);
        return -1;
    }
    return 0;
}

/* Waits up to ms on the pool's condition; called with the mutex held. */
static void pool_wait(warm_pool *wp, int ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    (void)pthread_cond_timedwait(&wp->cv, &wp->mu, &ts);
}

/* The refill thread: tops the pool up whenever a claim took one. Requests
 * never start pool sandboxes themselves, so none waits for a refill. */
static void *pool_thread(void *arg)
{
    runtime *rt = arg;
    warm_pool *wp = &rt->pool;
    char err[PICO_REASON_MAX];
    pool_entry e;

    pthread_mutex_lock(&wp->mu);
    while (!wp->stop) {
        int rc;
        if (wp->nready >= wp->size) {
            pthread_cond_wait(&wp->cv, &wp->mu);
            continue;
        }
        pthread_mutex_unlock(&wp->mu);
        rc = pool_start_one(rt, &e, err, sizeof(err));
        pthread_mutex_lock(&wp->mu);
        if (rc < 0) {
            log_error("warm pool: %s", err);
            pool_wait(wp, 1000); /* do not spin on a broken runtime */
        } else if (wp->stop) {
            pthread_mutex_unlock(&wp->mu);
            (void)pool_destroy(rt, e.name);
            pthread_mutex_lock(&wp->mu);
        } else {
            wp->ready[wp->nready++] = e;
            log_info("warm pool: %s ready", e.name);
        }
    }
    pthread_mutex_unlock(&wp->mu);
    return NULL;
}

/* 1 when s asks for what pool sandboxes are: the default image and
 * limits (the user's key is added at claim). */
static int pool_fits(const runtime *rt, const session *s)
{
    const session_limits *a = &s->limits, *b = &rt->pool.limits;

    return rt->pool.size > 0 && strcmp(s->image, rt->pool.image) == 0 &&
           a->memory_mb == b->memory_mb &&
           a->cpu_millicores == b->cpu_millicores && a->pids == b->pids &&
           a->disk_mb == b->disk_mb;
}

/* The oldest ready entry, if any; wakes the refill thread. */
static int pool_take(runtime *rt, pool_entry *e)
{
    warm_pool *wp = &rt->pool;
    int got = 0;

    pthread_mutex_lock(&wp->mu);
    if (wp->nready > 0) {
        *e = wp->ready[0];
        memmove(wp->ready, wp->ready + 1,
                (size_t)(wp->nready - 1) * sizeof(*e));
        wp->nready--;
        got = 1;
        pthread_cond_signal(&wp->cv);
    }
    pthread_mutex_unlock(&wp->mu);
    return got;
}

/*
 * Gives a claimed sandbox its session's hostname (a cold one gets it from
 * config.json): this thread joins the sandbox's UTS namespace through a
 * pidfd of its init (checked to be that sandbox's, by cgroup, as in
 * kill_init), sets the name and goes back. Only this thread's UTS
 * namespace changes, for microseconds; nothing in the backend reads it.
 */
static int set_hostname(pid_t init, const session_paths *p, const char *name)
{
    int self = open("/proc/thread-self/ns/uts", O_RDONLY | O_CLOEXEC);
    int fd = (int)pidfd_open(init, 0), rc = -1;

    if (self >= 0 && fd >= 0 && pid_in_sandbox(init, p) &&
        setns(fd, CLONE_NEWUTS) == 0) {
        rc = sethostname(name, strlen(name));
        if (setns(self, CLONE_NEWUTS) < 0)
            log_error("warm pool: cannot return to the backend's UTS "
                      "namespace: %s",
                      strerror(errno));
    }
    if (fd >= 0)
        close(fd);
    if (self >= 0)
        close(self);
    return rc;
}

/*
 * Serves s from the pool: renames a ready sandbox's folder to p->dir (its
 * "container" file goes along, so p's names are wrong from here and the
 * session is always addressed through paths_for), adds the user's key
 * (sshd reads AuthorizedKeysFile per connection, through the keys mount)
 * and sets its hostname.
 * 0 served, 1 not served (cold path), -1 failed with err.
 */
int pool_claim(runtime *rt, session *s, const session_paths *p, char *err,
               size_t errlen)
{
    session_paths from, to;
    pool_entry e;

    if (!pool_fits(rt, s) || !pool_take(rt, &e))
        return 1;
    if (paths_in(rt->pool.dir, e.name, e.name, &from) < 0 ||
        paths_in(rt->sessions_dir, s->id, e.name, &to) < 0 ||
        check_sock_len(p->sock, err, errlen) < 0) {
        (void)pool_destroy(rt, e.name);
        return 1;
    }
    /* NOREPLACE: an existing session folder is never taken over */
    if (renameat2(AT_FDCWD, from.dir, AT_FDCWD, to.dir, RENAME_NOREPLACE) < 0) {
        log_warn("warm pool: cannot claim %s: %s", e.name, strerror(errno));
        (void)pool_destroy(rt, e.name);
        return 1;
    }
    if ((s->sandbox_name[0] != '\0' &&
         set_hostname(e.init, &to, s->sandbox_name) < 0) ||
        (s->ssh_public_key[0] != '\0' &&
         write_authorized_keys(to.keys, s->ssh_public_key,
                               idmap_base(idmap_read_slot(to.dir))) < 0) ||
        fmt_exact(s->endpoint, sizeof(s->endpoint), "unix:%s", to.sock) < 0 ||
        fmt_exact(s->host_key, sizeof(s->host_key), "%s", e.host_key) < 0 ||
        fmt_exact(s->host_key_fpr, sizeof(s->host_key_fpr), "%s",
                  e.host_key_fpr) < 0) {
        char ignored[PICO_REASON_MAX];
        snprintf(err, errlen, "claiming a pool sandbox: %s", strerror(errno));
        (void)destroy_paths(rt, &to, ignored, sizeof(ignored));
        return -1;
    }
    log_info("session %s: sandbox %s from pool", s->id, e.name);
    return 0;
}

/* Removes this node's unclaimed pool sandboxes: a claimed one lives in
 * sessions/, so every pool/<prefix>* folder is unclaimed, left by this
 * node's last run (crash or not). Other nodes' entries are not touched. */
static void pool_cleanup(runtime *rt)
{
    struct dirent *e;
    DIR *d = opendir(rt->pool.dir);

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, rt->pool.prefix, strlen(rt->pool.prefix)) == 0 &&
            pool_name_valid(e->d_name) && pool_destroy(rt, e->d_name) == 0)
            log_info("warm pool: removed leftover %s", e->d_name);
    }
    closedir(d);
}

static int node_valid(const char *node)
{
    if (node[0] == '\0')
        return 0;
    for (const char *c = node; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return 0;
    return 1;
}

int pool_open(runtime *rt, const struct pico_config *cfg, char *err,
              size_t errlen)
{
    warm_pool *wp = &rt->pool;
    struct timespec ts;

    wp->size = cfg->warm_pool;
    if (wp->size <= 0)
        return 0;
    /* the node name is in the pool's names; '.' ends it, so one node's
     * prefix is never the start of another's */
    if (!node_valid(cfg->node_name) ||
        fmt_exact(wp->prefix, sizeof(wp->prefix), POOL_PREFIX "%s.",
                  cfg->node_name) < 0 ||
        fmt_exact(wp->dir, sizeof(wp->dir), "%s/pool", cfg->state_dir) < 0 ||
        fmt_exact(wp->image, sizeof(wp->image), "%s", cfg->default_image) < 0) {
        snprintf(err, errlen,
                 "warm_pool: node_name must be 1-63 of [A-Za-z0-9_-]");
        return -1;
    }
    if (ensure_dir(wp->dir, 0700) < 0) {
        snprintf(err, errlen, "warm_pool: %s: %s", wp->dir, strerror(errno));
        return -1;
    }
    wp->limits =
        (session_limits){cfg->memory_mb_default, cfg->cpu_millicores_default,
                         cfg->pids_default, cfg->disk_mb_default};
    clock_gettime(CLOCK_REALTIME, &ts);
    /* names stay unique across restarts: claimed ones outlive this run */
    wp->seq = (unsigned long long)ts.tv_sec * 1000000 +
              (unsigned long long)ts.tv_nsec / 1000;
    wp->ready = calloc((size_t)wp->size, sizeof(*wp->ready));
    if (wp->ready == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pool_cleanup(rt);
    pthread_mutex_init(&wp->mu, NULL);
    pthread_cond_init(&wp->cv, NULL);
    if (pthread_create(&wp->thread, NULL, pool_thread, rt) != 0) {
        snprintf(err, errlen, "warm_pool: cannot start its thread");
        return -1;
    }
    wp->started = 1;
    return 0;
}

/* Stops the refill thread and removes every unclaimed sandbox: a pool
 * outlives neither a clean shutdown nor a drain. */
void pool_close(runtime *rt)
{
    warm_pool *wp = &rt->pool;

    if (wp->started) {
        pthread_mutex_lock(&wp->mu);
        wp->stop = 1;
        pthread_cond_signal(&wp->cv);
        pthread_mutex_unlock(&wp->mu);
        pthread_join(wp->thread, NULL);
        for (int i = 0; i < wp->nready; i++)
            (void)pool_destroy(rt, wp->ready[i].name);
        wp->nready = 0;
        log_info("warm pool: stopped, unclaimed sandboxes removed");
    }
    free(wp->ready);
    wp->ready = NULL;
}
