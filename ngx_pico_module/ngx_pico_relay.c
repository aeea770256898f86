/*
 * The tunnel itself, once its endpoint is connected (ngx_pico_connect.c):
 * answer "200 Connection Established", then move bytes both ways until
 * both sides have closed, an error, the idle timeout, or the session's
 * deletion.
 *
 * Each direction (ngx_pico_dir_t) first sends its "pre" bytes (what the
 * client pipelined after its request header; for the way down, what is
 * left of the 200), then relays:
 *
 *   splice   socket -> pipe -> socket, no copy through user space; pipes
 *            are borrowed from the per-worker cache (ngx_pico_pipe.c) only
 *            while bytes are in flight, so an idle tunnel holds none
 *   copy     recv/send through a buffer of pico_buffer_size, allocated
 *            while bytes are in flight and freed when it drains
 *
 * A direction reads only while it has room (pipe or buffer not full), so
 * a slow reader stops its writer (back-pressure).  EOF one way shuts down
 * writing the other way once everything is delivered; the tunnel closes
 * when both ways are shut.
 *
 * The relay knows nothing of requests, tunnels or Redis: its owner fills
 * in ngx_pico_relay_t and hears back through rl->handler (connect failed,
 * open, bytes moved, end).  After FAILED or END the owner may have freed
 * the relay (it lives in the request's pool): nothing here touches rl
 * after calling the handler with either.
 */

#include "ngx_pico_module.h"

/* after ngx_config.h, which defines _GNU_SOURCE: splice(), pipe2() */
#include <fcntl.h>

static u_char ngx_pico_established[] =
    "HTTP/1.1 200 Connection Established\r\n\r\n";

static void      ngx_pico_relay_peer_handler(ngx_event_t *ev);
static ngx_int_t ngx_pico_relay_dir(ngx_pico_relay_t *rl, ngx_pico_dir_t *d);
static ngx_int_t ngx_pico_relay_copy(ngx_pico_relay_t *rl, ngx_pico_dir_t *d);
static ngx_int_t ngx_pico_relay_splice(ngx_pico_relay_t *rl, ngx_pico_dir_t *d);
static void ngx_pico_relay_dir_idle(ngx_pico_relay_t *rl, ngx_pico_dir_t *d);
static void ngx_pico_relay_idle_handler(ngx_event_t *ev);


/*
 * The endpoint is connected (ngx_pico_connect.c): the 200, then the relay
 * takes the endpoint's events over.
 */
void
ngx_pico_relay_connected(ngx_pico_relay_t *rl)
{
    ssize_t           n;
    ngx_buf_t        *hb;
    ngx_connection_t *c, *pc;

    c = rl->client;
    pc = rl->peer.connection;

    if (pc->write->timer_set) {
        ngx_del_timer(pc->write);
    }

    rl->relaying = 1;
    rl->started = ngx_current_msec ? ngx_current_msec : 1;

    pc->read->handler = ngx_pico_relay_peer_handler;
    pc->write->handler = ngx_pico_relay_peer_handler;

    if (c->sockaddr->sa_family != AF_UNIX) {
        (void)ngx_tcp_nodelay(c);
    }

    if (rl->peer.sockaddr->sa_family != AF_UNIX) {
        (void)ngx_tcp_nodelay(pc);
    }

    c->log->action = "relaying a tunnel";

    rl->up.src = c;
    rl->up.dst = pc;
    rl->down.src = pc;
    rl->down.dst = c;

    /*
     * splice() pays only from TCP into a unix socket (the local runtime's
     * sandboxes): from a unix socket it costs more CPU than a copy, and
     * TCP to TCP moved 20-30% less than a copy through a 1m buffer
     * (make bench-tunnel, docs/nginx-module.md), so those directions copy.
     */
    rl->up.copy = (c->sockaddr->sa_family == AF_UNIX ||
                   rl->peer.sockaddr->sa_family != AF_UNIX);
    rl->down.copy = (rl->peer.sockaddr->sa_family == AF_UNIX ||
                     c->sockaddr->sa_family != AF_UNIX);

#if (NGX_SSL)
    /*
     * Over TLS the client's socket carries ciphertext: its bytes go through
     * c->recv/c->send (OpenSSL), never splice(2).
     */
    if (c->ssl) {
        rl->up.copy = 1;
        rl->down.copy = 1;
    }
#endif

    /* what the client sent right after its header goes first */
    hb = rl->header_in;
    if (hb && hb->pos < hb->last) {
        rl->up.pre = hb->pos;
        rl->up.pre_last = hb->last;
        hb->pos = hb->last;
    }

    /* the owner's last word before the 200 (its status for the log) */
    rl->handler(rl, NGX_PICO_RELAY_CONNECTED, NULL);

    n = c->send(c, ngx_pico_established, sizeof(ngx_pico_established) - 1);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "pico relay connected, 200 sent: %z, %uz pipelined, "
                   "copy up:%d down:%d",
                   n, (size_t)(rl->up.pre_last - rl->up.pre), (int)rl->up.copy,
                   (int)rl->down.copy);

    if (n == NGX_ERROR) {
        rl->handler(rl, NGX_PICO_RELAY_END, "client_gone");
        return;
    }

    if (n == NGX_AGAIN) {
        n = 0;
    }

    if ((size_t)n < sizeof(ngx_pico_established) - 1) {
        rl->down.pre = ngx_pico_established + n;
        rl->down.pre_last =
            ngx_pico_established + sizeof(ngx_pico_established) - 1;
    }

    rl->idle.handler = ngx_pico_relay_idle_handler;
    rl->idle.data = rl;
    rl->idle.log = c->log;

    rl->handler(rl, NGX_PICO_RELAY_OPEN, NULL);

    /* try both sides at once: bytes may be waiting already */
    c->read->ready = 1;
    pc->read->ready = 1;

    ngx_pico_relay_process(rl);
}


static void
ngx_pico_relay_peer_handler(ngx_event_t *ev)
{
    ngx_connection_t *pc;

    pc = ev->data;

    ngx_pico_relay_process(pc->data);
}


/* one wake-up of either side: both directions as far as they go */
void
ngx_pico_relay_process(ngx_pico_relay_t *rl)
{
    ngx_int_t up, down;

    if (!rl->relaying) {
        return;
    }

    up = ngx_pico_relay_dir(rl, &rl->up);
    down = up == NGX_ERROR ? NGX_ERROR : ngx_pico_relay_dir(rl, &rl->down);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rl->client->log, 0,
                   "pico relay up:%i down:%i", up, down);

    if (up == NGX_ERROR || down == NGX_ERROR) {
        /* which side failed, for $pico_tunnel_status */
        rl->handler(rl, NGX_PICO_RELAY_END,
                    rl->failed == NULL         ? "error"
                    : rl->failed == rl->client ? "client_error"
                                               : "sandbox_error");
        return;
    }

    if (rl->up.shut && rl->down.shut) {
        rl->handler(rl, NGX_PICO_RELAY_END, "closed");
        return;
    }

    /*
     * nginx registers an accepted connection's write event only on demand
     * (epoll): make sure both sides wake us when they can take more.
     */
    if (ngx_handle_write_event(rl->up.src->write, 0) != NGX_OK ||
        ngx_handle_read_event(rl->up.src->read, 0) != NGX_OK ||
        ngx_handle_write_event(rl->down.src->write, 0) != NGX_OK ||
        ngx_handle_read_event(rl->down.src->read, 0) != NGX_OK) {
        rl->handler(rl, NGX_PICO_RELAY_END, "error");
        return;
    }

    if (up == NGX_OK || down == NGX_OK || !rl->idle.timer_set) {
        /* ngx_add_timer() is cheap when the deadline barely moves */
        ngx_add_timer(&rl->idle, rl->plcf->idle_timeout);
    }

    if (up == NGX_OK || down == NGX_OK) {
        rl->handler(rl, NGX_PICO_RELAY_ACTIVE, NULL);
    }
}


/* NGX_OK: progress, NGX_DECLINED: nothing to do now, NGX_ERROR */
static ngx_int_t
ngx_pico_relay_dir(ngx_pico_relay_t *rl, ngx_pico_dir_t *d)
{
    ssize_t   n;
    ngx_int_t rc, progress;

    progress = 0;

    for (;;) {
        if (d->pre < d->pre_last) {
            if (!d->dst->write->ready) {
                break;
            }

            n = d->dst->send(d->dst, d->pre, d->pre_last - d->pre);

            if (n == NGX_ERROR) {
                rl->failed = d->dst;
                return NGX_ERROR;
            }

            if (n == NGX_AGAIN || n == 0) {
                break;
            }

            d->pre += n;

            /* the rest of the 200 going down is not the sandbox's bytes */
            if (d == &rl->up) {
                d->bytes += n;
            }

            progress = 1;
            continue;
        }

        if (rl->plcf->splice && !d->copy) {
            rc = ngx_pico_relay_splice(rl, d);

        } else {
            rc = ngx_pico_relay_copy(rl, d);
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
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, d->dst->log, 0,
                       "pico relay %s: eof delivered, shutting down",
                       d == &rl->up ? "up" : "down");

        if (ngx_shutdown_socket(d->dst->fd, NGX_WRITE_SHUTDOWN) == -1) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, d->dst->log, ngx_socket_errno,
                           "pico: shutdown() failed");
        }

        d->shut = 1;
        progress = 1;
    }

    ngx_pico_relay_dir_idle(rl, d);

    return progress ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_pico_relay_copy(ngx_pico_relay_t *rl, ngx_pico_dir_t *d)
{
    size_t  size;
    ssize_t n;

    size = rl->plcf->buffer_size;

    if (d->pos < d->last && d->dst->write->ready) {
        n = d->dst->send(d->dst, d->pos, d->last - d->pos);

        if (n == NGX_ERROR) {
            rl->failed = d->dst;
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
        /* allocated only while bytes are in flight: idle tunnels hold none */
        d->buf = ngx_alloc(size, d->src->log);
        if (d->buf == NULL) {
            return NGX_ERROR;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, d->src->log, 0,
                       "pico relay buffer %uz allocated", size);

        d->pos = d->buf;
        d->last = d->buf;
    }

    if (d->last == d->buf + size) {
        return NGX_DECLINED;
    }

    n = d->src->recv(d->src, d->last, d->buf + size - d->last);

    if (n == NGX_ERROR) {
        rl->failed = d->src;
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


static ngx_int_t
ngx_pico_relay_splice(ngx_pico_relay_t *rl, ngx_pico_dir_t *d)
{
    ssize_t   n;
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
                          rl->session_id);
            rl->failed = d->dst;
            return NGX_ERROR;
        }
    }

    if (d->eof || d->pipe_full || !d->src->read->ready) {
        return NGX_DECLINED;
    }

    if (d->pipe == NULL) {
        d->pipe = ngx_pico_pipe_get(rl->worker, rl->plcf->buffer_size);
        if (d->pipe == NULL) {
            /* no pipe to be had: this direction copies from now on */
            d->copy = 1;
            return ngx_pico_relay_copy(rl, d);
        }
    }

    n = splice(d->src->fd, NULL, d->pipe->fd[1], NULL, rl->plcf->buffer_size,
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
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, d->src->log, 0,
                           "pico relay pipe full at %uz", d->piped);
            d->pipe_full = 1;
        }

        return NGX_DECLINED;
    }

    if (err == NGX_EINTR) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, d->src->log, err,
                  "pico: session %V: splice() from socket failed",
                  rl->session_id);

    rl->failed = d->src;

    return NGX_ERROR;
}


/* gives back a direction's buffer or pipe once nothing is in flight */
static void
ngx_pico_relay_dir_idle(ngx_pico_relay_t *rl, ngx_pico_dir_t *d)
{
    if (d->pipe && d->piped == 0) {
        ngx_pico_pipe_put(rl->worker, d->pipe);
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


/* frees what the relay holds; its owner calls it once, when releasing */
void
ngx_pico_relay_close(ngx_pico_relay_t *rl)
{
    ngx_uint_t      i;
    ngx_pico_dir_t *d;

    if (rl->relaying) {
        rl->ended = ngx_current_msec;
        rl->relaying = 0;
    }

    if (rl->idle.timer_set) {
        ngx_del_timer(&rl->idle);
    }

    if (rl->retry.timer_set) {
        ngx_del_timer(&rl->retry);
    }

    for (i = 0; i < 2; i++) {
        d = i ? &rl->down : &rl->up;

        if (d->pipe) {
            /* a pipe with bytes in it cannot serve another tunnel */
            if (d->piped == 0) {
                ngx_pico_pipe_put(rl->worker, d->pipe);

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

    if (rl->peer.connection) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rl->client->log, 0,
                       "pico relay close, up:%O down:%O", rl->up.bytes,
                       rl->down.bytes);
        ngx_close_connection(rl->peer.connection);
        rl->peer.connection = NULL;
    }
}


static void
ngx_pico_relay_idle_handler(ngx_event_t *ev)
{
    ngx_pico_relay_t *rl = ev->data;

    ngx_log_error(NGX_LOG_INFO, ev->log, 0, "pico: session %V: tunnel idle",
                  rl->session_id);

    rl->handler(rl, NGX_PICO_RELAY_END, "idle_timeout");
}
