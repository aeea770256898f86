/*
 * hiredis on nginx events: a hiredis async context's fd is held by an
 * ngx_connection_t from ngx_get_connection(), and hiredis' addRead/delRead/
 * addWrite/delWrite become level-triggered nginx events (hiredis reads
 * and writes only part of what is ready and expects to be woken again).
 *
 * This file only wires events.  What to do when a context goes away
 * (reconnect, backoff) is the Redis file's business: it gets told through
 * the "closed" handler it passed to ngx_pico_redis_event_attach().
 */

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_pico_module.h"

/* ties a hiredis context to the nginx connection holding its fd */
typedef struct {
    ngx_connection_t        *c;
    redisAsyncContext       *ac;
    ngx_pico_redis_closed_pt closed;
    void                    *data;
} ngx_pico_redis_event_t;

static void ngx_pico_redis_event_read(ngx_event_t *ev);
static void ngx_pico_redis_event_write(ngx_event_t *ev);
static void ngx_pico_redis_event_set(ngx_event_t *ev, ngx_uint_t on);
static void ngx_pico_redis_event_add_read(void *privdata);
static void ngx_pico_redis_event_del_read(void *privdata);
static void ngx_pico_redis_event_add_write(void *privdata);
static void ngx_pico_redis_event_del_write(void *privdata);
static void ngx_pico_redis_event_cleanup(void *privdata);

ngx_int_t
ngx_pico_redis_event_attach(redisAsyncContext *ac, ngx_log_t *log,
                            ngx_pico_redis_closed_pt closed, void *data)
{
    ngx_connection_t       *c;
    ngx_pico_redis_event_t *re;

    /* not from a pool: it lives as long as the context, not a request */
    re = ngx_alloc(sizeof(ngx_pico_redis_event_t), log);
    if (re == NULL) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        ngx_free(re);
        return NGX_ERROR;
    }

    c->data = re;
    c->read->handler = ngx_pico_redis_event_read;
    c->write->handler = ngx_pico_redis_event_write;
    c->read->log = log;
    c->write->log = log;

    re->c = c;
    re->ac = ac;
    re->closed = closed;
    re->data = data;

    ac->ev.data = re;
    ac->ev.addRead = ngx_pico_redis_event_add_read;
    ac->ev.delRead = ngx_pico_redis_event_del_read;
    ac->ev.addWrite = ngx_pico_redis_event_add_write;
    ac->ev.delWrite = ngx_pico_redis_event_del_write;
    ac->ev.cleanup = ngx_pico_redis_event_cleanup;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0, "pico redis context on fd %d",
                   ac->c.fd);

    return NGX_OK;
}


static void
ngx_pico_redis_event_read(ngx_event_t *ev)
{
    ngx_connection_t       *c = ev->data;
    ngx_pico_redis_event_t *re = c->data;

    /* may free re and c */
    redisAsyncHandleRead(re->ac);
}


static void
ngx_pico_redis_event_write(ngx_event_t *ev)
{
    ngx_connection_t       *c = ev->data;
    ngx_pico_redis_event_t *re = c->data;

    redisAsyncHandleWrite(re->ac);
}


/* hiredis asks for (on) or drops (off) one of the two events */
static void
ngx_pico_redis_event_set(ngx_event_t *ev, ngx_uint_t on)
{
    ngx_int_t event;

    event = ev->write ? NGX_WRITE_EVENT : NGX_READ_EVENT;

    if (on && !ev->active) {
        (void)ngx_add_event(ev, event, NGX_LEVEL_EVENT);

    } else if (!on && ev->active) {
        (void)ngx_del_event(ev, event, 0);
    }
}


static void
ngx_pico_redis_event_add_read(void *privdata)
{
    ngx_pico_redis_event_t *re = privdata;

    ngx_pico_redis_event_set(re->c->read, 1);
}


static void
ngx_pico_redis_event_del_read(void *privdata)
{
    ngx_pico_redis_event_t *re = privdata;

    ngx_pico_redis_event_set(re->c->read, 0);
}


static void
ngx_pico_redis_event_add_write(void *privdata)
{
    ngx_pico_redis_event_t *re = privdata;

    ngx_pico_redis_event_set(re->c->write, 1);
}


static void
ngx_pico_redis_event_del_write(void *privdata)
{
    ngx_pico_redis_event_t *re = privdata;

    ngx_pico_redis_event_set(re->c->write, 0);
}


/*
 * hiredis is freeing the context (error, EOF or redisAsyncFree), after
 * its pending callbacks ran.  hiredis' own disconnect callback is not
 * enough here: it is not called for a connect that fails before it
 * completes, and this is the one place every way out passes through.
 */
static void
ngx_pico_redis_event_cleanup(void *privdata)
{
    ngx_pico_redis_event_t  *re = privdata;
    ngx_connection_t        *c;
    redisAsyncContext       *ac;
    ngx_pico_redis_closed_pt closed;
    void                    *data;

    c = re->c;
    ac = re->ac;
    closed = re->closed;
    data = re->data;

    ngx_pico_redis_event_set(c->read, 0);
    ngx_pico_redis_event_set(c->write, 0);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "pico redis context on fd %d closed", c->fd);

    /* hiredis closes the fd itself */
    ngx_free_connection(c);
    c->fd = (ngx_socket_t)-1;

    ngx_free(re);

    closed(ac, data);
}
