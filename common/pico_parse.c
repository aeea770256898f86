/*
 * Pure parsing shared by the module and the backend (see pico_parse.h).
 * Every function is total: any byte string in, a verdict out, never a read
 * past len.
 */

#include <string.h>

#include "pico_parse.h"

#define PICO_PATH_PREFIX "/v1/sessions/"
#define PICO_PATH_SUFFIX "/tunnel"
#define PICO_EVENT_DELETED_P "deleted "
#define PICO_EVENT_CHANGED_P "changed "
#define PICO_EVENT_REVOKED_P "revoked "
#define PICO_EVENT_PREFIX_LEN 8

static int pico_is_lower_hex(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

static int pico_all_lower_hex(const unsigned char *p, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (!pico_is_lower_hex(p[i])) {
            return 0;
        }
    }

    return 1;
}

int pico_parse_uuid(const unsigned char *p, size_t len)
{
    size_t i;

    if (len != PICO_ID_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (p[i] != '-') {
                return 0;
            }

        } else if (!pico_is_lower_hex(p[i])) {
            return 0;
        }
    }

    return 1;
}

int pico_parse_tunnel_path(const unsigned char *p, size_t len,
                           const unsigned char **id)
{
    size_t plen, slen, i, idlen;
    const unsigned char *seg;

    plen = sizeof(PICO_PATH_PREFIX) - 1;
    slen = sizeof(PICO_PATH_SUFFIX) - 1;

    if (len < plen + slen + 1 || memcmp(p, PICO_PATH_PREFIX, plen) != 0 ||
        memcmp(p + len - slen, PICO_PATH_SUFFIX, slen) != 0) {
        return PICO_PATH_NOT_FOUND;
    }

    seg = p + plen;
    idlen = len - plen - slen;

    for (i = 0; i < idlen; i++) {
        if (seg[i] == '/' || seg[i] == '?') {
            return PICO_PATH_NOT_FOUND;
        }
    }

    if (!pico_parse_uuid(seg, idlen)) {
        return PICO_PATH_BAD_ID;
    }

    *id = seg;

    return PICO_PATH_OK;
}

unsigned pico_parse_port(const unsigned char *p, size_t len)
{
    unsigned port;
    size_t i;

    if (len == 0 || len > PICO_PORT_MAX_LEN || p[0] == '0') {
        return 0;
    }

    port = 0;

    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }

        port = port * 10 + (unsigned)(p[i] - '0');
    }

    return port <= 65535 ? port : 0;
}

int pico_parse_ports_path(const unsigned char *p, size_t len,
                          const unsigned char **id, unsigned *port,
                          const unsigned char **rest, size_t *restlen)
{
    static const char ports[] = "/ports/";
    size_t plen, n, i;
    const unsigned char *seg, *end;

    plen = sizeof(PICO_PATH_PREFIX) - 1;
    end = p + len;

    if (len < plen || memcmp(p, PICO_PATH_PREFIX, plen) != 0) {
        return PICO_PORTS_NOT_FOUND;
    }

    /* the id segment ends at the next '/' */
    seg = p + plen;
    for (i = 0; seg + i < end && seg[i] != '/'; i++) {
        if (seg[i] == '?') {
            return PICO_PORTS_NOT_FOUND;
        }
    }

    n = sizeof(ports) - 1;
    if ((size_t)(end - (seg + i)) < n || memcmp(seg + i, ports, n) != 0) {
        return PICO_PORTS_NOT_FOUND;
    }

    if (!pico_parse_uuid(seg, i)) {
        return PICO_PORTS_BAD_ID;
    }

    *id = seg;
    seg += i + n;

    /* the port segment ends at '/', '?' or the end */
    for (i = 0; seg + i < end && seg[i] != '/' && seg[i] != '?'; i++) {
        /* scan */
    }

    *port = pico_parse_port(seg, i);
    if (*port == 0) {
        return PICO_PORTS_BAD_PORT;
    }

    *rest = seg + i;
    *restlen = (size_t)(end - *rest);

    return PICO_PORTS_OK;
}

int pico_parse_ports_tunnel(const unsigned char *rest, size_t restlen)
{
    return restlen == sizeof(PICO_PATH_SUFFIX) - 1 &&
           memcmp(rest, PICO_PATH_SUFFIX, restlen) == 0;
}

int pico_parse_token(const unsigned char *p, size_t len,
                     const unsigned char **tid)
{
    if (len != PICO_TOKEN_LEN || memcmp(p, "pico_", 5) != 0 ||
        p[5 + PICO_TOKEN_ID_LEN] != '_' ||
        !pico_all_lower_hex(p + 5, PICO_TOKEN_ID_LEN) ||
        !pico_all_lower_hex(p + 6 + PICO_TOKEN_ID_LEN, PICO_TOKEN_SECRET_LEN)) {
        return 0;
    }

    *tid = p + 5;

    return 1;
}

static int pico_is_blank(unsigned char ch)
{
    return ch == ' ' || ch == '\t';
}

int pico_parse_authorization(const unsigned char *p, size_t len,
                             const unsigned char **tok, size_t *toklen)
{
    static const char bearer[] = "bearer";
    const unsigned char *tid, *end, *t;
    size_t i;

    end = p + len;

    while (p < end && pico_is_blank(*p)) {
        p++;
    }

    if (p == end) {
        return PICO_AUTH_MISSING;
    }

    if ((size_t)(end - p) < sizeof(bearer) - 1) {
        return PICO_AUTH_INVALID;
    }

    for (i = 0; i < sizeof(bearer) - 1; i++) {
        if ((p[i] | 0x20) != (unsigned char)bearer[i]) {
            return PICO_AUTH_INVALID;
        }
    }

    p += sizeof(bearer) - 1;

    if (p == end || !pico_is_blank(*p)) {
        return PICO_AUTH_INVALID;
    }

    while (p < end && pico_is_blank(*p)) {
        p++;
    }

    while (end > p && pico_is_blank(end[-1])) {
        end--;
    }

    t = p;

    if (!pico_parse_token(t, (size_t)(end - t), &tid)) {
        return PICO_AUTH_INVALID;
    }

    *tok = t;
    *toklen = (size_t)(end - t);

    return PICO_AUTH_OK;
}

int pico_parse_event(const unsigned char *p, size_t len,
                     const unsigned char **key)
{
    const unsigned char *k;

    if (len < PICO_EVENT_PREFIX_LEN) {
        return PICO_EVENT_NONE;
    }

    k = p + PICO_EVENT_PREFIX_LEN;
    len -= PICO_EVENT_PREFIX_LEN;

    if (memcmp(p, PICO_EVENT_REVOKED_P, PICO_EVENT_PREFIX_LEN) == 0) {
        if (len != PICO_TOKEN_ID_LEN || !pico_all_lower_hex(k, len)) {
            return PICO_EVENT_NONE;
        }

        *key = k;
        return PICO_EVENT_REVOKED;
    }

    if (len != PICO_ID_LEN || !pico_parse_uuid(k, len)) {
        return PICO_EVENT_NONE;
    }

    *key = k;

    if (memcmp(p, PICO_EVENT_DELETED_P, PICO_EVENT_PREFIX_LEN) == 0) {
        return PICO_EVENT_DELETED;
    }

    if (memcmp(p, PICO_EVENT_CHANGED_P, PICO_EVENT_PREFIX_LEN) == 0) {
        return PICO_EVENT_CHANGED;
    }

    return PICO_EVENT_NONE;
}

int pico_parse_sha256_hex(const unsigned char *p, size_t len)
{
    return len == 64 && pico_all_lower_hex(p, len);
}
