/*
 * store/preview.h - signed preview links in Redis (docs/redis.md):
 * pico:preview:<SHA-256 hex of the link's token> is a hash {session,
 * port, expires, owner} that expires with the link. nginx's module reads
 * it (ngx_pico_redis_lookup_preview()); the token itself is never kept.
 */
#ifndef PICO_STORE_PREVIEW_H
#define PICO_STORE_PREVIEW_H

#include "store/store.h"

/* Writes the link's record, gone after ttl seconds; 0 or -1. */
int store_preview_put(store *st, const char digest[65], const char *id,
                      unsigned port, long long expires, const char *owner,
                      long long ttl);

#endif
