/*
 * command.h - the pooled command runner of store.c, for the store's other
 * files (extend.c, idempotency.c, events.c, transition.c, tokens.c), so
 * each concept keeps its scripts in its own file and none opens
 * connections of its own.
 */
#ifndef PICO_STORE_COMMAND_H
#define PICO_STORE_COMMAND_H

#include <hiredis/hiredis.h>
#include "store/store.h"

/* One command of NUL-terminated arguments; on a broken pooled connection
 * sent once more on a new one. NULL on connection errors and on Redis
 * error replies (logged). The caller frees the reply. */
redisReply *store_command(store *st, int argc, const char **argv);

/* The integer of r (freed), or -1 when r is NULL or not an integer. */
long long store_reply_int(redisReply *r);

#endif
