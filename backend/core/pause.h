/*
 * pause.h - pausing and resuming a session (POST /v1/sessions/<id>/pause
 * and /resume) and the idle stop of the reaper thread (idle.c).
 */
#ifndef PICO_PAUSE_H
#define PICO_PAUSE_H

#include "core/lifecycle.h"

/* Freezes a running session (status "paused", event "paused"). 0 with
 * rec (the session afterwards; caller frees rec->s), or -1 with e: 404,
 * 409 not running (already paused, being deleted, failed, pending),
 * 501 the runtime cannot pause, 500 the runtime failed, 503 Redis. */
int lifecycle_pause(pico_app *app, const char *id, const char *principal,
                    session_record *rec, api_error *e);

/* Thaws a paused session (status "running", event "resumed"); errors as
 * lifecycle_pause's, 409 when it is not paused. */
int lifecycle_resume(pico_app *app, const char *id, const char *principal,
                     session_record *rec, api_error *e);

/* The pause step itself, for a session the caller found running on this
 * node (lifecycle_pause, the idle stop). 0 or -1 with e. */
int pause_session(pico_app *app, const char *id, api_error *e);

/* The reaper thread's idle stop, about once a second: pauses (or, by
 * idle_action or when the runtime cannot pause, deletes) every running
 * session of this node idle for its idle_timeout. How many, or -1. */
int idle_check(pico_app *app);

#endif
