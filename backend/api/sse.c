/*
 * sse.c - Server-Sent Events over libmicrohttpd. The response is a
 * content reader (MHD_create_response_from_callback): each call copies
 * out what is pending, or waits in Redis (XREAD BLOCK, one bounded turn
 * at a time) for the next events. The connection's own thread runs it
 * (one thread per connection), so waiting blocks nobody else.
 *
 * Bounded: a turn waits at most PICO_SSE_BLOCK_MS, a quiet stream sends a
 * comment every PICO_SSE_HEARTBEAT_MS, so a vanished client fails a write
 * within that and a slow one is cut by libmicrohttpd's connection
 * timeout; a stopping backend ends every stream within a turn. The
 * caller bounds how many streams run (they hold a thread each).
 */
#include <stdlib.h>
#include <string.h>

#include "api/sse.h"
#include "core/events.h"
#include "core/session.h"
#include "core/util.h"

#define SSE_BATCH 64

typedef struct {
    pico_app *app;
    char principal[PICO_PRINCIPAL_MAX + 1];
    char only[PICO_ID_LEN + 1]; /* "" = every session */
    char after[48];             /* the last stream id read */
    char *pending;
    size_t len, off;
    long long last_sent; /* mono ms */
    int done;
    atomic_int *streams;
    const atomic_int *stopping;
} sse_stream;

static void append(sse_stream *s, const char *text)
{
    size_t n = strlen(text);
    char *t = realloc(s->pending, s->len + n + 1);

    if (t == NULL)
        return; /* dropped; the client can resume from an id it has */
    memcpy(t + s->len, text, n + 1);
    s->pending = t;
    s->len += n;
}

static void take_event(const char *event_id, const char **fields, int nfields,
                       void *arg)
{
    sse_stream *s = arg;
    int terminated = 0;
    char *text;

    copy_str(s->after, sizeof(s->after), event_id);
    if (s->done)
        return;
    text = event_sse(event_id, fields, nfields, s->only[0] ? s->only : NULL,
                     &terminated);
    if (text == NULL)
        return;
    append(s, text);
    free(text);
    if (terminated && s->only[0])
        s->done = 1; /* that session has no more events */
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    sse_stream *s = cls;

    for (;;) {
        if (s->off < s->len) {
            size_t n = s->len - s->off < max ? s->len - s->off : max;
            memcpy(buf, s->pending + s->off, n);
            s->off += n;
            return (ssize_t)n;
        }
        free(s->pending);
        s->pending = NULL;
        s->len = s->off = 0;
        if (s->done || atomic_load(s->stopping))
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (store_event_read(s->app->st, s->principal, s->after,
                             PICO_SSE_BLOCK_MS, SSE_BATCH, take_event, s) < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR; /* client resumes */
        if (s->len == 0 && mono_ms() - s->last_sent >= PICO_SSE_HEARTBEAT_MS)
            append(s, ": keepalive\n\n");
        if (s->len > 0)
            s->last_sent = mono_ms();
    }
}

static void sse_free(void *cls)
{
    sse_stream *s = cls;

    atomic_fetch_sub(s->streams, 1);
    free(s->pending);
    free(s);
}

struct MHD_Response *sse_response(pico_app *app, const char *principal,
                                  const char *only_session, const char *after,
                                  atomic_int *streams,
                                  const atomic_int *stopping)
{
    sse_stream *s = calloc(1, sizeof(*s));
    struct MHD_Response *r;

    if (s == NULL)
        return NULL;
    s->app = app;
    copy_str(s->principal, sizeof(s->principal), principal);
    copy_str(s->only, sizeof(s->only), only_session ? only_session : "");
    copy_str(s->after, sizeof(s->after), after);
    s->streams = streams;
    s->stopping = stopping;
    s->last_sent = mono_ms();
    /* Something at once, so the client sees the header now, and how soon
     * to reconnect. */
    append(s, "retry: 1000\n: connected\n\n");
    atomic_fetch_add(streams, 1);
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s,
                                          sse_free);
    if (r == NULL) {
        sse_free(s);
        return NULL;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    /* nginx passes it on as it comes instead of buffering it */
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    return r;
}
