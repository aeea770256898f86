/*
 * metrics.c - GET /metrics: the backend's metrics as Prometheus text
 * (core/metrics.c renders them). Like /health it needs no token: the
 * backend listens on a socket only nginx reaches, and nginx serves
 * /metrics to loopback only (conf/nginx.conf.in, docs/decisions.md).
 */
#include "api/metrics.h"
#include "core/metrics.h"

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
