/*
 * flags.c - Go-style flag parsing for test-tunnel (see flags.h).
 *
 * Every flag is described once in the table below; the parser and the
 * usage text both read it, so they cannot drift apart.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"

enum flag_kind { FLAG_STRING, FLAG_BOOL, FLAG_SECONDS, FLAG_TRANSFER };

struct flag {
    const char *name;
    enum flag_kind kind;
    const char *def; /* default as shown in the usage text; NULL = none */
    const char *help;
};

static const struct flag flag_table[] = {
    {"api", FLAG_STRING, "http://localhost:8080", "pico-apiserver URL"},
    {"session", FLAG_STRING, NULL, "session ID (required)"},
    {"token", FLAG_STRING, "", "bearer token, when the server requires auth"},
    {"user", FLAG_STRING, "sandbox", "SSH user name"},
    {"password", FLAG_STRING, "sandbox", "SSH password"},
    {"cmd", FLAG_STRING, "echo 'Hello from sandbox'", "command to execute"},
    {"upload", FLAG_TRANSFER, NULL,
     "copy LOCAL:REMOTE into the sandbox over SFTP (repeatable)"},
    {"download", FLAG_TRANSFER, NULL,
     "copy REMOTE:LOCAL out of the sandbox over SFTP (repeatable)"},
    {"cacert", FLAG_STRING, NULL,
     "CA certificates (PEM) to trust for an https:// -api, instead of the "
     "system's"},
    {"stdio", FLAG_BOOL, NULL,
     "relay stdin/stdout through the tunnel (for ssh -o ProxyCommand)"},
    {"fdpass", FLAG_BOOL, NULL,
     "hand the tunnel to ssh itself (ProxyCommand with -o "
     "ProxyUseFdpass=yes; http:// -api only)"},
    {"port", FLAG_STRING, NULL,
     "a TCP port in the sandbox (1..65535) instead of its sshd; with -stdio "
     "or -listen"},
    {"listen", FLAG_STRING, NULL,
     "with -port: listen on ADDR:PORT and forward each connection (PORT 0: "
     "any free port, printed)"},
    {"timeout", FLAG_SECONDS, "30",
     "seconds allowed for connecting and each handshake (0 = no limit)"},
};

#define NFLAGS (sizeof(flag_table) / sizeof(flag_table[0]))

void flags_usage(void)
{
    size_t i;

    fprintf(stderr, "Usage of test-tunnel:\n");
    for (i = 0; i < NFLAGS; i++) {
        const struct flag *f = &flag_table[i];
        const char *arg = "";

        if (f->kind == FLAG_STRING)
            arg = " string";
        else if (f->kind == FLAG_SECONDS)
            arg = " seconds";
        else if (f->kind == FLAG_TRANSFER)
            arg = f->name[0] == 'u' ? " LOCAL:REMOTE" : " REMOTE:LOCAL";
        fprintf(stderr, "  -%s%s\n    \t%s", f->name, arg, f->help);
        if (f->def && f->kind == FLAG_STRING)
            fprintf(stderr, " (default \"%s\")", f->def);
        else if (f->def)
            fprintf(stderr, " (default %s)", f->def);
        fputc('\n', stderr);
    }
}

static const struct flag *flag_lookup(const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < NFLAGS; i++)
        if (strlen(flag_table[i].name) == len &&
            memcmp(flag_table[i].name, name, len) == 0)
            return &flag_table[i];
    return NULL;
}

/* Splits "A:B" at the first colon into a transfer; both sides non-empty. */
static int add_transfer(struct transfer **list, size_t *n, const char *spec,
                        int upload)
{
    const char *colon = strchr(spec, ':');
    struct transfer *grown, *t;

    if (colon == NULL || colon == spec || colon[1] == '\0')
        return -1;
    grown = realloc(*list, (*n + 1) * sizeof(**list));
    if (grown == NULL)
        return -1;
    *list = grown;
    t = &grown[*n];
    if (upload) {
        t->local = strndup(spec, (size_t)(colon - spec));
        t->remote = strdup(colon + 1);
    } else {
        t->remote = strndup(spec, (size_t)(colon - spec));
        t->local = strdup(colon + 1);
    }
    if (t->local == NULL || t->remote == NULL) {
        free(t->local);
        free(t->remote);
        return -1;
    }
    (*n)++;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "t") == 0 ||
        strcmp(v, "TRUE") == 0) {
        *out = 1;
        return 0;
    }
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "f") == 0 ||
        strcmp(v, "FALSE") == 0) {
        *out = 0;
        return 0;
    }
    return -1;
}

static int parse_seconds(const char *v, long *out)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0' || n < 0 || n > 86400)
        return -1;
    *out = n;
    return 0;
}

/* A sandbox port: decimal 1..65535, nothing else. */
static int parse_port(const char *v, int *out)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0' || v[0] < '1' || v[0] > '9' ||
        n < 1 || n > 65535)
        return -1;
    *out = (int)n;
    return 0;
}

/* Stores one flag's value; returns 0, or -1 when the value is invalid. */
static int flag_set(struct options *o, const struct flag *f, const char *v)
{
    const char *name = f->name;

    if (strcmp(name, "api") == 0)
        o->api = v;
    else if (strcmp(name, "session") == 0)
        o->session = v;
    else if (strcmp(name, "token") == 0)
        o->token = v;
    else if (strcmp(name, "user") == 0)
        o->user = v;
    else if (strcmp(name, "password") == 0)
        o->password = v;
    else if (strcmp(name, "cmd") == 0)
        o->cmd = v;
    else if (strcmp(name, "cacert") == 0)
        o->cacert = v;
    else if (strcmp(name, "upload") == 0)
        return add_transfer(&o->uploads, &o->nuploads, v, 1);
    else if (strcmp(name, "download") == 0)
        return add_transfer(&o->downloads, &o->ndownloads, v, 0);
    else if (strcmp(name, "stdio") == 0)
        return parse_bool(v, &o->stdio);
    else if (strcmp(name, "fdpass") == 0)
        return parse_bool(v, &o->fdpass);
    else if (strcmp(name, "timeout") == 0)
        return parse_seconds(v, &o->timeout);
    else if (strcmp(name, "port") == 0)
        return parse_port(v, &o->port);
    else if (strcmp(name, "listen") == 0)
        o->listen = v;
    return 0;
}

static void set_defaults(struct options *o)
{
    memset(o, 0, sizeof(*o));
    o->api = "http://localhost:8080";
    o->token = "";
    o->user = "sandbox";
    o->password = "sandbox";
    o->cmd = "echo 'Hello from sandbox'";
    o->timeout = 30;
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "%s%s\n", what, arg);
    flags_usage();
    return FLAGS_USAGE;
}

int flags_parse(struct options *o, int argc, char **argv)
{
    int i;

    set_defaults(o);
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *name, *eq, *value;
        const struct flag *f;
        size_t len;

        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0')
            break;
        name = arg + (arg[1] == '-' ? 2 : 1);
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        if ((len == 1 && name[0] == 'h') ||
            (len == 4 && strncmp(name, "help", 4) == 0)) {
            flags_usage();
            return FLAGS_HELP;
        }
        f = flag_lookup(name, len);
        if (f == NULL)
            return usage_error("flag provided but not defined: ", arg);
        if (eq)
            value = eq + 1;
        else if (f->kind == FLAG_BOOL)
            value = "true";
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return usage_error("flag needs an argument: ", arg);
        if (flag_set(o, f, value) < 0) {
            fprintf(stderr, "invalid value \"%s\" for flag -%s\n", value,
                    f->name);
            flags_usage();
            return FLAGS_USAGE;
        }
    }
    if (i < argc)
        return usage_error("unexpected argument: ", argv[i]);
    if (o->session == NULL || o->session[0] == '\0')
        return usage_error("Error: -session is required", "");
    if (o->stdio && o->fdpass)
        return usage_error("Error: -stdio and -fdpass exclude each other", "");
    if (o->listen && !o->port)
        return usage_error("Error: -listen needs -port", "");
    if (o->port && !o->stdio && !o->listen)
        return usage_error("Error: -port needs -stdio or -listen", "");
    if (o->listen && (o->stdio || o->fdpass))
        return usage_error("Error: -listen excludes -stdio and -fdpass", "");
    return FLAGS_OK;
}

static void free_transfers(struct transfer *list, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(list[i].local);
        free(list[i].remote);
    }
    free(list);
}

void flags_free(struct options *o)
{
    free_transfers(o->uploads, o->nuploads);
    free_transfers(o->downloads, o->ndownloads);
    o->uploads = o->downloads = NULL;
    o->nuploads = o->ndownloads = 0;
}
