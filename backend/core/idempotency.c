/*
 * idempotency.c - idempotent create. Before a session is created its
 * key is claimed in Redis (store/idempotency.c) with the id about to be
 * used, so concurrent retries with one key create exactly one session:
 * the claimer creates, the others wait for it (polling, bounded) and
 * answer the session it made. A create that fails releases the key, so
 * a retry tries again rather than replaying a failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/idempotency.h"
#include "core/util.h"

#define POLL_US 50000

int idem_key_valid(const char *key, char *err, size_t errlen)
{
    size_t n = strnlen(key, PICO_IDEM_KEY_MAX + 1), i;

    if (n == 0 || n > PICO_IDEM_KEY_MAX) {
        snprintf(err, errlen, "Idempotency-Key: must be 1 to %d bytes",
                 PICO_IDEM_KEY_MAX);
        return 0;
    }
    for (i = 0; i < n; i++) {
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e) {
            snprintf(err, errlen,
                     "Idempotency-Key: printable ASCII characters only");
            return 0;
        }
    }
    return 1;
}

static int sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != 32)
        return -1;
    hex_encode(md, 32, out);
    return 0;
}

/* The body as canonical JSON (sorted keys, compact), hashed; "" hashes
 * an empty body. The body was validated already. */
static int body_fingerprint(const char *body, size_t len, char out[65])
{
    json_t *root;
    char *text;
    int rc;

    if (len == 0)
        return sha256_hex("", 0, out);
    root = json_loadb(body, len, 0, NULL);
    text = root ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (text == NULL)
        return -1;
    rc = sha256_hex(text, strlen(text), out);
    free(text);
    return rc;
}

/* The first attempt's answer for a repeat: 200 with its session. */
static int replay(pico_app *app, const char *id, const char *owner,
                  session_record *rec, api_error *e)
{
    if (lifecycle_get(app, id, owner, rec, e) == 0)
        return 200;
    if (e->status == 404)
        api_error_set(e, 409, "conflict",
                      "the session created with this Idempotency-Key (%s) "
                      "no longer exists",
                      id);
    return -1;
}

/* How long a claim may stay "creating": longer than any create can take
 * (the runtime's ready timeout and then some), so a live create is never
 * taken over, while a claim whose backend died frees the key soon. */
static long long claim_seconds(const pico_config *cfg)
{
    long long ready = cfg->ready_timeout_ms / 1000;

    if (cfg->k8s_ready_timeout_s > ready)
        ready = cfg->k8s_ready_timeout_s;
    return ready + PICO_IDEM_CLAIM_SLACK_S;
}

/* The claimer's part: create, then mark the key done or release it. */
static int create_claimed(pico_app *app, session *s, const char *owner,
                          const char *key_sha, api_error *e)
{
    if (lifecycle_create(app, s, owner, e) < 0) {
        if (store_idem_release(app->st, owner, key_sha, s->id) < 0)
            log_warn("idempotency: cannot release the key of %s", s->id);
        return -1;
    }
    if (store_idem_done(app->st, owner, key_sha, s->id, PICO_IDEM_KEEP_S) < 0)
        log_warn("idempotency: cannot mark the key of %s done", s->id);
    return 201;
}

int idem_create(pico_app *app, session *s, const char *owner, const char *key,
                const char *body, size_t len, session_record *rec, api_error *e)
{
    char key_sha[65], body_sha[65], other[PICO_ID_LEN + 1];
    long long deadline = mono_ms() + PICO_IDEM_WAIT_MS;

    if (sha256_hex(key, strlen(key), key_sha) < 0 ||
        body_fingerprint(body, len, body_sha) < 0 || uuid_v4(s->id) < 0) {
        api_error_set(e, 500, "internal", "cannot fingerprint the request");
        return -1;
    }
    for (;;) {
        int rc = store_idem_claim(app->st, owner, key_sha, body_sha, s->id,
                                  claim_seconds(&app->cfg), other);
        if (rc == 1)
            return create_claimed(app, s, owner, key_sha, e);
        if (rc == 2) {
            api_error_set(e, 422, "idempotency_key_reused",
                          "Idempotency-Key: already used with a different "
                          "request body");
            return -1;
        }
        if (rc == 3)
            return replay(app, other, owner, rec, e);
        if (rc != 4) {
            api_error_set(e, 503, "redis_unavailable",
                          "cannot check the Idempotency-Key");
            return -1;
        }
        if (mono_ms() >= deadline) {
            api_error_set(e, 409, "idempotency_in_progress",
                          "Idempotency-Key: a create with this key (session "
                          "%s) is still in progress; retry later",
                          other);
            return -1;
        }
        (void)usleep(POLL_US);
    }
}
