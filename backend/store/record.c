/*
 * record.c - a session record as Redis holds it, read back: the fields of
 * the hash pico:session:<id> (through a table of where each lands in a
 * session_record) and of pico:tunnels:<id>, the nginx module's tunnel
 * accounting. store.c fetches both hashes; docs/redis.md has the schema.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store/record.h"
#include "core/util.h"

long long str_ll(const char *s)
{
    long long v;

    return parse_ll(s, &v) == 0 ? v : 0;
}

/* How each field of pico:session:<id> lands in a session_record. */
typedef enum {
    FIELD_STR,    /* a string buffer of `size` bytes */
    FIELD_LL,     /* a long long */
    FIELD_INT,    /* an int */
    FIELD_STATUS, /* a session_status, by name (unknown = failed) */
    FIELD_JSON    /* the metadata JSON text, allocated */
} field_kind;

typedef struct {
    const char *name;
    field_kind kind;
    size_t off;  /* in session_record */
    size_t size; /* FIELD_STR only */
} record_field_def;

#define STR_FIELD(name, member)                                                \
    {                                                                          \
        name, FIELD_STR, offsetof(session_record, member),                     \
            sizeof(((session_record *)0)->member)                              \
    }
#define NUM_FIELD(name, kind, member)                                          \
    {                                                                          \
        name, kind, offsetof(session_record, member), 0                        \
    }

static const record_field_def record_fields[] = {
    STR_FIELD("session_id", s.id),
    NUM_FIELD("status", FIELD_STATUS, s.status),
    STR_FIELD("image", s.image),
    NUM_FIELD("ttl", FIELD_LL, s.ttl),
    NUM_FIELD("created_at", FIELD_LL, s.created_at),
    NUM_FIELD("expires_at", FIELD_LL, s.expires_at),
    STR_FIELD("sandbox_name", s.sandbox_name),
    STR_FIELD("owner", s.owner),
    STR_FIELD("endpoint", s.endpoint),
    STR_FIELD("runtime", runtime),
    STR_FIELD("node", node),
    STR_FIELD("reason", s.reason),
    NUM_FIELD("memory_mb", FIELD_INT, s.limits.memory_mb),
    NUM_FIELD("cpu_millicores", FIELD_INT, s.limits.cpu_millicores),
    NUM_FIELD("pids", FIELD_INT, s.limits.pids),
    NUM_FIELD("disk_mb", FIELD_INT, s.limits.disk_mb),
    STR_FIELD("host_key", s.host_key),
    STR_FIELD("host_key_fpr", s.host_key_fpr),
    STR_FIELD("sandbox_uid", s.sandbox_uid),
    STR_FIELD("ssh_public_key", s.ssh_public_key),
    STR_FIELD("isolation", s.isolation),
    STR_FIELD("network", s.network),
    STR_FIELD("egress_allow", s.egress_allow),
    STR_FIELD("egress_deny", s.egress_deny),
    NUM_FIELD("idle_timeout", FIELD_LL, s.idle_timeout),
    NUM_FIELD("active_at", FIELD_LL, s.active_at),
    NUM_FIELD("metadata", FIELD_JSON, s.metadata_json),
};

/* Copies one HGETALL field into the record; unknown fields are ignored. */
static void record_field(session_record *rec, const char *f, const char *v)
{
    size_t i;

    for (i = 0; i < sizeof(record_fields) / sizeof(record_fields[0]); i++) {
        const record_field_def *d = &record_fields[i];
        char *at = (char *)rec + d->off;

        if (strcmp(f, d->name) != 0)
            continue;
        switch (d->kind) {
        case FIELD_STR:
            copy_str(at, d->size, v);
            break;
        case FIELD_LL:
            *(long long *)(void *)at = str_ll(v);
            break;
        case FIELD_INT:
            *(int *)(void *)at = (int)str_ll(v);
            break;
        case FIELD_STATUS:
            if (session_status_parse(v, (session_status *)(void *)at) < 0)
                *(session_status *)(void *)at = SESSION_FAILED;
            break;
        case FIELD_JSON:
            free(*(char **)(void *)at);
            *(char **)(void *)at = strdup(v);
            break;
        }
        return;
    }
}

static void tunnels_field(session_tunnels *t, const char *f, const char *v)
{
    if (!strcmp(f, "open"))
        t->open = str_ll(v);
    else if (!strcmp(f, "opened"))
        t->opened = str_ll(v);
    else if (!strcmp(f, "bytes_up"))
        t->bytes_up = str_ll(v);
    else if (!strcmp(f, "bytes_down"))
        t->bytes_down = str_ll(v);
    else if (!strcmp(f, "last_activity"))
        t->last_activity_ms = str_ll(v);
}

/* Fills rec from the replies of HGETALL session and HGETALL tunnels.
 * 1 found, 0 missing, -1 bad reply. */
int fill_record(session_record *rec, redisReply *sr, redisReply *tr)
{
    size_t i;

    memset(rec, 0, sizeof(*rec));
    if (sr == NULL || sr->type != REDIS_REPLY_ARRAY)
        return -1;
    if (sr->elements == 0)
        return 0;
    for (i = 0; i + 1 < sr->elements; i += 2)
        if (sr->element[i]->type == REDIS_REPLY_STRING &&
            sr->element[i + 1]->type == REDIS_REPLY_STRING)
            record_field(rec, sr->element[i]->str, sr->element[i + 1]->str);
    if (tr && tr->type == REDIS_REPLY_ARRAY)
        for (i = 0; i + 1 < tr->elements; i += 2)
            if (tr->element[i]->type == REDIS_REPLY_STRING &&
                tr->element[i + 1]->type == REDIS_REPLY_STRING)
                tunnels_field(&rec->tunnels, tr->element[i]->str,
                              tr->element[i + 1]->str);
    return 1;
}
