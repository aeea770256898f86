/*
 * Known-answer tests of common/pico_parse.c (the fuzzer in
 * tests/fuzz/common_parse.c checks invariants on arbitrary input; these
 * check the verdicts themselves).
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "pico_parse.h"

#define ID "123e4567-e89b-12d3-a456-426614174000"
#define TOKEN                                                                  \
    "pico_0123456789abcdef_"                                                   \
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static int path(const char *p, const unsigned char **id)
{
    return pico_parse_tunnel_path((const unsigned char *)p, strlen(p), id);
}

static int auth(const char *h)
{
    const unsigned char *tok;
    size_t len;

    return pico_parse_authorization((const unsigned char *)h, strlen(h), &tok,
                                    &len);
}

static void test_uuid(void **state)
{
    (void)state;
    assert_true(pico_parse_uuid((const unsigned char *)ID, 36));
    assert_false(pico_parse_uuid(
        (const unsigned char *)"123E4567-E89B-12D3-A456-426614174000", 36));
    assert_false(pico_parse_uuid(
        (const unsigned char *)"123e4567e89b-12d3-a456-426614174000-", 36));
    assert_false(pico_parse_uuid(
        (const unsigned char *)"123e4567-e89b-12d3-a456-42661417400g", 36));
    assert_false(pico_parse_uuid((const unsigned char *)ID, 35));
}

static void test_path(void **state)
{
    const unsigned char *id = NULL;

    (void)state;
    assert_int_equal(path("/v1/sessions/" ID "/tunnel", &id), PICO_PATH_OK);
    assert_memory_equal(id, ID, 36);
    assert_int_equal(path("/v1/sessions/x/tunnel", &id), PICO_PATH_BAD_ID);
    assert_int_equal(path("/v1/sessions/" ID "x/tunnel", &id),
                     PICO_PATH_BAD_ID);
    assert_int_equal(path("/v1/sessions//tunnel", &id), PICO_PATH_NOT_FOUND);
    assert_int_equal(path("/v1/sessions/" ID, &id), PICO_PATH_NOT_FOUND);
    assert_int_equal(path("/v1/sessions/" ID "/tunnel/", &id),
                     PICO_PATH_NOT_FOUND);
    assert_int_equal(path("/v1/sessions/a/b/tunnel", &id), PICO_PATH_NOT_FOUND);
    assert_int_equal(path("/v1/sessions/" ID "/tunnel?x=1", &id),
                     PICO_PATH_NOT_FOUND);
    assert_int_equal(path("/v2/sessions/" ID "/tunnel", &id),
                     PICO_PATH_NOT_FOUND);
    assert_int_equal(path("", &id), PICO_PATH_NOT_FOUND);
}

static int ports(const char *p, unsigned *port, const char **rest)
{
    const unsigned char *id, *r = NULL;
    size_t rlen = 0;
    int rc;

    rc = pico_parse_ports_path((const unsigned char *)p, strlen(p), &id, port,
                               &r, &rlen);
    if (rc == PICO_PORTS_OK) {
        assert_memory_equal(id, ID, 36);
        assert_true(r + rlen == (const unsigned char *)p + strlen(p));
        *rest = (const char *)r;
    }
    return rc;
}

static void test_port(void **state)
{
    (void)state;
    assert_int_equal(pico_parse_port((const unsigned char *)"1", 1), 1);
    assert_int_equal(pico_parse_port((const unsigned char *)"65535", 5), 65535);
    assert_int_equal(pico_parse_port((const unsigned char *)"8080", 4), 8080);
    assert_int_equal(pico_parse_port((const unsigned char *)"0", 1), 0);
    assert_int_equal(pico_parse_port((const unsigned char *)"65536", 5), 0);
    assert_int_equal(pico_parse_port((const unsigned char *)"99999", 5), 0);
    assert_int_equal(pico_parse_port((const unsigned char *)"080", 3), 0);
    assert_int_equal(pico_parse_port((const unsigned char *)"100000", 6), 0);
    assert_int_equal(pico_parse_port((const unsigned char *)"abc", 3), 0);
    assert_int_equal(pico_parse_port((const unsigned char *)"+80", 3), 0);
    assert_int_equal(pico_parse_port((const unsigned char *)"", 0), 0);
}

static void test_ports_path(void **state)
{
    unsigned port = 0;
    const char *rest = NULL;

    (void)state;
    assert_int_equal(
        ports("/v1/sessions/" ID "/ports/8080/tunnel", &port, &rest),
        PICO_PORTS_OK);
    assert_int_equal(port, 8080);
    assert_string_equal(rest, "/tunnel");
    assert_true(pico_parse_ports_tunnel((const unsigned char *)rest, 7));
    assert_false(pico_parse_ports_tunnel((const unsigned char *)"/tunnel/", 8));

    assert_int_equal(ports("/v1/sessions/" ID "/ports/80", &port, &rest),
                     PICO_PORTS_OK);
    assert_string_equal(rest, "");
    assert_int_equal(ports("/v1/sessions/" ID "/ports/80?a=/b", &port, &rest),
                     PICO_PORTS_OK);
    assert_string_equal(rest, "?a=/b");
    assert_int_equal(
        ports("/v1/sessions/" ID "/ports/3000/a/b.html", &port, &rest),
        PICO_PORTS_OK);
    assert_int_equal(port, 3000);
    assert_string_equal(rest, "/a/b.html");

    assert_int_equal(ports("/v1/sessions/" ID "/ports/0/tunnel", &port, &rest),
                     PICO_PORTS_BAD_PORT);
    assert_int_equal(
        ports("/v1/sessions/" ID "/ports/65536/tunnel", &port, &rest),
        PICO_PORTS_BAD_PORT);
    assert_int_equal(ports("/v1/sessions/" ID "/ports/abc/", &port, &rest),
                     PICO_PORTS_BAD_PORT);
    assert_int_equal(ports("/v1/sessions/" ID "/ports/", &port, &rest),
                     PICO_PORTS_BAD_PORT);
    assert_int_equal(ports("/v1/sessions/x/ports/80/tunnel", &port, &rest),
                     PICO_PORTS_BAD_ID);
    assert_int_equal(ports("/v1/sessions/" ID "/tunnel", &port, &rest),
                     PICO_PORTS_NOT_FOUND);
    assert_int_equal(ports("/v1/sessions/" ID "/port/80", &port, &rest),
                     PICO_PORTS_NOT_FOUND);
    assert_int_equal(ports("/v1/sessions/" ID "?/ports/80", &port, &rest),
                     PICO_PORTS_NOT_FOUND);
    assert_int_equal(ports("/v1/sessions/", &port, &rest),
                     PICO_PORTS_NOT_FOUND);
    assert_int_equal(ports("", &port, &rest), PICO_PORTS_NOT_FOUND);
}

static void test_token(void **state)
{
    const unsigned char *tid = NULL;
    char bad[sizeof(TOKEN)];

    (void)state;
    assert_true(
        pico_parse_token((const unsigned char *)TOKEN, strlen(TOKEN), &tid));
    assert_memory_equal(tid, "0123456789abcdef", 16);

    memcpy(bad, TOKEN, sizeof(TOKEN));
    bad[10] = 'A';
    assert_false(
        pico_parse_token((const unsigned char *)bad, strlen(bad), &tid));
    memcpy(bad, TOKEN, sizeof(TOKEN));
    bad[21] = '-';
    assert_false(
        pico_parse_token((const unsigned char *)bad, strlen(bad), &tid));
    assert_false(pico_parse_token((const unsigned char *)TOKEN,
                                  strlen(TOKEN) - 1, &tid));
}

static void test_authorization(void **state)
{
    (void)state;
    assert_int_equal(auth("Bearer " TOKEN), PICO_AUTH_OK);
    assert_int_equal(auth("bearer   " TOKEN "  "), PICO_AUTH_OK);
    assert_int_equal(auth("BEARER\t" TOKEN), PICO_AUTH_OK);
    assert_int_equal(auth(""), PICO_AUTH_MISSING);
    assert_int_equal(auth("   "), PICO_AUTH_MISSING);
    assert_int_equal(auth("Bearer"), PICO_AUTH_INVALID);
    assert_int_equal(auth("Bearer "), PICO_AUTH_INVALID);
    assert_int_equal(auth("Bearer" TOKEN), PICO_AUTH_INVALID);
    assert_int_equal(auth("Basic " TOKEN), PICO_AUTH_INVALID);
    assert_int_equal(auth("Bearer " TOKEN " extra"), PICO_AUTH_INVALID);
    assert_int_equal(auth("Bearer nonsense"), PICO_AUTH_INVALID);
}

static void test_event(void **state)
{
    const unsigned char *id = NULL;
    const char *ok = "deleted " ID;

    (void)state;
    assert_int_equal(
        pico_parse_event((const unsigned char *)ok, strlen(ok), &id),
        PICO_EVENT_DELETED);
    assert_memory_equal(id, ID, 36);
    id = NULL;
    assert_int_equal(
        pico_parse_event((const unsigned char *)"changed " ID, 44, &id),
        PICO_EVENT_CHANGED);
    assert_memory_equal(id, ID, 36);
    assert_int_equal(
        pico_parse_event((const unsigned char *)"revoked 0123456789abcdef", 24,
                         &id),
        PICO_EVENT_REVOKED);
    assert_memory_equal(id, "0123456789abcdef", 16);
    assert_false(pico_parse_event(
        (const unsigned char *)"revoked 0123456789ABCDEF", 24, &id));
    assert_false(
        pico_parse_event((const unsigned char *)"revoked " ID, 44, &id));
    assert_false(pico_parse_event((const unsigned char *)"deleted", 7, &id));
    assert_false(pico_parse_event((const unsigned char *)"deleted x", 9, &id));
    assert_false(
        pico_parse_event((const unsigned char *)"created " ID, 44, &id));
    assert_false(
        pico_parse_event((const unsigned char *)ok, strlen(ok) - 1, &id));
}

static void test_sha256_hex(void **state)
{
    const char *h =
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    (void)state;
    assert_true(pico_parse_sha256_hex((const unsigned char *)h, 64));
    assert_false(pico_parse_sha256_hex((const unsigned char *)h, 63));
    assert_false(pico_parse_sha256_hex(
        (const unsigned char
             *)"00112233445566778899AABBCCDDEEFF0011223344556677"
               "8899aabbccddeeff",
        64));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid),  cmocka_unit_test(test_path),
        cmocka_unit_test(test_token), cmocka_unit_test(test_authorization),
        cmocka_unit_test(test_event), cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_port),  cmocka_unit_test(test_ports_path),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
