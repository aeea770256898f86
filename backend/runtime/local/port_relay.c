/*
 * port_relay.c - the port relay of pico-init (PID 1 of a local sandbox):
 * one forked child per connection accepted on the session's ports.sock
 * (fd 4), which connects to 127.0.0.1:<port> inside the sandbox's own
 * network namespace and relays both ways. The sandbox gets no network
 * interface for this: the bytes come in over the unix socket the backend
 * bound on the host, like sshd's.
 *
 * A connection names its port first, in one of two forms:
 *
 *   "PORT <n>\n"     a raw tunnel (CONNECT .../ports/<n>/tunnel): answered
 *                    "OK\n" once connected, else "ERR <why>\n" and closed,
 *                    so nginx can turn "nothing listens" into a 502
 *   an HTTP request  an HTTP preview (nginx's proxy_pass): the port is its
 *                    X-Pico-Port header, which nginx sets; the request
 *                    goes on to the app unchanged, a failure is answered
 *                    with an HTTP 502 of our own
 *
 * <n> is parsed by common/pico_parse.c (1..65535, the module's rule). The
 * child is bounded: the header must come within HEADER_TIMEOUT_S and
 * HEADER_MAX bytes. PID 1 itself only accepts, forks and counts children
 * (at most PORT_CHILDREN at once), so nothing a client sends reaches it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/pico_parse.h"
#include "runtime/local/port_relay.h"

#define HEADER_MAX 16384
#define HEADER_TIMEOUT_S 10
#define RELAY_BUF 65536
#define PORT_CHILDREN 256

static pid_t children[PORT_CHILDREN];
static int nchildren;

/* Reads until a whole first line (raw) or header (HTTP) is in buf. */
static ssize_t read_header(int fd, char *buf, size_t cap, int *http)
{
    size_t got = 0;

    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t n;

        if (poll(&p, 1, HEADER_TIMEOUT_S * 1000) <= 0)
            return -1;
        n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
        buf[got] = '\0';
        *http = strncmp(buf, "PORT ", got < 5 ? got : 5) != 0;
        if (!*http && memchr(buf, '\n', got) != NULL)
            return (ssize_t)got;
        if (*http && strstr(buf, "\r\n\r\n") != NULL)
            return (ssize_t)got;
        if (got == cap - 1)
            return -1;
    }
}

/* The port a header names, 0 if none; *skip: bytes that are ours. */
static unsigned header_port(const char *buf, int http, size_t *skip)
{
    static const char name[] = "\r\nx-pico-port:";
    const char *p, *end;

    *skip = 0;
    if (!http) {
        end = strchr(buf, '\n');
        *skip = (size_t)(end - buf) + 1;
        return pico_parse_port((const unsigned char *)buf + 5,
                               (size_t)(end - buf) - 5);
    }
    for (p = buf; (p = strchr(p, '\r')) != NULL; p++) {
        if (strncasecmp(p, name, sizeof(name) - 1) != 0)
            continue;
        p += sizeof(name) - 1;
        while (*p == ' ' || *p == '\t')
            p++;
        for (end = p; *end >= '0' && *end <= '9'; end++)
            ;
        return pico_parse_port((const unsigned char *)p, (size_t)(end - p));
    }
    return 0;
}

/* Connects to the port on loopback, IPv4 first, then ::1. */
static int connect_port(unsigned port)
{
    struct sockaddr_in a4 = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
                              .sin6_port = htons((uint16_t)port),
                              .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int fd, e;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a4, sizeof(a4)) == 0)
        return fd;
    e = errno;
    if (fd >= 0)
        (void)close(fd);
    fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0)
        return fd;
    if (fd >= 0)
        (void)close(fd);
    errno = e; /* the IPv4 answer is the one to report */
    return -1;
}

static int send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Tells the client why there is no relay, in its protocol. */
static void refuse(int conn, int http, const char *why)
{
    char msg[512];
    int n;

    if (!http) {
        n = snprintf(msg, sizeof(msg), "ERR %s\n", why);
    } else {
        char body[256];
        int blen = snprintf(body, sizeof(body),
                            "{\"error\":{\"code\":\"port_unreachable\","
                            "\"message\":\"%s\"}}\n",
                            why);
        n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 502 Bad Gateway\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                     blen, body);
    }
    if (n > 0 && (size_t)n < sizeof(msg))
        (void)send_all(conn, msg, (size_t)n);
}

/* Moves bytes both ways until both have ended; EOF one way is passed on
 * as a shutdown of writing, so half-closed protocols work. */
static void relay(int a, int b)
{
    static char buf[2][RELAY_BUF];
    struct pollfd p[2];
    int fd[2] = {a, b}, open[2] = {1, 1};

    while (open[0] || open[1]) {
        for (int i = 0; i < 2; i++) {
            p[i].fd = open[i] ? fd[i] : -1;
            p[i].events = POLLIN;
        }
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        for (int i = 0; i < 2; i++) {
            ssize_t n;

            if (!open[i] || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            n = recv(fd[i], buf[i], sizeof(buf[i]), 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                open[i] = 0;
                (void)shutdown(fd[1 - i], SHUT_WR);
                if (n < 0)
                    return; /* reset: nothing more will come either way */
                continue;
            }
            if (send_all(fd[1 - i], buf[i], (size_t)n) < 0)
                return;
        }
    }
}

/* The child: header, connect, status, relay. */
static void serve(int conn)
{
    static char hdr[HEADER_MAX];
    char why[128];
    size_t skip;
    ssize_t got;
    unsigned port;
    int http = 0, app;

    got = read_header(conn, hdr, sizeof(hdr), &http);
    if (got < 0)
        _exit(1);
    port = header_port(hdr, http, &skip);
    if (port == 0) {
        refuse(conn, http, "no valid port (1..65535) named");
        _exit(1);
    }
    app = connect_port(port);
    if (app < 0) {
        if (errno == ECONNREFUSED)
            snprintf(why, sizeof(why), "nothing listens on port %u", port);
        else
            snprintf(why, sizeof(why), "port %u: %s", port, strerror(errno));
        refuse(conn, http, why);
        _exit(1);
    }
    if ((!http && send_all(conn, "OK\n", 3) < 0) ||
        send_all(app, hdr + skip, (size_t)got - skip) < 0)
        _exit(1);
    relay(conn, app);
    _exit(0);
}

int port_relay_accept(int lfd, const int *close_fds, int nclose)
{
    pid_t pid;
    int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

    if (conn < 0)
        return (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED ||
                errno == EPROTO)
                   ? 0
                   : 100;
    if (nchildren >= PORT_CHILDREN) {
        (void)close(conn); /* the module sees EOF before any status */
        return 100;
    }
    pid = fork();
    if (pid == 0) {
        for (int i = 0; i < nclose; i++)
            (void)close(close_fds[i]);
        serve(conn);
    }
    (void)close(conn);
    if (pid < 0)
        return 100;
    children[nchildren++] = pid;
    return 0;
}

void port_relay_reaped(pid_t pid)
{
    for (int i = 0; i < nchildren; i++) {
        if (children[i] == pid) {
            children[i] = children[--nchildren];
            return;
        }
    }
}
