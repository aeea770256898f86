/*
 * k8s_client.h - a small Kubernetes API client: where the API server is,
 * how to authenticate to it, and JSON requests and watch streams over
 * libcurl.
 *
 * It knows nothing about pods or sessions; runtime_k8s.c builds the
 * objects and paths. Every call uses its own curl handle, so any number
 * of threads may share one k8s_conn (it is read-only after setup), and
 * every call has a deadline: a silent API server is an error, never a
 * hang.
 */
#ifndef PICO_K8S_CLIENT_H
#define PICO_K8S_CLIENT_H

#include <stdatomic.h>
#include <stddef.h>
#include <jansson.h>

struct pico_config;

#define K8S_URL_MAX 1024
#define K8S_PATH_MAX 1024

/* How to reach and authenticate to one API server. */
typedef struct k8s_conn {
    char server[K8S_URL_MAX];      /* "https://10.96.0.1:443", no slash */
    char token_file[K8S_PATH_MAX]; /* re-read per call: tokens rotate */
    char *token;                   /* a fixed token (kubeconfig), or NULL */
    char ca_file[K8S_PATH_MAX];    /* CA bundle path, or "" */
    char *ca_pem;                  /* CA bundle in memory, or NULL */
    size_t ca_len;
    char cert_file[K8S_PATH_MAX], key_file[K8S_PATH_MAX]; /* client TLS */
    char *cert_pem, *key_pem;
    size_t cert_len, key_len;
    int insecure;    /* skip TLS verification (kubeconfig) */
    char source[64]; /* "k8s_api", "in-cluster", "kubeconfig" */
} k8s_conn;

/* One answer of the API server. body is the parsed JSON or NULL;
 * retry_after is its Retry-After header in seconds (0 if none), which
 * the API server sends with 429 and some 5xx answers. */
typedef struct {
    long status;
    json_t *body;
    long retry_after;
} k8s_resp;

/* libcurl's global setup. Called by the driver's open(), while the
 * backend is still single-threaded; calls made later only find it done. */
void k8s_global_init(void);

/*
 * Fills c from the configuration: k8s_api when set, else the in-cluster
 * service account when KUBERNETES_SERVICE_HOST is set, else
 * k8s_kubeconfig. 0, or -1 with a reason in err.
 */
int k8s_conn_init(k8s_conn *c, const struct pico_config *cfg, char *err,
                  size_t errlen);
void k8s_conn_free(k8s_conn *c);

/* Reads the subset of a kubeconfig file docs/kubernetes.md lists. */
int k8s_kubeconfig_load(k8s_conn *c, const char *path, char *err,
                        size_t errlen);
/* The same from the file's text in memory (len bytes); path is only where
 * it came from: relative paths in it are taken from path's folder. */
int k8s_kubeconfig_parse_buffer(k8s_conn *c, const char *path, const char *text,
                                size_t len, char *err, size_t errlen);

/*
 * One request. body (may be NULL) is sent as JSON with content type
 * ctype (NULL = application/json). Returns 0 when the server answered,
 * whatever the status, with r filled (free with k8s_resp_free); -1 on a
 * transport error or timeout, with a reason in err.
 */
int k8s_request(const k8s_conn *c, const char *method, const char *path,
                const char *ctype, json_t *body, long timeout_s, k8s_resp *r,
                char *err, size_t errlen);
void k8s_resp_free(k8s_resp *r);

/* "<what>: <code> <reason>: <Status message>" for a failed answer. */
void k8s_error(const k8s_resp *r, const char *what, char *err, size_t errlen);

/*
 * Called once per watch event with its type ("ADDED", "MODIFIED",
 * "DELETED", "BOOKMARK", "ERROR") and object. Return 1 to stop watching,
 * 0 to go on.
 */
typedef int (*k8s_event_cb)(const char *type, json_t *object, void *arg);

/*
 * Streams a watch (path must include watch=1). Returns 1 when cb stopped
 * it, 0 when the server ended the stream, -1 on a transport error (err)
 * or an error status (*status set, err holds the Status message, and
 * *retry_after the Retry-After header in seconds, 0 if none).
 */
int k8s_watch(const k8s_conn *c, const char *path, long timeout_s,
              k8s_event_cb cb, void *arg, long *status, long *retry_after,
              char *err, size_t errlen);

/* The same, ended early (-1, err "stopped") once *stop is set: within
 * about a second, however quiet the stream. */
int k8s_watch_stoppable(const k8s_conn *c, const char *path, long timeout_s,
                        const atomic_int *stop, k8s_event_cb cb, void *arg,
                        long *status, long *retry_after, char *err,
                        size_t errlen);

/* Base64 (RFC 4648, padded). Encode returns a malloc'd string. Decode
 * returns a malloc'd buffer and its length in *outlen, NULL if invalid. */
char *k8s_b64_encode(const unsigned char *in, size_t len);
unsigned char *k8s_b64_decode(const char *in, size_t *outlen);

#endif
