/*
 * The access-log variables of ngx_pico_module ($pico_session_id,
 * $pico_bytes_up, $pico_bytes_down, $pico_tunnel_time, $pico_tunnel_status,
 * $pico_cache),
 * read from the request's tunnel (its module context).  Added at
 * preconfiguration by ngx_pico_add_variables().
 */

#include "ngx_pico_module.h"

static ngx_int_t ngx_pico_variable(ngx_http_request_t        *r,
                                   ngx_http_variable_value_t *v,
                                   uintptr_t                  data);

enum {
    NGX_PICO_VAR_SESSION_ID = 0,
    NGX_PICO_VAR_BYTES_UP,
    NGX_PICO_VAR_BYTES_DOWN,
    NGX_PICO_VAR_TIME,
    NGX_PICO_VAR_STATUS,
    NGX_PICO_VAR_CACHE
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
    {ngx_string("pico_cache"), NULL, ngx_pico_variable, NGX_PICO_VAR_CACHE,
     NGX_HTTP_VAR_NOCACHEABLE, 0},
    ngx_http_null_variable};

ngx_int_t
ngx_pico_add_variables(ngx_conf_t *cf)
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


static ngx_int_t
ngx_pico_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
                  uintptr_t data)
{
    u_char            *p;
    ngx_msec_int_t     ms;
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
        v->len = ngx_sprintf(p, "%O", t->relay.up.bytes) - p;
        break;

    case NGX_PICO_VAR_BYTES_DOWN:
        v->len = ngx_sprintf(p, "%O", t->relay.down.bytes) - p;
        break;

    case NGX_PICO_VAR_TIME:
        if (t->relay.started == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        ms = (ngx_msec_int_t)((t->relay.ended ? t->relay.ended
                                              : ngx_current_msec) -
                              t->relay.started);
        ms = ngx_max(ms, 0);
        v->len = ngx_sprintf(p, "%T.%03M", (time_t)ms / 1000, ms % 1000) - p;
        break;

    case NGX_PICO_VAR_CACHE:
        /* whether the session check was answered by the cache */
        if (!t->checked) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = (u_char *)(t->cached ? "hit" : "miss");
        v->len = t->cached ? 3 : 4;
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
