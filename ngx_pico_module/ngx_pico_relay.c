/*
 * The tunnel itself: connect to the sandbox's endpoint, answer "200
 * Connection Established", then move bytes both ways until both sides
 * have closed, an error, the idle timeout, or the session's deletion.
 *
 * Each direction (ngx_pico_dir_t) first sends its "pre" bytes (what the
 * client pipelined after its request header; for the way down, what is
 * left of the 200), then relays:
 *
 *   splice   socket -> pipe -> socket, no copy through user space; pipes
 *            are borrowed from a per-worker cache only while bytes are in
 *            flight, so an idle tunnel holds none
 *   copy     recv/send through a buffer of pico_buffer_size, allocated
 *            while bytes are in flight and freed when it drains
 *
 * A direction reads only while it has room (pipe or buffer not full), so
 * a slow reader stops its writer (back-pressure).  EOF one way shuts down
 * writing the other way once everything is delivered; the tunnel closes
 * when both ways are shut.
 */

#include "ngx_pico_module.h"

/* after ngx_config.h, which defines _GNU_SOURCE: splice(), pipe2() */
#include <fcntl.h>

#define NGX_PICO_PIPE_CACHE 64
#define NGX_PICO_FLUSH_MS 1000

static u_char ngx_pico_established[] =
    "HTTP/1.1 200 Connection Established\r\n\r\n";

static void ngx_pico_upstream_handler(ngx_event_t *ev);
static void ngx_pico_connected(ngx_pico_tunnel_t *t);
static void ngx_pico_client_handler(ngx_http_request_t *r);
static void ngx_pico_relay(ngx_pico_tunnel_t *t);
static ngx_int_t ngx_pico_relay_dir(ngx_pico_tunnel_t *t, ngx_pico_dir_t *d);
static ngx_int_t ngx_pico_copy_step(ngx_pico_tunnel_t *t, ngx_pico_dir_t *d);
static ngx_int_t ngx_pico_splice_step(ngx_pico_tunnel_t *t, ngx_pico_dir_t *d);
static void ngx_pico_dir_idle(ngx_pico_tunnel_t *t, ngx_pico_dir_t *d);
static ngx_pico_pipe_t *ngx_pico_pipe_get(ngx_pico_tunnel_t *t);
static void ngx_pico_pipe_put(ngx_pico_worker_t *w, ngx_pico_pipe_t *p);
static void ngx_pico_idle_handler(ngx_event_t *ev);
static void ngx_pico_flush_handler(ngx_event_t *ev);

static ngx_int_t ngx_pico_endpoint(ngx_pico_tunnel_t *t, struct sockaddr **sa,
                                   socklen_t *socklen)
{
    size_t len;
    ngx_addr_t addr;
    ngx_str_t *ep;
    struct sockaddr_un *saun;

    ep = &t->endpoint;

    if (ep->len > 5 && ngx_strncmp(ep->data, "unix:", 5) == 0) {
        len = ep->len - 5;

        saun = ngx_pcalloc(t->request->pool, sizeof(struct sockaddr_un));
        if (saun == NULL || ep->data[5] != '/' ||
            len >= sizeof(saun->sun_path)) {
            return NGX_ERROR;
        }

        saun->sun_family = AF_UNIX;
        ngx_memcpy(saun->sun_path, ep->data + 5, len);

        *sa = (struct sockaddr *)saun;
        *socklen = sizeof(struct sockaddr_un);

        return NGX_OK;
    }

    /* an address literal only: never a DNS lookup in a worker */
    if (ngx_parse_addr_port(t->request->pool, &addr, ep->data, ep->len) !=
            NGX_OK ||
        ngx_inet_get_port(addr.sockaddr) == 0) {
        return NGX_ERROR;
    }

    *sa = addr.sockaddr;
    *socklen = addr.socklen;

    return NGX_OK;
}

void ngx_pico_connect(ngx_pico_tunnel_t *t)
{
    int sndbuf;
    ngx_int_t rc;
    ngx_connection_t *c, *pc;
    ngx_http_request_t *r;
    ngx_peer_connection_t *peer;

    r = t->request;
    c = r->connection;
    peer = &t->peer;

    if (ngx_pico_endpoint(t, &peer->sockaddr, &peer->socklen) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "pico: session %V: bad endpoint \"%V\"", &t->session_id,
                      &t->endpoint);
        ngx_pico_reply(t, NGX_HTTP_BAD_GATEWAY, "Bad sandbox endpoint\n");
        return;
    }

    peer->name = &t->endpoint;
    peer->get = ngx_event_get_peer;
    peer->log = c->log;
    peer->log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "pico: session %V: cannot connect to \"%V\"",
                      &t->session_id, &t->endpoint);
        if (peer->connection) {
            ngx_close_connection(peer->connection);
            peer->connection = NULL;
        }

        ngx_pico_reply(t, NGX_HTTP_BAD_GATEWAY, "Sandbox unreachable\n");
        return;
    }

    pc = peer->connection;

    if (peer->sockaddr->sa_family == AF_UNIX && t->plcf->unix_sndbuf) {
        /*
         * A unix socket's send buffer is all that is in flight to the
         * sandbox; with the default (wmem_default, 208 KiB) the relay
         * wakes far more often (pico_unix_sndbuf).  The kernel caps it at
         * net.core.wmem_max; memory is only used while bytes wait.
         */
        sndbuf = (int)t->plcf->unix_sndbuf;
        (void)setsockopt(pc->fd, SOL_SOCKET, SO_SNDBUF, (const void *)&sndbuf,
                         sizeof(int));
    }

    pc->data = t;
    pc->pool = r->pool;
    pc->log = c->log;
    pc->read->log = c->log;
    pc->write->log = c->log;
    pc->read->handler = ngx_pico_upstream_handler;
    pc->write->handler = ngx_pico_upstream_handler;

    if (rc == NGX_AGAIN) {
        ngx_add_timer(pc->write, t->plcf->connect_timeout);
        return;
    }

    ngx_pico_connected(t);
}

static ngx_int_t ngx_pico_test_connect(ngx_connection_t *c)
{
    int err;
    socklen_t len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *)&err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        (void)ngx_connection_error(c, err, "connect() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}

static void ngx_pico_upstream_handler(ngx_event_t *ev)
{
    ngx_connection_t *pc;
    ngx_pico_tunnel_t *t;

    pc = ev->data;
    t = pc->data;

    if (t->state == NGX_PICO_ST_CONNECT) {
        if (ev->timedout) {
            ngx_log_error(NGX_LOG_ERR, pc->log, NGX_ETIMEDOUT,
                          "pico: session %V: connect to \"%V\" timed out",
                          &t->session_id, &t->endpoint);
            ngx_pico_reply(t, NGX_HTTP_BAD_GATEWAY, "Sandbox unreachable\n");
            return;
        }

        if (ngx_pico_test_connect(pc) != NGX_OK) {
            ngx_pico_reply(t, NGX_HTTP_BAD_GATEWAY, "Sandbox unreachable\n");
            return;
        }

        ngx_pico_connected(t);
        return;
    }

    ngx_pico_relay(t);
}

static void ngx_pico_connected(ngx_pico_tunnel_t *t)
{
    ssize_t n;
    ngx_buf_t *hb;
    ngx_connection_t *c, *pc;
    ngx_http_request_t *r;

    r = t->request;
    c = r->connection;
    pc = t->peer.connection;

    if (pc->write->timer_set) {
        ngx_del_timer(pc->write);
    }

    t->state = NGX_PICO_ST_RELAY;
    t->started = ngx_current_msec ? ngx_current_msec : 1;

    if (c->sockaddr->sa_family != AF_UNIX) {
        (void)ngx_tcp_nodelay(c);
    }

    if (t->peer.sockaddr->sa_family != AF_UNIX) {
        (void)ngx_tcp_nodelay(pc);
    }

    c->log->action = "relaying a tunnel";

    t->up.src = c;
    t->up.dst = pc;
    t->down.src = pc;
    t->down.dst = c;

    /*
     * splice() pays only from TCP into a unix socket (the local runtime's
     * sandboxes): from a unix socket it costs more CPU than a copy, and
     * TCP to TCP moved 20-30% less than a copy through a 1m buffer
     * (make bench-tunnel, docs/nginx-module.md), so those directions copy.
     */
    t->up.copy = (c->sockaddr->sa_family == AF_UNIX ||
                  t->peer.sockaddr->sa_family != AF_UNIX);
    t->down.copy = (t->peer.sockaddr->sa_family == AF_UNIX ||
                    c->sockaddr->sa_family != AF_UNIX);

    /* what the client sent right after its header goes first */
    hb = r->header_in;
    if (hb && hb->pos < hb->last) {
        t->up.pre = hb->pos;
        t->up.pre_last = hb->last;
        hb->pos = hb->last;
    }

    r->headers_out.status = NGX_HTTP_OK;

    n = c->send(c, ngx_pico_established, sizeof(ngx_pico_established) - 1);

    if (n == NGX_ERROR) {
        ngx_pico_finish(t, "client_gone");
        return;
    }

    if (n == NGX_AGAIN) {
        n = 0;
    }

    if ((size_t)n < sizeof(ngx_pico_established) - 1) {
        t->down.pre = ngx_pico_established + n;
        t->down.pre_last =
            ngx_pico_established + sizeof(ngx_pico_established) - 1;
    }

    r->read_event_handler = ngx_pico_client_handler;
    r->write_event_handler = ngx_pico_client_handler;

    t->idle.handler = ngx_pico_idle_handler;
    t->idle.data = t;
    t->idle.log = c->log;

    t->flush.handler = ngx_pico_flush_handler;
    t->flush.data = t;
    t->flush.log = c->log;
    t->flush.cancelable = 1;

    if (t->worker->cmd) {
        t->accounted = 1;
        ngx_pico_redis_account(t, 1, 1);
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0, "pico: session %V: tunnel open",
                  &t->session_id);

    /* try both sides at once: bytes may be waiting already */
    c->read->ready = 1;
    pc->read->ready = 1;

    ngx_pico_relay(t);
}

static void ngx_pico_client_handler(ngx_http_request_t *r)
{
    ngx_pico_tunnel_t *t;

    t = ngx_http_get_module_ctx(r, ngx_pico_module);

    ngx_pico_relay(t);
}

static void ngx_pico_relay(ngx_pico_tunnel_t *t)
{
    ngx_int_t up, down;

    if (t->state != NGX_PICO_ST_RELAY) {
        return;
    }

    up = ngx_pico_relay_dir(t, &t->up);
    down = up == NGX_ERROR ? NGX_ERROR : ngx_pico_relay_dir(t, &t->down);

    if (up == NGX_ERROR || down == NGX_ERROR) {
        /* which side failed, for $pico_tunnel_status */
        ngx_pico_finish(t, t->failed == NULL ? "error"
                           : t->failed == t->request->connection
                               ? "client_error"
                               : "sandbox_error");
        return;
    }

    if (t->up.shut && t->down.shut) {
        ngx_pico_finish(t, "closed");
        return;
    }

    /*
     * nginx registers an accepted connection's write event only on demand
     * (epoll): make sure both sides wake us when they can take more.
     */
    if (ngx_handle_write_event(t->up.src->write, 0) != NGX_OK ||
        ngx_handle_read_event(t->up.src->read, 0) != NGX_OK ||
        ngx_handle_write_event(t->down.src->write, 0) != NGX_OK ||
        ngx_handle_read_event(t->down.src->read, 0) != NGX_OK) {
        ngx_pico_finish(t, "error");
        return;
    }

    if (up == NGX_OK || down == NGX_OK || !t->idle.timer_set) {
        /* ngx_add_timer() is cheap when the deadline barely moves */
        ngx_add_timer(&t->idle, t->plcf->idle_timeout);
    }

    if ((up == NGX_OK || down == NGX_OK) && !t->flush.timer_set &&
        t->accounted) {
        ngx_add_timer(&t->flush, NGX_PICO_FLUSH_MS);
    }
}

/* NGX_OK: progress, NGX_DECLINED: nothing to do now, NGX_ERROR */
static ngx_int_t ngx_pico_relay_dir(ngx_pico_tunnel_t *t, ngx_pico_dir_t *d)
{
    ssize_t n;
    ngx_int_t rc, progress;

    progress = 0;

    for (;;) {
        if (d->pre < d->pre_last) {
            if (!d->dst->write->ready) {
                break;
            }

            n = d->dst->send(d->dst, d->pre, d->pre_last - d->pre);

            if (n == NGX_ERROR) {
                t->failed = d->dst;
                return NGX_ERROR;
            }

            if (n == NGX_AGAIN || n == 0) {
                break;
            }

            d->pre += n;
            if (d == &t->up) {
                d->bytes += n;
            }

            progress = 1;
            continue;
        }

        if (t->plcf->splice && !d->copy) {
            rc = ngx_pico_splice_step(t, d);

        } else {
            rc = ngx_pico_copy_step(t, d);
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            break;
        }

        progress = 1;
    }

    if (d->eof && !d->shut && d->pre == d->pre_last && d->piped == 0 &&
        d->pos == d->last) {
        if (ngx_shutdown_socket(d->dst->fd, NGX_WRITE_SHUTDOWN) == -1) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, d->dst->log, ngx_socket_errno,
                           "pico: shutdown() failed");
        }

        d->shut = 1;
        progress = 1;
    }

    ngx_pico_dir_idle(t, d);

    return progress ? NGX_OK : NGX_DECLINED;
}

static ngx_int_t ngx_pico_copy_step(ngx_pico_tunnel_t *t, ngx_pico_dir_t *d)
{
    size_t size;
    ssize_t n;

    size = t->plcf->buffer_size;

    if (d->pos < d->last && d->dst->write->ready) {
        n = d->dst->send(d->dst, d->pos, d->last - d->pos);

        if (n == NGX_ERROR) {
            t->failed = d->dst;
            return NGX_ERROR;
        }

        if (n > 0) {
            d->pos += n;
            d->bytes += n;

            if (d->pos == d->last) {
                d->pos = d->buf;
                d->last = d->buf;
            }

            return NGX_OK;
        }
    }

    if (d->eof || !d->src->read->ready) {
        return NGX_DECLINED;
    }

    if (d->buf == NULL) {
        d->buf = ngx_alloc(size, d->src->log);
        if (d->buf == NULL) {
            return NGX_ERROR;
        }

        d->pos = d->buf;
        d->last = d->buf;
    }

    if (d->last == d->buf + size) {
        return NGX_DECLINED;
    }

    n = d->src->recv(d->src, d->last, d->buf + size - d->last);

    if (n == NGX_ERROR) {
        t->failed = d->src;
        return NGX_ERROR;
    }

    if (n == NGX_AGAIN) {
        return NGX_DECLINED;
    }

    if (n == 0) {
        d->eof = 1;
        return NGX_OK;
    }

    d->last += n;

    return NGX_OK;
}

static ngx_int_t ngx_pico_splice_step(ngx_pico_tunnel_t *t, ngx_pico_dir_t *d)
{
    ssize_t n;
    ngx_err_t err;

    if (d->piped > 0 && d->dst->write->ready) {
        n = splice(d->pipe->fd[0], NULL, d->dst->fd, NULL, d->piped,
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

        if (n > 0) {
            d->piped -= n;
            d->bytes += n;
            d->dst->sent += n;
            d->pipe_full = 0;
            return NGX_OK;
        }

        err = ngx_errno;

        if (err == NGX_EAGAIN) {
            d->dst->write->ready = 0;

        } else if (err != NGX_EINTR) {
            ngx_log_error(NGX_LOG_INFO, d->dst->log, err,
                          "pico: session %V: splice() to socket failed",
                          &t->session_id);
            t->failed = d->dst;
            return NGX_ERROR;
        }
    }

    if (d->eof || d->pipe_full || !d->src->read->ready) {
        return NGX_DECLINED;
    }

    if (d->pipe == NULL) {
        d->pipe = ngx_pico_pipe_get(t);
        if (d->pipe == NULL) {
            /* no pipe to be had: this direction copies from now on */
            d->copy = 1;
            return ngx_pico_copy_step(t, d);
        }
    }

    n = splice(d->src->fd, NULL, d->pipe->fd[1], NULL, t->plcf->buffer_size,
               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

    if (n > 0) {
        d->piped += n;
        return NGX_OK;
    }

    if (n == 0) {
        d->eof = 1;
        return NGX_OK;
    }

    err = ngx_errno;

    if (err == NGX_EAGAIN) {
        /* with bytes in the pipe EAGAIN may mean the pipe is full */
        if (d->piped == 0) {
            d->src->read->ready = 0;

        } else {
            d->pipe_full = 1;
        }

        return NGX_DECLINED;
    }

    if (err == NGX_EINTR) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, d->src->log, err,
                  "pico: session %V: splice() from socket failed",
                  &t->session_id);

    t->failed = d->src;

    return NGX_ERROR;
}

/* gives back a direction's buffer or pipe once nothing is in flight */
static void ngx_pico_dir_idle(ngx_pico_tunnel_t *t, ngx_pico_dir_t *d)
{
    if (d->pipe && d->piped == 0) {
        ngx_pico_pipe_put(t->worker, d->pipe);
        d->pipe = NULL;
        d->pipe_full = 0;
    }

    if (d->buf && d->pos == d->last) {
        ngx_free(d->buf);
        d->buf = NULL;
        d->pos = NULL;
        d->last = NULL;
    }
}

static ngx_pico_pipe_t *ngx_pico_pipe_get(ngx_pico_tunnel_t *t)
{
    ngx_queue_t *q;
    ngx_pico_pipe_t *p;
    ngx_pico_worker_t *w;

    w = t->worker;

    if (!ngx_queue_empty(&w->pipes)) {
        q = ngx_queue_head(&w->pipes);
        ngx_queue_remove(q);
        w->npipes--;
        return ngx_queue_data(q, ngx_pico_pipe_t, queue);
    }

    p = ngx_alloc(sizeof(ngx_pico_pipe_t), w->log);
    if (p == NULL) {
        return NULL;
    }

    if (pipe2(p->fd, O_NONBLOCK | O_CLOEXEC) == -1) {
        ngx_log_error(NGX_LOG_WARN, w->log, ngx_errno,
                      "pico: pipe2() failed, relaying by copy");
        ngx_free(p);
        return NULL;
    }

    /* a bigger pipe moves more per splice(); failure is harmless */
    (void)fcntl(p->fd[1], F_SETPIPE_SZ, (int)t->plcf->buffer_size);

    return p;
}

static void ngx_pico_pipe_put(ngx_pico_worker_t *w, ngx_pico_pipe_t *p)
{
    if (w->npipes < NGX_PICO_PIPE_CACHE) {
        ngx_queue_insert_head(&w->pipes, &p->queue);
        w->npipes++;
        return;
    }

    close(p->fd[0]);
    close(p->fd[1]);
    ngx_free(p);
}

void ngx_pico_pipes_free(ngx_pico_worker_t *w)
{
    ngx_queue_t *q, *next;
    ngx_pico_pipe_t *p;

    for (q = ngx_queue_head(&w->pipes); q != ngx_queue_sentinel(&w->pipes);
         q = next) {
        next = ngx_queue_next(q);
        p = ngx_queue_data(q, ngx_pico_pipe_t, queue);
        close(p->fd[0]);
        close(p->fd[1]);
        ngx_free(p);
    }

    ngx_queue_init(&w->pipes);
    w->npipes = 0;
}

/* frees what the relay holds: called once, from ngx_pico_release() */
void ngx_pico_relay_close(ngx_pico_tunnel_t *t)
{
    ngx_uint_t i;
    ngx_pico_dir_t *d;

    if (t->idle.timer_set) {
        ngx_del_timer(&t->idle);
    }

    if (t->flush.timer_set) {
        ngx_del_timer(&t->flush);
    }

    for (i = 0; i < 2; i++) {
        d = i ? &t->down : &t->up;

        if (d->pipe) {
            if (d->piped == 0) {
                ngx_pico_pipe_put(t->worker, d->pipe);

            } else {
                close(d->pipe->fd[0]);
                close(d->pipe->fd[1]);
                ngx_free(d->pipe);
            }

            d->pipe = NULL;
        }

        if (d->buf) {
            ngx_free(d->buf);
            d->buf = NULL;
        }
    }

    if (t->peer.connection) {
        ngx_close_connection(t->peer.connection);
        t->peer.connection = NULL;
    }
}

static void ngx_pico_idle_handler(ngx_event_t *ev)
{
    ngx_pico_tunnel_t *t = ev->data;

    ngx_log_error(NGX_LOG_INFO, ev->log, 0, "pico: session %V: tunnel idle",
                  &t->session_id);

    ngx_pico_finish(t, "idle_timeout");
}

static void ngx_pico_flush_handler(ngx_event_t *ev)
{
    ngx_pico_tunnel_t *t = ev->data;

    ngx_pico_redis_account(t, 0, 0);
}
