/*
 * egress.c - outbound network for a local sandbox that asked for it
 * ("network": "egress"); every other sandbox keeps a new, empty network
 * namespace with only lo (oci.c).
 *
 * For an egress sandbox the backend (host root) makes the network
 * namespace itself, so it belongs to the host's user namespace: the
 * sandbox's root, root only in the sandbox's own user namespace, has no
 * CAP_NET_ADMIN over it and can change neither its routes nor its filter.
 * It is bind-mounted at <session>/netns, and runc joins it by path.
 * Before anything runs in it the backend loads an nftables ruleset into it
 * (the policy: always-blocked ranges, the host's own addresses in the
 * egress namespace, the configured deny and allow lists) and lets ping
 * use ICMP echo sockets there.
 *
 * slirp4netns, a userspace NAT, then attaches to it by path: its outside
 * end runs in egress_netns (the backend's own when empty), so traffic
 * leaves as ordinary sockets of that namespace and no firewall or route
 * state of the host changes. It is started with --disable-host-loopback
 * (10.0.2.2 is not the host's 127.0.0.1) and --disable-dns (no forwarder
 * reading the host's /etc/resolv.conf): the sandbox's /etc/resolv.conf
 * names egress_dns, reached through the NAT like any destination.
 *
 * Namespace switches happen on the calling thread only (setns of a
 * thread), and a helper spawned from there starts in that namespace; the
 * thread always comes back, or the backend aborts rather than run on
 * in a sandbox's namespace.
 *
 * What is left on the host per sandbox: the slirp4netns process (pid in
 * <session>/slirp.pid) and the netns mount, both removed by
 * egress_teardown on destroy; the filter goes with the namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/nsfs.h>
#include "runtime/local/local.h"

#define HOST_ADDRS_MAX 64
#define RULESET_MAX 32768
#define SLIRP_READY_MS 10000 /* slirp4netns configures tap0 long before */
#define SLIRP_EXIT_MS 2000   /* a SIGKILLed slirp4netns is gone by then */

/* ---------------------------------------------------------------------
 * The calling thread's network namespace
 * ------------------------------------------------------------------- */

static int thread_netns(void)
{
    return open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
}

/* Back to the namespace saved in self. A thread that cannot come back
 * would serve later requests from a sandbox's namespace: stop instead. */
static void come_back(int self)
{
    if (setns(self, CLONE_NEWNET) < 0) {
        log_error("egress: cannot return to the backend's network namespace: "
                  "%s",
                  strerror(errno));
        abort();
    }
    close(self);
}

/* Moves the thread into egress_netns; *self gets where it was (-1 when
 * egress_netns is the backend's own and nothing moved). */
static int enter_outside(const egress_conf *e, int *self, char *err,
                         size_t errlen)
{
    int fd;

    *self = -1;
    if (e->netns[0] == '\0')
        return 0;
    fd = open(e->netns, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || (*self = thread_netns()) < 0 || setns(fd, CLONE_NEWNET) < 0) {
        snprintf(err, errlen, "egress_netns %s: %s", e->netns, strerror(errno));
        if (*self >= 0)
            close(*self);
        *self = -1;
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* ---------------------------------------------------------------------
 * The filter
 * ------------------------------------------------------------------- */

typedef struct {
    uint32_t v[HOST_ADDRS_MAX];
    int n;
} host_addrs;

/* The IPv4 addresses of egress_netns itself: a sandbox never reaches the
 * host (or the namespace its NAT runs in) through its own addresses. */
static int outside_addrs(const egress_conf *e, host_addrs *ha, char *err,
                         size_t errlen)
{
    struct ifaddrs *list = NULL;
    int self, rc;

    ha->n = 0;
    if (enter_outside(e, &self, err, errlen) < 0)
        return -1;
    rc = getifaddrs(&list);
    if (rc < 0)
        snprintf(err, errlen, "egress: addresses of egress_netns: %s",
                 strerror(errno));
    if (self >= 0)
        come_back(self);
    for (struct ifaddrs *i = list; rc == 0 && i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET)
            continue;
        if (ha->n == HOST_ADDRS_MAX) {
            snprintf(err, errlen,
                     "egress: egress_netns has more than %d IPv4 addresses",
                     HOST_ADDRS_MAX);
            rc = -1;
            break;
        }
        ha->v[ha->n++] =
            ntohl(((const struct sockaddr_in *)(const void *)i->ifa_addr)
                      ->sin_addr.s_addr);
    }
    freeifaddrs(list);
    return rc;
}

typedef struct {
    char *text;
    size_t len;
    int full;
} ruleset;

static void add(ruleset *r, const char *f, ...)
    __attribute__((format(printf, 2, 3)));

static void add(ruleset *r, const char *f, ...)
{
    va_list ap;
    int n;

    if (r->full)
        return;
    va_start(ap, f);
    n = vsnprintf(r->text + r->len, RULESET_MAX - r->len, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= RULESET_MAX - r->len)
        r->full = 1;
    else
        r->len += (size_t)n;
}

/* One interval set of IPv4 ranges, its elements omitted when empty. */
static void add_set(ruleset *r, const char *name, const pico_cidr_list *l)
{
    char c[24];

    add(r, "\tset %s {\n\t\ttype ipv4_addr; flags interval; auto-merge;\n",
        name);
    for (int i = 0; i < l->n; i++) {
        cidr_format(&l->v[i], c, sizeof(c));
        add(r, "%s%s", i == 0 ? "\t\telements = { " : ", ", c);
    }
    add(r, "%s\t}\n", l->n > 0 ? " }\n" : "");
}

/*
 * The sandbox's only way out is tap0 to slirp4netns; this chain decides
 * what may leave: lo, the resolver, then blocked before denied before
 * allowed, the rest refused. A refusal is a reject (RST or ICMP
 * unreachable), so a client fails at once instead of waiting. No IPv6
 * leaves at all (slirp4netns runs without it).
 */
static void build_ruleset(const egress_conf *e, const host_addrs *ha,
                          ruleset *r)
{
    pico_cidr_list blocked = {.n = 0}, all = {.n = 1, .v = {{0, 0}}};
    /* with a domain policy only dnsmasq asks egress_dns: it runs as the
     * host's nobody, a uid no sandbox process has (theirs are mapped to
     * their own ranges, idmap.c) */
    const char *who =
        e->allow_names + e->deny_names > 0 ? "meta skuid 65534 " : "";

    for (int i = 0; netpolicy_always_blocked[i] != NULL; i++)
        (void)cidr_parse(netpolicy_always_blocked[i],
                         strlen(netpolicy_always_blocked[i]),
                         &blocked.v[blocked.n++]);
    for (int i = 0; i < ha->n && blocked.n < PICO_CIDRS_MAX; i++)
        blocked.v[blocked.n++] = (pico_cidr){ha->v[i], 32};
    add(r, "table ip pico_egress {\n");
    add_set(r, "blocked", &blocked);
    add_set(r, "deny", &e->deny);
    /* allowed names narrow the ranges to the listed ones */
    add_set(r, "allow",
            e->allow.n > 0 || e->allow_names > 0 ? &e->allow : &all);
    /* the answers dnsmasq gave for allowed names (egress_dns.c) */
    add(r, "\tset dns_ok {\n\t\ttype ipv4_addr;\n\t}\n");
    add(r,
        "\tchain out {\n"
        "\t\ttype filter hook output priority 0; policy drop;\n"
        "\t\toifname \"lo\" accept\n"
        "\t\t%sip daddr %s udp dport 53 accept\n"
        "\t\t%sip daddr %s tcp dport 53 accept\n"
        "\t\t%s\n"
        "\t\tip daddr @blocked reject\n"
        "\t\tip daddr @deny reject\n"
        "\t\tip daddr @dns_ok accept\n"
        "\t\tip daddr @allow accept\n"
        "\t\treject\n"
        "\t}\n}\n",
        who, e->dns, who, e->dns,
        /* and nobody else asks any resolver, even one at an allowed
         * address */
        who[0] ? "meta l4proto { tcp, udp } th dport 53 reject" : "");
    add(r, "table ip6 pico_egress6 {\n"
           "\tchain out {\n"
           "\t\ttype filter hook output priority 0; policy drop;\n"
           "\t\toifname \"lo\" accept\n"
           "\t}\n}\n");
}

/* The server's policy narrowed by the request's lists (session.c checked
 * them against it): its allowed ranges replace the server's, its denied
 * ones add to them. */
static void session_policy(const runtime *rt, const session *s, egress_conf *e)
{
    pico_cidr_list l;
    char why[128];

    *e = rt->egress;
    if (cidr_list_parse(s->egress_allow, &l, why, sizeof(why)) == 0 && l.n > 0)
        e->allow = l;
    if (cidr_list_parse(s->egress_deny, &l, why, sizeof(why)) == 0)
        for (int i = 0; i < l.n && e->deny.n < PICO_CIDRS_MAX; i++)
            e->deny.v[e->deny.n++] = l.v[i];
}

/* Writes the ruleset to <dir>/egress.nft (kept: it is what the sandbox
 * got) and returns its path in path. */
static int write_ruleset(const runtime *rt, const session *s,
                         const session_paths *p, char *path, size_t pathlen,
                         char *err, size_t errlen)
{
    ruleset r = {malloc(RULESET_MAX), 0, 0};
    egress_conf *e = malloc(sizeof(*e));
    host_addrs ha;
    int rc = -1;

    if (r.text == NULL || e == NULL) {
        free(r.text);
        free(e);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    session_policy(rt, s, e);
    if (outside_addrs(e, &ha, err, errlen) == 0) {
        build_ruleset(e, &ha, &r);
        if (r.full || fmt_exact(path, pathlen, "%s/egress.nft", p->dir) < 0)
            snprintf(err, errlen, "egress: ruleset too long");
        else if (write_file(path, r.text, r.len, 0600) < 0)
            snprintf(err, errlen, "egress.nft: %s", strerror(errno));
        else
            rc = 0;
    }
    free(r.text);
    free(e);
    return rc;
}

/* ---------------------------------------------------------------------
 * The sandbox's namespace
 * ------------------------------------------------------------------- */

/* Inside the new namespace (the calling thread is there): ping's ICMP
 * echo sockets for every group (only the sandbox lives here), then the
 * filter, before anything of the sandbox runs. */
static int configure_inside(const runtime *rt, const session_paths *p,
                            const char *nft_file, char *err, size_t errlen)
{
    static const char range[] = "0 2147483647\n";
    const char *argv[] = {rt->egress.nft, "-f", nft_file, NULL};
    subprocess sp = {.argv = argv,
                     .fd3 = -1,
                     .timeout_ms = RUNC_TIMEOUT_MS,
                     .name = "nft",
                     .what = "nft",
                     .first_line = 1};
    int fd = open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY | O_CLOEXEC);

    if (fd < 0 || write(fd, range, sizeof(range) - 1) < 0) {
        snprintf(err, errlen, "egress: ping_group_range: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    if (subprocess_run(&sp, err, errlen) != 0)
        return -1;
    if (rt->egress.allow_names + rt->egress.deny_names > 0)
        return egress_dns_start(rt, p, err, errlen);
    return 0;
}

/* Makes the sandbox's namespace, configures it and bind-mounts it at
 * p->netns, all from the calling thread, which then comes back. */
static int make_netns(const runtime *rt, const session_paths *p,
                      const char *nft_file, char *err, size_t errlen)
{
    int self, fd, rc;

    fd = open(p->netns, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
              0600);
    if (fd < 0) {
        snprintf(err, errlen, "egress: %s: %s", p->netns, strerror(errno));
        return -1;
    }
    close(fd);
    self = thread_netns();
    if (self < 0 || unshare(CLONE_NEWNET) < 0) {
        snprintf(err, errlen, "egress: new network namespace: %s",
                 strerror(errno));
        if (self >= 0)
            close(self);
        return -1;
    }
    rc = configure_inside(rt, p, nft_file, err, errlen);
    if (rc == 0 &&
        mount("/proc/thread-self/ns/net", p->netns, NULL, MS_BIND, NULL) < 0) {
        snprintf(err, errlen, "egress: bind mount of the netns: %s",
                 strerror(errno));
        rc = -1;
    }
    come_back(self);
    return rc;
}

/* ---------------------------------------------------------------------
 * slirp4netns
 * ------------------------------------------------------------------- */

/* Waits for slirp4netns's "1" on the ready pipe: tap0 is up and routed. */
static int wait_ready(int fd, char *err, size_t errlen)
{
    struct pollfd pf = {fd, POLLIN, 0};
    char c = 0;
    int n;

    do
        n = poll(&pf, 1, SLIRP_READY_MS);
    while (n < 0 && errno == EINTR);
    if (n <= 0 || read(fd, &c, 1) != 1 || c != '1') {
        snprintf(err, errlen,
                 n == 0 ? "egress: slirp4netns did not configure the network"
                        : "egress: slirp4netns exited before the network "
                          "was up");
        return -1;
    }
    return 0;
}

static int start_slirp(const runtime *rt, const session_paths *p, char *err,
                       size_t errlen)
{
    const char *argv[] = {rt->egress.slirp,
                          "--configure",
                          "--mtu=65520",
                          "--disable-host-loopback",
                          "--disable-dns",
                          "--enable-seccomp",
                          "--ready-fd=3",
                          "--netns-type=path",
                          p->netns,
                          "tap0",
                          NULL};
    subprocess sp = {.argv = argv, .fd3 = -1, .name = "slirp4netns"};
    int ready[2], self, rc;
    char pid_text[24];
    pid_t pid = -1;

    if (pipe2(ready, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    sp.fd3 = ready[1];
    rc = enter_outside(&rt->egress, &self, err, errlen);
    if (rc == 0)
        rc = subprocess_start(&sp, &pid, err, errlen);
    if (self >= 0)
        come_back(self);
    close(ready[1]);
    if (rc == 0) {
        snprintf(pid_text, sizeof(pid_text), "%d\n", (int)pid);
        if (write_file(p->slirp, pid_text, strlen(pid_text), 0600) < 0) {
            snprintf(err, errlen, "slirp.pid: %s", strerror(errno));
            kill(pid, SIGKILL);
            (void)waitpid(pid, NULL, 0);
            rc = -1;
        }
    }
    if (rc == 0)
        rc = wait_ready(ready[0], err, errlen);
    close(ready[0]);
    return rc;
}

/* 1 when /proc/<pid> is this session's helper: its argv has `mark` (a
 * live one), or it is a zombie named `zombie` (argv is gone; NULL: only
 * live ones count). */
static int is_ours(pid_t pid, const char *mark, const char *zombie)
{
    char path[64], buf[4096], *comm;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
    if (fd >= 0)
        close(fd);
    if (n > 0)
        buf[n] = '\0';
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
        if (strcmp(buf + i, mark) == 0)
            return 1;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0 || zombie == NULL)
        return 0;
    buf[n] = '\0';
    comm = strstr(buf, zombie);
    return comm != NULL;
}

/* Kills the helper whose pid is in pid_file through a pidfd (a recycled
 * pid cannot be mistaken for it) and reaps it when it is our child; a
 * daemonized dnsmasq, or slirp4netns after a backend restart, is not,
 * and init reaps it. */
static void stop_helper(const char *pid_file, const char *mark,
                        const char *zombie)
{
    char text[24] = "";
    int fd = open(pid_file, O_RDONLY | O_CLOEXEC), pidfd;
    struct pollfd pf;
    ssize_t n;
    long pid;

    n = fd < 0 ? -1 : read(fd, text, sizeof(text) - 1);
    if (fd >= 0)
        close(fd);
    pid = n > 0 ? strtol(text, NULL, 10) : 0;
    if (pid <= 1)
        return;
    pidfd = (int)pidfd_open((pid_t)pid, 0);
    if (pidfd < 0)
        return;
    if (is_ours((pid_t)pid, mark, zombie)) {
        (void)pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        pf = (struct pollfd){pidfd, POLLIN, 0};
        (void)poll(&pf, 1, SLIRP_EXIT_MS);
        (void)waitpid((pid_t)pid, NULL, WNOHANG);
    }
    close(pidfd);
}

/* ---------------------------------------------------------------------
 * Entry points
 * ------------------------------------------------------------------- */

int egress_setup(const runtime *rt, const session *s, const session_paths *p,
                 char *err, size_t errlen)
{
    char nft_file[PICO_PATH_MAX], resolv[64];

    if (!rt->egress.enabled) {
        snprintf(err, errlen, "network egress is not enabled");
        return -1;
    }
    if (write_ruleset(rt, s, p, nft_file, sizeof(nft_file), err, errlen) < 0)
        return -1;
    if (make_netns(rt, p, nft_file, err, errlen) < 0 ||
        start_slirp(rt, p, err, errlen) < 0)
        goto fail;
    /* with a domain policy the sandbox's own dnsmasq, else the upstream */
    snprintf(resolv, sizeof(resolv), "nameserver %s\n",
             rt->egress.allow_names + rt->egress.deny_names > 0
                 ? "127.0.0.1"
                 : rt->egress.dns);
    if (write_file(p->resolv, resolv, strlen(resolv), 0644) < 0) {
        snprintf(err, errlen, "resolv.conf: %s", strerror(errno));
        goto fail;
    }
    return 0;
fail:
    egress_teardown(p);
    return -1;
}

void egress_teardown(const session_paths *p)
{
    char mark[PICO_PATH_MAX + 16];

    stop_helper(p->slirp, p->netns, " (slirp4netns) Z ");
    if (fmt_exact(mark, sizeof(mark), "--pid-file=%s", p->dnsmasq) == 0)
        stop_helper(p->dnsmasq, mark, NULL);
    /* EINVAL: not mounted (no egress, or released by reconcile's
     * disk_reconcile after a crash); the file goes with the folder */
    if (umount2(p->netns, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 &&
        errno != EINVAL && errno != ENOENT)
        log_warn("egress: cannot unmount %s: %s", p->netns, strerror(errno));
}

/* egress_netns must be a network namespace now, not at the first
 * create. */
static int check_netns(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), type;

    type = fd < 0 ? -1 : ioctl(fd, NS_GET_NSTYPE);
    if (fd >= 0)
        close(fd);
    if (type != CLONE_NEWNET) {
        snprintf(
            err, errlen,
            "local runtime: egress_netns %s is not a network namespace%s%s",
            path, fd < 0 ? ": " : "", fd < 0 ? strerror(errno) : "");
        return -1;
    }
    return 0;
}

int egress_open(runtime *rt, const pico_config *cfg, char *err, size_t errlen)
{
    egress_conf *e = &rt->egress;
    char why[PICO_PATH_MAX + 128];

    memset(e, 0, sizeof(*e));
    e->enabled = netpolicy_network_allowed(cfg, "egress");
    if (!e->enabled)
        return 0;
    /* config.c checked the syntax of every key */
    if (cfg->egress_netns[0] != '\0' &&
        fmt_exact(e->netns, sizeof(e->netns),
                  cfg->egress_netns[0] == '/' ? "%s" : "/run/netns/%s",
                  cfg->egress_netns) < 0) {
        snprintf(err, errlen, "local runtime: egress_netns too long");
        return -1;
    }
    /* Only a warning: the driver must open without it, or a vanished
     * egress_netns would keep reconcile and drain from removing the
     * sandboxes it has; creates fail with the reason meanwhile. */
    if (e->netns[0] != '\0' && check_netns(e->netns, why, sizeof(why)) < 0)
        log_warn("%s", why);
    if (fmt_exact(e->dns, sizeof(e->dns), "%s", cfg->egress_dns) < 0 ||
        fmt_exact(e->slirp, sizeof(e->slirp), "%s", cfg->slirp4netns) < 0 ||
        fmt_exact(e->nft, sizeof(e->nft), "%s", cfg->nft) < 0 ||
        cidr_list_parse(cfg->egress_allow_cidrs, &e->allow, why, sizeof(why)) <
            0 ||
        cidr_list_parse(cfg->egress_deny_cidrs, &e->deny, why, sizeof(why)) <
            0) {
        snprintf(err, errlen, "local runtime: bad egress configuration");
        return -1;
    }
    if (access(e->slirp, X_OK) < 0 || access(e->nft, X_OK) < 0) {
        snprintf(err, errlen,
                 "local runtime: network egress needs %s and %s "
                 "(scripts/deps.sh installs them): %s",
                 e->slirp, e->nft, strerror(errno));
        return -1;
    }
    e->allow_names =
        domain_list_check(cfg->egress_allow_domains, why, sizeof(why));
    e->deny_names =
        domain_list_check(cfg->egress_deny_domains, why, sizeof(why));
    if (e->allow_names < 0 || e->deny_names < 0 ||
        fmt_exact(e->allow_domains, sizeof(e->allow_domains), "%s",
                  cfg->egress_allow_domains) < 0 ||
        fmt_exact(e->deny_domains, sizeof(e->deny_domains), "%s",
                  cfg->egress_deny_domains) < 0 ||
        fmt_exact(e->dnsmasq, sizeof(e->dnsmasq), "%s", cfg->dnsmasq) < 0) {
        snprintf(err, errlen, "local runtime: bad egress domain lists");
        return -1;
    }
    if (e->allow_names + e->deny_names > 0 && access(e->dnsmasq, X_OK) < 0) {
        snprintf(err, errlen,
                 "local runtime: egress domain lists need %s "
                 "(dnsmasq-base): %s",
                 e->dnsmasq, strerror(errno));
        return -1;
    }
    return 0;
}
