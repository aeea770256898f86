/*
 * util.c - logging, randomness, UUIDs, time formatting, strict number
 * parsing, name characters, small files and unix sockets, shared by the
 * whole backend. Nothing here touches Redis or the runtime.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/pico_parse.h"
#include "core/util.h"

void log_msg(const char *level, const char *fmt, ...)
{
    char line[2048], ts[32];
    struct timespec tv;
    struct tm tm;
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &tv);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines of concurrent threads never mix. */
    fprintf(stderr, "%s.%03ldZ pico-backend[%d] %s: %s\n", ts,
            tv.tv_nsec / 1000000, (int)getpid(), level, line);
}

int random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;

    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int uuid_v4(char out[37])
{
    unsigned char b[16];
    char hex[33];

    if (random_bytes(b, sizeof(b)) < 0)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    hex_encode(b, sizeof(b), hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
             hex + 16, hex + 20);
    return 0;
}

int uuid_valid(const char *s)
{
    return pico_parse_uuid((const unsigned char *)s, strnlen(s, 37));
}

long long now_ms(void)
{
    struct timespec tv;

    clock_gettime(CLOCK_REALTIME, &tv);
    return (long long)tv.tv_sec * 1000 + tv.tv_nsec / 1000000;
}

long long now_s(void)
{
    return (long long)time(NULL);
}

long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int format_rfc3339(long long t, char *out, size_t outlen)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (t < 0 || t > 253402300799LL || gmtime_r(&tt, &tm) == NULL) {
        copy_str(out, outlen, "");
        return -1;
    }
    if (strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return -1;
    return 0;
}

void hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

int parse_ll(const char *s, long long *out)
{
    char *end;
    long long v;

    if (s == NULL || *s == '\0')
        return -1;
    if (!(*s == '-' || (*s >= '0' && *s <= '9')))
        return -1; /* strtoll would skip spaces and accept '+' */
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || (*s == '-' && end == s + 1))
        return -1;
    *out = v;
    return 0;
}

int copy_str(char *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);

    if (dstlen == 0)
        return -1;
    if (n >= dstlen) {
        memcpy(dst, src, dstlen - 1);
        dst[dstlen - 1] = '\0';
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

int name_chars_valid(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

int read_small_file(const char *path, int flags, char *buf, size_t len)
{
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC | flags);

    if (fd < 0)
        return 0;
    n = read(fd, buf, len - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return (int)n;
}

/* A new unix stream socket on which op (connect or bind) was done with
 * path's address: the fd, or -1 with errno set. */
static int unix_socket_op(const char *path, int type_flags,
                          int (*op)(int, const struct sockaddr *, socklen_t))
{
    struct sockaddr_un sa;
    int fd, saved;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | type_flags, 0);
    if (fd < 0 || op(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int unix_connect(const char *path, int type_flags)
{
    return unix_socket_op(path, type_flags, connect);
}

int unix_bind(const char *path)
{
    return unix_socket_op(path, 0, bind);
}
