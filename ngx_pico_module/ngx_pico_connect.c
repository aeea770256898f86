/*
 * Connecting a relay to its session's endpoint (unix:/path or ip:port,
 * never a name), within pico_connect_timeout.  Once connected the relay
 * file takes over (through ngx_pico_ports_open(), which first asks a
 * ports tunnel's port relay for its port); a connect that fails is
 * the relay handler's FAILED, the 502's body its why.
 *
 * A unix listener whose backlog is full fails connect(2) with EAGAIN at
 * once where TCP would wait in SYN_SENT: a burst of CONNECTs to one
 * sandbox.  Such a connect is tried again on a timer, NGX_PICO_RETRY_MIN
 * ms later and doubling up to NGX_PICO_RETRY_MAX, for as long as
 * pico_connect_timeout allows; the worker never waits.
 */

#include "ngx_pico_module.h"

#define NGX_PICO_RETRY_MIN 2
#define NGX_PICO_RETRY_MAX 64

static void      ngx_pico_relay_try(ngx_pico_relay_t *rl);
static void      ngx_pico_relay_retry_handler(ngx_event_t *ev);
static ngx_int_t ngx_pico_relay_endpoint(ngx_pico_relay_t *rl);
static ngx_err_t ngx_pico_relay_test_connect(ngx_connection_t *c);
static void      ngx_pico_relay_upstream_handler(ngx_event_t *ev);


void
ngx_pico_relay_connect(ngx_pico_relay_t *rl)
{
    ngx_connection_t      *c;
    ngx_peer_connection_t *peer;

    c = rl->client;
    peer = &rl->peer;

    if (ngx_pico_relay_endpoint(rl) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "pico: session %V: bad endpoint \"%V\"", rl->session_id,
                      &rl->endpoint);
        rl->handler(rl, NGX_PICO_RELAY_FAILED, "Bad sandbox endpoint\n");
        return;
    }

    peer->name = &rl->endpoint;
    peer->get = ngx_event_get_peer;
    /*
     * nginx logs every failed connect(2) at "error"; a burst's retries
     * would flood the log, so its own message is kept for what is worse
     * and the failure that ends a connect is logged here, once.
     */
    rl->connect_log = *c->log;

    if (c->log->log_level <= NGX_LOG_DEBUG) { /* not a debug log */
        rl->connect_log.log_level = ngx_min(c->log->log_level, NGX_LOG_CRIT);
    }
    peer->log = &rl->connect_log;
    peer->log_error = NGX_ERROR_ERR;

    rl->connect_start = ngx_current_msec;
    rl->retry_delay = NGX_PICO_RETRY_MIN;
    rl->retry.handler = ngx_pico_relay_retry_handler;
    rl->retry.data = rl;
    rl->retry.log = c->log;

    ngx_pico_relay_try(rl);
}


/* one connect(2): a full unix backlog is tried again, else it is a 502 */
static void
ngx_pico_relay_try(ngx_pico_relay_t *rl)
{
    int                    sndbuf;
    ngx_err_t              err;
    ngx_int_t              rc;
    ngx_msec_t             spent;
    ngx_connection_t      *c, *pc;
    ngx_peer_connection_t *peer;

    c = rl->client;
    peer = &rl->peer;

    rc = ngx_event_connect_peer(peer);
    err = (rc == NGX_DECLINED) ? ngx_socket_errno : 0;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "pico relay connect to \"%V\": %i, try %ui", &rl->endpoint,
                   rc, rl->retries);

    spent = ngx_current_msec - rl->connect_start;

    if (rc == NGX_DECLINED && err == NGX_EAGAIN &&
        peer->sockaddr->sa_family == AF_UNIX &&
        spent + rl->retry_delay < rl->plcf->connect_timeout) {
        /* ngx_event_connect_peer() closed the socket: a new one next time */
        peer->connection = NULL;
        rl->retries++;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "pico relay backlog full, again in %M ms",
                       rl->retry_delay);

        ngx_add_timer(&rl->retry, rl->retry_delay);
        rl->retry_delay = ngx_min(rl->retry_delay * 2, NGX_PICO_RETRY_MAX);
        return;
    }

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, c->log, err,
                      "pico: session %V: cannot connect to \"%V\" "
                      "after %ui retries in %M ms",
                      rl->session_id, &rl->endpoint, rl->retries, spent);
        if (peer->connection) {
            ngx_close_connection(peer->connection);
            peer->connection = NULL;
        }

        rl->handler(rl, NGX_PICO_RELAY_FAILED,
                    rl->port ? ngx_pico_ports_connect_error(rl, err)
                             : "Sandbox unreachable\n");
        return;
    }

    if (rl->retries) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "pico: session %V: connected to \"%V\" after %ui "
                      "retries in %M ms (listener backlog full)",
                      rl->session_id, &rl->endpoint, rl->retries, spent);
    }

    pc = peer->connection;

    if (peer->sockaddr->sa_family == AF_UNIX && rl->plcf->unix_sndbuf) {
        /*
         * A unix socket's send buffer is all that is in flight to the
         * sandbox; with the default (wmem_default, 208 KiB) the relay
         * wakes far more often (pico_unix_sndbuf).  The kernel caps it at
         * net.core.wmem_max; memory is only used while bytes wait.
         */
        sndbuf = (int)rl->plcf->unix_sndbuf;
        (void)setsockopt(pc->fd, SOL_SOCKET, SO_SNDBUF, (const void *)&sndbuf,
                         sizeof(int));
    }

    pc->data = rl;
    pc->pool = rl->pool;
    pc->log = c->log;
    pc->read->log = c->log;
    pc->write->log = c->log;
    pc->read->handler = ngx_pico_relay_upstream_handler;
    pc->write->handler = ngx_pico_relay_upstream_handler;

    if (rc == NGX_AGAIN) {
        /* what is left of pico_connect_timeout */
        ngx_add_timer(pc->write, rl->plcf->connect_timeout > spent
                                     ? rl->plcf->connect_timeout - spent
                                     : 1);
        return;
    }

    ngx_pico_ports_open(rl);
}


static void
ngx_pico_relay_retry_handler(ngx_event_t *ev)
{
    ngx_pico_relay_try(ev->data);
}


static ngx_int_t
ngx_pico_relay_endpoint(ngx_pico_relay_t *rl)
{
    size_t              len;
    ngx_str_t          *ep;
    ngx_addr_t          addr;
    struct sockaddr_un *saun;

    ep = &rl->endpoint;

    if (ep->len > 5 && ngx_strncmp(ep->data, "unix:", 5) == 0) {
        len = ep->len - 5;

        saun = ngx_pcalloc(rl->pool, sizeof(struct sockaddr_un));
        if (saun == NULL || ep->data[5] != '/' ||
            len >= sizeof(saun->sun_path)) {
            return NGX_ERROR;
        }

        saun->sun_family = AF_UNIX;
        ngx_memcpy(saun->sun_path, ep->data + 5, len);

        rl->peer.sockaddr = (struct sockaddr *)saun;
        rl->peer.socklen = sizeof(struct sockaddr_un);

        return NGX_OK;
    }

    /* an address literal only: never a DNS lookup in a worker */
    if (ngx_parse_addr_port(rl->pool, &addr, ep->data, ep->len) != NGX_OK ||
        ngx_inet_get_port(addr.sockaddr) == 0) {
        return NGX_ERROR;
    }

    rl->peer.sockaddr = addr.sockaddr;
    rl->peer.socklen = addr.socklen;

    return NGX_OK;
}


/* 0, or the error of the connect */
static ngx_err_t
ngx_pico_relay_test_connect(ngx_connection_t *c)
{
    int       err;
    socklen_t len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *)&err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        (void)ngx_connection_error(c, err, "connect() failed");
    }

    return err;
}


static void
ngx_pico_relay_upstream_handler(ngx_event_t *ev)
{
    ngx_err_t         err;
    ngx_connection_t *pc;
    ngx_pico_relay_t *rl;

    pc = ev->data;
    rl = pc->data;

    if (ev->timedout) {
        ngx_log_error(NGX_LOG_ERR, pc->log, NGX_ETIMEDOUT,
                      "pico: session %V: connect to \"%V\" timed out",
                      rl->session_id, &rl->endpoint);
        rl->handler(rl, NGX_PICO_RELAY_FAILED, "Sandbox unreachable\n");
        return;
    }

    err = ngx_pico_relay_test_connect(pc);
    if (err) {
        rl->handler(rl, NGX_PICO_RELAY_FAILED,
                    rl->port ? ngx_pico_ports_connect_error(rl, err)
                             : "Sandbox unreachable\n");
        return;
    }

    ngx_pico_ports_open(rl);
}
