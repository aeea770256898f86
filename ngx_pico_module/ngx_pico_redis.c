/*
 * The session store for ngx_pico_module: two hiredis async contexts per
 * worker, driven by nginx's own event loop (ngx_pico_redis_event.c; no
 * thread, no blocking call but the bounded flush of an exiting worker).
 *
 *   cmd  session lookups (pipelined HMGETs of token and session) and
 *        fire-and-forget tunnel accounting (a Lua script that only touches
 *        pico:tunnels:<id> while pico:session:<id> exists)
 *   sub  SUBSCRIBE pico:events; "deleted <id>" goes to the worker's
 *        deleted handler; after every (re)subscribe the subscribed handler
 *        runs, since pub/sub loses messages while disconnected
 *
 * Nothing here knows a tunnel or a request.  A lookup is a handle, as
 * nginx's resolver contexts are: ngx_pico_redis_lookup() takes a handler
 * and its data, ngx_pico_redis_lookup_cancel() makes sure the handler is
 * never called.  A context that fails is freed by hiredis; the event
 * adapter says so (ngx_pico_redis_closed()) and the worker reconnects with
 * a backoff.  The key schema is docs/redis.md.
 */

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_pico_module.h"

#include <poll.h>

#define NGX_PICO_EXIT_POLLS 4
#define NGX_PICO_EXIT_POLL_MS 50
#define NGX_PICO_BACKOFF_MIN 100
#define NGX_PICO_BACKOFF_MAX 2000
#define NGX_PICO_MAX_FIELD 512

/* a copied field of a reply: reply memory is gone after the callback */
typedef struct {
    size_t     len;
    ngx_uint_t present;
    u_char     data[NGX_PICO_MAX_FIELD];
} ngx_pico_field_t;

/*
 * Not from the request's pool: a cancelled lookup lives on until its
 * replies have come (hiredis holds it as privdata).
 */
struct ngx_pico_lookup_s {
    ngx_pico_lookup_handler_pt handler; /* NULL once cancelled */
    void                      *data;
    ngx_pico_worker_t         *worker;
    ngx_event_t                timer;
    ngx_uint_t                 pending; /* replies still to come */
    char                      *error;
    ngx_pico_field_t           status;
    ngx_pico_field_t           endpoint;
    ngx_pico_field_t           owner;
    ngx_pico_field_t           sha256;
    ngx_pico_field_t           principal;
};

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
static void ngx_pico_redis_lookup_timeout(ngx_event_t *ev);
static void ngx_pico_redis_token_reply(redisAsyncContext *ac, void *r,
                                       void *privdata);
static void ngx_pico_redis_session_reply(redisAsyncContext *ac, void *r,
                                         void *privdata);
static void ngx_pico_redis_fields(ngx_pico_lookup_t *lk, redisReply *reply,
                                  char *unexpected, ngx_pico_field_t **fields,
                                  size_t n);
static void ngx_pico_redis_lookup_end(ngx_pico_lookup_t *lk);

/*
 * KEYS[1] pico:session:<id>, KEYS[2] pico:tunnels:<id>;
 * ARGV open delta, opened delta, bytes_up delta, bytes_down delta,
 * last_activity (unix ms, "0": leave it)
 */
static const char ngx_pico_account_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "local f = {'open', 'opened', 'bytes_up', 'bytes_down'} "
    "for i = 1, 4 do "
    "local v = tonumber(ARGV[i]) "
    "if v ~= 0 then redis.call('HINCRBY', KEYS[2], f[i], v) end "
    "end "
    "if ARGV[5] ~= '0' then "
    "redis.call('HSET', KEYS[2], 'last_activity', ARGV[5]) end "
    "return 1";

/*
 * A name in pico_redis is resolved here, in the master, when the
 * configuration is read (start and reload), as nginx does for upstream
 * servers: hiredis would otherwise resolve it with a blocking lookup inside
 * a worker at every (re)connect.  Workers get an address literal.
 */
char *
ngx_pico_redis_conf(ngx_conf_t *cf, ngx_pico_main_conf_t *pmcf)
{
    size_t    len;
    ngx_url_t u;

    if (pmcf->redis.len > 5 && ngx_strncmp(pmcf->redis.data, "unix:", 5) == 0) {
        len = pmcf->redis.len - 5;

        if (pmcf->redis.data[5] != '/' ||
            len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pico_redis \"%V\": unix: needs an absolute "
                               "path shorter than %uz bytes",
                               &pmcf->redis,
                               sizeof(((struct sockaddr_un *)0)->sun_path));
            return NGX_CONF_ERROR;
        }

        pmcf->redis_host = ngx_pnalloc(cf->pool, len + 1);
        if (pmcf->redis_host == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_cpystrn(pmcf->redis_host, pmcf->redis.data + 5, len + 1);
        return NGX_CONF_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = pmcf->redis;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pico_redis \"%V\": %s (expected unix:/path or "
                           "host[:port])",
                           &pmcf->redis, u.err ? u.err : "no address");
        return NGX_CONF_ERROR;
    }

    if (u.naddrs > 1) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "pico_redis \"%V\" has %ui addresses, using %V",
                           &pmcf->redis, u.naddrs, &u.addrs[0].name);
    }

    pmcf->redis_host = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (pmcf->redis_host == NULL) {
        return NGX_CONF_ERROR;
    }

    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                        pmcf->redis_host, NGX_SOCKADDR_STRLEN, 0);
    pmcf->redis_host[len] = '\0';
    pmcf->redis_port = ngx_inet_get_port(u.addrs[0].sockaddr);

    return NGX_CONF_OK;
}


ngx_int_t
ngx_pico_redis_init(ngx_pico_worker_t *w, ngx_pico_deleted_pt deleted,
                    ngx_pico_subscribed_pt subscribed)
{
    w->deleted = deleted;
    w->subscribed = subscribed;

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
    redisReply          *reply = r;
    ngx_pico_worker_t   *w = privdata;
    const unsigned char *id;
    u_char               idbuf[PICO_ID_LEN];

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

    if (!pico_parse_event((u_char *)reply->element[2]->str,
                          reply->element[2]->len, &id)) {
        return;
    }

    ngx_memcpy(idbuf, id, PICO_ID_LEN);
    w->deleted(w, idbuf);
}


/* EXISTS pico:session:<id>; a missing record goes to the deleted handler */
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
        w->deleted(w, id);
    }
}


/*
 * Starts a lookup of session id (and of token, when not NULL).  NULL: the
 * store is unavailable now, the handler will not be called.  Otherwise the
 * handler is called exactly once, from the event loop, unless the lookup
 * is cancelled first; the handle is freed after the handler returns.
 */
ngx_pico_lookup_t *
ngx_pico_redis_lookup(ngx_pico_worker_t *w, u_char *id, u_char *token,
                      ngx_log_t *log, ngx_pico_lookup_handler_pt handler,
                      void *data)
{
    size_t             argvlen[5];
    const char        *argv[5];
    ngx_pico_lookup_t *lk;
    u_char             skey[sizeof("pico:session:") - 1 + PICO_ID_LEN];
    u_char             tkey[sizeof("pico:token:") - 1 + PICO_TOKEN_ID_LEN];

    if (w->cmd == NULL) {
        /* Redis was away: try now rather than answer 503 for a backoff */
        w->cmd = ngx_pico_redis_connect(w);
        if (w->cmd == NULL) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "pico: session %*s: redis \"%V\" is unavailable",
                          (size_t)PICO_ID_LEN, id, &w->pmcf->redis);
            ngx_pico_redis_schedule(w);
            return NULL;
        }
    }

    lk = ngx_calloc(sizeof(ngx_pico_lookup_t), log);
    if (lk == NULL) {
        return NULL;
    }

    lk->handler = handler;
    lk->data = data;
    lk->worker = w;

    if (token) {
        ngx_memcpy(ngx_cpymem(tkey, "pico:token:", 11), token + 5,
                   PICO_TOKEN_ID_LEN);

        argv[0] = "HMGET";
        argvlen[0] = 5;
        argv[1] = (char *)tkey;
        argvlen[1] = sizeof(tkey);
        argv[2] = "sha256";
        argvlen[2] = 6;
        argv[3] = "principal";
        argvlen[3] = 9;

        if (redisAsyncCommandArgv(w->cmd, ngx_pico_redis_token_reply, lk, 4,
                                  argv, argvlen) != REDIS_OK) {
            ngx_free(lk);
            return NULL;
        }

        lk->pending++;
    }

    ngx_memcpy(ngx_cpymem(skey, "pico:session:", 13), id, PICO_ID_LEN);

    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[1] = (char *)skey;
    argvlen[1] = sizeof(skey);
    argv[2] = "status";
    argvlen[2] = 6;
    argv[3] = "endpoint";
    argvlen[3] = 8;
    argv[4] = "owner";
    argvlen[4] = 5;

    if (redisAsyncCommandArgv(w->cmd, ngx_pico_redis_session_reply, lk, 5, argv,
                              argvlen) != REDIS_OK) {
        if (lk->pending) {
            /* the token reply will free it */
            lk->handler = NULL;
            lk->error = "command failed";

        } else {
            ngx_free(lk);
        }

        return NULL;
    }

    lk->pending++;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pico redis lookup %p sent, %ui replies to come", lk,
                   lk->pending);

    lk->timer.handler = ngx_pico_redis_lookup_timeout;
    lk->timer.data = lk;
    lk->timer.log = log;
    ngx_add_timer(&lk->timer, w->pmcf->redis_timeout);

    return lk;
}


/* the handler will not be called; the replies still to come free lk */
void
ngx_pico_redis_lookup_cancel(ngx_pico_lookup_t *lk)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lk->worker->log, 0,
                   "pico redis lookup %p cancelled", lk);

    lk->handler = NULL;

    if (lk->timer.timer_set) {
        ngx_del_timer(&lk->timer);
    }
}


static void
ngx_pico_redis_lookup_timeout(ngx_event_t *ev)
{
    void                      *data;
    ngx_pico_lookup_t         *lk = ev->data;
    ngx_pico_worker_t         *w;
    redisAsyncContext         *ac;
    ngx_pico_lookup_handler_pt handler;

    w = lk->worker;
    handler = lk->handler;
    data = lk->data;

    /* lk may be freed below, with the context */
    ngx_pico_redis_lookup_cancel(lk);

    /*
     * A Redis that does not answer within pico_redis_timeout is treated as
     * gone: drop the context (its other lookups fail at once) and connect
     * again on the next request.
     */
    ac = w->cmd;
    if (ac) {
        w->cmd = NULL;
        redisAsyncFree(ac);
    }

    handler(data, NULL, "timed out");
}


static void
ngx_pico_copy_field(ngx_pico_field_t *f, redisReply *e)
{
    if (e->type != REDIS_REPLY_STRING || e->len >= NGX_PICO_MAX_FIELD) {
        f->present = 0;
        f->len = 0;
        return;
    }

    f->present = 1;
    f->len = e->len;
    ngx_memcpy(f->data, e->str, e->len);
}


/* one HMGET reply of a lookup: its fields in order, or an error */
static void
ngx_pico_redis_fields(ngx_pico_lookup_t *lk, redisReply *reply,
                      char *unexpected, ngx_pico_field_t **fields, size_t n)
{
    size_t i;

    lk->pending--;

    if (reply == NULL) {
        lk->error = "connection lost";

    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != n) {
        lk->error = unexpected;

    } else {
        for (i = 0; i < n; i++) {
            ngx_pico_copy_field(fields[i], reply->element[i]);
        }
    }

    if (lk->pending == 0) {
        ngx_pico_redis_lookup_end(lk);
    }
}


static void
ngx_pico_redis_token_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_pico_lookup_t *lk = privdata;
    ngx_pico_field_t  *fields[] = {&lk->sha256, &lk->principal};

    ngx_pico_redis_fields(lk, r, "unexpected reply to HMGET pico:token", fields,
                          2);
}


static void
ngx_pico_redis_session_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_pico_lookup_t *lk = privdata;
    ngx_pico_field_t  *fields[] = {&lk->status, &lk->endpoint, &lk->owner};

    ngx_pico_redis_fields(lk, r, "unexpected reply to HMGET pico:session",
                          fields, 3);
}


static void
ngx_pico_redis_lookup_end(ngx_pico_lookup_t *lk)
{
    ngx_pico_record_t          rec;
    ngx_pico_lookup_handler_pt handler;

    handler = lk->handler;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, lk->worker->log, 0,
                   "pico redis lookup %p done: %s%s", lk,
                   lk->error ? lk->error : "ok", handler ? "" : ", cancelled");

    if (handler == NULL || lk->worker->exiting) {
        ngx_free(lk);
        return;
    }

    /* a cancel from inside the handler must not free or call again */
    ngx_pico_redis_lookup_cancel(lk);

    if (lk->error) {
        handler(lk->data, NULL, lk->error);
        ngx_free(lk);
        return;
    }

    /* a record exists when its status does, a token when its hash does */
    rec.found = lk->status.present;
    rec.token_found = lk->sha256.present;
    rec.status.data = lk->status.data;
    rec.status.len = lk->status.len;
    rec.endpoint.data = lk->endpoint.data;
    rec.endpoint.len = lk->endpoint.len;
    rec.owner.data = lk->owner.data;
    rec.owner.len = lk->owner.len;
    rec.token_sha256.data = lk->sha256.data;
    rec.token_sha256.len = lk->sha256.len;
    rec.principal.data = lk->principal.data;
    rec.principal.len = lk->principal.len;

    handler(lk->data, &rec, NULL);

    ngx_free(lk);
}


/*
 * One accounting update of pico:tunnels:<id>, fire and forget: no
 * callback, the relay never waits for Redis.  NGX_DECLINED: no connection,
 * nothing was sent (the caller keeps its deltas for the next time).
 */
ngx_int_t
ngx_pico_redis_account(ngx_pico_worker_t *w, u_char *id, ngx_int_t open,
                       ngx_int_t opened, off_t up, off_t down)
{
    ngx_uint_t  i;
    ngx_time_t *tp;
    size_t      argvlen[10];
    const char *argv[10];
    u_char      skey[sizeof("pico:session:") - 1 + PICO_ID_LEN];
    u_char      tkey[sizeof("pico:tunnels:") - 1 + PICO_ID_LEN];
    u_char      num[5][NGX_OFF_T_LEN + 2];

    if (w->cmd == NULL || w->exiting) {
        return NGX_DECLINED;
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, w->log, 0,
                   "pico redis account %*s open:%i opened:%i up:%O",
                   (size_t)PICO_ID_LEN, id, open, opened, up);

    tp = ngx_timeofday();

    ngx_memcpy(ngx_cpymem(skey, "pico:session:", 13), id, PICO_ID_LEN);
    ngx_memcpy(ngx_cpymem(tkey, "pico:tunnels:", 13), id, PICO_ID_LEN);

    argv[0] = "EVAL";
    argv[1] = ngx_pico_account_script;
    argv[2] = "2";
    argv[3] = (char *)skey;
    argv[4] = (char *)tkey;

    argvlen[0] = 4;
    argvlen[1] = sizeof(ngx_pico_account_script) - 1;
    argvlen[2] = 1;
    argvlen[3] = sizeof(skey);
    argvlen[4] = sizeof(tkey);

    argvlen[5] = ngx_sprintf(num[0], "%i", open) - num[0];
    argvlen[6] = ngx_sprintf(num[1], "%i", opened) - num[1];
    argvlen[7] = ngx_sprintf(num[2], "%O", up) - num[2];
    argvlen[8] = ngx_sprintf(num[3], "%O", down) - num[3];

    if (up || down || opened) {
        argvlen[9] = ngx_sprintf(num[4], "%T%03M", tp->sec, tp->msec) - num[4];

    } else {
        argvlen[9] = ngx_sprintf(num[4], "0") - num[4];
    }

    for (i = 0; i < 5; i++) {
        argv[5 + i] = (char *)num[i];
    }

    (void)redisAsyncCommandArgv(w->cmd, NULL, NULL, 10, argv, argvlen);

    return NGX_OK;
}
