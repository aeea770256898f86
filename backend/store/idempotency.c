/*
 * idempotency.c - the Redis side of Idempotency-Key (docs/redis.md,
 * "Idempotency keys"): one hash per principal and key, claimed before the
 * session is created, so of concurrent retries exactly one creates.
 *
 * The claim names the session id the claimer is about to create; a claim
 * resent by store_command() after a lost reply finds its own id and is
 * still the claimer's. Finishing and releasing check that id too, so a
 * claim that timed out and was taken over is never touched by its old
 * owner.
 */
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "store/command.h"
#include "store/store.h"

/* KEYS: idem key. ARGV: body fingerprint, session id, claim ttl (s), now.
 * Replies {1, id} claimed, {2, id} other body, {3, id} done,
 * {4, id} another request is creating. */
static const char claim_lua[] =
    "local h = redis.call('HMGET', KEYS[1], 'body', 'session_id', 'state')\n"
    "if not h[1] then\n"
    "  redis.call('HSET', KEYS[1], 'body', ARGV[1], 'session_id', ARGV[2], "
    "'state', 'creating', 'created_at', ARGV[4])\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "  return {1, ARGV[2]}\n"
    "end\n"
    "if h[2] == ARGV[2] then return {1, ARGV[2]} end\n"
    "if h[1] ~= ARGV[1] then return {2, h[2]} end\n"
    "if h[3] == 'done' then return {3, h[2]} end\n"
    "return {4, h[2]}\n";

/* KEYS: idem key. ARGV: session id, keep (s). */
static const char done_lua[] =
    "if redis.call('HGET', KEYS[1], 'session_id') ~= ARGV[1] then "
    "return 0 end\n"
    "redis.call('HSET', KEYS[1], 'state', 'done')\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
    "return 1\n";

/* KEYS: idem key. ARGV: session id. */
static const char release_lua[] =
    "if redis.call('HGET', KEYS[1], 'session_id') ~= ARGV[1] then "
    "return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "return 1\n";

static void idem_key(const char *principal, const char *key_sha, char *out,
                     size_t outlen)
{
    snprintf(out, outlen, "pico:idem:%s:%s", principal, key_sha);
}

int store_idem_claim(store *st, const char *principal, const char *key_sha,
                     const char *body_sha, const char *id, long long claim_s,
                     char other[PICO_ID_LEN + 1])
{
    char key[160], ttl[24], now[24];
    const char *argv[] = {"EVAL", claim_lua, "1", key, body_sha, id, ttl, now};
    redisReply *r;
    int rc = -1;

    idem_key(principal, key_sha, key, sizeof(key));
    snprintf(ttl, sizeof(ttl), "%lld", claim_s);
    snprintf(now, sizeof(now), "%lld", now_s());
    other[0] = '\0';
    r = store_command(st, 8, argv);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER &&
        r->element[1]->type == REDIS_REPLY_STRING &&
        uuid_valid(r->element[1]->str)) {
        rc = (int)r->element[0]->integer;
        copy_str(other, PICO_ID_LEN + 1, r->element[1]->str);
    }
    freeReplyObject(r);
    return rc;
}

int store_idem_done(store *st, const char *principal, const char *key_sha,
                    const char *id, long long keep_s)
{
    char key[160], keep[24];
    const char *argv[] = {"EVAL", done_lua, "1", key, id, keep};

    idem_key(principal, key_sha, key, sizeof(key));
    snprintf(keep, sizeof(keep), "%lld", keep_s);
    return (int)store_reply_int(store_command(st, 6, argv));
}

int store_idem_release(store *st, const char *principal, const char *key_sha,
                       const char *id)
{
    char key[160];
    const char *argv[] = {"EVAL", release_lua, "1", key, id};

    idem_key(principal, key_sha, key, sizeof(key));
    return (int)store_reply_int(store_command(st, 5, argv));
}
