/* Unit tests of backend/core/config.c: defaults, every key of the template,
 * quoting, and file:line errors for unknown keys and bad values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/config.h"

static int parse(pico_config *cfg, const char *text, char *err, size_t n)
{
    config_defaults(cfg);
    return config_parse(cfg, "t.conf", text, strlen(text), err, n);
}

static void test_defaults(void **state)
{
    pico_config cfg;
    char err[256];

    assert_int_equal(parse(&cfg, "", err, sizeof(err)), 0);
    assert_int_equal(cfg.ttl_default, 3600);
    assert_int_equal(cfg.ttl_max, 86400);
    assert_string_equal(cfg.default_image, "sandbox:latest");
    assert_int_equal(cfg.auth, 0);
    assert_string_equal(cfg.runtime, "local");
    assert_int_equal(cfg.disk_mb_default, 0); /* no disk quota */
    assert_int_equal(cfg.disk_mb_max, 10240);
    assert_string_equal(cfg.mkfs_ext4, "/usr/sbin/mkfs.ext4");
    {
        char host[64] = "";

        gethostname(host, sizeof(host) - 1);
        assert_string_equal(cfg.node_name, host[0] ? host : "pico");
    }
}

/* The template with its placeholders filled, as pico-conf.sh writes it. */
static void test_template(void **state)
{
    static const char text[] = "# comment\n"
                               "listen unix:/v/run/backend.sock\n"
                               "listen_group www-data\n"
                               "redis unix:/v/run/redis.sock\n"
                               "state_dir /v\n"
                               "runtime local\n"
                               "auth on\n"
                               "node_name n1\n"
                               "threads 64\n"
                               "\n"
                               "ttl_default 3600\n"
                               "ttl_max 86400\n"
                               "default_image sandbox:latest\n"
                               "max_sessions 500\n"
                               "memory_mb_default 512\n"
                               "memory_mb_max 4096\n"
                               "cpu_millicores_default 1000\n"
                               "cpu_millicores_max 2000\n"
                               "pids_default 256\n"
                               "pids_max 4096\n"
                               "reaper_interval_ms 200\n"
                               "images_dir /v/images\n"
                               "runc /usr/sbin/runc\n"
                               "init_binary /r/bin/pico-init\n"
                               "socket_group www-data\n"
                               "tmp_size_mb 256\n"
                               "ready_timeout_ms 5000\n"
                               "k8s_api \"\"\n"
                               "k8s_namespace pico-sandboxes\n"
                               "k8s_image_prefix \"\"\n"
                               "k8s_ready_timeout_s 120   # trailing comment\n";
    pico_config cfg;
    char err[256] = "";

    assert_int_equal(parse(&cfg, text, err, sizeof(err)), 0);
    assert_string_equal(cfg.listen, "unix:/v/run/backend.sock");
    assert_string_equal(cfg.listen_group, "www-data");
    assert_int_equal(cfg.auth, 1);
    assert_string_equal(cfg.node_name, "n1");
    assert_int_equal(cfg.reaper_interval_ms, 200);
    assert_string_equal(cfg.k8s_api, "");
    assert_int_equal(cfg.k8s_ready_timeout_s, 120);
}

static void test_quoted(void **state)
{
    pico_config cfg;
    char err[256];

    assert_int_equal(
        parse(&cfg, "node_name \"a \\\"b\\\" c\"\r\n", err, sizeof(err)), 0);
    assert_string_equal(cfg.node_name, "a \"b\" c");
    assert_int_equal(parse(&cfg, "node_name \"abc\n", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "t.conf:1: unterminated"));
}

static void test_unknown_key(void **state)
{
    pico_config cfg;
    char err[256];

    assert_int_equal(parse(&cfg, "auth off\nttl_defualt 5\n", err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "t.conf:2: unknown key \"ttl_defualt\""));
}

static void test_bad_values(void **state)
{
    static const char *const bad[] = {
        "ttl_max 0\n",
        "ttl_max -1\n",
        "ttl_max 1.5\n",
        "ttl_max 12abc\n",
        "threads 99999999999999999999\n",
        "auth maybe\n",
        "runtime docker\n",
        "isolation kata\n",
        "isolation_allowed runc,firecracker\n",
        "runtime kubernetes\nisolation gvisor\n",
        "listen nowhere\n",
        "redis unix:relative\n",
        "state_dir relative\n",
        "ttl_default\n",
        "ttl_default 100000\n", /* above ttl_max */
        "node_name a b\n",
        "pids_default 5000\n",
        "memory_mb_default 32\n", /* below what a sandbox can run with */
        "pids_max 8\n",
        "cpu_millicores_default 5\n",
        "disk_mb_default 8\n",     /* below the 16 MiB minimum */
        "disk_mb_default 20000\n", /* above disk_mb_max */
        "disk_mb_max 8\n",
        "disk_mb_default -1\n",
        "idle_timeout_default 100000\n", /* above idle_timeout_max */
        "idle_timeout_max -1\n",
        "idle_action stop\n",
    };
    pico_config cfg;
    char err[256];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(parse(&cfg, bad[i], err, sizeof(err)), -1);
        assert_non_null(strstr(err, "t.conf"));
    }
}

static void test_nul_and_long_lines(void **state)
{
    pico_config cfg;
    char err[256], text[5000];

    config_defaults(&cfg);
    assert_int_equal(
        config_parse(&cfg, "t.conf", "auth on\0x\n", 10, err, sizeof(err)), -1);
    memset(text, 'a', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    assert_int_equal(parse(&cfg, text, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too long"));
}

static void test_missing_file(void **state)
{
    pico_config cfg;
    char err[256];

    config_defaults(&cfg);
    assert_int_equal(
        config_load(&cfg, "/nonexistent/pico.conf", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/pico.conf"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_template),
        cmocka_unit_test(test_quoted),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_nul_and_long_lines),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
