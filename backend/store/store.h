/*
 * store.h - everything pico-backend keeps in Redis (layout: docs/redis.md).
 *
 * A small pool of synchronous hiredis connections shared by all request
 * threads and the reaper. Every multi-key change that must be atomic is a
 * Lua script, so several backends on one Redis never see half a change.
 */
#ifndef PICO_STORE_H
#define PICO_STORE_H

#include <stddef.h>
#include "core/session_api.h"

typedef struct store store;

/* A session record as stored, plus what only Redis knows about it. */
typedef struct {
    session s;
    char runtime[32];
    char node[64];
    session_tunnels tunnels;
} session_record;

store *store_open(const char *addr, char *err, size_t errlen);
void store_close(store *st);
int store_ping(store *st, char *err, size_t errlen);

/*
 * Writes a new record (status as in s) and its pico:expiry entry, unless
 * max_sessions live sessions exist already. 1 written, 0 limit reached,
 * -1 Redis error.
 */
int store_session_create(store *st, const session *s, const char *runtime,
                         const char *node, int max_sessions);

/*
 * Sets fields (name, value pairs; npairs of them) only while the record's
 * status is one of `statuses` ("pending" or "pending|running"). 1 done,
 * 0 status differs or record gone, -1 error.
 */
int store_session_update_if(store *st, const char *id, const char *statuses,
                            const char *const *pairs, int npairs);

/*
 * The same guard, and the session's lifecycle event `event` appended to
 * its owner's stream by the same script (transition.c). 1 done, 0 status
 * differs or record gone, -1 error.
 */
int store_session_transition(store *st, const char *id, const char *statuses,
                             const char *event, const char *const *pairs,
                             int npairs);

/*
 * Marks a pending, running or paused session failed with reason, clears its
 * endpoint, moves its expiry to retain_until (unix seconds) when that
 * is sooner and publishes "deleted <id>" (the module closes its tunnels).
 * 1 done, 0 not pending/running/paused (or gone), -1 error.
 */
int store_session_fail(store *st, const char *id, const char *reason,
                       long long retain_until);

/* Publishes "changed <id>" on pico:events: the nginx modules drop their
 * cached verdict of the session (pause.c). 0 or -1. */
int store_session_changed(store *st, const char *id);
/* Ids of the running sessions of node and runtime with an idle_timeout
 * (pause.c; the idle stop). Caller frees with store_free_ids. 0 or -1. */
int store_node_idle_candidates(store *st, const char *node, const char *runtime,
                               char ***ids, size_t *n);
/* 1 found (rec filled, caller frees rec->s), 0 missing, -1 error. */
int store_session_get(store *st, const char *id, session_record *rec);

/* Ids of every live session (pico:expiry and pico:reaping). Caller frees
 * the array with store_free_ids. -1 on error. */
int store_session_ids(store *st, char ***ids, size_t *n);
void store_free_ids(char **ids, size_t n);

/* Ids of the running sessions of node and runtime (the liveness check).
 * Caller frees with store_free_ids. -1 on error. */
int store_node_running(store *st, const char *node, const char *runtime,
                       char ***ids, size_t *n);

/*
 * Claims one session for deletion: moves it from pico:expiry to
 * pico:reaping with a lease and sets status terminating. 1 claimed, 0 no
 * such session, 2 another caller holds an unexpired lease, -1 error.
 */
int store_session_claim(store *st, const char *id, long long lease_ms);

/*
 * The reaper's claim: every session of node due by now_ms (and every
 * expired lease in pico:reaping of node's sessions), at most max of them,
 * atomically. Returns how many ids were written to ids, -1 on error.
 */
int store_claim_due(store *st, long long now, long long lease_ms,
                    const char *node, char (*ids)[PICO_ID_LEN + 1], int max);

/* Makes a live session due now, so its own node's reaper deletes it
 * (a DELETE that reached another node). 1 moved, 0 not in pico:expiry
 * (already claimed or gone), -1 error. */
int store_session_expire_now(store *st, const char *id);

/*
 * Moves a live session's deadline to now (ms) + ttl (s), unless that is
 * later than created_at + lifetime_max (extend.c): record and pico:expiry
 * in one step. 1 done (*out = the new expires_at), 0 no such session,
 * 2 being deleted (terminating, claimed, or already due), 3 failed,
 * 4 beyond lifetime_max (*out = the largest ttl allowed now), -1 error.
 */
int store_session_extend(store *st, const char *id, long long now,
                         long long ttl, long long lifetime_max, long long *out);

/* Deletes the record, its tunnel counters and index entries, and
 * publishes "deleted <id>". 0 or -1. */
int store_session_remove(store *st, const char *id);

/*
 * Idempotency keys (idempotency.c): hash pico:idem:<principal>:<key_sha>.
 * claim: 1 claimed for id (other = id), 2 the key was used with another
 * body, 3 done (other = its session), 4 another request is creating it
 * (other = its session), -1 error. The claim lives claim_s seconds until
 * done() keeps it keep_s; release() deletes it (a failed create). Both
 * only act on a claim for id: 1 done, 0 not ours, -1 error.
 */
int store_idem_claim(store *st, const char *principal, const char *key_sha,
                     const char *body_sha, const char *id, long long claim_s,
                     char other[PICO_ID_LEN + 1]);
int store_idem_done(store *st, const char *principal, const char *key_sha,
                    const char *id, long long keep_s);
int store_idem_release(store *st, const char *principal, const char *key_sha,
                       const char *id);

/*
 * Lifecycle events (events.c): Redis Stream pico:stream:<principal>,
 * about PICO_EVENTS_MAX entries kept.
 */
#define PICO_EVENTS_MAX 10000

/* Appends an event of session id (type, then npairs name/value pairs,
 * at most 8) to its owner's stream. 1 added, 0 no record, -1 error. */
int store_event_add(store *st, const char *id, const char *type,
                    const char *const *pairs, int npairs);

/* Appends "expiring" for each session due within window_ms of now (ms)
 * not yet warned about its current deadline. How many, or -1. */
int store_event_warn_expiring(store *st, long long now, long long window_ms);

/* Whether the principal's stream holds event_id: 1 yes, 0 no (first =
 * the oldest id kept), 2 the stream is empty, -1 error. */
int store_event_check(store *st, const char *principal, const char *event_id,
                      char *first, size_t firstlen);

/* The newest id in the principal's stream, "0-0" if none. 0 or -1. */
int store_event_last(store *st, const char *principal, char *out,
                     size_t outlen);

/* Events after `after`, waiting up to block_ms for one: each to cb (its
 * id and nfields name/value pairs). How many were read, or -1. */
typedef void (*store_event_cb)(const char *event_id, const char **fields,
                               int nfields, void *arg);
int store_event_read(store *st, const char *principal, const char *after,
                     long long block_ms, int count, store_event_cb cb,
                     void *arg);

/* Tokens (hash pico:token:<token-id>). */
int store_token_put(store *st, const char *token_id, const char *principal,
                    const char *sha256_hex, long long created_at);
/* 1 found, 0 missing, -1 error. */
int store_token_get(store *st, const char *token_id, char sha256_hex[65],
                    char *principal, size_t principal_len);
/* 1 deleted, 0 missing, -1 error. */
int store_token_delete(store *st, const char *token_id);
typedef void (*store_token_cb)(const char *token_id, const char *principal,
                               long long created_at, void *arg);
int store_token_list(store *st, store_token_cb cb, void *arg);

/* Metrics (stats.c). Redis failures of this process: a connection lost
 * or refused, an error reply. */
typedef enum {
    STORE_ERR_CONNECTION = 0,
    STORE_ERR_REPLY,
    STORE_ERR_N
} store_error;
void store_count_error(store_error kind);
long long store_errors(store_error kind);
/* counts[k] = live records whose status is names[k]; 0 or -1. */
int store_count_status(store *st, const char *const *names, long long *counts,
                       int n);
/* The deadline (unix ms) of the most overdue session in pico:expiry:
 * 1 found, 0 none is due, -1 error. */
int store_oldest_due(store *st, long long now, long long *deadline);

#endif
