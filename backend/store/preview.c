/*
 * preview.c - storing a signed preview link (see store/preview.h). The
 * record and its expiry are written by one script, so a link never lives
 * without its TTL.
 */
#include <stdio.h>

#include "store/command.h"
#include "store/preview.h"

/* KEYS: pico:preview:<digest>. ARGV: session, port, expires, owner, ttl. */
static const char preview_put_lua[] =
    "redis.call('HSET', KEYS[1], 'session', ARGV[1], 'port', ARGV[2], "
    "'expires', ARGV[3], 'owner', ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "return 1\n";

int store_preview_put(store *st, const char digest[65], const char *id,
                      unsigned port, long long expires, const char *owner,
                      long long ttl)
{
    char key[96], ports[8], exps[24], ttls[24];
    const char *argv[] = {"EVAL", preview_put_lua, "1", key, id, ports,
                          exps,   owner,           ttls};

    snprintf(key, sizeof(key), "pico:preview:%s", digest);
    snprintf(ports, sizeof(ports), "%u", port);
    snprintf(exps, sizeof(exps), "%lld", expires);
    snprintf(ttls, sizeof(ttls), "%lld", ttl);
    return store_reply_int(store_command(st, 9, argv)) == 1 ? 0 : -1;
}
