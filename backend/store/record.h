/*
 * record.h - reading a session record out of Redis's replies (record.c),
 * for store.c.
 */
#ifndef PICO_STORE_RECORD_H
#define PICO_STORE_RECORD_H

#include <hiredis/hiredis.h>
#include "store/store.h"

/* A decimal field's value; 0 when it is not one (parse_ll). */
long long str_ll(const char *s);

/* Fills rec from the HGETALL replies of pico:session:<id> (sr) and
 * pico:tunnels:<id> (tr, may be NULL): 1 found, 0 no such session, -1 a
 * reply that is not a hash. */
int fill_record(session_record *rec, redisReply *sr, redisReply *tr);

#endif
