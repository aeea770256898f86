/*
 * ssh.h - the SSH session over the tunnel (libssh): handshake with the
 * host key check, password login, and running one command.
 */
#ifndef TT_SSH_H
#define TT_SSH_H

#include <stddef.h>
#include <stdio.h>

#include <libssh/libssh.h>

#include "rest.h"

/*
 * Runs the SSH handshake over fd (which libssh then owns and closes) and
 * checks the server's host key against `keys`. Returns the session, or
 * NULL with the cause in err.
 */
ssh_session ssh_open(int fd, const char *user, const struct session_keys *keys,
                     long timeout, char *err, size_t errlen);

/* Password login (keyboard-interactive as a fallback); 0 or -1. */
int ssh_login(ssh_session s, const char *password);

/*
 * Runs cmd, streaming its stdout and stderr into the two files as they
 * arrive (so any size fits); sets *exit_code (-1 when the server sent
 * none, e.g. the command died of a signal). 0, or -1 with err set.
 */
int ssh_run(ssh_session s, const char *cmd, FILE *out, FILE *errf,
            int *exit_code, char *err, size_t errlen);

/* Closes the session and the tunnel under it. */
void ssh_close(ssh_session s);

#endif
