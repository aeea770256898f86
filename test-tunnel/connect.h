/*
 * connect.h - the HTTP side of the tunnel: the -api address, the TCP
 * connection to it, and the CONNECT request that turns that connection
 * into a raw byte stream to the sandbox's sshd.
 */
#ifndef TT_CONNECT_H
#define TT_CONNECT_H

#include <stddef.h>

#include "conn.h"

/* The -api address, split. */
struct api_addr {
    int tls;        /* https:// */
    char *host;     /* name or address, without IPv6 brackets */
    char *port;     /* "80" (or "443") when the URL names none */
    char *hostport; /* host:port as the URL gives it, for logs and Host: */
    char *prefix;   /* path before /v1/..., "" or "/something" */
};

int api_addr_parse(struct api_addr *a, const char *url, char *err,
                   size_t errlen);
void api_addr_free(struct api_addr *a);

/* Opens a TCP connection to the API; returns the fd or -1 with err set. */
int tunnel_dial(const struct api_addr *a, long timeout, char *err,
                size_t errlen);

/* The server's answer to CONNECT. */
struct connect_reply {
    int status;
    char reason[128];  /* the status line's reason phrase */
    char message[512]; /* body text (or JSON error message) when not 200 */
};

/*
 * Sends CONNECT path and reads the answer's header. On 200 not one byte
 * beyond the header is consumed, so whatever the sandbox sent right after
 * it (the SSH banner) is still in the socket for the SSH client. Returns 0
 * when an answer was read, -1 with err set otherwise.
 */
int tunnel_connect(struct api_conn *c, const struct api_addr *a,
                   const char *path, const char *token, long timeout,
                   struct connect_reply *r, char *err, size_t errlen);

#endif
