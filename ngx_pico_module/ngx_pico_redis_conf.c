/*
 * The pico_redis address of ngx_pico_module, read by the master with the
 * configuration (ngx_pico_init_main_conf()): a unix path is checked, a
 * name is resolved into an address literal.  Nothing else.
 */

#include "ngx_pico_module.h"

/*
 * A name in pico_redis is resolved here, in the master, when the
 * configuration is read (start and reload), as nginx does for upstream
 * servers: hiredis would otherwise resolve it with a blocking lookup inside
 * a worker at every (re)connect.  Workers get an address literal.
 */
char *
ngx_pico_redis_conf(ngx_conf_t *cf, ngx_pico_main_conf_t *pmcf)
{
    size_t    len;
    ngx_url_t u;

    if (pmcf->redis.len > 5 && ngx_strncmp(pmcf->redis.data, "unix:", 5) == 0) {
        len = pmcf->redis.len - 5;

        if (pmcf->redis.data[5] != '/' ||
            len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pico_redis \"%V\": unix: needs an absolute "
                               "path shorter than %uz bytes",
                               &pmcf->redis,
                               sizeof(((struct sockaddr_un *)0)->sun_path));
            return NGX_CONF_ERROR;
        }

        pmcf->redis_host = ngx_pnalloc(cf->pool, len + 1);
        if (pmcf->redis_host == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_cpystrn(pmcf->redis_host, pmcf->redis.data + 5, len + 1);
        return NGX_CONF_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = pmcf->redis;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pico_redis \"%V\": %s (expected unix:/path or "
                           "host[:port])",
                           &pmcf->redis, u.err ? u.err : "no address");
        return NGX_CONF_ERROR;
    }

    if (u.naddrs > 1) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "pico_redis \"%V\" has %ui addresses, using %V",
                           &pmcf->redis, u.naddrs, &u.addrs[0].name);
    }

    pmcf->redis_host = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (pmcf->redis_host == NULL) {
        return NGX_CONF_ERROR;
    }

    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                        pmcf->redis_host, NGX_SOCKADDR_STRLEN, 0);
    pmcf->redis_host[len] = '\0';
    pmcf->redis_port = ngx_inet_get_port(u.addrs[0].sockaddr);

    return NGX_CONF_OK;
}