/*
 * tls.h - https:// API addresses: the TLS handshake (OpenSSL) and, once
 * the tunnel is open, a relay thread that gives libssh and the -stdio
 * relay a plain socket to work with.
 */
#ifndef TT_TLS_H
#define TT_TLS_H

#include <stddef.h>

#include "conn.h"

/*
 * Runs the TLS handshake on c->fd, checking the server's certificate for
 * `host` against the system's CAs, or only `cafile`'s when given. Sets
 * c->ssl; 0, or -1 with err set.
 */
int tls_start(struct api_conn *c, const char *host, const char *cafile,
              long timeout, char *err, size_t errlen);

struct tls_relay;

/*
 * Moves the TLS stream behind a socketpair: returns the plain end (the
 * caller owns and closes it) and takes c over. -1 with err on failure.
 */
int tls_relay_start(struct api_conn *c, struct tls_relay **out, char *err,
                    size_t errlen);

/* Ends the relay after the caller closed its end; frees the stream. */
void tls_relay_stop(struct tls_relay *r);

#endif
