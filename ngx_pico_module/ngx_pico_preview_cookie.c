/*
 * The pico_preview cookie of an HTTP preview (ngx_pico_preview.c): read
 * it from the request, and give the app the Cookie header without it, so
 * a link's token never reaches the sandbox.  Cookie headers are
 * "name=value" pairs separated by ";" (RFC 6265, 5.4); nginx 1.22 keeps
 * each Cookie header line in r->headers_in.cookies.
 */

#include "ngx_pico_module.h"

#define NGX_PICO_COOKIE "pico_preview"


/* 1 if the pair p..e (blanks trimmed) is pico_preview=...; *value set */
static ngx_uint_t
ngx_pico_cookie_ours(u_char *p, u_char *e, ngx_str_t *value)
{
    size_t n = sizeof(NGX_PICO_COOKIE) - 1;

    while (p < e && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if ((size_t)(e - p) <= n || ngx_strncmp(p, NGX_PICO_COOKIE, n) != 0 ||
        p[n] != '=') {
        return 0;
    }

    if (value) {
        value->data = p + n + 1;
        value->len = e - value->data;
        while (value->len && (value->data[value->len - 1] == ' ' ||
                              value->data[value->len - 1] == '\t')) {
            value->len--;
        }
    }

    return 1;
}


/* NGX_OK with the cookie's value, NGX_DECLINED when there is none */
ngx_int_t
ngx_pico_preview_cookie_get(ngx_http_request_t *r, ngx_str_t *value)
{
    u_char           *p, *e, *end;
    ngx_uint_t        i;
    ngx_table_elt_t **h;

    h = r->headers_in.cookies.elts;

    for (i = 0; i < r->headers_in.cookies.nelts; i++) {
        end = h[i]->value.data + h[i]->value.len;

        for (p = h[i]->value.data; p < end; p = e + 1) {
            e = ngx_strlchr(p, end, ';');
            if (e == NULL) {
                e = end;
            }

            if (ngx_pico_cookie_ours(p, e, value)) {
                return NGX_OK;
            }
        }
    }

    return NGX_DECLINED;
}


/* every cookie but ours, "; "-separated; empty: no Cookie header */
ngx_int_t
ngx_pico_preview_cookie_strip(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char           *p, *e, *end, *d;
    size_t            len;
    ngx_uint_t        i;
    ngx_table_elt_t **h;

    h = r->headers_in.cookies.elts;
    len = 0;

    for (i = 0; i < r->headers_in.cookies.nelts; i++) {
        len += h[i]->value.len + 2;
    }

    out->len = 0;
    out->data = ngx_pnalloc(r->pool, len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    d = out->data;

    for (i = 0; i < r->headers_in.cookies.nelts; i++) {
        end = h[i]->value.data + h[i]->value.len;

        for (p = h[i]->value.data; p < end; p = e + 1) {
            e = ngx_strlchr(p, end, ';');
            if (e == NULL) {
                e = end;
            }

            if (ngx_pico_cookie_ours(p, e, NULL)) {
                continue;
            }

            while (p < e && (*p == ' ' || *p == '\t')) {
                p++;
            }

            if (p == e) {
                continue;
            }

            if (d != out->data) {
                *d++ = ';';
                *d++ = ' ';
            }

            d = ngx_cpymem(d, p, e - p);
        }
    }

    out->len = d - out->data;

    return NGX_OK;
}
