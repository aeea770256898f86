/*
 * connect.c - TCP connection to the API and the HTTP CONNECT exchange.
 *
 * The answer's header is peeked at first (MSG_PEEK, or SSL_peek over TLS;
 * see conn.c) and then consumed only up to its blank line: the SSH banner
 * may arrive in the same segment as "200 Connection Established", and it
 * belongs to libssh, which gets the stream right after this.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "connect.h"

#define HEADER_MAX 16384
#define BODY_MAX 4096

static void set_err(char *err, size_t errlen, const char *what, int code)
{
    char text[128];

    /* Go spells errno texts in lower case ("connection refused"). */
    snprintf(text, sizeof(text), "%s", strerror(code));
    text[0] = (char)tolower((unsigned char)text[0]);
    snprintf(err, errlen, "%s%s", what, text);
}

/* -- the -api address ------------------------------------------------ */

/* No blanks or control characters: they would end up in the request line
 * and the Host header (Go's url.Parse refuses them too). */
static int url_chars_ok(const char *url)
{
    for (; *url; url++)
        if ((unsigned char)*url <= ' ' || *url == 0x7f)
            return 0;
    return 1;
}

/* 1..65535 in decimal: getaddrinfo would take 65616 for port 80. */
static int port_ok(const char *s)
{
    size_t n = strspn(s, "0123456789");

    return n > 0 && n <= 5 && s[n] == '\0' && strtol(s, NULL, 10) >= 1 &&
           strtol(s, NULL, 10) <= 65535;
}

int api_addr_parse(struct api_addr *a, const char *url, char *err,
                   size_t errlen)
{
    const char *p = url, *end, *host, *host_end, *colon;
    size_t len;

    memset(a, 0, sizeof(*a));
    if (!url_chars_ok(url)) {
        snprintf(err, errlen, "bad API address: %s", url);
        return -1;
    }
    if (strncmp(p, "https://", 8) == 0) {
        a->tls = 1;
        p += 8;
    } else if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (strstr(p, "://") != NULL) {
        snprintf(err, errlen, "unsupported API address: %s", url);
        return -1;
    }
    end = p + strcspn(p, "/?#");
    if (*p == '[') { /* [v6]:port */
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        colon = host_end && host_end + 1 < end ? host_end + 1 : NULL;
        if (host_end == NULL || !memchr(host, ':', (size_t)(host_end - host)) ||
            (colon && *colon != ':')) {
            snprintf(err, errlen, "bad API address: %s", url);
            return -1;
        }
    } else {
        host = p;
        colon = memchr(p, ':', (size_t)(end - p));
        host_end = colon ? colon : end;
    }
    if (host_end == host) {
        snprintf(err, errlen, "API address has no host: %s", url);
        return -1;
    }
    if (memchr(host, '[', (size_t)(host_end - host)) ||
        memchr(host, ']', (size_t)(host_end - host))) {
        snprintf(err, errlen, "bad API address: %s", url);
        return -1;
    }
    a->host = strndup(host, (size_t)(host_end - host));
    if (colon && colon + 1 < end)
        a->port = strndup(colon + 1, (size_t)(end - colon - 1));
    else
        a->port = strdup(a->tls ? "443" : "80");
    a->hostport = strndup(p, (size_t)(end - p));
    a->prefix = strndup(end, strcspn(end, "?#"));
    if (!a->host || !a->port || !a->hostport || !a->prefix) {
        api_addr_free(a);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* "http://host/p/" and "http://host/p" name the same API. */
    len = strlen(a->prefix);
    while (len > 0 && a->prefix[len - 1] == '/')
        a->prefix[--len] = '\0';
    if (!port_ok(a->port)) {
        snprintf(err, errlen, "bad port in API address: %s", url);
        api_addr_free(a);
        return -1;
    }
    return 0;
}

void api_addr_free(struct api_addr *a)
{
    free(a->host);
    free(a->port);
    free(a->hostport);
    free(a->prefix);
    memset(a, 0, sizeof(*a));
}

/* -- TCP ------------------------------------------------------------- */

/* Connects one address with the timeout; returns fd or -1 with errno. */
static int dial_one(const struct addrinfo *ai, long timeout)
{
    int fd, flags, soerr = 0, one = 1;
    socklen_t len = sizeof(soerr);

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS || fd_wait(fd, POLLOUT, timeout) < 0)
            goto fail;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr != 0) {
            errno = soerr;
            goto fail;
        }
    }
    fcntl(fd, F_SETFL, flags);
    /* SFTP and interactive SSH wait for each small packet's answer. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;

fail:
    soerr = errno;
    close(fd);
    errno = soerr;
    return -1;
}

int tunnel_dial(const struct api_addr *a, long timeout, char *err,
                size_t errlen)
{
    struct addrinfo hints = {0}, *res, *ai;
    int rc, fd = -1, code = ECONNREFUSED;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(a->host, a->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "lookup %s: %s", a->host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = dial_one(ai, timeout);
        if (fd < 0)
            code = errno;
    }
    freeaddrinfo(res);
    if (fd < 0)
        set_err(err, errlen, "", code);
    return fd;
}

/* -- CONNECT --------------------------------------------------------- */

/* Finds "\r\n\r\n" in buf[0..len); returns the offset just past it. */
static size_t header_end(const char *buf, size_t len)
{
    size_t i;

    for (i = 0; i + 4 <= len; i++)
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    return 0;
}

/* Consumes exactly len bytes that are known to be queued. */
static int consume(struct api_conn *c, char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = conn_recv(c, buf, len, 0);

        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Reads the response header into buf (NUL-terminated) without reading a
 * byte past its end. Returns the header length, or -1 with errno set
 * (0 for a connection closed before the header ended).
 */
static ssize_t read_header(struct api_conn *c, char *buf, size_t cap,
                           long timeout)
{
    size_t len = 0;

    while (len < cap - 1) {
        size_t from = len > 3 ? len - 3 : 0, end;
        ssize_t n;

        if (conn_wait(c, POLLIN, timeout) < 0)
            return -1;
        n = conn_recv(c, buf + len, cap - 1 - len, 1);
        if (n <= 0) {
            if (n == 0)
                errno = 0;
            return -1;
        }
        end = header_end(buf + from, len + (size_t)n - from);
        if (end)
            n = (ssize_t)(from + end - len);
        if (consume(c, buf + len, (size_t)n) < 0)
            return -1;
        len += (size_t)n;
        if (end) {
            buf[len] = '\0';
            return (ssize_t)len;
        }
    }
    errno = EMSGSIZE;
    return -1;
}

/* Value of header `name` in a raw header block, or NULL; copied to out. */
static const char *header_value(const char *hdr, const char *name, char *out,
                                size_t outlen)
{
    size_t nlen = strlen(name);
    const char *line = strstr(hdr, "\r\n");

    while (line && line[2] != '\r') {
        const char *p = line + 2, *eol = strstr(p, "\r\n");

        if (eol == NULL)
            break;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 &&
            p[nlen] == ':') {
            p += nlen + 1;
            p += strspn(p, " \t");
            snprintf(out, outlen, "%.*s", (int)(eol - p), p);
            return out;
        }
        line = eol;
    }
    return NULL;
}

/* Decodes a chunked body in place; stops at the last whole chunk. */
static size_t dechunk(char *body, size_t len)
{
    size_t in = 0, out = 0;

    while (in < len && isxdigit((unsigned char)body[in])) {
        char *end;
        unsigned long size = strtoul(body + in, &end, 16);
        char *data = strstr(end, "\r\n");

        if (data == NULL || size == 0)
            break;
        data += 2;
        /* a size beyond what arrived (or beyond ULONG_MAX) is cut to it */
        if (size > len - (size_t)(data - body))
            size = len - (size_t)(data - body);
        memmove(body + out, data, size);
        out += size;
        in = (size_t)(data - body) + size + 2;
    }
    body[out] = '\0';
    return out;
}

/* True when a chunked body has arrived up to its last (empty) chunk. */
static int chunked_done(const char *body, size_t len)
{
    return (len == 5 && memcmp(body, "0\r\n\r\n", 5) == 0) ||
           strstr(body, "\r\n0\r\n\r\n") != NULL;
}

/*
 * Reads an error answer's body (bounded) for the user to see: up to its
 * Content-Length, the end of a chunked body, or the connection's end.
 */
static void read_body(struct api_conn *c, const char *hdr, char *out,
                      size_t outlen, long timeout)
{
    char value[32];
    size_t want = BODY_MAX - 1, len = 0;
    char *body = malloc(BODY_MAX);
    int chunked;

    out[0] = '\0';
    if (body == NULL)
        return;
    body[0] = '\0';
    chunked = header_value(hdr, "Transfer-Encoding", value, sizeof(value)) &&
              strcasecmp(value, "chunked") == 0;
    if (!chunked && header_value(hdr, "Content-Length", value, sizeof(value))) {
        unsigned long cl = strtoul(value, NULL, 10);

        want = cl < want ? cl : want;
    }
    while (len < want && !(chunked && chunked_done(body, len)) &&
           conn_wait(c, POLLIN, timeout) == 0) {
        ssize_t n = conn_recv(c, body + len, want - len, 0);

        if (n <= 0)
            break;
        len += (size_t)n;
        body[len] = '\0';
    }
    if (chunked)
        len = dechunk(body, len);
    snprintf(out, outlen, "%.*s", (int)len, body);
    free(body);
}

/* Turns a body into one line of text: a JSON error's message, trimmed. */
static void body_to_message(char *msg, size_t msglen)
{
    size_t len, in, out;

    if (msg[0] == '{') {
        json_t *root = json_loads(msg, 0, NULL);
        const char *m = NULL;

        json_unpack(root, "{s:{s:s}}", "error", "message", &m);
        if (m == NULL)
            json_unpack(root, "{s:s}", "error", &m);
        if (m)
            snprintf(msg, msglen, "%s", m);
        json_decref(root);
    }
    len = strlen(msg);
    while (len > 0 && isspace((unsigned char)msg[len - 1]))
        msg[--len] = '\0';
    /* One line for the terminal: each run of line breaks becomes a space. */
    for (in = out = 0; msg[in]; in++) {
        int brk = msg[in] == '\r' || msg[in] == '\n';

        if (!brk)
            msg[out++] = msg[in];
        else if (out > 0 && msg[out - 1] != ' ')
            msg[out++] = ' ';
    }
    msg[out] = '\0';
}

/* "HTTP/1.<minor> <3-digit status> <reason>" */
static int parse_status(const char *hdr, struct connect_reply *r)
{
    const char *p = hdr + 7;

    if (strncmp(hdr, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)*p))
        return -1;
    p += strspn(p, "0123456789");
    if (*p != ' ')
        return -1;
    p += strspn(p, " ");
    /* exactly three digits, 100..599 (RFC 9110, section 15) */
    if (strspn(p, "0123456789") != 3 || p[0] < '1' || p[0] > '5' ||
        (p[3] != ' ' && p[3] != '\r'))
        return -1;
    r->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    p += 3;
    p += strspn(p, " ");
    /* the reason ends at the line's end, a bare LF included */
    snprintf(r->reason, sizeof(r->reason), "%.*s", (int)strcspn(p, "\r\n"), p);
    return 0;
}

int tunnel_connect(struct api_conn *c, const struct api_addr *a,
                   const char *path, const char *token, long timeout,
                   struct connect_reply *r, char *err, size_t errlen)
{
    char *req = NULL, *hdr;
    int len;
    ssize_t hlen;

    memset(r, 0, sizeof(*r));
    if (token && token[0])
        len = asprintf(&req,
                       "CONNECT %s HTTP/1.1\r\nHost: %s\r\n"
                       "Authorization: Bearer %s\r\n\r\n",
                       path, a->hostport, token);
    else
        len = asprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", path,
                       a->hostport);
    if (len < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (conn_send_all(c, req, (size_t)len) < 0) {
        set_err(err, errlen, "failed to send CONNECT request: ", errno);
        free(req);
        return -1;
    }
    free(req);

    hdr = malloc(HEADER_MAX);
    if (hdr == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    hlen = read_header(c, hdr, HEADER_MAX, timeout);
    if (hlen < 0 || parse_status(hdr, r) < 0) {
        if (hlen < 0 && errno != 0)
            set_err(err, errlen, "failed to read CONNECT response: ", errno);
        else
            snprintf(err, errlen, "failed to read CONNECT response: %s",
                     hlen < 0 ? "connection closed by server"
                              : "malformed status line");
        free(hdr);
        return -1;
    }
    if (r->status != 200) {
        read_body(c, hdr, r->message, sizeof(r->message), timeout);
        body_to_message(r->message, sizeof(r->message));
        if (r->message[0] == '\0')
            snprintf(r->message, sizeof(r->message), "%s", r->reason);
    }
    free(hdr);
    return 0;
}
