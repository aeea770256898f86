/*
 * rest.c - GET /v1/sessions/<id> with libcurl, for the host key.
 *
 * The same bearer token as the CONNECT goes along: a session is visible
 * only to its owner. The answer is small, so it is kept in memory (with
 * a cap) and parsed with jansson.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "rest.h"

#define REST_BODY_MAX ((size_t)1024 * 1024)

struct body {
    char *data;
    size_t len;
};

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;
    char *grown;

    if (b->len + n > REST_BODY_MAX)
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    grown = realloc(b->data, b->len + n + 1);
    if (grown == NULL)
        return 0;
    b->data = grown;
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static char *json_strdup(json_t *root, const char *key)
{
    const char *v = json_string_value(json_object_get(root, key));

    return v && v[0] ? strdup(v) : NULL;
}

int rest_parse_keys(const char *text, struct session_keys *keys, char *err,
                    size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);

    memset(keys, 0, sizeof(*keys));
    if (!json_is_object(root)) {
        snprintf(err, errlen, "session answer is not a JSON object");
        json_decref(root);
        return -1;
    }
    keys->host_key = json_strdup(root, "host_key");
    keys->host_key_fingerprint = json_strdup(root, "host_key_fingerprint");
    json_decref(root);
    if (keys->host_key == NULL && keys->host_key_fingerprint == NULL) {
        snprintf(err, errlen, "session has no host_key");
        return -1;
    }
    return 0;
}

int rest_session_keys(const struct api_addr *a, const char *session,
                      const char *token, const char *cafile, long timeout,
                      struct session_keys *keys, char *err, size_t errlen)
{
    struct curl_slist *hdrs = NULL;
    struct body b = {0};
    char *url = NULL, *auth = NULL;
    long status = 0;
    CURL *curl;
    CURLcode rc;
    int ret = -1;

    memset(keys, 0, sizeof(*keys));
    curl = curl_easy_init();
    if (curl == NULL ||
        asprintf(&url, "%s://%s%s/v1/sessions/%s", a->tls ? "https" : "http",
                 a->hostport, a->prefix, session) < 0) {
        url = NULL;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (token && token[0]) {
        if (asprintf(&auth, "Authorization: Bearer %s", token) < 0) {
            auth = NULL;
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, body_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROXY, ""); /* loopback API: no proxy */
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout);
    if (cafile && cafile[0])
        curl_easy_setopt(curl, CURLOPT_CAINFO, cafile);
    rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "GET %s: %s", url, curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        snprintf(err, errlen, "GET %s returned status %ld", url, status);
        goto out;
    }
    ret = rest_parse_keys(b.data ? b.data : "", keys, err, errlen);

out:
    curl_slist_free_all(hdrs);
    if (curl)
        curl_easy_cleanup(curl);
    free(auth);
    free(url);
    free(b.data);
    return ret;
}

void session_keys_free(struct session_keys *keys)
{
    free(keys->host_key);
    free(keys->host_key_fingerprint);
    keys->host_key = keys->host_key_fingerprint = NULL;
}
