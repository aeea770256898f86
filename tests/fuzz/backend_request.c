/* libFuzzer harness: POST /v1/sessions bodies through the validator and,
 * when accepted, the session JSON encoder; the same bytes as a PATCH
 * /v1/sessions/<id> body and as Idempotency-Key and Last-Event-ID header
 * values. Crashes,
 * leaks and UB fail. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/idempotency.h"
#include "core/session_api.h"
#include "core/util.h"

/* The header as libmicrohttpd hands it over: NUL-terminated. */
static void fuzz_idem_key(const uint8_t *data, size_t size)
{
    char *key = malloc(size + 1), err[128];

    if (key == NULL)
        return;
    memcpy(key, data, size);
    key[size] = '\0';
    err[0] = '\0';
    if (!idem_key_valid(key, err, sizeof(err)) && err[0] == '\0')
        __builtin_trap();
    if (event_id_valid(key) && event_id_cmp(key, key) != 0)
        __builtin_trap(); /* a valid id compares equal to itself */
    free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pico_config cfg;
    static int ready;
    session s;
    char err[512];
    long long ttl = 0;

    if (!ready) {
        config_defaults(&cfg);
        /* egress allowed, so "network" and "egress" reach their checks */
        copy_str(cfg.network_allowed, sizeof(cfg.network_allowed),
                 "none,egress");
        copy_str(cfg.egress_dns, sizeof(cfg.egress_dns), "192.0.2.10");
        copy_str(cfg.egress_deny_cidrs, sizeof(cfg.egress_deny_cidrs),
                 "198.51.100.0/24");
        ready = 1;
    }
    memset(&s, 0, sizeof(s));
    if (session_parse_request(&cfg, (const char *)data, size, &s, err,
                              sizeof(err)) == 0) {
        json_t *j;
        strcpy(s.id, "0f8fad5b-d9cb-469f-a165-70867728950e");
        j = session_to_json(&s, NULL);
        if (j == NULL)
            __builtin_trap(); /* an accepted request must encode */
        json_decref(j);
        session_free(&s);
    } else if (err[0] == '\0' || s.metadata_json != NULL) {
        __builtin_trap(); /* refusals name a reason and own nothing */
    }
    err[0] = '\0';
    if (session_parse_patch(&cfg, (const char *)data, size, &ttl, err,
                            sizeof(err)) == 0) {
        if (ttl < 1 || ttl > cfg.ttl_max)
            __builtin_trap(); /* an accepted ttl is in range */
    } else if (err[0] == '\0') {
        __builtin_trap();
    }
    fuzz_idem_key(data, size);
    return 0;
}
