/*
 * Redis for ngx_pico_module: two hiredis async contexts per worker, driven
 * by nginx's own event loop through the small adapter below (no thread, no
 * blocking call but the bounded flush of an exiting worker).
 *
 *   cmd  session lookups (pipelined HMGETs of token and session) and
 *        fire-and-forget tunnel accounting (a Lua script that only touches
 *        pico:tunnels:<id> while pico:session:<id> exists)
 *   sub  SUBSCRIBE pico:events; "deleted <id>" closes that session's
 *        tunnels; after every (re)subscribe each open tunnel's session is
 *        checked again, since pub/sub loses messages while disconnected
 *
 * A context that fails is freed by hiredis, which tells us through the
 * adapter's cleanup hook; the worker reconnects with a backoff.  The key
 * schema is docs/redis.md.
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

/* ties a hiredis context to an nginx connection holding its fd */
typedef struct {
    ngx_connection_t *c;
    redisAsyncContext *ac;
    ngx_pico_worker_t *w;
} ngx_pico_redis_conn_t;

/* a copied field of a reply: reply memory is gone after the callback */
typedef struct {
    size_t len;
    ngx_uint_t present;
    u_char data[NGX_PICO_MAX_FIELD];
} ngx_pico_field_t;

struct ngx_pico_lookup_s {
    ngx_pico_tunnel_t *tunnel; /* NULL once the request gave up */
    ngx_pico_worker_t *worker;
    ngx_uint_t pending; /* replies still to come */
    char *error;
    ngx_pico_field_t status;
    ngx_pico_field_t endpoint;
    ngx_pico_field_t owner;
    ngx_pico_field_t sha256;
    ngx_pico_field_t principal;
};

typedef struct {
    ngx_pico_worker_t *worker;
    u_char id[PICO_ID_LEN];
} ngx_pico_recheck_t;

static redisAsyncContext *ngx_pico_redis_connect(ngx_pico_worker_t *w);
static void ngx_pico_redis_subscribe(ngx_pico_worker_t *w);
static void ngx_pico_redis_schedule(ngx_pico_worker_t *w);
static void ngx_pico_redis_reconnect(ngx_event_t *ev);
static void ngx_pico_redis_lookup_timeout(ngx_event_t *ev);
static void ngx_pico_redis_token_reply(redisAsyncContext *ac, void *r,
                                       void *privdata);
static void ngx_pico_redis_session_reply(redisAsyncContext *ac, void *r,
                                         void *privdata);
static void ngx_pico_redis_lookup_end(ngx_pico_lookup_t *lk);
static void ngx_pico_redis_message(redisAsyncContext *ac, void *r,
                                   void *privdata);
static void ngx_pico_redis_recheck_all(ngx_pico_worker_t *w);
static void ngx_pico_redis_recheck_reply(redisAsyncContext *ac, void *r,
                                         void *privdata);

static void ngx_pico_redis_read(ngx_event_t *ev);
static void ngx_pico_redis_write(ngx_event_t *ev);
static void ngx_pico_redis_add_read(void *privdata);
static void ngx_pico_redis_del_read(void *privdata);
static void ngx_pico_redis_add_write(void *privdata);
static void ngx_pico_redis_del_write(void *privdata);
static void ngx_pico_redis_cleanup(void *privdata);

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

ngx_int_t ngx_pico_redis_init(ngx_pico_worker_t *w)
{
    w->backoff = NGX_PICO_BACKOFF_MIN;
    w->reconnect.handler = ngx_pico_redis_reconnect;
    w->reconnect.data = w;
    w->reconnect.log = w->log;
    w->reconnect.cancelable = 1;

    /* the first connection is made from the event loop, not here */
    ngx_add_timer(&w->reconnect, 1);

    return NGX_OK;
}

void ngx_pico_redis_exit(ngx_pico_worker_t *w)
{
    int done;
    ngx_uint_t i;
    ngx_queue_t *q;
    struct pollfd pfd;
    ngx_pico_tunnel_t *t;
    redisAsyncContext *ac;

    /*
     * A fast shutdown (SIGTERM) cuts the tunnels still open without
     * finishing them: queue their "open -1" and last byte deltas, then
     * give the socket a bounded moment (NGX_PICO_EXIT_POLLS x
     * NGX_PICO_EXIT_POLL_MS) to take them.  The only blocking call of
     * this file, in a worker that is exiting; after a graceful shutdown
     * no tunnel is left and nothing waits.
     */
    ac = w->cmd;

    if (ac && !w->exiting) {
        done = 1;

        for (q = ngx_queue_head(&w->tunnels);
             q != ngx_queue_sentinel(&w->tunnels); q = ngx_queue_next(q)) {
            t = ngx_queue_data(q, ngx_pico_tunnel_t, queue);

            if (t->accounted) {
                ngx_pico_redis_account(t, -1, 0);
                t->accounted = 0;
                done = 0;
            }
        }

        pfd.fd = ac->c.fd;
        pfd.events = POLLOUT;

        for (i = 0; !done && i < NGX_PICO_EXIT_POLLS; i++) {
            if (redisBufferWrite(&ac->c, &done) != REDIS_OK ||
                (!done && poll(&pfd, 1, NGX_PICO_EXIT_POLL_MS) <= 0)) {
                break;
            }
        }
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

static redisAsyncContext *ngx_pico_redis_connect(ngx_pico_worker_t *w)
{
    ngx_connection_t *c;
    redisAsyncContext *ac;
    ngx_pico_redis_conn_t *rc;
    ngx_pico_main_conf_t *pmcf;

    pmcf = w->pmcf;

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

    rc = ngx_alloc(sizeof(ngx_pico_redis_conn_t), w->log);
    if (rc == NULL) {
        redisAsyncFree(ac);
        return NULL;
    }

    c = ngx_get_connection(ac->c.fd, w->log);
    if (c == NULL) {
        ngx_free(rc);
        redisAsyncFree(ac);
        return NULL;
    }

    c->data = rc;
    c->read->handler = ngx_pico_redis_read;
    c->write->handler = ngx_pico_redis_write;
    c->read->log = w->log;
    c->write->log = w->log;

    rc->c = c;
    rc->ac = ac;
    rc->w = w;

    ac->ev.data = rc;
    ac->ev.addRead = ngx_pico_redis_add_read;
    ac->ev.delRead = ngx_pico_redis_del_read;
    ac->ev.addWrite = ngx_pico_redis_add_write;
    ac->ev.delWrite = ngx_pico_redis_del_write;
    ac->ev.cleanup = ngx_pico_redis_cleanup;

    return ac;
}

static void ngx_pico_redis_schedule(ngx_pico_worker_t *w)
{
    if (w->exiting || w->reconnect.timer_set) {
        return;
    }

    ngx_add_timer(&w->reconnect, w->backoff);

    w->backoff = ngx_min(w->backoff * 2, NGX_PICO_BACKOFF_MAX);
}

static void ngx_pico_redis_reconnect(ngx_event_t *ev)
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

static void ngx_pico_redis_subscribe(ngx_pico_worker_t *w)
{
    const char *argv[2] = {"SUBSCRIBE", "pico:events"};

    redisAsyncCommandArgv(w->sub, ngx_pico_redis_message, w, 2, argv, NULL);
}

static void ngx_pico_redis_message(redisAsyncContext *ac, void *r,
                                   void *privdata)
{
    redisReply *reply = r;
    ngx_pico_worker_t *w = privdata;
    const unsigned char *id;
    u_char idbuf[PICO_ID_LEN];

    if (reply == NULL || w->exiting || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 3 || reply->element[0]->type != REDIS_REPLY_STRING) {
        return;
    }

    if (ngx_strcmp(reply->element[0]->str, "subscribe") == 0) {
        ngx_log_error(NGX_LOG_INFO, w->log, 0,
                      "pico: subscribed to pico:events");
        w->backoff = NGX_PICO_BACKOFF_MIN;
        ngx_pico_redis_recheck_all(w);
        return;
    }

    if (ngx_strcmp(reply->element[0]->str, "message") != 0 ||
        reply->element[2]->type != REDIS_REPLY_STRING) {
        return;
    }

    if (!pico_parse_event((u_char *)reply->element[2]->str,
                          reply->element[2]->len, &id)) {
        return;
    }

    ngx_memcpy(idbuf, id, PICO_ID_LEN);
    ngx_pico_close_session(w, idbuf);
}

static void ngx_pico_redis_recheck_all(ngx_pico_worker_t *w)
{
    ngx_queue_t *q;
    ngx_pico_tunnel_t *t;
    ngx_pico_recheck_t *rk;
    const char *argv[2];
    size_t argvlen[2];
    u_char key[sizeof("pico:session:") - 1 + PICO_ID_LEN];

    if (w->cmd == NULL) {
        w->cmd = ngx_pico_redis_connect(w);
        if (w->cmd == NULL) {
            /* the subscription fails too then; its reconnect re-checks */
            return;
        }
    }

    for (q = ngx_queue_head(&w->tunnels); q != ngx_queue_sentinel(&w->tunnels);
         q = ngx_queue_next(q)) {
        t = ngx_queue_data(q, ngx_pico_tunnel_t, queue);

        rk = ngx_alloc(sizeof(ngx_pico_recheck_t), w->log);
        if (rk == NULL) {
            return;
        }

        rk->worker = w;
        ngx_memcpy(rk->id, t->id, PICO_ID_LEN);
        ngx_memcpy(ngx_cpymem(key, "pico:session:", 13), t->id, PICO_ID_LEN);

        argv[0] = "EXISTS";
        argvlen[0] = 6;
        argv[1] = (char *)key;
        argvlen[1] = sizeof(key);

        if (redisAsyncCommandArgv(w->cmd, ngx_pico_redis_recheck_reply, rk, 2,
                                  argv, argvlen) != REDIS_OK) {
            ngx_free(rk);
            return;
        }
    }
}

static void ngx_pico_redis_recheck_reply(redisAsyncContext *ac, void *r,
                                         void *privdata)
{
    redisReply *reply = r;
    ngx_pico_recheck_t *rk = privdata;
    ngx_pico_worker_t *w;
    u_char id[PICO_ID_LEN];

    w = rk->worker;
    ngx_memcpy(id, rk->id, PICO_ID_LEN);
    ngx_free(rk);

    if (reply == NULL || w->exiting || reply->type != REDIS_REPLY_INTEGER) {
        return;
    }

    ngx_pico_recheck_done(w, id, reply->integer != 0);
}

ngx_int_t ngx_pico_redis_lookup(ngx_pico_tunnel_t *t)
{
    ngx_pico_worker_t *w;
    ngx_pico_lookup_t *lk;
    const char *argv[5];
    size_t argvlen[5];
    u_char skey[sizeof("pico:session:") - 1 + PICO_ID_LEN];
    u_char tkey[sizeof("pico:token:") - 1 + PICO_TOKEN_ID_LEN];

    w = t->worker;

    if (w->cmd == NULL) {
        /* Redis was away: try now rather than answer 503 for a backoff */
        w->cmd = ngx_pico_redis_connect(w);
        if (w->cmd == NULL) {
            ngx_log_error(NGX_LOG_ERR, t->request->connection->log, 0,
                          "pico: session %V: redis \"%V\" is unavailable",
                          &t->session_id, &w->pmcf->redis);
            ngx_pico_redis_schedule(w);
            return NGX_ERROR;
        }
    }

    lk = ngx_calloc(sizeof(ngx_pico_lookup_t), t->request->connection->log);
    if (lk == NULL) {
        return NGX_ERROR;
    }

    lk->tunnel = t;
    lk->worker = w;

    if (t->has_token) {
        ngx_memcpy(ngx_cpymem(tkey, "pico:token:", 11), t->token + 5,
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
            return NGX_ERROR;
        }

        lk->pending++;
    }

    ngx_memcpy(ngx_cpymem(skey, "pico:session:", 13), t->id, PICO_ID_LEN);

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
            lk->tunnel = NULL;
            lk->error = "command failed";

        } else {
            ngx_free(lk);
        }

        return NGX_ERROR;
    }

    lk->pending++;
    t->lookup = lk;

    t->lookup_timer.handler = ngx_pico_redis_lookup_timeout;
    t->lookup_timer.data = t;
    t->lookup_timer.log = t->request->connection->log;
    ngx_add_timer(&t->lookup_timer, w->pmcf->redis_timeout);

    return NGX_OK;
}

void ngx_pico_redis_cancel(ngx_pico_tunnel_t *t)
{
    if (t->lookup) {
        t->lookup->tunnel = NULL;
        t->lookup = NULL;
    }
}

static void ngx_pico_redis_lookup_timeout(ngx_event_t *ev)
{
    ngx_pico_tunnel_t *t = ev->data;
    ngx_pico_worker_t *w;
    redisAsyncContext *ac;

    w = t->worker;

    ngx_pico_redis_cancel(t);

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

    ngx_pico_lookup_failed(t, "timed out");
}

static void ngx_pico_copy_field(ngx_pico_field_t *f, redisReply *e)
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
static void ngx_pico_redis_fields(ngx_pico_lookup_t *lk, redisReply *reply,
                                  char *unexpected, ngx_pico_field_t **fields,
                                  size_t n)
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

static void ngx_pico_redis_token_reply(redisAsyncContext *ac, void *r,
                                       void *privdata)
{
    ngx_pico_lookup_t *lk = privdata;
    ngx_pico_field_t *fields[] = {&lk->sha256, &lk->principal};

    ngx_pico_redis_fields(lk, r, "unexpected reply to HMGET pico:token", fields,
                          2);
}

static void ngx_pico_redis_session_reply(redisAsyncContext *ac, void *r,
                                         void *privdata)
{
    ngx_pico_lookup_t *lk = privdata;
    ngx_pico_field_t *fields[] = {&lk->status, &lk->endpoint, &lk->owner};

    ngx_pico_redis_fields(lk, r, "unexpected reply to HMGET pico:session",
                          fields, 3);
}

static void ngx_pico_redis_lookup_end(ngx_pico_lookup_t *lk)
{
    ngx_pico_tunnel_t *t;
    ngx_pico_record_t rec;

    t = lk->tunnel;

    if (t == NULL || lk->worker->exiting) {
        ngx_free(lk);
        return;
    }

    t->lookup = NULL;

    if (t->lookup_timer.timer_set) {
        ngx_del_timer(&t->lookup_timer);
    }

    if (lk->error) {
        ngx_pico_lookup_failed(t, lk->error);
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

    ngx_pico_lookup_done(t, &rec);

    ngx_free(lk);
}

void ngx_pico_redis_account(ngx_pico_tunnel_t *t, ngx_int_t open,
                            ngx_int_t opened)
{
    ngx_uint_t i;
    ngx_time_t *tp;
    ngx_pico_worker_t *w;
    const char *argv[10];
    size_t argvlen[10];
    u_char skey[sizeof("pico:session:") - 1 + PICO_ID_LEN];
    u_char tkey[sizeof("pico:tunnels:") - 1 + PICO_ID_LEN];
    u_char num[5][NGX_OFF_T_LEN + 2];
    off_t up, down;

    w = t->worker;

    if (w->cmd == NULL || w->exiting) {
        return;
    }

    up = t->up.bytes - t->up.reported;
    down = t->down.bytes - t->down.reported;
    t->up.reported = t->up.bytes;
    t->down.reported = t->down.bytes;

    tp = ngx_timeofday();

    ngx_memcpy(ngx_cpymem(skey, "pico:session:", 13), t->id, PICO_ID_LEN);
    ngx_memcpy(ngx_cpymem(tkey, "pico:tunnels:", 13), t->id, PICO_ID_LEN);

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

    /* fire and forget: no callback, the relay never waits for Redis */
    (void)redisAsyncCommandArgv(w->cmd, NULL, NULL, 10, argv, argvlen);
}

/* the adapter: nginx events for hiredis, level-triggered */

static void ngx_pico_redis_read(ngx_event_t *ev)
{
    ngx_connection_t *c = ev->data;
    ngx_pico_redis_conn_t *rc = c->data;

    /* may free rc and c */
    redisAsyncHandleRead(rc->ac);
}

static void ngx_pico_redis_write(ngx_event_t *ev)
{
    ngx_connection_t *c = ev->data;
    ngx_pico_redis_conn_t *rc = c->data;

    redisAsyncHandleWrite(rc->ac);
}

/* hiredis asks for (on) or drops (off) one of the two events */
static void ngx_pico_redis_event(ngx_event_t *ev, ngx_uint_t on)
{
    ngx_int_t event;

    event = ev->write ? NGX_WRITE_EVENT : NGX_READ_EVENT;

    if (on && !ev->active) {
        (void)ngx_add_event(ev, event, NGX_LEVEL_EVENT);

    } else if (!on && ev->active) {
        (void)ngx_del_event(ev, event, 0);
    }
}

static void ngx_pico_redis_add_read(void *privdata)
{
    ngx_pico_redis_conn_t *rc = privdata;

    ngx_pico_redis_event(rc->c->read, 1);
}

static void ngx_pico_redis_del_read(void *privdata)
{
    ngx_pico_redis_conn_t *rc = privdata;

    ngx_pico_redis_event(rc->c->read, 0);
}

static void ngx_pico_redis_add_write(void *privdata)
{
    ngx_pico_redis_conn_t *rc = privdata;

    ngx_pico_redis_event(rc->c->write, 1);
}

static void ngx_pico_redis_del_write(void *privdata)
{
    ngx_pico_redis_conn_t *rc = privdata;

    ngx_pico_redis_event(rc->c->write, 0);
}

/* hiredis is freeing the context (error, EOF or redisAsyncFree) */
static void ngx_pico_redis_cleanup(void *privdata)
{
    ngx_pico_redis_conn_t *rc = privdata;
    ngx_pico_worker_t *w;
    ngx_connection_t *c;

    w = rc->w;
    c = rc->c;

    ngx_pico_redis_del_read(rc);
    ngx_pico_redis_del_write(rc);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* hiredis closes the fd itself */
    ngx_free_connection(c);
    c->fd = (ngx_socket_t)-1;

    if (w->cmd == rc->ac) {
        w->cmd = NULL;

        if (!w->exiting) {
            ngx_log_error(NGX_LOG_WARN, w->log, 0,
                          "pico: redis \"%V\" connection closed",
                          &w->pmcf->redis);
            ngx_pico_redis_schedule(w);
        }
    }

    if (w->sub == rc->ac) {
        w->sub = NULL;
        ngx_pico_redis_schedule(w);
    }

    ngx_free(rc);
}
