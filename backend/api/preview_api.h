/*
 * preview_api.h - the REST side of HTTP preview: POST
 * /v1/sessions/<id>/ports/<port>/preview (docs/api.md). http_api.c
 * routes and answers; the link itself is core/preview.c's.
 */
#ifndef PICO_API_PREVIEW_H
#define PICO_API_PREVIEW_H

#include <jansson.h>
#include <microhttpd.h>

#include "core/lifecycle.h"

/*
 * rest: what follows /v1/sessions/<id>/ports/, "<port>/preview" for the
 * route; the url's host and scheme come from conn's Host and
 * X-Forwarded-Proto (nginx sets them). The 201 body, or NULL with e (404
 * for another path under ports/).
 */
json_t *preview_api_post(pico_app *app, struct MHD_Connection *conn,
                         const char *id, const char *principal,
                         const char *rest, const char *body, size_t len,
                         api_error *e);

#endif
