/*
 * pause.c - the store's part of pausing a session (core/pause.c): the
 * status change and its event go through transition.c's script; this
 * tells the nginx modules that a session's verdict changed, so no worker
 * keeps opening tunnels to a frozen sandbox from its cache.
 */
#include <stdio.h>

#include "store/command.h"
#include "store/store.h"

int store_session_changed(store *st, const char *id)
{
    char msg[64];
    const char *argv[] = {"PUBLISH", "pico:events", msg};

    snprintf(msg, sizeof(msg), "changed %s", id);
    return store_reply_int(store_command(st, 3, argv)) < 0 ? -1 : 0;
}
