/*
 * sse.h - a Server-Sent Events response that follows a principal's event
 * stream (GET /v1/events, GET /v1/sessions/<id>/events; docs/api.md).
 */
#ifndef PICO_SSE_H
#define PICO_SSE_H

#include <stdatomic.h>
#include <microhttpd.h>

#include "app.h"

/* A stream waits this long in Redis per turn, so it notices a stopping
 * backend soon; and sends a comment when it has been quiet this long, so
 * proxies keep it open and a vanished client is noticed on the write. */
#define PICO_SSE_BLOCK_MS 1000
#define PICO_SSE_HEARTBEAT_MS 15000

/*
 * The response streaming events after `after` (a stream id) of the
 * principal's stream; only only_session's when that is not NULL, and
 * then it ends after that session's "terminated". *streams is counted up
 * here and down when the response is done; the stream ends when *stopping
 * becomes non-zero. NULL when out of memory (the count is unchanged).
 */
struct MHD_Response *sse_response(pico_app *app, const char *principal,
                                  const char *only_session, const char *after,
                                  atomic_int *streams,
                                  const atomic_int *stopping);

#endif
