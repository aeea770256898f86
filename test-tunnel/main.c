/*
 * main.c - test-tunnel: checks that a pico session is reachable end to end.
 *
 * The flow the user's guide describes: TCP to the API, CONNECT to the
 * session's tunnel, SSH over it (host key checked against the session's
 * REST record), the -cmd, then a few probes of the sandbox (cwd, user,
 * Python). -upload/-download move files over SFTP on the same session;
 * -stdio stops after the CONNECT and relays stdin/stdout instead, so
 * OpenSSH's own clients can use the tunnel as a ProxyCommand. -port N
 * makes the tunnel one to TCP port N in the sandbox (with -stdio, or
 * -listen ADDR:PORT to forward a local port, port_forward.c).
 *
 * An https:// -api is spoken over TLS (tls.c); everything after the CONNECT
 * then runs over a plain socket relayed to the TLS stream.
 *
 * Exit status: 0 when everything worked, 1 on any failure, 2 for a bad
 * command line.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libssh/libssh.h>

#include "connect.h"
#include "flags.h"
#include "log.h"
#include "rest.h"
#include "sftp.h"
#include "ssh.h"
#include "fdpass.h"
#include "port_forward.h"
#include "stdio_relay.h"
#include "tls.h"

#define ERRLEN 512

/* Session ids go into a request line: allow only what an id can hold. */
static int valid_session_id(const char *id)
{
    size_t n = strlen(id);

    return n > 0 && n <= 128 &&
           strspn(id, "abcdefghijklmnopqrstuvwxyz"
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
}

/* A token goes into a header line: no spaces or control characters. */
static int valid_token(const char *t)
{
    for (; *t; t++)
        if ((unsigned char)*t <= ' ' || *t == 0x7f)
            return 0;
    return 1;
}

/* TCP (and TLS) to the API; 0, or -1 after reporting why not. */
static int dial_api(const struct options *o, const struct api_addr *a,
                    struct api_conn *c)
{
    char err[ERRLEN];

    c->ssl = NULL;
    c->fd = tunnel_dial(a, o->timeout, err, sizeof(err));
    if (c->fd < 0 || (a->tls && tls_start(c, a->host, o->cacert, o->timeout,
                                          err, sizeof(err)) < 0)) {
        log_error("failed to connect to server: %s", err);
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Connects and sends the CONNECT; 0, or -1 after reporting why not. */
static int open_tunnel(const struct options *o, const struct api_addr *a,
                       struct api_conn *c)
{
    struct connect_reply r;
    char err[ERRLEN], *path = NULL;

    logln("Connecting to %s", a->hostport);
    if (dial_api(o, a, c) < 0)
        return -1;
    if ((o->port ? asprintf(&path, "%s/v1/sessions/%s/ports/%d/tunnel",
                            a->prefix, o->session, o->port)
                 : asprintf(&path, "%s/v1/sessions/%s/tunnel", a->prefix,
                            o->session)) < 0) {
        log_error("out of memory");
        conn_close(c);
        return -1;
    }
    logln("Sending CONNECT request to %s", path);
    if (tunnel_connect(c, a, path, o->token, o->timeout, &r, err, sizeof(err)) <
        0) {
        log_error("%s", err);
        goto fail;
    }
    logln("Received response: %d %s", r.status, r.reason);
    if (r.status != 200) {
        log_error("CONNECT failed with status %d: %s", r.status, r.message);
        goto fail;
    }
    logln("✅ HTTP CONNECT tunnel established successfully");
    free(path);
    return 0;

fail:
    free(path);
    conn_close(c);
    return -1;
}

/*
 * The open tunnel as a plain socket for libssh or the -stdio relay: the
 * TCP socket itself, or over TLS one end of a relay (*relay set). -1 on
 * failure (reported; c closed).
 */
static int tunnel_socket(struct api_conn *c, struct tls_relay **relay)
{
    char err[ERRLEN];
    int fd;

    *relay = NULL;
    if (c->ssl == NULL)
        return c->fd;
    fd = tls_relay_start(c, relay, err, sizeof(err));
    if (fd < 0) {
        log_error("%s", err);
        conn_close(c);
    }
    return fd;
}

/* Handshake, host key check and login; NULL when any fails (reported). */
static ssh_session open_ssh(const struct options *o, const struct api_addr *a,
                            int fd)
{
    struct session_keys keys;
    char err[ERRLEN];
    ssh_session s;

    if (rest_session_keys(a, o->session, o->token, o->cacert, o->timeout, &keys,
                          err, sizeof(err)) < 0) {
        log_error("failed to fetch the session's host key: %s", err);
        close(fd);
        return NULL;
    }
    logln("Establishing SSH connection as user: %s", o->user);
    s = ssh_open(fd, o->user, &keys, o->timeout, err, sizeof(err));
    session_keys_free(&keys);
    if (s == NULL) {
        log_error("failed to establish SSH connection: ssh: handshake "
                  "failed: %s",
                  err);
        return NULL;
    }
    if (ssh_login(s, o->password) < 0) {
        log_error("ssh: unable to authenticate");
        ssh_close(s);
        return NULL;
    }
    logln("✅ SSH connection established successfully");
    return s;
}

static int do_uploads(const struct options *o, ssh_session s)
{
    char err[ERRLEN];
    size_t i;

    for (i = 0; i < o->nuploads; i++) {
        const struct transfer *t = &o->uploads[i];
        unsigned long long n = 0;

        if (sftp_upload(s, t->local, t->remote, &n, err, sizeof(err)) < 0) {
            log_error("failed to upload %s: %s", t->local, err);
            return -1;
        }
        logln("✅ Uploaded %s -> %s (%llu bytes)", t->local, t->remote, n);
    }
    return 0;
}

static int do_downloads(const struct options *o, ssh_session s)
{
    char err[ERRLEN];
    size_t i;

    for (i = 0; i < o->ndownloads; i++) {
        const struct transfer *t = &o->downloads[i];
        unsigned long long n = 0;

        if (sftp_download(s, t->remote, t->local, &n, err, sizeof(err)) < 0) {
            log_error("failed to download %s: %s", t->remote, err);
            return -1;
        }
        logln("✅ Downloaded %s -> %s (%llu bytes)", t->remote, t->local, n);
    }
    return 0;
}

/* Copies a whole temporary file to stdout. */
static void print_file(FILE *f)
{
    char buf[65536];
    size_t n;

    rewind(f);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        if (fwrite(buf, 1, n, stdout) != n)
            break; /* stdout is gone: nothing more can be shown */
}

/* Runs -cmd and prints the output block; 0 only if it exited 0. */
static int run_command(const struct options *o, ssh_session s)
{
    FILE *out = tmpfile(), *errf = tmpfile();
    struct run_result r;
    char err[ERRLEN];
    int rc = -1;

    if (out == NULL || errf == NULL) {
        log_error("failed to execute command: no temporary file");
        goto out;
    }
    if (ssh_run(s, o->cmd, out, errf, &r, err, sizeof(err)) < 0) {
        log_error("failed to execute command: %s", err);
        goto out;
    }
    if (r.exit_code == 0)
        logln("✅ Command executed successfully");
    fflush(stderr);
    printf("\n--- Command Output ---\nCommand: %s\nExit Code: %d\n", o->cmd,
           r.exit_code);
    printf("Stdout:\n");
    print_file(out);
    printf("\n");
    if (ftell(errf) > 0) {
        printf("Stderr:\n");
        print_file(errf);
        printf("\n");
    }
    printf("--- End Output ---\n\n");
    if (r.signal[0])
        log_error("command exited with code %d (signal %s)", r.exit_code,
                  r.signal);
    else if (r.exit_code != 0)
        log_error("command exited with code %d", r.exit_code);
    rc = r.exit_code == 0 ? 0 : -1;

out:
    /* temporary files, already read: nothing to flush or report */
    if (out)
        (void)fclose(out);
    if (errf)
        (void)fclose(errf);
    return rc;
}

/* Runs a probe command; returns its first stdout line (malloc'd). */
static char *probe(ssh_session s, const char *cmd, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len), *errf = fopen("/dev/null", "w");
    struct run_result r = {.exit_code = -2};

    if (out == NULL || errf == NULL)
        snprintf(err, errlen, "out of memory");
    else if (ssh_run(s, cmd, out, errf, &r, err, errlen) < 0)
        r.exit_code = -2;
    /* closing the memory stream sets text and len; failing, it is short */
    if (out && fclose(out) != 0 && r.exit_code == 0) {
        snprintf(err, errlen, "out of memory");
        r.exit_code = -2;
    }
    if (errf)
        (void)fclose(errf); /* /dev/null */
    if (r.exit_code != 0 || text == NULL) {
        if (r.exit_code > 0)
            snprintf(err, errlen, "`%s` exited with code %d", cmd, r.exit_code);
        free(text);
        return NULL;
    }
    text[strcspn(text, "\r\n")] = '\0';
    return text;
}

/* The guide's "additional tests": where we are, who we are, Python. */
static int additional_tests(ssh_session s)
{
    static const struct {
        const char *label, *cmd;
    } probes[] = {{"Current directory", "pwd"},
                  {"Current user", "whoami"},
                  {"Python version", "python3 --version"}};
    char err[ERRLEN];
    size_t i;
    int rc = 0;

    logln("Running additional tests...");
    for (i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        char *v = probe(s, probes[i].cmd, err, sizeof(err));

        if (v)
            logln("✅ %s: %s", probes[i].label, v);
        else
            logln("❌ %s: %s", probes[i].label, err);
        rc |= v ? 0 : -1;
        free(v);
    }
    if (rc < 0)
        log_error("additional tests failed");
    return rc;
}

/* The -stdio mode: CONNECT, then relay; logs nothing on stdout. */
static int run_stdio(const struct options *o, const struct api_addr *a)
{
    struct tls_relay *relay;
    struct api_conn c;
    char err[ERRLEN];
    int fd, rc;

    log_set_quiet(1);
    if (open_tunnel(o, a, &c) < 0)
        return 1;
    fd = tunnel_socket(&c, &relay);
    if (fd < 0)
        return 1;
    rc = stdio_relay(fd, err, sizeof(err));
    close(fd);
    tls_relay_stop(relay);
    if (rc < 0)
        log_error("%s", err);
    return rc < 0 ? 1 : 0;
}

/*
 * The -fdpass mode: CONNECT, then give ssh the socket and exit. Over
 * https the bytes are TLS records ssh could not read: refused.
 */
static int run_fdpass(const struct options *o, const struct api_addr *a)
{
    struct api_conn c;
    char err[ERRLEN];
    int rc;

    log_set_quiet(1);
    if (a->tls) {
        log_error("-fdpass needs an http:// -api (ssh cannot speak the "
                  "TLS around the tunnel); use -stdio");
        return 1;
    }
    if (open_tunnel(o, a, &c) < 0)
        return 1;
    rc = fdpass_send(STDOUT_FILENO, c.fd, err, sizeof(err));
    if (rc < 0)
        log_error("%s", err);
    conn_close(&c);
    return rc < 0 ? 1 : 0;
}

struct forward_ctx {
    const struct options *o;
    const struct api_addr *a;
};

/* One tunnel of -listen, in its child: a socket to it, or -1. */
static int forward_open(void *data)
{
    struct forward_ctx *f = data;
    struct tls_relay *relay;
    struct api_conn c;

    if (open_tunnel(f->o, f->a, &c) < 0)
        return -1;
    return tunnel_socket(&c, &relay); /* the relay ends with the child */
}

/* The -listen mode: serves until killed. */
static int run_listen(const struct options *o, const struct api_addr *a)
{
    struct forward_ctx f = {o, a};
    char err[ERRLEN];

    log_set_quiet(1);
    if (port_forward(o->listen, forward_open, &f, err, sizeof(err)) < 0)
        log_error("%s", err);
    return 1;
}

static int run_session(const struct options *o, ssh_session s)
{
    if (do_uploads(o, s) < 0 || run_command(o, s) < 0 ||
        do_downloads(o, s) < 0 || additional_tests(s) < 0)
        return 1;
    fflush(stderr);
    printf("\n🎉 All tests completed successfully!\n");
    return 0;
}

static int run_test(const struct options *o, const struct api_addr *a)
{
    struct tls_relay *relay;
    struct api_conn c;
    ssh_session s;
    int fd, rc = 1;

    logln("Testing tunnel connection to session: %s", o->session);
    if (open_tunnel(o, a, &c) < 0)
        return 1;
    fd = tunnel_socket(&c, &relay);
    if (fd < 0)
        return 1;
    s = open_ssh(o, a, fd);
    if (s) {
        rc = run_session(o, s);
        ssh_close(s);
    }
    tls_relay_stop(relay);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o;
    struct api_addr a;
    char err[ERRLEN];
    int rc;

    rc = flags_parse(&o, argc, argv);
    if (rc != FLAGS_OK) {
        flags_free(&o);
        return rc == FLAGS_HELP ? 0 : 2;
    }
    /* A closed tunnel or pipe is an error to report, not a signal. */
    (void)signal(SIGPIPE, SIG_IGN);
    if (!valid_session_id(o.session) || !valid_token(o.token)) {
        log_error("invalid %s", valid_token(o.token) ? "session ID" : "token");
        flags_free(&o);
        return 2;
    }
    if (api_addr_parse(&a, o.api, err, sizeof(err)) < 0) {
        log_error("%s", err);
        flags_free(&o);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ssh_init();
    if (o.stdio)
        rc = run_stdio(&o, &a);
    else if (o.fdpass)
        rc = run_fdpass(&o, &a);
    else if (o.listen)
        rc = run_listen(&o, &a);
    else
        rc = run_test(&o, &a);
    ssh_finalize();
    curl_global_cleanup();
    api_addr_free(&a);
    flags_free(&o);
    fflush(stdout);
    return rc;
}
