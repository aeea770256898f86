/*
 * stdio_relay.h - the -stdio mode: stdin/stdout <-> tunnel, for OpenSSH's
 * ProxyCommand (ssh, scp, sftp speak SSH themselves over our pipes).
 */
#ifndef TT_STDIO_RELAY_H
#define TT_STDIO_RELAY_H

#include <stddef.h>

/* Relays until both directions have ended; 0, or -1 with err set. */
int stdio_relay(int sock, char *err, size_t errlen);

#endif
