/*
 * events.c - lifecycle events, the core's side: emitting them where a
 * session changes (lifecycle.c, liveness.c, reconcile.c, the reaper's
 * "expiring" check) and turning a stored entry into Server-Sent Events
 * text. The stream entry holds type, session_id, at (unix ms) and per
 * type reason, expires_at (unix s) and ttl; the SSE data is that as JSON
 * with RFC 3339 times, so it reads like the session object.
 * tunnel_opened and tunnel_closed are written by the nginx module's
 * accounting script (type, session_id, at only) and rendered the same way:
 * any type of [a-z_] is passed through.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/events.h"
#include "core/util.h"

void events_emit(pico_app *app, const char *id, const char *type,
                 const char *reason)
{
    const char *pairs[] = {"reason", reason ? reason : ""};

    if (store_event_add(app->st, id, type, pairs, reason ? 1 : 0) < 0)
        log_warn("event %s of %s not stored", type, id);
}

/* digits, at most 20, fitting 64 bits; returns the end or NULL */
static const char *u64_end(const char *s)
{
    unsigned long long v = 0;
    const char *p = s;

    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (18446744073709551615ULL - d) / 10)
            return NULL;
        v = v * 10 + d;
        p++;
    }
    return p > s ? p : NULL;
}

int event_id_valid(const char *s)
{
    const char *p = u64_end(s);

    if (p == NULL || *p != '-')
        return 0;
    p = u64_end(p + 1);
    return p != NULL && *p == '\0';
}

int event_id_cmp(const char *a, const char *b)
{
    unsigned long long am = strtoull(a, NULL, 10), bm = strtoull(b, NULL, 10);
    unsigned long long as = strtoull(strchr(a, '-') + 1, NULL, 10);
    unsigned long long bs = strtoull(strchr(b, '-') + 1, NULL, 10);

    if (am != bm)
        return am < bm ? -1 : 1;
    if (as != bs)
        return as < bs ? -1 : 1;
    return 0;
}

static long long ll_or_0(const char *s)
{
    long long v = 0;

    return parse_ll(s, &v) == 0 ? v : 0;
}

static json_t *rfc3339(long long t)
{
    char buf[PICO_TIME_MAX + 1];

    if (t <= 0 || format_rfc3339(t, buf, sizeof(buf)) < 0)
        return json_null();
    return json_string(buf);
}

/* The entry's fields as the event's JSON data. */
static json_t *event_json(const char **fields, int nfields)
{
    json_t *o = json_object();
    size_t i;

    for (i = 0; i < (size_t)nfields; i++) {
        const char *k = fields[2 * i], *v = fields[2 * i + 1];
        long long n = 0;
        if (!strcmp(k, "at"))
            json_object_set_new(o, "time", rfc3339(ll_or_0(v) / 1000));
        else if (!strcmp(k, "expires_at"))
            json_object_set_new(o, k, rfc3339(ll_or_0(v)));
        else if (!strcmp(k, "ttl") && parse_ll(v, &n) == 0)
            json_object_set_new(o, k, json_integer(n));
        else
            json_object_set_new(o, k, json_string(v));
    }
    return o;
}

static const char *field(const char **fields, int nfields, const char *name)
{
    size_t i;

    for (i = 0; i < (size_t)nfields; i++)
        if (!strcmp(fields[2 * i], name))
            return fields[2 * i + 1];
    return "";
}

char *event_sse(const char *event_id, const char **fields, int nfields,
                const char *only_session, int *terminated)
{
    const char *type = field(fields, nfields, "type");
    json_t *o;
    char *data, *out = NULL;
    size_t n;

    if (only_session &&
        strcmp(field(fields, nfields, "session_id"), only_session) != 0)
        return NULL;
    if (type[0] == '\0' ||
        strspn(type, "abcdefghijklmnopqrstuvwxyz_") != strlen(type))
        return NULL; /* not an entry of ours: nothing that could break SSE */
    *terminated = !strcmp(type, "terminated");
    o = event_json(fields, nfields);
    json_object_set_new(o, "id", json_string(event_id));
    data = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (data == NULL)
        return NULL;
    /* type is one of ours: [a-z_]; JSON text has no raw newline */
    n = strlen(event_id) + strlen(type) + strlen(data) + 32;
    out = malloc(n);
    if (out)
        snprintf(out, n, "id: %s\nevent: %s\ndata: %s\n\n", event_id, type,
                 data);
    free(data);
    return out;
}
