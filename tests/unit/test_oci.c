/* Unit tests of backend/oci.c: the isolation a local sandbox's config.json
 * asks runc for (read-only root, namespaces, mounts, capabilities,
 * limits). The end-to-end tests check that runc delivers it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "oci.h"

static json_t *build(int memory_mb, int millicores, int pids)
{
    oci_params p = {
        .rootfs = "/images/sandbox_latest/rootfs",
        .hostname = "sandbox-x",
        .init_binary = "/opt/pico/bin/pico-init",
        .workspace = "/state/sessions/x/workspace",
        .home = "/state/sessions/x/home",
        .keys = "/state/sessions/x/keys",
        .cgroups_path = "/pico/x",
        .memory_mb = memory_mb,
        .cpu_millicores = millicores,
        .pids = pids,
        .tmp_size_mb = 64,
    };
    char *text = oci_config_json(&p);
    json_t *root;

    assert_non_null(text);
    root = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(root);
    return root;
}

static json_t *find_mount(json_t *root, const char *dest)
{
    json_t *m;
    size_t i;

    json_array_foreach(json_object_get(root, "mounts"), i, m)
    {
        if (!strcmp(json_string_value(json_object_get(m, "destination")), dest))
            return m;
    }
    return NULL;
}

static int has_string(json_t *arr, const char *s)
{
    json_t *v;
    size_t i;

    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v) && !strcmp(json_string_value(v), s))
            return 1;
    }
    return 0;
}

static void test_root_is_shared_and_read_only(void **state)
{
    json_t *root = build(512, 1000, 256);
    json_t *r = json_object_get(root, "root");

    assert_string_equal(json_string_value(json_object_get(r, "path")),
                        "/images/sandbox_latest/rootfs");
    assert_true(json_is_true(json_object_get(r, "readonly")));
    assert_string_equal(json_string_value(json_object_get(root, "hostname")),
                        "sandbox-x");
    json_decref(root);
}

static void test_namespaces(void **state)
{
    json_t *root = build(512, 1000, 256);
    json_t *ns = json_object_get(json_object_get(root, "linux"), "namespaces");
    const char *want[] = {"pid", "ipc", "uts", "mount", "network", "cgroup"};
    size_t i, j;
    json_t *v;

    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int found = 0;
        json_array_foreach(ns, j, v)
        {
            const char *t = json_string_value(json_object_get(v, "type"));
            found |= !strcmp(t, want[i]);
            /* joining an existing namespace would share it */
            assert_null(json_object_get(v, "path"));
        }
        assert_true(found);
    }
    json_decref(root);
}

static void test_mounts(void **state)
{
    json_t *root = build(512, 1000, 256);
    json_t *m;

    m = find_mount(root, "/workspace");
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "source")),
                        "/state/sessions/x/workspace");
    assert_true(has_string(json_object_get(m, "options"), "rw"));
    assert_true(has_string(json_object_get(m, "options"), "nosuid"));

    m = find_mount(root, "/etc/ssh/pico");
    assert_non_null(m);
    assert_true(has_string(json_object_get(m, "options"), "ro"));

    m = find_mount(root, OCI_INIT_PATH);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "source")),
                        "/opt/pico/bin/pico-init");
    assert_true(has_string(json_object_get(m, "options"), "ro"));

    m = find_mount(root, "/tmp");
    assert_non_null(m);
    assert_true(has_string(json_object_get(m, "options"), "size=64m"));

    m = find_mount(root, "/sys");
    assert_non_null(m);
    assert_true(has_string(json_object_get(m, "options"), "ro"));
    assert_non_null(find_mount(root, "/home/sandbox"));
    assert_non_null(find_mount(root, "/proc"));
    assert_non_null(find_mount(root, "/dev/pts"));
    json_decref(root);
}

static void test_process_is_unprivileged(void **state)
{
    json_t *root = build(512, 1000, 256);
    json_t *p = json_object_get(root, "process");
    json_t *caps = json_object_get(p, "capabilities");
    const char *sets[] = {"bounding", "effective", "permitted"};
    size_t i;

    assert_true(json_is_true(json_object_get(p, "noNewPrivileges")));
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(p, "args"), 0)),
        OCI_INIT_PATH);
    for (i = 0; i < 3; i++) {
        json_t *set = json_object_get(caps, sets[i]);
        assert_true(has_string(set, "CAP_SETUID"));
        assert_false(has_string(set, "CAP_SYS_ADMIN"));
        assert_false(has_string(set, "CAP_NET_ADMIN"));
        assert_false(has_string(set, "CAP_DAC_OVERRIDE"));
        assert_false(has_string(set, "CAP_SYS_PTRACE"));
    }
    assert_null(json_object_get(caps, "ambient"));
    assert_null(json_object_get(caps, "inheritable"));
    assert_true(has_string(
        json_object_get(json_object_get(root, "linux"), "maskedPaths"),
        "/proc/kcore"));
    json_decref(root);
}

static void test_limits(void **state)
{
    json_t *root = build(256, 1500, 100);
    json_t *lx = json_object_get(root, "linux");
    json_t *res = json_object_get(lx, "resources");
    json_t *mem = json_object_get(res, "memory");

    assert_string_equal(json_string_value(json_object_get(lx, "cgroupsPath")),
                        "/pico/x");
    assert_int_equal(json_integer_value(json_object_get(mem, "limit")),
                     256LL << 20);
    /* swap is memory+swap in OCI: the same value means no swap */
    assert_int_equal(json_integer_value(json_object_get(mem, "swap")),
                     256LL << 20);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(res, "pids"), "limit")),
                     100);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(res, "cpu"), "quota")),
                     150000);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(res, "cpu"), "period")),
                     100000);
    json_decref(root);
}

static void test_cpu_quota_floor(void **state)
{
    json_t *root = build(256, 1, 100);
    json_t *cpu = json_object_get(
        json_object_get(json_object_get(root, "linux"), "resources"), "cpu");

    /* the kernel refuses quotas under 1 ms */
    assert_int_equal(json_integer_value(json_object_get(cpu, "quota")), 1000);
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root_is_shared_and_read_only),
        cmocka_unit_test(test_namespaces),
        cmocka_unit_test(test_mounts),
        cmocka_unit_test(test_process_is_unprivileged),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_cpu_quota_floor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
