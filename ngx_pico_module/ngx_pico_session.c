/*
 * The session check of a CONNECT: may this request open a tunnel, and to
 * which endpoint.  First the worker's cache (ngx_pico_cache.c): a running
 * session, and the token when auth is on, checked moments ago, open at
 * once.  Otherwise a Redis lookup (ngx_pico_redis_lookup.c) whose
 * handler gives the verdict on token, owner and status, and keeps a
 * verdict that opens a tunnel in the cache.
 *
 * It also hears pico:events for the worker (ngx_pico_redis_init()): a
 * deleted session leaves the cache and closes its tunnels
 * (ngx_pico_tunnel.c), a changed session or a revoked token leaves the
 * cache, every (re)subscribe empties the cache and re-checks the open
 * tunnels, a lost subscription switches the cache off.
 */

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ngx_pico_module.h"

static ngx_int_t ngx_pico_session_cached(ngx_pico_tunnel_t *t);
static ngx_int_t ngx_pico_start_lookup(ngx_pico_tunnel_t *t);
static void      ngx_pico_lookup_handler(void *data, ngx_pico_record_t *rec,
                                         char *error);
static ngx_int_t ngx_pico_check_token(ngx_pico_tunnel_t *t, ngx_str_t *sha256,
                                      ngx_str_t *principal);
static ngx_int_t ngx_pico_check_record(ngx_pico_tunnel_t *t,
                                       ngx_pico_record_t *rec);
static void ngx_pico_session_keep(ngx_pico_tunnel_t *t, ngx_pico_record_t *rec);


/* NGX_DONE: the request waits for (or already has) its answer */
ngx_int_t
ngx_pico_session_check(ngx_pico_tunnel_t *t)
{
    if (ngx_pico_session_cached(t) == NGX_OK) {
        return NGX_DONE;
    }

    return ngx_pico_start_lookup(t);
}


/*
 * NGX_OK: the cache knows the session running (and the token, its
 * principal the owner), and the tunnel connects.  Anything the cache
 * cannot confirm is Redis' to answer.
 */
static ngx_int_t
ngx_pico_session_cached(ngx_pico_tunnel_t *t)
{
    ngx_str_t           endpoint, owner, sha256, principal;
    ngx_pico_worker_t  *w;
    ngx_http_request_t *r;

    w = t->worker;
    r = t->request;

    if (ngx_pico_cache_find(w, NGX_PICO_CACHE_SESSION, t->id, &endpoint,
                            &owner) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (t->has_token) {
        if (ngx_pico_cache_find(w, NGX_PICO_CACHE_TOKEN, t->token + 5, &sha256,
                                &principal) != NGX_OK ||
            ngx_pico_check_token(t, &sha256, &principal) != NGX_OK ||
            owner.len != principal.len ||
            ngx_strncmp(owner.data, principal.data, owner.len) != 0) {
            return NGX_DECLINED;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pico cache hit: endpoint:\"%V\"", &endpoint);

    t->checked = 1;
    t->cached = 1;

    /* as after a lookup: the tunnel's answers finalize the request */
    t->state = NGX_PICO_ST_LOOKUP;
    r->main->count++;

    ngx_pico_tunnel_connect(t, &endpoint);

    return NGX_OK;
}


static ngx_int_t
ngx_pico_start_lookup(ngx_pico_tunnel_t *t)
{
    ngx_http_request_t *r;

    r = t->request;

    /* an event from now on may make the answer stale before it comes */
    t->cache_gen = t->worker->cache_gen;

    t->lookup =
        ngx_pico_redis_lookup(t->worker, t->id, t->has_token ? t->token : NULL,
                              r->connection->log, ngx_pico_lookup_handler, t);
    if (t->lookup == NULL) {
        ngx_pico_release(t);
        ngx_pico_set_status(t, "redis_down");
        return ngx_pico_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                             "Session store unavailable\n", NULL);
    }

    /* the request waits: the lookup's handler finalizes it */
    t->state = NGX_PICO_ST_LOOKUP;
    r->main->count++;

    return NGX_DONE;
}


/* what Redis said about the session (and the token), or why it did not */
static void
ngx_pico_lookup_handler(void *data, ngx_pico_record_t *rec, char *error)
{
    ngx_pico_tunnel_t *t = data;

    t->lookup = NULL;
    t->checked = 1;

    if (rec == NULL) {
        ngx_log_error(NGX_LOG_ERR, t->request->connection->log, 0,
                      "pico: session %V: session lookup failed: %s",
                      &t->session_id, error);
        ngx_pico_set_status(t, "redis_down");
        ngx_pico_reply(t, NGX_HTTP_SERVICE_UNAVAILABLE,
                       "Session store unavailable\n", NULL);
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, t->request->connection->log, 0,
                   "pico lookup: found:%ui status:\"%V\" endpoint:\"%V\"",
                   rec->found, &rec->status, &rec->endpoint);

    if (t->has_token && (!rec->token_found ||
                         ngx_pico_check_token(t, &rec->token_sha256,
                                              &rec->principal) != NGX_OK)) {
        ngx_pico_set_status(t, "unauthorized");
        ngx_pico_reply(t, NGX_HTTP_UNAUTHORIZED, "Invalid token\n",
                       NGX_PICO_AUTH_INVALID);
        return;
    }

    if (ngx_pico_check_record(t, rec) != NGX_OK) {
        return;
    }

    ngx_pico_session_keep(t, rec);

    ngx_pico_tunnel_connect(t, &rec->endpoint);
}


/* NGX_OK: the presented token hashes to sha256 and has a principal */
static ngx_int_t
ngx_pico_check_token(ngx_pico_tunnel_t *t, ngx_str_t *sha256,
                     ngx_str_t *principal)
{
    unsigned int n;
    u_char       md[EVP_MAX_MD_SIZE], hex[64];

    if (!pico_parse_sha256_hex(sha256->data, sha256->len) ||
        principal->len == 0) {
        return NGX_DECLINED;
    }

    if (EVP_Digest(t->token, PICO_TOKEN_LEN, md, &n, EVP_sha256(), NULL) != 1 ||
        n != 32) {
        return NGX_ERROR;
    }

    ngx_hex_dump(hex, md, 32);

    /* constant time: the digest must not leak through timing */
    if (CRYPTO_memcmp(hex, sha256->data, 64) != 0) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* NGX_OK: a running session of this principal; otherwise answered */
static ngx_int_t
ngx_pico_check_record(ngx_pico_tunnel_t *t, ngx_pico_record_t *rec)
{
    /* another principal's session is answered as if it did not exist */
    if (!rec->found ||
        (t->has_token && (rec->owner.len != rec->principal.len ||
                          ngx_strncmp(rec->owner.data, rec->principal.data,
                                      rec->owner.len) != 0))) {
        ngx_pico_reply(t, NGX_HTTP_NOT_FOUND, "Session not found\n", NULL);
        return NGX_DECLINED;
    }

    /* paused (POST .../pause or idle stop): a clear 409, not "not ready";
     * the client resumes it through the API (docs/api.md) */
    if (rec->status.len == sizeof("paused") - 1 &&
        ngx_strncmp(rec->status.data, "paused", rec->status.len) == 0) {
        ngx_pico_reply(t, NGX_HTTP_CONFLICT,
                       "{\"error\":{\"code\":\"session_paused\",\"message\":"
                       "\"the session is paused; POST "
                       "/v1/sessions/<id>/resume first\",\"status\":"
                       "\"paused\"}}\n",
                       NULL);
        return NGX_DECLINED;
    }

    if (rec->status.len != sizeof("running") - 1 ||
        ngx_strncmp(rec->status.data, "running", rec->status.len) != 0 ||
        rec->endpoint.len == 0) {
        ngx_pico_reply(t, NGX_HTTP_SERVICE_UNAVAILABLE, "Sandbox not ready\n",
                       NULL);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* a verdict that opens a tunnel: the next CONNECT needs no lookup */
static void
ngx_pico_session_keep(ngx_pico_tunnel_t *t, ngx_pico_record_t *rec)
{
    ngx_pico_worker_t *w;

    w = t->worker;

    ngx_pico_cache_put(w, NGX_PICO_CACHE_SESSION, t->id, t->cache_gen,
                       &rec->endpoint, &rec->owner);

    if (t->has_token) {
        ngx_pico_cache_put(w, NGX_PICO_CACHE_TOKEN, t->token + 5, t->cache_gen,
                           &rec->token_sha256, &rec->principal);
    }
}


/* the event handler of pico:events (ngx_pico_redis.c) */
void
ngx_pico_session_event(ngx_pico_worker_t *w, ngx_uint_t kind, u_char *key)
{
    switch (kind) {

    case PICO_EVENT_DELETED:
        ngx_pico_cache_drop(w, NGX_PICO_CACHE_SESSION, key);
        ngx_pico_tunnel_deleted(w, key);
        return;

    case PICO_EVENT_CHANGED:
        ngx_pico_cache_drop(w, NGX_PICO_CACHE_SESSION, key);
        return;

    case PICO_EVENT_REVOKED:
        ngx_pico_cache_drop(w, NGX_PICO_CACHE_TOKEN, key);
        return;

    default:
        /* not understood: it may have been about anything cached */
        ngx_pico_cache_reset(w, w->cache_live);
        return;
    }
}


/* (re)subscribed: what was published while away is lost */
void
ngx_pico_session_subscribed(ngx_pico_worker_t *w)
{
    ngx_pico_cache_reset(w, 1);
    ngx_pico_tunnel_recheck(w);
}


/* no subscription: nothing would tell the cache what changes */
void
ngx_pico_session_unsubscribed(ngx_pico_worker_t *w)
{
    ngx_pico_cache_reset(w, 0);
}
