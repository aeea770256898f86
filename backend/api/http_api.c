/*
 * http_api.c - routes and handlers of the REST API (docs/api.md).
 *
 * libmicrohttpd calls handle() several times per request: first with the
 * headers, then with pieces of the body, then once more to get an answer.
 * The body is kept up to PICO_BODY_MAX bytes; beyond that it is read and
 * dropped so the answer (413) still reaches a client or proxy that sends
 * the whole body before it reads.
 *
 * Trust boundary: everything from the request is checked here or in
 * session.c before it reaches Redis keys, the runtime or a log line: ids
 * must be canonical UUIDs, bodies pass session_parse_request().
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api/http_api.h"
#include "api/listen.h"
#include "api/metrics.h"
#include "api/preview_api.h"
#include "api/sse.h"
#include "core/events.h"
#include "core/idempotency.h"
#include "core/lifecycle.h"
#include "core/metrics.h"
#include "core/pause.h"
#include "api/tokens.h"
#include "core/util.h"

/* Bodies declared larger than this are refused without reading them. */
#define BODY_HARD_MAX (1024LL * 1024)
#define DRAIN_WAIT_MS 30000

struct http_api {
    pico_app *app;
    struct MHD_Daemon *daemon;
    int listen_fd;
    atomic_int inflight;
    atomic_int streams;  /* event streams open (each holds a thread) */
    atomic_int stopping; /* set when draining: event streams end */
};

typedef struct {
    char *body;
    size_t len;
    int too_large;
} request;

typedef struct {
    struct MHD_Connection *conn;
    http_api *h;
    const char *method;
    char principal[PICO_PRINCIPAL_MAX + 1];
} call;

static enum MHD_Result send_json(call *c, int status, json_t *body,
                                 const char *hname, const char *hvalue)
{
    char *text =
        body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    struct MHD_Response *r;
    enum MHD_Result rc;

    json_decref(body);
    if (text == NULL)
        text = strdup("{\"error\":{\"code\":\"internal\",\"message\":"
                      "\"cannot encode the answer\"}}");
    if (text == NULL)
        return MHD_NO;
    r = MHD_create_response_from_buffer(strlen(text), text,
                                        MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (hname)
        MHD_add_response_header(r, hname, hvalue);
    rc = MHD_queue_response(c->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_error(call *c, const api_error *e)
{
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", e->code,
                             "message", e->message);
    const char *hname = NULL, *hvalue = NULL;

    if (e->status == 401) {
        hname = "WWW-Authenticate";
        hvalue = "Bearer realm=\"pico\"";
    }
    return send_json(c, e->status, body, hname, hvalue);
}

static enum MHD_Result fail(call *c, int status, const char *code,
                            const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum MHD_Result fail(call *c, int status, const char *code,
                            const char *fmt, ...)
{
    api_error e;
    va_list ap;

    e.status = status;
    e.code = code;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    return send_error(c, &e);
}

static enum MHD_Result not_allowed(call *c, const char *allow)
{
    json_t *body =
        json_pack("{s:{s:s,s:s}}", "error", "code", "method_not_allowed",
                  "message", "method not allowed on this path");

    return send_json(c, 405, body, "Allow", allow);
}

static int is_get(const char *m)
{
    return !strcmp(m, "GET") || !strcmp(m, "HEAD");
}

/* "application/json", any case, optionally followed by parameters. */
static int content_type_json(const char *ct)
{
    size_t n = strlen("application/json");

    if (ct == NULL)
        return 0;
    while (*ct == ' ')
        ct++;
    if (strncasecmp(ct, "application/json", n) != 0)
        return 0;
    ct += n;
    while (*ct == ' ')
        ct++;
    return *ct == '\0' || *ct == ';';
}

static enum MHD_Result handle_health(call *c)
{
    pico_app *app = c->h->app;
    char rerr[256] = "", terr[256] = "";
    int redis_ok = store_ping(app->st, rerr, sizeof(rerr)) == 0;
    int rt_ok = app->ops->health(app->rt, terr, sizeof(terr)) == 0;
    json_t *body;

    body = json_pack("{s:s,s:s,s:s}", "status",
                     redis_ok && rt_ok ? "ok" : "unavailable", "redis",
                     redis_ok ? "ok" : rerr, "runtime",
                     rt_ok ? "ok" : (terr[0] ? terr : "error"));
    return send_json(c, redis_ok && rt_ok ? 200 : 503, body, NULL, NULL);
}

static enum MHD_Result handle_metrics(call *c)
{
    struct MHD_Response *r;
    enum MHD_Result rc;

    if (!metrics_peer_local(c->conn))
        return fail(c, 403, "forbidden",
                    "metrics are served to this host only");
    r = metrics_response(c->h->app);
    if (r == NULL)
        return fail(c, 500, "internal", "out of memory");
    rc = MHD_queue_response(c->conn, 200, r);
    MHD_destroy_response(r);
    return rc;
}

/* 413 or 415 for a body that cannot be read as JSON: 1 answered. */
static int refuse_body(call *c, const request *req, enum MHD_Result *answer)
{
    const char *ct = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_TYPE);

    if (req->too_large) {
        *answer = fail(c, 413, "body_too_large", "body: larger than %d bytes",
                       PICO_BODY_MAX);
        return 1;
    }
    if (req->len > 0 && !content_type_json(ct)) {
        *answer = fail(c, 415, "unsupported_media_type",
                       "Content-Type must be application/json");
        return 1;
    }
    return 0;
}

static enum MHD_Result handle_create(call *c, request *req)
{
    pico_app *app = c->h->app;
    enum MHD_Result answer;
    const char *idem;
    char err[512];
    api_error e;
    session s;
    session_record rec;
    json_t *body;
    char location[64];
    int rc;

    if (refuse_body(c, req, &answer)) {
        metrics_create_failed(req->too_large ? "body_too_large"
                                             : "unsupported_media_type");
        return answer;
    }
    idem = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND,
                                       "Idempotency-Key");
    if (idem && !idem_key_valid(idem, err, sizeof(err))) {
        metrics_create_failed("invalid_request");
        return fail(c, 400, "invalid_request", "%s", err);
    }
    memset(&s, 0, sizeof(s));
    if (session_parse_request(&app->cfg, req->body, req->len, &s, err,
                              sizeof(err)) < 0) {
        metrics_create_failed("invalid_request");
        return fail(c, 400, "invalid_request", "%s", err);
    }
    if (app->ops->image_exists(app->rt, s.image) != 1) {
        metrics_create_failed("unknown_image");
        session_free(&s);
        return fail(c, 400, "invalid_request", "image: unknown image %s",
                    s.image);
    }
    if (idem == NULL) {
        rc = lifecycle_create(app, &s, c->principal, &e) < 0 ? -1 : 201;
    } else {
        rc = idem_create(app, &s, c->principal, idem, req->body, req->len, &rec,
                         &e);
    }
    if (rc < 0) {
        metrics_create_failed(e.code);
        session_free(&s);
        return send_error(c, &e);
    }
    if (rc == 200) {
        session_free(&s);
        body = session_to_json(&rec.s, &rec.tunnels);
        snprintf(location, sizeof(location), "/v1/sessions/%s", rec.s.id);
        session_free(&rec.s);
        return send_json(c, 200, body, "Location", location);
    }
    body = session_to_json(&s, NULL);
    snprintf(location, sizeof(location), "/v1/sessions/%s", s.id);
    session_free(&s);
    return send_json(c, 201, body, "Location", location);
}

static enum MHD_Result handle_list(call *c)
{
    session_record *recs;
    size_t n, i;
    api_error e;
    json_t *arr, *body;

    if (lifecycle_list(c->h->app, c->principal, &recs, &n, &e) < 0)
        return send_error(c, &e);
    arr = json_array();
    for (i = 0; i < n; i++)
        json_array_append_new(arr,
                              session_to_json(&recs[i].s, &recs[i].tunnels));
    lifecycle_free_list(recs, n);
    body = json_pack("{s:o,s:I}", "sessions", arr, "total", (json_int_t)n);
    return send_json(c, 200, body, NULL, NULL);
}

static enum MHD_Result handle_get(call *c, const char *id)
{
    session_record rec;
    api_error e;
    json_t *body;

    if (lifecycle_get(c->h->app, id, c->principal, &rec, &e) < 0)
        return send_error(c, &e);
    body = session_to_json(&rec.s, &rec.tunnels);
    session_free(&rec.s);
    return send_json(c, 200, body, NULL, NULL);
}

static enum MHD_Result handle_patch(call *c, const char *id, request *req)
{
    enum MHD_Result answer;
    session_record rec;
    char err[512];
    long long ttl = 0;
    api_error e;
    json_t *body;

    if (refuse_body(c, req, &answer))
        return answer;
    if (session_parse_patch(&c->h->app->cfg, req->body, req->len, &ttl, err,
                            sizeof(err)) < 0)
        return fail(c, 400, "invalid_request", "%s", err);
    if (lifecycle_extend(c->h->app, id, c->principal, ttl, &rec, &e) < 0)
        return send_error(c, &e);
    body = session_to_json(&rec.s, &rec.tunnels);
    session_free(&rec.s);
    return send_json(c, 200, body, NULL, NULL);
}

static enum MHD_Result handle_delete(call *c, const char *id)
{
    api_error e;

    if (lifecycle_delete(c->h->app, id, c->principal, &e) < 0)
        return send_error(c, &e);
    return send_json(
        c, 200,
        json_pack("{s:s,s:s}", "session_id", id, "status", "terminated"), NULL,
        NULL);
}

/* POST /v1/sessions/<id>/pause and /resume (core/pause.c); no body. */
static enum MHD_Result handle_pause(call *c, const char *id, int pause)
{
    session_record rec;
    api_error e;
    json_t *body;

    if (strcmp(c->method, "POST") != 0)
        return not_allowed(c, "POST");
    if ((pause ? lifecycle_pause(c->h->app, id, c->principal, &rec, &e)
               : lifecycle_resume(c->h->app, id, c->principal, &rec, &e)) < 0)
        return send_error(c, &e);
    body = session_to_json(&rec.s, &rec.tunnels);
    session_free(&rec.s);
    return send_json(c, 200, body, NULL, NULL);
}

/* Where a stream resumes: after a Last-Event-ID the principal's stream
 * still holds; 1 with after set, or 0 with the answer sent. */
static int resume_point(call *c, const char *last, char *after, size_t len,
                        enum MHD_Result *answer)
{
    char first[48];
    int rc;

    if (!event_id_valid(last)) {
        *answer = fail(c, 400, "invalid_request",
                       "Last-Event-ID: must be an event id such as "
                       "1761277500000-0");
        return 0;
    }
    rc = store_event_check(c->h->app->st, c->principal, last, first,
                           sizeof(first));
    if (rc == 1) {
        copy_str(after, len, last);
        return 1;
    }
    if (rc < 0)
        *answer = fail(c, 503, "redis_unavailable", "cannot read events");
    else if (rc == 2 || event_id_cmp(last, first) < 0)
        *answer = fail(c, 410, "event_expired",
                       "Last-Event-ID: %s is older than the events kept; "
                       "reconnect without it",
                       last);
    else
        *answer =
            fail(c, 400, "unknown_event",
                 "Last-Event-ID: %s is not an event of this stream", last);
    return 0;
}

/* GET /v1/events (id NULL) and /v1/sessions/<id>/events: Server-Sent
 * Events. Without Last-Event-ID the first follows new events only, the
 * second starts with the session's retained history. */
static enum MHD_Result handle_events(call *c, const char *id)
{
    pico_app *app = c->h->app;
    const char *last =
        MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Last-Event-ID");
    int max = app->cfg.threads / 2 > 0 ? app->cfg.threads / 2 : 1;
    char after[48] = "0-0";
    enum MHD_Result answer;
    struct MHD_Response *r;

    if (strcmp(c->method, "GET") != 0)
        return not_allowed(c, "GET");
    if (last && !resume_point(c, last, after, sizeof(after), &answer))
        return answer;
    if (last == NULL && id != NULL) {
        session_record rec;
        api_error e;
        if (lifecycle_get(app, id, c->principal, &rec, &e) < 0)
            return send_error(c, &e);
        session_free(&rec.s);
    } else if (last == NULL && store_event_last(app->st, c->principal, after,
                                                sizeof(after)) < 0) {
        return fail(c, 503, "redis_unavailable", "cannot read events");
    }
    if (atomic_load(&c->h->streams) >= max)
        return fail(c, 429, "too_many_streams",
                    "at most %d event streams may be open", max);
    r = sse_response(app, c->principal, id, after, &c->h->streams,
                     &c->h->stopping);
    if (r == NULL)
        return MHD_NO;
    answer = MHD_queue_response(c->conn, 200, r);
    MHD_destroy_response(r);
    return answer;
}

/* POST /v1/sessions/<id>/ports/<port>/preview: preview_api.c */
static enum MHD_Result handle_ports(call *c, const char *id, const char *rest,
                                    request *req)
{
    enum MHD_Result answer;
    api_error e;
    json_t *body;

    if (strcmp(c->method, "POST") != 0)
        return not_allowed(c, "POST");
    if (refuse_body(c, req, &answer))
        return answer;
    body = preview_api_post(c->h->app, c->conn, id, c->principal, rest,
                            req->body, req->len, &e);
    return body ? send_json(c, 201, body, NULL, NULL) : send_error(c, &e);
}

/* /v1/sessions/<rest>: <id>, <id>/tunnel, <id>/events, <id>/ports/... */
static enum MHD_Result route_session(call *c, const char *rest, request *req)
{
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    char id[PICO_ID_LEN + 1];

    if (idlen != PICO_ID_LEN) {
        return fail(c, 400, "invalid_session_id", "session id must be a UUID");
    }
    memcpy(id, rest, PICO_ID_LEN);
    id[PICO_ID_LEN] = '\0';
    if (!uuid_valid(id))
        return fail(c, 400, "invalid_session_id", "session id must be a UUID");
    if (slash) {
        if (strcmp(slash, "/tunnel") == 0)
            return not_allowed(c, "CONNECT"); /* nginx's module serves it */
        if (strcmp(slash, "/events") == 0)
            return handle_events(c, id);
        if (!strcmp(slash, "/pause") || !strcmp(slash, "/resume"))
            return handle_pause(c, id, slash[1] == 'p');
        if (strncmp(slash, "/ports/", 7) == 0)
            return handle_ports(c, id, slash + 7, req);
        return fail(c, 404, "not_found", "no such path");
    }
    if (is_get(c->method))
        return handle_get(c, id);
    if (!strcmp(c->method, "PATCH"))
        return handle_patch(c, id, req);
    if (!strcmp(c->method, "DELETE"))
        return handle_delete(c, id);
    return not_allowed(c, "GET, HEAD, PATCH, DELETE");
}

/* Fills c->principal, or answers 401/503 and returns 0. */
static int authorize(call *c, enum MHD_Result *answer)
{
    const char *hdr;
    int rc;

    c->principal[0] = '\0';
    if (!c->h->app->cfg.auth)
        return 1;
    hdr = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND,
                                      MHD_HTTP_HEADER_AUTHORIZATION);
    rc = token_check_header(c->h->app->st, hdr, c->principal,
                            sizeof(c->principal));
    if (rc == 1)
        return 1;
    if (rc < 0)
        *answer = fail(c, 503, "redis_unavailable", "cannot check the token");
    else
        *answer = fail(c, 401, "unauthorized",
                       hdr ? "invalid or revoked token"
                           : "Authorization: Bearer <token> required");
    return 0;
}

static enum MHD_Result dispatch(call *c, const char *url, request *req)
{
    static const char prefix[] = "/v1/sessions/";
    enum MHD_Result answer;

    if (!strcmp(url, "/health")) {
        if (!is_get(c->method))
            return not_allowed(c, "GET, HEAD");
        return handle_health(c);
    }
    if (!strcmp(url, "/metrics")) {
        if (!is_get(c->method))
            return not_allowed(c, "GET, HEAD");
        return handle_metrics(c);
    }
    if (!authorize(c, &answer))
        return answer;
    if (!strcmp(url, "/v1/sessions")) {
        if (is_get(c->method))
            return handle_list(c);
        if (!strcmp(c->method, "POST"))
            return handle_create(c, req);
        return not_allowed(c, "GET, HEAD, POST");
    }
    if (!strcmp(url, "/v1/events"))
        return handle_events(c, NULL);
    if (!strncmp(url, prefix, sizeof(prefix) - 1))
        return route_session(c, url + sizeof(prefix) - 1, req);
    return fail(c, 404, "not_found", "no such path");
}

/* Keeps up to PICO_BODY_MAX bytes of body; drops the rest. */
static void take_body(request *req, const char *data, size_t n)
{
    char *t;

    if (req->too_large || req->len + n > PICO_BODY_MAX) {
        req->too_large = 1;
        return;
    }
    t = realloc(req->body, req->len + n + 1);
    if (t == NULL) {
        req->too_large = 1;
        return;
    }
    memcpy(t + req->len, data, n);
    req->len += n;
    t[req->len] = '\0';
    req->body = t;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    http_api *h = cls;
    request *req = *con_cls;
    call c;

    if (req == NULL) {
        const char *cl = MHD_lookup_connection_value(
            conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        long long declared;
        req = calloc(1, sizeof(*req));
        if (req == NULL)
            return MHD_NO;
        *con_cls = req;
        atomic_fetch_add(&h->inflight, 1);
        if (cl && parse_ll(cl, &declared) == 0 && declared > PICO_BODY_MAX) {
            req->too_large = 1;
            if (declared > BODY_HARD_MAX) {
                c = (call){conn, h, method, ""};
                return fail(&c, 413, "body_too_large",
                            "body: larger than %d bytes", PICO_BODY_MAX);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        take_body(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    c = (call){conn, h, method, ""};
    return dispatch(&c, url, req);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    http_api *h = cls;
    request *req = *con_cls;

    if (req == NULL)
        return;
    free(req->body);
    free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&h->inflight, 1);
}

/* libmicrohttpd's messages: fmt is its printf format for ap. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];

    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_warn("http: %s", line);
}

http_api *http_api_start(pico_app *app, char *err, size_t errlen)
{
    http_api *h = calloc(1, sizeof(*h));
    const char *l = app->cfg.listen;

    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->app = app;
    atomic_init(&h->inflight, 0);
    atomic_init(&h->streams, 0);
    atomic_init(&h->stopping, 0);
    h->listen_fd = api_listen(l, app->cfg.listen_group, err, errlen);
    if (h->listen_fd < 0) {
        free(h);
        return NULL;
    }
    h->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
            MHD_USE_ITC | MHD_USE_ERROR_LOG,
        0, NULL, NULL, handle, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, h->listen_fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)app->cfg.threads, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)120, MHD_OPTION_NOTIFY_COMPLETED, completed, h,
        MHD_OPTION_END);
    if (h->daemon == NULL) {
        snprintf(err, errlen, "cannot start the HTTP server");
        close(h->listen_fd);
        free(h);
        return NULL;
    }
    log_info("listening on %s", l);
    return h;
}

void http_api_stop(http_api *h)
{
    int fd, waited = 0;

    if (h == NULL)
        return;
    /* No new connections; requests in flight (a create may take seconds)
     * finish and get their answer before the daemon goes. */
    atomic_store(&h->stopping, 1); /* event streams end within a turn */
    fd = MHD_quiesce_daemon(h->daemon);
    if (fd >= 0)
        close(fd);
    if (!strncmp(h->app->cfg.listen, "unix:", 5))
        unlink(h->app->cfg.listen + 5);
    while (atomic_load(&h->inflight) > 0 && waited < DRAIN_WAIT_MS) {
        struct timespec ts = {0, 20L * 1000000};
        nanosleep(&ts, NULL);
        waited += 20;
    }
    MHD_stop_daemon(h->daemon);
    free(h);
}
