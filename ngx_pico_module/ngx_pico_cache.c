/*
 * The per-worker cache of session checks: session id -> endpoint and
 * owner of a running session, token id -> the SHA-256 and principal of a
 * token that was just checked.  A CONNECT whose session (and token) are
 * here opens without a Redis round trip (ngx_pico_session.c).
 *
 * Only answers that led to a 200 are kept, never a missing record, another
 * status or a bad token: what the cache says is only ever "yes", and
 * anything it cannot confirm goes to Redis.  It stays exact through
 * pico:events (docs/redis.md): a deleted, changed or revoked key is
 * dropped (ngx_pico_cache_drop()), every (re)subscribe empties it and a
 * lost subscription switches it off (ngx_pico_cache_reset()).  Bounded in
 * entries (pico_cache_size, least recently used out first) and in age
 * (pico_cache_max_age), so a message lost without the connection failing
 * cannot keep a stale entry for long.
 *
 * A lookup's answer is written only if no event came while it was on its
 * way (w->cache_gen, read when the lookup was sent): an answer Redis gave
 * before a change can reach the worker after the change's event.
 *
 * Per worker, not in shared memory: every worker subscribes to pico:events
 * already, so each keeps its own copy exact without locks, and a miss
 * costs one lookup per worker and session.  Nothing here knows a tunnel,
 * a request or Redis.
 */

#include "ngx_pico_module.h"

typedef struct {
    ngx_str_node_t sn;    /* in w->cache_tree, sn.str the key */
    ngx_queue_t    queue; /* in w->cache_lru, most recent first */
    ngx_msec_t     expires;
    ngx_str_t      value; /* endpoint, or token SHA-256 (hex) */
    ngx_str_t      owner; /* owner, or token principal */
    u_char         key[1 + PICO_ID_LEN];
} ngx_pico_cache_entry_t;

static void ngx_pico_cache_key(ngx_str_t *k, u_char *buf, ngx_uint_t kind,
                               u_char *id);
static ngx_pico_cache_entry_t *ngx_pico_cache_lookup(ngx_pico_worker_t *w,
                                                     ngx_str_t         *k);
static void                    ngx_pico_cache_remove(ngx_pico_worker_t      *w,
                                                     ngx_pico_cache_entry_t *e);


void
ngx_pico_cache_init(ngx_pico_worker_t *w)
{
    ngx_rbtree_init(&w->cache_tree, &w->cache_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&w->cache_lru);
}


void
ngx_pico_cache_exit(ngx_pico_worker_t *w)
{
    ngx_pico_cache_reset(w, 0);
}


/* the kind's letter and the id: sessions and tokens never collide */
static void
ngx_pico_cache_key(ngx_str_t *k, u_char *buf, ngx_uint_t kind, u_char *id)
{
    size_t len;

    len = kind == NGX_PICO_CACHE_SESSION ? PICO_ID_LEN : PICO_TOKEN_ID_LEN;

    buf[0] = kind == NGX_PICO_CACHE_SESSION ? 's' : 't';
    ngx_memcpy(buf + 1, id, len);

    k->data = buf;
    k->len = 1 + len;
}


static ngx_pico_cache_entry_t *
ngx_pico_cache_lookup(ngx_pico_worker_t *w, ngx_str_t *k)
{
    ngx_str_node_t *sn;

    sn = ngx_str_rbtree_lookup(&w->cache_tree, k,
                               ngx_crc32_short(k->data, k->len));
    if (sn == NULL) {
        return NULL;
    }

    return (ngx_pico_cache_entry_t *)((u_char *)sn -
                                      offsetof(ngx_pico_cache_entry_t, sn));
}


/*
 * NGX_OK: id is cached, younger than pico_cache_max_age; value and owner
 * point into the entry, valid until the event loop runs again.
 */
ngx_int_t
ngx_pico_cache_find(ngx_pico_worker_t *w, ngx_uint_t kind, u_char *id,
                    ngx_str_t *value, ngx_str_t *owner)
{
    ngx_str_t               k;
    ngx_pico_cache_entry_t *e;
    u_char                  buf[1 + PICO_ID_LEN];

    if (!w->cache_live || w->cache_n == 0) {
        return NGX_DECLINED;
    }

    ngx_pico_cache_key(&k, buf, kind, id);

    e = ngx_pico_cache_lookup(w, &k);
    if (e == NULL) {
        return NGX_DECLINED;
    }

    if ((ngx_msec_int_t)(e->expires - ngx_current_msec) <= 0) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, w->log, 0,
                       "pico cache \"%V\" too old", &k);
        ngx_pico_cache_remove(w, e);
        return NGX_DECLINED;
    }

    ngx_queue_remove(&e->queue);
    ngx_queue_insert_head(&w->cache_lru, &e->queue);

    *value = e->value;
    *owner = e->owner;

    return NGX_OK;
}


/*
 * Keeps what Redis said about id, unless the cache is off, or an event
 * came since gen was read (the answer may predate it).
 */
void
ngx_pico_cache_put(ngx_pico_worker_t *w, ngx_uint_t kind, u_char *id,
                   ngx_uint_t gen, ngx_str_t *value, ngx_str_t *owner)
{
    ngx_str_t               k;
    ngx_queue_t            *q;
    ngx_pico_cache_entry_t *e;
    u_char                  buf[1 + PICO_ID_LEN];

    if (!w->cache_live || gen != w->cache_gen || w->pmcf->cache_size == 0) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0,
                       "pico cache put refused, live:%ui gen:%s", w->cache_live,
                       gen != w->cache_gen ? "changed" : "same");
        return;
    }

    ngx_pico_cache_key(&k, buf, kind, id);

    e = ngx_pico_cache_lookup(w, &k);
    if (e) {
        ngx_pico_cache_remove(w, e);
    }

    if (w->cache_n >= w->pmcf->cache_size) {
        q = ngx_queue_last(&w->cache_lru);
        ngx_pico_cache_remove(w,
                              ngx_queue_data(q, ngx_pico_cache_entry_t, queue));
    }

    e = ngx_alloc(sizeof(ngx_pico_cache_entry_t) + value->len + owner->len,
                  w->log);
    if (e == NULL) {
        return;
    }

    ngx_memcpy(e->key, k.data, k.len);
    e->sn.str.data = e->key;
    e->sn.str.len = k.len;
    e->sn.node.key = ngx_crc32_short(k.data, k.len);

    e->value.data = (u_char *)(e + 1);
    e->value.len = value->len;
    ngx_memcpy(e->value.data, value->data, value->len);

    e->owner.data = e->value.data + value->len;
    e->owner.len = owner->len;
    ngx_memcpy(e->owner.data, owner->data, owner->len);

    e->expires = ngx_current_msec + w->pmcf->cache_max_age;

    ngx_rbtree_insert(&w->cache_tree, &e->sn.node);
    ngx_queue_insert_head(&w->cache_lru, &e->queue);
    w->cache_n++;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0, "pico cache put \"%V\", %ui",
                   &k, w->cache_n);
}


/* pico:events said id changed: forget it, and any answer on its way */
void
ngx_pico_cache_drop(ngx_pico_worker_t *w, ngx_uint_t kind, u_char *id)
{
    ngx_str_t               k;
    ngx_pico_cache_entry_t *e;
    u_char                  buf[1 + PICO_ID_LEN];

    w->cache_gen++;

    ngx_pico_cache_key(&k, buf, kind, id);

    e = ngx_pico_cache_lookup(w, &k);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0, "pico cache drop \"%V\"%s",
                   &k, e ? "" : ", not cached");

    if (e) {
        ngx_pico_cache_remove(w, e);
    }
}


/*
 * Empties the cache; live says whether it may be used from now on (only
 * while pico:events is subscribed).
 */
void
ngx_pico_cache_reset(ngx_pico_worker_t *w, ngx_uint_t live)
{
    ngx_queue_t *q;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0,
                   "pico cache reset, %ui entries, live:%ui", w->cache_n, live);

    w->cache_gen++;
    w->cache_live = live && w->pmcf->cache_size != 0;

    while (!ngx_queue_empty(&w->cache_lru)) {
        q = ngx_queue_head(&w->cache_lru);
        ngx_pico_cache_remove(w,
                              ngx_queue_data(q, ngx_pico_cache_entry_t, queue));
    }
}


static void
ngx_pico_cache_remove(ngx_pico_worker_t *w, ngx_pico_cache_entry_t *e)
{
    ngx_rbtree_delete(&w->cache_tree, &e->sn.node);
    ngx_queue_remove(&e->queue);
    w->cache_n--;
    ngx_free(e);
}
