/*
 * port_relay.h - pico-init's port relay (port_relay.c): what PID 1 calls
 * when its ports listener (fd 4) is readable and when it reaps a child.
 */
#ifndef PICO_PORT_RELAY_H
#define PICO_PORT_RELAY_H

#include <sys/types.h>

/* The ports listener pico-init gets from the backend, beside LISTEN_FD. */
#define PORTS_FD 4

/* Accepts one connection on lfd and forks its relay, which first closes
 * close_fds (pico-init's own descriptors). Returns how long to back off
 * (ms): 0, or 100 on a shortage or at the children limit. */
int port_relay_accept(int lfd, const int *close_fds, int nclose);

/* pid was reaped: if it was a relay, its slot is free again. */
void port_relay_reaped(pid_t pid);

#endif
