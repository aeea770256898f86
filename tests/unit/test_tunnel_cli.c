/* Unit tests of test-tunnel's command line (flags.c) and HTTP side
 * (connect.c): Go-style flag spellings, -api parsing, and the CONNECT
 * exchange over a socketpair, above all that not one byte after the
 * answer's header is consumed (the SSH banner belongs to libssh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "connect.h"
#include "flags.h"

/* -- flags ----------------------------------------------------------- */

static int parse(struct options *o, int argc, const char **argv)
{
    int saved = dup(STDERR_FILENO), devnull = open("/dev/null", O_WRONLY), rc;

    /* The usage text is not what these tests look at. */
    dup2(devnull, STDERR_FILENO);
    rc = flags_parse(o, argc, (char **)argv);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(devnull);
    return rc;
}

static void test_flag_defaults(void **state)
{
    const char *argv[] = {"tt", "-session", "abc"};
    struct options o;

    assert_int_equal(parse(&o, 3, argv), FLAGS_OK);
    assert_string_equal(o.api, "http://localhost:8080");
    assert_string_equal(o.session, "abc");
    assert_string_equal(o.token, "");
    assert_string_equal(o.user, "sandbox");
    assert_string_equal(o.password, "sandbox");
    assert_string_equal(o.cmd, "echo 'Hello from sandbox'");
    assert_int_equal(o.timeout, 30);
    assert_int_equal(o.stdio, 0);
    flags_free(&o);
}

static void test_flag_spellings(void **state)
{
    const char *argv[] = {"tt",     "-session=a",  "--user", "u", "--cmd=x=y",
                          "-stdio", "--timeout=0", "-token", "t"};
    struct options o;

    assert_int_equal(parse(&o, 9, argv), FLAGS_OK);
    assert_string_equal(o.session, "a");
    assert_string_equal(o.user, "u");
    assert_string_equal(o.cmd, "x=y");
    assert_string_equal(o.token, "t");
    assert_int_equal(o.stdio, 1);
    assert_int_equal(o.timeout, 0);
    flags_free(&o);
}

static void test_flag_transfers(void **state)
{
    const char *argv[] = {"tt",      "-session",  "a",
                          "-upload", "l1:r1",     "-upload",
                          "l2:/x:y", "-download", "/r3:l3"};
    struct options o;

    assert_int_equal(parse(&o, 9, argv), FLAGS_OK);
    assert_int_equal(o.nuploads, 2);
    assert_string_equal(o.uploads[0].local, "l1");
    assert_string_equal(o.uploads[0].remote, "r1");
    assert_string_equal(o.uploads[1].local, "l2");
    assert_string_equal(o.uploads[1].remote, "/x:y");
    assert_int_equal(o.ndownloads, 1);
    assert_string_equal(o.downloads[0].remote, "/r3");
    assert_string_equal(o.downloads[0].local, "l3");
    flags_free(&o);
}

static void test_flag_errors(void **state)
{
    const char *missing[] = {"tt", "-api", "http://x"};
    const char *unknown[] = {"tt", "-session", "a", "-nope"};
    const char *noarg[] = {"tt", "-session"};
    const char *badbool[] = {"tt", "-session", "a", "-stdio=maybe"};
    const char *badspec[] = {"tt", "-session", "a", "-upload", ":r"};
    const char *help[] = {"tt", "--help"};
    struct options o;

    assert_int_equal(parse(&o, 3, missing), FLAGS_USAGE);
    flags_free(&o);
    assert_int_equal(parse(&o, 4, unknown), FLAGS_USAGE);
    flags_free(&o);
    assert_int_equal(parse(&o, 2, noarg), FLAGS_USAGE);
    flags_free(&o);
    assert_int_equal(parse(&o, 4, badbool), FLAGS_USAGE);
    flags_free(&o);
    assert_int_equal(parse(&o, 5, badspec), FLAGS_USAGE);
    flags_free(&o);
    assert_int_equal(parse(&o, 2, help), FLAGS_HELP);
    flags_free(&o);
}

static void test_flag_port(void **state)
{
    const char *stdio[] = {"tt", "-session", "a", "-port", "8080", "-stdio"};
    const char *listen[] = {"tt",    "-session", "a",
                            "-port", "1",        "-listen=127.0.0.1:0"};
    const char *bad[][6] = {
        {"tt", "-session", "a", "-port", "0", "-stdio"},
        {"tt", "-session", "a", "-port", "65536", "-stdio"},
        {"tt", "-session", "a", "-port", "08", "-stdio"},
        {"tt", "-session", "a", "-port", "x", "-stdio"},
        {"tt", "-session", "a", "-port", "80", "-fdpass"}, /* no -stdio */
        {"tt", "-session", "a", "-listen", "127.0.0.1:1",
         "-stdio"}, /* no -port */
    };
    struct options o;
    size_t i;

    assert_int_equal(parse(&o, 6, stdio), FLAGS_OK);
    assert_int_equal(o.port, 8080);
    assert_null(o.listen);
    flags_free(&o);
    assert_int_equal(parse(&o, 6, listen), FLAGS_OK);
    assert_int_equal(o.port, 1);
    assert_string_equal(o.listen, "127.0.0.1:0");
    flags_free(&o);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(&o, 6, bad[i]), FLAGS_USAGE);
        flags_free(&o);
    }
}

/* -- the -api address ------------------------------------------------ */

static void check_addr(const char *url, const char *host, const char *port,
                       const char *hostport, const char *prefix)
{
    struct api_addr a;
    char err[128];

    assert_int_equal(api_addr_parse(&a, url, err, sizeof(err)), 0);
    assert_string_equal(a.host, host);
    assert_string_equal(a.port, port);
    assert_string_equal(a.hostport, hostport);
    assert_string_equal(a.prefix, prefix);
    api_addr_free(&a);
}

static void test_api_addr(void **state)
{
    struct api_addr a;
    char err[128];

    check_addr("http://localhost:8080", "localhost", "8080", "localhost:8080",
               "");
    check_addr("http://example.org/", "example.org", "80", "example.org", "");
    check_addr("http://[::1]:9/pico", "::1", "9", "[::1]:9", "/pico");
    check_addr("127.0.0.1:81", "127.0.0.1", "81", "127.0.0.1:81", "");
    check_addr("https://api.example/p/", "api.example", "443", "api.example",
               "/p");
    assert_int_equal(api_addr_parse(&a, "https://x:8443", err, sizeof(err)), 0);
    assert_int_equal(a.tls, 1);
    assert_string_equal(a.port, "8443");
    api_addr_free(&a);
    assert_int_equal(api_addr_parse(&a, "ftp://x", err, sizeof(err)), -1);
    assert_int_equal(api_addr_parse(&a, "http://x:8o", err, sizeof(err)), -1);
    assert_int_equal(api_addr_parse(&a, "http:///v1", err, sizeof(err)), -1);
}

/* -- the CONNECT exchange ------------------------------------------- */

struct peer {
    int fd;
    const char *answer;
    int bytewise; /* send one byte at a time, to split the header anywhere */
    char request[512];
};

/* The server side: reads the request, then sends the answer. */
static void *serve(void *arg)
{
    struct peer *p = arg;
    size_t len = 0;

    while (len < sizeof(p->request) - 1 && !strstr(p->request, "\r\n\r\n")) {
        ssize_t n = read(p->fd, p->request + len, 1);

        if (n <= 0)
            break;
        len += (size_t)n;
        p->request[len] = '\0';
    }
    if (!p->bytewise) {
        assert_int_equal(write(p->fd, p->answer, strlen(p->answer)),
                         (ssize_t)strlen(p->answer));
    } else {
        size_t i;

        for (i = 0; p->answer[i]; i++) {
            assert_int_equal(write(p->fd, p->answer + i, 1), 1);
            sched_yield();
        }
    }
    /* A client that reads too far meets the end, not a hang. */
    shutdown(p->fd, SHUT_WR);
    return NULL;
}

/* Runs one exchange; returns the client's fd for reading what is left. */
static int exchange(struct peer *p, const char *token, struct connect_reply *r,
                    int *rc)
{
    struct api_addr a = {.hostport = "h:1", .prefix = ""};
    struct api_conn c = {.ssl = NULL};
    pthread_t t;
    char err[256];
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->fd = sv[1];
    p->request[0] = '\0';
    assert_int_equal(pthread_create(&t, NULL, serve, p), 0);
    c.fd = sv[0];
    *rc = tunnel_connect(&c, &a, "/v1/sessions/s1/tunnel", token, 10, r, err,
                         sizeof(err));
    /* Closing our end of the server lets the client read to EOF. */
    pthread_join(t, NULL);
    close(sv[1]);
    return sv[0];
}

static void read_rest(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t n;

    while (len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
}

static void test_connect_keeps_the_banner(void **state)
{
    const char *banner = "SSH-2.0-OpenSSH_9.2\r\nmore";
    int bytewise, rc;

    for (bytewise = 0; bytewise < 2; bytewise++) {
        struct peer p = {.answer = "HTTP/1.1 200 Connection Established\r\n"
                                   "X-Pico: 1\r\n\r\nSSH-2.0-OpenSSH_9.2\r\n"
                                   "more",
                         .bytewise = bytewise};
        struct connect_reply r;
        char rest[128];
        int fd = exchange(&p, "tok", &r, &rc);

        assert_int_equal(rc, 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.reason, "Connection Established");
        assert_string_equal(p.request,
                            "CONNECT /v1/sessions/s1/tunnel HTTP/1.1\r\n"
                            "Host: h:1\r\nAuthorization: Bearer tok\r\n\r\n");
        read_rest(fd, rest, sizeof(rest));
        assert_string_equal(rest, banner);
        close(fd);
    }
}

static void check_error(const char *answer, int status, const char *message)
{
    struct peer p = {.answer = answer};
    struct connect_reply r;
    int rc, fd = exchange(&p, "", &r, &rc);

    assert_int_equal(rc, 0);
    assert_int_equal(r.status, status);
    assert_string_equal(r.message, message);
    assert_null(strstr(p.request, "Authorization"));
    close(fd);
}

static void test_connect_errors(void **state)
{
    check_error("HTTP/1.1 404 Not Found\r\nContent-Length: 17\r\n\r\n"
                "Session not found",
                404, "Session not found");
    check_error("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 18\r\n"
                "Connection: keep-alive\r\n\r\nSandbox not ready\n",
                503, "Sandbox not ready");
    check_error(
        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json"
        "\r\nContent-Length: 55\r\n\r\n"
        "{\"error\":{\"code\":\"unauthorized\",\"message\":\"bad token\"}}",
        401, "bad token");
    check_error("HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n"
                "\r\n7\r\nSandbox\r\nc\r\n unreachable\r\n0\r\n\r\n",
                502, "Sandbox unreachable");
    check_error("HTTP/1.1 405 Not Allowed\r\nContent-Length: 0\r\n\r\n", 405,
                "Not Allowed");
    check_error("HTTP/1.0 400 Bad Request\r\n\r\nbad\r\nrequest\r\n", 400,
                "bad request");
}

static void test_connect_not_http(void **state)
{
    struct peer p = {.answer = "SSH-2.0-OpenSSH_9.2\r\n\r\n"};
    struct connect_reply r;
    int rc, fd = exchange(&p, NULL, &r, &rc);

    assert_int_equal(rc, -1);
    close(fd);
    p.answer = "HTTP/1.1 200 OK\r\n"; /* closed before the header ended */
    fd = exchange(&p, NULL, &r, &rc);
    assert_int_equal(rc, -1);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flag_defaults),
        cmocka_unit_test(test_flag_spellings),
        cmocka_unit_test(test_flag_transfers),
        cmocka_unit_test(test_flag_errors),
        cmocka_unit_test(test_flag_port),
        cmocka_unit_test(test_api_addr),
        cmocka_unit_test(test_connect_keeps_the_banner),
        cmocka_unit_test(test_connect_errors),
        cmocka_unit_test(test_connect_not_http),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
