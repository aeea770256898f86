/*
 * transition.c - status changes that carry their lifecycle event: the
 * new fields and the event are written by one script, so no reader of
 * the stream (nor the reaper's "expiring" check, which warns only
 * running sessions) can see the status without its event or the event
 * without the status. Where a change has no event, store.c's
 * store_session_update_if is the plain form of the same guard.
 *
 * Like that guard it is safe to send twice (store_command sends a script
 * again when a pooled connection broke, and the first attempt may have
 * been applied): a record that already holds every field it would set
 * counts as done, and its event is not appended a second time.
 */
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "store/command.h"
#include "store/store.h"

/* KEYS: session key. ARGV: allowed statuses ("a|b"), id, event type,
 * now (ms), maxlen, then field/value pairs to set. */
static const char transition_lua[] =
    "local f = redis.call('HMGET', KEYS[1], 'status', 'owner')\n"
    "if not f[1] or not f[2] then return 0 end\n"
    "if not string.find('|' .. ARGV[1] .. '|', '|' .. f[1] .. '|', 1, "
    "true) then\n"
    "  if #ARGV < 7 then return 0 end\n"
    "  for i = 6, #ARGV, 2 do\n"
    "    if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then "
    "return 0 end\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end\n"
    "redis.call('XADD', 'pico:stream:' .. f[2], 'MAXLEN', '~', ARGV[5], "
    "'*', 'type', ARGV[3], 'session_id', ARGV[2], 'at', ARGV[4])\n"
    "return 1\n";

int store_session_transition(store *st, const char *id, const char *statuses,
                             const char *event, const char *const *pairs,
                             int npairs)
{
    char key[64], now[24], maxlen[24];
    const char *argv[48];
    int argc = 0, i;

    if (npairs > 20)
        return -1;
    snprintf(key, sizeof(key), "pico:session:%s", id);
    snprintf(now, sizeof(now), "%lld", now_ms());
    snprintf(maxlen, sizeof(maxlen), "%d", PICO_EVENTS_MAX);
    argv[argc++] = "EVAL";
    argv[argc++] = transition_lua;
    argv[argc++] = "1";
    argv[argc++] = key;
    argv[argc++] = statuses;
    argv[argc++] = id;
    argv[argc++] = event;
    argv[argc++] = now;
    argv[argc++] = maxlen;
    for (i = 0; i < 2 * npairs; i++)
        argv[argc++] = pairs[i];
    return (int)store_reply_int(store_command(st, argc, argv));
}
