/*
 * metrics.h - the response of GET /metrics (docs/api.md "Metrics").
 */
#ifndef PICO_API_METRICS_H
#define PICO_API_METRICS_H

#include <microhttpd.h>

#include "app.h"

/* Prometheus text (version 0.0.4) of core/metrics.c; NULL when out of
 * memory. */
struct MHD_Response *metrics_response(pico_app *app);

/* 1 when the peer is on this host: the unix socket, or a loopback
 * address (the backend listening on TCP); 0 for anyone else. */
int metrics_peer_local(struct MHD_Connection *conn);

#endif
