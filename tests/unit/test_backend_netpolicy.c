/* Unit tests of backend/core/netpolicy.c: IPv4 ranges, their lists, the
 * always-blocked ranges, and the configuration checks of network_allowed
 * and the egress_* keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/config.h"
#include "core/netpolicy.h"
#include "core/util.h"

static int parse(const char *s, pico_cidr *c)
{
    return cidr_parse(s, strlen(s), c);
}

static void test_cidr_parse(void **state)
{
    pico_cidr c;
    char buf[24];

    assert_int_equal(parse("192.0.2.0/24", &c), 0);
    assert_int_equal(c.addr, 0xc0000200u);
    assert_int_equal(c.prefix, 24);
    cidr_format(&c, buf, sizeof(buf));
    assert_string_equal(buf, "192.0.2.0/24");
    assert_int_equal(parse("203.0.113.7", &c), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(parse("0.0.0.0/0", &c), 0);
    assert_int_equal(c.prefix, 0);
    /* host bits past the prefix, out of range, junk */
    assert_int_equal(parse("192.0.2.1/24", &c), -1);
    assert_int_equal(parse("192.0.2.0/33", &c), -1);
    assert_int_equal(parse("256.0.0.0/8", &c), -1);
    assert_int_equal(parse("1.2.3", &c), -1);
    assert_int_equal(parse("1.2.3.4.5", &c), -1);
    assert_int_equal(parse("1.2.3.4/", &c), -1);
    assert_int_equal(parse("01234.0.0.0/8", &c), -1);
    assert_int_equal(parse("example.com", &c), -1);
    assert_int_equal(parse("", &c), -1);
}

static void test_cidr_list(void **state)
{
    pico_cidr_list l;
    char why[128];

    assert_int_equal(cidr_list_parse("", &l, why, sizeof(why)), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(
        cidr_list_parse("192.0.2.0/24, 198.51.100.0/24 203.0.113.9", &l, why,
                        sizeof(why)),
        0);
    assert_int_equal(l.n, 3);
    assert_int_equal(cidr_list_parse("192.0.2.0/24,bad", &l, why, sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "bad is not an IPv4 range"));
}

static void test_blocked(void **state)
{
    pico_cidr a, b;

    assert_true(netpolicy_blocked(0x7f000001u));  /* 127.0.0.1 */
    assert_true(netpolicy_blocked(0xa9fea9feu));  /* 169.254.169.254 */
    assert_true(netpolicy_blocked(0x0a000202u));  /* 10.0.2.2 */
    assert_false(netpolicy_blocked(0xc000020au)); /* 192.0.2.10 */
    assert_int_equal(parse("198.51.100.0/25", &a), 0);
    assert_int_equal(parse("198.51.100.0/24", &b), 0);
    assert_true(cidr_within(&a, &b));
    assert_false(cidr_within(&b, &a));
}

static int check(const char *text, char *why, size_t whylen)
{
    pico_config cfg;

    config_defaults(&cfg);
    return config_parse(&cfg, "t", text, strlen(text), why, whylen);
}

static void test_config(void **state)
{
    char why[256];

    assert_int_equal(check("network_allowed none\n", why, sizeof(why)), 0);
    assert_int_equal(check("network_allowed none,egress\n"
                           "egress_dns 192.0.2.10\n",
                           why, sizeof(why)),
                     0);
    assert_int_equal(check("network_allowed egress\n", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "egress_dns"));
    assert_int_equal(check("network_allowed none,egress\n"
                           "egress_dns 192.0.2.10\n"
                           "egress_allow_cidrs 198.51.100.0/24\n"
                           "egress_deny_cidrs 198.51.100.0/23\n",
                           why, sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "allows nothing"));
    assert_int_equal(check("network_allowed none,egress\n"
                           "egress_dns 192.0.2.10\n"
                           "egress_netns ../x\n",
                           why, sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "egress_netns"));
}

/* On Kubernetes: no egress_dns (the cluster's), the cluster's private
 * ranges blocked, and no domain lists (a NetworkPolicy has no names). */
static void test_config_kubernetes(void **state)
{
    char why[256];

    assert_int_equal(check("network_allowed none,egress\n"
                           "runtime kubernetes\n",
                           why, sizeof(why)),
                     0);
    assert_int_equal(check("network_allowed none,egress\n"
                           "runtime kubernetes\n"
                           "egress_allow_cidrs 10.1.0.0/16\n",
                           why, sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "allows nothing"));
    assert_int_equal(check("network_allowed none,egress\n"
                           "runtime kubernetes\n"
                           "egress_deny_domains example.com\n",
                           why, sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "egress_deny_domains"));
    assert_non_null(strstr(why, "NetworkPolicy"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_list),
        cmocka_unit_test(test_blocked),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_config_kubernetes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
