/*
 * preview.h - signed preview links (POST /v1/sessions/<id>/ports/<port>/
 * preview): a short-lived, unguessable link that lets a browser see one
 * port of one session through nginx's pico_preview location without the
 * owner's token (docs/api.md).
 */
#ifndef PICO_CORE_PREVIEW_H
#define PICO_CORE_PREVIEW_H

#include "core/lifecycle.h"

#define PREVIEW_TTL_DEFAULT 900 /* seconds */
#define PREVIEW_TTL_MAX 86400

typedef struct {
    char path[160]; /* /v1/sessions/<id>/ports/<port>/?pico_preview=<t> */
    long long expires_at;
    unsigned port;
} preview_link;

/*
 * Makes a link to port (the text after "ports/", checked here) of
 * session id for principal; body may hold {"ttl": seconds}. 0 with out,
 * or -1 with e: 400 bad port or ttl, 404 no such session, 409 not
 * running, 503 Redis. The link never outlives the session.
 */
int preview_create(pico_app *app, const char *id, const char *principal,
                   const char *port, const char *body, size_t len,
                   preview_link *out, api_error *e);

#endif
