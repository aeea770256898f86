/* Unit tests of backend/runtime/local/subprocess.c, with real programs as the
 * children: captured stdout, exit status and the stderr message, a missing
 * program, the timeout (killed and reaped), fd 3, no other descriptor leaking
 * in, a clean signal mask, and a grandchild holding the pipes (runc run
 * --detach) not delaying the end. /bin/sh -c is fine here: the shell is
 * the program under test, not a way of running one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "runtime/local/subprocess.h"
#include "core/util.h"

/* Runs argv with a 10 s timeout; stdout into *out unless out is NULL. */
static int run(const char *const *argv, int fd3, buf_t *out, int first,
               char *err, size_t errlen)
{
    subprocess sp = {.argv = argv,
                     .fd3 = fd3,
                     .out = out,
                     .timeout_ms = 10000,
                     .name = "tool",
                     .what = "tool x",
                     .first_line = first};

    return subprocess_run(&sp, err, errlen);
}

/* Lines of text that contain needle. */
static int count(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void no_children_left(void)
{
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void test_stdout(void **state)
{
    const char *argv[] = {"/bin/echo", "hello", "world", NULL};
    buf_t out = {0};
    char err[256];

    assert_int_equal(run(argv, -1, &out, 0, err, sizeof(err)), 0);
    assert_string_equal(out.data, "hello world\n");
    assert_string_equal(err, "");
    free(out.data);
    /* stdout not wanted: /dev/null */
    assert_int_equal(run(argv, -1, NULL, 0, err, sizeof(err)), 0);
    no_children_left();
}

/* More than a pipe holds: read while the program runs, not after. */
static void test_big_output(void **state)
{
    const char *argv[] = {"/usr/bin/seq", "1", "200000", NULL};
    buf_t out = {0};
    char err[256];

    assert_int_equal(run(argv, -1, &out, 0, err, sizeof(err)), 0);
    assert_int_equal(out.len, 1288895);
    assert_int_equal(count(out.data, "\n"), 200000);
    free(out.data);
}

static void test_exit_status(void **state)
{
    const char *ls[] = {"/bin/ls", "/nonexistent/x", NULL};
    const char *no[] = {"/bin/false", NULL};
    const char *term[] = {"/bin/sh", "-c", "kill -TERM $$", NULL};
    char err[256];

    assert_int_equal(run(ls, -1, NULL, 0, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "No such file or directory"));
    /* no stderr: the message says what failed and how */
    assert_int_equal(run(no, -1, NULL, 0, err, sizeof(err)), 1);
    assert_string_equal(err, "tool x failed (status 1)");
    assert_int_equal(run(term, -1, NULL, 0, err, sizeof(err)), 128 + 15);
    assert_string_equal(err, "tool x failed (status 143)");
    no_children_left();
}

/* The last line (runc: warnings first, the error last) or the first
 * (mke2fs: the error first); a logfmt line gives its msg. */
static void test_message_line(void **state)
{
    const char *argv[] = {"/bin/sh", "-c",
                          "echo 'first\ttab' >&2;"
                          "echo 'time=\"t\" level=warning msg=\"w\"' >&2;"
                          "echo 'time=\"t\" level=error msg=\"it broke\"' >&2;"
                          "echo >&2; exit 3",
                          NULL};
    char err[256], small[8];

    assert_int_equal(run(argv, -1, NULL, 0, err, sizeof(err)), 3);
    assert_string_equal(err, "it broke");
    assert_int_equal(run(argv, -1, NULL, 1, err, sizeof(err)), 3);
    assert_string_equal(err, "first tab");
    assert_int_equal(run(argv, -1, NULL, 1, small, sizeof(small)), 3);
    assert_string_equal(small, "first t");
}

static void test_missing_program(void **state)
{
    const char *argv[] = {"/nonexistent/tool", NULL};
    buf_t out = {0};
    char err[256];

    assert_int_equal(run(argv, -1, &out, 0, err, sizeof(err)), -1);
    assert_string_equal(err, "cannot run tool: No such file or directory");
    assert_null(out.data);
    no_children_left();
}

static void test_timeout(void **state)
{
    const char *argv[] = {"/bin/sleep", "5", NULL};
    subprocess sp = {.argv = argv,
                     .fd3 = -1,
                     .timeout_ms = 200,
                     .name = "sleep",
                     .what = "sleep 5"};
    char err[256];
    long long t0 = mono_ms(), took;

    assert_int_equal(subprocess_run(&sp, err, sizeof(err)), -1);
    took = mono_ms() - t0;
    assert_string_equal(err, "sleep 5 timed out");
    assert_true(took >= 200 && took < 2000);
    no_children_left(); /* killed and reaped: no zombie */
}

/* runc run --detach: the container keeps runc's stdout and stderr open
 * after runc exited. The end is runc's exit, not EOF. */
static void test_grandchild_holds_pipes(void **state)
{
    const char *argv[] = {"/bin/sh", "-c", "echo started; sleep 3 & exit 0",
                          NULL};
    buf_t out = {0};
    char err[256];
    long long t0 = mono_ms();

    assert_int_equal(run(argv, -1, &out, 0, err, sizeof(err)), 0);
    assert_true(mono_ms() - t0 < 2000);
    assert_string_equal(out.data, "started\n");
    free(out.data);
    no_children_left();
}

/* Hands the write end of a pipe, as descriptor `at` (close-on-exec, as
 * all of the backend's are), to a child that writes to its fd 3. */
static void hand_over(int at)
{
    const char *argv[] = {"/bin/sh", "-c", "echo x >&3", NULL};
    char err[256], got[8] = {0};
    int p[2], r, w;

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    r = fcntl(p[0], F_DUPFD_CLOEXEC, 50);
    w = fcntl(p[1], F_DUPFD_CLOEXEC, 50);
    assert_true(r >= 50 && w >= 50);
    close(p[0]);
    close(p[1]);
    assert_true(fcntl(at, F_GETFD) < 0); /* free: nothing of ours is lost */
    assert_int_equal(dup3(w, at, O_CLOEXEC), at);
    close(w);
    assert_int_equal(run(argv, at, NULL, 0, err, sizeof(err)), 0);
    close(at);
    assert_int_equal(read(r, got, sizeof(got) - 1), 2);
    assert_string_equal(got, "x\n");
    close(r);
}

static void test_fd3(void **state)
{
    hand_over(40); /* the usual case: some higher descriptor */
    hand_over(3);  /* fd 3 itself: dup2 onto itself clears close-on-exec */
    no_children_left();
}

/* What the child sees in /proc/self/fd: 0, 1, 2, ls's own directory and,
 * when handed over, 3; never the parent's other descriptors, close-on-exec
 * or not. */
static void test_no_leaks(void **state)
{
    const char *argv[] = {"/bin/ls", "-l", "/proc/self/fd", NULL};
    int leak = open("/dev/zero", O_RDONLY); /* no O_CLOEXEC on purpose */
    int leak2[2], p[2];
    buf_t out = {0};
    char err[256];

    assert_true(leak >= 0);
    assert_int_equal(pipe(leak2), 0);
    assert_int_equal(run(argv, -1, &out, 0, err, sizeof(err)), 0);
    assert_int_equal(count(out.data, " -> "), 4);
    assert_int_equal(count(out.data, " 0 -> /dev/null"), 1);
    assert_int_equal(count(out.data, " 1 -> pipe:"), 1);
    assert_int_equal(count(out.data, " 2 -> pipe:"), 1);
    assert_int_equal(count(out.data, " 3 -> /proc/"), 1);
    assert_null(strstr(out.data, "/dev/zero"));
    free(out.data);

    out = (buf_t){0};
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(run(argv, p[1], &out, 0, err, sizeof(err)), 0);
    assert_int_equal(count(out.data, " -> "), 5);
    assert_int_equal(count(out.data, " 3 -> pipe:"), 1);
    assert_int_equal(count(out.data, " 4 -> /proc/"), 1);
    assert_null(strstr(out.data, "/dev/zero"));
    free(out.data);
    close(p[0]);
    close(p[1]);
    close(leak);
    close(leak2[0]);
    close(leak2[1]);
}

/* The backend blocks and ignores signals; the child starts clean. */
static void test_signals_reset(void **state)
{
    const char *argv[] = {"/bin/cat", "/proc/self/status", NULL};
    struct sigaction ignore = {.sa_handler = SIG_IGN}, old_term, old_pipe;
    sigset_t block, old_mask;
    buf_t out = {0};
    char err[256];
    const char *ign;

    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    assert_int_equal(sigprocmask(SIG_BLOCK, &block, &old_mask), 0);
    assert_int_equal(sigaction(SIGTERM, &ignore, &old_term), 0);
    assert_int_equal(sigaction(SIGPIPE, &ignore, &old_pipe), 0);
    assert_int_equal(run(argv, -1, &out, 0, err, sizeof(err)), 0);
    assert_int_equal(sigprocmask(SIG_SETMASK, &old_mask, NULL), 0);
    assert_int_equal(sigaction(SIGTERM, &old_term, NULL), 0);
    assert_int_equal(sigaction(SIGPIPE, &old_pipe, NULL), 0);
    assert_non_null(strstr(out.data, "\nSigBlk:\t0000000000000000\n"));
    ign = strstr(out.data, "\nSigIgn:\t");
    assert_non_null(ign);
    /* bit n - 1 is signal n. glibc's posix_spawn leaves its own two
     * signals, 32 and 33, ignored, and sigfillset cannot name them; none
     * of the standard ones may be. */
    assert_int_equal(strtoull(ign + 9, NULL, 16) & 0x7fffffffULL, 0);
    free(out.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stdout),
        cmocka_unit_test(test_big_output),
        cmocka_unit_test(test_exit_status),
        cmocka_unit_test(test_message_line),
        cmocka_unit_test(test_missing_program),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_grandchild_holds_pipes),
        cmocka_unit_test(test_fd3),
        cmocka_unit_test(test_no_leaks),
        cmocka_unit_test(test_signals_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
