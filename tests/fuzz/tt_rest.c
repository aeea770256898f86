/* libFuzzer harness: the body of GET /v1/sessions/<id> as test-tunnel reads
 * it for the sandbox's host key (rest_parse_keys in test-tunnel/rest.c).
 * The input is the body, as the server's JSON.
 *
 * Checked: an accepted answer yields a host key or a fingerprint, neither
 * empty; a refused one says why and leaves nothing to free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rest.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct session_keys keys;
    char err[256] = "", *text;

    text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    if (rest_parse_keys(text, &keys, err, sizeof(err)) == 0) {
        check(keys.host_key != NULL || keys.host_key_fingerprint != NULL);
        check(keys.host_key == NULL || keys.host_key[0] != '\0');
        check(keys.host_key_fingerprint == NULL ||
              keys.host_key_fingerprint[0] != '\0');
    } else {
        check(err[0] != '\0');
        check(keys.host_key == NULL && keys.host_key_fingerprint == NULL);
    }
    session_keys_free(&keys);
    check(keys.host_key == NULL && keys.host_key_fingerprint == NULL);
    free(text);
    return 0;
}
