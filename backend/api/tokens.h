/*
 * tokens.h - API tokens: "pico_<16 hex id>_<64 hex secret>". Only the
 * SHA-256 of a token is stored (docs/redis.md); checks compare digests in
 * constant time.
 */
#ifndef PICO_TOKENS_H
#define PICO_TOKENS_H

#include <stddef.h>
#include "store/store.h"

#include "common/pico_parse.h" /* PICO_TOKEN_LEN, PICO_TOKEN_ID_LEN */

/* A fresh token and its id, from getrandom(). 0 or -1. */
int token_generate(char token[PICO_TOKEN_LEN + 1],
                   char id[PICO_TOKEN_ID_LEN + 1]);
/* 0 and the id when token has exactly the format above, -1 otherwise. */
int token_parse(const char *token, char id[PICO_TOKEN_ID_LEN + 1]);
/* Lowercase hex SHA-256 of s. */
void token_sha256_hex(const char *s, size_t len, char out[65]);
/* 1 when p matches [A-Za-z0-9_.-]{1,64}. */
int token_principal_valid(const char *p);

/* Creates and stores a token for principal; token is shown once. */
int token_create(store *st, const char *principal,
                 char token[PICO_TOKEN_LEN + 1]);
/*
 * Checks an Authorization header value ("Bearer <token>"). 1 with the
 * principal when valid, 0 when missing/malformed/unknown/revoked, -1 when
 * Redis could not be asked.
 */
int token_check_header(store *st, const char *header, char *principal,
                       size_t principal_len);

#endif
