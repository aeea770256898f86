/*
 * lifecycle.h - the life of a session: create, look up, list, delete,
 * and the shared "destroy a claimed session" step the reaper, DELETE and
 * drain all end in. Results carry the HTTP status the API answers with.
 */
#ifndef PICO_LIFECYCLE_H
#define PICO_LIFECYCLE_H

#include "app.h"

/* How long a backend may take to delete a session it claimed before
 * another backend may take it over (docs/redis.md, pico:reaping): at
 * least PICO_LEASE_MS, and always PICO_LEASE_SLACK_MS more than the
 * driver's destroy_max_ms, so a delete ends (or times out) before its
 * lease does and two destroys of one sandbox never run at once. The
 * record's removal after the destroy is one Redis script. */
#define PICO_LEASE_MS 30000
#define PICO_LEASE_SLACK_MS 5000
long long lifecycle_lease_ms(const runtime_ops *ops);

/* A failed session's record is kept this long (or until its ttl ends, if
 * sooner) so clients can read the reason; it then expires like any
 * other and stops counting against max_sessions. */
#define PICO_FAILED_RETENTION_S 300

typedef struct {
    int status;       /* HTTP status */
    const char *code; /* machine-readable, e.g. "not_found" */
    char message[512];
} api_error;

void api_error_set(api_error *e, int status, const char *code, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

/*
 * Creates a session from a validated request (s has image, ttl, limits,
 * key, metadata; and its id when the caller chose it, else "").
 * Returns 0 with s complete and running, or -1 with e.
 */
int lifecycle_create(pico_app *app, session *s, const char *owner,
                     api_error *e);

/* The runtime's news of a sandbox (a runtime_watch_cb; arg is the
 * pico_app): fails the session whose sandbox is lost. */
void lifecycle_sandbox_event(const char *id, const char *uid, const char *lost,
                             void *arg);

/* 0 with rec (caller frees rec->s) or -1 with e (404 for another
 * principal's session). */
int lifecycle_get(pico_app *app, const char *id, const char *principal,
                  session_record *rec, api_error *e);

/* Moves a session's expires_at to now + ttl (PATCH), bounded by
 * lifetime_max after created_at. 0 with rec (the session afterwards;
 * caller frees rec->s) or -1 with e: 400 beyond lifetime_max, 404, 409
 * being deleted or failed. */
int lifecycle_extend(pico_app *app, const char *id, const char *principal,
                     long long ttl, session_record *rec, api_error *e);

/* Every live session visible to principal, sorted by created_at. */
int lifecycle_list(pico_app *app, const char *principal, session_record **recs,
                   size_t *n, api_error *e);
void lifecycle_free_list(session_record *recs, size_t n);

/* Deletes a session now. 0 or -1 with e. */
int lifecycle_delete(pico_app *app, const char *id, const char *principal,
                     api_error *e);

/* Destroys the sandbox of a session this backend claimed and removes its
 * records. 0 or -1 (the claim's lease lets another backend retry). */
int lifecycle_destroy_claimed(pico_app *app, const char *id);

/* Ids of every sandbox the runtime has (free with store_free_ids). */
int lifecycle_list_sandboxes(pico_app *app, char ***ids, size_t *n);

/* Deletes every session and sandbox of this stack. Returns how many. */
int lifecycle_drain(pico_app *app);

#endif
