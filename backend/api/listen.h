/*
 * listen.h - the REST API's listening socket (listen.c).
 */
#ifndef PICO_API_LISTEN_H
#define PICO_API_LISTEN_H

#include <stddef.h>

/*
 * addr: "unix:<path>" (mode 0660, group `group` when not "") or
 * "host:port". A listening descriptor, or -1 with err.
 */
int api_listen(const char *addr, const char *group, char *err, size_t errlen);

#endif
