/*
 * pause.c - the store's part of pausing a session (core/pause.c): the
 * status change and its event go through transition.c's script; this
 * tells the nginx modules that a session's verdict changed, so no worker
 * keeps opening tunnels to a frozen sandbox from its cache; and finds
 * the sessions the idle stop must look at.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#include "store/command.h"
#include "store/store.h"

int store_session_changed(store *st, const char *id)
{
    char msg[64];
    const char *argv[] = {"PUBLISH", "pico:events", msg};

    snprintf(msg, sizeof(msg), "changed %s", id);
    return store_reply_int(store_command(st, 3, argv)) < 0 ? -1 : 0;
}

/* KEYS: pico:expiry. ARGV: node, runtime. The running sessions of node
 * and runtime that have an idle_timeout: the only ones idle.c reads in
 * full, so sessions without one cost the idle stop nothing more. */
static const char node_idle_lua[] =
    "local out = {}\n"
    "for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do\n"
    "  local f = redis.call('HMGET', 'pico:session:' .. id, 'status', "
    "'node', 'runtime', 'idle_timeout')\n"
    "  if f[1] == 'running' and f[2] == ARGV[1] and f[3] == ARGV[2] and "
    "(tonumber(f[4]) or 0) > 0 then\n"
    "    out[#out + 1] = id\n"
    "  end\n"
    "end\n"
    "return out\n";

int store_node_idle_candidates(store *st, const char *node, const char *runtime,
                               char ***out, size_t *nout)
{
    const char *argv[] = {"EVAL",        node_idle_lua, "1",
                          "pico:expiry", node,          runtime};
    redisReply *r = store_command(st, 6, argv);
    char **ids;
    size_t i, n = 0;

    *out = NULL;
    *nout = 0;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    ids = calloc(r->elements + 1, sizeof(*ids));
    for (i = 0; ids != NULL && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        /* only canonical ids ever become keys, whatever is stored */
        if (e->type == REDIS_REPLY_STRING && uuid_valid(e->str) &&
            (ids[n] = strdup(e->str)) != NULL)
            n++;
    }
    freeReplyObject(r);
    if (ids == NULL)
        return -1;
    *out = ids;
    *nout = n;
    return 0;
}
