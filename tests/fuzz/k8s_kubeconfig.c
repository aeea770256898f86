/* libFuzzer harness: the kubeconfig reader of the kubernetes driver
 * (k8s_kubeconfig_parse_buffer in backend/runtime/kubernetes/k8s_config.c,
 * the block-style YAML subset, with the base64 of the *-data fields). The input
 * is the file's text, read as if from KC_PATH.
 *
 * Checked, when it is accepted: the server is an http(s) URL with a host
 * and without a trailing slash (request paths are appended to it); the token is
 * one line (it goes into a header); file paths are absolute (relative ones are
 * taken from KC_PATH's folder) and not cut short; decoded data is
 * NUL-terminated at its length. Refusals say why; k8s_conn_free releases
 * everything. The base64 codec also round-trips the raw input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/kubernetes/k8s_client.h"

#define KC_DIR "/home/pico/.kube"
#define KC_PATH KC_DIR "/config"

static void check(int ok)
{
    if (!ok)
        abort();
}

/* value appears in the input, whole: followed by what ends a scalar. */
static int in_input(const uint8_t *data, size_t size, const char *value)
{
    size_t n = strlen(value), i;

    for (i = 0; n > 0 && i + n <= size; i++)
        if (memcmp(data + i, value, n) == 0 &&
            (i + n == size || strchr(" \t\r\n\"'", data[i + n]) != NULL))
            return 1;
    return 0;
}

static void check_path(const uint8_t *data, size_t size, const char *p)
{
    if (p[0] == '\0')
        return;
    check(p[0] == '/' && strpbrk(p, "\r\n") == NULL);
    if (strncmp(p, KC_DIR "/", sizeof(KC_DIR)) == 0 &&
        in_input(data, size, p + sizeof(KC_DIR)))
        return;
    check(in_input(data, size, p));
}

static void check_data(const char *pem, size_t len)
{
    check(pem == NULL || pem[len] == '\0');
}

static void check_base64(const uint8_t *data, size_t size)
{
    char *enc = k8s_b64_encode(data, size);
    unsigned char *dec;
    size_t n = 0;

    check(enc != NULL && strlen(enc) == (size + 2) / 3 * 4);
    dec = k8s_b64_decode(enc, &n);
    check(dec != NULL && n == size && memcmp(dec, data, size) == 0);
    free(dec);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    k8s_conn c;
    char err[512] = "";
    size_t n;

    memset(&c, 0, sizeof(c));
    if (k8s_kubeconfig_parse_buffer(&c, KC_PATH, (const char *)data, size, err,
                                    sizeof(err)) == 0) {
        n = strlen(c.server);
        check(strncmp(c.server, "http://", 7) == 0 ||
              strncmp(c.server, "https://", 8) == 0);
        /* a host after the scheme, and no trailing slash */
        check(n > strlen(c.server[4] == 's' ? "https://" : "http://"));
        check(n < sizeof(c.server) && c.server[n - 1] != '/');
        check(c.token == NULL ||
              (c.token[0] != '\0' && strpbrk(c.token, "\r\n") == NULL));
        check_path(data, size, c.ca_file);
        check_path(data, size, c.token_file);
        check_path(data, size, c.cert_file);
        check_path(data, size, c.key_file);
        check_data(c.ca_pem, c.ca_len);
        check_data(c.cert_pem, c.cert_len);
        check_data(c.key_pem, c.key_len);
        check(c.insecure == 0 || c.insecure == 1);
        check(strcmp(c.source, "kubeconfig") == 0);
    } else {
        check(err[0] != '\0');
    }
    k8s_conn_free(&c);
    check(c.token == NULL && c.ca_pem == NULL && c.key_pem == NULL);

    check_base64(data, size);
    return 0;
}
