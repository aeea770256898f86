/*
 * pico-init.c - PID 1 of a local sandbox.
 *
 * The backend binds a unix socket for each session and hands its
 * listening descriptor to the container as fd 3 (`runc run --preserve-fds
 * 2`). pico-init accepts connections on it and runs `sshd -i` (inetd mode)
 * for each one, with the connection as stdin and stdout. A second
 * listener, ports.sock as fd 4, reaches the sandbox's TCP ports: each of
 * its connections gets a forked relay to 127.0.0.1:<port>
 * (port_relay.c). A sandbox started without fd 4 (gvisor) has no ports. As PID
 * 1 it also reaps every orphan in the sandbox, and it exits on SIGTERM, which
 * takes the whole pid namespace down with it.
 *
 * It is bind-mounted read-only from the host (config init_binary), so it
 * is linked statically and needs nothing from the sandbox's root
 * filesystem but /usr/sbin/sshd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/local/port_relay.h"

#define LISTEN_FD 3
#define SSHD "/usr/sbin/sshd"
#define PRIVSEP_DIR "/run/sshd" /* sshd's chroot; /run is a fresh tmpfs */

static char *const sshd_argv[] = {SSHD, "-i", NULL};
static char *const sshd_envp[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8", NULL};

/* Close everything but 0-2 and the listeners: runc passes only those, but
 * a leaked descriptor here would reach every session. */
static void close_other_fds(void)
{
    int fd;
    long max;

    if (close_range(PORTS_FD + 1, ~0U, 0) == 0)
        return;
    max = sysconf(_SC_OPEN_MAX); /* kernels before 5.9 */
    if (max < 0 || max > 65536)
        max = 65536;
    for (fd = PORTS_FD + 1; fd < max; fd++)
        (void)close(fd);
}

/* 1 when fd 4 is the ports listener: non-blocking and close-on-exec as
 * fd 3; a launcher that passed only fd 3 gives no ports. */
static int ports_listener(void)
{
    struct stat st;
    int flags;

    if (fstat(PORTS_FD, &st) < 0 || !S_ISSOCK(st.st_mode))
        return 0;
    flags = fcntl(PORTS_FD, F_GETFL);
    return flags >= 0 && fcntl(PORTS_FD, F_SETFL, flags | O_NONBLOCK) == 0 &&
           fcntl(PORTS_FD, F_SETFD, FD_CLOEXEC) == 0;
}

/*
 * `pico-init --listen <path>` (the gvisor tier, whose runsc cannot hand a
 * descriptor in): binds and listens on <path> itself, a folder of the
 * session mounted from the host, where runsc --host-uds=create makes the
 * socket a real host socket the backend and nginx connect to. The
 * listener ends up as LISTEN_FD as with runc.
 */
static int listen_on(const char *path)
{
    struct sockaddr_un sa;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    (void)close_range(LISTEN_FD, ~0U, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    (void)unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fd, 128) < 0)
        return -1;
    if (fd != LISTEN_FD && (dup2(fd, LISTEN_FD) < 0 || close(fd) < 0))
        return -1;
    return 0;
}

/* stdin/out/err are whatever runc was given; nothing should be written
 * there, and holding them would keep the starter's pipes open. */
static void null_stdio(void)
{
    int fd = open("/dev/null", O_RDWR);

    if (fd < 0)
        return;
    (void)dup2(fd, 0);
    (void)dup2(fd, 1);
    (void)dup2(fd, 2);
    if (fd > 2)
        (void)close(fd);
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static void reap(void)
{
    pid_t pid;

    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
        port_relay_reaped(pid);
}

/* Dispositions and the signal mask survive exec: whatever the starter
 * ignored or blocked must not reach sshd and the user's processes. */
static void default_signals(void)
{
    struct sigaction sa;
    int sig;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &sa, NULL); /* fails for KILL, STOP: fine */
}

/* In the child: the connection becomes sshd's stdin/stdout. */
static void run_sshd(int conn)
{
    sigset_t none;

    /* stderr is /dev/null already (null_stdio) */
    if (dup2(conn, 0) < 0 || dup2(conn, 1) < 0)
        _exit(127);
    if (conn > 2)
        (void)close(conn);
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    execve(SSHD, sshd_argv, sshd_envp);
    _exit(127);
}

/* Accepts one pending connection. Returns how long to back off (ms) before
 * polling again: resource shortages must not turn into a busy loop. */
static long accept_one(void)
{
    pid_t pid;
    int conn = accept4(LISTEN_FD, NULL, NULL, SOCK_CLOEXEC);

    if (conn < 0) {
        switch (errno) {
        case EAGAIN:
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            return 0;
        default: /* EMFILE, ENFILE, ENOBUFS, ENOMEM, ... */
            return 100;
        }
    }
    pid = fork();
    if (pid == 0)
        run_sshd(conn);
    (void)close(conn);
    return pid < 0 ? 100 : 0; /* fork fails at the pids limit */
}

int main(int argc, char **argv)
{
    sigset_t mask;
    struct signalfd_siginfo si;
    struct pollfd pfd[3];
    int sfd, flags, nfds, ours[3];
    long backoff;

    if (argc == 3 && strcmp(argv[1], "--listen") == 0 && listen_on(argv[2]) < 0)
        return 1;
    close_other_fds(); /* --listen closed fd 4 already: no ports there */
    null_stdio();
    (void)umask(022);
    (void)mkdir(PRIVSEP_DIR, 0755);

    /* Signals arrive through a descriptor, so the loop below is the only
     * place anything happens and there are no handler races. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    default_signals();
    if (sigprocmask(SIG_SETMASK, &mask, NULL) < 0)
        return 1;
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        return 1;

    /* Non-blocking so a connection reset between poll and accept cannot
     * stall us; close-on-exec so sshd does not inherit it. */
    flags = fcntl(LISTEN_FD, F_GETFL);
    if (flags < 0 || fcntl(LISTEN_FD, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(LISTEN_FD, F_SETFD, FD_CLOEXEC) < 0)
        return 1;

    pfd[0].fd = LISTEN_FD;
    pfd[0].events = POLLIN;
    pfd[1].fd = sfd;
    pfd[1].events = POLLIN;
    nfds = 2;
    if (ports_listener()) {
        pfd[2].fd = PORTS_FD;
        pfd[2].events = POLLIN;
        nfds = 3;
    }
    /* what a port relay child must not hold */
    ours[0] = LISTEN_FD;
    ours[1] = sfd;
    ours[2] = PORTS_FD;
    for (;;) {
        if (poll(pfd, (nfds_t)nfds, -1) < 0) {
            if (errno != EINTR)
                pause_ms(100);
            continue;
        }
        if (pfd[1].revents & POLLIN) {
            while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                    return 0;
            }
            reap();
        }
        if (pfd[0].revents & (POLLERR | POLLNVAL))
            return 1;
        if (pfd[0].revents & POLLIN) {
            backoff = accept_one();
            if (backoff)
                pause_ms(backoff);
        }
        /* a broken ports listener must not take sshd down with it */
        if (nfds == 3 && (pfd[2].revents & (POLLERR | POLLNVAL)))
            nfds = 2;
        else if (nfds == 3 && (pfd[2].revents & POLLIN)) {
            backoff = port_relay_accept(PORTS_FD, ours, 3);
            if (backoff)
                pause_ms(backoff);
        }
    }
}
