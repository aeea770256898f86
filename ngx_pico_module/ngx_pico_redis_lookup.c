/*
 * Session lookups of ngx_pico_module: a pipelined HMGET of the token (when
 * auth is on), or of a preview link (ngx_pico_redis_lookup_preview()), and
 * of the session on the worker's command connection
 * (ngx_pico_redis.c).  A lookup is a handle, as nginx's resolver contexts
 * are: ngx_pico_redis_lookup() takes a handler and its data,
 * ngx_pico_redis_lookup_cancel() makes sure the handler is never called.
 * A lookup slower than pico_redis_timeout fails alone; NGX_PICO_HUNG of
 * them in a row with no answer drop the connection (ngx_pico_redis_drop()).
 * Nothing here knows a tunnel or a request.
 */

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_pico_module.h"

#define NGX_PICO_MAX_FIELD 512
#define NGX_PICO_HUNG 3         /* timeouts in a row that drop the connection */
#define NGX_PICO_HMGET_FIELDS 3 /* the most fields one lookup HMGET reads */

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
    ngx_pico_field_t           pv_session; /* pico:preview:<digest> */
    ngx_pico_field_t           pv_port;
    ngx_pico_field_t           pv_expires;
};

static void      ngx_pico_redis_lookup_timeout(ngx_event_t *ev);
static void      ngx_pico_redis_token_reply(redisAsyncContext *ac, void *r,
                                            void *privdata);
static void      ngx_pico_redis_session_reply(redisAsyncContext *ac, void *r,
                                              void *privdata);
static void      ngx_pico_redis_preview_reply(redisAsyncContext *ac, void *r,
                                              void *privdata);
static ngx_int_t ngx_pico_redis_send_session(ngx_pico_lookup_t *lk,
                                             redisAsyncContext *ac, u_char *id,
                                             ngx_log_t *log);
static void      ngx_pico_redis_fields(ngx_pico_lookup_t *lk, redisReply *reply,
                                       char *unexpected, ngx_pico_field_t **fields,
                                       size_t n);
static void      ngx_pico_redis_lookup_end(ngx_pico_lookup_t *lk);


/* the fields each HMGET reads, in the order the replies copy them */
static const char *ngx_pico_token_fields[] = {"sha256", "principal"};
static const char *ngx_pico_preview_fields[] = {"session", "port", "expires"};
static const char *ngx_pico_session_fields[] = {"status", "endpoint", "owner"};


/*
 * HMGET key fields[0..n-1] on ac, its reply to fn with lk as privdata;
 * NGX_OK once queued (lk->pending counts it).
 */
static ngx_int_t
ngx_pico_redis_hmget(redisAsyncContext *ac, redisCallbackFn *fn,
                     ngx_pico_lookup_t *lk, u_char *key, size_t keylen,
                     const char **fields, size_t n)
{
    size_t      i, argvlen[2 + NGX_PICO_HMGET_FIELDS];
    const char *argv[2 + NGX_PICO_HMGET_FIELDS];

    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[1] = (const char *)key;
    argvlen[1] = keylen;

    for (i = 0; i < n && i < NGX_PICO_HMGET_FIELDS; i++) {
        argv[2 + i] = fields[i];
        argvlen[2 + i] = ngx_strlen(fields[i]);
    }

    if (redisAsyncCommandArgv(ac, fn, lk, (int)(2 + i), argv, argvlen) !=
        REDIS_OK) {
        return NGX_ERROR;
    }

    lk->pending++;

    return NGX_OK;
}


/*
 * A new lookup on the worker's command connection, returned in *ac.
 * NULL: the store is unavailable now (counted as a lookup error), or
 * there is no memory.
 */
static ngx_pico_lookup_t *
ngx_pico_redis_lookup_new(ngx_pico_worker_t *w, u_char *id, ngx_log_t *log,
                          ngx_pico_lookup_handler_pt handler, void *data,
                          redisAsyncContext **ac)
{
    ngx_pico_lookup_t *lk;

    *ac = ngx_pico_redis_command(w, log, id);
    if (*ac == NULL) {
        ngx_pico_metrics_lookup(w->pmcf, NGX_PICO_LOOKUP_ERROR);
        return NULL;
    }

    lk = ngx_calloc(sizeof(ngx_pico_lookup_t), log);
    if (lk == NULL) {
        return NULL;
    }

    lk->handler = handler;
    lk->data = data;
    lk->worker = w;

    return lk;
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
    ngx_pico_lookup_t *lk;
    redisAsyncContext *ac;
    u_char             tkey[sizeof("pico:token:") - 1 + PICO_TOKEN_ID_LEN];

    lk = ngx_pico_redis_lookup_new(w, id, log, handler, data, &ac);
    if (lk == NULL) {
        return NULL;
    }

    if (token) {
        ngx_memcpy(ngx_cpymem(tkey, "pico:token:", 11), token + 5,
                   PICO_TOKEN_ID_LEN);

        if (ngx_pico_redis_hmget(ac, ngx_pico_redis_token_reply, lk, tkey,
                                 sizeof(tkey), ngx_pico_token_fields,
                                 2) != NGX_OK) {
            ngx_free(lk);
            return NULL;
        }
    }

    if (ngx_pico_redis_send_session(lk, ac, id, log) != NGX_OK) {
        return NULL;
    }

    return lk;
}


/*
 * As ngx_pico_redis_lookup(), with the preview link whose SHA-256 is
 * digest (64 hex) instead of a token: the record's pv_* fields.
 */
ngx_pico_lookup_t *
ngx_pico_redis_lookup_preview(ngx_pico_worker_t *w, u_char *id, u_char *digest,
                              ngx_log_t                 *log,
                              ngx_pico_lookup_handler_pt handler, void *data)
{
    ngx_pico_lookup_t *lk;
    redisAsyncContext *ac;
    u_char             pkey[sizeof("pico:preview:") - 1 + 64];

    lk = ngx_pico_redis_lookup_new(w, id, log, handler, data, &ac);
    if (lk == NULL) {
        return NULL;
    }

    ngx_memcpy(ngx_cpymem(pkey, "pico:preview:", 13), digest, 64);

    if (ngx_pico_redis_hmget(ac, ngx_pico_redis_preview_reply, lk, pkey,
                             sizeof(pkey), ngx_pico_preview_fields,
                             3) != NGX_OK) {
        ngx_free(lk);
        return NULL;
    }

    if (ngx_pico_redis_send_session(lk, ac, id, log) != NGX_OK) {
        return NULL;
    }

    return lk;
}


/* the session's HMGET, after the token's or the link's (pending 1) */
static ngx_int_t
ngx_pico_redis_send_session(ngx_pico_lookup_t *lk, redisAsyncContext *ac,
                            u_char *id, ngx_log_t *log)
{
    u_char skey[sizeof("pico:session:") - 1 + PICO_ID_LEN];

    ngx_memcpy(ngx_cpymem(skey, "pico:session:", 13), id, PICO_ID_LEN);

    if (ngx_pico_redis_hmget(ac, ngx_pico_redis_session_reply, lk, skey,
                             sizeof(skey), ngx_pico_session_fields,
                             3) != NGX_OK) {
        if (lk->pending) {
            /* the token reply will free it */
            lk->handler = NULL;
            lk->error = "command failed";

        } else {
            ngx_free(lk);
        }

        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "pico redis lookup %p sent, %ui replies to come", lk,
                   lk->pending);

    lk->timer.handler = ngx_pico_redis_lookup_timeout;
    lk->timer.data = lk;
    lk->timer.log = log;
    ngx_add_timer(&lk->timer, lk->worker->pmcf->redis_timeout);

    return NGX_OK;
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
    ngx_pico_lookup_handler_pt handler;

    w = lk->worker;
    handler = lk->handler;
    data = lk->data;

    /* lk may be freed below, with the context */
    ngx_pico_redis_lookup_cancel(lk);

    /*
     * This lookup failed, the others on the connection wait on: a Redis
     * that is slow for a moment (CLIENT PAUSE, a slow command) answers
     * them.  One that answered nothing while NGX_PICO_HUNG lookups timed
     * out is treated as gone: the connection is dropped (what was pending
     * on it fails at once) and made again on the next request.
     */
    if (++w->cmd_timeouts >= NGX_PICO_HUNG) {
        ngx_log_error(NGX_LOG_ERR, w->log, 0,
                      "pico: redis \"%V\": %ui lookups timed out without "
                      "an answer, reconnecting",
                      &w->pmcf->redis, w->cmd_timeouts);
        w->cmd_timeouts = 0;
        ngx_pico_redis_drop(w);
    }

    ngx_pico_metrics_lookup(w->pmcf, NGX_PICO_LOOKUP_TIMEOUT);

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

    if (reply) {
        lk->worker->cmd_timeouts = 0;
    }

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
ngx_pico_redis_preview_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_pico_lookup_t *lk = privdata;
    ngx_pico_field_t  *fields[] = {&lk->pv_session, &lk->pv_port,
                                   &lk->pv_expires};

    ngx_pico_redis_fields(lk, r, "unexpected reply to HMGET pico:preview",
                          fields, 3);
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

    ngx_pico_metrics_lookup(lk->worker->pmcf, lk->error ? NGX_PICO_LOOKUP_ERROR
                                              : lk->status.present
                                                  ? NGX_PICO_LOOKUP_FOUND
                                                  : NGX_PICO_LOOKUP_NOT_FOUND);

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
    rec.preview_found = lk->pv_session.present;
    rec.preview_session.data = lk->pv_session.data;
    rec.preview_session.len = lk->pv_session.len;
    rec.preview_port.data = lk->pv_port.data;
    rec.preview_port.len = lk->pv_port.len;
    rec.preview_expires.data = lk->pv_expires.data;
    rec.preview_expires.len = lk->pv_expires.len;

    handler(lk->data, &rec, NULL);

    ngx_free(lk);
}
