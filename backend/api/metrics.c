/*
 * metrics.c - GET /metrics: the backend's metrics as Prometheus text
 * (core/metrics.c renders them). Like /health it needs no token: nginx
 * serves /metrics to loopback only (conf/nginx.conf.in,
 * docs/decisions.md), and the backend itself answers it only to a peer on
 * this host, so a backend listening on TCP does not publish it either.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "api/metrics.h"
#include "core/metrics.h"

int metrics_peer_local(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_UNIX)
        return 1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return 0;
}

struct MHD_Response *metrics_response(pico_app *app)
{
    struct MHD_Response *r;
    size_t len = 0;
    char *text = metrics_render(app, &len);

    if (text == NULL)
        return NULL;
    r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(r, "Content-Type",
                            "text/plain; version=0.0.4; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    return r;
}
