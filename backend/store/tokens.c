/*
 * tokens.c - the bearer tokens' records (docs/redis.md, "Tokens"): hash
 * pico:token:<token-id> holding the principal, the SHA-256 of the secret
 * and the creation time; never the secret itself. The API's token checks
 * (api/tokens.c) and the `token` commands of main.c read and write them
 * here; the nginx module reads the same hash on its own.
 */
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "store/command.h"
#include "store/record.h"
#include "store/store.h"

int store_token_put(store *st, const char *token_id, const char *principal,
                    const char *sha256_hex, long long created_at)
{
    char key[64], created[24];
    const char *argv[] = {"HSET",   key,        "principal",  principal,
                          "sha256", sha256_hex, "created_at", created};

    snprintf(key, sizeof(key), "pico:token:%s", token_id);
    snprintf(created, sizeof(created), "%lld", created_at);
    return store_reply_int(store_command(st, 8, argv)) >= 0 ? 0 : -1;
}

int store_token_get(store *st, const char *token_id, char sha256_hex[65],
                    char *principal, size_t principal_len)
{
    char key[64];
    const char *argv[] = {"HMGET", key, "sha256", "principal"};
    redisReply *r;
    int rc = 0;

    snprintf(key, sizeof(key), "pico:token:%s", token_id);
    r = store_command(st, 4, argv);
    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        rc = -1;
    } else if (r->element[0]->type == REDIS_REPLY_STRING &&
               r->element[1]->type == REDIS_REPLY_STRING &&
               r->element[0]->len == 64) {
        copy_str(sha256_hex, 65, r->element[0]->str);
        copy_str(principal, principal_len, r->element[1]->str);
        rc = 1;
    }
    freeReplyObject(r);
    return rc;
}

/* Deletes the token and, in the same step, tells every nginx worker that
 * may have it cached (pico:events "revoked <token-id>").
 * KEYS: token key. ARGV: token id. */
static const char token_delete_lua[] = "local n = redis.call('DEL', KEYS[1])\n"
                                       "if n == 1 then redis.call('PUBLISH', "
                                       "'pico:events', 'revoked ' .. ARGV[1]) "
                                       "end\n"
                                       "return n\n";

int store_token_delete(store *st, const char *token_id)
{
    char key[64];
    const char *argv[] = {"EVAL", token_delete_lua, "1", key, token_id};

    snprintf(key, sizeof(key), "pico:token:%s", token_id);
    return (int)store_reply_int(store_command(st, 5, argv));
}

static void list_one_token(store *st, const char *key, store_token_cb cb,
                           void *arg)
{
    const char *argv[] = {"HMGET", key, "principal", "created_at"};
    redisReply *r = store_command(st, 4, argv);

    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING)
        cb(key + strlen("pico:token:"), r->element[0]->str,
           r->element[1]->type == REDIS_REPLY_STRING
               ? str_ll(r->element[1]->str)
               : 0,
           arg);
    if (r)
        freeReplyObject(r);
}

int store_token_list(store *st, store_token_cb cb, void *arg)
{
    char cursor[32] = "0";

    do {
        const char *argv[] = {"SCAN",         cursor,  "MATCH",
                              "pico:token:*", "COUNT", "1000"};
        redisReply *r = store_command(st, 6, argv);
        size_t i;

        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r)
                freeReplyObject(r);
            return -1;
        }
        copy_str(cursor, sizeof(cursor), r->element[0]->str);
        for (i = 0; i < r->element[1]->elements; i++)
            list_one_token(st, r->element[1]->element[i]->str, cb, arg);
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}
