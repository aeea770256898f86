/*
 * The tunnel: one CONNECT request from its lookup to its end.  It owns
 * the request's answers (ngx_pico_send(), ngx_pico_reply() before the 200,
 * ngx_pico_finish() after it), everything the request holds
 * (ngx_pico_release(): the lookup, the relay, the tunnel slot, the
 * accounting), and the worker's list of tunnels that a deleted session
 * is looked up in.
 *
 *   NONE -> LOOKUP -> CONNECT -> RELAY -> DONE
 *
 * LOOKUP: waiting for Redis (ngx_pico_module.c hears the answer); CONNECT:
 * connecting to the endpoint; RELAY: the 200 is sent; DONE: released.
 * A deletion during CONNECT answers 404, during RELAY it closes the tunnel;
 * during LOOKUP the lookup's own answer tells.
 */

#include "ngx_pico_module.h"

#define NGX_PICO_FLUSH_MS 1000

static void      ngx_pico_tunnel_relay_handler(ngx_pico_relay_t      *rl,
                                               ngx_pico_relay_event_e event,
                                               char                  *why);
static void      ngx_pico_tunnel_client_handler(ngx_http_request_t *r);
static ngx_int_t ngx_pico_tunnel_account(ngx_pico_tunnel_t *t, ngx_int_t open,
                                         ngx_int_t opened);
static void      ngx_pico_tunnel_flush_handler(ngx_event_t *ev);
static void      ngx_pico_tunnel_cleanup(void *data);

void
ngx_pico_tunnel_init(ngx_cycle_t *cycle, ngx_pico_worker_t *w)
{
    struct rlimit         rlim;
    ngx_pico_main_conf_t *pmcf;

    pmcf = w->pmcf;

    ngx_queue_init(&w->tunnels);

    if (pmcf->max_tunnels != 0) {
        return;
    }

    /*
     * Two connections a tunnel.  nginx starts closing connections that
     * wait for a request ("worker_connections are not enough, reusing
     * connections") once fewer than 1/16 of them are free: stay below
     * that, with room for everything else, so the limit is a clean 503.
     */
    pmcf->max_tunnels =
        cycle->connection_n > 256
            ? (cycle->connection_n - cycle->connection_n / 16 - 64) / 2
            : cycle->connection_n / 4;

    /*
     * And two descriptors a tunnel: when worker_connections is set above
     * the open-files limit (worker_rlimit_nofile, set by nginx before
     * this runs), keep 256 descriptors for the listening sockets, Redis,
     * logs, the pipe cache and the 503 itself.
     */
    if (getrlimit(RLIMIT_NOFILE, &rlim) == 0 &&
        rlim.rlim_cur != RLIM_INFINITY && rlim.rlim_cur > 1024 &&
        pmcf->max_tunnels > (rlim.rlim_cur - 256) / 2) {
        pmcf->max_tunnels = (rlim.rlim_cur - 256) / 2;
    }

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "pico: pico_max_tunnels %ui in this worker",
                  pmcf->max_tunnels);
}


/*
 * A fast shutdown (SIGTERM) cuts the tunnels still open without
 * finishing them: queue their "open -1" and last byte deltas; the Redis
 * file's exit flushes them.
 */
void
ngx_pico_tunnel_exit(ngx_pico_worker_t *w)
{
    ngx_queue_t       *q;
    ngx_pico_tunnel_t *t;

    for (q = ngx_queue_head(&w->tunnels); q != ngx_queue_sentinel(&w->tunnels);
         q = ngx_queue_next(q)) {
        t = ngx_queue_data(q, ngx_pico_tunnel_t, queue);

        if (t->accounted) {
            (void)ngx_pico_tunnel_account(t, -1, 0);
            t->accounted = 0;
        }
    }
}


ngx_pico_tunnel_t *
ngx_pico_tunnel_create(ngx_http_request_t *r, ngx_pico_worker_t *w)
{
    ngx_pico_tunnel_t  *t;
    ngx_pool_cleanup_t *cln;

    t = ngx_pcalloc(r->pool, sizeof(ngx_pico_tunnel_t));
    if (t == NULL) {
        return NULL;
    }

    /* whatever way the request ends, what it holds is given back */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_pico_tunnel_cleanup;
    cln->data = t;

    t->request = r;
    t->worker = w;
    t->plcf = ngx_http_get_module_loc_conf(r, ngx_pico_module);

    t->relay.client = r->connection;
    t->relay.pool = r->pool;
    t->relay.worker = w;
    t->relay.plcf = t->plcf;
    t->relay.session_id = &t->session_id;
    t->relay.handler = ngx_pico_tunnel_relay_handler;
    t->relay.data = t;

    ngx_http_set_ctx(r, t, ngx_pico_module);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pico tunnel %p created", t);

    return t;
}


/* takes a tunnel slot; from here on a deletion reaches this request too */
ngx_int_t
ngx_pico_tunnel_reserve(ngx_pico_tunnel_t *t)
{
    ngx_pico_worker_t *w;

    w = t->worker;

    if (w->active >= w->pmcf->max_tunnels) {
        ngx_log_error(NGX_LOG_WARN, t->request->connection->log, 0,
                      "pico: session %V: pico_max_tunnels (%ui) reached",
                      &t->session_id, w->pmcf->max_tunnels);
        return NGX_DECLINED;
    }

    w->active++;
    t->counted = 1;

    ngx_queue_insert_tail(&w->tunnels, &t->queue);
    t->queued = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, t->request->connection->log, 0,
                   "pico tunnel %V: slot %ui taken", &t->session_id, w->active);

    return NGX_OK;
}


/* the session is running at endpoint: connect to it */
void
ngx_pico_tunnel_connect(ngx_pico_tunnel_t *t, ngx_str_t *endpoint)
{
    ngx_http_request_t *r;

    r = t->request;

    t->relay.port = t->port;

    if (t->port) {
        /* ngx_pico_ports.c: the port's own endpoint */
        if (ngx_pico_ports_endpoint(&t->relay, endpoint) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "pico: session %V: no port endpoint for \"%V\"",
                          &t->session_id, endpoint);
            ngx_pico_reply(t, NGX_HTTP_BAD_GATEWAY, "Bad sandbox endpoint\n",
                           NULL);
            return;
        }

    } else {
        t->relay.endpoint.data = ngx_pstrdup(r->pool, endpoint);
        if (t->relay.endpoint.data == NULL) {
            ngx_pico_reply(t, NGX_HTTP_INTERNAL_SERVER_ERROR,
                           "Internal error\n", NULL);
            return;
        }

        t->relay.endpoint.len = endpoint->len;
    }

    t->relay.header_in = r->header_in;
    t->state = NGX_PICO_ST_CONNECT;

    ngx_pico_relay_connect(&t->relay);
}


static void
ngx_pico_tunnel_relay_handler(ngx_pico_relay_t      *rl,
                              ngx_pico_relay_event_e event, char *why)
{
    ngx_time_t         *tp;
    ngx_pico_tunnel_t  *t = rl->data;
    ngx_http_request_t *r;

    r = t->request;

    switch (event) {

    case NGX_PICO_RELAY_FAILED:
        ngx_pico_reply(t, NGX_HTTP_BAD_GATEWAY, why, NULL);
        return;

    case NGX_PICO_RELAY_CONNECTED:
        t->state = NGX_PICO_ST_RELAY;
        r->headers_out.status = NGX_HTTP_OK;
        return;

    case NGX_PICO_RELAY_OPEN:
        tp = ngx_timeofday();
        ngx_pico_metrics_opened(
            t->worker->pmcf, (ngx_msec_int_t)((tp->sec - r->start_sec) * 1000 +
                                              (tp->msec - r->start_msec)));
        t->metered = 1;

        r->read_event_handler = ngx_pico_tunnel_client_handler;
        r->write_event_handler = ngx_pico_tunnel_client_handler;

        t->flush.handler = ngx_pico_tunnel_flush_handler;
        t->flush.data = t;
        t->flush.log = r->connection->log;
        t->flush.cancelable = 1;

        /*
         * queued, sent when Redis is there (ngx_pico_account.c); only a
         * dropped update (out of memory) leaves the tunnel unaccounted,
         * and then its -1 is not sent either
         */
        if (ngx_pico_tunnel_account(t, 1, 1) == NGX_OK) {
            t->accounted = 1;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pico: session %V: tunnel open", &t->session_id);
        return;

    case NGX_PICO_RELAY_ACTIVE:
        if (!t->flush.timer_set && t->accounted) {
            ngx_add_timer(&t->flush, NGX_PICO_FLUSH_MS);
        }

        return;

    default: /* NGX_PICO_RELAY_END */
        ngx_pico_finish(t, why);
        return;
    }
}


static void
ngx_pico_tunnel_client_handler(ngx_http_request_t *r)
{
    ngx_pico_tunnel_t *t;

    t = ngx_http_get_module_ctx(r, ngx_pico_module);

    ngx_pico_relay_process(&t->relay);
}


/* the byte deltas since the last update go with every update */
static ngx_int_t
ngx_pico_tunnel_account(ngx_pico_tunnel_t *t, ngx_int_t open, ngx_int_t opened)
{
    off_t up, down;

    up = t->relay.up.bytes;
    down = t->relay.down.bytes;

    /* deltas not sent while Redis is away go with a later update */
    if (ngx_pico_account(t->worker, t->id, open, opened, up - t->up_reported,
                         down - t->down_reported) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_pico_metrics_bytes(t->worker->pmcf, up - t->up_reported,
                           down - t->down_reported);

    t->up_reported = up;
    t->down_reported = down;

    return NGX_OK;
}


static void
ngx_pico_tunnel_flush_handler(ngx_event_t *ev)
{
    ngx_pico_tunnel_t *t = ev->data;

    (void)ngx_pico_tunnel_account(t, 0, 0);
}


/* the deleted handler of pico:events: closes the session's tunnels */
void
ngx_pico_tunnel_deleted(ngx_pico_worker_t *w, u_char *id)
{
    ngx_queue_t       *q, *next;
    ngx_pico_tunnel_t *t;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0,
                   "pico tunnel session %*s deleted", (size_t)PICO_ID_LEN, id);

    for (q = ngx_queue_head(&w->tunnels); q != ngx_queue_sentinel(&w->tunnels);
         q = next) {
        next = ngx_queue_next(q);
        t = ngx_queue_data(q, ngx_pico_tunnel_t, queue);

        if (ngx_memcmp(t->id, id, PICO_ID_LEN) != 0) {
            continue;
        }

        /* finishing one request never closes another: next stays valid */

        switch (t->state) {

        case NGX_PICO_ST_RELAY:
            ngx_log_error(NGX_LOG_NOTICE, t->request->connection->log, 0,
                          "pico: session %V: deleted, closing its tunnel",
                          &t->session_id);
            ngx_pico_finish(t, "deleted");
            break;

        case NGX_PICO_ST_CONNECT:
            /* looked up just before the deletion: it is gone now */
            ngx_pico_reply(t, NGX_HTTP_NOT_FOUND, "Session not found\n", NULL);
            break;

        default:
            /* a lookup in flight: its answer tells */
            break;
        }
    }
}


/* the subscribed handler: deletions published while away were lost */
void
ngx_pico_tunnel_recheck(ngx_pico_worker_t *w)
{
    ngx_queue_t       *q;
    ngx_pico_tunnel_t *t;

    for (q = ngx_queue_head(&w->tunnels); q != ngx_queue_sentinel(&w->tunnels);
         q = ngx_queue_next(q)) {
        t = ngx_queue_data(q, ngx_pico_tunnel_t, queue);

        if (ngx_pico_redis_recheck(w, t->id) != NGX_OK) {
            return;
        }
    }
}


void
ngx_pico_set_status(ngx_pico_tunnel_t *t, char *status)
{
    /* the first reason sticks: later ones are consequences */
    if (t->status.len == 0) {
        t->status.data = (u_char *)status;
        t->status.len = ngx_strlen(status);
    }
}


/*
 * A short text/plain answer; the connection closes after it.  header is
 * the field that goes with the code, or NULL: Allow for a 405,
 * WWW-Authenticate for a 401.
 */
ngx_int_t
ngx_pico_send(ngx_http_request_t *r, ngx_uint_t code, char *body, char *header)
{
    size_t           len;
    ngx_int_t        rc;
    ngx_buf_t       *b;
    ngx_chain_t      out;
    ngx_table_elt_t *h;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0, "pico send %ui",
                   code);

    ngx_pico_metrics_answer(ngx_http_get_module_main_conf(r, ngx_pico_module),
                            code);

    len = ngx_strlen(body);

    r->headers_out.status = code;
    r->headers_out.content_length_n = (off_t)len;
    /* the answer to a paused session is JSON (ngx_pico_check_record) */
    if (body[0] == '{') {
        ngx_str_set(&r->headers_out.content_type, "application/json");

    } else {
        ngx_str_set(&r->headers_out.content_type, "text/plain");
    }
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->keepalive = 0;

    if (header) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        h->value.data = (u_char *)header;
        h->value.len = ngx_strlen(header);

        if (code == NGX_HTTP_NOT_ALLOWED) {
            ngx_str_set(&h->key, "Allow");

        } else {
            ngx_str_set(&h->key, "WWW-Authenticate");
            r->headers_out.www_authenticate = h;
        }
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = (u_char *)body;
    b->last = b->pos + len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


/* answers a request still waiting for Redis or the sandbox */
void
ngx_pico_reply(ngx_pico_tunnel_t *t, ngx_uint_t code, char *body,
               char *www_authenticate)
{
    ngx_connection_t   *c;
    ngx_http_request_t *r;

    r = t->request;
    c = r->connection;

    switch (code) {
    case NGX_HTTP_NOT_FOUND:
        ngx_pico_set_status(t, "not_found");
        break;
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        ngx_pico_set_status(t, "not_ready");
        break;
    case NGX_HTTP_BAD_GATEWAY:
        ngx_pico_set_status(t, "connect_failed");
        break;
    case NGX_HTTP_CONFLICT:
        ngx_pico_set_status(t, "paused");
        break;
    default:
        ngx_pico_set_status(t, "error");
    }

    ngx_pico_release(t);

    ngx_http_finalize_request(r,
                              ngx_pico_send(r, code, body, www_authenticate));
    ngx_http_run_posted_requests(c);
}


/* closes an open tunnel (or a failed one past the point of answering) */
void
ngx_pico_finish(ngx_pico_tunnel_t *t, char *status)
{
    ngx_connection_t   *c;
    ngx_http_request_t *r;

    r = t->request;
    c = r->connection;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0, "pico tunnel %V finish: %s",
                   &t->session_id, status);

    ngx_pico_set_status(t, status);
    ngx_pico_release(t);

    ngx_http_finalize_request(r, NGX_ERROR);
    ngx_http_run_posted_requests(c);
}


/* gives back everything a tunnel holds; safe to call more than once */
void
ngx_pico_release(ngx_pico_tunnel_t *t)
{
    if (t->released) {
        return;
    }

    t->released = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, t->request->connection->log, 0,
                   "pico tunnel %p release, state %d", t, (int)t->state);

    if (t->lookup) {
        ngx_pico_redis_lookup_cancel(t->lookup);
        t->lookup = NULL;
    }

    if (t->queued) {
        ngx_queue_remove(&t->queue);
        t->queued = 0;
    }

    ngx_pico_relay_close(&t->relay);

    if (t->flush.timer_set) {
        ngx_del_timer(&t->flush);
    }

    if (t->accounted) {
        (void)ngx_pico_tunnel_account(t, -1, 0);
        t->accounted = 0;
    }

    if (t->metered) {
        ngx_pico_metrics_closed(t->worker->pmcf);
        t->metered = 0;
    }

    if (t->counted) {
        t->worker->active--;
        t->counted = 0;
    }

    t->state = NGX_PICO_ST_DONE;
}


static void
ngx_pico_tunnel_cleanup(void *data)
{
    ngx_pico_tunnel_t *t = data;

    ngx_pico_release(t);
}
