/*
 * netpolicy.h - the network a session gets and the egress policy's
 * address lists: parsing and validation shared by the configuration, the
 * create request and the runtime drivers.
 *
 * "network": "none" (the default: the sandbox has only lo) or "egress"
 * (outbound connections under the configured policy). The policy is a
 * list of IPv4 ranges allowed (empty = everything) and a list denied;
 * some ranges are always blocked whatever the lists say (the sandbox NAT's
 * own network, loopback, link-local where cloud metadata lives,
 * multicast and reserved space). docs/configuration.md has the keys.
 */
#ifndef PICO_NETPOLICY_H
#define PICO_NETPOLICY_H

#include <stddef.h>
#include <stdint.h>

struct pico_config;
struct json_t;

#define PICO_NETWORK_MAX 7 /* "none" | "egress" */
#define PICO_CIDRS_MAX 64  /* ranges in one list */

typedef struct {
    uint32_t addr; /* host byte order, host bits cleared */
    int prefix;    /* 0..32 */
} pico_cidr;

typedef struct {
    pico_cidr v[PICO_CIDRS_MAX];
    int n;
} pico_cidr_list;

/* The ranges no sandbox ever reaches, NULL-terminated ("a.b.c.d/n"):
 * on the local runtime, and on Kubernetes (the cluster's private
 * networks too); netpolicy_blocked_list picks the configured runtime's. */
extern const char *const netpolicy_always_blocked[];
extern const char *const netpolicy_cluster_blocked[];
const char *const *netpolicy_blocked_list(const struct pico_config *cfg);

/* "a.b.c.d/n" or "a.b.c.d" (a /32) in s[0..n-1]; 0, or -1 when it is not
 * one, or has bits set past the prefix (so a typo is not silently
 * widened or narrowed). */
int cidr_parse(const char *s, size_t n, pico_cidr *out);
/* "a.b.c.d/n" into buf (at least 19 bytes). */
void cidr_format(const pico_cidr *c, char *buf, size_t len);
/* 1 when a lies wholly inside b. */
int cidr_within(const pico_cidr *a, const pico_cidr *b);
/* A list separated by blanks or commas; 0, or -1 with why naming the bad
 * entry. */
int cidr_list_parse(const char *text, pico_cidr_list *out, char *why,
                    size_t whylen);
#define PICO_DOMAINS_MAX 64 /* names in one list */
#define PICO_DOMAIN_MAX 253

/* 1 for a DNS name pico passes to its resolver: lowercase labels of
 * letters, digits and inner hyphens, 1-63 each, dot-separated, at most
 * 253 in all, at least two labels. */
int domain_valid(const char *s, size_t n);
/* Checks a blank- or comma-separated list of names; the number of names,
 * or -1 with why naming the bad one. */
int domain_list_check(const char *text, char *why, size_t whylen);

/* 1 when addr is inside an always-blocked range. */
int netpolicy_blocked(uint32_t addr);

/* A request's own lists ("egress": {"allow_cidrs": [...], "deny_cidrs":
 * [...]}) may only narrow the server's: at most this many ranges each,
 * kept in the session as "a.b.c.d/n,..." text. */
#define PICO_REQ_CIDRS_MAX 16
#define PICO_REQ_CIDRS_TEXT (PICO_REQ_CIDRS_MAX * 19)

/* Checks the request's "egress" object v against the configuration and
 * writes its lists as text into allow and deny (PICO_REQ_CIDRS_TEXT + 1
 * bytes each). Every allowed range must lie inside one the server allows,
 * and something must stay allowed. 0, or -1 with err (a 400's message). */
int netpolicy_parse_request(const struct pico_config *cfg, struct json_t *v,
                            char *allow, char *deny, char *err, size_t errlen);

/* 1 when network ("none" or "egress") is in the configured allowed set;
 * "none" always is. */
int netpolicy_network_allowed(const struct pico_config *cfg,
                              const char *network);
/* Checks network_allowed and the egress_* keys; 0, or -1 with why. */
int netpolicy_check_config(const struct pico_config *cfg, char *why,
                           size_t whylen);

#endif
