/*
 * The per-worker cache of splice pipes.  A direction of the relay borrows
 * a pipe only while bytes are in flight and gives it back when it is
 * empty, so idle tunnels hold none; up to NGX_PICO_PIPE_CACHE idle pipes
 * are kept to spare a pipe2() and F_SETPIPE_SZ per burst.
 */

#include "ngx_pico_module.h"

/* after ngx_config.h, which defines _GNU_SOURCE: pipe2(), F_SETPIPE_SZ */
#include <fcntl.h>

#define NGX_PICO_PIPE_CACHE 64

ngx_pico_pipe_t *
ngx_pico_pipe_get(ngx_pico_worker_t *w, size_t size)
{
    ngx_queue_t     *q;
    ngx_pico_pipe_t *p;

    if (!ngx_queue_empty(&w->pipes)) {
        q = ngx_queue_head(&w->pipes);
        ngx_queue_remove(q);
        w->npipes--;
        return ngx_queue_data(q, ngx_pico_pipe_t, queue);
    }

    p = ngx_alloc(sizeof(ngx_pico_pipe_t), w->log);
    if (p == NULL) {
        return NULL;
    }

    if (pipe2(p->fd, O_NONBLOCK | O_CLOEXEC) == -1) {
        ngx_log_error(NGX_LOG_WARN, w->log, ngx_errno,
                      "pico: pipe2() failed, relaying by copy");
        ngx_free(p);
        return NULL;
    }

    /* a bigger pipe moves more per splice(); failure is harmless */
    (void)fcntl(p->fd[1], F_SETPIPE_SZ, (int)size);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0, "pico relay new pipe %d:%d",
                   p->fd[0], p->fd[1]);

    return p;
}


void
ngx_pico_pipe_put(ngx_pico_worker_t *w, ngx_pico_pipe_t *p)
{
    if (w->npipes < NGX_PICO_PIPE_CACHE) {
        ngx_queue_insert_head(&w->pipes, &p->queue);
        w->npipes++;
        return;
    }

    close(p->fd[0]);
    close(p->fd[1]);
    ngx_free(p);
}


void
ngx_pico_pipes_free(ngx_pico_worker_t *w)
{
    ngx_queue_t     *q, *next;
    ngx_pico_pipe_t *p;

    for (q = ngx_queue_head(&w->pipes); q != ngx_queue_sentinel(&w->pipes);
         q = next) {
        next = ngx_queue_next(q);
        p = ngx_queue_data(q, ngx_pico_pipe_t, queue);
        close(p->fd[0]);
        close(p->fd[1]);
        ngx_free(p);
    }

    ngx_queue_init(&w->pipes);
    w->npipes = 0;
}
