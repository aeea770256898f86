/*
 * Tunnel accounting of ngx_pico_module: the deltas of pico:tunnels:<id>
 * (open, opened, bytes_up, bytes_down, last_activity), merged per session
 * in a per-worker table and sent from a timer on the command connection
 * (ngx_pico_redis.c) as EVALSHA of one small Lua script that only touches
 * the counters while pico:session:<id> exists.
 *
 *   - the script is loaded once per connection (SCRIPT LOAD, pipelined in
 *     front of the first EVALSHA); a NOSCRIPT answer (a SCRIPT FLUSH, a
 *     restarted Redis) is sent again as EVAL
 *   - a session has one entry however many tunnels and updates it has;
 *     an update is removed from the table when sent and merged back when
 *     its reply says it was not applied (connection lost, error), so an
 *     "open -1" is never lost while the worker lives
 *   - bounded: at most NGX_PICO_ACCT_INFLIGHT updates in hiredis' buffers
 *     at a time, the rest wait merged; at most NGX_PICO_ACCT_MAX sessions
 *     in the table: beyond it a byte-only update of a new session is
 *     dropped and counted (a warning says how many); an update carrying
 *     an open delta is always kept (there are no more such sessions than
 *     tunnels)
 *
 * Nothing here knows a tunnel.  The key schema is docs/redis.md.
 */

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <openssl/evp.h>

#include "ngx_pico_module.h"

#define NGX_PICO_ACCT_DELAY 10 /* ms: updates of that long go together */
#define NGX_PICO_ACCT_RETRY 100
#define NGX_PICO_ACCT_INFLIGHT 1024
#define NGX_PICO_ACCT_MAX 65536

/* pending deltas of one session; in flight the same, as privdata */
typedef struct {
    ngx_str_node_t     sn; /* keyed by the id */
    ngx_pico_worker_t *worker;
    ngx_int_t          open;
    ngx_int_t          opened;
    off_t              up;
    off_t              down;
    uint64_t           last; /* unix ms, 0: none */
    ngx_uint_t         eval; /* sent as EVAL after NOSCRIPT */
    u_char             id[PICO_ID_LEN];
} ngx_pico_acct_t;

static void      ngx_pico_account_flush_handler(ngx_event_t *ev);
static void      ngx_pico_account_flush(ngx_pico_worker_t *w, ngx_uint_t all);
static ngx_int_t ngx_pico_account_send(ngx_pico_worker_t *w,
                                       redisAsyncContext *ac,
                                       ngx_pico_acct_t   *a);
static void ngx_pico_account_reply(redisAsyncContext *ac, void *r, void *pd);
static ngx_int_t ngx_pico_account_merge(ngx_pico_worker_t *w, u_char *id,
                                        ngx_int_t open, ngx_int_t opened,
                                        off_t up, off_t down, uint64_t last);

/*
 * KEYS[1] pico:session:<id>, KEYS[2] pico:tunnels:<id>;
 * ARGV open delta, opened delta, bytes_up delta, bytes_down delta,
 * last_activity (unix ms, "0": leave it).  Every field is incremented, by
 * 0 too: a tunnel opened and closed within one merged update still leaves
 * "open" 0 in the hash, not missing.  The same update appends a
 * tunnel_opened event per open and a tunnel_closed per close to the
 * owner's stream (as backend/store/events.c does: MAXLEN ~ 10000, type,
 * session_id, at); merged, the opens of one update come before its closes.
 */
static const char ngx_pico_account_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "local f = {'open', 'opened', 'bytes_up', 'bytes_down'} "
    "for i = 1, 4 do "
    "redis.call('HINCRBY', KEYS[2], f[i], ARGV[i]) "
    "end "
    "if ARGV[5] ~= '0' then "
    "redis.call('HSET', KEYS[2], 'last_activity', ARGV[5]) end "
    /* tunnel events: opens first, then closes (opened - open) */
    "local opens = tonumber(ARGV[2]) "
    "local closes = opens - tonumber(ARGV[1]) "
    "local owner = redis.call('HGET', KEYS[1], 'owner') "
    "if owner and opens + closes > 0 then "
    "local t = redis.call('TIME') "
    "local at = t[1] .. string.format('%03d', math.floor(t[2] / 1000)) "
    "local s = 'pico:stream:' .. owner "
    "local id = string.sub(KEYS[1], 14) "
    "for i = 1, opens + closes do "
    "local ty = 'tunnel_closed' "
    "if i <= opens then ty = 'tunnel_opened' end "
    "redis.call('XADD', s, 'MAXLEN', '~', '10000', '*', 'type', ty, "
    "'session_id', id, 'at', at) end end "
    "return 1";


ngx_int_t
ngx_pico_account_init(ngx_pico_worker_t *w)
{
    unsigned int n;
    u_char       md[EVP_MAX_MD_SIZE];

    ngx_rbtree_init(&w->acct_tree, &w->acct_sentinel,
                    ngx_str_rbtree_insert_value);

    /* EVALSHA names the script by its SHA-1, as SCRIPT LOAD answers */
    if (EVP_Digest(ngx_pico_account_script, sizeof(ngx_pico_account_script) - 1,
                   md, &n, EVP_sha1(), NULL) != 1 ||
        n != 20) {
        return NGX_ERROR;
    }

    ngx_hex_dump(w->acct_sha, md, 20);

    w->acct_flush.handler = ngx_pico_account_flush_handler;
    w->acct_flush.data = w;
    w->acct_flush.log = w->log;
    w->acct_flush.cancelable = 1;

    return NGX_OK;
}


/* the worker exits: everything pending goes into the buffers now */
void
ngx_pico_account_exit(ngx_pico_worker_t *w)
{
    if (w->acct_flush.timer_set) {
        ngx_del_timer(&w->acct_flush);
    }

    ngx_pico_account_flush(w, 1);
}


/*
 * Adds deltas to the session's pending update.  Never waits for Redis;
 * NGX_DECLINED: dropped (the table is full, only bytes were asked for).
 */
ngx_int_t
ngx_pico_account(ngx_pico_worker_t *w, u_char *id, ngx_int_t open,
                 ngx_int_t opened, off_t up, off_t down)
{
    uint64_t    last;
    ngx_time_t *tp;

    tp = ngx_timeofday();
    /* a close (open < 0) is activity too: the idle clock starts there */
    last = (up || down || opened || open < 0)
               ? (uint64_t)tp->sec * 1000 + tp->msec
               : 0;

    ngx_log_debug6(NGX_LOG_DEBUG_HTTP, w->log, 0,
                   "pico account %*s open:%i opened:%i up:%O down:%O",
                   (size_t)PICO_ID_LEN, id, open, opened, up, down);

    if (ngx_pico_account_merge(w, id, open, opened, up, down, last) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (!w->acct_flush.timer_set && !w->exiting) {
        ngx_add_timer(&w->acct_flush, NGX_PICO_ACCT_DELAY);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_pico_account_merge(ngx_pico_worker_t *w, u_char *id, ngx_int_t open,
                       ngx_int_t opened, off_t up, off_t down, uint64_t last)
{
    uint32_t         hash;
    ngx_str_t        key;
    ngx_pico_acct_t *a;

    key.data = id;
    key.len = PICO_ID_LEN;
    hash = ngx_crc32_short(id, PICO_ID_LEN);

    a = (ngx_pico_acct_t *)ngx_str_rbtree_lookup(&w->acct_tree, &key, hash);

    if (a == NULL) {
        if (w->acct_n >= NGX_PICO_ACCT_MAX && open == 0 && opened == 0) {
            w->acct_dropped++;
            return NGX_DECLINED;
        }

        a = ngx_calloc(sizeof(ngx_pico_acct_t), w->log);
        if (a == NULL) {
            w->acct_dropped++;
            return NGX_ERROR;
        }

        a->worker = w;
        ngx_memcpy(a->id, id, PICO_ID_LEN);
        a->sn.str.data = a->id;
        a->sn.str.len = PICO_ID_LEN;
        a->sn.node.key = hash;
        ngx_rbtree_insert(&w->acct_tree, &a->sn.node);
        w->acct_n++;
    }

    a->open += open;
    a->opened += opened;
    a->up += up;
    a->down += down;
    a->last = ngx_max(a->last, last);

    return NGX_OK;
}


static void
ngx_pico_account_flush_handler(ngx_event_t *ev)
{
    ngx_pico_account_flush(ev->data, 0);
}


/* sends what is pending; all: ignore the in-flight bound (exit) */
static void
ngx_pico_account_flush(ngx_pico_worker_t *w, ngx_uint_t all)
{
    const char        *argv[3];
    size_t             argvlen[3];
    redisAsyncContext *ac;
    ngx_pico_acct_t   *a;

    if (w->acct_dropped) {
        ngx_log_error(NGX_LOG_WARN, w->log, 0,
                      "pico: %ui accounting updates dropped: more than %d "
                      "sessions waiting for redis \"%V\"",
                      w->acct_dropped, NGX_PICO_ACCT_MAX, &w->pmcf->redis);
        w->acct_dropped = 0;
    }

    ac = w->cmd;

    if (ac == NULL) {
        /* Redis is away: the reconnect policy is the Redis file's */
        if (w->acct_n && !all && !w->exiting) {
            ngx_add_timer(&w->acct_flush, NGX_PICO_ACCT_RETRY);
        }

        return;
    }

    if (w->acct_loaded != ac && w->acct_n) {
        argv[0] = "SCRIPT";
        argvlen[0] = 6;
        argv[1] = "LOAD";
        argvlen[1] = 4;
        argv[2] = ngx_pico_account_script;
        argvlen[2] = sizeof(ngx_pico_account_script) - 1;

        if (redisAsyncCommandArgv(ac, NULL, NULL, 3, argv, argvlen) !=
            REDIS_OK) {
            return;
        }

        w->acct_loaded = ac;
    }

    while (w->acct_n && (all || w->acct_inflight < NGX_PICO_ACCT_INFLIGHT)) {
        a = (ngx_pico_acct_t *)ngx_rbtree_min(w->acct_tree.root,
                                              w->acct_tree.sentinel);
        ngx_rbtree_delete(&w->acct_tree, &a->sn.node);
        w->acct_n--;

        if (a->open == 0 && a->opened == 0 && a->up == 0 && a->down == 0 &&
            a->last == 0) {
            ngx_free(a);
            continue;
        }

        if (ngx_pico_account_send(w, ac, a) != NGX_OK) {
            (void)ngx_pico_account_merge(w, a->id, a->open, a->opened, a->up,
                                         a->down, a->last);
            ngx_free(a);
            break;
        }
    }

    if (w->acct_n && !all && !w->exiting && !w->acct_flush.timer_set) {
        ngx_add_timer(&w->acct_flush, NGX_PICO_ACCT_DELAY);
    }
}


static ngx_int_t
ngx_pico_account_send(ngx_pico_worker_t *w, redisAsyncContext *ac,
                      ngx_pico_acct_t *a)
{
    ngx_uint_t  i;
    size_t      argvlen[10];
    const char *argv[10];
    u_char      skey[sizeof("pico:session:") - 1 + PICO_ID_LEN];
    u_char      tkey[sizeof("pico:tunnels:") - 1 + PICO_ID_LEN];
    u_char      num[5][NGX_OFF_T_LEN + 2];

    ngx_memcpy(ngx_cpymem(skey, "pico:session:", 13), a->id, PICO_ID_LEN);
    ngx_memcpy(ngx_cpymem(tkey, "pico:tunnels:", 13), a->id, PICO_ID_LEN);

    if (a->eval) {
        argv[0] = "EVAL";
        argvlen[0] = 4;
        argv[1] = ngx_pico_account_script;
        argvlen[1] = sizeof(ngx_pico_account_script) - 1;

    } else {
        argv[0] = "EVALSHA";
        argvlen[0] = 7;
        argv[1] = (char *)w->acct_sha;
        argvlen[1] = sizeof(w->acct_sha);
    }

    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (char *)skey;
    argvlen[3] = sizeof(skey);
    argv[4] = (char *)tkey;
    argvlen[4] = sizeof(tkey);

    argvlen[5] = ngx_sprintf(num[0], "%i", a->open) - num[0];
    argvlen[6] = ngx_sprintf(num[1], "%i", a->opened) - num[1];
    argvlen[7] = ngx_sprintf(num[2], "%O", a->up) - num[2];
    argvlen[8] = ngx_sprintf(num[3], "%O", a->down) - num[3];
    argvlen[9] = ngx_sprintf(num[4], "%uL", a->last) - num[4];

    for (i = 0; i < 5; i++) {
        argv[5 + i] = (char *)num[i];
    }

    if (redisAsyncCommandArgv(ac, ngx_pico_account_reply, a, 10, argv,
                              argvlen) != REDIS_OK) {
        return NGX_ERROR;
    }

    w->acct_inflight++;

    return NGX_OK;
}


/* applied (1), or nothing to apply to (0: the session is gone) */
static void
ngx_pico_account_reply(redisAsyncContext *ac, void *r, void *pd)
{
    redisReply        *reply = r;
    ngx_pico_acct_t   *a = pd;
    ngx_pico_worker_t *w;

    w = a->worker;
    w->acct_inflight--;

    if (reply) {
        w->cmd_timeouts = 0;
    }

    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        ngx_free(a);
        return;
    }

    if (w->exiting) {
        ngx_free(a);
        return;
    }

    if (reply && reply->type == REDIS_REPLY_ERROR &&
        ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0 && !a->eval) {
        /* the script cache was flushed: the text, and load it again */
        w->acct_loaded = NULL;
        a->eval = 1;

        if (ngx_pico_account_send(w, ac, a) == NGX_OK) {
            return;
        }
    }

    ngx_log_error(NGX_LOG_WARN, w->log, 0,
                  "pico: session %*s: accounting update not applied (%s), "
                  "sent again",
                  (size_t)PICO_ID_LEN, a->id,
                  reply == NULL                      ? "connection lost"
                  : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                     : "unexpected reply");

    (void)ngx_pico_account_merge(w, a->id, a->open, a->opened, a->up, a->down,
                                 a->last);
    ngx_free(a);

    if (!w->acct_flush.timer_set) {
        ngx_add_timer(&w->acct_flush, NGX_PICO_ACCT_RETRY);
    }
}
