/*
 * k8s_config.c - where the Kubernetes API server is and which credentials
 * to show it (see k8s_client.h).
 *
 * Three sources, first match wins:
 *   1. k8s_api in pico.conf: that URL, with k8s_token_file and k8s_ca_file
 *      when set (tests, `kubectl proxy`, out-of-cluster setups);
 *   2. in-cluster: KUBERNETES_SERVICE_HOST/PORT plus the pod's service
 *      account token and CA under /var/run/secrets/kubernetes.io;
 *   3. k8s_kubeconfig: a kubeconfig file's current context.
 *
 * The kubeconfig reader understands the block-style YAML kubectl writes,
 * not YAML in general: the fields it reads are listed in
 * docs/kubernetes.md. Exec and auth-provider plugins are not supported
 * (pico never runs programs named by a file).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/config.h"
#include "runtime/kubernetes/k8s_client.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KC_ITEMS 32
#define KC_FIELDS 24
#define KC_LINE 65536

static int copy_to(char *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);

    if (n >= dstlen)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

/* c->server from an http:// or https:// URL with a host; request paths
 * are appended to it, so it keeps no trailing slash. */
static int set_server(k8s_conn *c, const char *url)
{
    size_t scheme = 0, n;

    if (strncmp(url, "https://", 8) == 0)
        scheme = 8;
    else if (strncmp(url, "http://", 7) == 0)
        scheme = 7;
    if (scheme == 0 || copy_to(c->server, sizeof(c->server), url) < 0)
        return -1;
    n = strlen(c->server);
    while (n > scheme && c->server[n - 1] == '/')
        c->server[--n] = '\0';
    if (n == scheme) {
        c->server[0] = '\0';
        return -1;
    }
    return 0;
}

static int from_api_url(k8s_conn *c, const pico_config *cfg, char *err,
                        size_t errlen)
{
    if (set_server(c, cfg->k8s_api) < 0) {
        snprintf(err, errlen, "k8s_api must be an http:// or https:// URL");
        return -1;
    }
    copy_to(c->token_file, sizeof(c->token_file), cfg->k8s_token_file);
    copy_to(c->ca_file, sizeof(c->ca_file), cfg->k8s_ca_file);
    snprintf(c->source, sizeof(c->source), "k8s_api");
    return 0;
}

/* host: KUBERNETES_SERVICE_HOST, not empty */
static int from_cluster(k8s_conn *c, const pico_config *cfg, const char *host,
                        char *err, size_t errlen)
{
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    size_t i;

    if (port == NULL || port[0] == '\0')
        port = "443";
    for (i = 0; host[i]; i++) {
        if (!isxdigit((unsigned char)host[i]) && !strchr(".:-", host[i]) &&
            !isalpha((unsigned char)host[i])) {
            snprintf(err, errlen, "KUBERNETES_SERVICE_HOST is not a host");
            return -1;
        }
    }
    snprintf(c->server, sizeof(c->server),
             strchr(host, ':') ? "https://[%s]:%.8s" : "https://%s:%.8s", host,
             port);
    copy_to(c->token_file, sizeof(c->token_file),
            cfg->k8s_token_file[0] ? cfg->k8s_token_file : SA_DIR "/token");
    copy_to(c->ca_file, sizeof(c->ca_file),
            cfg->k8s_ca_file[0] ? cfg->k8s_ca_file : SA_DIR "/ca.crt");
    snprintf(c->source, sizeof(c->source), "in-cluster");
    return 0;
}

int k8s_conn_init(k8s_conn *c, const pico_config *cfg, char *err, size_t errlen)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");

    memset(c, 0, sizeof(*c));
    if (cfg->k8s_api[0])
        return from_api_url(c, cfg, err, errlen);
    if (host != NULL && host[0])
        return from_cluster(c, cfg, host, err, errlen);
    if (cfg->k8s_kubeconfig[0]) {
        if (k8s_kubeconfig_load(c, cfg->k8s_kubeconfig, err, errlen) < 0)
            return -1;
        if (cfg->k8s_token_file[0])
            copy_to(c->token_file, sizeof(c->token_file), cfg->k8s_token_file);
        if (cfg->k8s_ca_file[0])
            copy_to(c->ca_file, sizeof(c->ca_file), cfg->k8s_ca_file);
        return 0;
    }
    snprintf(err, errlen,
             "runtime kubernetes: set k8s_api or k8s_kubeconfig, or run "
             "in a pod (no KUBERNETES_SERVICE_HOST here)");
    return -1;
}

void k8s_conn_free(k8s_conn *c)
{
    if (c->token)
        memset(c->token, 0, strlen(c->token));
    if (c->key_pem)
        memset(c->key_pem, 0, c->key_len);
    free(c->token);
    free(c->ca_pem);
    free(c->cert_pem);
    free(c->key_pem);
    memset(c, 0, sizeof(*c));
}

/* ---- kubeconfig ------------------------------------------------------ */

/* One entry of clusters:, contexts: or users:. Nested keys (under
 * "cluster:", "context:", "user:") are flattened: the fields pico reads
 * have distinct names. */
typedef struct {
    char *name;
    char *key[KC_FIELDS];
    char *val[KC_FIELDS];
    int n;
} kc_item;

typedef struct {
    kc_item items[3][KC_ITEMS]; /* clusters, contexts, users */
    int count[3];
    char *current;
} kubeconfig;

static const char *kc_get(const kc_item *it, const char *key)
{
    int i;

    for (i = 0; i < it->n; i++)
        if (strcmp(it->key[i], key) == 0)
            return it->val[i];
    return NULL;
}

static const kc_item *kc_find(const kubeconfig *kc, int section,
                              const char *name)
{
    int i;

    for (i = 0; name != NULL && i < kc->count[section]; i++)
        if (kc->items[section][i].name &&
            strcmp(kc->items[section][i].name, name) == 0)
            return &kc->items[section][i];
    return NULL;
}

static void kc_free(kubeconfig *kc)
{
    int s, i, j;

    for (s = 0; s < 3; s++) {
        for (i = 0; i < kc->count[s]; i++) {
            kc_item *it = &kc->items[s][i];

            free(it->name);
            for (j = 0; j < it->n; j++) {
                free(it->key[j]);
                free(it->val[j]);
            }
        }
    }
    free(kc->current);
    free(kc);
}

/* A scalar: trims blanks, drops matching quotes and trailing comments. */
static char *kc_scalar(char *v)
{
    size_t n;

    while (*v == ' ' || *v == '\t')
        v++;
    v[strcspn(v, "\r\n")] = '\0';
    if (*v == '"' || *v == '\'') {
        char *end = strrchr(v + 1, *v);

        if (end != NULL) {
            *end = '\0';
            return v + 1;
        }
    }
    if (strstr(v, " #"))
        *strstr(v, " #") = '\0';
    n = strlen(v);
    while (n > 0 && strchr(" \t\r\n", v[n - 1]) != NULL)
        v[--n] = '\0';
    return v;
}

/* Adds "key: value" found at `indent` to the item being read. */
static void kc_field(kubeconfig *kc, int section, int item_indent, int indent,
                     char *key, char *val)
{
    kc_item *it;

    if (section < 0 || kc->count[section] == 0)
        return;
    it = &kc->items[section][kc->count[section] - 1];
    if (strcmp(key, "name") == 0 && indent == item_indent) {
        free(it->name);
        it->name = strdup(val);
        return;
    }
    if (val[0] == '\0' || it->n == KC_FIELDS)
        return;
    it->key[it->n] = strdup(key);
    it->val[it->n] = strdup(val);
    if (it->key[it->n] && it->val[it->n])
        it->n++;
}

static int kc_parse(kubeconfig *kc, FILE *f)
{
    static const char *sections[3] = {"clusters", "contexts", "users"};
    char *line = malloc(KC_LINE);
    int section = -1, item_indent = -1, list_indent = -1, nested = -1;

    if (line == NULL)
        return -1;
    while (fgets(line, KC_LINE, f)) {
        char *p = line, *colon, *val;
        int indent = 0;

        while (*p == ' ') {
            p++;
            indent++;
        }
        if (*p == '#' || *p == '\n' || *p == '\0' || *p == '\r')
            continue;
        if (indent == 0 && *p != '-') {
            int s;

            section = -1;
            list_indent = nested = -1;
            for (s = 0; s < 3; s++)
                if (strncmp(p, sections[s], strlen(sections[s])) == 0 &&
                    p[strlen(sections[s])] == ':')
                    section = s;
            if (strncmp(p, "current-context:", 16) == 0) {
                free(kc->current);
                kc->current = strdup(kc_scalar(p + 16));
            }
            continue;
        }
        /* A list inside an item (minikube's extensions, an exec plugin's
         * args) holds nothing pico reads: skipped to its end, its items
         * are not the section's. */
        if (nested >= 0 &&
            (indent > nested || (indent == nested && *p == '-' && p[1] == ' ')))
            continue;
        nested = -1;
        if (*p == '-' && p[1] == ' ' && section >= 0) {
            if (list_indent < 0)
                list_indent = indent;
            if (indent != list_indent) {
                nested = indent;
                continue;
            }
            /* A new list item; its own keys sit two columns right. */
            if (kc->count[section] == KC_ITEMS) {
                section = -1;
                continue;
            }
            kc->count[section]++;
            p += 2;
            indent += 2;
            item_indent = indent;
            while (*p == ' ') {
                p++;
                indent++;
            }
        }
        colon = strchr(p, ':');
        if (colon == NULL)
            continue;
        *colon = '\0';
        val = kc_scalar(colon + 1);
        kc_field(kc, section, item_indent, indent, kc_scalar(p), val);
    }
    free(line);
    return 0;
}

/* The file named by field `key` of `it`, if any, into out. A path in a
 * kubeconfig is relative to the file's folder. One too long for out is an
 * error: cut short, it would name another file. */
static int kc_file(char *out, size_t outlen, const kc_item *it, const char *key,
                   const char *kcpath, char *err, size_t errlen)
{
    const char *p = kc_get(it, key), *slash = strrchr(kcpath, '/');
    int n;

    if (p == NULL)
        return 0;
    if (p[0] == '/' || slash == NULL)
        n = snprintf(out, outlen, "%s", p);
    else
        n = snprintf(out, outlen, "%.*s/%s", (int)(slash - kcpath), kcpath, p);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        snprintf(err, errlen, "kubeconfig %s: %s is too long", kcpath, key);
        return -1;
    }
    return 0;
}

static int kc_data(const char *b64, char **out, size_t *outlen,
                   const char *what, char *err, size_t errlen)
{
    unsigned char *d = k8s_b64_decode(b64, outlen);

    if (d == NULL) {
        snprintf(err, errlen, "kubeconfig: %s is not valid base64", what);
        return -1;
    }
    *out = (char *)d;
    return 0;
}

static int kc_apply(k8s_conn *c, const kubeconfig *kc, const char *path,
                    char *err, size_t errlen)
{
    const kc_item *ctx = kc_find(kc, 1, kc->current);
    const kc_item *cl, *user;
    const char *v;

    if (ctx == NULL) {
        snprintf(err, errlen, "kubeconfig %s: current-context %s not found",
                 path, kc->current ? kc->current : "(unset)");
        return -1;
    }
    cl = kc_find(kc, 0, kc_get(ctx, "cluster"));
    user = kc_find(kc, 2, kc_get(ctx, "user"));
    v = cl ? kc_get(cl, "server") : NULL;
    if (v == NULL || set_server(c, v) < 0) {
        snprintf(err, errlen,
                 "kubeconfig %s: context %s has no cluster "
                 "with an http(s) server",
                 path, ctx->name);
        return -1;
    }
    if (kc_file(c->ca_file, sizeof(c->ca_file), cl, "certificate-authority",
                path, err, errlen) < 0)
        return -1;
    if ((v = kc_get(cl, "certificate-authority-data")) != NULL &&
        kc_data(v, &c->ca_pem, &c->ca_len, "certificate-authority-data", err,
                errlen) < 0)
        return -1;
    v = kc_get(cl, "insecure-skip-tls-verify");
    c->insecure = v != NULL && strcmp(v, "true") == 0;
    if (user == NULL)
        return 0;
    if ((v = kc_get(user, "token")) != NULL && (c->token = strdup(v)) == NULL)
        return -1;
    if (kc_file(c->token_file, sizeof(c->token_file), user, "tokenFile", path,
                err, errlen) < 0 ||
        kc_file(c->cert_file, sizeof(c->cert_file), user, "client-certificate",
                path, err, errlen) < 0 ||
        kc_file(c->key_file, sizeof(c->key_file), user, "client-key", path, err,
                errlen) < 0)
        return -1;
    if ((v = kc_get(user, "client-certificate-data")) != NULL &&
        kc_data(v, &c->cert_pem, &c->cert_len, "client-certificate-data", err,
                errlen) < 0)
        return -1;
    if ((v = kc_get(user, "client-key-data")) != NULL &&
        kc_data(v, &c->key_pem, &c->key_len, "client-key-data", err, errlen) <
            0)
        return -1;
    return 0;
}

/* Parses the kubeconfig f (read from path) into c. */
static int kc_load(k8s_conn *c, FILE *f, const char *path, char *err,
                   size_t errlen)
{
    kubeconfig *kc = calloc(1, sizeof(*kc));
    int rc;

    if (kc == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rc = kc_parse(kc, f);
    if (rc == 0)
        rc = kc_apply(c, kc, path, err, errlen);
    else
        snprintf(err, errlen, "out of memory");
    kc_free(kc);
    snprintf(c->source, sizeof(c->source), "kubeconfig");
    return rc;
}

int k8s_kubeconfig_load(k8s_conn *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    int rc;

    if (f == NULL) {
        snprintf(err, errlen, "cannot open kubeconfig %s", path);
        return -1;
    }
    rc = kc_load(c, f, path, err, errlen);
    (void)fclose(f); /* read only: nothing to flush */
    return rc;
}

int k8s_kubeconfig_parse_buffer(k8s_conn *c, const char *path, const char *text,
                                size_t len, char *err, size_t errlen)
{
    FILE *f = fmemopen((void *)text, len, "r");
    int rc;

    if (f == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rc = kc_load(c, f, path, err, errlen);
    (void)fclose(f);
    return rc;
}
