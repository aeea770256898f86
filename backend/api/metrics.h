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

#endif
