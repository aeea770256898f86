/*
 * egress_dns.c - the domain policy of an egress sandbox (egress.c): when
 * egress_allow_domains or egress_deny_domains is set, a dnsmasq of the
 * sandbox's own answers its queries, and the filter lets only that
 * dnsmasq (host root, uid 0 in the namespace's user namespace) reach
 * egress_dns, so the sandbox cannot ask the upstream directly.
 *
 * Allowed names (and their subdomains) are forwarded to egress_dns and
 * every address in an answer is added to the filter's set dns_ok
 * (dnsmasq's nftset), which is what makes it reachable; every other name
 * is answered NXDOMAIN. Denied names are NXDOMAIN in either mode.
 * docs/decisions.md says what this does and does not stop.
 *
 * dnsmasq runs as host root inside the sandbox's namespace, listening on
 * its 127.0.0.1:53, a port the sandbox cannot bind (no
 * CAP_NET_BIND_SERVICE over a namespace of the host's user namespace).
 * It daemonizes once its socket is bound, so the start waits for that;
 * its pid is in <session>/dnsmasq.pid, written by dnsmasq itself.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/local/local.h"

#define ARG_MAX_LEN 320
#define DNS_ARGS_MAX (2 * PICO_DOMAINS_MAX * 2 + 16)
#define DNSMASQ_MS 10000 /* it binds and forks in milliseconds */

typedef struct {
    char (*store)[ARG_MAX_LEN];
    const char *argv[DNS_ARGS_MAX + 1];
    int n, bad;
} args;

/* One argument, the concatenation of four strings. */
static void arg(args *a, const char *s1, const char *s2, const char *s3,
                const char *s4)
{
    if (a->n == DNS_ARGS_MAX || fmt_exact(a->store[a->n], ARG_MAX_LEN,
                                          "%s%s%s%s", s1, s2, s3, s4) < 0) {
        a->bad = 1;
        return;
    }
    a->argv[a->n] = a->store[a->n];
    a->n++;
}

/* "<opt>/<name>/<value>" for each name of a list (config.c checked every
 * name). */
static void per_name(args *a, const char *list, const char *opt,
                     const char *value)
{
    char name[PICO_DOMAIN_MAX + 1];
    const char *p = list;

    while (*p) {
        size_t n;
        p += strspn(p, " ,\t");
        n = strcspn(p, " ,\t");
        if (n == 0 || n > PICO_DOMAIN_MAX)
            break;
        memcpy(name, p, n);
        name[n] = '\0';
        arg(a, opt, "/", name, "/");
        if (!a->bad && value[0] != '\0' &&
            fmt_exact(a->store[a->n - 1], ARG_MAX_LEN, "%s/%s/%s", opt, name,
                      value) < 0)
            a->bad = 1;
        p += n;
    }
}

static void build(const runtime *rt, const session_paths *p, args *a)
{
    const egress_conf *e = &rt->egress;
    static const char *const fixed[] = {
        "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--listen-address=127.0.0.1", "--bind-interfaces",
        /* the uid the filter lets ask egress_dns (egress.c) */
        "--user=nobody", NULL};

    arg(a, e->dnsmasq, "", "", "");
    for (int i = 0; fixed[i] != NULL; i++)
        arg(a, fixed[i], "", "", "");
    arg(a, "--pid-file=", p->dnsmasq, "", "");
    if (e->allow_names > 0) {
        per_name(a, e->allow_domains, "--server=", e->dns);
        per_name(a, e->allow_domains, "--nftset=", "4#ip#pico_egress#dns_ok");
        /* every name not allowed: NXDOMAIN */
        arg(a, "--address=/#/", "", "", "");
    } else {
        arg(a, "--server=", e->dns, "", "");
    }
    per_name(a, e->deny_domains, "--address=", "");
    a->argv[a->n] = NULL;
}

int egress_dns_start(const runtime *rt, const session_paths *p, char *err,
                     size_t errlen)
{
    args a = {.store = malloc(sizeof(*a.store) * DNS_ARGS_MAX)};
    subprocess sp = {.fd3 = -1,
                     .timeout_ms = DNSMASQ_MS,
                     .name = "dnsmasq",
                     .what = "dnsmasq",
                     .first_line = 1};
    int rc;

    if (a.store == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    build(rt, p, &a);
    if (a.bad) {
        free(a.store);
        snprintf(err, errlen, "egress: dnsmasq arguments too long");
        return -1;
    }
    sp.argv = a.argv;
    /* returns once the daemon has bound its socket and forked */
    rc = subprocess_run(&sp, err, errlen) == 0 ? 0 : -1;
    free(a.store);
    return rc;
}
