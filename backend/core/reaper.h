/*
 * reaper.h - the expiry thread: removes sessions whose expires_at passed.
 */
#ifndef PICO_REAPER_H
#define PICO_REAPER_H

#include "app.h"

typedef struct reaper reaper;

reaper *reaper_start(pico_app *app);
/* Asks the thread to stop and joins it. */
void reaper_stop(reaper *r);
/* One pass (the thread calls it every reaper_interval_ms); returns how many
 * sessions it reaped. */
int reaper_run_once(pico_app *app);

#endif
