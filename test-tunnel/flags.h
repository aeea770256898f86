/*
 * flags.h - command-line flags of test-tunnel.
 *
 * Parsed the way Go's flag package does it, because the user's guide was
 * written for a Go tool: one or two dashes, "-flag value" or "-flag=value",
 * boolean flags bare or "=true/false", -h/--help prints every flag with its
 * default. Parsing stops at "--" or the first non-flag argument.
 */
#ifndef TT_FLAGS_H
#define TT_FLAGS_H

#include <stddef.h>

/* One -upload LOCAL:REMOTE or -download REMOTE:LOCAL. */
struct transfer {
    char *local;
    char *remote;
};

struct options {
    const char *api;
    const char *session;
    const char *token;
    const char *user;
    const char *password;
    const char *cmd;
    const char *cacert; /* CA file for https, NULL = the system's */
    long timeout;       /* seconds for connecting and handshakes; 0 = none */
    int stdio;  /* relay stdin/stdout through the tunnel and nothing else */
    int fdpass; /* hand the tunnel's socket to ssh (ProxyUseFdpass) */
    int port;   /* -port: a ports tunnel to this port (1..65535), 0: SSH */
    const char *listen; /* -listen ADDR:PORT: forward a local port */
    struct transfer *uploads;
    size_t nuploads;
    struct transfer *downloads;
    size_t ndownloads;
};

/* Results of flags_parse(). */
#define FLAGS_OK 0
#define FLAGS_HELP 1  /* -h was given: usage printed, exit 0 */
#define FLAGS_USAGE 2 /* bad command line: message printed, exit 2 */

int flags_parse(struct options *o, int argc, char **argv);
void flags_usage(void);
void flags_free(struct options *o);

#endif
