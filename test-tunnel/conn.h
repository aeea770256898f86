/*
 * conn.h - the byte stream to the API: a TCP socket, with TLS over it
 * for https:// addresses. The HTTP code (connect.c) reads and writes
 * through these calls, so it does not care which one it has.
 */
#ifndef TT_CONN_H
#define TT_CONN_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

struct api_conn {
    int fd;   /* the TCP socket */
    SSL *ssl; /* TLS over it, or NULL for plain http */
};

/* Waits until fd is ready for events (poll, EINTR retried); 0, or -1 with
 * errno (ETIMEDOUT when the timeout, in seconds, ran out; 0 = forever). */
int fd_wait(int fd, short events, long timeout);

/* Waits until the stream can be read (or written, for POLLOUT). */
int conn_wait(struct api_conn *c, short events, long timeout);

/* recv() or SSL_read(); with peek the bytes stay queued. 0 = closed. */
ssize_t conn_recv(struct api_conn *c, void *buf, size_t len, int peek);

/* Sends everything; 0, or -1 with errno set. */
int conn_send_all(struct api_conn *c, const void *buf, size_t len);

/* Frees the TLS state and closes the socket. */
void conn_close(struct api_conn *c);

#endif
