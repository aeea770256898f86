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

/* How a command ended. */
struct run_result {
    int exit_code;   /* its status, or 128 + signal number */
    int exited;      /* an exit status came */
    char signal[16]; /* "KILL" etc. when a signal ended it, else "" */
};

/*
 * Runs cmd, streaming its stdout and stderr into the two files as they
 * arrive (so any size fits), and tells how it ended. 0, or -1 with err
 * set (also when the server sent neither an exit status nor a signal).
 */
int ssh_run(ssh_session s, const char *cmd, FILE *out, FILE *errf,
            struct run_result *r, char *err, size_t errlen);

/* Closes the session and the tunnel under it. */
void ssh_close(ssh_session s);

#endif
