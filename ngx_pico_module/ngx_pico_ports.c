/*
 * Ports tunnels: CONNECT /v1/sessions/<id>/ports/<port>/tunnel.  The
 * session check is the SSH tunnel's; what differs is where the relay
 * connects and what it says first:
 *
 *   local sandbox  endpoint unix:<dir>/ssh.sock; the port relay of
 *                  pico-init listens on <dir>/ports.sock beside it.  We
 *                  send "PORT <n>\n" and wait for its "OK\n" (connected
 *                  to 127.0.0.1:<n> in the sandbox) or "ERR <why>\n",
 *                  which becomes the 502's body, before the 200
 *   pod            endpoint <ip>:22; the pod's <ip>:<n> is connected
 *                  directly (the NetworkPolicy allows it), no header
 *
 * Between connect and relay: connect -> ports -> relay.  A relay without
 * a port goes straight on to ngx_pico_relay_connected().
 */

#include "ngx_pico_module.h"

#define NGX_PICO_PORTS_SOCK "ports.sock"
#define NGX_PICO_SSH_SOCK "ssh.sock"
#define NGX_PICO_STATUS_MAX 256

static void ngx_pico_ports_read_handler(ngx_event_t *ev);
static void ngx_pico_ports_fail(ngx_pico_relay_t *rl, u_char *line, size_t len);


/* the endpoint of port rl->port from the session's endpoint ep */
ngx_int_t
ngx_pico_ports_endpoint(ngx_pico_relay_t *rl, ngx_str_t *ep)
{
    u_char *p, *colon;
    size_t  base;

    if (ep->len > 5 && ngx_strncmp(ep->data, "unix:", 5) == 0) {
        base = sizeof(NGX_PICO_SSH_SOCK) - 1;

        if (ep->len < 5 + base || ngx_strncmp(ep->data + ep->len - base,
                                              NGX_PICO_SSH_SOCK, base) != 0) {
            return NGX_ERROR;
        }

        p = ngx_pnalloc(rl->pool, ep->len - base + sizeof(NGX_PICO_PORTS_SOCK));
        if (p == NULL) {
            return NGX_ERROR;
        }

        rl->endpoint.data = p;
        p = ngx_cpymem(p, ep->data, ep->len - base);
        p = ngx_cpymem(p, NGX_PICO_PORTS_SOCK, sizeof(NGX_PICO_PORTS_SOCK) - 1);
        rl->endpoint.len = p - rl->endpoint.data;
        rl->port_header = 1;

        return NGX_OK;
    }

    /* <ip>:22 or [<ipv6>]:22: the same address, the asked port */
    colon = ngx_strlchr(ep->data, ep->data + ep->len, ':');
    for (p = colon; p; p = ngx_strlchr(p + 1, ep->data + ep->len, ':')) {
        colon = p;
    }

    if (colon == NULL) {
        return NGX_ERROR;
    }

    base = colon - ep->data;

    p = ngx_pnalloc(rl->pool, base + sizeof(":65535"));
    if (p == NULL) {
        return NGX_ERROR;
    }

    rl->endpoint.data = p;
    rl->endpoint.len = ngx_sprintf(p, "%*s:%ui", base, ep->data, rl->port) - p;
    rl->port_header = 0;

    return NGX_OK;
}


/* why a port's connect failed, as the 502's body */
char *
ngx_pico_ports_connect_error(ngx_pico_relay_t *rl, ngx_err_t err)
{
    u_char *p;

    if (err == NGX_ENOENT && rl->port_header) {
        return "This sandbox has no port relay (it was started before "
               "ports existed): create a new session\n";
    }

    if (err != NGX_ECONNREFUSED || rl->port_header) {
        return "Sandbox unreachable\n";
    }

    p = ngx_pnalloc(rl->pool, sizeof("Nothing listens on port 65535\n"));
    if (p == NULL) {
        return "Nothing listens on that port\n";
    }

    *ngx_sprintf(p, "Nothing listens on port %ui\n", rl->port) = '\0';

    return (char *)p;
}


/* the endpoint is connected: its header first, if it takes one */
void
ngx_pico_ports_open(ngx_pico_relay_t *rl)
{
    u_char            hdr[sizeof("PORT 65535\n")];
    ssize_t           n;
    size_t            len;
    ngx_connection_t *pc;

    if (rl->port == 0 || !rl->port_header) {
        ngx_pico_relay_connected(rl);
        return;
    }

    pc = rl->peer.connection;

    if (pc->write->timer_set) {
        ngx_del_timer(pc->write);
    }

    len = ngx_sprintf(hdr, "PORT %ui\n", rl->port) - hdr;

    /* a fresh unix socket's buffer takes a dozen bytes at once */
    n = pc->send(pc, hdr, len);
    if (n != (ssize_t)len) {
        rl->handler(rl, NGX_PICO_RELAY_FAILED, "Sandbox unreachable\n");
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "pico ports: asked for port %ui", rl->port);

    pc->read->handler = ngx_pico_ports_read_handler;
    pc->write->handler = ngx_pico_ports_read_handler;

    ngx_add_timer(pc->read, rl->plcf->connect_timeout);

    if (ngx_handle_read_event(pc->read, 0) != NGX_OK) {
        rl->handler(rl, NGX_PICO_RELAY_FAILED, "Internal error\n");
    }
}


/*
 * pico-init's status line.  Peeked first, then taken exactly: what the
 * app sends right after "OK\n" stays in the socket for the relay.
 */
static void
ngx_pico_ports_read_handler(ngx_event_t *ev)
{
    u_char            buf[NGX_PICO_STATUS_MAX], *nl;
    ssize_t           n;
    ngx_connection_t *pc;
    ngx_pico_relay_t *rl;

    pc = ev->data;
    rl = pc->data;

    if (ev->write) {
        return; /* nothing to write before the status */
    }

    if (ev->timedout) {
        ngx_log_error(NGX_LOG_ERR, pc->log, NGX_ETIMEDOUT,
                      "pico: session %V: port %ui: no status from the "
                      "sandbox's port relay",
                      rl->session_id, rl->port);
        rl->handler(rl, NGX_PICO_RELAY_FAILED,
                    "Sandbox port relay timed out\n");
        return;
    }

    n = recv(pc->fd, buf, sizeof(buf), MSG_PEEK);

    if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
        if (ngx_handle_read_event(pc->read, 0) != NGX_OK) {
            rl->handler(rl, NGX_PICO_RELAY_FAILED, "Internal error\n");
        }
        return;
    }

    nl = n > 0 ? ngx_strlchr(buf, buf + n, '\n') : NULL;

    if (nl == NULL) {
        if (n > 0 && n < (ssize_t)sizeof(buf)) {
            return; /* the rest of the line is on its way */
        }

        ngx_log_error(NGX_LOG_ERR, pc->log, n < 0 ? ngx_socket_errno : 0,
                      "pico: session %V: port %ui: the sandbox's port relay "
                      "closed without a status",
                      rl->session_id, rl->port);
        rl->handler(rl, NGX_PICO_RELAY_FAILED,
                    "Sandbox port relay closed the connection\n");
        return;
    }

    /* take the line itself, nothing after it */
    if (recv(pc->fd, buf, nl + 1 - buf, 0) != nl + 1 - buf) {
        rl->handler(rl, NGX_PICO_RELAY_FAILED, "Sandbox unreachable\n");
        return;
    }

    if (pc->read->timer_set) {
        ngx_del_timer(pc->read);
    }

    if (nl - buf == 2 && buf[0] == 'O' && buf[1] == 'K') {
        ngx_pico_relay_connected(rl);
        return;
    }

    ngx_pico_ports_fail(rl, buf, nl - buf);
}


/* "ERR <why>": why, capitalized, is the 502's body */
static void
ngx_pico_ports_fail(ngx_pico_relay_t *rl, u_char *line, size_t len)
{
    u_char *p;

    if (len > 4 && ngx_strncmp(line, "ERR ", 4) == 0) {
        line += 4;
        len -= 4;
    }

    ngx_log_error(NGX_LOG_INFO, rl->client->log, 0,
                  "pico: session %V: port %ui: %*s", rl->session_id, rl->port,
                  len, line);

    p = ngx_pnalloc(rl->pool, len + 2);
    if (p == NULL) {
        rl->handler(rl, NGX_PICO_RELAY_FAILED, "Sandbox port unreachable\n");
        return;
    }

    ngx_memcpy(p, line, len);
    p[0] = ngx_toupper(p[0]);
    p[len] = '\n';
    p[len + 1] = '\0';

    rl->handler(rl, NGX_PICO_RELAY_FAILED, (char *)p);
}
