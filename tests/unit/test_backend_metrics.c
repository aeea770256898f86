/* Unit tests of backend/core/metrics.c and runtime_timed.c: the text
 * format (HELP/TYPE, cumulative buckets, _sum/_count), the bounded
 * labels, and the wrapper that times a driver's calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/metrics.h"

/* the value of the sample line that starts with "name " */
static double sample(const char *text, const char *name)
{
    char want[256];
    const char *p;

    snprintf(want, sizeof(want), "\n%s ", name);
    p = strstr(text, want);
    assert_non_null(p);
    return strtod(p + strlen(want), NULL);
}

static char *render(void)
{
    pico_app app;
    size_t len = 0;
    char *text;

    memset(&app, 0, sizeof(app)); /* no store: pico_redis_up 0 */
    text = metrics_render(&app, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_create_histogram(void **state)
{
    char *t;

    metrics_create_done(50);     /* <= 0.1 */
    metrics_create_done(300);    /* <= 0.5 */
    metrics_create_done(200000); /* above every bound */
    t = render();
    assert_int_equal(sample(t, "pico_session_creates_total"), 3);
    assert_int_equal(
        sample(t, "pico_session_create_duration_seconds_bucket{le=\"0.1\"}"),
        1);
    assert_int_equal(
        sample(t, "pico_session_create_duration_seconds_bucket{le=\"0.25\"}"),
        1);
    assert_int_equal(
        sample(t, "pico_session_create_duration_seconds_bucket{le=\"0.5\"}"),
        2);
    assert_int_equal(
        sample(t, "pico_session_create_duration_seconds_bucket{le=\"120\"}"),
        2);
    assert_int_equal(
        sample(t, "pico_session_create_duration_seconds_bucket{le=\"+Inf\"}"),
        3);
    assert_int_equal(sample(t, "pico_session_create_duration_seconds_count"),
                     3);
    assert_true(sample(t, "pico_session_create_duration_seconds_sum") ==
                200.35);
    assert_non_null(strstr(t, "# TYPE pico_session_create_duration_seconds "
                              "histogram\n"));
    assert_non_null(strstr(t, "\npico_redis_up 0\n"));
    assert_null(strstr(t, "pico_sessions{"));
    free(t);
}

static void test_failure_labels_are_bounded(void **state)
{
    char *t;

    metrics_create_failed("unknown_image");
    metrics_create_failed("idempotency_key_reused");
    metrics_create_failed("idempotency_in_progress");
    metrics_create_failed("no such code \"\n");
    metrics_create_failed(NULL);
    t = render();
    assert_int_equal(
        sample(t,
               "pico_session_create_failures_total{reason=\"unknown_image\"}"),
        1);
    assert_int_equal(
        sample(t, "pico_session_create_failures_total{reason=\"idempotency\"}"),
        2);
    assert_int_equal(
        sample(t, "pico_session_create_failures_total{reason=\"other\"}"), 2);
    assert_null(strstr(t, "no such code"));
    free(t);
}

static int fake_calls;

static int fake_health(runtime *rt, char *err, size_t errlen)
{
    fake_calls++;
    snprintf(err, errlen, "down");
    return -1;
}

static int fake_alive(runtime *rt, const char *id)
{
    fake_calls++;
    return strcmp(id, "x") == 0;
}

static void test_runtime_timed(void **state)
{
    static const runtime_ops fake = {.name = "fake",
                                     .destroy_max_ms = 1234,
                                     .alive = fake_alive,
                                     .health = fake_health};
    const runtime_ops *ops = runtime_timed(&fake);
    char err[16] = "", *t;

    assert_string_equal(ops->name, "fake");
    assert_int_equal(ops->destroy_max_ms, 1234);
    assert_null(ops->create);  /* what the driver lacks stays NULL */
    assert_null(ops->running); /* (callers test for it) */
    assert_int_equal(ops->alive(NULL, "x"), 1);
    assert_int_equal(ops->alive(NULL, "y"), 0);
    assert_int_equal(ops->health(NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "down");
    assert_int_equal(fake_calls, 3);
    t = render();
    assert_int_equal(
        sample(t,
               "pico_runtime_operation_duration_seconds_count{op=\"alive\"}"),
        2);
    assert_int_equal(
        sample(t,
               "pico_runtime_operation_duration_seconds_count{op=\"health\"}"),
        1);
    assert_int_equal(
        sample(t, "pico_runtime_operation_duration_seconds_bucket{op=\"alive\","
                  "le=\"+Inf\"}"),
        2);
    assert_int_equal(
        sample(t,
               "pico_runtime_operation_duration_seconds_count{op=\"create\"}"),
        0);
    free(t);
}

static void test_reaper_lag(void **state)
{
    char *t;

    metrics_reaper_lag(-5); /* a clock step: counted as 0 */
    metrics_reaper_lag(700);
    t = render();
    assert_int_equal(sample(t, "pico_reaper_lag_seconds_bucket{le=\"0.05\"}"),
                     1);
    assert_int_equal(sample(t, "pico_reaper_lag_seconds_bucket{le=\"1\"}"), 2);
    assert_int_equal(sample(t, "pico_reaper_lag_seconds_count"), 2);
    assert_true(sample(t, "pico_reaper_lag_seconds_sum") == 0.7);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_histogram),
        cmocka_unit_test(test_failure_labels_are_bounded),
        cmocka_unit_test(test_runtime_timed),
        cmocka_unit_test(test_reaper_lag),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
