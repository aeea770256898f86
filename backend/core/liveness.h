/*
 * liveness.h - noticing sandboxes that died under a running session.
 */
#ifndef PICO_LIVENESS_H
#define PICO_LIVENESS_H

#include "app.h"

/* How often the reaper thread runs liveness_check. */
#define PICO_LIVENESS_INTERVAL_MS 1000

/* The reason a session gets when its sandbox died by itself. */
#define PICO_DIED_REASON "the sandbox's processes exited unexpectedly"

/* Checks every running session of this node whose runtime can tell
 * cheaply (runtime_ops.running) and marks those whose sandbox is dead
 * failed. Returns how many it marked, -1 when Redis failed. */
int liveness_check(pico_app *app);

#endif
