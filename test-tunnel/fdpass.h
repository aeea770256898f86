/*
 * fdpass.h - the -fdpass mode: hand the open tunnel's socket to OpenSSH
 * (ProxyCommand with ProxyUseFdpass=yes), so ssh talks to nginx directly
 * and no relay process sits in between.
 */
#ifndef TT_FDPASS_H
#define TT_FDPASS_H

#include <stddef.h>

/*
 * Sends sock over `to`, which must be a unix socket (ssh's end of a
 * socketpair). 0 on success; -1 with a message in err.
 */
int fdpass_send(int to, int sock, char *err, size_t errlen);

#endif
