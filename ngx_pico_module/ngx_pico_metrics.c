/*
 * Metrics of ngx_pico_module: counters every worker adds to in one shared
 * memory zone, and the pico_metrics content handler that prints them as
 * Prometheus text (version 0.0.4; docs/nginx-module.md, "Metrics").
 *
 *   - the zone ("pico_metrics", a few pages) is a fixed struct of
 *     ngx_atomic_t: a count is one ngx_atomic_fetch_add, with no lock and
 *     no allocation; the zone outlives a reload (same name, size and tag),
 *     so counters do not fall back to 0 then
 *   - labels are fixed tables here: the CONNECT answers' codes, the lookup
 *     results; a code not in the table counts as "other"
 *   - a leaf: the tunnel, the lookups and ngx_pico_send() call in, nothing
 *     here calls out
 *
 * A worker that dies with tunnels open leaves them counted as open (its
 * decrements never come); nginx starts another worker, not a new zone.
 */

#include "ngx_pico_module.h"

/* CONNECT -> 200 time, ms */
static ngx_uint_t ngx_pico_metrics_le[NGX_PICO_METRICS_LE] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000};

static ngx_uint_t ngx_pico_metrics_codes[NGX_PICO_METRICS_CODES] = {
    200, 400, 401, 403, 404, 405, 409, 429, 500, 502, 503, 504};

static char *ngx_pico_metrics_results[NGX_PICO_LOOKUP_N] = {
    "found", "not_found", "error", "timeout"};

typedef struct {
    ngx_atomic_t open;
    ngx_atomic_t answers[NGX_PICO_METRICS_CODES + 1]; /* the last: other */
    ngx_atomic_t bytes_up;
    ngx_atomic_t bytes_down;
    ngx_atomic_t connect[NGX_PICO_METRICS_LE + 1]; /* per bucket, +Inf */
    ngx_atomic_t connect_ms;                       /* the sum */
    ngx_atomic_t lookups[NGX_PICO_LOOKUP_N];
} ngx_pico_metrics_t;

/* room for every line printed, with long numbers */
#define NGX_PICO_METRICS_TEXT 8192

static ngx_int_t ngx_pico_metrics_init_zone(ngx_shm_zone_t *zone, void *data);
static ngx_int_t ngx_pico_metrics_handler(ngx_http_request_t *r);
static u_char   *ngx_pico_metrics_print(u_char *p, u_char *end,
                                        ngx_pico_metrics_t *m);


/* at configuration: the zone every worker of this nginx shares */
ngx_int_t
ngx_pico_metrics_conf(ngx_conf_t *cf, ngx_pico_main_conf_t *pmcf)
{
    ngx_str_t name = ngx_string("pico_metrics");

    pmcf->metrics =
        ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize, &ngx_pico_module);
    if (pmcf->metrics == NULL) {
        return NGX_ERROR;
    }

    pmcf->metrics->init = ngx_pico_metrics_init_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_pico_metrics_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t *shpool;

    if (data) {
        /* a reload: the old zone's counters go on */
        zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *)zone->shm.addr;

    zone->data = ngx_slab_calloc(shpool, sizeof(ngx_pico_metrics_t));
    if (zone->data == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_pico_metrics_t *
ngx_pico_metrics_get(ngx_pico_main_conf_t *pmcf)
{
    return pmcf->metrics ? pmcf->metrics->data : NULL;
}


/* an answer to a request of a tunnel location, by its code */
void
ngx_pico_metrics_answer(ngx_pico_main_conf_t *pmcf, ngx_uint_t code)
{
    ngx_uint_t          i;
    ngx_pico_metrics_t *m;

    m = ngx_pico_metrics_get(pmcf);
    if (m == NULL) {
        return;
    }

    for (i = 0; i < NGX_PICO_METRICS_CODES; i++) {
        if (ngx_pico_metrics_codes[i] == code) {
            break;
        }
    }

    (void)ngx_atomic_fetch_add(&m->answers[i], 1);
}


/* a tunnel's 200 went out ms after its request came */
void
ngx_pico_metrics_opened(ngx_pico_main_conf_t *pmcf, ngx_msec_int_t ms)
{
    ngx_uint_t          i;
    ngx_pico_metrics_t *m;

    m = ngx_pico_metrics_get(pmcf);
    if (m == NULL) {
        return;
    }

    if (ms < 0) {
        ms = 0;
    }

    for (i = 0; i < NGX_PICO_METRICS_LE; i++) {
        if ((ngx_uint_t)ms <= ngx_pico_metrics_le[i]) {
            break;
        }
    }

    (void)ngx_atomic_fetch_add(&m->connect[i], 1);
    (void)ngx_atomic_fetch_add(&m->connect_ms, ms);
    (void)ngx_atomic_fetch_add(&m->answers[0], 1);
    (void)ngx_atomic_fetch_add(&m->open, 1);
}


/* an open tunnel closed */
void
ngx_pico_metrics_closed(ngx_pico_main_conf_t *pmcf)
{
    ngx_pico_metrics_t *m;

    m = ngx_pico_metrics_get(pmcf);
    if (m) {
        (void)ngx_atomic_fetch_add(&m->open, -1);
    }
}


void
ngx_pico_metrics_bytes(ngx_pico_main_conf_t *pmcf, off_t up, off_t down)
{
    ngx_pico_metrics_t *m;

    m = ngx_pico_metrics_get(pmcf);
    if (m) {
        (void)ngx_atomic_fetch_add(&m->bytes_up, up);
        (void)ngx_atomic_fetch_add(&m->bytes_down, down);
    }
}


void
ngx_pico_metrics_lookup(ngx_pico_main_conf_t *pmcf, ngx_uint_t result)
{
    ngx_pico_metrics_t *m;

    m = ngx_pico_metrics_get(pmcf);
    if (m && result < NGX_PICO_LOOKUP_N) {
        (void)ngx_atomic_fetch_add(&m->lookups[result], 1);
    }
}


/* pico_metrics; in a location: its content handler prints the metrics */
char *
ngx_pico_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate, or the location has another handler";
    }

    clcf->handler = ngx_pico_metrics_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_pico_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_buf_t            *b;
    ngx_chain_t           out;
    ngx_pico_metrics_t   *m;
    ngx_pico_main_conf_t *pmcf;

    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_pico_module);

    m = ngx_pico_metrics_get(pmcf);
    if (m == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_create_temp_buf(r->pool, NGX_PICO_METRICS_TEXT);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_pico_metrics_print(b->pos, b->end, m);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pico metrics: %uz bytes", (size_t)(b->last - b->pos));

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static u_char *
ngx_pico_metrics_print(u_char *p, u_char *end, ngx_pico_metrics_t *m)
{
    ngx_uint_t        i;
    ngx_atomic_uint_t n;

    p = ngx_slprintf(p, end,
                     "# HELP pico_tunnels_open Tunnels open now.\n"
                     "# TYPE pico_tunnels_open gauge\n"
                     "pico_tunnels_open %uA\n"
                     "# HELP pico_tunnels_total Tunnel requests by the "
                     "status of their answer (200: opened).\n"
                     "# TYPE pico_tunnels_total counter\n",
                     m->open);

    for (i = 0; i < NGX_PICO_METRICS_CODES; i++) {
        p = ngx_slprintf(p, end, "pico_tunnels_total{status=\"%ui\"} %uA\n",
                         ngx_pico_metrics_codes[i], m->answers[i]);
    }

    p = ngx_slprintf(p, end,
                     "pico_tunnels_total{status=\"other\"} %uA\n"
                     "# HELP pico_tunnel_bytes_total Bytes relayed, by "
                     "direction (up: client to sandbox).\n"
                     "# TYPE pico_tunnel_bytes_total counter\n"
                     "pico_tunnel_bytes_total{direction=\"up\"} %uA\n"
                     "pico_tunnel_bytes_total{direction=\"down\"} %uA\n"
                     "# HELP pico_tunnel_connect_seconds Time from a "
                     "CONNECT to its 200.\n"
                     "# TYPE pico_tunnel_connect_seconds histogram\n",
                     m->answers[NGX_PICO_METRICS_CODES], m->bytes_up,
                     m->bytes_down);

    n = 0;

    for (i = 0; i <= NGX_PICO_METRICS_LE; i++) {
        n += m->connect[i];

        if (i < NGX_PICO_METRICS_LE) {
            p = ngx_slprintf(p, end,
                             "pico_tunnel_connect_seconds_bucket"
                             "{le=\"%ui.%03ui\"} %uA\n",
                             ngx_pico_metrics_le[i] / 1000,
                             ngx_pico_metrics_le[i] % 1000, n);

        } else {
            p = ngx_slprintf(p, end,
                             "pico_tunnel_connect_seconds_bucket"
                             "{le=\"+Inf\"} %uA\n",
                             n);
        }
    }

    p = ngx_slprintf(p, end,
                     "pico_tunnel_connect_seconds_sum %uA.%03uA\n"
                     "pico_tunnel_connect_seconds_count %uA\n"
                     "# HELP pico_redis_lookups_total Session lookups in "
                     "Redis, by result.\n"
                     "# TYPE pico_redis_lookups_total counter\n",
                     m->connect_ms / 1000, m->connect_ms % 1000, n);

    for (i = 0; i < NGX_PICO_LOOKUP_N; i++) {
        p = ngx_slprintf(p, end,
                         "pico_redis_lookups_total{result=\"%s\"} %uA\n",
                         ngx_pico_metrics_results[i], m->lookups[i]);
    }

    return p;
}
