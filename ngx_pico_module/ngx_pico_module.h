/*
 * ngx_pico_module: serves CONNECT /v1/sessions/<id>/tunnel.
 *
 *   ngx_pico_module.c  directives, configuration, the content handler,
 *                      access-log variables, per-worker state
 *   ngx_pico_redis.c   hiredis async contexts driven by nginx events:
 *                      session lookup, tunnel accounting, pico:events
 *   ngx_pico_relay.c   connecting to the sandbox and relaying bytes
 *   ../common/pico_parse.c  pure parsing, shared with the backend
 *
 * Trust boundary: everything from the client (path, Authorization) is
 * parsed by common/pico_parse.c before it is used; only a canonical UUID or
 * token id is ever put into a Redis key.  What Redis returns (endpoint,
 * digests) is the backend's word and is trusted, but still checked for
 * shape before use.
 */

#ifndef NGX_PICO_MODULE_H
#define NGX_PICO_MODULE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "pico_parse.h"

typedef struct ngx_pico_worker_s ngx_pico_worker_t;
typedef struct ngx_pico_tunnel_s ngx_pico_tunnel_t;
typedef struct ngx_pico_lookup_s ngx_pico_lookup_t;

typedef struct {
    ngx_str_t redis;       /* as configured, for messages */
    u_char *redis_host;    /* unix path or address literal, NUL-ended */
    ngx_uint_t redis_port; /* 0 for a unix socket */
    ngx_msec_t redis_timeout;
    ngx_uint_t max_tunnels;    /* per worker, 0: from worker_connections */
    ngx_uint_t enabled;        /* some location has pico_tunnel */
    ngx_pico_worker_t *worker; /* this worker's state, set at init */
} ngx_pico_main_conf_t;

typedef struct {
    ngx_flag_t tunnel;
    ngx_flag_t auth;
    ngx_flag_t splice;
    ngx_msec_t connect_timeout;
    ngx_msec_t idle_timeout;
    size_t buffer_size;
    size_t unix_sndbuf; /* SO_SNDBUF to unix endpoints, 0: default */
} ngx_pico_loc_conf_t;

/* one spliced pipe, kept in a per-worker cache while unused */
typedef struct {
    ngx_queue_t queue;
    int fd[2];
} ngx_pico_pipe_t;

struct ngx_pico_worker_s {
    ngx_pico_main_conf_t *pmcf;
    ngx_log_t *log;
    ngx_cycle_t *cycle;

    void *cmd;          /* redisAsyncContext for commands */
    void *sub;          /* redisAsyncContext subscribed */
    ngx_uint_t exiting; /* exit_process: no more callbacks */

    ngx_msec_t backoff;
    ngx_event_t reconnect;

    ngx_queue_t tunnels; /* open tunnels (relaying) */
    ngx_uint_t active;   /* requests holding a tunnel slot */

    ngx_queue_t pipes; /* idle pipes for splice */
    ngx_uint_t npipes;
};

typedef enum {
    NGX_PICO_ST_NONE = 0,
    NGX_PICO_ST_LOOKUP,
    NGX_PICO_ST_CONNECT,
    NGX_PICO_ST_RELAY,
    NGX_PICO_ST_DONE
} ngx_pico_state_e;

/* one direction of the relay */
typedef struct {
    ngx_connection_t *src;
    ngx_connection_t *dst;
    u_char *pre; /* bytes to send before anything else */
    u_char *pre_last;
    u_char *buf; /* plain relay buffer, lazily allocated */
    u_char *pos;
    u_char *last;
    ngx_pico_pipe_t *pipe; /* splice pipe, borrowed from the cache */
    size_t piped;          /* bytes in the pipe */
    off_t bytes;           /* relayed so far */
    off_t reported;        /* of which accounted in Redis */
    unsigned eof : 1;
    unsigned shut : 1;
    unsigned pipe_full : 1;
    unsigned copy : 1; /* no pipe available: copy instead */
} ngx_pico_dir_t;

struct ngx_pico_tunnel_s {
    ngx_queue_t queue; /* in worker->tunnels from the lookup on */
    ngx_http_request_t *request;
    ngx_pico_worker_t *worker;
    ngx_pico_loc_conf_t *plcf;

    u_char id[PICO_ID_LEN];
    ngx_str_t session_id; /* points at id, empty before parsing */
    u_char token[PICO_TOKEN_LEN];
    ngx_uint_t has_token;

    ngx_pico_lookup_t *lookup; /* pending Redis lookup */
    ngx_event_t lookup_timer;

    ngx_str_t endpoint;
    ngx_peer_connection_t peer;

    ngx_pico_dir_t up;   /* client -> sandbox */
    ngx_pico_dir_t down; /* sandbox -> client */
    ngx_event_t idle;    /* idle timeout */
    ngx_event_t flush;   /* accounting, at most once a second */
    ngx_msec_t started;  /* ngx_current_msec at 200 */
    ngx_msec_t ended;

    ngx_connection_t *failed; /* the side whose socket failed */
    ngx_str_t status;         /* $pico_tunnel_status */
    ngx_pico_state_e state;
    unsigned queued : 1;    /* in worker->tunnels */
    unsigned counted : 1;   /* holds a worker->active slot */
    unsigned accounted : 1; /* open +1 sent */
    unsigned released : 1;
};

extern ngx_module_t ngx_pico_module;

/* ngx_pico_module.c */
ngx_pico_worker_t *ngx_pico_worker(ngx_http_request_t *r);
void ngx_pico_set_status(ngx_pico_tunnel_t *t, char *status);
void ngx_pico_reply(ngx_pico_tunnel_t *t, ngx_uint_t code, char *body);
void ngx_pico_finish(ngx_pico_tunnel_t *t, char *status);
void ngx_pico_release(ngx_pico_tunnel_t *t);
void ngx_pico_close_session(ngx_pico_worker_t *w, u_char *id);
void ngx_pico_recheck_done(ngx_pico_worker_t *w, u_char *id, ngx_uint_t exists);

/* ngx_pico_redis.c */
ngx_int_t ngx_pico_redis_init(ngx_pico_worker_t *w);
void ngx_pico_redis_exit(ngx_pico_worker_t *w);
ngx_int_t ngx_pico_redis_lookup(ngx_pico_tunnel_t *t);
void ngx_pico_redis_cancel(ngx_pico_tunnel_t *t);
void ngx_pico_redis_account(ngx_pico_tunnel_t *t, ngx_int_t open,
                            ngx_int_t opened);

/* the lookup result, handed back to ngx_pico_module.c */
typedef struct {
    ngx_str_t status;
    ngx_str_t endpoint;
    ngx_str_t owner;
    ngx_str_t token_sha256;
    ngx_str_t principal;
    ngx_uint_t found; /* session record exists */
    ngx_uint_t token_found;
} ngx_pico_record_t;

void ngx_pico_lookup_done(ngx_pico_tunnel_t *t, ngx_pico_record_t *rec);
void ngx_pico_lookup_failed(ngx_pico_tunnel_t *t, char *why);

/* ngx_pico_relay.c */
void ngx_pico_connect(ngx_pico_tunnel_t *t);
void ngx_pico_relay_close(ngx_pico_tunnel_t *t);
void ngx_pico_pipes_free(ngx_pico_worker_t *w);

#endif
