/*
 * preview.c - signed preview links (see core/preview.h). The token is 32
 * bytes of the kernel's randomness in hex; only its SHA-256 is stored
 * (store/preview.c), so neither Redis nor a log holds a usable link, and
 * nginx finds the record by hashing what the browser presents.
 */
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "common/pico_parse.h"
#include "core/preview.h"
#include "core/util.h"
#include "store/preview.h"

/* {"ttl": seconds} or nothing; 0, or -1 with e (400). */
static int parse_ttl(const char *body, size_t len, long long *ttl, api_error *e)
{
    json_t *doc, *v;
    const char *key;

    *ttl = PREVIEW_TTL_DEFAULT;
    if (len == 0)
        return 0;
    doc = json_loadb(body, len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        api_error_set(e, 400, "invalid_request",
                      "body: expected a JSON object");
        return -1;
    }
    json_object_foreach(doc, key, v)
    {
        if (strcmp(key, "ttl") != 0) {
            api_error_set(e, 400, "invalid_request", "%.64s: unknown field",
                          key);
            json_decref(doc);
            return -1;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > PREVIEW_TTL_MAX) {
            api_error_set(e, 400, "invalid_request",
                          "ttl: must be an integer from 1 to %d",
                          PREVIEW_TTL_MAX);
            json_decref(doc);
            return -1;
        }
        *ttl = json_integer_value(v);
    }
    json_decref(doc);
    return 0;
}

static int sha256_hex(const char *s, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (EVP_Digest(s, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return -1;
    hex_encode(md, 32, out);
    return 0;
}

int preview_create(pico_app *app, const char *id, const char *principal,
                   const char *port, const char *body, size_t len,
                   preview_link *out, api_error *e)
{
    unsigned char raw[32];
    char token[65], digest[65];
    session_record rec;
    long long ttl, now = now_s(), expires;

    out->port = pico_parse_port((const unsigned char *)port, strlen(port));
    if (out->port == 0) {
        api_error_set(e, 400, "invalid_port", "port must be 1..65535");
        return -1;
    }
    if (parse_ttl(body, len, &ttl, e) < 0 ||
        lifecycle_get(app, id, principal, &rec, e) < 0)
        return -1;
    expires = rec.s.expires_at;
    if (rec.s.status != SESSION_RUNNING) {
        api_error_set(e, 409, "not_running", "session is %s",
                      session_status_name(rec.s.status));
        session_free(&rec.s);
        return -1;
    }
    session_free(&rec.s);
    if (expires > 0 && now + ttl > expires)
        ttl = expires - now > 0 ? expires - now : 1;
    if (random_bytes(raw, sizeof(raw)) < 0) {
        api_error_set(e, 500, "internal", "no randomness");
        return -1;
    }
    hex_encode(raw, sizeof(raw), token);
    if (sha256_hex(token, 64, digest) < 0 ||
        store_preview_put(app->st, digest, id, out->port, now + ttl, principal,
                          ttl) < 0) {
        api_error_set(e, 503, "redis_unavailable", "cannot store the link");
        return -1;
    }
    out->expires_at = now + ttl;
    snprintf(out->path, sizeof(out->path),
             "/v1/sessions/%s/ports/%u/?pico_preview=%s", id, out->port, token);
    return 0;
}
