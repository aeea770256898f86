/*
 * tls.c - TLS to https:// API addresses (see tls.h).
 *
 * libssh only takes a socket, so after the CONNECT the TLS stream is moved
 * to a thread that relays between it and one end of a socketpair; libssh
 * (or the -stdio relay) gets the other end. The thread is the only user of
 * the SSL object from then on.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define RELAY_BUF 65536

struct tls_relay {
    struct api_conn conn;
    int app; /* our end of the socketpair */
    pthread_t thread;
};

/* Bounds blocking socket calls, so a stalled server cannot hang us. */
static void set_io_timeout(int fd, long timeout)
{
    struct timeval tv = {.tv_sec = timeout};

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void tls_err(char *err, size_t errlen, SSL *ssl, int rc)
{
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e = ERR_peek_last_error();

    if (verify != X509_V_OK)
        snprintf(err, errlen, "tls: certificate: %s",
                 X509_verify_cert_error_string(verify));
    else if (e)
        snprintf(err, errlen, "tls: %s", ERR_reason_error_string(e));
    else if (ssl && SSL_get_error(ssl, rc) == SSL_ERROR_SYSCALL && errno)
        snprintf(err, errlen, "tls: %s", strerror(errno));
    else
        snprintf(err, errlen, "tls: handshake failed");
    ERR_clear_error();
}

/* Names the server the certificate must match: a host name or an IP. */
static int expect_host(SSL *ssl, const char *host)
{
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    unsigned char ip[16];

    if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(vp, host) == 1 ? 0 : -1;
    if (SSL_set_tlsext_host_name(ssl, host) != 1)
        return -1;
    return SSL_set1_host(ssl, host) == 1 ? 0 : -1;
}

static SSL_CTX *client_ctx(const char *cafile, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cafile && cafile[0]) {
        if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
            snprintf(err, errlen, "tls: cannot load CA file %s", cafile);
            ERR_clear_error();
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        goto fail;
    }
    return ctx;

fail:
    tls_err(err, errlen, NULL, 0);
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_start(struct api_conn *c, const char *host, const char *cafile,
              long timeout, char *err, size_t errlen)
{
    SSL_CTX *ctx = client_ctx(cafile, err, errlen);
    SSL *ssl;
    int rc;

    if (ctx == NULL)
        return -1;
    ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL keeps its own reference */
    if (ssl == NULL || expect_host(ssl, host) < 0 ||
        SSL_set_fd(ssl, c->fd) != 1) {
        tls_err(err, errlen, NULL, 0);
        SSL_free(ssl);
        return -1;
    }
    set_io_timeout(c->fd, timeout);
    errno = 0;
    rc = SSL_connect(ssl);
    if (rc != 1) {
        tls_err(err, errlen, ssl, rc);
        SSL_free(ssl);
        return -1;
    }
    c->ssl = ssl;
    return 0;
}

static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Server -> app; returns 1 at the server's end, -1 when the app left. */
static int pump_down(struct tls_relay *r, char *buf)
{
    ssize_t n = conn_recv(&r->conn, buf, RELAY_BUF, 0);

    if (n <= 0) {
        shutdown(r->app, SHUT_WR);
        return 1;
    }
    return send_all(r->app, buf, (size_t)n) < 0 ? -1 : 0;
}

/* App -> server; returns 1 at the app's end, -1 on a failed write. */
static int pump_up(struct tls_relay *r, char *buf)
{
    ssize_t n = read(r->app, buf, RELAY_BUF);

    if (n < 0 && errno == EINTR)
        return 0;
    if (n <= 0) {
        SSL_shutdown(r->conn.ssl); /* close_notify: our half is done */
        return 1;
    }
    return conn_send_all(&r->conn, buf, (size_t)n) < 0 ? -1 : 0;
}

static void *relay_main(void *arg)
{
    struct tls_relay *r = arg;
    char *buf = malloc(RELAY_BUF);
    int up_done = 0, down_done = 0;

    while (buf && !(up_done && down_done)) {
        struct pollfd p[2] = {
            {.fd = down_done ? -1 : r->conn.fd, .events = POLLIN},
            {.fd = up_done ? -1 : r->app, .events = POLLIN}};
        int rc = 0;

        if (down_done || SSL_pending(r->conn.ssl) == 0) {
            if (poll(p, 2, -1) < 0 && errno != EINTR)
                break;
        } else {
            p[0].revents = POLLIN;
        }
        if (!down_done && p[0].revents)
            rc = pump_down(r, buf);
        if (rc < 0)
            break;
        down_done |= rc;
        rc = 0;
        if (!up_done && p[1].revents)
            rc = pump_up(r, buf);
        if (rc < 0)
            break;
        up_done |= rc;
    }
    /* Whatever ended us, the app must see the end of the stream. */
    shutdown(r->app, SHUT_RDWR);
    free(buf);
    return NULL;
}

int tls_relay_start(struct api_conn *c, struct tls_relay **out, char *err,
                    size_t errlen)
{
    struct tls_relay *r = calloc(1, sizeof(*r));
    int sv[2];

    if (r == NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        snprintf(err, errlen, "tls relay: %s", strerror(errno));
        free(r);
        return -1;
    }
    r->conn = *c;
    r->app = sv[1];
    /* From here a quiet tunnel is normal: no more I/O timeouts. */
    set_io_timeout(c->fd, 0);
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        snprintf(err, errlen, "tls relay: cannot start thread");
        close(sv[0]);
        close(sv[1]);
        free(r);
        return -1;
    }
    c->fd = -1;
    c->ssl = NULL;
    *out = r;
    return sv[0];
}

void tls_relay_stop(struct tls_relay *r)
{
    if (r == NULL)
        return;
    /* The caller is done: wake the thread wherever it waits. */
    shutdown(r->conn.fd, SHUT_RDWR);
    shutdown(r->app, SHUT_RDWR);
    pthread_join(r->thread, NULL);
    conn_close(&r->conn);
    close(r->app);
    free(r);
}
