/*
 * ssh.c - SSH over the CONNECT tunnel with libssh.
 *
 * Trust: the tunnel is plain HTTP, so the sandbox is authenticated only by
 * its host key. The expected key comes from the session's REST record; the
 * handshake is limited to that key's algorithm and any other key is
 * refused before a password is sent.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libssh/callbacks.h>

#include "ssh.h"

#define RUN_CHUNK 65536

/* "ssh-ed25519 AAAA..." of the key the server presented. */
static char *key_line(ssh_key key)
{
    char *b64 = NULL, *line = NULL;

    if (ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK)
        return NULL;
    if (asprintf(&line, "%s %s", ssh_key_type_to_char(ssh_key_type(key)), b64) <
        0)
        line = NULL;
    ssh_string_free_char(b64);
    return line;
}

/* "SHA256:..." as OpenSSH prints it. */
static char *key_fingerprint(ssh_key key)
{
    unsigned char *hash = NULL;
    size_t hlen = 0;
    char *fp;

    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) !=
        SSH_OK)
        return NULL;
    fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    ssh_clean_pubkey_hash(&hash);
    return fp;
}

/* True when "type base64" starts `expected` (a comment may follow). */
static int same_key(const char *offered, const char *expected)
{
    size_t n = strlen(offered);

    expected += strspn(expected, " \t");
    return strncmp(offered, expected, n) == 0 &&
           (expected[n] == '\0' || isspace((unsigned char)expected[n]));
}

/* Fingerprint of a "type base64 [comment]" line, for messages. */
static char *line_fingerprint(const char *line)
{
    char *copy = strdup(line), *b64, *fp = NULL;
    ssh_key key = NULL;

    if (copy == NULL)
        return NULL;
    b64 = strchr(copy, ' ');
    if (b64) {
        *b64++ = '\0';
        b64[strcspn(b64, " ")] = '\0';
        if (ssh_pki_import_pubkey_base64(b64, ssh_key_type_from_name(copy),
                                         &key) == SSH_OK)
            fp = key_fingerprint(key);
    }
    ssh_key_free(key);
    free(copy);
    return fp;
}

static int check_host_key(ssh_session s, const struct session_keys *keys,
                          char *err, size_t errlen)
{
    ssh_key key = NULL;
    char *line = NULL, *fp = NULL, *want = NULL;
    int ok = 0;

    if (ssh_get_server_publickey(s, &key) != SSH_OK) {
        snprintf(err, errlen, "no host key from server");
        return -1;
    }
    line = key_line(key);
    fp = key_fingerprint(key);
    if (keys->host_key)
        ok = line && same_key(line, keys->host_key);
    else
        ok = fp && strcmp(fp, keys->host_key_fingerprint) == 0;
    if (!ok) {
        want = keys->host_key ? line_fingerprint(keys->host_key) : NULL;
        snprintf(err, errlen,
                 "host key mismatch: server offered %s, session expects %s",
                 fp ? fp : "an unreadable key",
                 want                         ? want
                 : keys->host_key_fingerprint ? keys->host_key_fingerprint
                                              : keys->host_key);
    }
    ssh_string_free_char(want);
    ssh_string_free_char(fp);
    free(line);
    ssh_key_free(key);
    return ok ? 0 : -1;
}

/* The host key algorithm to ask for: the expected key's type. */
static void limit_host_key_type(ssh_session s, const char *host_key)
{
    char type[64];
    size_t n;

    if (host_key == NULL)
        return;
    n = strcspn(host_key, " ");
    if (n == 0 || n >= sizeof(type))
        return;
    memcpy(type, host_key, n);
    type[n] = '\0';
    /* An RSA key can be verified with either SHA-2 signature. */
    if (strcmp(type, "ssh-rsa") == 0)
        snprintf(type, sizeof(type), "rsa-sha2-512,rsa-sha2-256");
    ssh_options_set(s, SSH_OPTIONS_HOSTKEYS, type);
}

ssh_session ssh_open(int fd, const char *user, const struct session_keys *keys,
                     long timeout, char *err, size_t errlen)
{
    ssh_session s = ssh_new();
    int no = 0;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        return NULL;
    }
    /* Nothing from ~/.ssh/config may redirect or weaken this session. */
    ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &no);
    ssh_options_set(s, SSH_OPTIONS_FD, &fd);
    ssh_options_set(s, SSH_OPTIONS_HOST, "sandbox");
    ssh_options_set(s, SSH_OPTIONS_USER, user);
    if (timeout > 0)
        ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &timeout);
    limit_host_key_type(s, keys->host_key);
    if (ssh_connect(s) != SSH_OK) {
        snprintf(err, errlen, "%s", ssh_get_error(s));
        ssh_close(s);
        return NULL;
    }
    if (check_host_key(s, keys, err, errlen) < 0) {
        ssh_close(s);
        return NULL;
    }
    return s;
}

/* Answers every keyboard-interactive prompt with the password. */
static int login_kbdint(ssh_session s, const char *password)
{
    int rc = ssh_userauth_kbdint(s, NULL, NULL);

    while (rc == SSH_AUTH_INFO) {
        int i, n = ssh_userauth_kbdint_getnprompts(s);

        for (i = 0; i < n; i++)
            if (ssh_userauth_kbdint_setanswer(s, (unsigned)i, password) < 0)
                return -1;
        rc = ssh_userauth_kbdint(s, NULL, NULL);
    }
    return rc == SSH_AUTH_SUCCESS ? 0 : -1;
}

int ssh_login(ssh_session s, const char *password)
{
    int methods;

    if (ssh_userauth_none(s, NULL) == SSH_AUTH_SUCCESS)
        return 0;
    methods = ssh_userauth_list(s, NULL);
    if ((methods & SSH_AUTH_METHOD_PASSWORD) &&
        ssh_userauth_password(s, NULL, password) == SSH_AUTH_SUCCESS)
        return 0;
    if (methods & SSH_AUTH_METHOD_INTERACTIVE)
        return login_kbdint(s, password);
    return -1;
}

/* Moves what libssh has buffered for one stream into f; bytes or -1. */
static int drain(ssh_channel ch, int is_stderr, FILE *f, char *buf)
{
    int total = 0;

    for (;;) {
        int n = ssh_channel_read_nonblocking(ch, buf, RUN_CHUNK, is_stderr);

        if (n == SSH_ERROR)
            return -1;
        if (n <= 0)
            return total;
        if (fwrite(buf, 1, (size_t)n, f) != (size_t)n)
            return -1;
        total += n;
    }
}

/* True when the command is over (see collect()). */
static int run_over(ssh_channel ch, const struct run_result *r)
{
    return ssh_channel_is_closed(ch) ||
           (ssh_channel_is_eof(ch) && (r->exited || r->signal[0]));
}

/*
 * Reads both streams until the command has ended: its output is over and
 * its exit status or signal has come (a command may close its output and
 * run on), or the channel is closed. libssh stops reading the socket for
 * a channel at its EOF, so an event loop on the session keeps packets
 * (exit-status, close) flowing; its timeout is only a safety net.
 */
static int collect(ssh_session s, ssh_channel ch, FILE *out, FILE *errf,
                   const struct run_result *r, char *buf)
{
    ssh_event ev = ssh_event_new();
    int rc = -1;

    if (ev == NULL || ssh_event_add_session(ev, s) != SSH_OK) {
        if (ev)
            ssh_event_free(ev);
        return -1;
    }
    for (;;) {
        int a = drain(ch, 0, out, buf), b = drain(ch, 1, errf, buf);

        if (a < 0 || b < 0)
            break;
        if (run_over(ch, r)) {
            rc = 0;
            break;
        }
        if (a == 0 && b == 0 && ssh_event_dopoll(ev, 1000) == SSH_ERROR)
            break;
    }
    ssh_event_remove_session(ev, s);
    ssh_event_free(ev);
    return rc;
}

/* Signal numbers by the names exit-signal carries (RFC 4254 6.10). */
static int signal_number(const char *name)
{
    static const struct {
        const char *name;
        int num;
    } sigs[] = {{"HUP", 1},   {"INT", 2},   {"QUIT", 3},  {"ILL", 4},
                {"ABRT", 6},  {"FPE", 8},   {"KILL", 9},  {"USR1", 10},
                {"SEGV", 11}, {"USR2", 12}, {"PIPE", 13}, {"ALRM", 14},
                {"TERM", 15}};
    size_t i;

    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (strcmp(sigs[i].name, name) == 0)
            return sigs[i].num;
    return 0;
}

static void on_exit_status(ssh_session s, ssh_channel ch, int status,
                           void *userdata)
{
    struct run_result *r = userdata;

    r->exit_code = status;
    r->exited = 1;
}

static void on_exit_signal(ssh_session s, ssh_channel ch, const char *signal,
                           int core, const char *errmsg, const char *lang,
                           void *userdata)
{
    struct run_result *r = userdata;

    snprintf(r->signal, sizeof(r->signal), "%s", signal);
}

int ssh_run(ssh_session s, const char *cmd, FILE *out, FILE *errf,
            struct run_result *r, char *err, size_t errlen)
{
    struct ssh_channel_callbacks_struct cb = {
        .userdata = r,
        .channel_exit_status_function = on_exit_status,
        .channel_exit_signal_function = on_exit_signal};
    ssh_channel ch = ssh_channel_new(s);
    char *buf = malloc(RUN_CHUNK);
    int rc = -1;

    memset(r, 0, sizeof(*r));
    r->exit_code = -1;
    if (ch == NULL || buf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ssh_callbacks_init(&cb);
    ssh_set_channel_callbacks(ch, &cb);
    if (ssh_channel_open_session(ch) != SSH_OK ||
        ssh_channel_request_exec(ch, cmd) != SSH_OK) {
        snprintf(err, errlen, "%s", ssh_get_error(s));
        goto out;
    }
    if (collect(s, ch, out, errf, r, buf) < 0) {
        snprintf(err, errlen, "reading output: %s", ssh_get_error(s));
        goto out;
    }
    if (fflush(out) != 0 || fflush(errf) != 0) {
        snprintf(err, errlen, "storing output: %s", strerror(errno));
        goto out;
    }
    /* Like Go's x/crypto/ssh: a signal's death is 128 + its number. */
    if (!r->exited && r->signal[0])
        r->exit_code = 128 + signal_number(r->signal);
    if (r->exit_code < 0) {
        snprintf(err, errlen,
                 "remote command exited without exit status "
                 "or exit signal");
        goto out;
    }
    rc = 0;

out:
    if (ch) {
        ssh_remove_channel_callbacks(ch, &cb);
        ssh_channel_close(ch);
        ssh_channel_free(ch);
    }
    free(buf);
    return rc;
}

void ssh_close(ssh_session s)
{
    int fd;

    if (s == NULL)
        return;
    /* libssh never closes a socket given with SSH_OPTIONS_FD unless it
     * failed on it; whatever it still holds open is ours to close. */
    fd = ssh_get_fd(s);
    if (ssh_is_connected(s))
        ssh_disconnect(s);
    ssh_free(s);
    if (fd >= 0 && fcntl(fd, F_GETFD) != -1)
        close(fd);
}
