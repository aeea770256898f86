/*
 * k8s_client.c - requests and watch streams to the Kubernetes API server
 * (see k8s_client.h).
 *
 * A curl easy handle per call keeps threads apart without locks; the cost
 * (a new connection per call) is small next to starting a pod. Answers
 * are size-capped so a huge list cannot exhaust memory, and every call
 * has a connect timeout and a total timeout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include "runtime/kubernetes/k8s_client.h"

#define K8S_CONNECT_TIMEOUT_S 5
#define K8S_BODY_MAX ((size_t)32 * 1024 * 1024)
#define K8S_LINE_MAX ((size_t)4 * 1024 * 1024)
#define K8S_TOKEN_MAX 16384

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void k8s_global_init(void)
{
    pthread_once(&curl_once, curl_init_once);
}

/* A growing byte buffer for answers. */
typedef struct {
    char *data;
    size_t len, cap;
    int overflow;
} buf;

static int buf_add(buf *b, const char *p, size_t n, size_t max)
{
    if (b->len + n + 1 > max) {
        b->overflow = 1;
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        char *d;

        while (cap < b->len + n + 1)
            cap *= 2;
        d = realloc(b->data, cap);
        if (d == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    return buf_add(arg, p, size * n, K8S_BODY_MAX) == 0 ? size * n : 0;
}

/* The bearer token: fixed, or read fresh from a file because projected
 * service account tokens are rotated by the kubelet. */
static int read_token(const k8s_conn *c, char *tok, size_t toklen, char *err,
                      size_t errlen)
{
    FILE *f;
    size_t n;

    tok[0] = '\0';
    if (c->token != NULL) {
        n = strlen(c->token);
        if (n >= toklen) {
            snprintf(err, errlen, "kubernetes token is too long");
            return -1;
        }
        memcpy(tok, c->token, n + 1);
        return 0;
    }
    if (c->token_file[0] == '\0')
        return 0;
    f = fopen(c->token_file, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read kubernetes token %s", c->token_file);
        return -1;
    }
    n = fread(tok, 1, toklen - 1, f);
    (void)fclose(f); /* read only: nothing to flush */
    tok[n] = '\0';
    while (n > 0 &&
           (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
        tok[--n] = '\0';
    return 0;
}

/* A curl handle with the connection's TLS, auth and timeouts set. */
static CURL *new_handle(const k8s_conn *c, const char *method, const char *path,
                        long timeout_s, struct curl_slist **hdrs, char *err,
                        size_t errlen)
{
    char tok[K8S_TOKEN_MAX], auth[K8S_TOKEN_MAX + 32];
    char *url;
    CURL *h;

    k8s_global_init();
    if (read_token(c, tok, sizeof(tok), err, errlen) < 0)
        return NULL;
    h = curl_easy_init();
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* Allocated: a list's continue token has no documented bound. */
    if (asprintf(&url, "%s%s", c->server, path) < 0) {
        curl_easy_cleanup(h);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    curl_easy_setopt(h, CURLOPT_URL, url); /* curl keeps a copy */
    free(url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)K8S_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "pico-backend");
    if (c->ca_file[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    if (c->ca_pem != NULL) {
        struct curl_blob blob = {c->ca_pem, c->ca_len, CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (c->cert_file[0])
        curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
    if (c->key_file[0])
        curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
    if (c->cert_pem != NULL) {
        struct curl_blob blob = {c->cert_pem, c->cert_len, CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &blob);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (c->key_pem != NULL) {
        struct curl_blob blob = {c->key_pem, c->key_len, CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &blob);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (c->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    *hdrs = curl_slist_append(NULL, "Accept: application/json");
    if (tok[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
        *hdrs = curl_slist_append(*hdrs, auth);
    }
    memset(tok, 0, sizeof(tok));
    memset(auth, 0, sizeof(auth));
    return h;
}

/* Retry-After in seconds; the HTTP-date form is not used by the API
 * server, and anything unreadable counts as none. Capped: a deadline
 * bounds every wait anyway. */
static long retry_after_of(CURL *h)
{
    struct curl_header *hd;
    char *end;
    long v;

    if (curl_easy_header(h, "Retry-After", 0, CURLH_HEADER, -1, &hd) !=
        CURLHE_OK)
        return 0;
    v = strtol(hd->value, &end, 10);
    if (end == hd->value || v < 0)
        return 0;
    return v > 600 ? 600 : v;
}

static void transport_error(CURLcode rc, const char *errbuf, const char *method,
                            const char *path, char *err, size_t errlen)
{
    snprintf(err, errlen, "kubernetes API %s %s: %s", method, path,
             errbuf[0] ? errbuf : curl_easy_strerror(rc));
}

int k8s_request(const k8s_conn *c, const char *method, const char *path,
                const char *ctype, json_t *body, long timeout_s, k8s_resp *r,
                char *err, size_t errlen)
{
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    char *text = NULL;
    buf out = {0};
    CURLcode rc;
    CURL *h;

    r->status = 0;
    r->body = NULL;
    r->retry_after = 0;
    h = new_handle(c, method, path, timeout_s, &hdrs, err, errlen);
    if (h == NULL)
        return -1;
    if (body != NULL) {
        char ct[128];

        text = json_dumps(body, JSON_COMPACT);
        snprintf(ct, sizeof(ct), "Content-Type: %s",
                 ctype ? ctype : "application/json");
        hdrs = curl_slist_append(hdrs, ct);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text ? text : "{}");
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
        r->retry_after = retry_after_of(h);
        if (out.len > 0)
            r->body = json_loadb(out.data, out.len, 0, NULL);
    } else if (out.overflow) {
        snprintf(err, errlen, "kubernetes API %s %s: answer over %zu bytes",
                 method, path, K8S_BODY_MAX);
    } else {
        transport_error(rc, errbuf, method, path, err, errlen);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    free(text);
    free(out.data);
    return rc == CURLE_OK ? 0 : -1;
}

void k8s_resp_free(k8s_resp *r)
{
    json_decref(r->body);
    r->body = NULL;
}

void k8s_error(const k8s_resp *r, const char *what, char *err, size_t errlen)
{
    const char *msg = NULL, *reason = NULL;

    if (json_is_object(r->body)) {
        msg = json_string_value(json_object_get(r->body, "message"));
        reason = json_string_value(json_object_get(r->body, "reason"));
    }
    if (msg != NULL && msg[0])
        snprintf(err, errlen, "%s: %ld %s: %s", what, r->status,
                 reason ? reason : "", msg);
    else
        snprintf(err, errlen, "%s: the API server answered %ld", what,
                 r->status);
}

/* State of one watch stream: bytes collect until a newline ends an
 * event; a non-200 answer is a Status object kept whole. */
typedef struct {
    CURL *h;
    buf line;
    k8s_event_cb cb;
    void *arg;
    int stopped;
    long status;
    int bad_line;
    const atomic_int *stop; /* set: abort the stream (NULL: never) */
} watch_state;

static int watch_line(watch_state *w, const char *p, size_t n)
{
    json_t *ev = json_loadb(p, n, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *obj = json_object_get(ev, "object");
    int stop = 0;

    if (type != NULL && json_is_object(obj))
        stop = w->cb(type, obj, w->arg);
    else if (n > 0)
        w->bad_line = 1;
    json_decref(ev);
    return stop;
}

static size_t on_watch(char *p, size_t size, size_t n, void *arg)
{
    watch_state *w = arg;
    size_t len = size * n, start = 0, i;

    if (w->status == 0)
        curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status);
    if (w->status != 200)
        return buf_add(&w->line, p, len, K8S_BODY_MAX) == 0 ? len : 0;
    for (i = 0; i < len; i++) {
        if (p[i] != '\n')
            continue;
        if (buf_add(&w->line, p + start, i - start, K8S_LINE_MAX) < 0)
            return 0;
        start = i + 1;
        if (watch_line(w, w->line.data ? w->line.data : "", w->line.len)) {
            w->stopped = 1;
            return 0; /* aborts the transfer: we have what we wanted */
        }
        w->line.len = 0;
    }
    if (buf_add(&w->line, p + start, len - start, K8S_LINE_MAX) < 0)
        return 0;
    return len;
}

/* libcurl calls this about once a second even on a silent stream, so a
 * watch that may last minutes still stops soon after it is asked to. */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                       curl_off_t un)
{
    watch_state *w = arg;

    (void)dt, (void)dn, (void)ut, (void)un;
    return w->stop != NULL && atomic_load(w->stop) ? 1 : 0;
}

int k8s_watch(const k8s_conn *c, const char *path, long timeout_s,
              k8s_event_cb cb, void *arg, long *status, long *retry_after,
              char *err, size_t errlen)
{
    return k8s_watch_stoppable(c, path, timeout_s, NULL, cb, arg, status,
                               retry_after, err, errlen);
}

int k8s_watch_stoppable(const k8s_conn *c, const char *path, long timeout_s,
                        const atomic_int *stop, k8s_event_cb cb, void *arg,
                        long *status, long *retry_after, char *err,
                        size_t errlen)
{
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    watch_state w;
    CURLcode rc;
    int ret;

    memset(&w, 0, sizeof(w));
    w.cb = cb;
    w.arg = arg;
    w.stop = stop;
    *status = 0;
    *retry_after = 0;
    w.h = new_handle(c, "GET", path, timeout_s, &hdrs, err, errlen);
    if (w.h == NULL)
        return -1;
    curl_easy_setopt(w.h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(w.h, CURLOPT_WRITEFUNCTION, on_watch);
    curl_easy_setopt(w.h, CURLOPT_WRITEDATA, &w);
    curl_easy_setopt(w.h, CURLOPT_ERRORBUFFER, errbuf);
    if (stop != NULL) {
        curl_easy_setopt(w.h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(w.h, CURLOPT_XFERINFODATA, &w);
        curl_easy_setopt(w.h, CURLOPT_NOPROGRESS, 0L);
    }
    rc = curl_easy_perform(w.h);
    if (w.status == 0)
        curl_easy_getinfo(w.h, CURLINFO_RESPONSE_CODE, &w.status);
    *status = w.status;
    if (w.stopped) {
        ret = 1;
    } else if (rc == CURLE_OK && w.status == 200) {
        /* A last event without its newline still counts. */
        ret = 0;
        if (w.line.len > 0 && watch_line(&w, w.line.data, w.line.len))
            ret = 1;
    } else if (rc == CURLE_OK) {
        k8s_resp r = {w.status, NULL, 0};

        *retry_after = retry_after_of(w.h);
        if (w.line.len > 0)
            r.body = json_loadb(w.line.data, w.line.len, 0, NULL);
        k8s_error(&r, "kubernetes API watch", err, errlen);
        k8s_resp_free(&r);
        ret = -1;
    } else {
        transport_error(rc, errbuf, "GET", path, err, errlen);
        ret = -1;
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(w.h);
    free(w.line.data);
    return ret;
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *k8s_b64_encode(const unsigned char *in, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    size_t i;

    if (out == NULL)
        return NULL;
    for (i = 0; i + 2 < len; i += 3) {
        *o++ = b64chars[in[i] >> 2];
        *o++ = b64chars[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        *o++ = b64chars[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
        *o++ = b64chars[in[i + 2] & 63];
    }
    if (i < len) {
        *o++ = b64chars[in[i] >> 2];
        if (i + 1 < len) {
            *o++ = b64chars[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
            *o++ = b64chars[(in[i + 1] & 15) << 2];
        } else {
            *o++ = b64chars[(in[i] & 3) << 4];
            *o++ = '=';
        }
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int b64_value(char ch)
{
    const char *p = ch ? strchr(b64chars, ch) : NULL;

    return p ? (int)(p - b64chars) : -1;
}

unsigned char *k8s_b64_decode(const char *in, size_t *outlen)
{
    size_t len = strlen(in), n = 0;
    unsigned char *out = malloc(len / 4 * 3 + 3);
    unsigned int acc = 0;
    int bits = 0, pad = 0;

    if (out == NULL)
        return NULL;
    for (; *in; in++) {
        int v;

        if (*in == '\n' || *in == '\r' || *in == ' ')
            continue;
        if (*in == '=') {
            pad++;
            continue;
        }
        v = b64_value(*in);
        if (v < 0 || pad) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned int)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    out[n] = '\0';
    *outlen = n;
    return out;
}
