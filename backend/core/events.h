/*
 * events.h - lifecycle events: what happened to a session, appended to
 * its owner's Redis Stream (store/events.c) and served as Server-Sent
 * Events (api/sse.c). Types: created, running, failed, ttl_changed,
 * expiring, terminated (docs/api.md, "Events").
 */
#ifndef PICO_EVENTS_H
#define PICO_EVENTS_H

#include "app.h"

/* "expiring" is announced this long before expires_at. */
#define PICO_EXPIRING_WARN_MS 60000

/* Appends an event for session id; reason may be NULL. An event that
 * cannot be stored is logged, never an error of the change it reports. */
void events_emit(pico_app *app, const char *id, const char *type,
                 const char *reason);

/* 1 when s is a stream id "<ms>-<seq>" (decimal, each fits 64 bits). */
int event_id_valid(const char *s);

/* -1, 0, 1 as stream id a is before, equal to or after b (both valid). */
int event_id_cmp(const char *a, const char *b);

/*
 * The SSE text of one stream entry ("id:", "event:", "data:" JSON, blank
 * line), malloc'd, or NULL when only_session is not NULL and the entry is
 * another session's. *terminated is set when it is a "terminated".
 */
char *event_sse(const char *event_id, const char **fields, int nfields,
                const char *only_session, int *terminated);

#endif
