/* Unit tests of backend/core/util.c and the pure parts of
 * backend/api/tokens.c:
 * UUIDs, RFC 3339 times, strict integers, token format and hashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "api/tokens.h"
#include "core/util.h"

static void test_uuid(void **state)
{
    char a[37], b[37];

    assert_int_equal(uuid_v4(a), 0);
    assert_int_equal(uuid_v4(b), 0);
    assert_int_equal(strlen(a), 36);
    assert_true(uuid_valid(a));
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
}

static void test_uuid_valid(void **state)
{
    assert_true(uuid_valid("0f8fad5b-d9cb-469f-a165-70867728950e"));
    assert_false(uuid_valid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
    assert_false(uuid_valid("0f8fad5b-d9cb-469f-a165-70867728950"));
    assert_false(uuid_valid("0f8fad5b-d9cb-469f-a165-70867728950e0"));
    assert_false(uuid_valid("0f8fad5bd-9cb-469f-a165-70867728950e"));
    assert_false(uuid_valid("../../../../../../../../../../etc/pa"));
    assert_false(uuid_valid(""));
}

static void test_rfc3339(void **state)
{
    char buf[32];

    assert_int_equal(format_rfc3339(0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    assert_int_equal(format_rfc3339(1761277500, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "2025-10-24T03:45:00Z");
    assert_int_equal(format_rfc3339(-1, buf, sizeof(buf)), -1);
    assert_int_equal(format_rfc3339(1LL << 60, buf, sizeof(buf)), -1);
}

static void test_parse_ll(void **state)
{
    long long v;

    assert_int_equal(parse_ll("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(parse_ll("-7", &v), 0);
    assert_int_equal(v, -7);
    assert_int_equal(parse_ll("", &v), -1);
    assert_int_equal(parse_ll("-", &v), -1);
    assert_int_equal(parse_ll(" 1", &v), -1);
    assert_int_equal(parse_ll("+1", &v), -1);
    assert_int_equal(parse_ll("1 ", &v), -1);
    assert_int_equal(parse_ll("0x10", &v), -1);
    assert_int_equal(parse_ll("99999999999999999999", &v), -1);
}

static void test_token_roundtrip(void **state)
{
    char tok[PICO_TOKEN_LEN + 1], id[PICO_TOKEN_ID_LEN + 1],
        id2[PICO_TOKEN_ID_LEN + 1];

    assert_int_equal(token_generate(tok, id), 0);
    assert_int_equal(strlen(tok), PICO_TOKEN_LEN);
    assert_memory_equal(tok, "pico_", 5);
    assert_int_equal(token_parse(tok, id2), 0);
    assert_string_equal(id, id2);
}

static void test_token_parse_rejects(void **state)
{
    char id[PICO_TOKEN_ID_LEN + 1], tok[PICO_TOKEN_LEN + 2];

    assert_int_equal(token_parse("", id), -1);
    assert_int_equal(token_parse("pico_", id), -1);
    token_generate(tok, id);
    tok[10] = 'G';
    assert_int_equal(token_parse(tok, id), -1);
    token_generate(tok, id);
    tok[21] = '-';
    assert_int_equal(token_parse(tok, id), -1);
    token_generate(tok, id);
    tok[30] = 'A'; /* uppercase hex is not the format */
    assert_int_equal(token_parse(tok, id), -1);
    token_generate(tok, id);
    tok[PICO_TOKEN_LEN] = '0'; /* one character too long */
    tok[PICO_TOKEN_LEN + 1] = '\0';
    assert_int_equal(token_parse(tok, id), -1);
}

static void test_sha256(void **state)
{
    char out[65];

    token_sha256_hex("abc", 3, out);
    assert_string_equal(
        out,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_principal(void **state)
{
    char long_name[80];

    assert_true(token_principal_valid("alice"));
    assert_true(token_principal_valid("svc.ci-1_x"));
    assert_false(token_principal_valid(""));
    assert_false(token_principal_valid("a b"));
    assert_false(token_principal_valid("a;rm"));
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_false(token_principal_valid(long_name));
    long_name[64] = '\0';
    assert_true(token_principal_valid(long_name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_uuid_valid),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_parse_ll),
        cmocka_unit_test(test_token_roundtrip),
        cmocka_unit_test(test_token_parse_rejects),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_principal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
