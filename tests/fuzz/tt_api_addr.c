/* libFuzzer harness: test-tunnel's -api URL parser (api_addr_parse in
 * test-tunnel/connect.c). The input is the URL. What the rest of the
 * client relies on when the parser accepts one is checked here: the host
 * goes to getaddrinfo and TLS name checks, the port to getaddrinfo, the
 * host:port into the Host header and the REST URL, and the prefix in front
 * of "/v1/..." in the CONNECT request line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connect.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

/* No blanks or control characters: they would end up in HTTP headers. */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct api_addr a;
    char err[256] = "", *url;
    const char *rest;
    size_t n;
    long port;

    url = malloc(size + 1);
    if (url == NULL)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';

    if (api_addr_parse(&a, url, err, sizeof(err)) < 0) {
        /* refused: a reason, and nothing left to free */
        check(err[0] != '\0');
        check(a.host == NULL && a.port == NULL && a.hostport == NULL &&
              a.prefix == NULL);
        free(url);
        return 0;
    }
    check(a.tls == (strncmp(url, "https://", 8) == 0));

    /* host: a name or address, IPv6 without its brackets */
    check(a.host[0] != '\0' && printable(a.host));
    check(strpbrk(a.host, "[]/?#") == NULL);

    /* port: a TCP port number (getaddrinfo takes 65616 for 80) */
    n = strlen(a.port);
    check(n > 0 && n <= 5 && strspn(a.port, "0123456789") == n);
    port = strtol(a.port, NULL, 10);
    check(port >= 1 && port <= 65535);

    /* host:port as written: brackets around an IPv6 host, then nothing
     * but the port (or a colon and no port: the default) */
    n = strlen(a.host);
    if (strchr(a.host, ':') != NULL) {
        check(a.hostport[0] == '[' && strncmp(a.hostport + 1, a.host, n) == 0 &&
              a.hostport[n + 1] == ']');
        rest = a.hostport + n + 2;
    } else {
        check(strncmp(a.hostport, a.host, n) == 0);
        rest = a.hostport + n;
    }
    check(
        rest[0] == '\0' ||
        (rest[0] == ':' && (rest[1] == '\0' || strcmp(rest + 1, a.port) == 0)));

    /* prefix: "" or "/p", no trailing slash, no query or fragment */
    n = strlen(a.prefix);
    check(n == 0 || (a.prefix[0] == '/' && a.prefix[n - 1] != '/'));
    check(strpbrk(a.prefix, "?#") == NULL && printable(a.prefix));

    api_addr_free(&a);
    check(a.host == NULL && a.prefix == NULL);
    free(url);
    return 0;
}
