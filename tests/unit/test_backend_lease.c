/* Unit tests of the deletion lease (backend/core/lifecycle.c): it always
 * outlasts the driver's longest destroy, so no other backend takes over
 * a delete that is still running (docs/decisions.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "core/lifecycle.h"
#include "runtime/local/local.h"

static void lease_outlasts_destroy(long long destroy_max_ms)
{
    runtime_ops ops = {.name = "test", .destroy_max_ms = destroy_max_ms};
    long long lease = lifecycle_lease_ms(&ops);

    if (lease < destroy_max_ms + PICO_LEASE_SLACK_MS)
        fail_msg("destroy may take %lld ms, lease is %lld ms", destroy_max_ms,
                 lease);
    assert_true(lease >= PICO_LEASE_MS);
}

static void test_short_destroy_keeps_the_default(void **state)
{
    runtime_ops ops = {.name = "test", .destroy_max_ms = 1000};

    assert_int_equal(lifecycle_lease_ms(&ops), PICO_LEASE_MS);
    lease_outlasts_destroy(0);
    lease_outlasts_destroy(1000);
}

/* The local driver's worst case: runc state and runc delete at their 30 s
 * timeout, the 10 s wait for a killed init, the 2 s loop release. */
static void test_local_worst_case(void **state)
{
    assert_true(DESTROY_MAX_MS >= 2 * RUNC_TIMEOUT_MS + KILL_WAIT_MS);
    lease_outlasts_destroy(DESTROY_MAX_MS);
}

/* The kubernetes driver: three API calls (pod, secret, network policy)
 * at their 30 s timeout (K8S_CALL_TIMEOUT_S; its header cannot sit
 * beside local.h). */
static void test_kubernetes_worst_case(void **state)
{
    lease_outlasts_destroy(3LL * 30 * 1000);
}

static void test_lease_just_above_the_default(void **state)
{
    lease_outlasts_destroy(PICO_LEASE_MS - PICO_LEASE_SLACK_MS + 1);
    lease_outlasts_destroy(PICO_LEASE_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_destroy_keeps_the_default),
        cmocka_unit_test(test_local_worst_case),
        cmocka_unit_test(test_kubernetes_worst_case),
        cmocka_unit_test(test_lease_just_above_the_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
