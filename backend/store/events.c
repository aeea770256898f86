/*
 * events.c - the lifecycle event log (docs/redis.md, "Events"): one
 * Redis Stream per principal, pico:stream:<principal>, trimmed to about
 * PICO_EVENTS_MAX entries on every append (XADD MAXLEN ~).
 *
 * An event is appended by a script that reads the session's owner from
 * its record, so callers need only the id, and nothing is appended for a
 * session whose record is gone. The "expiring" warning is one script too:
 * the record remembers the deadline it warned about, so each deadline is
 * announced once however many backends run the check.
 */
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "store/command.h"
#include "store/store.h"

/* KEYS: session key. ARGV: id, type, now (ms), maxlen, field/value... */
static const char add_lua[] =
    "local owner = redis.call('HGET', KEYS[1], 'owner')\n"
    "if not owner then return 0 end\n"
    "redis.call('XADD', 'pico:stream:' .. owner, 'MAXLEN', '~', ARGV[4], "
    "'*', 'type', ARGV[2], 'session_id', ARGV[1], 'at', ARGV[3], "
    "unpack(ARGV, 5))\n"
    "return 1\n";

/* Running sessions due within the window not yet warned about this
 * deadline. Only running ones: their "running" event is written with the
 * status (transition.c), so "expiring" never comes before it. KEYS:
 * pico:expiry. ARGV: now (ms), window (ms), maxlen. */
static const char warn_lua[] =
    "local now = tonumber(ARGV[1])\n"
    "local n = 0\n"
    "for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, "
    "now + tonumber(ARGV[2]))) do\n"
    "  local k = 'pico:session:' .. id\n"
    "  local f = redis.call('HMGET', k, 'owner', 'expires_at', "
    "'warned_expiry', 'status')\n"
    "  if f[1] and f[2] ~= f[3] and f[4] == 'running' then\n"
    "    redis.call('HSET', k, 'warned_expiry', f[2])\n"
    "    redis.call('XADD', 'pico:stream:' .. f[1], 'MAXLEN', '~', ARGV[3], "
    "'*', 'type', 'expiring', 'session_id', id, 'at', ARGV[1], "
    "'expires_at', f[2])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

/* Is ARGV[1] an id the stream still holds? {1} yes, {0, first} no (the
 * oldest kept is first), {2} the stream holds nothing. KEYS: stream. */
static const char check_lua[] =
    "if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) > 0 then "
    "return {1} end\n"
    "local f = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)\n"
    "if #f == 0 then return {2} end\n"
    "return {0, f[1][1]}\n";

int store_event_add(store *st, const char *id, const char *type,
                    const char *const *pairs, int npairs)
{
    char key[64], now[24], maxlen[24];
    const char *argv[24];
    int argc = 0, i;

    if (npairs > 8)
        return -1;
    snprintf(key, sizeof(key), "pico:session:%s", id);
    snprintf(now, sizeof(now), "%lld", now_ms());
    snprintf(maxlen, sizeof(maxlen), "%d", PICO_EVENTS_MAX);
    argv[argc++] = "EVAL";
    argv[argc++] = add_lua;
    argv[argc++] = "1";
    argv[argc++] = key;
    argv[argc++] = id;
    argv[argc++] = type;
    argv[argc++] = now;
    argv[argc++] = maxlen;
    for (i = 0; i < 2 * npairs; i++)
        argv[argc++] = pairs[i];
    return (int)store_reply_int(store_command(st, argc, argv));
}

int store_event_warn_expiring(store *st, long long now, long long window_ms)
{
    char nows[24], win[24], maxlen[24];
    const char *argv[] = {"EVAL", warn_lua, "1",   "pico:expiry",
                          nows,   win,      maxlen};

    snprintf(nows, sizeof(nows), "%lld", now);
    snprintf(win, sizeof(win), "%lld", window_ms);
    snprintf(maxlen, sizeof(maxlen), "%d", PICO_EVENTS_MAX);
    return (int)store_reply_int(store_command(st, 7, argv));
}

static void stream_key(const char *principal, char *out, size_t outlen)
{
    snprintf(out, outlen, "pico:stream:%s", principal);
}

int store_event_check(store *st, const char *principal, const char *event_id,
                      char *first, size_t firstlen)
{
    char key[96];
    const char *argv[] = {"EVAL", check_lua, "1", key, event_id};
    redisReply *r;
    int rc = -1;

    stream_key(principal, key, sizeof(key));
    first[0] = '\0';
    r = store_command(st, 5, argv);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        rc = (int)r->element[0]->integer;
        if (r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING)
            copy_str(first, firstlen, r->element[1]->str);
    }
    freeReplyObject(r);
    return rc;
}

int store_event_last(store *st, const char *principal, char *out, size_t outlen)
{
    char key[96];
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", "1"};
    redisReply *r;

    stream_key(principal, key, sizeof(key));
    copy_str(out, outlen, "0-0");
    r = store_command(st, 6, argv);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 2 &&
        r->element[0]->element[0]->type == REDIS_REPLY_STRING)
        copy_str(out, outlen, r->element[0]->element[0]->str);
    freeReplyObject(r);
    return 0;
}

/* One XREAD entry [id, [f1, v1, ...]] to the callback. */
static void deliver(const redisReply *e, store_event_cb cb, void *arg)
{
    const char *fields[2 * 8];
    const redisReply *kv;
    size_t i, n = 0;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING ||
        e->element[1]->type != REDIS_REPLY_ARRAY)
        return;
    kv = e->element[1];
    for (i = 0; i + 1 < kv->elements && n + 2 <= 16; i += 2) {
        if (kv->element[i]->type != REDIS_REPLY_STRING ||
            kv->element[i + 1]->type != REDIS_REPLY_STRING)
            continue;
        fields[n++] = kv->element[i]->str;
        fields[n++] = kv->element[i + 1]->str;
    }
    cb(e->element[0]->str, fields, (int)(n / 2), arg);
}

int store_event_read(store *st, const char *principal, const char *after,
                     long long block_ms, int count, store_event_cb cb,
                     void *arg)
{
    char key[96], block[24], counts[16];
    const char *argv[] = {"XREAD", "COUNT",   counts, "BLOCK",
                          block,   "STREAMS", key,    after};
    redisReply *r;
    size_t i;
    int n = 0;

    stream_key(principal, key, sizeof(key));
    snprintf(block, sizeof(block), "%lld", block_ms);
    snprintf(counts, sizeof(counts), "%d", count);
    r = store_command(st, 8, argv);
    if (r == NULL)
        return -1;
    /* nil on timeout; else [[key, [entries...]]] */
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 2 &&
        r->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
        const redisReply *entries = r->element[0]->element[1];
        for (i = 0; i < entries->elements; i++, n++)
            deliver(entries->element[i], cb, arg);
    }
    freeReplyObject(r);
    return n;
}
