/*
 * listen.c - the REST API's listening socket (config `listen`): a unix
 * socket for nginx on the same host (the usual case: only nginx's group
 * and root reach it) or a TCP address. http_api.c hands the descriptor to
 * libmicrohttpd, which then accepts on it.
 */
#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/listen.h"
#include "core/util.h"

/* A unix socket at path, mode 0660, group `group` (nginx's workers). */
static int listen_unix(const char *path, const char *group, char *err,
                       size_t errlen)
{
    int fd;

    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(err, errlen, "listen: socket path too long: %s", path);
        return -1;
    }
    /* A socket file nobody answers on is left over from a crash. */
    fd = unix_connect(path, 0);
    if (fd >= 0) {
        snprintf(err, errlen, "listen: %s is in use by another process", path);
        close(fd);
        return -1;
    }
    unlink(path);
    fd = unix_bind(path);
    if (fd < 0) {
        snprintf(err, errlen, "listen: bind %s: %s", path, strerror(errno));
        return -1;
    }
    if (chmod(path, 0660) < 0)
        log_warn("listen: chmod %s: %s", path, strerror(errno));
    if (group[0]) {
        struct group *gr = getgrnam(group);
        if (gr == NULL)
            log_warn("listen: no group %s; %s keeps its group", group, path);
        else if (chown(path, (uid_t)-1, gr->gr_gid) < 0)
            log_warn("listen: chgrp %s %s: %s", group, path, strerror(errno));
    }
    if (listen(fd, 1024) < 0) {
        snprintf(err, errlen, "listen %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* host:port, numeric port; host may be a name, resolved once here. */
static int listen_tcp(const char *addr, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    struct addrinfo hints, *res = NULL;
    size_t n = colon ? (size_t)(colon - addr) : 0;
    int fd, one = 1, rc;

    if (colon == NULL || n >= sizeof(host)) {
        snprintf(err, errlen, "listen: bad address %s", addr);
        return -1;
    }
    memcpy(host, addr, n);
    host[n] = '\0';
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "listen %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

int api_listen(const char *addr, const char *group, char *err, size_t errlen)
{
    if (strncmp(addr, "unix:", 5) == 0)
        return listen_unix(addr + 5, group, err, errlen);
    return listen_tcp(addr, err, errlen);
}
