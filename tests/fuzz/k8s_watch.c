/* libFuzzer harness: a Kubernetes watch stream as the kubernetes driver
 * reads it while a pod starts: k8s_client.c's write callback splits the
 * stream into newline-delimited JSON events, and runtime_k8s.c's
 * on_pod_event judges each (Ready with an IP, failed, deleted, 410 Gone).
 * Both are static, so their files are compiled into this one.
 *
 * The input's first byte picks how the stream is cut into the pieces curl
 * hands over (and, with its top bit, a failed watch: a non-200 answer
 * whose Status object becomes the error message); the rest is the stream.
 * Checked: cut anywhere, the same events reach the callback as when the
 * stream is split at its newlines in one go, and the pod ends in the same
 * state; that state is consistent (Ready has an IP, a failure a reason). */
#include <stdint.h>

/* NOLINTNEXTLINE(bugprone-suspicious-include): its static on_watch */
#include "runtime/kubernetes/k8s_client.c"
/* NOLINTNEXTLINE(bugprone-suspicious-include): its static on_pod_event */
#include "runtime/kubernetes/k8s_ready.c"

#define EVENTS_MAX 64

typedef struct {
    ready_state st;
    int n;
    char type[EVENTS_MAX][16];
    json_t *obj[EVENTS_MAX];
} events;

static void check(int ok)
{
    if (!ok)
        abort();
}

static int record(const char *type, json_t *obj, void *arg)
{
    events *e = arg;

    if (e->n < EVENTS_MAX) {
        snprintf(e->type[e->n], sizeof(e->type[0]), "%s", type);
        e->obj[e->n++] = json_deep_copy(obj);
    }
    return on_pod_event(type, obj, &e->st);
}

static void events_free(events *e)
{
    int i;

    for (i = 0; i < e->n; i++)
        json_decref(e->obj[i]);
}

/* What the stream means, split at its newlines in one go (k8s_watch
 * also takes a last line that has no newline). */
static void reference(const char *p, size_t len, events *e)
{
    size_t start = 0, i;

    for (i = 0; i <= len; i++) {
        json_t *ev, *obj;
        const char *type;
        int stop = 0;

        if (i < len && p[i] != '\n')
            continue;
        if (i == len && i == start)
            break;
        ev = json_loadb(p + start, i - start, 0, NULL);
        type = json_string_value(json_object_get(ev, "type"));
        obj = json_object_get(ev, "object");
        if (type != NULL && json_is_object(obj))
            stop = record(type, obj, e);
        json_decref(ev);
        if (stop)
            return;
        start = i + 1;
    }
}

/* The same stream through on_watch, in pieces of 1..64 bytes. */
static void chunked(const char *p, size_t len, unsigned seed, events *e)
{
    watch_state w;
    size_t off = 0;

    memset(&w, 0, sizeof(w));
    w.cb = record;
    w.arg = e;
    w.status = 200; /* on_watch asks curl only while it is 0 */
    while (off < len) {
        size_t n = 1 + (seed >> 16) % 64;

        seed = seed * 1103515245u + 12345u;
        if (n > len - off)
            n = len - off;
        if (on_watch((char *)p + off, 1, n, &w) != n) {
            check(w.stopped); /* the only reason to refuse a piece */
            break;
        }
        off += n;
    }
    if (!w.stopped && w.line.len > 0)
        (void)watch_line(&w, w.line.data, w.line.len);
    free(w.line.data);
}

/* A failed watch: the whole answer is one Status object. */
static void failed(const char *p, size_t len)
{
    watch_state w;
    k8s_resp r = {410, NULL, 0};
    char err[256] = "";

    memset(&w, 0, sizeof(w));
    w.status = 410;
    check(on_watch((char *)p, 1, len, &w) == len && w.line.len == len);
    if (w.line.len > 0)
        r.body = json_loadb(w.line.data, w.line.len, 0, NULL);
    k8s_error(&r, "kubernetes API watch", err, sizeof(err));
    check(err[0] != '\0');
    k8s_resp_free(&r);
    free(w.line.data);
}

static void check_state(const ready_state *st)
{
    check(st->done >= -1 && st->done <= 1);
    check(st->done != 1 || (st->ip[0] != '\0' && strlen(st->ip) < 64));
    check(st->done != -1 || st->fail[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    events *a, *b;
    const char *p;
    size_t len;
    int i;

    if (size < 1)
        return 0;
    p = (const char *)data + 1;
    len = size - 1;
    if (data[0] & 0x80) {
        failed(p, len);
        return 0;
    }
    a = calloc(1, sizeof(*a));
    b = calloc(1, sizeof(*b));
    check(a != NULL && b != NULL);
    reference(p, len, a);
    chunked(p, len, data[0], b);

    check(a->n == b->n);
    for (i = 0; i < a->n; i++)
        check(strcmp(a->type[i], b->type[i]) == 0 &&
              json_equal(a->obj[i], b->obj[i]));
    check(a->st.done == b->st.done && a->st.gone == b->st.gone);
    check(strcmp(a->st.rv, b->st.rv) == 0 && strcmp(a->st.ip, b->st.ip) == 0 &&
          strcmp(a->st.why, b->st.why) == 0 &&
          strcmp(a->st.fail, b->st.fail) == 0);
    check_state(&b->st);

    events_free(a);
    events_free(b);
    free(a);
    free(b);
    return 0;
}
