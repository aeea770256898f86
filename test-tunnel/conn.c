/*
 * conn.c - reading and writing the API stream, plain or TLS (see conn.h).
 *
 * SSL_peek plays the part of MSG_PEEK, so the CONNECT answer is consumed
 * exactly up to its end over TLS too. OpenSSL reads the socket one record
 * at a time, so when it holds no decrypted bytes (SSL_pending) an idle
 * socket means nothing to read.
 */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "conn.h"

int fd_wait(int fd, short events, long timeout)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int ms = timeout > 0 ? (int)(timeout * 1000) : -1;
    int n;

    do {
        n = poll(&pfd, 1, ms);
    } while (n < 0 && errno == EINTR);
    if (n == 0)
        errno = ETIMEDOUT;
    return n > 0 ? 0 : -1;
}

int conn_wait(struct api_conn *c, short events, long timeout)
{
    if (c->ssl && (events & POLLIN) && SSL_pending(c->ssl) > 0)
        return 0;
    return fd_wait(c->fd, events, timeout);
}

/* Maps an OpenSSL I/O failure to the read/write convention. */
static ssize_t ssl_result(SSL *ssl, int n)
{
    int e = SSL_get_error(ssl, n);

    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    if (e == SSL_ERROR_SYSCALL && errno == 0)
        return 0; /* the peer closed without close_notify */
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        errno = ETIMEDOUT; /* SO_RCVTIMEO / SO_SNDTIMEO ran out */
    else if (e != SSL_ERROR_SYSCALL)
        errno = EPROTO;
    return -1;
}

ssize_t conn_recv(struct api_conn *c, void *buf, size_t len, int peek)
{
    ssize_t n;

    if (c->ssl == NULL) {
        do {
            n = recv(c->fd, buf, len, peek ? MSG_PEEK : 0);
        } while (n < 0 && errno == EINTR);
        return n;
    }
    errno = 0;
    n = peek ? SSL_peek(c->ssl, buf, (int)len)
             : SSL_read(c->ssl, buf, (int)len);
    return n > 0 ? n : ssl_result(c->ssl, (int)n);
}

int conn_send_all(struct api_conn *c, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n;

        if (c->ssl) {
            errno = 0;
            n = SSL_write(c->ssl, p, (int)len);
            if (n <= 0) {
                if (ssl_result(c->ssl, (int)n) == 0)
                    errno = EPIPE;
                return -1;
            }
        } else {
            n = send(c->fd, p, len, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void conn_close(struct api_conn *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}
