/*
 * http_api.h - the REST API (libmicrohttpd, one thread per connection).
 */
#ifndef PICO_HTTP_API_H
#define PICO_HTTP_API_H

#include <stddef.h>
#include "app.h"

typedef struct http_api http_api;

/* Creates the listening socket from cfg.listen ("unix:/path" or
 * "host:port") and starts serving. NULL plus err on failure. */
http_api *http_api_start(pico_app *app, char *err, size_t errlen);
/* Stops accepting, waits (bounded) for requests in flight, stops. */
void http_api_stop(http_api *h);

#endif
