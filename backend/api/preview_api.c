/*
 * preview_api.c - POST /v1/sessions/<id>/ports/<port>/preview (see
 * preview_api.h): checks the path, has core/preview.c make the link, and
 * answers {"url", "path", "port", "expires_at"}. The url is absolute when
 * the Host header is a plain host[:port]; path is always there.
 */
#include <stdio.h>
#include <string.h>

#include "api/preview_api.h"
#include "core/preview.h"
#include "core/util.h"

/* A Host header fit to go into a URL: [A-Za-z0-9.-:[]] only. */
static int host_valid(const char *h)
{
    size_t n = h ? strlen(h) : 0;

    return n > 0 && n <= 255 &&
           strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789.-:[]") == n;
}

json_t *preview_api_post(pico_app *app, struct MHD_Connection *conn,
                         const char *id, const char *principal,
                         const char *rest, const char *body, size_t len,
                         api_error *e)
{
    const char *host =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    const char *proto =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-Proto");
    const char *slash = strchr(rest, '/');
    char port[8], url[512], when[32];
    preview_link link;
    size_t n = slash ? (size_t)(slash - rest) : 0;
    json_t *out;

    if (slash == NULL || strcmp(slash, "/preview") != 0) {
        api_error_set(e, 404, "not_found", "no such path");
        return NULL;
    }
    if (n == 0 || n >= sizeof(port)) {
        api_error_set(e, 400, "invalid_port", "port must be 1..65535");
        return NULL;
    }
    memcpy(port, rest, n);
    port[n] = '\0';
    if (preview_create(app, id, principal, port, body, len, &link, e) < 0)
        return NULL;
    if (format_rfc3339(link.expires_at, when, sizeof(when)) < 0)
        when[0] = '\0';
    out = json_pack("{s:s,s:i,s:s}", "path", link.path, "port", (int)link.port,
                    "expires_at", when);
    if (out != NULL && host_valid(host)) {
        snprintf(url, sizeof(url), "%s://%s%s",
                 proto && strcmp(proto, "https") == 0 ? "https" : "http", host,
                 link.path);
        json_object_set_new(out, "url", json_string(url));
    }
    return out;
}
