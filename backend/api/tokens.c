/*
 * tokens.c - making, parsing and checking API tokens.
 *
 * The secret never reaches Redis: the store keeps SHA-256(token) and the
 * principal under pico:token:<id>. A presented token is parsed strictly
 * (anything else is a 401 before Redis is asked), hashed, and compared
 * with CRYPTO_memcmp so the time taken says nothing about the digest.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "api/tokens.h"
#include "core/util.h"

int token_generate(char token[PICO_TOKEN_LEN + 1],
                   char id[PICO_TOKEN_ID_LEN + 1])
{
    unsigned char rid[8], secret[32];
    char secret_hex[65];

    if (random_bytes(rid, sizeof(rid)) < 0 ||
        random_bytes(secret, sizeof(secret)) < 0)
        return -1;
    hex_encode(rid, sizeof(rid), id);
    hex_encode(secret, sizeof(secret), secret_hex);
    snprintf(token, PICO_TOKEN_LEN + 1, "pico_%s_%s", id, secret_hex);
    return 0;
}

int token_parse(const char *token, char id[PICO_TOKEN_ID_LEN + 1])
{
    const unsigned char *tid;
    size_t len = strnlen(token, PICO_TOKEN_LEN + 1);

    if (!pico_parse_token((const unsigned char *)token, len, &tid))
        return -1;
    memcpy(id, tid, PICO_TOKEN_ID_LEN);
    id[PICO_TOKEN_ID_LEN] = '\0';
    return 0;
}

void token_sha256_hex(const char *s, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    if (EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != 32) {
        memset(out, 0, 65); /* matches no stored digest */
        return;
    }
    hex_encode(md, 32, out);
}

int token_principal_valid(const char *p)
{
    size_t n = strnlen(p, 65);

    return n >= 1 && n <= 64 && name_chars_valid(p, n);
}

int token_create(store *st, const char *principal,
                 char token[PICO_TOKEN_LEN + 1])
{
    char id[PICO_TOKEN_ID_LEN + 1], sha[65];

    if (token_generate(token, id) < 0)
        return -1;
    token_sha256_hex(token, strlen(token), sha);
    return store_token_put(st, id, principal, sha, now_s());
}

int token_check_header(store *st, const char *header, char *principal,
                       size_t principal_len)
{
    char id[PICO_TOKEN_ID_LEN + 1], want[65], have[65];
    const unsigned char *tok;
    size_t toklen;
    int rc;

    /* The module's rule exactly (common/pico_parse.h): what nginx lets
     * through, the backend accepts too. */
    if (header == NULL ||
        pico_parse_authorization((const unsigned char *)header, strlen(header),
                                 &tok, &toklen) != PICO_AUTH_OK)
        return 0;
    memcpy(id, tok + 5, PICO_TOKEN_ID_LEN);
    id[PICO_TOKEN_ID_LEN] = '\0';
    rc = store_token_get(st, id, want, principal, principal_len);
    if (rc <= 0)
        return rc;
    token_sha256_hex((const char *)tok, toklen, have);
    if (CRYPTO_memcmp(want, have, 64) != 0 || !token_principal_valid(principal))
        return 0;
    return 1;
}
