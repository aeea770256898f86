/*
 * stdio_relay.c - byte relay between our stdin/stdout and the tunnel socket.
 *
 * A poll loop with one buffer per direction. EOF is passed on in each
 * direction separately: stdin's EOF becomes a half-close of the socket
 * (the sandbox sees the end of input and can still answer), the socket's
 * EOF closes stdout. The relay ends when both directions have ended, or
 * as soon as the server side has ended (the SSH client is then done).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stdio_relay.h"

#define RELAY_BUF 65536

/* One direction: bytes read from `from` wait in buf until written. */
struct pipe_dir {
    int from, to;
    char buf[RELAY_BUF];
    size_t len, off;
    int eof;  /* `from` has ended */
    int done; /* eof and everything written; `to` was shut */
};

static void dir_finish(struct pipe_dir *d, int to_is_sock)
{
    d->done = 1;
    if (to_is_sock)
        shutdown(d->to, SHUT_WR);
    else
        close(d->to);
}

/* Reads into an empty buffer; returns -1 on a read error. */
static int dir_read(struct pipe_dir *d)
{
    ssize_t n = read(d->from, d->buf, sizeof(d->buf));

    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -1;
    if (n == 0)
        d->eof = 1;
    d->len = (size_t)n;
    d->off = 0;
    return 0;
}

/* Writes what the buffer holds; returns -1 when the reader went away. */
static int dir_write(struct pipe_dir *d, int to_is_sock)
{
    ssize_t n;

    if (to_is_sock)
        n = send(d->to, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
    else
        n = write(d->to, d->buf + d->off, d->len - d->off);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -1;
    d->off += (size_t)n;
    if (d->off == d->len)
        d->len = d->off = 0;
    return 0;
}

/* Sets what poll should watch for this direction. */
static void dir_events(const struct pipe_dir *d, struct pollfd *in,
                       struct pollfd *out)
{
    if (d->done)
        return;
    if (d->len == 0 && !d->eof)
        in->events |= POLLIN;
    if (d->len > 0)
        out->events |= POLLOUT;
}

static int dir_step(struct pipe_dir *d, short in_rev, short out_rev,
                    int to_is_sock)
{
    if (d->done)
        return 0;
    if (d->len > 0 && (out_rev & (POLLOUT | POLLERR | POLLHUP)))
        if (dir_write(d, to_is_sock) < 0)
            return -1;
    if (d->len == 0 && !d->eof && (in_rev & (POLLIN | POLLHUP | POLLERR)))
        if (dir_read(d) < 0)
            return -1;
    if (d->eof && d->len == 0)
        dir_finish(d, to_is_sock);
    return 0;
}

int stdio_relay(int sock, char *err, size_t errlen)
{
    static struct pipe_dir up, down; /* 128 KiB: not on the stack */
    int rc = 0;

    memset(&up, 0, sizeof(up));
    memset(&down, 0, sizeof(down));
    up.from = STDIN_FILENO;
    up.to = sock;
    down.from = sock;
    down.to = STDOUT_FILENO;
    while (!down.done) {
        struct pollfd p[3] = {
            {.fd = STDIN_FILENO}, {.fd = sock}, {.fd = STDOUT_FILENO}};

        dir_events(&up, &p[0], &p[1]);
        dir_events(&down, &p[1], &p[2]);
        if (up.done)
            p[0].fd = -1;
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            rc = -1;
            break;
        }
        if (dir_step(&up, p[0].revents, p[1].revents, 1) < 0 ||
            dir_step(&down, p[1].revents, p[2].revents, 0) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc < 0)
        snprintf(err, errlen, "tunnel relay: %s", strerror(errno));
    if (!down.done)
        close(STDOUT_FILENO);
    return rc;
}
