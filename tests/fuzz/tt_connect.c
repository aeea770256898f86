/* libFuzzer harness: the server's answer to test-tunnel's CONNECT
 * (tunnel_connect in test-tunnel/connect.c: the header read with peeks,
 * the status line, Content-Length and chunked error bodies, JSON error
 * messages). The input is everything the server sends; it is queued on a
 * socketpair whose far end is then shut, so the client reads it as it
 * would from the network, to the end and no further.
 *
 * Checked: an accepted answer has a well formed status line (HTTP/1.x, a
 * status of exactly three digits, 100..599) whose reason is what the
 * reply says; on 200 not one byte after the header's blank line was
 * consumed (the SSH banner belongs to libssh); messages are one line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connect.h"

/* connect.c's HEADER_MAX and BODY_MAX, with room to spare; far below the
 * socket buffer, so one write queues all of it. */
#define INPUT_MAX 24576

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Offset just past the first "\r\n\r\n", or 0. */
static size_t blank_line(const uint8_t *d, size_t n)
{
    size_t i;

    for (i = 0; i + 4 <= n; i++)
        if (memcmp(d + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    return 0;
}

static int one_line(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

/* The status line as the reply reports it: "HTTP/1.<digits> " blanks,
 * three digits, then a blank or the line's end; the reason follows. */
static void check_status_line(const char *line, size_t n,
                              const struct connect_reply *r)
{
    const char *p;
    char status[4];
    size_t eol, len;

    for (eol = 0; eol + 1 < n && memcmp(line + eol, "\r\n", 2) != 0; eol++)
        ;
    check(eol + 1 < n && eol > 7 && memcmp(line, "HTTP/1.", 7) == 0);
    p = line + 7;
    len = strspn(p, "0123456789");
    check(len > 0 && p[len] == ' ');
    p += len;
    p += strspn(p, " ");
    check(strspn(p, "0123456789") == 3 && (p[3] == ' ' || p[3] == '\r'));
    memcpy(status, p, 3);
    status[3] = '\0';
    check(r->status == strtol(status, NULL, 10));
    check(r->status >= 100 && r->status <= 599);
    p += 3;
    p += strspn(p, " ");
    /* the reason: the rest of the line up to a CR, LF or NUL, maybe
     * truncated to fit */
    len = strlen(r->reason);
    check(one_line(r->reason));
    check((size_t)(p - line) + len <= eol);
    check(memcmp(r->reason, p, len) == 0);
    check(len == sizeof(r->reason) - 1 || p[len] == '\0' || p[len] == '\r' ||
          p[len] == '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct api_addr a = {.hostport = "pico.test:8080", .prefix = ""};
    struct api_conn c = {.fd = -1, .ssl = NULL};
    struct connect_reply r;
    char err[256] = "", *text;
    int sv[2], rc;

    if (size > INPUT_MAX)
        return 0;
    /* the same bytes as a C string, for the checks */
    text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    if (size > 0 && write(sv[1], data, size) != (ssize_t)size)
        abort();
    shutdown(sv[1], SHUT_WR);
    c.fd = sv[0];

    rc = tunnel_connect(&c, &a, "/v1/sessions/x/tunnel", "t", 5, &r, err,
                        sizeof(err));
    if (rc < 0) {
        check(err[0] != '\0');
    } else {
        size_t hlen = blank_line(data, size);

        check(hlen > 0);
        check_status_line(text, size, &r);
        check(one_line(r.message));
        if (r.status == 200) {
            /* everything after the header is still queued */
            uint8_t *rest = malloc(size + 1);
            size_t got = 0;
            ssize_t k;

            check(rest != NULL);
            check(r.message[0] == '\0');
            while ((k = read(sv[0], rest + got, size + 1 - got)) > 0)
                got += (size_t)k;
            check(got == size - hlen);
            check(memcmp(rest, data + hlen, got) == 0);
            free(rest);
        }
    }
    close(sv[0]);
    close(sv[1]);
    free(text);
    return 0;
}
