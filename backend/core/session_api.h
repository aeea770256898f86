/*
 * session_api.h - the session as the REST API sees it: validation of a
 * create request and the JSON a client gets back. Kept apart from
 * session.h so the runtime drivers need not know about JSON.
 */
#ifndef PICO_SESSION_API_H
#define PICO_SESSION_API_H

#include <jansson.h>
#include "core/config.h"
#include "core/session.h"

#define PICO_BODY_MAX 65536 /* bytes of a request body */
#define PICO_META_PAIRS_MAX 32
#define PICO_META_KEY_MAX 63
#define PICO_META_VALUE_MAX 1024

/* Tunnel accounting the nginx module keeps in pico:tunnels:<id>. */
typedef struct {
    long long open, opened, bytes_up, bytes_down;
    long long last_activity_ms; /* 0 = never */
} session_tunnels;

/*
 * Validates a POST /v1/sessions body (len 0 = all defaults) and fills the
 * request part of s: image, ttl, limits, ssh_public_key, metadata_json.
 * Returns 0, or -1 with "field: why" in err. Does not ask the runtime
 * whether the image exists.
 */
int session_parse_request(const pico_config *cfg, const char *body, size_t len,
                          session *s, char *err, size_t errlen);

/*
 * Validates a PATCH /v1/sessions/<id> body: {"ttl": N}, N an integer in
 * 1..ttl_max (lifetime_max is checked against the record, in Redis).
 * 0 with *ttl, or -1 with "field: why" in err.
 */
int session_parse_patch(const pico_config *cfg, const char *body, size_t len,
                        long long *ttl, char *err, size_t errlen);

/* 1 when key is one OpenSSH public key line libssh can read. */
int session_pubkey_valid(const char *key);

/* The session's JSON (a new reference). t may be NULL. */
json_t *session_to_json(const session *s, const session_tunnels *t);

/* Frees what a session owns (metadata_json); the struct stays usable. */
void session_free(session *s);

#endif
