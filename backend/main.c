/*
 * main.c - pico-backend's entry point.
 *
 *   pico-backend --config FILE                  serve the REST API
 *   pico-backend --config FILE token create P   print a new token for P
 *   pico-backend --config FILE token list       token ids and principals
 *   pico-backend --config FILE token revoke ID  delete a token
 *   pico-backend --config FILE drain           delete every session
 *
 * Serving: open the runtime and Redis, reconcile them, start the reaper
 * and the HTTP server, then wait for SIGTERM/SIGINT (blocked from the
 * first line, so one that comes while starting stops it cleanly too). Stopping
 * never deletes sessions: a restarted backend (or another one) carries on.
 *
 * The folders under backend/ are its layers: api/ (HTTP, tokens), core/
 * (sessions, lifecycle, reaper, reconcile, config), store/ (Redis) and
 * runtime/ (the driver interface, runtime.h, and the drivers in
 * runtime/local/ and runtime/kubernetes/). Everything outside runtime/
 * sees a driver only through runtime.h; this file picks one by name.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "core/metrics.h"
#include "api/http_api.h"
#include "api/tokens.h"
#include "core/lifecycle.h"
#include "core/reaper.h"
#include "core/reconcile.h"
#include "core/util.h"
/* The only file that names a driver: runtime = local | kubernetes. */
#include "runtime/kubernetes/runtime_k8s.h"
#include "runtime/local/runtime_local.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: pico-backend --config FILE [token create PRINCIPAL | "
            "token list | token revoke TOKEN-ID | drain]\n");
}

static const runtime_ops *pick_runtime(const char *name)
{
    if (!strcmp(name, runtime_local_ops.name))
        return &runtime_local_ops;
    if (!strcmp(name, runtime_k8s_ops.name))
        return &runtime_k8s_ops;
    return NULL;
}

static int open_store(pico_app *app)
{
    char err[256];

    app->st = store_open(app->cfg.redis, err, sizeof(err));
    if (app->st == NULL || store_ping(app->st, err, sizeof(err)) < 0) {
        log_error("redis %s: %s", app->cfg.redis, err);
        return -1;
    }
    return 0;
}

static int open_runtime(pico_app *app)
{
    char err[512] = "";

    /* every driver call timed for GET /metrics (core/runtime_timed.c) */
    app->ops = runtime_timed(pick_runtime(app->cfg.runtime));
    if (app->ops == NULL || app->ops->open == NULL) {
        log_error("runtime %s: no such driver", app->cfg.runtime);
        return -1;
    }
    app->rt = app->ops->open(&app->cfg, err, sizeof(err));
    if (app->rt == NULL) {
        log_error("runtime %s: %s", app->cfg.runtime,
                  err[0] ? err : "cannot start");
        return -1;
    }
    return 0;
}

static void close_app(pico_app *app)
{
    if (app->rt && app->ops->close)
        app->ops->close(app->rt);
    store_close(app->st);
}

static void print_token(const char *id, const char *principal,
                        long long created_at, void *arg)
{
    char when[32];

    format_rfc3339(created_at, when, sizeof(when));
    printf("%s %s %s\n", id, principal, when);
}

static int cmd_token(pico_app *app, int argc, char **argv)
{
    char token[PICO_TOKEN_LEN + 1];

    if (argc == 2 && !strcmp(argv[0], "create")) {
        if (!token_principal_valid(argv[1])) {
            fprintf(stderr, "principal must match [A-Za-z0-9_.-]{1,64}\n");
            return 2;
        }
        if (token_create(app->st, argv[1], token) < 0) {
            fprintf(stderr, "cannot store the token\n");
            return 1;
        }
        printf("%s\n", token);
        return 0;
    }
    if (argc == 1 && !strcmp(argv[0], "list"))
        return store_token_list(app->st, print_token, NULL) < 0 ? 1 : 0;
    if (argc == 2 && !strcmp(argv[0], "revoke")) {
        char id[PICO_TOKEN_ID_LEN + 1];
        int rc;
        /* Accept the id or the whole token. */
        if (token_parse(argv[1], id) < 0)
            copy_str(id, sizeof(id), argv[1]);
        if (strlen(argv[1]) != PICO_TOKEN_LEN &&
            (strlen(argv[1]) != PICO_TOKEN_ID_LEN ||
             strspn(argv[1], "0123456789abcdef") != PICO_TOKEN_ID_LEN)) {
            fprintf(stderr, "token id must be 16 lowercase hex characters\n");
            return 2;
        }
        rc = store_token_delete(app->st, id);
        if (rc < 0) {
            fprintf(stderr, "redis failed\n");
            return 1;
        }
        if (rc == 0) {
            fprintf(stderr, "no token %s\n", id);
            return 1;
        }
        printf("revoked %s\n", id);
        return 0;
    }
    usage();
    return 2;
}

/* SIGTERM and SIGINT, blocked in main before any thread starts (the
 * warm pool's starts in open_runtime) so that every thread inherits the
 * mask: serving takes them with sigwait() once it can stop cleanly, even
 * one that came during reconcile; drain and token never take them, so a
 * second Ctrl-C cannot cut a drain short. Children get a clean mask
 * (subprocess.c). */
static void block_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

static int serve(pico_app *app, sigset_t *set)
{
    char err[512];
    http_api *h;
    reaper *r;
    int sig = 0;

    /* Before reconcile: a sandbox lost after reconcile looked is then
     * seen by the watch, one lost before by reconcile. */
    if (app->ops->watch != NULL &&
        app->ops->watch(app->rt, lifecycle_sandbox_event, app, err,
                        sizeof(err)) < 0) {
        log_error("runtime %s: %s", app->ops->name, err);
        return 1;
    }
    if (reconcile(app) < 0)
        log_warn("reconcile incomplete; the reaper and the next start retry");
    r = reaper_start(app);
    if (r == NULL) {
        log_error("cannot start the reaper thread");
        return 1;
    }
    h = http_api_start(app, err, sizeof(err));
    if (h == NULL) {
        log_error("%s", err);
        reaper_stop(r);
        return 1;
    }
    log_info("pico-backend ready (runtime %s, node %s, auth %s)",
             app->ops->name, app->cfg.node_name, app->cfg.auth ? "on" : "off");
    sigwait(set, &sig);
    log_info("signal %d: stopping (sessions are kept)", sig);
    http_api_stop(h);
    reaper_stop(r);
    log_info("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    static pico_app app;
    char err[1024];
    const char *conf = NULL;
    sigset_t stop;
    int i = 1, rc;

    block_stop_signals(&stop);
    (void)signal(SIGPIPE, SIG_IGN);
    (void)setvbuf(stderr, NULL, _IOLBF, 0);
    if (argc >= 3 && !strcmp(argv[1], "--config")) {
        conf = argv[2];
        i = 3;
    }
    if (conf == NULL) {
        usage();
        return 2;
    }
    config_defaults(&app.cfg);
    if (config_load(&app.cfg, conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "pico-backend: %s\n", err);
        return 1;
    }
    if (i < argc && !strcmp(argv[i], "token")) {
        if (open_store(&app) < 0)
            return 1;
        rc = cmd_token(&app, argc - i - 1, argv + i + 1);
        store_close(app.st);
        return rc;
    }
    if (i < argc && strcmp(argv[i], "drain") != 0) {
        usage();
        return 2;
    }
    if (i < argc) {
        /* Drain removes the sandboxes even when Redis is gone: it is what
         * stops a stack, and a stack that lost Redis must still stop. */
        if (open_runtime(&app) < 0) {
            close_app(&app);
            return 1;
        }
        if (open_store(&app) < 0) {
            store_close(app.st);
            app.st = NULL;
        }
        rc = lifecycle_drain(&app);
        log_info("drain: %d sessions and sandboxes removed", rc);
        close_app(&app);
        return 0;
    }
    if (open_runtime(&app) < 0 || open_store(&app) < 0) {
        close_app(&app);
        return 1;
    }
    rc = serve(&app, &stop);
    close_app(&app);
    return rc;
}
