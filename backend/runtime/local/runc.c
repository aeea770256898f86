/*
 * runc.c - how the local driver runs runc (through subprocess.c, with its
 * own state root <state_dir>/runc) and tells what runs: `runc state`,
 * whether a pid is a sandbox's init (by its cgroup) and killing it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>
#include <jansson.h>
#include "runtime/local/local.h"

/*
 * Runs `runc --root <runc_root> <args...>` through subprocess.c (no
 * shell; nothing of ours but keep_fd, which, if >= 0, becomes runc's fd
 * 3, and ports_fd, which, if > 3, becomes fd 4). stdout is captured into out
 * when out is not NULL. Returns runc's exit status (0 = success), or -1 when
 * runc could not be run or timed out; errbuf says why: the last line of runc's
 * stderr (logrus prints its warnings before the error) or "runc <args[0]>
 * failed (status N)".
 *
 * runc run --detach leaves the container holding runc's stdio until
 * pico-init swaps it for /dev/null, so subprocess.c tells the end of runc
 * by its pidfd, never by EOF on the pipes.
 */
int run_runc(const runtime *rt, int gvisor, const char *const *args,
             int keep_fd, int ports_fd, buf_t *out, char *errbuf, size_t errlen)
{
    const char *argv[16];
    char what[64];
    subprocess sp = {.argv = argv,
                     .fd3 = keep_fd,
                     .fd4 = ports_fd,
                     .out = out,
                     .timeout_ms = RUNC_TIMEOUT_MS,
                     .name = "runc",
                     .what = what};
    int n = 0;

    argv[n++] = gvisor ? rt->runsc : rt->runc;
    argv[n++] = "--root";
    argv[n++] = gvisor ? rt->runsc_root : rt->runc_root;
    if (gvisor) {
        /* ptrace: the platform that works without KVM (kvm hung here);
         * no network at all; pico-init's bind() on the session's ep/
         * folder becomes a host socket, nothing else of the host's can
         * be connected to (no "open") */
        argv[n++] = "--platform=ptrace";
        argv[n++] = "--network=none";
        argv[n++] = "--host-uds=create";
    }
    for (int i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    snprintf(what, sizeof(what), "%s %s", gvisor ? "runsc" : "runc", args[0]);
    return subprocess_run(&sp, errbuf, errlen);
}

/* `runc delete --force` kills the container if it runs and removes its
 * state and cgroups; a container that does not exist is success. */
int runc_delete(const runtime *rt, const session_paths *p, char *err,
                size_t errlen)
{
    const char *args[] = {"delete", "--force", p->cid, NULL};

    return run_runc(rt, p->gvisor, args, -1, -1, NULL, err, errlen) == 0 ? 0
                                                                         : -1;
}

int start_container(const runtime *rt, const session_paths *p, int lfd, int pfd,
                    char *err, size_t errlen)
{
    /* fd 3 the SSH listener, fd 4 the ports listener (port_relay.c) */
    const char *args[] = {"run",      "--detach", "--preserve-fds", "2",
                          "--bundle", p->dir,     p->cid,           NULL};
    /* runsc hands no descriptor in: pico-init listens itself */
    const char *gv_args[] = {"run",  "--detach", "--bundle",
                             p->dir, p->cid,     NULL};
    char why[PICO_REASON_MAX];

    if (run_runc(rt, p->gvisor, p->gvisor ? gv_args : args,
                 p->gvisor ? -1 : lfd, p->gvisor ? -1 : pfd, NULL, why,
                 sizeof(why)) != 0) {
        snprintf(err, errlen, "sandbox failed to start: %s", why);
        return -1;
    }
    return 0;
}

/*
 * `runc state`: 1 with the init pid and *running (1 runs, RUNC_PAUSED
 * frozen by `runc pause`, 0 otherwise) when the container exists, 0 when
 * it does not, -1 when runc fails otherwise.
 */
int runc_state(const runtime *rt, const session_paths *p, pid_t *pid,
               int *running)
{
    const char *args[] = {"state", p->cid, NULL};
    char why[PICO_REASON_MAX];
    buf_t out = {0};
    json_t *st;
    const char *status;

    if (run_runc(rt, p->gvisor, args, -1, -1, &out, why, sizeof(why)) != 0) {
        char statedir[PICO_PATH_MAX];
        free(out.data);
        /* runc fails on a missing container; tell that from a broken runc
         * by its state folder */
        /* runsc keeps <root>/<cid>_sandbox:<cid>.state instead */
        if ((p->gvisor ? fmt_exact(statedir, sizeof(statedir),
                                   "%s/%s_sandbox:%s.state", rt->runsc_root,
                                   p->cid, p->cid)
                       : fmt_exact(statedir, sizeof(statedir), "%s/%s",
                                   rt->runc_root, p->cid)) < 0)
            return -1;
        return access(statedir, F_OK) < 0 && errno == ENOENT ? 0 : -1;
    }
    st = out.data ? json_loads(out.data, 0, NULL) : NULL;
    free(out.data);
    if (st == NULL)
        return -1;
    status = json_string_value(json_object_get(st, "status"));
    *running = status == NULL                   ? 0
               : strcmp(status, "running") == 0 ? 1
               : strcmp(status, "paused") == 0  ? RUNC_PAUSED
                                                : 0;
    *pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
    json_decref(st);
    return 1;
}

/*
 * `runc pause` / `runc resume` (op): freezes or thaws every process of
 * the container through its freezer cgroup. Already in the state asked
 * for is success, so a retry after a lost answer does no harm.
 */
int runc_freeze(const runtime *rt, const session_paths *p, const char *op,
                char *err, size_t errlen)
{
    const char *args[] = {op, p->cid, NULL};
    int want = strcmp(op, "pause") == 0 ? RUNC_PAUSED : 1, running = 0;
    char why[PICO_REASON_MAX];
    pid_t pid;
    int rc = runc_state(rt, p, &pid, &running);

    if (rc == 0) {
        snprintf(err, errlen, "the sandbox is gone");
        return -1;
    }
    if (rc == 1 && running == want)
        return 0;
    if (rc == 1 && running == 0) {
        snprintf(err, errlen, "the sandbox is not running");
        return -1;
    }
    if (run_runc(rt, p->gvisor, args, -1, -1, NULL, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s failed: %s", op, why);
        return -1;
    }
    return 0;
}

/* 1 when pid is in the sandbox's own pids cgroup, so it is its init and
 * not some process that reused a dead init's pid. */
int pid_in_sandbox(pid_t pid, const session_paths *p)
{
    char path[64], text[4096], want[200];

    if (fmt_exact(path, sizeof(path), "/proc/%d/cgroup", (int)pid) < 0 ||
        fmt_exact(want, sizeof(want), ":%s\n", p->cgroup) < 0 ||
        read_small_file(path, 0, text, sizeof(text)) == 0)
        return 0;
    return strstr(text, want) != NULL;
}

/* 1 when pid is a live process (not a zombie waiting for its parent),
 * 0 when it exited, -1 when /proc cannot tell. */
static int pid_live(pid_t pid)
{
    char path[64], text[512];
    const char *paren;

    if (fmt_exact(path, sizeof(path), "/proc/%d/stat", (int)pid) < 0)
        return -1;
    if (read_small_file(path, 0, text, sizeof(text)) == 0)
        return errno == ENOENT || errno == ESRCH ? 0 : -1;
    paren = strrchr(text, ')'); /* the name may hold spaces and parens */
    if (paren == NULL || paren[1] != ' ')
        return -1;
    return paren[2] != 'Z' && paren[2] != 'X';
}

/*
 * The reaper's cheap liveness check: reads the init pid from runc's own
 * state file (no runc process) and looks at it in /proc. 1 the init runs
 * in the sandbox's cgroup, 0 the container is gone or its init died (a
 * pid reused by another process counts as dead), -1 cannot tell.
 */
int runc_init_running(const runtime *rt, const session_paths *p)
{
    char path[PICO_PATH_MAX];
    json_t *st;
    json_int_t pid;
    int live;

    if (fmt_exact(path, sizeof(path), "%s/%s/state.json", rt->runc_root,
                  p->cid) < 0)
        return -1;
    st = json_load_file(path, 0, NULL);
    if (st == NULL)
        return access(path, F_OK) < 0 && errno == ENOENT ? 0 : -1;
    pid = json_integer_value(json_object_get(st, "init_process_pid"));
    json_decref(st);
    if (pid <= 0)
        return -1;
    live = pid_live((pid_t)pid);
    if (live != 1)
        return live;
    return pid_in_sandbox((pid_t)pid, p);
}

/*
 * Kills the sandbox's init (the kernel then kills everything in its pid
 * namespace) and waits for it to be gone. `runc delete --force` would do
 * the same but polls in 100 ms steps; a pidfd tells us at once. The pidfd
 * pins the process, so checking its cgroup after opening it makes sure we
 * signal the sandbox and nothing else.
 */
void kill_init(pid_t pid, const session_paths *p)
{
    struct pollfd pf;
    int fd;

    if (pid <= 1)
        return;
    fd = (int)pidfd_open(pid, 0);
    if (fd < 0)
        return;
    if (pid_in_sandbox(pid, p) &&
        pidfd_send_signal(fd, SIGKILL, NULL, 0) == 0) {
        pf.fd = fd;
        pf.events = POLLIN;
        (void)poll(&pf, 1, KILL_WAIT_MS);
    }
    close(fd);
}
