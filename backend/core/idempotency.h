/*
 * idempotency.h - POST /v1/sessions with an Idempotency-Key header: a
 * retried create answers the session the first attempt made (docs/api.md,
 * "Idempotent create").
 */
#ifndef PICO_IDEMPOTENCY_H
#define PICO_IDEMPOTENCY_H

#include "core/lifecycle.h"

#define PICO_IDEM_KEY_MAX 255
/* A finished key answers retries this long. */
#define PICO_IDEM_KEEP_S 86400
/* A claim whose creator died is given up this long after the runtime's
 * ready timeout. */
#define PICO_IDEM_CLAIM_SLACK_S 300
/* A retry of a create still in progress waits this long for it, then
 * gets 409 idempotency_in_progress. */
#define PICO_IDEM_WAIT_MS 30000

/* 1 when the header value is 1..255 bytes of printable ASCII; else 0 with
 * "Idempotency-Key: why" in err. */
int idem_key_valid(const char *key, char *err, size_t errlen);

/*
 * Creates the session s describes (validated, id unset) unless this
 * principal's key was used before. Returns 201 with s complete (the
 * first attempt), 200 with rec (a repeat with the same body; caller
 * frees rec->s), or -1 with e: 422 another body, 409 the first attempt
 * is still creating after PICO_IDEM_WAIT_MS or its session is gone.
 * The body is fingerprinted as canonical JSON (keys sorted), so spacing
 * and key order do not matter.
 */
int idem_create(pico_app *app, session *s, const char *owner, const char *key,
                const char *body, size_t len, session_record *rec,
                api_error *e);

#endif
