/*
 * rest.h - the one REST call test-tunnel makes: GET /v1/sessions/<id>,
 * for the sandbox host key the SSH handshake is checked against.
 */
#ifndef TT_REST_H
#define TT_REST_H

#include <stddef.h>

#include "connect.h"

struct session_keys {
    char *host_key;             /* "ssh-ed25519 AAAA..." or NULL */
    char *host_key_fingerprint; /* "SHA256:..." or NULL */
};

/* Fetches the session's host key; 0, or -1 with err set. */
int rest_session_keys(const struct api_addr *a, const char *session,
                      const char *token, const char *cafile, long timeout,
                      struct session_keys *keys, char *err, size_t errlen);
void session_keys_free(struct session_keys *keys);

/* The host key out of that answer's body: a JSON object with host_key,
 * host_key_fingerprint or both. 0, or -1 with err set and keys empty. */
int rest_parse_keys(const char *text, struct session_keys *keys, char *err,
                    size_t errlen);

#endif
