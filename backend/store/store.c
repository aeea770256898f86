/*
 * store.c - the Redis side of pico-backend (layout: docs/redis.md).
 *
 * Connections: a mutex-guarded free list of hiredis contexts. A thread
 * takes one, runs its commands and gives it back; a context that saw an
 * I/O or protocol error is dropped and the next caller connects afresh,
 * which is how the backend survives a Redis restart.
 *
 * Atomicity: creating a record (with the max_sessions check), changing it
 * only from an expected status, claiming sessions for deletion and
 * removing them are Lua scripts, each a single step for every backend on
 * the same Redis.
 *
 * Reading a record back (HGETALL into a session_record) is record.c;
 * the other concepts kept in Redis have a file each (command.h lists
 * them), all on this file's connections.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "store/record.h"
#include "store/store.h"
#include "core/util.h"

#define POOL_IDLE_MAX 32

struct store {
    pthread_mutex_t lock;
    redisContext *idle[POOL_IDLE_MAX];
    int nidle;
    char path[1024]; /* unix socket, or "" */
    char host[256];
    int port;
};

/* Creates the record with the max_sessions check in the same step.
 * Idempotent, since run() sends it again when a pooled connection broke
 * and the first attempt may have been written: ids are fresh random
 * UUIDs, so a record with ours is that attempt's, and is success (checked
 * before the limit, which our own record may have filled).
 * KEYS: session key, pico:expiry. ARGV: max, id, score, field/value... */
static const char create_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end\n"
    "if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 4))\n"
    "redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])\n"
    "return 1\n";

/* Changes fields only from an expected status, so a record that was
 * deleted (or claimed) meanwhile is never resurrected. A record that
 * already holds every value is success: that is this script's own
 * earlier attempt, resent by run() after its reply was lost.
 * KEYS: session key. ARGV: "st1|st2", field/value... */
static const char update_if_lua[] =
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if not st then return 0 end\n"
    "if not string.find('|' .. ARGV[1] .. '|', '|' .. st .. '|', 1, true) "
    "then\n"
    "  for i = 2, #ARGV, 2 do\n"
    "    if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then "
    "return 0 end\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 2))\n"
    "return 1\n";

/* Marks a pending or running session failed and brings its expiry
 * forward to ARGV[3] (unix seconds) if that is sooner, so a failed
 * sandbox stops counting against max_sessions soon while its record stays
 * visible long enough to read why. KEYS: session key, pico:expiry.
 * ARGV: id, reason, retain-until. */
static const char fail_lua[] =
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if st ~= 'pending' and st ~= 'running' and st ~= 'paused' then return 0 "
    "end\n"
    "redis.call('HSET', KEYS[1], 'status', 'failed', 'reason', ARGV[2], "
    "'endpoint', '')\n"
    "local until_s = tonumber(ARGV[3])\n"
    "local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])\n"
    "if cur and tonumber(cur) > until_s * 1000 then\n"
    "  local created = tonumber(redis.call('HGET', KEYS[1], 'created_at'))\n"
    "  redis.call('ZADD', KEYS[2], until_s * 1000, ARGV[1])\n"
    "  redis.call('HSET', KEYS[1], 'expires_at', until_s, 'ttl', "
    "until_s - (created or until_s))\n"
    "end\n"
    "redis.call('PUBLISH', 'pico:events', 'deleted ' .. ARGV[1])\n"
    "return 1\n";

/* The running sessions of one node and runtime, for the reaper's
 * liveness check. KEYS: pico:expiry. ARGV: node, runtime. */
static const char node_running_lua[] =
    "local out = {}\n"
    "for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do\n"
    "  local f = redis.call('HMGET', 'pico:session:' .. id, 'status', "
    "'node', 'runtime')\n"
    "  if f[1] == 'running' and f[2] == ARGV[1] and f[3] == ARGV[2] then\n"
    "    out[#out + 1] = id\n"
    "  end\n"
    "end\n"
    "return out\n";

/* Claims one session for deletion (DELETE, drain).
 * KEYS: session key, pico:expiry, pico:reaping. ARGV: id, now, lease. */
static const char claim_lua[] =
    "local exists = redis.call('EXISTS', KEYS[1]) == 1\n"
    "local r = redis.call('ZSCORE', KEYS[3], ARGV[1])\n"
    "if r and tonumber(r) > tonumber(ARGV[2]) then return 2 end\n"
    "local e = redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "if not exists and e == 0 and not r then return 0 end\n"
    "redis.call('ZADD', KEYS[3], tonumber(ARGV[2]) + tonumber(ARGV[3]), "
    "ARGV[1])\n"
    "if exists then redis.call('HSET', KEYS[1], 'status', 'terminating') "
    "redis.call('PUBLISH', 'pico:events', 'changed ' .. ARGV[1]) end\n"
    "return 1\n";

/* The reaper's claim: due sessions of this node, then expired leases of
 * this node's deletes that died. A session is destroyed by its own node
 * (its sandbox is there); an index entry without a record is anyone's.
 * Scores are read inside this script, so a PATCH (extend.c, one script
 * too) lands wholly before or after it: never a claim on a stale score.
 * KEYS: pico:expiry, pico:reaping. ARGV: now, lease, max, node. */
static const char claim_due_lua[] =
    "local now = tonumber(ARGV[1])\n"
    "local until_ms = now + tonumber(ARGV[2])\n"
    "local out = {}\n"
    "local function mine(id)\n"
    "  local n = redis.call('HGET', 'pico:session:' .. id, 'node')\n"
    "  return not n or n == ARGV[4]\n"
    "end\n"
    "local due = {}\n"
    "for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) "
    "do\n"
    "  if #due >= tonumber(ARGV[3]) then break end\n"
    "  if mine(id) then due[#due + 1] = id end\n"
    "end\n"
    "for _, id in ipairs(due) do\n"
    "  redis.call('ZREM', KEYS[1], id)\n"
    "  redis.call('ZADD', KEYS[2], until_ms, id)\n"
    "  local k = 'pico:session:' .. id\n"
    "  if redis.call('EXISTS', k) == 1 then\n"
    "    redis.call('HSET', k, 'status', 'terminating')\n"
    "    redis.call('PUBLISH', 'pico:events', 'changed ' .. id)\n"
    "  end\n"
    "  out[#out + 1] = id\n"
    "end\n"
    "local left = tonumber(ARGV[3]) - #out\n"
    "if left > 0 then\n"
    "  local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)\n"
    "  for _, id in ipairs(stale) do\n"
    "    if left > 0 and mine(id) then\n"
    "      redis.call('ZADD', KEYS[2], until_ms, id)\n"
    "      out[#out + 1] = id\n"
    "      left = left - 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* KEYS: session key, tunnels key, pico:expiry, pico:reaping. ARGV: id. */
static const char remove_lua[] =
    "redis.call('DEL', KEYS[1], KEYS[2])\n"
    "redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "redis.call('ZREM', KEYS[4], ARGV[1])\n"
    "redis.call('PUBLISH', 'pico:events', 'deleted ' .. ARGV[1])\n"
    "return 1\n";

store *store_open(const char *addr, char *err, size_t errlen)
{
    store *st = calloc(1, sizeof(*st));

    if (st == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&st->lock, NULL);
    if (!strncmp(addr, "unix:", 5)) {
        copy_str(st->path, sizeof(st->path), addr + 5);
    } else {
        const char *colon = strrchr(addr, ':');
        size_t n = colon ? (size_t)(colon - addr) : 0;
        long long port = 0;
        if (colon == NULL || n >= sizeof(st->host) ||
            parse_ll(colon + 1, &port) < 0 || port < 1 || port > 65535) {
            snprintf(err, errlen, "bad redis address %s", addr);
            free(st);
            return NULL;
        }
        memcpy(st->host, addr, n);
        st->host[n] = '\0';
        st->port = (int)port;
    }
    return st;
}

void store_close(store *st)
{
    int i;

    if (st == NULL)
        return;
    for (i = 0; i < st->nidle; i++)
        redisFree(st->idle[i]);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

static redisContext *connect_redis(store *st)
{
    struct timeval tv = {2, 0}, cmd_tv = {10, 0};
    redisContext *c;

    c = st->path[0] ? redisConnectUnixWithTimeout(st->path, tv)
                    : redisConnectWithTimeout(st->host, st->port, tv);
    if (c == NULL)
        return NULL;
    if (c->err) {
        log_warn("redis: cannot connect: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, cmd_tv);
    /* The runtime spawns runc; it must not inherit Redis connections. */
    fcntl(c->fd, F_SETFD, FD_CLOEXEC);
    return c;
}

/* Takes a context from the pool (or connects). *fresh says whether it was
 * just connected, so a failure on a stale pooled one can be retried. */
static redisContext *acquire(store *st, int *fresh)
{
    redisContext *c = NULL;

    pthread_mutex_lock(&st->lock);
    if (st->nidle > 0)
        c = st->idle[--st->nidle];
    pthread_mutex_unlock(&st->lock);
    *fresh = c == NULL;
    return c ? c : connect_redis(st);
}

static void release(store *st, redisContext *c)
{
    if (c == NULL)
        return;
    if (c->err) {
        redisFree(c); /* broken: the next caller reconnects */
        return;
    }
    pthread_mutex_lock(&st->lock);
    if (st->nidle < POOL_IDLE_MAX) {
        st->idle[st->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&st->lock);
    if (c)
        redisFree(c);
}

/* Runs one command; on a broken pooled connection, once more on a new one.
 * Returns NULL on connection errors and on Redis error replies (logged). */
static redisReply *run(store *st, int argc, const char **argv,
                       const size_t *lens)
{
    int attempt, fresh;

    for (attempt = 0; attempt < 2; attempt++) {
        redisContext *c = acquire(st, &fresh);
        redisReply *r;
        if (c == NULL) {
            store_count_error(STORE_ERR_CONNECTION);
            return NULL;
        }
        r = redisCommandArgv(c, argc, argv, lens);
        if (r == NULL) {
            store_count_error(STORE_ERR_CONNECTION);
            log_warn("redis: %s", c->errstr);
            release(st, c);
            if (fresh)
                return NULL;
            continue;
        }
        release(st, c);
        if (r->type == REDIS_REPLY_ERROR) {
            store_count_error(STORE_ERR_REPLY);
            log_error("redis: %s: %s", argv[0], r->str);
            freeReplyObject(r);
            return NULL;
        }
        return r;
    }
    return NULL;
}

/* run() for NUL-terminated arguments. */
static redisReply *runv(store *st, int argc, const char **argv)
{
    size_t lens[64];
    int i;

    if (argc > 64)
        return NULL;
    for (i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return run(st, argc, argv, lens);
}

static long long reply_int(redisReply *r)
{
    long long v = -1;

    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    freeReplyObject(r);
    return v;
}

int store_ping(store *st, char *err, size_t errlen)
{
    const char *argv[] = {"PING"};
    redisReply *r = runv(st, 1, argv);
    int ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");

    if (r)
        freeReplyObject(r);
    if (!ok)
        snprintf(err, errlen, "redis not answering");
    return ok ? 0 : -1;
}

static void session_key(const char *id, char *out, size_t outlen)
{
    snprintf(out, outlen, "pico:session:%s", id);
}

int store_session_create(store *st, const session *s, const char *runtime,
                         const char *node, int max_sessions)
{
    char key[64], max[24], score[32], ttl[24], created[24], expires[24];
    char mem[16], cpu[16], pids[16], disk[16];
    const char *argv[64];
    int argc = 0;

    session_key(s->id, key, sizeof(key));
    snprintf(max, sizeof(max), "%d", max_sessions);
    snprintf(score, sizeof(score), "%lld", s->expires_at * 1000);
    snprintf(ttl, sizeof(ttl), "%lld", s->ttl);
    snprintf(created, sizeof(created), "%lld", s->created_at);
    snprintf(expires, sizeof(expires), "%lld", s->expires_at);
    snprintf(mem, sizeof(mem), "%d", s->limits.memory_mb);
    snprintf(cpu, sizeof(cpu), "%d", s->limits.cpu_millicores);
    snprintf(pids, sizeof(pids), "%d", s->limits.pids);
    snprintf(disk, sizeof(disk), "%d", s->limits.disk_mb);
#define ARG(x) argv[argc++] = (x)
#define PAIR(f, v) (ARG(f), ARG(v))
    ARG("EVAL");
    ARG(create_lua);
    ARG("2");
    ARG(key);
    ARG("pico:expiry");
    ARG(max);
    ARG(s->id);
    ARG(score);
    PAIR("session_id", s->id);
    PAIR("status", session_status_name(s->status));
    PAIR("image", s->image);
    PAIR("ttl", ttl);
    PAIR("created_at", created);
    PAIR("expires_at", expires);
    PAIR("sandbox_name", s->sandbox_name);
    PAIR("owner", s->owner);
    PAIR("endpoint", s->endpoint);
    PAIR("runtime", runtime);
    PAIR("node", node);
    PAIR("reason", s->reason);
    PAIR("memory_mb", mem);
    PAIR("cpu_millicores", cpu);
    PAIR("pids", pids);
    PAIR("disk_mb", disk);
    PAIR("host_key", s->host_key);
    PAIR("host_key_fpr", s->host_key_fpr);
    PAIR("ssh_public_key", s->ssh_public_key);
    PAIR("isolation", s->isolation[0] ? s->isolation : "runc");
    PAIR("network", s->network[0] ? s->network : "none");
    PAIR("egress_allow", s->egress_allow);
    PAIR("egress_deny", s->egress_deny);
    PAIR("metadata", s->metadata_json ? s->metadata_json : "{}");
#undef PAIR
#undef ARG
    long long v = reply_int(runv(st, argc, argv));
    return v == 1 ? 1 : v == 0 ? 0 : -1;
}

int store_session_fail(store *st, const char *id, const char *reason,
                       long long retain_until)
{
    char key[64], until[32];
    const char *argv[] = {"EVAL",        fail_lua, "2",    key,
                          "pico:expiry", id,       reason, until};

    session_key(id, key, sizeof(key));
    snprintf(until, sizeof(until), "%lld", retain_until);
    return (int)reply_int(runv(st, 8, argv));
}

int store_session_update_if(store *st, const char *id, const char *statuses,
                            const char *const *pairs, int npairs)
{
    char key[64];
    const char *argv[48];
    int argc = 0, i;

    if (npairs > 20)
        return -1;
    session_key(id, key, sizeof(key));
    argv[argc++] = "EVAL";
    argv[argc++] = update_if_lua;
    argv[argc++] = "1";
    argv[argc++] = key;
    argv[argc++] = statuses;
    for (i = 0; i < 2 * npairs; i++)
        argv[argc++] = pairs[i];
    return (int)reply_int(runv(st, argc, argv));
}

int store_session_get(store *st, const char *id, session_record *rec)
{
    int fresh, rc = -1;
    redisContext *c = acquire(st, &fresh);
    redisReply *sr = NULL, *tr = NULL;

    memset(rec, 0, sizeof(*rec));
    if (c == NULL)
        return -1;
    /* Pipelined: both hashes in one round trip. */
    redisAppendCommand(c, "HGETALL pico:session:%s", id);
    redisAppendCommand(c, "HGETALL pico:tunnels:%s", id);
    if (redisGetReply(c, (void **)&sr) == REDIS_OK &&
        redisGetReply(c, (void **)&tr) == REDIS_OK)
        rc = fill_record(rec, sr, tr);
    if (sr)
        freeReplyObject(sr);
    if (tr)
        freeReplyObject(tr);
    if (rc < 0 && c->err)
        log_warn("redis: %s", c->errstr);
    release(st, c);
    return rc;
}

void store_free_ids(char **ids, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

static int has_id(char **ids, size_t n, const char *id)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!strcmp(ids[i], id))
            return 1;
    return 0;
}

/* The ids in nr array replies, canonical and each once, into *out.
 * 0, or -1 when a reply is missing or not an array. */
static int ids_from_replies(redisReply *const *rs, int nr, char ***out,
                            size_t *nout)
{
    char **ids = NULL;
    size_t n = 0, i, total = 0;
    int k, rc = -1;

    for (k = 0; k < nr; k++) {
        if (rs[k] == NULL || rs[k]->type != REDIS_REPLY_ARRAY)
            goto done;
        total += rs[k]->elements;
    }
    ids = calloc(total + 1, sizeof(*ids));
    if (ids == NULL)
        goto done;
    for (k = 0; k < nr; k++) {
        for (i = 0; i < rs[k]->elements; i++) {
            const redisReply *e = rs[k]->element[i];
            /* Only canonical ids ever become keys, whatever is stored. */
            if (e->type != REDIS_REPLY_STRING || !uuid_valid(e->str) ||
                has_id(ids, n, e->str))
                continue;
            ids[n] = strdup(e->str);
            if (ids[n] == NULL)
                goto done;
            n++;
        }
    }
    rc = 0;
done:
    if (rc < 0) {
        store_free_ids(ids, n);
        ids = NULL;
        n = 0;
    }
    *out = ids;
    *nout = n;
    return rc;
}

int store_session_ids(store *st, char ***out, size_t *nout)
{
    const char *a1[] = {"ZRANGE", "pico:expiry", "0", "-1"};
    const char *a2[] = {"ZRANGE", "pico:reaping", "0", "-1"};
    redisReply *rs[2] = {runv(st, 4, a1), runv(st, 4, a2)};
    int rc = ids_from_replies(rs, 2, out, nout);

    if (rs[0])
        freeReplyObject(rs[0]);
    if (rs[1])
        freeReplyObject(rs[1]);
    return rc;
}

int store_node_running(store *st, const char *node, const char *runtime,
                       char ***out, size_t *nout)
{
    const char *argv[] = {"EVAL", node_running_lua, "1", "pico:expiry",
                          node,   runtime};
    redisReply *r = runv(st, 6, argv);
    int rc = ids_from_replies(&r, 1, out, nout);

    if (r)
        freeReplyObject(r);
    return rc;
}

int store_session_claim(store *st, const char *id, long long lease_ms)
{
    char key[64], now[24], lease[24];
    const char *argv[] = {"EVAL",         claim_lua, "3", key,  "pico:expiry",
                          "pico:reaping", id,        now, lease};

    session_key(id, key, sizeof(key));
    snprintf(now, sizeof(now), "%lld", now_ms());
    snprintf(lease, sizeof(lease), "%lld", lease_ms);
    return (int)reply_int(runv(st, 9, argv));
}

int store_claim_due(store *st, long long now, long long lease_ms,
                    const char *node, char (*ids)[PICO_ID_LEN + 1], int max)
{
    char nows[24], lease[24], maxs[16];
    const char *argv[] = {"EVAL",        claim_due_lua,  "2",
                          "pico:expiry", "pico:reaping", nows,
                          lease,         maxs,           node};
    redisReply *r;
    size_t i;
    int n = 0;

    snprintf(nows, sizeof(nows), "%lld", now);
    snprintf(lease, sizeof(lease), "%lld", lease_ms);
    snprintf(maxs, sizeof(maxs), "%d", max);
    r = runv(st, 9, argv);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < r->elements && n < max; i++) {
            redisReply *e = r->element[i];
            if (e->type == REDIS_REPLY_STRING && uuid_valid(e->str))
                copy_str(ids[n++], PICO_ID_LEN + 1, e->str);
        }
    }
    freeReplyObject(r);
    return n;
}

int store_session_expire_now(store *st, const char *id)
{
    char score[24];
    const char *argv[] = {"ZADD", "pico:expiry", "XX", "CH", score, id};

    snprintf(score, sizeof(score), "%lld", now_ms());
    return (int)reply_int(runv(st, 6, argv));
}

int store_session_remove(store *st, const char *id)
{
    char key[64], tkey[64];
    const char *argv[] = {"EVAL",        remove_lua,     "4", key, tkey,
                          "pico:expiry", "pico:reaping", id};

    session_key(id, key, sizeof(key));
    snprintf(tkey, sizeof(tkey), "pico:tunnels:%s", id);
    return reply_int(runv(st, 8, argv)) == 1 ? 0 : -1;
}

/* For the store's other files (command.h): the same pooled runner. */
redisReply *store_command(store *st, int argc, const char **argv)
{
    return runv(st, argc, argv);
}

long long store_reply_int(redisReply *r)
{
    return reply_int(r);
}
