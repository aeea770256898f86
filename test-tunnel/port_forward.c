/*
 * port_forward.c - the -listen mode (see port_forward.h). One child per
 * connection: its tunnel and relay are its own, a failure ends only it,
 * and the parent just accepts. Children are reaped by SIGCHLD's SIG_IGN.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "port_forward.h"

#define RELAY_BUF 65536

/* Splits "HOST:PORT" or "[V6]:PORT" into host and port, in place. */
static int split_addr(char *s, char **host, char **port)
{
    char *colon = strrchr(s, ':');

    if (colon == NULL || colon[1] == '\0')
        return -1;
    *colon = '\0';
    *port = colon + 1;
    *host = s;
    if (s[0] == '[') {
        size_t n = strlen(s);

        if (n < 2 || s[n - 1] != ']')
            return -1;
        s[n - 1] = '\0';
        *host = s + 1;
    }
    return **host ? 0 : -1;
}

static int listen_on(const char *addr, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char *copy = strdup(addr), *host, *port;
    int fd = -1, one = 1, rc;

    if (copy == NULL || split_addr(copy, &host, &port) < 0) {
        snprintf(err, errlen, "-listen %s: expected ADDR:PORT", addr);
        free(copy);
        return -1;
    }
    rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "-listen %s: %s", addr, gai_strerror(rc));
        free(copy);
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "-listen %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    free(copy);
    return fd;
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

/* Both ways until both have ended; EOF one way half-closes the other. */
static void relay(int a, int b)
{
    static char buf[RELAY_BUF];
    int fd[2] = {a, b}, open[2] = {1, 1};

    while (open[0] || open[1]) {
        struct pollfd p[2] = {{open[0] ? a : -1, POLLIN, 0},
                              {open[1] ? b : -1, POLLIN, 0}};

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        for (int i = 0; i < 2; i++) {
            ssize_t n;

            if (!open[i] || !p[i].revents)
                continue;
            n = recv(fd[i], buf, sizeof(buf), 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                open[i] = 0;
                (void)shutdown(fd[1 - i], SHUT_WR);
                if (n < 0)
                    return;
                continue;
            }
            if (send_all(fd[1 - i], buf, (size_t)n) < 0)
                return;
        }
    }
}

static void print_bound(int lfd)
{
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof(ss);
    char host[NI_MAXHOST], port[NI_MAXSERV];

    if (getsockname(lfd, (struct sockaddr *)&ss, &len) == 0 &&
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port,
                    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
        fprintf(stderr, "Forwarding %s%s%s:%s\n",
                ss.ss_family == AF_INET6 ? "[" : "", host,
                ss.ss_family == AF_INET6 ? "]" : "", port);
        fflush(stderr);
    }
}

int port_forward(const char *addr, tunnel_open_fn open, void *ctx, char *err,
                 size_t errlen)
{
    int lfd = listen_on(addr, err, errlen);

    if (lfd < 0)
        return -1;
    (void)signal(SIGCHLD, SIG_IGN); /* children reap themselves */
    print_bound(lfd);
    for (;;) {
        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), tun;
        pid_t pid;

        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            snprintf(err, errlen, "accept: %s", strerror(errno));
            close(lfd);
            return -1;
        }
        pid = fork();
        if (pid == 0) {
            close(lfd);
            tun = open(ctx);
            if (tun >= 0)
                relay(conn, tun);
            _exit(tun >= 0 ? 0 : 1);
        }
        if (pid < 0)
            log_error("fork: %s", strerror(errno));
        close(conn);
    }
}
