/*
 * The $pico_preview_* variables of an HTTP preview (ngx_pico_preview.c
 * has the list): what its access check decided, for the location's
 * proxy_pass and proxy_set_header.  Not found before the check passed.
 */

#include "ngx_pico_module.h"


static ngx_int_t
ngx_pico_preview_var(ngx_http_request_t *r, ngx_http_variable_value_t *v,
                     uintptr_t data)
{
    u_char             *p;
    ngx_str_t           s;
    ngx_pico_preview_t *pv;

    pv = ngx_http_get_module_ctx(r, ngx_pico_preview_module);

    if (pv == NULL || pv->request != r || !pv->done || pv->status != 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {
    case 0:
        s = pv->upstream;
        break;
    case 1:
        s = pv->rest;
        break;
    case 2:
        s = pv->prefix;
        break;
    case 3:
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }
        s.data = p;
        s.len = ngx_sprintf(p, "%ui", pv->port) - p;
        break;
    default:
        if (ngx_pico_preview_cookie_strip(r, &s) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    v->data = s.data;
    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


ngx_int_t
ngx_pico_preview_variables(ngx_conf_t *cf)
{
    ngx_uint_t           i;
    ngx_http_variable_t *v;
    static ngx_str_t     names[] = {
            ngx_string("pico_preview_upstream"), ngx_string("pico_preview_uri"),
            ngx_string("pico_preview_prefix"), ngx_string("pico_preview_port"),
            ngx_string("pico_preview_cookie")};

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        v = ngx_http_add_variable(cf, &names[i], NGX_HTTP_VAR_NOCACHEABLE);
        if (v == NULL) {
            return NGX_ERROR;
        }

        v->get_handler = ngx_pico_preview_var;
        v->data = i;
    }

    return NGX_OK;
}
