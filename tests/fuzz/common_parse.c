/*
 * libFuzzer harness for common/pico_parse.c: feeds the same bytes to every
 * parser and checks the invariants their callers rely on (returned
 * pointers lie inside the input and point at well formed values).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pico_parse.h"

static void check_inside(const uint8_t *data, size_t size,
                         const unsigned char *p, size_t len)
{
    if (p < data || p + len > data + size) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *id, *tok, *tid, *rest;
    size_t toklen, restlen;
    unsigned port;
    unsigned char *copy;
    int rc;

    /* a private copy, so reads past size are caught by ASan */
    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);

    if (pico_parse_uuid(copy, size) && size != PICO_ID_LEN) {
        abort();
    }

    id = NULL;
    rc = pico_parse_tunnel_path(copy, size, &id);
    if (rc == PICO_PATH_OK) {
        check_inside(copy, size, id, PICO_ID_LEN);
        if (!pico_parse_uuid(id, PICO_ID_LEN)) {
            abort();
        }
    } else if (rc != PICO_PATH_BAD_ID && rc != PICO_PATH_NOT_FOUND) {
        abort();
    }

    rc = pico_parse_ports_path(copy, size, &id, &port, &rest, &restlen);
    if (rc == PICO_PORTS_OK) {
        check_inside(copy, size, id, PICO_ID_LEN);
        check_inside(copy, size, rest, restlen);
        if (!pico_parse_uuid(id, PICO_ID_LEN) || port == 0 || port > 65535 ||
            rest + restlen != copy + size) {
            abort();
        }
        (void)pico_parse_ports_tunnel(rest, restlen);
    } else if (rc != PICO_PORTS_BAD_ID && rc != PICO_PORTS_BAD_PORT &&
               rc != PICO_PORTS_NOT_FOUND) {
        abort();
    }

    port = pico_parse_port(copy, size);
    if (port > 65535 || (port != 0 && (size == 0 || copy[0] == '0'))) {
        abort();
    }

    rc = pico_parse_authorization(copy, size, &tok, &toklen);
    if (rc == PICO_AUTH_OK) {
        check_inside(copy, size, tok, toklen);
        if (toklen != PICO_TOKEN_LEN || !pico_parse_token(tok, toklen, &tid)) {
            abort();
        }
        check_inside(copy, size, tid, PICO_TOKEN_ID_LEN);
    }

    if (pico_parse_token(copy, size, &tid)) {
        check_inside(copy, size, tid, PICO_TOKEN_ID_LEN);
    }

    switch (pico_parse_event(copy, size, &id)) {
    case PICO_EVENT_NONE:
        break;
    case PICO_EVENT_REVOKED:
        check_inside(copy, size, id, PICO_TOKEN_ID_LEN);
        break;
    default:
        check_inside(copy, size, id, PICO_ID_LEN);
    }

    (void)pico_parse_sha256_hex(copy, size);

    free(copy);

    return 0;
}
