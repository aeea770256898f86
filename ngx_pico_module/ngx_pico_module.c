/*
 * ngx_pico_module: directives, configuration, the content handler of the
 * tunnel location, the answers it gives before a tunnel opens, access-log
 * variables and the per-worker state.
 *
 * A CONNECT reaches us through "error_page 405 = @tunnel" (nginx rejects
 * CONNECT before any phase runs, see DESIGN.md).  The handler checks the
 * method, the path and the token's shape, then asks Redis
 * (ngx_pico_redis.c) and returns NGX_DONE; the lookup's answer either
 * finishes the request with an error or hands it to ngx_pico_relay.c.
 */

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ngx_pico_module.h"

static ngx_int_t ngx_pico_handler(ngx_http_request_t *r);
static void ngx_pico_request_handler(ngx_event_t *ev);
static void ngx_pico_cleanup(void *data);
static ngx_int_t ngx_pico_send(ngx_http_request_t *r, ngx_uint_t code,
                               char *body, char *www_authenticate);
static ngx_int_t ngx_pico_check_token(ngx_pico_tunnel_t *t,
                                      ngx_pico_record_t *rec);

static ngx_int_t ngx_pico_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_pico_variable(ngx_http_request_t *r,
                                   ngx_http_variable_value_t *v,
                                   uintptr_t data);
static void *ngx_pico_create_main_conf(ngx_conf_t *cf);
static char *ngx_pico_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_pico_resolve_redis(ngx_conf_t *cf, ngx_pico_main_conf_t *pmcf);
static void *ngx_pico_create_loc_conf(ngx_conf_t *cf);
static char *ngx_pico_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static char *ngx_pico_tunnel(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_pico_init_process(ngx_cycle_t *cycle);
static void ngx_pico_exit_process(ngx_cycle_t *cycle);

#define NGX_PICO_AUTH_REALM "Bearer realm=\"pico\""
#define NGX_PICO_AUTH_INVALID "Bearer realm=\"pico\", error=\"invalid_token\""

static ngx_command_t ngx_pico_commands[] = {

    {ngx_string("pico_tunnel"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     ngx_pico_tunnel, NGX_HTTP_LOC_CONF_OFFSET, 0, NULL},

    {ngx_string("pico_redis"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_pico_main_conf_t, redis), NULL},

    {ngx_string("pico_redis_timeout"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_MAIN_CONF_OFFSET,
     offsetof(ngx_pico_main_conf_t, redis_timeout), NULL},

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

enum {
    NGX_PICO_VAR_SESSION_ID = 0,
    NGX_PICO_VAR_BYTES_UP,
    NGX_PICO_VAR_BYTES_DOWN,
    NGX_PICO_VAR_TIME,
    NGX_PICO_VAR_STATUS
};

static ngx_http_variable_t ngx_pico_vars[] = {
    {ngx_string("pico_session_id"), NULL, ngx_pico_variable,
     NGX_PICO_VAR_SESSION_ID, NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("pico_bytes_up"), NULL, ngx_pico_variable,
     NGX_PICO_VAR_BYTES_UP, NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("pico_bytes_down"), NULL, ngx_pico_variable,
     NGX_PICO_VAR_BYTES_DOWN, NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("pico_tunnel_time"), NULL, ngx_pico_variable, NGX_PICO_VAR_TIME,
     NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("pico_tunnel_status"), NULL, ngx_pico_variable,
     NGX_PICO_VAR_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0},
    ngx_http_null_variable};

ngx_pico_worker_t *ngx_pico_worker(ngx_http_request_t *r)
{
    ngx_pico_main_conf_t *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_pico_module);

    return pmcf->worker;
}

static ngx_int_t ngx_pico_handler(ngx_http_request_t *r)
{
    size_t toklen;
    ngx_int_t rc;
    ngx_connection_t *c;
    ngx_pico_tunnel_t *t;
    ngx_pico_worker_t *w;
    ngx_pool_cleanup_t *cln;
    ngx_pico_loc_conf_t *plcf;
    const unsigned char *id, *tok;

    c = r->connection;

    if (r->method != NGX_HTTP_CONNECT) {
        /* other 405s arrive here through the same error_page */
        return ngx_pico_send(r, NGX_HTTP_NOT_ALLOWED, "Method not allowed\n",
                             NULL);
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return ngx_pico_send(r, NGX_HTTP_BAD_REQUEST, "Tunnels need HTTP/1.1\n",
                             NULL);
    }
#endif

    if (r != r->main) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_pico_module);
    w = ngx_pico_worker(r);

    t = ngx_pcalloc(r->pool, sizeof(ngx_pico_tunnel_t));
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_pico_cleanup;
    cln->data = t;

    t->request = r;
    t->worker = w;
    t->plcf = plcf;
    ngx_http_set_ctx(r, t, ngx_pico_module);

    /*
     * nginx rejected CONNECT before ngx_http_process_request(), so the
     * connection still has the header-reading handlers and the
     * client_header_timeout timer: take the connection's events over.
     * The connection is never reused for another request.
     */
    r->keepalive = 0;
    c->log->action = "opening a tunnel";

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    c->read->handler = ngx_pico_request_handler;
    c->write->handler = ngx_pico_request_handler;
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    switch (pico_parse_tunnel_path(r->unparsed_uri.data, r->unparsed_uri.len,
                                   &id)) {
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

    if (plcf->auth) {
        if (r->headers_in.authorization == NULL) {
            rc = PICO_AUTH_MISSING;

        } else {
            rc = pico_parse_authorization(
                r->headers_in.authorization->value.data,
                r->headers_in.authorization->value.len, &tok, &toklen);
        }

        if (rc != PICO_AUTH_OK) {
            ngx_pico_set_status(t, "unauthorized");
            return ngx_pico_send(
                r, NGX_HTTP_UNAUTHORIZED,
                rc == PICO_AUTH_MISSING ? "Authorization required\n"
                                        : "Invalid token\n",
                rc == PICO_AUTH_MISSING ? NGX_PICO_AUTH_REALM
                                        : NGX_PICO_AUTH_INVALID);
        }

        ngx_memcpy(t->token, tok, PICO_TOKEN_LEN);
        t->has_token = 1;
    }

    if (w->active >= w->pmcf->max_tunnels) {
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "pico: session %V: pico_max_tunnels (%ui) reached",
                      &t->session_id, w->pmcf->max_tunnels);
        ngx_pico_set_status(t, "limit");
        return ngx_pico_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                             "Too many tunnels\n", NULL);
    }

    w->active++;
    t->counted = 1;

    /* from here on a deletion of the session reaches this request too */
    ngx_queue_insert_tail(&w->tunnels, &t->queue);
    t->queued = 1;

    if (ngx_pico_redis_lookup(t) != NGX_OK) {
        ngx_pico_release(t);
        ngx_pico_set_status(t, "redis_down");
        return ngx_pico_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                             "Session store unavailable\n", NULL);
    }

    t->state = NGX_PICO_ST_LOOKUP;
    r->main->count++;

    return NGX_DONE;
}

/* the connection's events, as ngx_http_request_handler() would do it */
static void ngx_pico_request_handler(ngx_event_t *ev)
{
    ngx_connection_t *c;
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

void ngx_pico_lookup_done(ngx_pico_tunnel_t *t, ngx_pico_record_t *rec)
{
    ngx_connection_t *c;
    ngx_http_request_t *r;

    r = t->request;

    if (t->has_token) {
        if (ngx_pico_check_token(t, rec) != NGX_OK) {
            ngx_pico_set_status(t, "unauthorized");
            ngx_pico_release(t);
            c = r->connection;
            ngx_http_finalize_request(r, ngx_pico_send(r, NGX_HTTP_UNAUTHORIZED,
                                                       "Invalid token\n",
                                                       NGX_PICO_AUTH_INVALID));
            ngx_http_run_posted_requests(c);
            return;
        }
    }

    if (!rec->found ||
        (t->has_token && (rec->owner.len != rec->principal.len ||
                          ngx_strncmp(rec->owner.data, rec->principal.data,
                                      rec->owner.len) != 0))) {
        ngx_pico_reply(t, NGX_HTTP_NOT_FOUND, "Session not found\n");
        return;
    }

    if (rec->status.len != sizeof("running") - 1 ||
        ngx_strncmp(rec->status.data, "running", rec->status.len) != 0 ||
        rec->endpoint.len == 0) {
        ngx_pico_reply(t, NGX_HTTP_SERVICE_UNAVAILABLE, "Sandbox not ready\n");
        return;
    }

    t->endpoint.data = ngx_pstrdup(r->pool, &rec->endpoint);
    if (t->endpoint.data == NULL) {
        ngx_pico_reply(t, NGX_HTTP_INTERNAL_SERVER_ERROR, "Internal error\n");
        return;
    }

    t->endpoint.len = rec->endpoint.len;
    t->state = NGX_PICO_ST_CONNECT;

    ngx_pico_connect(t);
}

void ngx_pico_lookup_failed(ngx_pico_tunnel_t *t, char *why)
{
    ngx_log_error(NGX_LOG_ERR, t->request->connection->log, 0,
                  "pico: session %V: session lookup failed: %s", &t->session_id,
                  why);
    ngx_pico_set_status(t, "redis_down");
    ngx_pico_reply(t, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "Session store unavailable\n");
}

static ngx_int_t ngx_pico_check_token(ngx_pico_tunnel_t *t,
                                      ngx_pico_record_t *rec)
{
    unsigned int n;
    u_char md[EVP_MAX_MD_SIZE], hex[64];

    if (!rec->token_found ||
        !pico_parse_sha256_hex(rec->token_sha256.data, rec->token_sha256.len) ||
        rec->principal.len == 0) {
        return NGX_DECLINED;
    }

    if (EVP_Digest(t->token, PICO_TOKEN_LEN, md, &n, EVP_sha256(), NULL) != 1 ||
        n != 32) {
        return NGX_ERROR;
    }

    ngx_hex_dump(hex, md, 32);

    if (CRYPTO_memcmp(hex, rec->token_sha256.data, 64) != 0) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}

void ngx_pico_set_status(ngx_pico_tunnel_t *t, char *status)
{
    if (t->status.len == 0) {
        t->status.data = (u_char *)status;
        t->status.len = ngx_strlen(status);
    }
}

/* answers a request still waiting for Redis or the sandbox */
void ngx_pico_reply(ngx_pico_tunnel_t *t, ngx_uint_t code, char *body)
{
    ngx_connection_t *c;
    ngx_http_request_t *r;

    r = t->request;
    c = r->connection;

    switch (code) {
    case NGX_HTTP_NOT_FOUND:
        ngx_pico_set_status(t, "not_found");
        break;
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        ngx_pico_set_status(t, "not_ready");
        break;
    case NGX_HTTP_BAD_GATEWAY:
        ngx_pico_set_status(t, "connect_failed");
        break;
    default:
        ngx_pico_set_status(t, "error");
    }

    ngx_pico_release(t);

    ngx_http_finalize_request(r, ngx_pico_send(r, code, body, NULL));
    ngx_http_run_posted_requests(c);
}

/* closes an open tunnel (or a failed one past the point of answering) */
void ngx_pico_finish(ngx_pico_tunnel_t *t, char *status)
{
    ngx_connection_t *c;
    ngx_http_request_t *r;

    r = t->request;
    c = r->connection;

    ngx_pico_set_status(t, status);
    ngx_pico_release(t);

    ngx_http_finalize_request(r, NGX_ERROR);
    ngx_http_run_posted_requests(c);
}

/* gives back everything a tunnel holds; safe to call more than once */
void ngx_pico_release(ngx_pico_tunnel_t *t)
{
    if (t->released) {
        return;
    }

    t->released = 1;

    ngx_pico_redis_cancel(t);

    if (t->lookup_timer.timer_set) {
        ngx_del_timer(&t->lookup_timer);
    }

    if (t->queued) {
        ngx_queue_remove(&t->queue);
        t->queued = 0;
    }

    if (t->state == NGX_PICO_ST_RELAY) {
        t->ended = ngx_current_msec;
    }

    ngx_pico_relay_close(t);

    if (t->accounted) {
        ngx_pico_redis_account(t, -1, 0);
        t->accounted = 0;
    }

    if (t->counted) {
        t->worker->active--;
        t->counted = 0;
    }

    t->state = NGX_PICO_ST_DONE;
}

static void ngx_pico_cleanup(void *data)
{
    ngx_pico_tunnel_t *t = data;

    ngx_pico_release(t);
}

/* closes this worker's open tunnels to session id (pico:events) */
void ngx_pico_close_session(ngx_pico_worker_t *w, u_char *id)
{
    ngx_queue_t *q, *next;
    ngx_pico_tunnel_t *t;

    for (q = ngx_queue_head(&w->tunnels); q != ngx_queue_sentinel(&w->tunnels);
         q = next) {
        next = ngx_queue_next(q);
        t = ngx_queue_data(q, ngx_pico_tunnel_t, queue);

        if (ngx_memcmp(t->id, id, PICO_ID_LEN) != 0) {
            continue;
        }

        /* finishing one request never closes another: next stays valid */

        switch (t->state) {

        case NGX_PICO_ST_RELAY:
            ngx_log_error(NGX_LOG_NOTICE, t->request->connection->log, 0,
                          "pico: session %V: deleted, closing its tunnel",
                          &t->session_id);
            ngx_pico_finish(t, "deleted");
            break;

        case NGX_PICO_ST_CONNECT:
            /* looked up just before the deletion: it is gone now */
            ngx_pico_reply(t, NGX_HTTP_NOT_FOUND, "Session not found\n");
            break;

        default:
            /* a lookup in flight: its answer tells */
            break;
        }
    }
}

void ngx_pico_recheck_done(ngx_pico_worker_t *w, u_char *id, ngx_uint_t exists)
{
    if (!exists) {
        ngx_pico_close_session(w, id);
    }
}

static ngx_int_t ngx_pico_send(ngx_http_request_t *r, ngx_uint_t code,
                               char *body, char *www_authenticate)
{
    size_t len;
    ngx_int_t rc;
    ngx_buf_t *b;
    ngx_chain_t out;
    ngx_table_elt_t *h;

    len = ngx_strlen(body);

    r->headers_out.status = code;
    r->headers_out.content_length_n = (off_t)len;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;
    r->keepalive = 0;

    if (code == NGX_HTTP_NOT_ALLOWED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        ngx_str_set(&h->value, "CONNECT");
    }

    if (www_authenticate) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        h->value.data = (u_char *)www_authenticate;
        h->value.len = ngx_strlen(www_authenticate);
        r->headers_out.www_authenticate = h;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = (u_char *)body;
    b->last = b->pos + len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}

static ngx_int_t ngx_pico_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t *var, *v;

    for (v = ngx_pico_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}

static ngx_int_t ngx_pico_variable(ngx_http_request_t *r,
                                   ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char *p;
    ngx_msec_int_t ms;
    ngx_pico_tunnel_t *t;

    t = ngx_http_get_module_ctx(r, ngx_pico_module);

    if (t == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN + 8);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;

    switch (data) {

    case NGX_PICO_VAR_SESSION_ID:
        if (t->session_id.len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = t->session_id.data;
        v->len = t->session_id.len;
        break;

    case NGX_PICO_VAR_BYTES_UP:
        v->len = ngx_sprintf(p, "%O", t->up.bytes) - p;
        break;

    case NGX_PICO_VAR_BYTES_DOWN:
        v->len = ngx_sprintf(p, "%O", t->down.bytes) - p;
        break;

    case NGX_PICO_VAR_TIME:
        if (t->started == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        ms = (ngx_msec_int_t)((t->ended ? t->ended : ngx_current_msec) -
                              t->started);
        ms = ngx_max(ms, 0);
        v->len = ngx_sprintf(p, "%T.%03M", (time_t)ms / 1000, ms % 1000) - p;
        break;

    default: /* NGX_PICO_VAR_STATUS */
        if (t->status.len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = t->status.data;
        v->len = t->status.len;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}

static void *ngx_pico_create_main_conf(ngx_conf_t *cf)
{
    ngx_pico_main_conf_t *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_pico_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    /* pmcf->redis = { 0, NULL }; */
    pmcf->redis_timeout = NGX_CONF_UNSET_MSEC;
    pmcf->max_tunnels = NGX_CONF_UNSET_UINT;

    return pmcf;
}

static char *ngx_pico_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_pico_main_conf_t *pmcf = conf;

    if (pmcf->redis.len == 0) {
        ngx_str_set(&pmcf->redis, "127.0.0.1:6379");
    }

    if (ngx_pico_resolve_redis(cf, pmcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_msec_value(pmcf->redis_timeout, 1000);
    ngx_conf_init_uint_value(pmcf->max_tunnels, 0);

    return NGX_CONF_OK;
}

/*
 * A name in pico_redis is resolved here, in the master, when the
 * configuration is read (start and reload), as nginx does for upstream
 * servers: hiredis would otherwise resolve it with a blocking lookup inside
 * a worker at every (re)connect.  Workers get an address literal.
 */
static char *ngx_pico_resolve_redis(ngx_conf_t *cf, ngx_pico_main_conf_t *pmcf)
{
    size_t len;
    ngx_url_t u;

    if (pmcf->redis.len > 5 && ngx_strncmp(pmcf->redis.data, "unix:", 5) == 0) {
        len = pmcf->redis.len - 5;

        if (pmcf->redis.data[5] != '/' ||
            len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pico_redis \"%V\": unix: needs an absolute "
                               "path shorter than %uz bytes",
                               &pmcf->redis,
                               sizeof(((struct sockaddr_un *)0)->sun_path));
            return NGX_CONF_ERROR;
        }

        pmcf->redis_host = ngx_pnalloc(cf->pool, len + 1);
        if (pmcf->redis_host == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_cpystrn(pmcf->redis_host, pmcf->redis.data + 5, len + 1);
        return NGX_CONF_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = pmcf->redis;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pico_redis \"%V\": %s (expected unix:/path or "
                           "host[:port])",
                           &pmcf->redis, u.err ? u.err : "no address");
        return NGX_CONF_ERROR;
    }

    if (u.naddrs > 1) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "pico_redis \"%V\" has %ui addresses, using %V",
                           &pmcf->redis, u.naddrs, &u.addrs[0].name);
    }

    pmcf->redis_host = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (pmcf->redis_host == NULL) {
        return NGX_CONF_ERROR;
    }

    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                        pmcf->redis_host, NGX_SOCKADDR_STRLEN, 0);
    pmcf->redis_host[len] = '\0';
    pmcf->redis_port = ngx_inet_get_port(u.addrs[0].sockaddr);

    return NGX_CONF_OK;
}

static void *ngx_pico_create_loc_conf(ngx_conf_t *cf)
{
    ngx_pico_loc_conf_t *plcf;

    plcf = ngx_pcalloc(cf->pool, sizeof(ngx_pico_loc_conf_t));
    if (plcf == NULL) {
        return NULL;
    }

    plcf->tunnel = NGX_CONF_UNSET;
    plcf->auth = NGX_CONF_UNSET;
    plcf->splice = NGX_CONF_UNSET;
    plcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    plcf->idle_timeout = NGX_CONF_UNSET_MSEC;
    plcf->buffer_size = NGX_CONF_UNSET_SIZE;
    plcf->unix_sndbuf = NGX_CONF_UNSET_SIZE;

    return plcf;
}

static char *ngx_pico_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_pico_loc_conf_t *prev = parent;
    ngx_pico_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->tunnel, prev->tunnel, 0);
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

static char *ngx_pico_tunnel(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_pico_loc_conf_t *plcf = conf;
    ngx_pico_main_conf_t *pmcf;
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

static ngx_int_t ngx_pico_init_process(ngx_cycle_t *cycle)
{
    struct rlimit rlim;
    ngx_pico_worker_t *w;
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
    ngx_queue_init(&w->tunnels);
    ngx_queue_init(&w->pipes);

    if (pmcf->max_tunnels == 0) {
        /*
         * Two connections a tunnel.  nginx starts closing connections that
         * wait for a request ("worker_connections are not enough, reusing
         * connections") once fewer than 1/16 of them are free: stay below
         * that, with room for everything else, so the limit is a clean 503.
         */
        pmcf->max_tunnels =
            cycle->connection_n > 256
                ? (cycle->connection_n - cycle->connection_n / 16 - 64) / 2
                : cycle->connection_n / 4;

        /*
         * And two descriptors a tunnel: when worker_connections is set above
         * the open-files limit (worker_rlimit_nofile, set by nginx before
         * this runs), keep 256 descriptors for the listening sockets, Redis,
         * logs, the pipe cache and the 503 itself.
         */
        if (getrlimit(RLIMIT_NOFILE, &rlim) == 0 &&
            rlim.rlim_cur != RLIM_INFINITY && rlim.rlim_cur > 1024 &&
            pmcf->max_tunnels > (rlim.rlim_cur - 256) / 2) {
            pmcf->max_tunnels = (rlim.rlim_cur - 256) / 2;
        }

        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "pico: pico_max_tunnels %ui in this worker",
                      pmcf->max_tunnels);
    }

    pmcf->worker = w;

    return ngx_pico_redis_init(w);
}

static void ngx_pico_exit_process(ngx_cycle_t *cycle)
{
    ngx_pico_main_conf_t *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_pico_module);
    if (pmcf == NULL || pmcf->worker == NULL) {
        return;
    }

    ngx_pico_redis_exit(pmcf->worker);
    ngx_pico_pipes_free(pmcf->worker);
}
