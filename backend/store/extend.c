/*
 * extend.c - moving a live session's deadline (PATCH /v1/sessions/<id>).
 *
 * The record's expires_at and the session's score in pico:expiry change in
 * one Lua script, and the reaper's claim (claim_due_lua in store.c) reads
 * the score in its own script, so there is no moment in which the old
 * deadline can still reap a session whose new one lies ahead: either the
 * claim ran first (the session is terminating and this script refuses),
 * or this script did (and the claim sees the new score).
 */
#include <stdio.h>
#include <string.h>

#include "store/command.h"
#include "store/store.h"

/* KEYS: session key, pico:expiry. ARGV: id, now (ms), ttl (s),
 * lifetime_max (s), events kept. The "ttl_changed" event (events.c) is
 * appended in the same step. A session already due (its deadline passed, or a
 * DELETE on another node made it due now) is being deleted: refused, so a
 * PATCH never undoes a DELETE. ttl keeps meaning expires_at - created_at.
 * Replies {1, expires_at}, {0} missing, {2} being deleted, {3} failed,
 * {4, largest ttl allowed now}. */
static const char extend_lua[] =
    "local st = redis.call('HGET', KEYS[1], 'status')\n"
    "if not st then return {0} end\n"
    "if st == 'failed' then return {3} end\n"
    "if st ~= 'pending' and st ~= 'running' and st ~= 'paused' then "
    "return {2} end\n"
    "local now = tonumber(ARGV[2])\n"
    "local score = redis.call('ZSCORE', KEYS[2], ARGV[1])\n"
    "if not score or tonumber(score) <= now then return {2} end\n"
    "local now_s = math.floor(now / 1000)\n"
    "local created = tonumber(redis.call('HGET', KEYS[1], 'created_at'))\n"
    "local exp = now_s + tonumber(ARGV[3])\n"
    "local last = created + tonumber(ARGV[4])\n"
    "if exp > last then return {4, last - now_s} end\n"
    "redis.call('ZADD', KEYS[2], 'XX', exp * 1000, ARGV[1])\n"
    "redis.call('HSET', KEYS[1], 'expires_at', exp, 'ttl', exp - created)\n"
    "redis.call('XADD', 'pico:stream:' .. redis.call('HGET', KEYS[1], "
    "'owner'), 'MAXLEN', '~', ARGV[5], '*', 'type', 'ttl_changed', "
    "'session_id', ARGV[1], 'at', ARGV[2], 'expires_at', exp, 'ttl', "
    "exp - created)\n"
    "return {1, exp}\n";

int store_session_extend(store *st, const char *id, long long now,
                         long long ttl, long long lifetime_max, long long *out)
{
    char key[64], nows[24], ttls[24], lifes[24], maxlen[24];
    const char *argv[] = {"EVAL", extend_lua, "2",  key,   "pico:expiry",
                          id,     nows,       ttls, lifes, maxlen};
    redisReply *r;
    int rc = -1;

    snprintf(key, sizeof(key), "pico:session:%s", id);
    snprintf(nows, sizeof(nows), "%lld", now);
    snprintf(ttls, sizeof(ttls), "%lld", ttl);
    snprintf(lifes, sizeof(lifes), "%lld", lifetime_max);
    snprintf(maxlen, sizeof(maxlen), "%d", PICO_EVENTS_MAX);
    r = store_command(st, 10, argv);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        rc = (int)r->element[0]->integer;
        *out = 0;
        if (r->elements >= 2 && r->element[1]->type == REDIS_REPLY_INTEGER)
            *out = r->element[1]->integer;
    }
    freeReplyObject(r);
    return rc;
}
