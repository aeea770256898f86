/*
 * config.c - reads the backend's configuration file (format in config.h).
 *
 * Every key is described once in the table below: its type, where it goes
 * in pico_config and which values are allowed. An unknown key or a bad
 * value stops the backend with "file:line: ..." so a typo never runs with
 * a silent default.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/netpolicy.h"
#include "core/session.h"
#include "core/util.h"

typedef enum { KEY_STR, KEY_INT, KEY_LL, KEY_BOOL } key_type;

typedef struct {
    const char *name;
    key_type type;
    size_t offset;
    size_t size;        /* buffer size for KEY_STR */
    long long min, max; /* range for numbers */
} config_key;

#define STR(k)                                                                 \
    {                                                                          \
#k, KEY_STR, offsetof(pico_config, k), sizeof(((pico_config *)0)->k),  \
            0, 0                                                               \
    }
#define INT(k, lo, hi)                                                         \
    {                                                                          \
#k, KEY_INT, offsetof(pico_config, k), 0, lo, hi                       \
    }
#define LL(k, lo, hi)                                                          \
    {                                                                          \
#k, KEY_LL, offsetof(pico_config, k), 0, lo, hi                        \
    }
#define BOOL(k)                                                                \
    {                                                                          \
#k, KEY_BOOL, offsetof(pico_config, k), 0, 0, 1                        \
    }

static const config_key keys[] = {
    STR(listen),
    STR(listen_group),
    STR(redis),
    STR(state_dir),
    STR(runtime),
    BOOL(auth),
    INT(threads, 1, 4096),
    STR(node_name),
    LL(ttl_default, 1, 31536000),
    LL(ttl_max, 1, 31536000),
    LL(lifetime_max, 1, 315360000),
    STR(default_image),
    INT(max_sessions, 1, 1000000),
    INT(memory_mb_default, PICO_MEMORY_MB_MIN, 1048576),
    INT(memory_mb_max, PICO_MEMORY_MB_MIN, 1048576),
    INT(cpu_millicores_default, PICO_CPU_MILLICORES_MIN, 1024000),
    INT(cpu_millicores_max, PICO_CPU_MILLICORES_MIN, 1024000),
    INT(pids_default, PICO_PIDS_MIN, 4194304),
    INT(pids_max, PICO_PIDS_MIN, 4194304),
    INT(disk_mb_default, 0, 16777216),
    INT(disk_mb_max, PICO_DISK_MB_MIN, 16777216),
    INT(reaper_interval_ms, 10, 60000),
    LL(idle_timeout_default, 0, 31536000),
    LL(idle_timeout_max, 0, 31536000),
    STR(idle_action),
    STR(images_dir),
    STR(runc),
    STR(init_binary),
    STR(socket_group),
    INT(tmp_size_mb, 1, 1048576),
    INT(ready_timeout_ms, 100, 600000),
    INT(warm_pool, 0, 1000),
    STR(mkfs_ext4),
    STR(runsc),
    STR(isolation),
    STR(isolation_allowed),
    STR(network_allowed),
    STR(egress_netns),
    STR(egress_dns),
    STR(egress_allow_cidrs),
    STR(egress_deny_cidrs),
    STR(egress_allow_domains),
    STR(egress_deny_domains),
    STR(dnsmasq),
    STR(slirp4netns),
    STR(nft),
    STR(k8s_api),
    STR(k8s_kubeconfig),
    STR(k8s_namespace),
    STR(k8s_image_prefix),
    INT(k8s_ready_timeout_s, 1, 3600),
    STR(k8s_ca_file),
    STR(k8s_token_file),
    STR(k8s_runtime_class),
};

void config_defaults(pico_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    copy_str(cfg->listen, sizeof(cfg->listen), "127.0.0.1:8081");
    copy_str(cfg->redis, sizeof(cfg->redis), "127.0.0.1:6379");
    copy_str(cfg->state_dir, sizeof(cfg->state_dir), "/var/lib/pico");
    copy_str(cfg->runtime, sizeof(cfg->runtime), "local");
    cfg->auth = 0;
    cfg->threads = 64;
    /* The host name (a pod's name on Kubernetes) tells replicas apart in
     * records and logs without a config file per replica. */
    if (gethostname(cfg->node_name, sizeof(cfg->node_name)) < 0 ||
        cfg->node_name[0] == '\0')
        copy_str(cfg->node_name, sizeof(cfg->node_name), "pico");
    cfg->node_name[sizeof(cfg->node_name) - 1] = '\0';
    cfg->ttl_default = 3600;
    cfg->ttl_max = 86400;
    cfg->lifetime_max = 604800;
    copy_str(cfg->default_image, sizeof(cfg->default_image), "sandbox:latest");
    cfg->max_sessions = 500;
    cfg->memory_mb_default = 512;
    cfg->memory_mb_max = 4096;
    cfg->cpu_millicores_default = 1000;
    cfg->cpu_millicores_max = 2000;
    cfg->pids_default = 256;
    cfg->pids_max = 4096;
    cfg->disk_mb_default = 0;
    cfg->disk_mb_max = 10240;
    cfg->reaper_interval_ms = 200;
    cfg->idle_timeout_max = 86400;
    copy_str(cfg->idle_action, sizeof(cfg->idle_action), "pause");
    copy_str(cfg->images_dir, sizeof(cfg->images_dir), "/var/lib/pico/images");
    copy_str(cfg->runc, sizeof(cfg->runc), "/usr/sbin/runc");
    copy_str(cfg->init_binary, sizeof(cfg->init_binary),
             "/usr/lib/pico/pico-init");
    cfg->tmp_size_mb = 256;
    cfg->ready_timeout_ms = 5000;
    cfg->warm_pool = 0;
    copy_str(cfg->mkfs_ext4, sizeof(cfg->mkfs_ext4), "/usr/sbin/mkfs.ext4");
    copy_str(cfg->runsc, sizeof(cfg->runsc), "/usr/bin/runsc");
    copy_str(cfg->isolation, sizeof(cfg->isolation), "runc");
    copy_str(cfg->slirp4netns, sizeof(cfg->slirp4netns),
             "/usr/bin/slirp4netns");
    copy_str(cfg->nft, sizeof(cfg->nft), "/usr/sbin/nft");
    copy_str(cfg->dnsmasq, sizeof(cfg->dnsmasq), "/usr/sbin/dnsmasq");
    /* empty = only the default */
    copy_str(cfg->k8s_namespace, sizeof(cfg->k8s_namespace), "pico-sandboxes");
    cfg->k8s_ready_timeout_s = 120;
}

static int tier_known(const char *t, size_t n)
{
    return (n == 4 && !strncmp(t, "runc", 4)) ||
           (n == 6 && !strncmp(t, "gvisor", 6));
}

int config_isolation_allowed(const pico_config *cfg, const char *tier)
{
    const char *p = cfg->isolation_allowed;
    size_t len = strlen(tier);

    if (!strcmp(tier, cfg->isolation))
        return 1;
    while (*p) {
        size_t n;
        p += strspn(p, " ,\t");
        n = strcspn(p, " ,\t");
        if (n == len && n > 0 && !strncmp(p, tier, n))
            return 1;
        p += n;
    }
    return 0;
}

/* The default tier and every allowed one are tiers this backend has; on
 * Kubernetes only the default until runtime classes are configured. */
static int check_isolation(const pico_config *cfg, char *why, size_t whylen)
{
    const char *p = cfg->isolation_allowed;

    if (!tier_known(cfg->isolation, strlen(cfg->isolation))) {
        snprintf(why, whylen, "isolation: must be runc or gvisor");
        return -1;
    }
    if (strcmp(cfg->runtime, "kubernetes") == 0 &&
        strcmp(cfg->isolation, "runc") != 0) {
        snprintf(why, whylen,
                 "isolation: the kubernetes runtime runs the cluster's default "
                 "runtime only (no pod runtime class is configurable yet)");
        return -1;
    }
    while (*p) {
        size_t n;
        p += strspn(p, " ,\t");
        n = strcspn(p, " ,\t");
        if (n > 0 && !tier_known(p, n)) {
            snprintf(why, whylen,
                     "isolation_allowed: %.*s is not a tier (runc, gvisor)",
                     (int)(n > 32 ? 32 : n), p);
            return -1;
        }
        p += n;
    }
    return 0;
}

/* Splits one line into key and value. Handles a double-quoted value with
 * \" and \\ escapes. Returns 0 (key may be empty for blank lines) or -1
 * with a message. The line is modified in place. */
static int split_line(char *line, char **key, char **value, const char **why)
{
    char *p = line, *v, *out;

    while (*p == ' ' || *p == '\t')
        p++;
    *key = p;
    *value = NULL;
    if (*p == '\0' || *p == '#') {
        **key = '\0';
        return 0;
    }
    while (*p && *p != ' ' && *p != '\t')
        p++;
    if (*p)
        *p++ = '\0';
    while (*p == ' ' || *p == '\t')
        p++;
    v = p;
    if (*v == '"') {
        out = v;
        p = v + 1;
        while (*p && *p != '"') {
            if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
                p++;
            *out++ = *p++;
        }
        if (*p != '"') {
            *why = "unterminated quoted value";
            return -1;
        }
        p++;
        *out = '\0';
    } else {
        while (*p && *p != ' ' && *p != '\t' && *p != '#')
            p++;
        if (*p)
            *p++ = '\0';
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0' && *p != '#') {
        *why = "unexpected text after the value (quote values with spaces)";
        return -1;
    }
    *value = v;
    return 0;
}

static int set_key(pico_config *cfg, const config_key *k, const char *value,
                   char *why, size_t whylen)
{
    char *base = (char *)cfg + k->offset;
    long long n;

    switch (k->type) {
    case KEY_STR:
        if (strlen(value) >= k->size) {
            snprintf(why, whylen, "%s: value longer than %zu bytes", k->name,
                     k->size - 1);
            return -1;
        }
        copy_str(base, k->size, value);
        return 0;
    case KEY_BOOL:
        if (!strcmp(value, "on") || !strcmp(value, "yes") ||
            !strcmp(value, "true") || !strcmp(value, "1"))
            *(int *)base = 1;
        else if (!strcmp(value, "off") || !strcmp(value, "no") ||
                 !strcmp(value, "false") || !strcmp(value, "0"))
            *(int *)base = 0;
        else {
            snprintf(why, whylen, "%s: must be on or off, not \"%.64s\"",
                     k->name, value);
            return -1;
        }
        return 0;
    case KEY_INT:
    case KEY_LL:
        if (parse_ll(value, &n) < 0 || n < k->min || n > k->max) {
            snprintf(why, whylen,
                     "%s: must be an integer between %lld and %lld, not "
                     "\"%.64s\"",
                     k->name, k->min, k->max, value);
            return -1;
        }
        if (k->type == KEY_INT)
            *(int *)base = (int)n;
        else
            *(long long *)base = n;
        return 0;
    }
    return -1;
}

static int valid_address(const char *a)
{
    const char *colon;
    long long port;

    if (!strncmp(a, "unix:", 5))
        return a[5] == '/';
    colon = strrchr(a, ':');
    if (colon == NULL || colon == a)
        return 0;
    return parse_ll(colon + 1, &port) == 0 && port >= 1 && port <= 65535;
}

/* Checks between keys, once the whole file is read. */
static int check_config(const pico_config *cfg, char *why, size_t whylen)
{
    if (!valid_address(cfg->listen)) {
        snprintf(why, whylen,
                 "listen: must be unix:/absolute/path or host:port");
        return -1;
    }
    if (!valid_address(cfg->redis)) {
        snprintf(why, whylen,
                 "redis: must be unix:/absolute/path or host:port");
        return -1;
    }
    if (strcmp(cfg->runtime, "local") != 0 &&
        strcmp(cfg->runtime, "kubernetes") != 0) {
        snprintf(why, whylen, "runtime: must be local or kubernetes");
        return -1;
    }
    if (cfg->state_dir[0] != '/') {
        snprintf(why, whylen, "state_dir: must be an absolute path");
        return -1;
    }
    if (cfg->node_name[0] == '\0') {
        snprintf(why, whylen, "node_name: must not be empty");
        return -1;
    }
    if (cfg->ttl_default > cfg->ttl_max) {
        snprintf(why, whylen, "ttl_default: must not exceed ttl_max");
        return -1;
    }
    if (cfg->ttl_max > cfg->lifetime_max) {
        snprintf(why, whylen, "ttl_max: must not exceed lifetime_max");
        return -1;
    }
    if (cfg->idle_timeout_default > cfg->idle_timeout_max) {
        snprintf(why, whylen,
                 "idle_timeout_default: must not exceed idle_timeout_max");
        return -1;
    }
    if (strcmp(cfg->idle_action, "pause") != 0 &&
        strcmp(cfg->idle_action, "delete") != 0) {
        snprintf(why, whylen, "idle_action: must be pause or delete");
        return -1;
    }
    if (cfg->memory_mb_default > cfg->memory_mb_max ||
        cfg->cpu_millicores_default > cfg->cpu_millicores_max ||
        cfg->pids_default > cfg->pids_max ||
        cfg->disk_mb_default > cfg->disk_mb_max) {
        snprintf(why, whylen,
                 "resource defaults must not exceed their *_max keys");
        return -1;
    }
    if (check_isolation(cfg, why, whylen) < 0 ||
        netpolicy_check_config(cfg, why, whylen) < 0)
        return -1;
    if (cfg->disk_mb_default != 0 && cfg->disk_mb_default < PICO_DISK_MB_MIN) {
        snprintf(why, whylen,
                 "disk_mb_default: must be 0 (no quota) or at least %d",
                 PICO_DISK_MB_MIN);
        return -1;
    }
    return 0;
}

int config_parse(pico_config *cfg, const char *name, const char *text,
                 size_t len, char *err, size_t errlen)
{
    char line[4096], why[512];
    size_t pos = 0, n, i;
    int lineno = 0;

    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        char *key, *value;
        const char *msg = NULL;
        const config_key *k = NULL;

        n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        lineno++;
        if (n >= sizeof(line)) {
            snprintf(err, errlen, "%s:%d: line too long", name, lineno);
            return -1;
        }
        if (memchr(text + pos, '\0', n) != NULL) {
            snprintf(err, errlen, "%s:%d: NUL byte in line", name, lineno);
            return -1;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos += n + (nl ? 1 : 0);
        if (n > 0 && line[n - 1] == '\r')
            line[n - 1] = '\0';
        if (split_line(line, &key, &value, &msg) < 0) {
            snprintf(err, errlen, "%s:%d: %s", name, lineno, msg);
            return -1;
        }
        if (*key == '\0')
            continue;
        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (!strcmp(keys[i].name, key))
                k = &keys[i];
        if (k == NULL) {
            snprintf(err, errlen, "%s:%d: unknown key \"%.64s\"", name, lineno,
                     key);
            return -1;
        }
        if (value == NULL) {
            snprintf(err, errlen, "%s:%d: %s: missing value", name, lineno,
                     key);
            return -1;
        }
        if (set_key(cfg, k, value, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s:%d: %s", name, lineno, why);
            return -1;
        }
    }
    if (check_config(cfg, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", name, why);
        return -1;
    }
    return 0;
}

/* Reads all of f (at most about 1 MiB) into *text, malloc'd (NULL when
 * the file is empty). */
static int read_all(FILE *f, const char *path, char **text, size_t *len,
                    char *err, size_t errlen)
{
    size_t cap = 0;

    *text = NULL;
    *len = 0;
    for (;;) {
        size_t got;
        if (cap - *len < 4096) {
            char *t;
            if (cap > (1u << 20)) {
                snprintf(err, errlen, "%s: file too large", path);
                return -1;
            }
            cap = cap ? cap * 2 : 8192;
            t = realloc(*text, cap);
            if (t == NULL) {
                snprintf(err, errlen, "%s: out of memory", path);
                return -1;
            }
            *text = t;
        }
        got = fread(*text + *len, 1, cap - *len, f);
        *len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        return -1;
    }
    return 0;
}

int config_load(pico_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *text;
    size_t len;
    int rc;

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    rc = read_all(f, path, &text, &len, err, errlen);
    (void)fclose(f); /* read only: nothing to flush, nothing to report */
    if (rc == 0)
        rc = config_parse(cfg, path, text ? text : "", len, err, errlen);
    free(text);
    return rc;
}
