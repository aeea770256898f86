/*
 * ngx_pico_module: serves CONNECT /v1/sessions/<id>/tunnel.
 *
 *   ngx_pico_module.c       directives, configuration, the content handler
 *                           (one job a function)
 *   ngx_pico_variables.c    access-log variables
 *   ngx_pico_session.c      the session check: the cache or a lookup, the
 *                           verdict (token, owner, status); pico:events
 *   ngx_pico_cache.c        the per-worker cache of session checks
 *   ngx_pico_tunnel.c       the tunnel: its states, its answers (reply,
 *                           finish, release), accounting, the per-worker
 *                           list of tunnels and its limit
 *   ngx_pico_redis_conf.c   the pico_redis address (master, at configuration)
 *   ngx_pico_redis_lookup.c session lookups (cancelable handles)
 *   ngx_pico_account.c      tunnel accounting: merged per session, EVALSHA
 *   ngx_pico_redis.c        the session store's connections, reconnects,
 *                           pico:events
 *   ngx_pico_redis_event.c  hiredis on nginx events, nothing else
 *   ngx_pico_connect.c      connecting to the sandbox (unix backlog retries)
 *   ngx_pico_ports.c        ports tunnels: the port's endpoint, the port
 *                           relay's header and status
 *   ngx_pico_preview.c      HTTP preview: the access check of a
 *                           pico_preview location, its variables
 *   ngx_pico_preview_cookie.c  the preview cookie: read, stripped
 *   ngx_pico_preview_vars.c the $pico_preview_* variables
 *   ngx_pico_relay.c        the 200 and relaying bytes
 *   ngx_pico_pipe.c         the per-worker cache of splice pipes
 *   ngx_pico_metrics.c      counters in shared memory, pico_metrics
 *   ../common/pico_parse.c  pure parsing, shared with the backend
 *
 * Calls between the files go one way only (docs/nginx-module.md):
 *
 *   module -> session -> tunnel -> connect -> ports -> relay -> pipe
 *      |         |`--> cache  |
 *      |         +------------+-> redis_lookup -> redis -> redis_event
 *      |         |            `---------------------^
 *      +--> redis_conf, variables, cache (init/exit)
 *
 *   preview -> preview_vars, preview_cookie, ports, redis_lookup
 *
 * Whatever reports back upwards (a lookup's answer, a relay's end, a
 * deleted session) does so through a handler the caller registered, never
 * by calling a named function of the file above.
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

/* WWW-Authenticate of a 401: no token, a token that is not good */
#define NGX_PICO_AUTH_REALM "Bearer realm=\"pico\""
#define NGX_PICO_AUTH_INVALID "Bearer realm=\"pico\", error=\"invalid_token\""

typedef struct ngx_pico_worker_s ngx_pico_worker_t;
typedef struct ngx_pico_tunnel_s ngx_pico_tunnel_t;
typedef struct ngx_pico_lookup_s ngx_pico_lookup_t;
typedef struct ngx_pico_relay_s  ngx_pico_relay_t;

/* hiredis' context, kept out of the files that never talk to Redis */
struct redisAsyncContext;

typedef struct {
    ngx_str_t          redis;      /* as configured, for messages */
    u_char            *redis_host; /* unix path or address literal */
    ngx_uint_t         redis_port; /* 0 for a unix socket */
    ngx_msec_t         redis_timeout;
    ngx_uint_t         max_tunnels; /* per worker, 0: from connections */
    ngx_uint_t         enabled;     /* some location has pico_tunnel */
    ngx_uint_t         cache_size;  /* entries per worker, 0: no cache */
    ngx_msec_t         cache_max_age;
    ngx_shm_zone_t    *metrics; /* ngx_pico_metrics.c */
    ngx_pico_worker_t *worker;  /* this worker's state, set at init */
} ngx_pico_main_conf_t;

typedef struct {
    ngx_flag_t tunnel;
    ngx_flag_t preview; /* pico_preview: an HTTP preview location */
    ngx_flag_t auth;
    ngx_flag_t splice;
    ngx_msec_t connect_timeout;
    ngx_msec_t idle_timeout;
    size_t     buffer_size;
    size_t     unix_sndbuf; /* SO_SNDBUF to unix endpoints, 0: default */
} ngx_pico_loc_conf_t;

/* one spliced pipe, kept in a per-worker cache while unused */
typedef struct {
    ngx_queue_t queue;
    int         fd[2];
} ngx_pico_pipe_t;

/*
 * what Redis tells a worker without being asked (ngx_pico_redis_init()):
 * a pico:events message (kind PICO_EVENT_*, key the session or token id;
 * PICO_EVENT_NONE and NULL for a message not understood), the
 * subscription made again (messages were lost), the subscription lost
 */
typedef void (*ngx_pico_event_pt)(ngx_pico_worker_t *w, ngx_uint_t kind,
                                  u_char *key);
typedef void (*ngx_pico_subscribed_pt)(ngx_pico_worker_t *w);

struct ngx_pico_worker_s {
    ngx_pico_main_conf_t *pmcf;
    ngx_log_t            *log;
    ngx_cycle_t          *cycle;

    /* ngx_pico_redis.c */
    struct redisAsyncContext *cmd;     /* commands */
    struct redisAsyncContext *sub;     /* subscribed to pico:events */
    ngx_uint_t                exiting; /* exit_process: no more callbacks */
    ngx_msec_t                backoff;
    ngx_event_t               reconnect;
    ngx_pico_event_pt         event;
    ngx_pico_subscribed_pt    subscribed;
    ngx_pico_subscribed_pt    unsubscribed;

    ngx_uint_t cmd_timeouts; /* lookups timed out since the last reply */

    /* ngx_pico_account.c */
    ngx_rbtree_t              acct_tree; /* pending updates by session */
    ngx_rbtree_node_t         acct_sentinel;
    ngx_uint_t                acct_n;
    ngx_uint_t                acct_inflight; /* sent, not answered */
    ngx_uint_t                acct_dropped;
    ngx_event_t               acct_flush;
    struct redisAsyncContext *acct_loaded; /* SCRIPT LOAD sent on it */
    u_char                    acct_sha[40];

    /* ngx_pico_cache.c */
    ngx_rbtree_t      cache_tree; /* entries by kind and id */
    ngx_rbtree_node_t cache_sentinel;
    ngx_queue_t       cache_lru; /* most recently used first */
    ngx_uint_t        cache_n;
    ngx_uint_t        cache_gen;  /* events seen: answers older are not kept */
    ngx_uint_t        cache_live; /* subscribed: the cache may be used */

    /* ngx_pico_tunnel.c */
    ngx_queue_t tunnels; /* from the lookup on */
    ngx_uint_t  active;  /* requests holding a tunnel slot */

    /* ngx_pico_relay.c */
    ngx_queue_t pipes; /* idle pipes for splice */
    ngx_uint_t  npipes;
};

/* ngx_pico_redis.c: the answer of a lookup, valid during its handler */
typedef struct {
    ngx_str_t  status;
    ngx_str_t  endpoint;
    ngx_str_t  owner;
    ngx_str_t  token_sha256;
    ngx_str_t  principal;
    ngx_uint_t found; /* session record exists */
    ngx_uint_t token_found;
    ngx_str_t  preview_session; /* a preview link's (pico:preview:<digest>) */
    ngx_str_t  preview_port;
    ngx_str_t  preview_expires; /* unix seconds */
    ngx_uint_t preview_found;
} ngx_pico_record_t;

/* rec is NULL when the lookup failed; error says why */
typedef void (*ngx_pico_lookup_handler_pt)(void *data, ngx_pico_record_t *rec,
                                           char *error);

ngx_int_t ngx_pico_redis_init(ngx_pico_worker_t *w, ngx_pico_event_pt event,
                              ngx_pico_subscribed_pt subscribed,
                              ngx_pico_subscribed_pt unsubscribed);
void      ngx_pico_redis_exit(ngx_pico_worker_t *w);
struct redisAsyncContext *ngx_pico_redis_command(ngx_pico_worker_t *w,
                                                 ngx_log_t *log, u_char *id);
void                      ngx_pico_redis_drop(ngx_pico_worker_t *w);

/* ngx_pico_account.c */
ngx_int_t ngx_pico_account_init(ngx_pico_worker_t *w);
void      ngx_pico_account_exit(ngx_pico_worker_t *w);
ngx_int_t ngx_pico_account(ngx_pico_worker_t *w, u_char *id, ngx_int_t open,
                           ngx_int_t opened, off_t up, off_t down);

/* ngx_pico_metrics.c: the histogram's buckets, the answers' codes */
#define NGX_PICO_METRICS_LE 12
#define NGX_PICO_METRICS_CODES 12

typedef enum {
    NGX_PICO_LOOKUP_FOUND = 0,
    NGX_PICO_LOOKUP_NOT_FOUND,
    NGX_PICO_LOOKUP_ERROR,
    NGX_PICO_LOOKUP_TIMEOUT,
    NGX_PICO_LOOKUP_N
} ngx_pico_lookup_result_e;

ngx_int_t ngx_pico_metrics_conf(ngx_conf_t *cf, ngx_pico_main_conf_t *pmcf);
char     *ngx_pico_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                     void *conf);
void      ngx_pico_metrics_answer(ngx_pico_main_conf_t *pmcf, ngx_uint_t code);
void ngx_pico_metrics_opened(ngx_pico_main_conf_t *pmcf, ngx_msec_int_t ms);
void ngx_pico_metrics_closed(ngx_pico_main_conf_t *pmcf);
void ngx_pico_metrics_bytes(ngx_pico_main_conf_t *pmcf, off_t up, off_t down);
void ngx_pico_metrics_lookup(ngx_pico_main_conf_t *pmcf, ngx_uint_t result);

/* ngx_pico_cache.c */
#define NGX_PICO_CACHE_SESSION 0 /* id -> endpoint, owner */
#define NGX_PICO_CACHE_TOKEN 1   /* token id -> SHA-256 hex, principal */

void      ngx_pico_cache_init(ngx_pico_worker_t *w);
void      ngx_pico_cache_exit(ngx_pico_worker_t *w);
ngx_int_t ngx_pico_cache_find(ngx_pico_worker_t *w, ngx_uint_t kind, u_char *id,
                              ngx_str_t *value, ngx_str_t *owner);
void      ngx_pico_cache_put(ngx_pico_worker_t *w, ngx_uint_t kind, u_char *id,
                             ngx_uint_t gen, ngx_str_t *value, ngx_str_t *owner);
void ngx_pico_cache_drop(ngx_pico_worker_t *w, ngx_uint_t kind, u_char *id);
void ngx_pico_cache_reset(ngx_pico_worker_t *w, ngx_uint_t live);

/* ngx_pico_session.c */
ngx_int_t ngx_pico_session_check(ngx_pico_tunnel_t *t);
void ngx_pico_session_event(ngx_pico_worker_t *w, ngx_uint_t kind, u_char *key);
void ngx_pico_session_subscribed(ngx_pico_worker_t *w);
void ngx_pico_session_unsubscribed(ngx_pico_worker_t *w);

/* ngx_pico_redis_conf.c */
char *ngx_pico_redis_conf(ngx_conf_t *cf, ngx_pico_main_conf_t *pmcf);

/* ngx_pico_redis_lookup.c */
ngx_pico_lookup_t *ngx_pico_redis_lookup(ngx_pico_worker_t *w, u_char *id,
                                         u_char *token, ngx_log_t *log,
                                         ngx_pico_lookup_handler_pt handler,
                                         void                      *data);
ngx_pico_lookup_t *
ngx_pico_redis_lookup_preview(ngx_pico_worker_t *w, u_char *id, u_char *digest,
                              ngx_log_t                 *log,
                              ngx_pico_lookup_handler_pt handler, void *data);
void      ngx_pico_redis_lookup_cancel(ngx_pico_lookup_t *lk);
ngx_int_t ngx_pico_redis_recheck(ngx_pico_worker_t *w, u_char *id);

/* ngx_pico_redis_event.c */
typedef void (*ngx_pico_redis_closed_pt)(struct redisAsyncContext *ac,
                                         void                     *data);

ngx_int_t ngx_pico_redis_event_attach(struct redisAsyncContext *ac,
                                      ngx_log_t                *log,
                                      ngx_pico_redis_closed_pt  closed,
                                      void                     *data);

/* ngx_pico_relay.c */
typedef enum {
    NGX_PICO_RELAY_FAILED = 0, /* no connection: why is the body */
    NGX_PICO_RELAY_CONNECTED,  /* the 200 is about to be sent */
    NGX_PICO_RELAY_OPEN,       /* the 200 is on its way */
    NGX_PICO_RELAY_ACTIVE,     /* bytes moved */
    NGX_PICO_RELAY_END         /* closed: why is the status */
} ngx_pico_relay_event_e;

typedef void (*ngx_pico_relay_handler_pt)(ngx_pico_relay_t      *rl,
                                          ngx_pico_relay_event_e event,
                                          char                  *why);

/* one direction of the relay */
typedef struct {
    ngx_connection_t *src;
    ngx_connection_t *dst;
    u_char           *pre; /* bytes to send before anything */
    u_char           *pre_last;
    u_char           *buf; /* copy buffer, lazily allocated */
    u_char           *pos;
    u_char           *last;
    ngx_pico_pipe_t  *pipe;  /* splice pipe, from the cache */
    size_t            piped; /* bytes in the pipe */
    off_t             bytes; /* relayed so far */
    unsigned          eof : 1;
    unsigned          shut : 1;
    unsigned          pipe_full : 1;
    unsigned          copy : 1; /* no pipe available: copy */
} ngx_pico_dir_t;

struct ngx_pico_relay_s {
    ngx_connection_t     *client;
    ngx_buf_t            *header_in; /* what follows the header */
    ngx_pool_t           *pool;
    ngx_pico_worker_t    *worker;
    ngx_pico_loc_conf_t  *plcf;
    ngx_str_t            *session_id; /* for messages */
    ngx_str_t             endpoint;
    ngx_uint_t            port; /* a ports tunnel's port, 0: SSH */
    ngx_peer_connection_t peer;

    ngx_pico_dir_t    up;    /* client -> sandbox */
    ngx_pico_dir_t    down;  /* sandbox -> client */
    ngx_event_t       idle;  /* idle timeout */
    ngx_event_t       retry; /* connect again: unix backlog was full */
    ngx_msec_t        connect_start;
    ngx_msec_t        retry_delay;
    ngx_uint_t        retries;
    ngx_log_t         connect_log; /* c->log, quieter for connect(2) */
    ngx_connection_t *failed;      /* the side whose socket failed */
    ngx_msec_t        started;     /* ngx_current_msec at 200 */
    ngx_msec_t        ended;

    ngx_pico_relay_handler_pt handler;
    void                     *data;
    unsigned                  relaying : 1;
    unsigned                  port_header : 1; /* pico-init's port relay */
};

/* ngx_pico_connect.c */
void ngx_pico_relay_connect(ngx_pico_relay_t *rl);

/* ngx_pico_ports.c (tunnel -> ports for the endpoint, connect -> ports) */
ngx_int_t ngx_pico_ports_endpoint(ngx_pico_relay_t *rl, ngx_str_t *ep);
char     *ngx_pico_ports_connect_error(ngx_pico_relay_t *rl, ngx_err_t err);
void      ngx_pico_ports_open(ngx_pico_relay_t *rl);

/* ngx_pico_preview.c: one HTTP preview request (its own context slot) */
#define NGX_PICO_PREVIEW_HEX 64 /* a preview link's token, and its digest */

typedef enum {
    NGX_PICO_PV_OPEN = 0, /* pico_auth off */
    NGX_PICO_PV_BEARER,
    NGX_PICO_PV_LINK,   /* the ?pico_preview= of a link: set the cookie */
    NGX_PICO_PV_COOKIE, /* the cookie a link set */
} ngx_pico_pv_cred_e;

typedef struct {
    ngx_http_request_t *request;
    ngx_pico_lookup_t  *lookup;
    u_char              id[PICO_ID_LEN];
    ngx_uint_t          port;
    ngx_pico_pv_cred_e  cred;
    u_char              token[PICO_TOKEN_LEN];        /* bearer */
    u_char              link[NGX_PICO_PREVIEW_HEX];   /* link token */
    u_char              digest[NGX_PICO_PREVIEW_HEX]; /* its SHA-256 */
    ngx_str_t           rest;     /* path and args after the prefix */
    ngx_str_t           prefix;   /* /v1/sessions/<id>/ports/<port> */
    ngx_str_t           upstream; /* the verdict's, for proxy_pass */
    time_t              expires;  /* the link's */
    ngx_int_t           status;   /* the verdict: 0 pass, else answer */
    char               *message;
    unsigned            done : 1;
} ngx_pico_preview_t;

extern ngx_module_t ngx_pico_preview_module;

/* ngx_pico_preview_vars.c, ngx_pico_preview_cookie.c */
ngx_int_t ngx_pico_preview_variables(ngx_conf_t *cf);
ngx_int_t ngx_pico_preview_cookie_get(ngx_http_request_t *r, ngx_str_t *value);
ngx_int_t ngx_pico_preview_cookie_strip(ngx_http_request_t *r, ngx_str_t *out);

/* ngx_pico_relay.c (connect -> relay) */
void ngx_pico_relay_connected(ngx_pico_relay_t *rl);
void ngx_pico_relay_process(ngx_pico_relay_t *rl);
void ngx_pico_relay_close(ngx_pico_relay_t *rl);

/* ngx_pico_pipe.c */
ngx_pico_pipe_t *ngx_pico_pipe_get(ngx_pico_worker_t *w, size_t size);
void             ngx_pico_pipe_put(ngx_pico_worker_t *w, ngx_pico_pipe_t *p);
void             ngx_pico_pipes_free(ngx_pico_worker_t *w);

/* ngx_pico_tunnel.c */
typedef enum {
    NGX_PICO_ST_NONE = 0,
    NGX_PICO_ST_LOOKUP,
    NGX_PICO_ST_CONNECT,
    NGX_PICO_ST_RELAY,
    NGX_PICO_ST_DONE
} ngx_pico_state_e;

struct ngx_pico_tunnel_s {
    ngx_queue_t          queue; /* in worker->tunnels */
    ngx_http_request_t  *request;
    ngx_pico_worker_t   *worker;
    ngx_pico_loc_conf_t *plcf;

    u_char     id[PICO_ID_LEN];
    ngx_str_t  session_id; /* points at id, empty before */
    ngx_uint_t port;       /* CONNECT .../ports/<port>/tunnel, else 0 */
    u_char     token[PICO_TOKEN_LEN];
    ngx_uint_t has_token;

    ngx_pico_lookup_t *lookup;    /* pending Redis lookup */
    ngx_uint_t         cache_gen; /* w->cache_gen when it was sent */
    ngx_pico_relay_t   relay;
    ngx_event_t        flush;       /* accounting, once a second */
    off_t              up_reported; /* bytes accounted in Redis */
    off_t              down_reported;

    ngx_str_t        status; /* $pico_tunnel_status */
    ngx_pico_state_e state;
    unsigned         queued : 1;    /* in worker->tunnels */
    unsigned         counted : 1;   /* holds a worker->active slot */
    unsigned         accounted : 1; /* open +1 sent */
    unsigned         metered : 1;   /* counted in pico_tunnels_open */
    unsigned         released : 1;
    unsigned         checked : 1; /* the session check answered */
    unsigned         cached : 1;  /* ... from the cache */
};

extern ngx_module_t ngx_pico_module;

/* ngx_pico_variables.c */
ngx_int_t ngx_pico_add_variables(ngx_conf_t *cf);

void ngx_pico_tunnel_init(ngx_cycle_t *cycle, ngx_pico_worker_t *w);
void ngx_pico_tunnel_exit(ngx_pico_worker_t *w);
ngx_pico_tunnel_t *ngx_pico_tunnel_create(ngx_http_request_t *r,
                                          ngx_pico_worker_t  *w);
ngx_int_t          ngx_pico_tunnel_reserve(ngx_pico_tunnel_t *t);
void      ngx_pico_tunnel_connect(ngx_pico_tunnel_t *t, ngx_str_t *endpoint);
void      ngx_pico_tunnel_deleted(ngx_pico_worker_t *w, u_char *id);
void      ngx_pico_tunnel_recheck(ngx_pico_worker_t *w);
void      ngx_pico_set_status(ngx_pico_tunnel_t *t, char *status);
ngx_int_t ngx_pico_send(ngx_http_request_t *r, ngx_uint_t code, char *body,
                        char *header);
void      ngx_pico_reply(ngx_pico_tunnel_t *t, ngx_uint_t code, char *body,
                         char *www_authenticate);
void      ngx_pico_finish(ngx_pico_tunnel_t *t, char *status);
void      ngx_pico_release(ngx_pico_tunnel_t *t);

#endif
