/*
 * HTTP preview: a web app listening on a port of a sandbox, reached with
 * a browser at /v1/sessions/<id>/ports/<port>/<path>.  This file is the
 * access-phase check of a location with "pico_preview": it decides who
 * may see the port and where it is; stock nginx (proxy_pass, WebSockets
 * included) does the HTTP, with the variables set here:
 *
 *   $pico_preview_upstream  unix:<dir>/ports.sock: (pico-init's port
 *                           relay, which takes the port from the
 *                           X-Pico-Port header) or <pod ip>:<port>
 *   $pico_preview_uri       <path>?<args>, the prefix stripped
 *   $pico_preview_prefix    /v1/sessions/<id>/ports/<port> (for
 *                           X-Forwarded-Prefix)
 *   $pico_preview_port      <port>
 *   $pico_preview_cookie    the Cookie header without pico_preview
 *
 * Who: with pico_auth off anyone (as the tunnel); with it on the owner's
 * bearer token, or a preview link the API signed (POST .../preview): a
 * random token whose SHA-256 names pico:preview:<digest> in Redis, with
 * the session, port and expiry it is good for.  The link's
 * ?pico_preview=<token> is traded for a cookie scoped to the port's
 * prefix and a redirect to the same URL without it, so the token leaves
 * the address bar and the app never sees it.
 *
 * Calls: preview -> preview_vars, preview_cookie, ports (the endpoint
 * rule), redis_lookup (whose answer comes back through a handler, as for
 * tunnels).
 *
 * ngx_pico_preview_module is a second module of the same .so only for
 * its own request context slot: a tunnel's context (ngx_pico_module's)
 * is read by the access-log variables of every request, and must never
 * be a preview's.  Its directive and configuration are ngx_pico_module's
 * (pico_preview, pico_auth).
 */

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ngx_pico_module.h"

#define NGX_PICO_PREVIEW_ARG "pico_preview"


static ngx_int_t ngx_pico_preview_handler(ngx_http_request_t *r);
static ngx_int_t ngx_pico_preview_start(ngx_http_request_t *r);
static ngx_int_t ngx_pico_preview_credentials(ngx_http_request_t *r,
                                              ngx_pico_preview_t *pv);
static void ngx_pico_preview_lookup_handler(void *data, ngx_pico_record_t *rec,
                                            char *error);
static void ngx_pico_preview_verdict(ngx_pico_preview_t *pv,
                                     ngx_pico_record_t  *rec);
static ngx_int_t ngx_pico_preview_link_ok(ngx_pico_preview_t *pv,
                                          ngx_pico_record_t  *rec);
static ngx_int_t ngx_pico_preview_upstream(ngx_pico_preview_t *pv,
                                           ngx_str_t          *endpoint);
static ngx_int_t ngx_pico_preview_answer(ngx_http_request_t *r,
                                         ngx_pico_preview_t *pv);
static ngx_int_t ngx_pico_preview_json(ngx_http_request_t *r, ngx_uint_t status,
                                       char *message);
static ngx_int_t ngx_pico_preview_redirect(ngx_http_request_t *r,
                                           ngx_pico_preview_t *pv);
static void      ngx_pico_preview_cleanup(void *data);
static ngx_int_t ngx_pico_preview_sha256(u_char *in, size_t len, u_char *hex);
static ngx_int_t ngx_pico_preview_init(ngx_conf_t *cf);

static ngx_http_module_t ngx_pico_preview_module_ctx = {
    NULL,                  /* preconfiguration */
    ngx_pico_preview_init, /* postconfiguration */
    NULL,                  /* create main configuration */
    NULL,                  /* init main configuration */
    NULL,                  /* create server configuration */
    NULL,                  /* merge server configuration */
    NULL,                  /* create location configuration */
    NULL                   /* merge location configuration */
};

ngx_module_t ngx_pico_preview_module = {NGX_MODULE_V1,
                                        &ngx_pico_preview_module_ctx,
                                        NULL,            /* directives */
                                        NGX_HTTP_MODULE, /* module type */
                                        NULL,            /* init master */
                                        NULL,            /* init module */
                                        NULL,            /* init process */
                                        NULL,            /* init thread */
                                        NULL,            /* exit thread */
                                        NULL,            /* exit process */
                                        NULL,            /* exit master */
                                        NGX_MODULE_V1_PADDING};


/* postconfiguration: the access-phase handler and the variables */
static ngx_int_t
ngx_pico_preview_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt       *h;
    ngx_http_core_main_conf_t *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_pico_preview_handler;

    return ngx_pico_preview_variables(cf);
}


static ngx_int_t
ngx_pico_preview_handler(ngx_http_request_t *r)
{
    ngx_pico_preview_t  *pv;
    ngx_pico_loc_conf_t *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_pico_module);
    if (!plcf->preview) {
        return NGX_DECLINED;
    }

    pv = ngx_http_get_module_ctx(r, ngx_pico_preview_module);

    if (pv == NULL) {
        return ngx_pico_preview_start(r);
    }

    if (!pv->done) {
        return NGX_AGAIN; /* the lookup runs the phases again */
    }

    return ngx_pico_preview_answer(r, pv);
}


/* parse, credentials, lookup: NGX_AGAIN while Redis answers */
static ngx_int_t
ngx_pico_preview_start(ngx_http_request_t *r)
{
    size_t                restlen;
    unsigned              port;
    ngx_int_t             rc;
    ngx_pico_preview_t   *pv;
    ngx_pool_cleanup_t   *cln;
    ngx_pico_main_conf_t *pmcf;
    const unsigned char  *id, *rest;

    switch (pico_parse_ports_path(r->unparsed_uri.data, r->unparsed_uri.len,
                                  &id, &port, &rest, &restlen)) {
    case PICO_PORTS_OK:
        break;

    case PICO_PORTS_BAD_ID:
        return ngx_pico_preview_json(r, NGX_HTTP_BAD_REQUEST,
                                     "session id must be a UUID");

    case PICO_PORTS_BAD_PORT:
        return ngx_pico_preview_json(r, NGX_HTTP_BAD_REQUEST,
                                     "port must be 1..65535");

    default:
        return ngx_pico_preview_json(r, NGX_HTTP_NOT_FOUND, "no such path");
    }

    pv = ngx_pcalloc(r->pool, sizeof(ngx_pico_preview_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (pv == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_pico_preview_cleanup;
    cln->data = pv;

    pv->request = r;
    pv->port = port;
    ngx_memcpy(pv->id, id, PICO_ID_LEN);
    pv->rest.data = (u_char *)rest;
    pv->rest.len = restlen;
    pv->prefix.data = r->unparsed_uri.data;
    pv->prefix.len = rest - r->unparsed_uri.data;

    ngx_http_set_ctx(r, pv, ngx_pico_preview_module);

    /* .../ports/8080 -> .../ports/8080/: relative links need the slash */
    if (restlen == 0 || rest[0] == '?') {
        pv->status = NGX_HTTP_MOVED_PERMANENTLY;
        pv->done = 1;
        return ngx_pico_preview_answer(r, pv);
    }

    rc = ngx_pico_preview_credentials(r, pv);
    if (rc != NGX_OK) {
        return rc;
    }

    pmcf = ngx_http_get_module_main_conf(r, ngx_pico_module);

    pv->lookup =
        pv->cred == NGX_PICO_PV_LINK || pv->cred == NGX_PICO_PV_COOKIE
            ? ngx_pico_redis_lookup_preview(pmcf->worker, pv->id, pv->digest,
                                            r->connection->log,
                                            ngx_pico_preview_lookup_handler, pv)
            : ngx_pico_redis_lookup(
                  pmcf->worker, pv->id,
                  pv->cred == NGX_PICO_PV_BEARER ? pv->token : NULL,
                  r->connection->log, ngx_pico_preview_lookup_handler, pv);
    if (pv->lookup == NULL) {
        return ngx_pico_preview_json(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "session store unavailable");
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "pico preview: port %ui, credential %d", pv->port,
                   (int)pv->cred);

    /* a client that goes away meanwhile ends the request: the cleanup
     * cancels the lookup */
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_AGAIN;
}


/* which credential the request brings: NGX_OK, or the answer's rc */
static ngx_int_t
ngx_pico_preview_credentials(ngx_http_request_t *r, ngx_pico_preview_t *pv)
{
    size_t               toklen;
    ngx_int_t            rc;
    ngx_str_t            v;
    ngx_pico_loc_conf_t *plcf;
    const unsigned char *tok;

    plcf = ngx_http_get_module_loc_conf(r, ngx_pico_module);

    /* as for tunnels, auth off lets anyone in; credentials are not read */
    if (!plcf->auth) {
        pv->cred = NGX_PICO_PV_OPEN;
        return NGX_OK;
    }

    if (ngx_http_arg(r, (u_char *)NGX_PICO_PREVIEW_ARG,
                     sizeof(NGX_PICO_PREVIEW_ARG) - 1, &v) == NGX_OK) {
        pv->cred = NGX_PICO_PV_LINK;

    } else if (ngx_pico_preview_cookie_get(r, &v) == NGX_OK) {
        pv->cred = NGX_PICO_PV_COOKIE;

    } else if (r->headers_in.authorization == NULL) {
        return ngx_pico_preview_json(r, NGX_HTTP_UNAUTHORIZED,
                                     "Authorization: Bearer <token> or a "
                                     "preview link required");

    } else {
        rc = pico_parse_authorization(r->headers_in.authorization->value.data,
                                      r->headers_in.authorization->value.len,
                                      &tok, &toklen);
        if (rc != PICO_AUTH_OK) {
            return ngx_pico_preview_json(r, NGX_HTTP_UNAUTHORIZED,
                                         "invalid token");
        }

        ngx_memcpy(pv->token, tok, PICO_TOKEN_LEN);
        pv->cred = NGX_PICO_PV_BEARER;
        return NGX_OK;
    }

    /* a link's token: 64 lowercase hex, looked up by its digest */
    if (!pico_parse_sha256_hex(v.data, v.len)) {
        return ngx_pico_preview_json(r, NGX_HTTP_FORBIDDEN,
                                     "preview link expired or invalid");
    }

    ngx_memcpy(pv->link, v.data, NGX_PICO_PREVIEW_HEX);

    if (ngx_pico_preview_sha256(pv->link, NGX_PICO_PREVIEW_HEX, pv->digest) !=
        NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


static void
ngx_pico_preview_lookup_handler(void *data, ngx_pico_record_t *rec, char *error)
{
    ngx_pico_preview_t *pv = data;
    ngx_http_request_t *r;
    ngx_connection_t   *c;

    r = pv->request;
    c = r->connection;
    pv->lookup = NULL;
    pv->done = 1;

    if (rec == NULL) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "pico: preview of session %*s: lookup failed: %s",
                      (size_t)PICO_ID_LEN, pv->id, error);
        pv->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        pv->message = "session store unavailable";

    } else {
        ngx_pico_preview_verdict(pv, rec);
    }

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/* pv->status 0 and the upstream set, or the answer to give */
static void
ngx_pico_preview_verdict(ngx_pico_preview_t *pv, ngx_pico_record_t *rec)
{
    u_char hex[64];

    if ((pv->cred == NGX_PICO_PV_LINK || pv->cred == NGX_PICO_PV_COOKIE) &&
        ngx_pico_preview_link_ok(pv, rec) != NGX_OK) {
        return;
    }

    if (pv->cred == NGX_PICO_PV_BEARER) {
        /* constant time: the digest must not leak through timing */
        if (!rec->token_found ||
            !pico_parse_sha256_hex(rec->token_sha256.data,
                                   rec->token_sha256.len) ||
            ngx_pico_preview_sha256(pv->token, PICO_TOKEN_LEN, hex) != NGX_OK ||
            CRYPTO_memcmp(hex, rec->token_sha256.data, 64) != 0) {
            pv->status = NGX_HTTP_UNAUTHORIZED;
            pv->message = "invalid token";
            return;
        }

        /* another principal's session is answered as if it did not exist */
        if (rec->found && (rec->owner.len != rec->principal.len ||
                           ngx_strncmp(rec->owner.data, rec->principal.data,
                                       rec->owner.len) != 0)) {
            rec->found = 0;
        }
    }

    if (!rec->found) {
        pv->status = NGX_HTTP_NOT_FOUND;
        pv->message = "session not found";
        return;
    }

    if (rec->status.len != sizeof("running") - 1 ||
        ngx_strncmp(rec->status.data, "running", rec->status.len) != 0 ||
        ngx_pico_preview_upstream(pv, &rec->endpoint) != NGX_OK) {
        pv->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        pv->message = "sandbox not ready";
        return;
    }

    if (pv->cred == NGX_PICO_PV_LINK) {
        pv->status = NGX_HTTP_MOVED_TEMPORARILY; /* the cookie, then back */
    }
}


/* NGX_OK: the link is this session's and port's, and not expired */
static ngx_int_t
ngx_pico_preview_link_ok(ngx_pico_preview_t *pv, ngx_pico_record_t *rec)
{
    ngx_int_t port, expires;

    pv->status = NGX_HTTP_FORBIDDEN;

    if (!rec->preview_found) {
        pv->message = "preview link expired or invalid";
        return NGX_DECLINED;
    }

    port = ngx_atoi(rec->preview_port.data, rec->preview_port.len);
    expires = ngx_atoi(rec->preview_expires.data, rec->preview_expires.len);

    if (rec->preview_session.len != PICO_ID_LEN ||
        ngx_memcmp(rec->preview_session.data, pv->id, PICO_ID_LEN) != 0 ||
        port != (ngx_int_t)pv->port) {
        pv->message = "preview link is for another session or port";
        return NGX_DECLINED;
    }

    /* Redis' TTL removes the record; this is for the second it lags */
    if (expires == NGX_ERROR || expires <= ngx_time()) {
        pv->message = "preview link expired";
        return NGX_DECLINED;
    }

    pv->expires = expires;
    pv->status = 0;

    return NGX_OK;
}


/* proxy_pass's address for the session's endpoint and the port */
static ngx_int_t
ngx_pico_preview_upstream(ngx_pico_preview_t *pv, ngx_str_t *endpoint)
{
    u_char          *p;
    ngx_pico_relay_t rl;

    /* ngx_pico_ports.c's rule, on a relay that is never connected */
    ngx_memzero(&rl, sizeof(ngx_pico_relay_t));
    rl.pool = pv->request->pool;
    rl.port = pv->port;

    if (ngx_pico_ports_endpoint(&rl, endpoint) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!rl.port_header) {
        pv->upstream = rl.endpoint;
        return NGX_OK;
    }

    /* "unix:/path:" is how proxy_pass names a unix socket */
    p = ngx_pnalloc(pv->request->pool, rl.endpoint.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    pv->upstream.data = p;
    p = ngx_cpymem(p, rl.endpoint.data, rl.endpoint.len);
    *p++ = ':';
    pv->upstream.len = p - pv->upstream.data;

    return NGX_OK;
}


/* the phases ran again after the lookup, or a redirect was decided */
static ngx_int_t
ngx_pico_preview_answer(ngx_http_request_t *r, ngx_pico_preview_t *pv)
{
    switch (pv->status) {

    case 0:
        return NGX_DECLINED; /* on to proxy_pass */

    case NGX_HTTP_MOVED_PERMANENTLY:
    case NGX_HTTP_MOVED_TEMPORARILY:
        return ngx_pico_preview_redirect(r, pv);

    default:
        return ngx_pico_preview_json(r, pv->status, pv->message);
    }
}


/* a JSON error like the REST API's; finalizes the request itself */
static ngx_int_t
ngx_pico_preview_json(ngx_http_request_t *r, ngx_uint_t status, char *message)
{
    ngx_buf_t       *b;
    ngx_int_t        rc;
    ngx_chain_t      out;
    ngx_table_elt_t *h;
    char            *code;

    /* the REST API's codes for the same answers */
    code = status == NGX_HTTP_BAD_REQUEST    ? "invalid_request"
           : status == NGX_HTTP_UNAUTHORIZED ? "unauthorized"
           : status == NGX_HTTP_FORBIDDEN    ? "forbidden"
           : status == NGX_HTTP_NOT_FOUND    ? "not_found"
                                             : "unavailable";

    b = ngx_create_temp_buf(r->pool,
                            64 + ngx_strlen(code) + ngx_strlen(message));
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last,
                          "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n",
                          code, message);
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    if (status == NGX_HTTP_UNAUTHORIZED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        ngx_str_set(&h->value, NGX_PICO_AUTH_REALM);
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);
    if (rc != NGX_ERROR && rc <= NGX_OK && !r->header_only) {
        rc = ngx_http_output_filter(r, &out);
    }

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * 301 to the prefix with a slash; or 302 after a link's token, with the
 * cookie, to the same URL without ?pico_preview=.
 */
static ngx_int_t
ngx_pico_preview_redirect(ngx_http_request_t *r, ngx_pico_preview_t *pv)
{
    u_char          *p, *q, *end, *arg, *e, sep;
    size_t           len;
    ngx_table_elt_t *loc, *cookie;

    len = pv->prefix.len + 1 + pv->rest.len;
    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    loc = ngx_list_push(&r->headers_out.headers);
    if (loc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    loc->hash = 1;
    ngx_str_set(&loc->key, "Location");
    loc->value.data = p;
    r->headers_out.location = loc;

    p = ngx_cpymem(p, pv->prefix.data, pv->prefix.len);

    if (pv->status == NGX_HTTP_MOVED_PERMANENTLY) {
        *p++ = '/';
        p = ngx_cpymem(p, pv->rest.data, pv->rest.len);
        loc->value.len = p - loc->value.data;
        return pv->status;
    }

    /* the path, then every argument but ours */
    end = pv->rest.data + pv->rest.len;
    q = ngx_strlchr(pv->rest.data, end, '?');
    p = ngx_cpymem(p, pv->rest.data, (q ? q : end) - pv->rest.data);
    sep = '?';

    for (arg = q ? q + 1 : end; arg < end; arg = e + 1) {
        e = ngx_strlchr(arg, end, '&');
        if (e == NULL) {
            e = end;
        }

        if ((size_t)(e - arg) < sizeof(NGX_PICO_PREVIEW_ARG) ||
            ngx_strncmp(arg, NGX_PICO_PREVIEW_ARG "=",
                        sizeof(NGX_PICO_PREVIEW_ARG)) != 0) {
            *p++ = sep;
            p = ngx_cpymem(p, arg, e - arg);
            sep = '&';
        }
    }

    loc->value.len = p - loc->value.data;

    cookie = ngx_list_push(&r->headers_out.headers);
    if (cookie == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = sizeof("pico_preview=; Path=/; Max-Age=; HttpOnly; SameSite=Lax") +
          NGX_PICO_PREVIEW_HEX + pv->prefix.len + NGX_TIME_T_LEN;
    cookie->value.data = ngx_pnalloc(r->pool, len);
    if (cookie->value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cookie->hash = 1;
    ngx_str_set(&cookie->key, "Set-Cookie");
    cookie->value.len =
        ngx_sprintf(cookie->value.data,
                    NGX_PICO_PREVIEW_ARG "=%*s; Path=%V/; Max-Age=%T; "
                                         "HttpOnly; SameSite=Lax",
                    (size_t)NGX_PICO_PREVIEW_HEX, pv->link, &pv->prefix,
                    pv->expires - ngx_time()) -
        cookie->value.data;

    return pv->status;
}


static void
ngx_pico_preview_cleanup(void *data)
{
    ngx_pico_preview_t *pv = data;

    if (pv->lookup) {
        ngx_pico_redis_lookup_cancel(pv->lookup);
        pv->lookup = NULL;
    }
}


static ngx_int_t
ngx_pico_preview_sha256(u_char *in, size_t len, u_char *hex)
{
    u_char       md[EVP_MAX_MD_SIZE];
    unsigned int n;

    if (EVP_Digest(in, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        return NGX_ERROR;
    }

    ngx_hex_dump(hex, md, 32);

    return NGX_OK;
}
