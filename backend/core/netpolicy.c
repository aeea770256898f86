/*
 * netpolicy.c - "network" values and the egress policy's IPv4 ranges
 * (netpolicy.h). The drivers enforce the policy (the local one with
 * nftables in the sandbox's network namespace, runtime-local.md; the
 * kubernetes one as a NetworkPolicy per session, kubernetes.md); this
 * file only says what is well-formed and what the configuration allows,
 * so a bad key stops the backend and a bad request gets a 400 before
 * anything is started.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/netpolicy.h"
#include <jansson.h>

/*
 * Never reachable from a sandbox, whatever the lists say: "this network"
 * and loopback (the host's own services), slirp4netns's 10.0.2.0/24 (its
 * gateway 10.0.2.2 is the host), link-local (cloud metadata at
 * 169.254.169.254), multicast and the reserved block with the broadcast
 * address. The host's own addresses are added per sandbox by the driver,
 * which alone knows them.
 */
const char *const netpolicy_always_blocked[] = {
    "0.0.0.0/8",   "10.0.2.0/24", "127.0.0.0/8", "169.254.0.0/16",
    "224.0.0.0/4", "240.0.0.0/4", NULL};

/*
 * On Kubernetes the cluster's own networks take the place of the NAT's:
 * pods, Services and nodes are usually on private or shared (100.64/10)
 * space, so all of it is blocked, as is link-local (cloud metadata).
 */
const char *const netpolicy_cluster_blocked[] = {
    "0.0.0.0/8",      "10.0.0.0/8",
    "100.64.0.0/10",  "127.0.0.0/8",
    "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/4",
    "240.0.0.0/4",    NULL};

static uint32_t prefix_mask(int prefix)
{
    return prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
}

/* A decimal number of at most 3 digits in [lo, hi]; moves *s past it. */
static int dec_part(const char **s, const char *end, int hi, int *out)
{
    int v = 0, digits = 0;

    while (*s < end && **s >= '0' && **s <= '9' && digits < 3) {
        v = v * 10 + (**s - '0');
        (*s)++;
        digits++;
    }
    if (digits == 0 || v > hi || (*s < end && **s >= '0' && **s <= '9'))
        return -1;
    *out = v;
    return 0;
}

int cidr_parse(const char *s, size_t n, pico_cidr *out)
{
    const char *end = s + n;
    uint32_t a = 0;
    int part, prefix = 32;

    for (int i = 0; i < 4; i++) {
        if (dec_part(&s, end, 255, &part) < 0)
            return -1;
        a = (a << 8) | (uint32_t)part;
        if (i < 3 && (s == end || *s++ != '.'))
            return -1;
    }
    if (s < end && *s == '/') {
        s++;
        if (dec_part(&s, end, 32, &prefix) < 0)
            return -1;
    }
    if (s != end || (a & ~prefix_mask(prefix)) != 0)
        return -1;
    out->addr = a;
    out->prefix = prefix;
    return 0;
}

void cidr_format(const pico_cidr *c, char *buf, size_t len)
{
    snprintf(buf, len, "%u.%u.%u.%u/%d", c->addr >> 24, (c->addr >> 16) & 255,
             (c->addr >> 8) & 255, c->addr & 255, c->prefix);
}

int cidr_within(const pico_cidr *a, const pico_cidr *b)
{
    return a->prefix >= b->prefix &&
           (a->addr & prefix_mask(b->prefix)) == b->addr;
}

int cidr_list_parse(const char *text, pico_cidr_list *out, char *why,
                    size_t whylen)
{
    const char *p = text;

    out->n = 0;
    while (*p) {
        size_t n;
        p += strspn(p, " ,\t");
        n = strcspn(p, " ,\t");
        if (n == 0)
            break;
        if (out->n == PICO_CIDRS_MAX) {
            snprintf(why, whylen, "more than %d ranges", PICO_CIDRS_MAX);
            return -1;
        }
        if (cidr_parse(p, n, &out->v[out->n]) < 0) {
            snprintf(why, whylen,
                     "%.*s is not an IPv4 range like 192.0.2.0/24 (no bits "
                     "set past the prefix)",
                     (int)(n > 40 ? 40 : n), p);
            return -1;
        }
        out->n++;
        p += n;
    }
    return 0;
}

int domain_valid(const char *s, size_t n)
{
    size_t label = 0, labels = 1;

    if (n == 0 || n > PICO_DOMAIN_MAX || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            labels++;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return labels >= 2 && s[n - 1] != '-';
}

int domain_list_check(const char *text, char *why, size_t whylen)
{
    const char *p = text;
    int count = 0;

    while (*p) {
        size_t n;
        p += strspn(p, " ,\t");
        n = strcspn(p, " ,\t");
        if (n == 0)
            break;
        if (count == PICO_DOMAINS_MAX) {
            snprintf(why, whylen, "more than %d names", PICO_DOMAINS_MAX);
            return -1;
        }
        if (!domain_valid(p, n)) {
            snprintf(why, whylen,
                     "%.*s is not a domain name like api.github.com "
                     "(lowercase)",
                     (int)(n > 64 ? 64 : n), p);
            return -1;
        }
        count++;
        p += n;
    }
    return count;
}

static pico_cidr blocked_range(const char *const *blk, int i)
{
    const char *t = blk[i];
    pico_cidr c = {0, 32};

    (void)cidr_parse(t, strlen(t), &c);
    return c;
}

int netpolicy_blocked(uint32_t addr)
{
    pico_cidr a = {addr, 32};

    for (int i = 0; netpolicy_always_blocked[i] != NULL; i++) {
        pico_cidr b = blocked_range(netpolicy_always_blocked, i);
        if (cidr_within(&a, &b))
            return 1;
    }
    return 0;
}

const char *const *netpolicy_blocked_list(const pico_config *cfg)
{
    return strcmp(cfg->runtime, "kubernetes") == 0 ? netpolicy_cluster_blocked
                                                   : netpolicy_always_blocked;
}

/* 1 when c is wholly denied: inside an entry of deny or of blk. */
static int denied(const pico_cidr *c, const pico_cidr_list *deny,
                  const char *const *blk)
{
    for (int i = 0; i < deny->n; i++)
        if (cidr_within(c, &deny->v[i]))
            return 1;
    for (int i = 0; blk[i] != NULL; i++) {
        pico_cidr b = blocked_range(blk, i);
        if (cidr_within(c, &b))
            return 1;
    }
    return 0;
}

/* 1 when some range of allow is not wholly denied (by deny or by what
 * the runtime always blocks): the policy lets something through. */
static int some_allowed(const pico_cidr_list *allow, const pico_cidr_list *deny,
                        const pico_config *cfg)
{
    for (int i = 0; i < allow->n; i++)
        if (!denied(&allow->v[i], deny, netpolicy_blocked_list(cfg)))
            return 1;
    return 0;
}

/* Walks a blank- or comma-separated list; 1 when word is in it. */
static int in_list(const char *list, const char *word)
{
    size_t len = strlen(word);

    while (*list) {
        size_t n;
        list += strspn(list, " ,\t");
        n = strcspn(list, " ,\t");
        if (n == len && n > 0 && !strncmp(list, word, n))
            return 1;
        list += n;
    }
    return 0;
}

int netpolicy_network_allowed(const pico_config *cfg, const char *network)
{
    if (strcmp(network, "none") == 0)
        return 1;
    return strcmp(network, "egress") == 0 &&
           in_list(cfg->network_allowed, "egress");
}

static int check_names(const pico_config *cfg, char *why, size_t whylen)
{
    const char *p = cfg->network_allowed;

    while (*p) {
        size_t n;
        p += strspn(p, " ,\t");
        n = strcspn(p, " ,\t");
        if (n > 0 && !(n == 4 && !strncmp(p, "none", 4)) &&
            !(n == 6 && !strncmp(p, "egress", 6))) {
            snprintf(why, whylen,
                     "network_allowed: %.*s is not a network (none, egress)",
                     (int)(n > 32 ? 32 : n), p);
            return -1;
        }
        p += n;
    }
    return 0;
}

/* egress_netns: "" (the backend's own), a name made by `ip netns add`
 * (/run/netns/<name>), or an absolute path without "..". */
static int check_netns(const char *v, char *why, size_t whylen)
{
    size_t n = strlen(v);

    if (n == 0)
        return 0;
    if (v[0] == '/'
            ? strstr(v, "/../") == NULL &&
                  (n < 3 || strcmp(v + n - 3, "/..") != 0)
            : n <= 64 && v[0] != '.' &&
                  strspn(v, "abcdefghijklmnopqrstuvwxyz"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n)
        return 0;
    snprintf(why, whylen,
             "egress_netns: must be empty (the host's), a name made by ip "
             "netns add, or an absolute path");
    return -1;
}

static int check_lists(const pico_config *cfg, char *why, size_t whylen)
{
    pico_cidr_list allow, deny;
    pico_cidr dns;
    char what[128];
    int domains;

    if (cidr_list_parse(cfg->egress_allow_cidrs, &allow, what, sizeof(what)) <
        0) {
        snprintf(why, whylen, "egress_allow_cidrs: %s", what);
        return -1;
    }
    if (cidr_list_parse(cfg->egress_deny_cidrs, &deny, what, sizeof(what)) <
        0) {
        snprintf(why, whylen, "egress_deny_cidrs: %s", what);
        return -1;
    }
    if ((domains = domain_list_check(cfg->egress_allow_domains, what,
                                     sizeof(what))) < 0 ||
        domain_list_check(cfg->egress_deny_domains, what, sizeof(what)) < 0) {
        snprintf(why, whylen, "egress_%s_domains: %s",
                 domains < 0 ? "allow" : "deny", what);
        return -1;
    }
    /* with allowed names, the ranges allowed are only the listed ones */
    if (allow.n == 0 && domains == 0)
        allow.v[allow.n++] = (pico_cidr){0, 0};
    if (domains == 0 && !some_allowed(&allow, &deny, cfg)) {
        snprintf(why, whylen,
                 "egress_allow_cidrs: allows nothing (every range is denied "
                 "or always blocked)");
        return -1;
    }
    /* the cluster's DNS serves pods there; egress_dns is the local NAT's */
    if (strcmp(cfg->runtime, "kubernetes") == 0)
        return 0;
    if (cidr_parse(cfg->egress_dns, strlen(cfg->egress_dns), &dns) < 0 ||
        dns.prefix != 32 || netpolicy_blocked(dns.addr)) {
        snprintf(why, whylen,
                 "egress_dns: must be the IPv4 address of the resolver "
                 "sandboxes use, reachable from egress_netns (not loopback "
                 "or link-local)");
        return -1;
    }
    return 0;
}

int netpolicy_check_config(const pico_config *cfg, char *why, size_t whylen)
{
    if (check_names(cfg, why, whylen) < 0 ||
        check_netns(cfg->egress_netns, why, whylen) < 0)
        return -1;
    if (!netpolicy_network_allowed(cfg, "egress"))
        return 0;
    if (strcmp(cfg->runtime, "kubernetes") == 0 &&
        (cfg->egress_allow_domains[0] || cfg->egress_deny_domains[0])) {
        snprintf(why, whylen,
                 "egress_%s_domains: not available with runtime kubernetes: "
                 "its egress policy is a NetworkPolicy, which matches "
                 "addresses, never names (docs/kubernetes.md, Network)",
                 cfg->egress_allow_domains[0] ? "allow" : "deny");
        return -1;
    }
    return check_lists(cfg, why, whylen);
}

/* One array of the request's "egress" object into l and its text form. */
static int request_list(json_t *a, const char *name, pico_cidr_list *l,
                        char *text, char *err, size_t errlen)
{
    size_t i, used = 0;
    json_t *e;

    l->n = 0;
    text[0] = '\0';
    if (a == NULL)
        return 0;
    if (!json_is_array(a) || json_array_size(a) > PICO_REQ_CIDRS_MAX) {
        snprintf(err, errlen,
                 "egress.%s: must be an array of at most %d "
                 "IPv4 ranges",
                 name, PICO_REQ_CIDRS_MAX);
        return -1;
    }
    json_array_foreach(a, i, e)
    {
        const char *t = json_string_value(e);
        if (t == NULL || strlen(t) != json_string_length(e) ||
            cidr_parse(t, strlen(t), &l->v[l->n]) < 0) {
            snprintf(err, errlen,
                     "egress.%s: %.40s is not an IPv4 range like "
                     "192.0.2.0/24 (no bits set past the prefix)",
                     name, t ? t : "(not a string)");
            return -1;
        }
        cidr_format(&l->v[l->n], text + used, PICO_REQ_CIDRS_TEXT + 1 - used);
        used = strlen(text);
        if (i + 1 < json_array_size(a))
            text[used++] = ',';
        text[used] = '\0';
        l->n++;
    }
    return 0;
}

/* 1 when c lies inside a range the configuration allows. */
static int server_allows(const pico_cidr_list *allow, int names,
                         const pico_cidr *c)
{
    if (allow->n == 0)
        return names == 0; /* everything, unless names narrowed it */
    for (int i = 0; i < allow->n; i++)
        if (cidr_within(c, &allow->v[i]))
            return 1;
    return 0;
}

int netpolicy_parse_request(const pico_config *cfg, json_t *v, char *allow_text,
                            char *deny_text, char *err, size_t errlen)
{
    json_t *x;
    pico_cidr_list sa, sd, ra, rd;
    char why[128];
    const char *key;
    int names;

    if (!json_is_object(v)) {
        snprintf(err, errlen,
                 "egress: must be an object with allow_cidrs "
                 "and/or deny_cidrs");
        return -1;
    }
    json_object_foreach(v, key, x)
    {
        if (strstr(key, "domains") != NULL &&
            strcmp(cfg->runtime, "kubernetes") == 0) {
            snprintf(err, errlen,
                     "egress.%.32s: domain lists are not available on this "
                     "server: a Kubernetes NetworkPolicy cannot enforce "
                     "names, only address ranges (allow_cidrs, deny_cidrs)",
                     key);
            return -1;
        }
        if (strcmp(key, "allow_cidrs") != 0 && strcmp(key, "deny_cidrs") != 0) {
            snprintf(err, errlen,
                     "egress.%.32s: unknown field (allowed: allow_cidrs, "
                     "deny_cidrs)",
                     key);
            return -1;
        }
    }
    if (request_list(json_object_get(v, "allow_cidrs"), "allow_cidrs", &ra,
                     allow_text, err, errlen) < 0 ||
        request_list(json_object_get(v, "deny_cidrs"), "deny_cidrs", &rd,
                     deny_text, err, errlen) < 0)
        return -1;
    /* config.c checked these */
    names = domain_list_check(cfg->egress_allow_domains, why, sizeof(why));
    if (cidr_list_parse(cfg->egress_allow_cidrs, &sa, why, sizeof(why)) < 0 ||
        cidr_list_parse(cfg->egress_deny_cidrs, &sd, why, sizeof(why)) < 0 ||
        names < 0) {
        snprintf(err, errlen, "egress: the server's policy is invalid");
        return -1;
    }
    for (int i = 0; i < ra.n; i++) {
        if (!server_allows(&sa, names, &ra.v[i])) {
            cidr_format(&ra.v[i], why, sizeof(why));
            snprintf(err, errlen,
                     "egress.allow_cidrs: %s is not inside the server's "
                     "allowed ranges",
                     why);
            return -1;
        }
    }
    for (int i = 0; i < rd.n && sd.n < PICO_CIDRS_MAX; i++)
        sd.v[sd.n++] = rd.v[i];
    if (ra.n == 0 && sa.n == 0 && names == 0)
        ra.v[ra.n++] = (pico_cidr){0, 0};
    else if (ra.n == 0)
        ra = sa;
    /* only names: they stay allowed */
    if (!(ra.n == 0 && names > 0) && !some_allowed(&ra, &sd, cfg)) {
        snprintf(err, errlen,
                 "egress: allows nothing (every allowed range is denied or "
                 "always blocked)");
        return -1;
    }
    return 0;
}
