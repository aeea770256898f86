/*
 * tunnel_load: the load tool of bench/tunnel.py (and of the module's e2e
 * tests that need an endpoint they control).  Loopback and unix sockets
 * only.
 *
 *   tunnel_load server PATH
 *       endpoint on a unix socket; each connection sends one line:
 *       "up N\n"   the client then sends N bytes; answered "ok\n"
 *       "down N\n" the server sends N bytes, then closes
 *       "echo\n"   echoes until EOF
 *       "idle\n"   holds the connection until the client closes
 *   tunnel_load idle-server PATH
 *       endpoint for many idle tunnels: one thread, epoll; accepts,
 *       discards what arrives, closes on EOF
 *   tunnel_load up|down BYTES TARGET
 *       one transfer, prints "<seconds>"
 *   tunnel_load latency COUNT TARGET
 *       CONNECT -> 200 latencies of COUNT tunnels, prints microseconds
 *       one per line
 *   tunnel_load latency-each TARGET...
 *       the same, one tunnel to each TARGET in turn (the first CONNECT to
 *       each of many sessions: what a lookup cache cannot have seen)
 *   tunnel_load hold COUNT TARGET [SOURCE]
 *       tries COUNT idle tunnels (a failure does not stop it), prints
 *       "ready OPENED REFUSED503 OTHER" (OTHER: nginx closed without an
 *       answer, another status, or the connect failed) and holds the
 *       opened ones until its stdin closes.  SOURCE: the loopback address
 *       to connect from (e.g. 127.0.0.2), so that several processes do not
 *       share one range of ephemeral ports
 *
 * TARGET is unix:PATH or tcp:127.0.0.1:PORT (direct), or
 * HOST:PORT/SESSION_ID (through nginx: CONNECT /v1/sessions/ID/tunnel),
 * or proxy:HOST:PORT/AUTHORITY (through a CONNECT proxy such as squid or
 * tinyproxy: CONNECT AUTHORITY, e.g. 127.0.0.1:2222).  The server's
 * PATH may also be 127.0.0.1:PORT.
 *
 * BYTES, COUNT and the ports are decimal numbers, nothing else: a bad one
 * is reported on stderr and the exit status is 2 (as for a bad TARGET).
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CHUNK ((size_t)256 * 1024)

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/*
 * The decimal number at s, in [min, max] (min >= 0), that ends at stop or
 * at the end of s; -1 if there is none.  Unlike atoi and strtoll alone, no
 * spaces, sign, junk or overflow.
 */
static int parse_num(const char *s, char stop, long long min, long long max,
                     long long *out)
{
    char *end;
    long long v;

    if (*s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || (*end != '\0' && *end != stop) || v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

/* a command-line number (what: its name), or a message and exit 2 */
static long long arg_num(const char *s, long long max, const char *what)
{
    long long v;

    if (parse_num(s, '\0', 0, max, &v) != 0) {
        fprintf(stderr, "tunnel_load: bad %s '%s' (0 to %lld)\n", what, s, max);
        exit(2);
    }
    return v;
}

/* the port at s, ending at stop or the end of s, or a message naming
 * where (the whole argument) and exit 2 */
static unsigned short port_of(const char *s, char stop, const char *where)
{
    long long port;

    if (parse_num(s, stop, 1, 65535, &port) != 0) {
        fprintf(stderr, "tunnel_load: bad port in '%s' (1 to 65535)\n", where);
        exit(2);
    }
    return (unsigned short)port;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_line(int fd, char *buf, size_t size)
{
    size_t n = 0;

    while (n + 1 < size) {
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0) {
            return -1;
        }
        if (buf[n] == '\n') {
            buf[n] = '\0';
            return 0;
        }
        n++;
    }
    return -1;
}

/* -- server ------------------------------------------------------------ */

/* arg: the accepted connection's fd, in memory of its own that serve()
 * frees (a thread argument is a pointer, not an int) */
static void *serve(void *arg)
{
    int fd = *(int *)arg;
    char line[64], *buf;
    long long n;
    ssize_t r;

    free(arg);
    buf = malloc(CHUNK);
    if (buf == NULL || read_line(fd, line, sizeof(line)) != 0) {
        goto done;
    }

    if (strncmp(line, "up ", 3) == 0) {
        if (parse_num(line + 3, '\0', 0, LLONG_MAX, &n) != 0) {
            fprintf(stderr, "tunnel_load: bad request '%s'\n", line);
            goto done;
        }
        while (n > 0 && (r = read(fd, buf, CHUNK)) > 0) {
            n -= r;
        }
        (void)write_all(fd, "ok\n", 3); /* if not: the client's "no ok" */

    } else if (strncmp(line, "down ", 5) == 0) {
        if (parse_num(line + 5, '\0', 0, LLONG_MAX, &n) != 0) {
            fprintf(stderr, "tunnel_load: bad request '%s'\n", line);
            goto done;
        }
        memset(buf, 'x', CHUNK);
        while (n > 0) {
            size_t k = n > (long long)CHUNK ? CHUNK : (size_t)n;
            if (write_all(fd, buf, k) != 0) {
                break;
            }
            n -= (long long)k;
        }

    } else if (strcmp(line, "echo") == 0) {
        while ((r = read(fd, buf, CHUNK)) > 0) {
            if (write_all(fd, buf, (size_t)r) != 0) {
                break;
            }
        }

    } else {
        while (read(fd, buf, CHUNK) > 0) {
        }
    }

done:
    free(buf);
    close(fd);
    return NULL;
}

static int listen_on(const char *path)
{
    int s;
    struct sockaddr_un sa;

    if (strncmp(path, "127.0.0.1:", 10) == 0) {
        int one = 1;
        struct sockaddr_in sin;

        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons(port_of(path + 10, '\0', path));
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s = socket(AF_INET, SOCK_STREAM, 0);
        if (s >= 0) {
            setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        }
        if (s < 0 || bind(s, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
            listen(s, 4096) != 0) {
            die("server");
        }

    } else {
        memset(&sa, 0, sizeof(sa));
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        unlink(path);

        s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            listen(s, 4096) != 0) {
            die("server");
        }
        chmod(path, 0777);
    }

    return s;
}

static int idle_server(const char *path)
{
    int s, ep, fd, i, n;
    char buf[4096];
    struct epoll_event ev, evs[256];

    s = listen_on(path);
    ep = epoll_create1(0);
    ev.events = EPOLLIN;
    ev.data.fd = s;
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) != 0) {
        die("epoll");
    }

    printf("listening\n");
    fflush(stdout);

    for (;;) {
        n = epoll_wait(ep, evs, 256, -1);
        for (i = 0; i < n; i++) {
            fd = evs[i].data.fd;
            if (fd == s) {
                int c = accept(s, NULL, NULL);
                if (c >= 0) {
                    ev.events = EPOLLIN;
                    ev.data.fd = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            if (read(fd, buf, sizeof(buf)) <= 0) {
                close(fd);
            }
        }
    }

    return 0;
}

static int server(const char *path)
{
    int s, fd, *arg;
    pthread_t th;
    pthread_attr_t attr;

    s = listen_on(path);

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, (size_t)64 * 1024);

    printf("listening\n");
    fflush(stdout);

    for (;;) {
        fd = accept(s, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == EMFILE || errno == ENFILE) {
                usleep(1000);
                continue;
            }
            die("accept");
        }
        arg = malloc(sizeof(*arg));
        if (arg == NULL) {
            close(fd);
            continue;
        }
        *arg = fd;
        if (pthread_create(&th, &attr, serve, arg) != 0) {
            free(arg);
            close(fd);
        }
    }

    return 0;
}

/* -- clients ----------------------------------------------------------- */

/* connects to TARGET; through nginx it also does the CONNECT exchange */
/* why the last open_target() through nginx failed: its HTTP status, 0 for
 * a close without an answer, -1 for a failed connect */
static int last_status;
static struct in_addr source_addr;

/* the status of an answer "HTTP/1.x NNN ..." (tinyproxy answers HTTP/1.0),
 * 0 if it is not one */
static int http_status(const char *answer)
{
    int i, status = 0;

    if (strncmp(answer, "HTTP/1.", 7) != 0 || answer[7] == '\0' ||
        answer[8] != ' ') {
        return 0;
    }
    for (i = 9; i < 12; i++) {
        if (answer[i] < '0' || answer[i] > '9') {
            return 0;
        }
        status = status * 10 + (answer[i] - '0');
    }
    return answer[12] >= '0' && answer[12] <= '9' ? 0 : status;
}

static int open_target(const char *target, double *latency)
{
    int fd, one = 1, proxy;
    char host[64], req[256], buf[1024];
    const char *slash, *colon;
    size_t n = 0;
    double t0;
    struct sockaddr_in sin;
    struct sockaddr_un sa;

    t0 = now();

    if (strncmp(target, "unix:", 5) == 0) {
        memset(&sa, 0, sizeof(sa));
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", target + 5);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            return -1;
        }
        if (latency) {
            *latency = now() - t0;
        }
        return fd;
    }

    if (strncmp(target, "tcp:", 4) == 0) {
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons(port_of(strrchr(target, ':') + 1, '\0', target));
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
            return -1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (latency) {
            *latency = now() - t0;
        }
        return fd;
    }

    proxy = strncmp(target, "proxy:", 6) == 0;
    if (proxy) {
        target += 6;
    }

    colon = strchr(target, ':');
    slash = strchr(target, '/');
    if (colon == NULL || slash == NULL ||
        colon - target >= (long)sizeof(host)) {
        fprintf(stderr, "bad target %s\n", target);
        exit(2);
    }
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = '\0';

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port_of(colon + 1, '/', target));
    inet_pton(AF_INET, host, &sin.sin_addr);

    last_status = -1;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && source_addr.s_addr != 0) {
        struct sockaddr_in src;

        memset(&src, 0, sizeof(src));
        src.sin_family = AF_INET;
        src.sin_addr = source_addr;
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            perror("bind");
            close(fd);
            return -1;
        }
    }
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        perror("connect to nginx");
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (proxy) {
        snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n",
                 slash + 1, slash + 1);
    } else {
        snprintf(req, sizeof(req),
                 "CONNECT /v1/sessions/%s/tunnel HTTP/1.1\r\nHost: %s\r\n\r\n",
                 slash + 1, host);
    }
    if (write_all(fd, req, strlen(req)) != 0) {
        close(fd);
        return -1;
    }

    /*
     * The endpoints of this tool say nothing before the client's first
     * line, so everything up to the blank line is nginx's answer alone.
     */
    while (n < sizeof(buf) - 1) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r <= 0) {
            fprintf(stderr, "nginx closed before answering: %s\n",
                    r < 0 ? strerror(errno) : "EOF");
            last_status = 0;
            close(fd);
            return -1;
        }
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL) {
            break;
        }
    }
    buf[n] = '\0';

    last_status = http_status(buf);
    if (last_status != 200) {
        if (last_status != 503) {
            fprintf(stderr, "CONNECT failed: %.60s\n", buf);
        }
        close(fd);
        return -1;
    }

    if (latency) {
        *latency = now() - t0;
    }

    return fd;
}

static int transfer(const char *dir, long long bytes, const char *target)
{
    int fd, rc = 1;
    char line[64], *buf;
    long long n;
    ssize_t r;
    double t0;

    buf = malloc(CHUNK);
    if (buf == NULL) {
        die("malloc");
    }
    memset(buf, 'y', CHUNK);

    fd = open_target(target, NULL);
    if (fd < 0) {
        die("connect");
    }

    snprintf(line, sizeof(line), "%s %lld\n", dir, bytes);
    if (write_all(fd, line, strlen(line)) != 0) {
        die("write");
    }

    t0 = now();

    if (strcmp(dir, "up") == 0) {
        n = bytes;
        while (n > 0) {
            size_t k = n > (long long)CHUNK ? CHUNK : (size_t)n;
            if (write_all(fd, buf, k) != 0) {
                die("write");
            }
            n -= (long long)k;
        }
        if (read_line(fd, line, sizeof(line)) != 0 || strcmp(line, "ok") != 0) {
            fprintf(stderr, "no ok\n");
            goto done;
        }

    } else {
        n = 0;
        while ((r = read(fd, buf, CHUNK)) > 0) {
            n += r;
        }
        if (n != bytes) {
            fprintf(stderr, "short: %lld of %lld\n", n, bytes);
            goto done;
        }
    }

    printf("%.6f\n", now() - t0);
    rc = 0;

done:
    close(fd);
    free(buf);
    return rc;
}

/* One timed tunnel to target, its microseconds printed; -1 if it failed. */
static int latency_one(const char *target, int i)
{
    double l;
    int fd = open_target(target, &l);

    if (fd < 0) {
        fprintf(stderr, "tunnel %d failed\n", i);
        return -1;
    }
    printf("%.1f\n", l * 1e6);
    close(fd);
    return 0;
}

static int latency(int count, const char *target)
{
    int i;

    for (i = 0; i < count; i++) {
        if (latency_one(target, i) < 0) {
            return 1;
        }
    }
    return 0;
}

static int latency_each(int count, char **targets)
{
    int i;

    for (i = 0; i < count; i++) {
        if (latency_one(targets[i], i) < 0) {
            return 1;
        }
    }
    return 0;
}

static int hold(int count, const char *target, const char *source)
{
    int i, fd, opened = 0, refused = 0, other = 0;
    char c;

    if (source != NULL && inet_pton(AF_INET, source, &source_addr) != 1) {
        fprintf(stderr, "bad source address %s\n", source);
        return 2;
    }

    for (i = 0; i < count; i++) {
        fd = open_target(target, NULL);
        if (fd < 0) {
            if (last_status == 503) {
                refused++;
            } else {
                other++;
            }
            continue;
        }
        write_all(fd, "idle\n", 5);
        opened++;
    }

    printf("ready %d %d %d\n", opened, refused, other);
    fflush(stdout);

    while (read(0, &c, 1) > 0) {
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        die("signal");
    }

    if (argc == 3 && strcmp(argv[1], "idle-server") == 0) {
        return idle_server(argv[2]);
    }
    if (argc == 3 && strcmp(argv[1], "server") == 0) {
        return server(argv[2]);
    }
    if (argc == 4 &&
        (strcmp(argv[1], "up") == 0 || strcmp(argv[1], "down") == 0)) {
        return transfer(argv[1], arg_num(argv[2], LLONG_MAX, "BYTES"), argv[3]);
    }
    if (argc == 4 && strcmp(argv[1], "latency") == 0) {
        return latency((int)arg_num(argv[2], INT_MAX, "COUNT"), argv[3]);
    }
    if (argc >= 3 && strcmp(argv[1], "latency-each") == 0) {
        return latency_each(argc - 2, argv + 2);
    }
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "hold") == 0) {
        return hold((int)arg_num(argv[2], INT_MAX, "COUNT"), argv[3],
                    argc == 5 ? argv[4] : NULL);
    }

    fprintf(stderr, "usage: see the comment at the top of tunnel_load.c\n");
    return 2;
}
