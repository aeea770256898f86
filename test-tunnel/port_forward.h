/*
 * port_forward.h - the -listen mode: a local TCP port whose every
 * connection becomes its own ports tunnel to the sandbox.
 */
#ifndef TT_PORT_FORWARD_H
#define TT_PORT_FORWARD_H

#include <stddef.h>

/* Opens one tunnel and returns a socket to it, or -1 (reported). */
typedef int (*tunnel_open_fn)(void *ctx);

/* Listens on addr ("HOST:PORT", "[V6]:PORT"; PORT 0 picks one), prints
 * the address to stderr, and serves until killed: each accepted
 * connection is relayed, in a child process, to a tunnel from open.
 * Returns only on failure: -1 with err set. */
int port_forward(const char *addr, tunnel_open_fn open, void *ctx, char *err,
                 size_t errlen);

#endif
