/*
 * Pure parsing shared by ngx_pico_module and the backend: the tunnel path,
 * the ports paths (and the port, which pico-init reads too), session ids, the
 * Authorization header, tokens and pico:events messages. libc only: no nginx or
 * backend types and no allocation, so either side (and the libFuzzer harness
 * tests/fuzz/common_parse.c) links this file alone.  One rule per input,
 * whoever parses it.
 */

#ifndef PICO_PARSE_H
#define PICO_PARSE_H

#include <stddef.h>

#define PICO_ID_LEN 36       /* canonical UUID, lowercase */
#define PICO_TOKEN_ID_LEN 16 /* hex */
#define PICO_TOKEN_SECRET_LEN 64
#define PICO_TOKEN_LEN (5 + PICO_TOKEN_ID_LEN + 1 + PICO_TOKEN_SECRET_LEN)

enum {
    PICO_PATH_OK = 0,   /* /v1/sessions/<uuid>/tunnel */
    PICO_PATH_BAD_ID,   /* /v1/sessions/<not a uuid>/tunnel */
    PICO_PATH_NOT_FOUND /* anything else */
};

enum {
    PICO_AUTH_OK = 0,
    PICO_AUTH_MISSING, /* no header or empty */
    PICO_AUTH_INVALID  /* not "Bearer <well formed token>" */
};

/* 1 if p[0..len) is a lowercase canonical UUID (8-4-4-4-12 hex). */
int pico_parse_uuid(const unsigned char *p, size_t len);

/*
 * Classifies a request target (path, no query allowed).  On PICO_PATH_OK
 * *id points at the 36 id characters inside p.
 */
int pico_parse_tunnel_path(const unsigned char *p, size_t len,
                           const unsigned char **id);

/* a port of a sandbox: 1..65535 in decimal, no sign, no leading zero */
#define PICO_PORT_MAX_LEN 5

enum {
    PICO_PORTS_OK = 0,   /* /v1/sessions/<uuid>/ports/<port>[/...] */
    PICO_PORTS_BAD_ID,   /* /v1/sessions/<not a uuid>/ports/... */
    PICO_PORTS_BAD_PORT, /* /v1/sessions/<uuid>/ports/<not a port>... */
    PICO_PORTS_NOT_FOUND /* not a ports path */
};

/* The port p[0..len) names, or 0 when it is not 1..65535 as above. */
unsigned pico_parse_port(const unsigned char *p, size_t len);

/*
 * Classifies a request target under /v1/sessions/<id>/ports/<port>: on
 * PICO_PORTS_OK *id points at the 36 id characters inside p, *port is
 * the port and *rest, *restlen what follows the port (empty, or starting
 * with '/' or '?').  The ports tunnel is the rest "/tunnel" exactly
 * (pico_parse_ports_tunnel()); any rest is an HTTP preview's path.
 */
int pico_parse_ports_path(const unsigned char *p, size_t len,
                          const unsigned char **id, unsigned *port,
                          const unsigned char **rest, size_t *restlen);

/* 1 if the rest of a ports path is the tunnel's, "/tunnel" */
int pico_parse_ports_tunnel(const unsigned char *rest, size_t restlen);

/*
 * 1 if p[0..len) is pico_<16 hex>_<64 hex> (lowercase); *tid points at the
 * token id inside p.
 */
int pico_parse_token(const unsigned char *p, size_t len,
                     const unsigned char **tid);

/*
 * Parses an Authorization header value.  The one rule of pico (module and
 * backend alike):
 *
 *   value  = OWS "Bearer" 1*( SP / HTAB ) token OWS
 *   OWS    = *( SP / HTAB )
 *
 * "Bearer" in any case; token as pico_parse_token().  The blanks around the
 * value are the optional whitespace HTTP strips from field values anyway
 * (RFC 9110, 5.5), so a client never fails on them.  An empty or all-blank
 * value is PICO_AUTH_MISSING; anything else not matching is
 * PICO_AUTH_INVALID.  On PICO_AUTH_OK *tok and *toklen give the token
 * inside p.
 */
int pico_parse_authorization(const unsigned char *p, size_t len,
                             const unsigned char **tok, size_t *toklen);

/* pico:events message kinds (docs/redis.md) */
enum {
    PICO_EVENT_NONE = 0, /* not a message of pico's */
    PICO_EVENT_DELETED,  /* "deleted <uuid>": the record is gone */
    PICO_EVENT_CHANGED,  /* "changed <uuid>": status, endpoint or ttl */
    PICO_EVENT_REVOKED   /* "revoked <token-id>": the token is gone */
};

/*
 * Parses a pico:events message.  Returns its kind and sets *key to the
 * session id (PICO_ID_LEN characters) or token id (PICO_TOKEN_ID_LEN)
 * inside p, or PICO_EVENT_NONE for anything else.
 */
int pico_parse_event(const unsigned char *p, size_t len,
                     const unsigned char **key);

/* 1 if s is a 64 character lowercase hex string. */
int pico_parse_sha256_hex(const unsigned char *p, size_t len);

#endif
