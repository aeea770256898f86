/*
 * The session store for ngx_pico_module: two hiredis async contexts per
 * worker, driven by nginx's own event loop (ngx_pico_redis_event.c; no
 * thread, no blocking call but the bounded flush of an exiting worker).
 *
 *   cmd  session lookups (ngx_pico_redis_lookup.c) and tunnel accounting
 *        (ngx_pico_account.c)
 *   sub  SUBSCRIBE pico:events; every message goes to the worker's event
 *        handler, parsed (deleted, changed, revoked); after every
 *        (re)subscribe the subscribed handler runs, since pub/sub loses
 *        messages while disconnected, and the unsubscribed handler when
 *        the subscription is lost
 *
 * Nothing here knows a tunnel or a request.  The lookups are
 * ngx_pico_redis_lookup.c, which gets the command connection from
 * ngx_pico_redis_command() and drops a hung one with ngx_pico_redis_drop();
 * the pico_redis address is resolved by ngx_pico_redis_conf.c.  A context
 * that fails is freed by hiredis; the event adapter says so
 * (ngx_pico_redis_closed()) and the worker reconnects with a backoff.  The
 * key schema is docs/redis.md.
 */

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_pico_module.h"

#include <poll.h>

#define NGX_PICO_EXIT_POLLS 4
#define NGX_PICO_EXIT_POLL_MS 50
#define NGX_PICO_BACKOFF_MIN 100
#define NGX_PICO_BACKOFF_MAX 2000

typedef struct {
    ngx_pico_worker_t *worker;
    u_char             id[PICO_ID_LEN];
} ngx_pico_recheck_t;

static redisAsyncContext *ngx_pico_redis_connect(ngx_pico_worker_t *w);
static void ngx_pico_redis_closed(redisAsyncContext *ac, void *data);
static void ngx_pico_redis_schedule(ngx_pico_worker_t *w);
static void ngx_pico_redis_reconnect(ngx_event_t *ev);
static void ngx_pico_redis_subscribe(ngx_pico_worker_t *w);
static void ngx_pico_redis_message(redisAsyncContext *ac, void *r,
                                   void *privdata);
static void ngx_pico_redis_recheck_reply(redisAsyncContext *ac, void *r,
                                         void *privdata);


ngx_int_t
ngx_pico_redis_init(ngx_pico_worker_t *w, ngx_pico_event_pt event,
                    ngx_pico_subscribed_pt subscribed,
                    ngx_pico_subscribed_pt unsubscribed)
{
    w->event = event;
    w->subscribed = subscribed;
    w->unsubscribed = unsubscribed;

    w->backoff = NGX_PICO_BACKOFF_MIN;
    w->reconnect.handler = ngx_pico_redis_reconnect;
    w->reconnect.data = w;
    w->reconnect.log = w->log;
    w->reconnect.cancelable = 1;

    /* the first connection is made from the event loop, not here */
    ngx_add_timer(&w->reconnect, 1);

    return NGX_OK;
}


void
ngx_pico_redis_exit(ngx_pico_worker_t *w)
{
    int                done;
    ngx_uint_t         i;
    struct pollfd      pfd;
    redisAsyncContext *ac;

    /*
     * A fast shutdown (SIGTERM) cuts the tunnels still open without
     * finishing them; their owner has queued their "open -1" and last
     * byte deltas (the tunnel file, at exit).  Give the socket a bounded
     * moment (NGX_PICO_EXIT_POLLS x NGX_PICO_EXIT_POLL_MS) to take them.
     * The only blocking call of this file, in a worker that is exiting;
     * with nothing queued (a graceful shutdown) nothing waits.
     */
    ac = w->cmd;

    if (ac && !w->exiting) {
        done = 0;
        pfd.fd = ac->c.fd;
        pfd.events = POLLOUT;

        for (i = 0; i < NGX_PICO_EXIT_POLLS; i++) {
            if (redisBufferWrite(&ac->c, &done) != REDIS_OK || done ||
                poll(&pfd, 1, NGX_PICO_EXIT_POLL_MS) <= 0) {
                break;
            }
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, w->log, 0,
                       "pico redis exit, flushed: %d", done);
    }

    w->exiting = 1;

    if (w->reconnect.timer_set) {
        ngx_del_timer(&w->reconnect);
    }

    if (w->cmd) {
        redisAsyncFree(w->cmd);
    }

    if (w->sub) {
        redisAsyncFree(w->sub);
    }
}


static redisAsyncContext *
ngx_pico_redis_connect(ngx_pico_worker_t *w)
{
    redisAsyncContext    *ac;
    ngx_pico_main_conf_t *pmcf;

    pmcf = w->pmcf;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0,
                   "pico redis connect to \"%s\" port %ui", pmcf->redis_host,
                   pmcf->redis_port);

    /* an address literal or a path: nothing here waits for a resolver */
    if (pmcf->redis_port == 0) {
        ac = redisAsyncConnectUnix((char *)pmcf->redis_host);

    } else {
        ac = redisAsyncConnect((char *)pmcf->redis_host, (int)pmcf->redis_port);
    }

    if (ac == NULL) {
        return NULL;
    }

    if (ac->err) {
        ngx_log_error(NGX_LOG_ERR, w->log, 0, "pico: redis \"%V\": %s",
                      &pmcf->redis, ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }

    if (ngx_pico_redis_event_attach(ac, w->log, ngx_pico_redis_closed, w) !=
        NGX_OK) {
        redisAsyncFree(ac);
        return NULL;
    }

    return ac;
}


/* the event adapter: hiredis is freeing ac (error, EOF, redisAsyncFree) */
static void
ngx_pico_redis_closed(redisAsyncContext *ac, void *data)
{
    ngx_pico_worker_t *w = data;

    /* a context dropped on purpose was taken off w->cmd first */
    if (w->cmd == ac) {
        w->cmd = NULL;

        if (!w->exiting) {
            ngx_log_error(NGX_LOG_WARN, w->log, 0,
                          "pico: redis \"%V\" connection closed",
                          &w->pmcf->redis);
            ngx_pico_redis_schedule(w);
        }
    }

    if (w->sub == ac) {
        w->sub = NULL;

        /* what is published from now on is lost until the next subscribe */
        if (!w->exiting) {
            w->unsubscribed(w);
        }

        ngx_pico_redis_schedule(w);
    }
}


static void
ngx_pico_redis_schedule(ngx_pico_worker_t *w)
{
    if (w->exiting || w->reconnect.timer_set) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, w->log, 0,
                   "pico redis reconnect in %M ms", w->backoff);

    ngx_add_timer(&w->reconnect, w->backoff);

    w->backoff = ngx_min(w->backoff * 2, NGX_PICO_BACKOFF_MAX);
}


static void
ngx_pico_redis_reconnect(ngx_event_t *ev)
{
    ngx_pico_worker_t *w = ev->data;

    if (w->cmd == NULL) {
        w->cmd = ngx_pico_redis_connect(w);
    }

    if (w->sub == NULL) {
        w->sub = ngx_pico_redis_connect(w);
        if (w->sub) {
            ngx_pico_redis_subscribe(w);
        }
    }

    if (w->cmd == NULL || w->sub == NULL) {
        ngx_pico_redis_schedule(w);
    }
}


static void
ngx_pico_redis_subscribe(ngx_pico_worker_t *w)
{
    const char *argv[2] = {"SUBSCRIBE", "pico:events"};

    redisAsyncCommandArgv(w->sub, ngx_pico_redis_message, w, 2, argv, NULL);
}


static void
ngx_pico_redis_message(redisAsyncContext *ac, void *r, void *privdata)
{
    int                  kind;
    redisReply          *reply = r;
    ngx_pico_worker_t   *w = privdata;
    const unsigned char *key;
    u_char               keybuf[PICO_ID_LEN];

    if (reply == NULL || w->exiting || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 3 || reply->element[0]->type != REDIS_REPLY_STRING) {
        return;
    }

    if (ngx_strcmp(reply->element[0]->str, "subscribe") == 0) {
        ngx_log_error(NGX_LOG_INFO, w->log, 0,
                      "pico: subscribed to pico:events");
        w->backoff = NGX_PICO_BACKOFF_MIN;

        /* messages were lost while away: the owner checks its sessions */
        if (w->cmd == NULL) {
            w->cmd = ngx_pico_redis_connect(w);
            if (w->cmd == NULL) {
                /* the subscription fails too then; its reconnect re-checks */
                return;
            }
        }

        w->subscribed(w);
        return;
    }

    if (ngx_strcmp(reply->element[0]->str, "message") != 0 ||
        reply->element[2]->type != REDIS_REPLY_STRING) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0,
                   "pico redis pico:events \"%*s\"", reply->element[2]->len,
                   reply->element[2]->str);

    kind = pico_parse_event((u_char *)reply->element[2]->str,
                            reply->element[2]->len, &key);

    if (kind == PICO_EVENT_NONE) {
        /* a kind of a newer backend: its owner forgets what it may say */
        ngx_log_error(NGX_LOG_WARN, w->log, 0,
                      "pico: pico:events message \"%*s\" not understood",
                      ngx_min(reply->element[2]->len, 64),
                      reply->element[2]->str);
        w->event(w, PICO_EVENT_NONE, NULL);
        return;
    }

    ngx_memcpy(keybuf, key,
               kind == PICO_EVENT_REVOKED ? PICO_TOKEN_ID_LEN : PICO_ID_LEN);
    w->event(w, (ngx_uint_t)kind, keybuf);
}


/*
 * The command connection, connected now if Redis was away (rather than
 * answering 503 for a whole backoff).  NULL: unavailable, logged, a
 * reconnect is scheduled.
 */
redisAsyncContext *
ngx_pico_redis_command(ngx_pico_worker_t *w, ngx_log_t *log, u_char *id)
{
    if (w->cmd == NULL && !w->exiting) {
        w->cmd = ngx_pico_redis_connect(w);
        if (w->cmd == NULL) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "pico: session %*s: redis \"%V\" is unavailable",
                          (size_t)PICO_ID_LEN, id, &w->pmcf->redis);
            ngx_pico_redis_schedule(w);
        }
    }

    return w->cmd;
}


/*
 * A Redis that does not answer within pico_redis_timeout is treated as
 * gone: drop the command connection (the callbacks of what was pending on
 * it run with no reply) and connect again on the next request.
 */
void
ngx_pico_redis_drop(ngx_pico_worker_t *w)
{
    redisAsyncContext *ac;

    ac = w->cmd;
    if (ac) {
        w->cmd = NULL;
        redisAsyncFree(ac);
    }
}

/* EXISTS pico:session:<id>; a missing record is a "deleted" event */
ngx_int_t
ngx_pico_redis_recheck(ngx_pico_worker_t *w, u_char *id)
{
    size_t              argvlen[2];
    const char         *argv[2];
    ngx_pico_recheck_t *rk;
    u_char              key[sizeof("pico:session:") - 1 + PICO_ID_LEN];

    if (w->cmd == NULL) {
        return NGX_ERROR;
    }

    rk = ngx_alloc(sizeof(ngx_pico_recheck_t), w->log);
    if (rk == NULL) {
        return NGX_ERROR;
    }

    rk->worker = w;
    ngx_memcpy(rk->id, id, PICO_ID_LEN);
    ngx_memcpy(ngx_cpymem(key, "pico:session:", 13), id, PICO_ID_LEN);

    argv[0] = "EXISTS";
    argvlen[0] = 6;
    argv[1] = (char *)key;
    argvlen[1] = sizeof(key);

    if (redisAsyncCommandArgv(w->cmd, ngx_pico_redis_recheck_reply, rk, 2, argv,
                              argvlen) != REDIS_OK) {
        ngx_free(rk);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_pico_redis_recheck_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply         *reply = r;
    ngx_pico_recheck_t *rk = privdata;
    ngx_pico_worker_t  *w;
    u_char              id[PICO_ID_LEN];

    w = rk->worker;
    ngx_memcpy(id, rk->id, PICO_ID_LEN);
    ngx_free(rk);

    if (reply == NULL || w->exiting || reply->type != REDIS_REPLY_INTEGER) {
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, w->log, 0, "pico redis recheck %*s: %i",
                   (size_t)PICO_ID_LEN, id, (ngx_int_t)reply->integer);

    if (reply->integer == 0) {
        w->event(w, PICO_EVENT_DELETED, id);
    }
}
