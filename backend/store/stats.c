/*
 * stats.c - what the backend's metrics (core/metrics.c) read from Redis
 * and how often Redis failed it: sessions counted by status in one script
 * at scrape time, the deadline of the most overdue session (the reaper's
 * lag), and the error counters run() in store.c adds to.
 *
 * The counters are process-wide atomics: one store per process, and a
 * metric is about the process.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "store/command.h"
#include "store/store.h"

static atomic_llong errors[STORE_ERR_N];

/* Every live record (in pico:expiry or pico:reaping) by status, as
 * {status, count, ...}. KEYS: pico:expiry, pico:reaping. */
static const char count_lua[] =
    "local n = {}\n"
    "for _, z in ipairs(KEYS) do\n"
    "  for _, id in ipairs(redis.call('ZRANGE', z, 0, -1)) do\n"
    "    local st = redis.call('HGET', 'pico:session:' .. id, 'status')\n"
    "    if st then n[st] = (n[st] or 0) + 1 end\n"
    "  end\n"
    "end\n"
    "local out = {}\n"
    "for st, c in pairs(n) do out[#out + 1] = st; out[#out + 1] = c end\n"
    "return out\n";

void store_count_error(store_error kind)
{
    if (kind >= 0 && kind < STORE_ERR_N)
        atomic_fetch_add(&errors[kind], 1);
}

long long store_errors(store_error kind)
{
    return kind >= 0 && kind < STORE_ERR_N ? atomic_load(&errors[kind]) : 0;
}

int store_count_status(store *st, const char *const *names, long long *counts,
                       int n)
{
    const char *argv[] = {"EVAL", count_lua, "2", "pico:expiry",
                          "pico:reaping"};
    redisReply *r;
    size_t i;
    int k;

    for (k = 0; k < n; k++)
        counts[k] = 0;
    r = store_command(st, 5, argv);
    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return -1;
    }
    for (i = 0; i + 1 < r->elements; i += 2) {
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            r->element[i + 1]->type != REDIS_REPLY_INTEGER)
            continue;
        for (k = 0; k < n; k++)
            if (!strcmp(r->element[i]->str, names[k]))
                counts[k] = r->element[i + 1]->integer;
    }
    freeReplyObject(r);
    return 0;
}

int store_oldest_due(store *st, long long now, long long *deadline)
{
    char nows[24];
    const char *argv[] = {"ZRANGEBYSCORE", "pico:expiry", "-inf", nows,
                          "WITHSCORES",    "LIMIT",       "0",    "1"};
    redisReply *r;
    int rc = 0;

    snprintf(nows, sizeof(nows), "%lld", now);
    r = store_command(st, 8, argv);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING &&
        parse_ll(r->element[1]->str, deadline) == 0)
        rc = 1;
    freeReplyObject(r);
    return rc;
}
