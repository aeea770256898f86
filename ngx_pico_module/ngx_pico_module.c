/*
 * ngx_pico_module: directives, configuration and the content handler of
 * the tunnel location (the access-log variables are ngx_pico_variables.c).
 *
 * A CONNECT reaches us through "error_page 405 = @tunnel" (nginx rejects
 * CONNECT before any phase runs, see DESIGN.md).  The content handler is
 * a sequence of steps with one job each: the method (and HTTP/1.1), taking
 * the connection's events over, the path, the token's shape, the tunnel
 * limit.  Then the session check (ngx_pico_session.c: the cache or a Redis
 * lookup, the verdict on token, owner and status) hands the tunnel its
 * endpoint (ngx_pico_tunnel.c), which connects and relays.
 */

#include "ngx_pico_module.h"

static ngx_int_t ngx_pico_handler(ngx_http_request_t *r);
static ngx_int_t ngx_pico_check_method(ngx_http_request_t *r);
static void      ngx_pico_take_over(ngx_http_request_t *r);
static void      ngx_pico_request_handler(ngx_event_t *ev);
static ngx_int_t ngx_pico_check_body(ngx_pico_tunnel_t *t);
static ngx_int_t ngx_pico_check_path(ngx_pico_tunnel_t *t);
static ngx_int_t ngx_pico_check_auth(ngx_pico_tunnel_t *t);
static ngx_int_t ngx_pico_check_limit(ngx_pico_tunnel_t *t);

static void *ngx_pico_create_main_conf(ngx_conf_t *cf);
static char *ngx_pico_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_pico_create_loc_conf(ngx_conf_t *cf);
static char *ngx_pico_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static char *ngx_pico_tunnel(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_pico_preview(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_pico_init_process(ngx_cycle_t *cycle);
static void      ngx_pico_exit_process(ngx_cycle_t *cycle);


static ngx_command_t ngx_pico_commands[] = {

    {ngx_string("pico_tunnel"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     ngx_pico_tunnel, NGX_HTTP_LOC_CONF_OFFSET, 0, NULL},

    {ngx_string("pico_metrics"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     ngx_pico_metrics_directive, NGX_HTTP_LOC_CONF_OFFSET, 0, NULL},
    {ngx_string("pico_preview"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     ngx_pico_preview, NGX_HTTP_LOC_CONF_OFFSET, 0, NULL},

    {ngx_string("pico_redis"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_pico_main_conf_t, redis), NULL},

    {ngx_string("pico_redis_timeout"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_pico_main_conf_t, redis_timeout), NULL},

    {ngx_string("pico_cache_size"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_num_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_pico_main_conf_t, cache_size), NULL},

    {ngx_string("pico_cache_max_age"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_pico_main_conf_t, cache_max_age), NULL},

    {ngx_string("pico_max_tunnels"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_num_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_pico_main_conf_t, max_tunnels), NULL},

    {ngx_string("pico_auth"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_FLAG,
     ngx_conf_set_flag_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_pico_loc_conf_t, auth), NULL},

    {ngx_string("pico_splice"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_FLAG,
     ngx_conf_set_flag_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_pico_loc_conf_t, splice), NULL},

    {ngx_string("pico_connect_timeout"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_pico_loc_conf_t, connect_timeout), NULL},

    {ngx_string("pico_idle_timeout"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_pico_loc_conf_t, idle_timeout), NULL},

    {ngx_string("pico_unix_sndbuf"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_pico_loc_conf_t, unix_sndbuf), NULL},

    {ngx_string("pico_buffer_size"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_pico_loc_conf_t, buffer_size), NULL},

    ngx_null_command};

static ngx_http_module_t ngx_pico_module_ctx = {
    ngx_pico_add_variables,    /* preconfiguration */
    NULL,                      /* postconfiguration */
    ngx_pico_create_main_conf, /* create main configuration */
    ngx_pico_init_main_conf,   /* init main configuration */
    NULL,                      /* create server configuration */
    NULL,                      /* merge server configuration */
    ngx_pico_create_loc_conf,  /* create location configuration */
    ngx_pico_merge_loc_conf    /* merge location configuration */
};

ngx_module_t ngx_pico_module = {NGX_MODULE_V1,
                                &ngx_pico_module_ctx,  /* module context */
                                ngx_pico_commands,     /* module directives */
                                NGX_HTTP_MODULE,       /* module type */
                                NULL,                  /* init master */
                                NULL,                  /* init module */
                                ngx_pico_init_process, /* init process */
                                NULL,                  /* init thread */
                                NULL,                  /* exit thread */
                                ngx_pico_exit_process, /* exit process */
                                NULL,                  /* exit master */
                                NGX_MODULE_V1_PADDING};

static ngx_int_t
ngx_pico_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_pico_tunnel_t    *t;
    ngx_pico_main_conf_t *pmcf;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pico handler: \"%V\" \"%V\"", &r->method_name,
                   &r->unparsed_uri);

    rc = ngx_pico_check_method(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_pico_module);

    t = ngx_pico_tunnel_create(r, pmcf->worker);
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_pico_take_over(r);

    rc = ngx_pico_check_body(t);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    rc = ngx_pico_check_path(t);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    rc = ngx_pico_check_auth(t);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    rc = ngx_pico_check_limit(t);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    /* the cache or Redis: ngx_pico_session.c answers or connects */
    return ngx_pico_session_check(t);
}


/*
 * The content handler's checks: NGX_DECLINED when the request goes on to
 * the next step, otherwise they answered and return the answer's rc (which
 * may well be NGX_OK: an answer sent in full).
 */

/* NGX_DECLINED for a CONNECT that can become a tunnel */
static ngx_int_t
ngx_pico_check_method(ngx_http_request_t *r)
{
    ngx_uint_t           tunnel_path;
    const unsigned char *id;

    if (r->method != NGX_HTTP_CONNECT) {
        /*
         * Another method on a tunnel path, or another 405 of nginx's own
         * (TRACE) when the configuration sends every 405 here: only a
         * tunnel path allows CONNECT, what another path allows is the REST
         * API's to say (conf/nginx.conf.in sends those 405s there).
         */
        tunnel_path = pico_parse_tunnel_path(r->uri.data, r->uri.len, &id) !=
                      PICO_PATH_NOT_FOUND;

        return ngx_pico_send(r, NGX_HTTP_NOT_ALLOWED, "Method not allowed\n",
                             tunnel_path ? "CONNECT" : NULL);
    }

#if (NGX_HTTP_V2)
    /* a stream is not a connection: taking its events over would hang it */
    if (r->stream) {
        return ngx_pico_send(r, NGX_HTTP_BAD_REQUEST, "Tunnels need HTTP/1.1\n",
                             NULL);
    }
#endif

    if (r != r->main) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    return NGX_DECLINED;
}


/*
 * nginx rejected CONNECT before ngx_http_process_request(), so the
 * connection still has the header-reading handlers and the
 * client_header_timeout timer: take the connection's events over.  The
 * connection is never reused for another request.
 */
static void
ngx_pico_take_over(ngx_http_request_t *r)
{
    ngx_connection_t *c;

    c = r->connection;

    r->keepalive = 0;
    c->log->action = "opening a tunnel";

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    c->read->handler = ngx_pico_request_handler;
    c->write->handler = ngx_pico_request_handler;
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;
}


/* the connection's events, as ngx_http_request_handler() would do it */
static void
ngx_pico_request_handler(ngx_event_t *ev)
{
    ngx_connection_t   *c;
    ngx_http_request_t *r;

    c = ev->data;
    r = c->data;

    if (ev->write) {
        r->write_event_handler(r);

    } else {
        r->read_event_handler(r);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * A CONNECT has no content (RFC 9110, 9.3.6).  With Content-Length or
 * Transfer-Encoding nginx takes the tunnel's first bytes for a body: they
 * would be discarded after an answer, or be ambiguous in a tunnel.  Refuse
 * it before anything is read or relayed.  "Content-Length: 0" announces
 * nothing and is let through.
 */
static ngx_int_t
ngx_pico_check_body(ngx_pico_tunnel_t *t)
{
    ngx_http_request_t *r;

    r = t->request;

    if (r->headers_in.transfer_encoding == NULL &&
        r->headers_in.content_length_n <= 0) {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "pico: CONNECT with %s refused",
                  r->headers_in.transfer_encoding ? "Transfer-Encoding"
                                                  : "Content-Length");

    ngx_pico_set_status(t, "bad_request");
    return ngx_pico_send(r, NGX_HTTP_BAD_REQUEST,
                         "A CONNECT has no body: Content-Length and "
                         "Transfer-Encoding are not allowed\n",
                         NULL);
}


static ngx_int_t
ngx_pico_check_path(ngx_pico_tunnel_t *t)
{
    int                  rc;
    size_t               restlen;
    unsigned             port;
    ngx_http_request_t  *r;
    const unsigned char *id, *rest;

    r = t->request;

    rc = pico_parse_tunnel_path(r->unparsed_uri.data, r->unparsed_uri.len, &id);

    if (rc == PICO_PATH_NOT_FOUND) {
        /* CONNECT /v1/sessions/<id>/ports/<port>/tunnel: ngx_pico_ports.c */
        switch (pico_parse_ports_path(r->unparsed_uri.data, r->unparsed_uri.len,
                                      &id, &port, &rest, &restlen)) {
        case PICO_PORTS_OK:
            rc = pico_parse_ports_tunnel(rest, restlen) ? PICO_PATH_OK
                                                        : PICO_PATH_NOT_FOUND;
            t->port = port;
            break;

        case PICO_PORTS_BAD_ID:
            rc = PICO_PATH_BAD_ID;
            break;

        case PICO_PORTS_BAD_PORT:
            ngx_pico_set_status(t, "bad_request");
            return ngx_pico_send(r, NGX_HTTP_BAD_REQUEST,
                                 "Invalid port: expected 1..65535\n", NULL);
        }
    }

    switch (rc) {
    case PICO_PATH_OK:
        break;

    case PICO_PATH_BAD_ID:
        ngx_pico_set_status(t, "bad_request");
        return ngx_pico_send(r, NGX_HTTP_BAD_REQUEST,
                             "Invalid session id: expected a lowercase "
                             "canonical UUID\n",
                             NULL);

    default:
        ngx_pico_set_status(t, "not_found");
        return ngx_pico_send(r, NGX_HTTP_NOT_FOUND, "Not found\n", NULL);
    }

    ngx_memcpy(t->id, id, PICO_ID_LEN);
    t->session_id.data = t->id;
    t->session_id.len = PICO_ID_LEN;

    return NGX_DECLINED;
}


/* the token's shape only: whether Redis knows it is the lookup's job */
static ngx_int_t
ngx_pico_check_auth(ngx_pico_tunnel_t *t)
{
    size_t               toklen;
    ngx_int_t            rc;
    ngx_table_elt_t     *h;
    const unsigned char *tok;

    if (!t->plcf->auth) {
        return NGX_DECLINED;
    }

    h = t->request->headers_in.authorization;

    if (h == NULL) {
        rc = PICO_AUTH_MISSING;

    } else {
        rc = pico_parse_authorization(h->value.data, h->value.len, &tok,
                                      &toklen);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, t->request->connection->log, 0,
                   "pico authorization: %i", rc);

    if (rc != PICO_AUTH_OK) {
        ngx_pico_set_status(t, "unauthorized");
        return ngx_pico_send(t->request, NGX_HTTP_UNAUTHORIZED,
                             rc == PICO_AUTH_MISSING
                                 ? "Authorization required\n"
                                 : "Invalid token\n",
                             rc == PICO_AUTH_MISSING ? NGX_PICO_AUTH_REALM
                                                     : NGX_PICO_AUTH_INVALID);
    }

    ngx_memcpy(t->token, tok, PICO_TOKEN_LEN);
    t->has_token = 1;

    return NGX_DECLINED;
}


static ngx_int_t
ngx_pico_check_limit(ngx_pico_tunnel_t *t)
{
    if (ngx_pico_tunnel_reserve(t) != NGX_OK) {
        ngx_pico_set_status(t, "limit");
        return ngx_pico_send(t->request, NGX_HTTP_SERVICE_UNAVAILABLE,
                             "Too many tunnels\n", NULL);
    }

    return NGX_DECLINED;
}


static void *
ngx_pico_create_main_conf(ngx_conf_t *cf)
{
    ngx_pico_main_conf_t *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_pico_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    /* pmcf->redis = { 0, NULL }; */
    pmcf->redis_timeout = NGX_CONF_UNSET_MSEC;
    pmcf->max_tunnels = NGX_CONF_UNSET_UINT;
    pmcf->cache_size = NGX_CONF_UNSET_UINT;
    pmcf->cache_max_age = NGX_CONF_UNSET_MSEC;

    return pmcf;
}


static char *
ngx_pico_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_pico_main_conf_t *pmcf = conf;

    if (pmcf->redis.len == 0) {
        ngx_str_set(&pmcf->redis, "127.0.0.1:6379");
    }

    if (ngx_pico_redis_conf(cf, pmcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_pico_metrics_conf(cf, pmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_msec_value(pmcf->redis_timeout, 1000);
    ngx_conf_init_uint_value(pmcf->max_tunnels, 0);
    ngx_conf_init_uint_value(pmcf->cache_size, 10000);
    ngx_conf_init_msec_value(pmcf->cache_max_age, 5000);

    if (pmcf->cache_max_age == 0) {
        pmcf->cache_size = 0;
    }

    return NGX_CONF_OK;
}


static void *
ngx_pico_create_loc_conf(ngx_conf_t *cf)
{
    ngx_pico_loc_conf_t *plcf;

    plcf = ngx_pcalloc(cf->pool, sizeof(ngx_pico_loc_conf_t));
    if (plcf == NULL) {
        return NULL;
    }

    plcf->tunnel = NGX_CONF_UNSET;
    plcf->preview = NGX_CONF_UNSET;
    plcf->auth = NGX_CONF_UNSET;
    plcf->splice = NGX_CONF_UNSET;
    plcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    plcf->idle_timeout = NGX_CONF_UNSET_MSEC;
    plcf->buffer_size = NGX_CONF_UNSET_SIZE;
    plcf->unix_sndbuf = NGX_CONF_UNSET_SIZE;

    return plcf;
}


static char *
ngx_pico_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_pico_loc_conf_t *prev = parent;
    ngx_pico_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->tunnel, prev->tunnel, 0);
    ngx_conf_merge_value(conf->preview, prev->preview, 0);
    ngx_conf_merge_value(conf->auth, prev->auth, 0);
    ngx_conf_merge_value(conf->splice, prev->splice, 1);
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              5000);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 3600000);
    ngx_conf_merge_size_value(conf->buffer_size, prev->buffer_size,
                              (size_t)256 * 1024);
    ngx_conf_merge_size_value(conf->unix_sndbuf, prev->unix_sndbuf,
                              (size_t)4 * 1024 * 1024);

    if (conf->unix_sndbuf > (size_t)1024 * 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pico_unix_sndbuf must be at most 1g");
        return NGX_CONF_ERROR;
    }

    if (conf->buffer_size < 4096) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pico_buffer_size must be at least 4k");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_pico_tunnel(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pico_loc_conf_t      *plcf = conf;
    ngx_pico_main_conf_t     *pmcf;
    ngx_http_core_loc_conf_t *clcf;

    if (plcf->tunnel != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    plcf->tunnel = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_pico_handler;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_pico_module);
    pmcf->enabled = 1;

    return NGX_CONF_OK;
}


/* an HTTP preview location (ngx_pico_preview.c): Redis is needed */
static char *
ngx_pico_preview(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pico_loc_conf_t  *plcf = conf;
    ngx_pico_main_conf_t *pmcf;

    if (plcf->preview != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    plcf->preview = 1;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_pico_module);
    pmcf->enabled = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_pico_init_process(ngx_cycle_t *cycle)
{
    ngx_pico_worker_t    *w;
    ngx_pico_main_conf_t *pmcf;

    if (ngx_process != NGX_PROCESS_WORKER &&
        ngx_process != NGX_PROCESS_SINGLE) {
        return NGX_OK;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_pico_module);
    if (pmcf == NULL || !pmcf->enabled) {
        return NGX_OK;
    }

    w = ngx_pcalloc(cycle->pool, sizeof(ngx_pico_worker_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->pmcf = pmcf;
    w->cycle = cycle;
    w->log = cycle->log;
    ngx_queue_init(&w->pipes);

    ngx_pico_tunnel_init(cycle, w);
    ngx_pico_cache_init(w);

    if (ngx_pico_account_init(w) != NGX_OK) {
        return NGX_ERROR;
    }

    pmcf->worker = w;

    /* pico:events reaches the cache and the tunnels through these */
    return ngx_pico_redis_init(w, ngx_pico_session_event,
                               ngx_pico_session_subscribed,
                               ngx_pico_session_unsubscribed);
}


static void
ngx_pico_exit_process(ngx_cycle_t *cycle)
{
    ngx_pico_main_conf_t *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_pico_module);
    if (pmcf == NULL || pmcf->worker == NULL) {
        return;
    }

    /* the tunnels' last accounting first, then Redis flushes it */
    ngx_pico_tunnel_exit(pmcf->worker);
    ngx_pico_account_exit(pmcf->worker);
    ngx_pico_redis_exit(pmcf->worker);
    ngx_pico_cache_exit(pmcf->worker);
    ngx_pico_pipes_free(pmcf->worker);
}
