/*
 * endpoint.c - a local sandbox's endpoint, <dir>/ssh.sock: the backend
 * binds and listens on it before the container exists and hands the
 * listener to pico-init; the readiness probe is a connection made before
 * the container starts that must see sshd's banner. Beside it
 * <dir>/ports.sock, bound the same way, is pico-init's port relay (fd 4,
 * port_relay.c); nginx derives its path from the endpoint's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "runtime/local/local.h"

int check_sock_len(const char *sock, char *err, size_t errlen)
{
    if (strlen(sock) < sizeof(((struct sockaddr_un *)0)->sun_path))
        return 0;
    snprintf(err, errlen,
             "session socket path %s is %zu bytes, over the unix "
             "socket limit of 107: choose a shorter state_dir",
             sock, strlen(sock));
    return -1;
}

enum { SANDBOX_BACKLOG = 4096 };

/* Binds and listens on path, reachable by socket_group (nginx) and root
 * only. */

int sandbox_listen(const runtime *rt, const char *path, char *err,
                   size_t errlen)
{
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    int fd;

    if (strlen(path) > max) {
        snprintf(err, errlen,
                 "socket path too long (%zu bytes, the limit is %zu): "
                 "choose a shorter state_dir",
                 strlen(path), max);
        return -1;
    }
    /* nobody can connect before listen(), so fixing the mode after bind
     * is not a race. The backlog holds a burst of CONNECTs (SSH
     * multiplexing, agents that reconnect per command) while pico-init
     * forks an sshd per connection: at 128, 200 CONNECTs in a row got
     * 502s; the kernel caps it at net.core.somaxconn (4096 here). */
    fd = unix_bind(path);
    if (fd < 0 || chown(path, 0, rt->socket_gid) < 0 || chmod(path, 0660) < 0 ||
        listen(fd, SANDBOX_BACKLOG) < 0) {
        snprintf(err, errlen, "session socket %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int ports_listen(const runtime *rt, const session_paths *p, char *err,
                 size_t errlen)
{
    char path[PICO_PATH_MAX];

    if (fmt_exact(path, sizeof(path), "%s/ports.sock", p->dir) < 0) {
        snprintf(err, errlen, "ports socket path too long");
        return -1;
    }
    return sandbox_listen(rt, path, err, errlen);
}

/* Connects to the session's own listener before the container exists:
 * the connection waits in the backlog, so pico-init takes it the moment it
 * starts and sshd comes up while runc is still finishing. */
int probe_connect(const char *path, char *err, size_t errlen)
{
    int fd = unix_connect(path, SOCK_NONBLOCK);

    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "session socket: %s", strerror(e));
        errno = e; /* gvisor_endpoint retries on ECONNREFUSED */
    }
    return fd;
}

/* The sandbox is ready when its sshd sends the SSH banner on the probe
 * connection: that proves pico-init accepts, sshd starts and its host key
 * and configuration load. */
int wait_banner(int fd, int timeout_ms, char *err, size_t errlen)
{
    long long deadline = mono_ms() + timeout_ms;
    char buf[256];
    size_t got = 0;

    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        long long left = deadline - mono_ms();
        ssize_t n;

        if (left <= 0 || poll(&p, 1, (int)left) == 0) {
            snprintf(err, errlen, "sandbox sshd did not answer within %d ms",
                     timeout_ms);
            return -1;
        }
        n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0) {
            snprintf(err, errlen,
                     "sandbox sshd closed the connection before its banner");
            return -1;
        }
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "SSH-2.0-") != NULL)
            return 0;
        if (got == sizeof(buf) - 1) {
            snprintf(err, errlen, "sandbox sshd sent no SSH banner");
            return -1;
        }
    }
}

/*
 * Tier gvisor: runsc cannot hand our listener in, so pico-init binds the
 * socket itself in the session's ep/ folder (runsc --host-uds=create
 * makes it a host socket, root's, 0755). Waits (bounded) until it is
 * there, gives it to socket_group as ssh.sock is for runc, and returns a
 * connected probe, or -1.
 */
int gvisor_endpoint(const runtime *rt, const session_paths *p, int timeout_ms,
                    char *err, size_t errlen)
{
    struct stat st;
    int waited = 0, fd;

    for (; lstat(p->sock, &st) < 0 || !S_ISSOCK(st.st_mode); waited += 2) {
        if (waited >= timeout_ms)
            goto late;
        usleep(2000);
    }
    if (lchown(p->sock, 0, rt->socket_gid) < 0 || chmod(p->sock, 0660) < 0) {
        snprintf(err, errlen, "endpoint %s: %s", p->sock, strerror(errno));
        return -1;
    }
    /* bound is not yet listening: refused until pico-init's listen() */
    while ((fd = probe_connect(p->sock, err, errlen)) < 0) {
        if (errno != ECONNREFUSED || waited >= timeout_ms)
            return -1;
        usleep(2000);
        waited += 2;
    }
    return fd;
late:
    snprintf(err, errlen, "sandbox did not listen within %d ms", timeout_ms);
    return -1;
}
