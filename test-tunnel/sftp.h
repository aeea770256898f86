/*
 * sftp.h - file transfers over the SSH session (-upload, -download).
 */
#ifndef TT_SFTP_H
#define TT_SFTP_H

#include <stddef.h>

#include <libssh/libssh.h>

/* Copies a local file to the sandbox; 0, or -1 with err set. */
int sftp_upload(ssh_session s, const char *local, const char *remote,
                unsigned long long *bytes, char *err, size_t errlen);

/* Copies a sandbox file to the local disk; 0, or -1 with err set. */
int sftp_download(ssh_session s, const char *remote, const char *local,
                  unsigned long long *bytes, char *err, size_t errlen);

#endif
