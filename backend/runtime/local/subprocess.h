/*
 * subprocess.h - runs a helper program (runc, mkfs.ext4) the one way the
 * backend runs programs: posix_spawn with an argv array and a fixed
 * environment, never a shell; stdin /dev/null; stdout captured or
 * /dev/null; stderr captured for the message; optionally descriptors
 * handed over as fd 3 (and 4) and nothing else of ours; signals reset; bounded
 * by a timeout after which the program is killed and reaped.
 */
#ifndef PICO_SUBPROCESS_H
#define PICO_SUBPROCESS_H

#include <stddef.h>
#include <sys/types.h>

/* Captured output: data is NUL-terminated (or NULL when nothing came);
 * the caller frees data. */
typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

typedef struct {
    const char *const *argv; /* argv[0] is the program's path; NULL-ended */
    int fd3;                 /* becomes the program's fd 3; -1: none */
    int fd4;    /* with fd3, becomes fd 4 (the ports listener); <= 2: none */
    buf_t *out; /* gets stdout; NULL: stdout is /dev/null */
    int timeout_ms;   /* then SIGKILL */
    const char *name; /* messages: "cannot run <name>: ..." */
    const char *what; /* "<what> timed out", "<what> failed ..." */
    int first_line;   /* the message is stderr's first line, else its last */
} subprocess;

/*
 * Runs sp and waits for the program to exit. Returns its exit status (0
 * = success; 128 + N when killed by signal N), or -1 when it could not be
 * run or timed out. Whenever the result is not 0, err says why: a line of
 * its stderr, else "<what> failed (status N)".
 */
int subprocess_run(const subprocess *sp, char *err, size_t errlen);

/*
 * Starts a long-running helper (slirp4netns) the same way, but with
 * stdout and stderr /dev/null and without waiting: *pid is the caller's
 * to kill and reap. Only argv, fd3 and name of sp are used. 0, or -1 with
 * err set.
 */
int subprocess_start(const subprocess *sp, pid_t *pid, char *err,
                     size_t errlen);

#endif
