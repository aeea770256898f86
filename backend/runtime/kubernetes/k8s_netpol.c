/*
 * k8s_netpol.c - a session's NetworkPolicy sandbox-<id>: the request's
 * "network" as the cluster enforces it (on a CNI that enforces
 * NetworkPolicy). It selects the session's pod alone and is Egress only;
 * the namespace-wide policy (deploy/k8s/base/networkpolicy.yaml) grants
 * no egress, and policies add up, so this one is all the pod may reach:
 *   none    egress []: nothing;
 *   egress  cluster DNS, and each allowed IPv4 range (the request's, else
 *           the configuration's, else everything) as an ipBlock whose
 *           except lists the blocked ranges inside it (the cluster's
 *           private networks, link-local, ...; egress_deny_cidrs; the
 *           request's deny_cidrs). With nothing narrowed, IPv6 too.
 * It is created before the pod, so the pod never runs unfiltered, and
 * the pod then owns it (ownerReference, as for the Secret).
 */
#include <stdio.h>
#include <string.h>
#include "core/config.h"
#include "core/netpolicy.h"
#include "runtime/kubernetes/k8s.h"

void netpol_name(const char *id, char *out, size_t outlen)
{
    snprintf(out, outlen, "sandbox-%s", id);
}

static void add_list(pico_cidr_list *to, const char *text)
{
    pico_cidr_list l;
    char why[128];

    /* config.c and the request parser checked these lists */
    if (cidr_list_parse(text, &l, why, sizeof(why)) < 0)
        return;
    for (int i = 0; i < l.n && to->n < PICO_CIDRS_MAX; i++)
        to->v[to->n++] = l.v[i];
}

/* The blocked ranges and both deny lists, each a list of its own (each
 * fits one: at most 64 configured, 16 requested). */
#define DENY_LISTS 3
static void deny_lists(const runtime *rt, const session *s,
                       pico_cidr_list out[DENY_LISTS])
{
    for (int i = 0; i < DENY_LISTS; i++)
        out[i].n = 0;
    for (int i = 0; netpolicy_cluster_blocked[i] != NULL; i++)
        add_list(&out[0], netpolicy_cluster_blocked[i]);
    add_list(&out[1], rt->egress_deny);
    add_list(&out[2], s->egress_deny);
}

/* One ipBlock rule for allowed range a, or NULL when a is wholly denied.
 * Ranges are nested or apart, so what lies strictly inside a is its
 * except list (the API refuses an except not inside the cidr). */
static json_t *ip_rule(const pico_cidr *a, const pico_cidr_list deny[])
{
    json_t *except = json_array();
    char text[20];

    for (int l = 0; l < DENY_LISTS; l++) {
        for (int i = 0; i < deny[l].n; i++) {
            const pico_cidr *d = &deny[l].v[i];

            if (cidr_within(a, d)) {
                json_decref(except);
                return NULL;
            }
            if (cidr_within(d, a)) {
                cidr_format(d, text, sizeof(text));
                json_array_append_new(except, json_string(text));
            }
        }
    }
    cidr_format(a, text, sizeof(text));
    return json_pack("{s:[{s:{s:s, s:o}}]}", "to", "ipBlock", "cidr", text,
                     "except", except);
}

/* The IPv6 internet: all but unique local (dual-stack pod and service
 * networks, fd00:ec2::254), link-local and IPv4-mapped addresses. */
static json_t *ipv6_rule(void)
{
    return json_pack("{s:[{s:{s:s, s:[s,s,s]}}]}", "to", "ipBlock", "cidr",
                     "::/0", "except", "fc00::/7", "fe80::/10",
                     "::ffff:0:0/96");
}

static json_t *dns_rule(void)
{
    return json_pack(
        "{s:[{s:{s:{s:s}}, s:{s:{s:s}}}], "
        "s:[{s:s, s:i}, {s:s, s:i}]}",
        "to", "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name",
        "kube-system", "podSelector", "matchLabels", "k8s-app", "kube-dns",
        "ports", "protocol", "UDP", "port", 53, "protocol", "TCP", "port", 53);
}

/* The egress rules of an "egress" session. Some range stays allowed:
 * netpolicy.c refused lists that allow nothing, at start and at create,
 * against the same blocked ranges (netpolicy_cluster_blocked). */
static json_t *egress_rules(const runtime *rt, const session *s)
{
    pico_cidr_list allow = {.n = 0}, deny[DENY_LISTS];
    json_t *rules = json_array();
    int everything;

    add_list(&allow, s->egress_allow[0] ? s->egress_allow : rt->egress_allow);
    everything =
        allow.n == 0 && s->egress_deny[0] == '\0' && rt->egress_deny[0] == '\0';
    if (allow.n == 0)
        allow.v[allow.n++] = (pico_cidr){0, 0};
    deny_lists(rt, s, deny);
    json_array_append_new(rules, dns_rule());
    for (int i = 0; i < allow.n; i++) {
        json_t *r = ip_rule(&allow.v[i], deny);

        if (r != NULL)
            json_array_append_new(rules, r);
    }
    if (everything)
        json_array_append_new(rules, ipv6_rule());
    return rules;
}

json_t *netpol_object(const runtime *rt, const session *s)
{
    char name[PICO_NAME_MAX + 16];
    int egress = strcmp(s->network, "egress") == 0;
    json_t *o;

    netpol_name(s->id, name, sizeof(name));
    o = json_pack("{s:s, s:s, s:{s:s, s:s, s:o}, s:{s:{s:{s:s}}, s:[s], "
                  "s:o}}",
                  "apiVersion", "networking.k8s.io/v1", "kind", "NetworkPolicy",
                  "metadata", "name", name, "namespace", rt->ns, "labels",
                  object_labels(s), "spec", "podSelector", "matchLabels",
                  "session-id", s->id, "policyTypes", "Egress", "egress",
                  egress ? egress_rules(rt, s) : json_array());
    return o;
}

/* Makes the Pod the policy's owner, so the garbage collector removes it
 * with the Pod should pico never get to. */
int own_netpol(runtime *rt, const session *s, const char *pod_uid,
               double deadline, char *err, size_t errlen)
{
    char name[PICO_NAME_MAX + 16];

    netpol_name(s->id, name, sizeof(name));
    return own_object(rt, "networkpolicies", name, s, pod_uid, deadline, err,
                      errlen);
}
