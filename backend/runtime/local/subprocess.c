/*
 * subprocess.c - runs the backend's helper programs: runc (runtime_local.c) and
 * mkfs.ext4 (disk.c). One path for both, so both get the same guarantees:
 *
 *   - posix_spawn with an argv array and a fixed PATH-only environment,
 *     never a shell and never a fork of the threaded backend;
 *   - stdin /dev/null, stdout into a buffer or /dev/null, stderr into a
 *     buffer whose first or last line becomes the message on failure;
 *   - at most one descriptor of ours handed over, as fd 3 (the sandbox's
 *     listening socket); closefrom drops everything else, e.g. another
 *     session's socket being set up by another thread;
 *   - signal mask and dispositions reset (the backend's threads block and
 *     ignore signals, and both survive exec);
 *   - a timeout, after which the program is killed and reaped: a hung
 *     helper costs one request an error, never a thread forever.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/local/subprocess.h"
#include "core/util.h"

#define OUT_MAX (4 << 20) /* cap on captured output */

static char *const child_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};

/* A started program and the read ends of its pipes (-1: none or closed). */
typedef struct {
    pid_t pid;
    int pidfd, outfd, errfd;
    buf_t err;
} child;

/* Reads what is there: 1 got data, 0 end of file, -1 nothing now. */
static int buf_read(buf_t *b, int fd)
{
    char tmp[8192];
    ssize_t n = read(fd, tmp, sizeof(tmp));

    if (n <= 0)
        return n == 0 ? 0 : -1;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16384;
        char *d;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        if (cap > OUT_MAX)
            return 1; /* drop the excess, keep draining */
        d = realloc(b->data, cap);
        if (d == NULL)
            return 1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, tmp, (size_t)n);
    b->len += (size_t)n;
    b->data[b->len] = '\0';
    return 1;
}

/* Reads from *fd if poll said so; closes it at end of file so poll stops
 * reporting it. */
static void pipe_step(buf_t *b, int *fd, short revents)
{
    if (*fd >= 0 && revents && buf_read(b, *fd) == 0) {
        close(*fd);
        *fd = -1;
    }
}

/* A pipe for the program's output: our read end does not block, its
 * write end does (with O_NONBLOCK on both, as pipe2 would set it, a
 * program that writes more than the pipe holds gets EAGAIN). */
static int out_pipe(int p[2])
{
    int e;

    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    if (fcntl(p[0], F_SETFL, O_NONBLOCK) == 0)
        return 0;
    e = errno;
    close(p[0]);
    close(p[1]);
    p[0] = p[1] = -1;
    errno = e; /* for the message */
    return -1;
}

/* The first or the last non-empty line of a program's stderr, as one line
 * of text. A logfmt line (runc's logrus: time=... level=error msg="...")
 * gives only its msg, so a failure reads "<what went wrong>". */
static void stderr_line(const char *text, int first, char *out, size_t outlen)
{
    const char *start = text, *end = text + strcspn(text, "\n"), *msg;
    size_t n;

    if (!first) {
        end = text + strlen(text);
        while (end > text &&
               (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
            end--;
        start = end;
        while (start > text && start[-1] != '\n')
            start--;
    }
    msg = strstr(start, "msg=\"");
    if (msg != NULL && msg < end) {
        start = msg + 5;
        if (end > start && end[-1] == '"')
            end--;
    }
    n = (size_t)(end - start);
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, start, n);
    out[n] = '\0';
    for (char *c = out; *c; c++)
        if ((unsigned char)*c < 0x20)
            *c = ' ';
}

static int spawn_actions(posix_spawn_file_actions_t *fa, int fd3, int fd4,
                         int out_w, int err_w)
{
    int rc = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);

    if (rc == 0)
        rc = out_w >= 0 ? posix_spawn_file_actions_adddup2(fa, out_w, 1)
                        : posix_spawn_file_actions_addopen(fa, 1, "/dev/null",
                                                           O_WRONLY, 0);
    if (rc == 0)
        rc = err_w >= 0 ? posix_spawn_file_actions_adddup2(fa, err_w, 2)
                        : posix_spawn_file_actions_addopen(fa, 2, "/dev/null",
                                                           O_WRONLY, 0);
    /* dup2 of an fd onto itself clears close-on-exec (glibc >= 2.29) */
    if (rc == 0 && fd3 >= 0)
        rc = posix_spawn_file_actions_adddup2(fa, fd3, 3);
    /* fd 3 would be overwritten before it is moved to 4: never so in
     * the backend, whose own descriptors take the low numbers first */
    if (rc == 0 && fd3 >= 0 && fd4 == 3)
        rc = EINVAL;
    if (rc == 0 && fd3 >= 0 && fd4 > 3)
        rc = posix_spawn_file_actions_adddup2(fa, fd4, 4);
    /* nothing else of ours, e.g. another session's socket being set up by
     * another thread, reaches the program */
    if (rc == 0)
        rc = posix_spawn_file_actions_addclosefrom_np(
            fa, fd3 < 0 ? 3 : (fd4 > 3 ? 5 : 4));
    return rc;
}

/* The backend's threads block the signals main() takes with sigwait and
 * ignore SIGPIPE; both survive exec. runc, and through it the sandbox,
 * must start with a clean slate, and so must mkfs. */
static int clean_signals(posix_spawnattr_t *attr)
{
    sigset_t none, all;
    int rc;

    sigemptyset(&none);
    sigfillset(&all);
    rc = posix_spawnattr_setsigmask(attr, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(attr, &all);
    if (rc == 0)
        rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK |
                                                POSIX_SPAWN_SETSIGDEF);
    return rc;
}

/* Makes the pipes and starts the program; 0, or -1 with err set. The read
 * ends go into c even on failure, for the caller to close. */
static int start(const subprocess *sp, child *c, char *err, size_t errlen)
{
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, rc;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;

    if ((sp->out && out_pipe(outp) < 0) || out_pipe(errp) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        rc = -1;
    } else if (posix_spawnattr_init(&attr) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    } else if (posix_spawn_file_actions_init(&fa) != 0) {
        posix_spawnattr_destroy(&attr);
        snprintf(err, errlen, "out of memory");
        rc = -1;
    } else {
        rc = spawn_actions(&fa, sp->fd3, sp->fd4, outp[1], errp[1]);
        if (rc == 0)
            rc = clean_signals(&attr);
        if (rc == 0)
            rc = posix_spawn(&c->pid, sp->argv[0], &fa, &attr,
                             (char *const *)sp->argv, child_env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (rc != 0)
            snprintf(err, errlen, "cannot run %s: %s", sp->name, strerror(rc));
    }
    c->outfd = outp[0];
    c->errfd = errp[0];
    if (outp[1] >= 0)
        close(outp[1]);
    if (errp[1] >= 0)
        close(errp[1]);
    return rc == 0 ? 0 : -1;
}

/*
 * Collects stdout and stderr until the program exits; its exit status, or
 * -1 with err set when it timed out (then it is killed and reaped) or
 * cannot be waited for.
 *
 * The end is told by the pidfd, never by EOF on the pipes: runc run
 * --detach leaves the container holding runc's stdio until pico-init swaps
 * it for /dev/null. Without a pidfd (old kernel) poll in 5 ms steps.
 */
static int wait_exit(const subprocess *sp, child *c, char *err, size_t errlen)
{
    long long deadline = mono_ms() + sp->timeout_ms;
    int st;
    pid_t w;

    c->pidfd = (int)pidfd_open(c->pid, 0);
    for (;;) {
        struct pollfd p[3] = {{c->pidfd, POLLIN, 0},
                              {c->errfd, POLLIN, 0},
                              {c->outfd, POLLIN, 0}};
        long long left = deadline - mono_ms();

        if (left <= 0) {
            kill(c->pid, SIGKILL);
            while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
                ;
            snprintf(err, errlen, "%s timed out", sp->what);
            return -1;
        }
        if (poll(p, 3, c->pidfd < 0 ? 5 : (int)left) < 0) {
            if (errno == EINTR)
                continue;
            /* cannot wait on the pidfd: fall back to checking every 5 ms */
            if (c->pidfd >= 0)
                close(c->pidfd);
            c->pidfd = -1;
            (void)poll(NULL, 0, 5);
        }
        pipe_step(&c->err, &c->errfd, p[1].revents);
        pipe_step(sp->out, &c->outfd, p[2].revents);
        if (c->pidfd >= 0 && !(p[0].revents & POLLIN))
            continue;
        w = waitpid(c->pid, &st, c->pidfd < 0 ? WNOHANG : 0);
        if (w == c->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (w < 0 && errno != EINTR) {
            snprintf(err, errlen, "waitpid: %s", strerror(errno));
            return -1;
        }
    }
}

int subprocess_run(const subprocess *sp, char *err, size_t errlen)
{
    child c = {.pid = -1, .pidfd = -1, .outfd = -1, .errfd = -1};
    int status = -1;

    err[0] = '\0';
    if (start(sp, &c, err, errlen) == 0)
        status = wait_exit(sp, &c, err, errlen);
    if (status >= 0) {
        /* it has exited: whatever it wrote is in the pipes now */
        while (c.errfd >= 0 && buf_read(&c.err, c.errfd) > 0)
            ;
        while (c.outfd >= 0 && buf_read(sp->out, c.outfd) > 0)
            ;
    }
    if (status > 0 && c.err.data)
        stderr_line(c.err.data, sp->first_line, err, errlen);
    if (status > 0 && err[0] == '\0')
        snprintf(err, errlen, "%s failed (status %d)", sp->what, status);
    if (c.pidfd >= 0)
        close(c.pidfd);
    if (c.outfd >= 0)
        close(c.outfd);
    if (c.errfd >= 0)
        close(c.errfd);
    free(c.err.data);
    return status;
}

int subprocess_start(const subprocess *sp, pid_t *pid, char *err, size_t errlen)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc;

    if (posix_spawnattr_init(&attr) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (posix_spawn_file_actions_init(&fa) != 0) {
        posix_spawnattr_destroy(&attr);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rc = spawn_actions(&fa, sp->fd3, sp->fd4, -1, -1);
    if (rc == 0)
        rc = clean_signals(&attr);
    if (rc == 0)
        rc = posix_spawn(pid, sp->argv[0], &fa, &attr, (char *const *)sp->argv,
                         child_env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0)
        snprintf(err, errlen, "cannot run %s: %s", sp->name, strerror(rc));
    return rc == 0 ? 0 : -1;
}
