/* Unit tests of backend/runtime/local/oci.c: the isolation a local sandbox's
 * config.json asks runc for (read-only root, namespaces, mounts, capabilities,
 * limits). The end-to-end tests check that runc delivers it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "runtime/local/oci.h"

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
        .id_base = 0x120000,
        .id_size = 65536,
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
    const char *want[] = {"pid",     "ipc",    "uts", "mount",
                          "network", "cgroup", "user"};
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

/* container ids 0..65535 are the sandbox's own host range, uid and gid */
static void test_user_namespace_mapping(void **state)
{
    json_t *root = build(512, 1000, 256);
    json_t *lx = json_object_get(root, "linux");
    const char *keys[] = {"uidMappings", "gidMappings"};

    for (size_t i = 0; i < 2; i++) {
        json_t *m = json_object_get(lx, keys[i]);
        assert_int_equal(json_array_size(m), 1);
        m = json_array_get(m, 0);
        assert_int_equal(json_integer_value(json_object_get(m, "containerID")),
                         0);
        assert_int_equal(json_integer_value(json_object_get(m, "hostID")),
                         0x120000);
        assert_int_equal(json_integer_value(json_object_get(m, "size")), 65536);
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
    assert_true(has_string(
        json_object_get(json_object_get(root, "linux"), "maskedPaths"),
        "/sys/devices/virtual/block"));
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

static json_t *seccomp_rules(json_t *root)
{
    json_t *sc = json_object_get(json_object_get(root, "linux"), "seccomp");

    assert_non_null(sc);
    return json_object_get(sc, "syscalls");
}

/* The action (errno) the filter gives syscall `name` with first argument
 * arg0, read from the config the way libseccomp applies it: a rule with
 * no args matches always, a rule's masked comparison when arg0 & value ==
 * valueTwo; 0 = allowed (the default). */
static int errno_for(json_t *root, const char *name, unsigned long arg0)
{
    json_t *rule;
    size_t i;

    json_array_foreach(seccomp_rules(root), i, rule)
    {
        json_t *args = json_object_get(rule, "args"), *a;
        int match = 1;
        size_t j;

        if (!has_string(json_object_get(rule, "names"), name))
            continue;
        assert_string_equal(json_string_value(json_object_get(rule, "action")),
                            "SCMP_ACT_ERRNO");
        json_array_foreach(args, j, a)
        {
            unsigned long mask =
                json_integer_value(json_object_get(a, "value"));
            unsigned long want =
                json_integer_value(json_object_get(a, "valueTwo"));
            assert_int_equal(json_integer_value(json_object_get(a, "index")),
                             0);
            assert_string_equal(json_string_value(json_object_get(a, "op")),
                                "SCMP_CMP_MASKED_EQ");
            match &= (arg0 & mask) == want;
        }
        if (match)
            return (int)json_integer_value(json_object_get(rule, "errnoRet"));
    }
    return 0;
}

static void test_seccomp_profile(void **state)
{
    json_t *root = build(512, 1000, 256);
    json_t *sc = json_object_get(json_object_get(root, "linux"), "seccomp");
    const char *denied[] = {"keyctl",
                            "add_key",
                            "request_key",
                            "bpf",
                            "perf_event_open",
                            "userfaultfd",
                            "io_uring_setup",
                            "io_uring_enter",
                            "mount",
                            "umount2",
                            "pivot_root",
                            "setns",
                            "unshare",
                            "kexec_load",
                            "init_module",
                            "finit_module",
                            "open_by_handle_at",
                            "move_mount",
                            "fsopen",
                            "syslog",
                            "iopl",
                            "reboot",
                            "swapon"};
    /* sshd needs chroot (privilege separation) and seccomp (its own
     * sandbox); debuggers need ptrace; ordinary programs the rest */
    const char *allowed[] = {"chroot", "seccomp", "ptrace",          "execve",
                             "setuid", "openat",  "process_vm_readv"};
    size_t i;

    assert_string_equal(json_string_value(json_object_get(sc, "defaultAction")),
                        "SCMP_ACT_ALLOW");
    assert_true(
        has_string(json_object_get(sc, "architectures"), "SCMP_ARCH_X86_64"));
    assert_true(
        has_string(json_object_get(sc, "architectures"), "SCMP_ARCH_X86"));
    assert_true(
        has_string(json_object_get(sc, "architectures"), "SCMP_ARCH_X32"));
    for (i = 0; i < sizeof(denied) / sizeof(denied[0]); i++)
        assert_int_equal(errno_for(root, denied[i], 0), 1 /* EPERM */);
    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        assert_int_equal(errno_for(root, allowed[i], 0), 0);
    /* clone3's flags are out of the filter's reach: ENOSYS, so glibc falls
     * back to clone */
    assert_int_equal(errno_for(root, "clone3", 0), 38 /* ENOSYS */);
    json_decref(root);
}

static void test_seccomp_clone_flags(void **state)
{
    json_t *root = build(512, 1000, 256);

    /* fork, vfork (posix_spawn), pthread_create */
    assert_int_equal(errno_for(root, "clone", 17), 0);
    assert_int_equal(errno_for(root, "clone", 0x4111), 0);
    assert_int_equal(errno_for(root, "clone", 0x3d0f00), 0);
    /* any namespace flag, alone or with others */
    assert_int_equal(errno_for(root, "clone", 0x10000000 | 17), 1);
    assert_int_equal(errno_for(root, "clone", 0x00020000 | 17), 1);
    assert_int_equal(errno_for(root, "clone", 0x40000000), 1);
    assert_int_equal(errno_for(root, "clone", 0x20000000 | 0x3d0f00), 1);
    assert_int_equal(errno_for(root, "clone", 0x7e020000), 1);
    json_decref(root);
}

static void test_seccomp_personality(void **state)
{
    json_t *root = build(512, 1000, 256);
    const unsigned long ok[] = {0,       0x8,     0x20000,   0x20008,
                                0x40000, 0x60008, 0xffffffff};
    const unsigned long bad[] = {0x1,        0x0400000,  0x0100001,
                                 0x0800000,  0x80000000, 0xfffffffe,
                                 0x7fffffff, 0xc0000000, 0x0200000};
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_int_equal(errno_for(root, "personality", ok[i]), 0);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(errno_for(root, "personality", bad[i]), 1);
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root_is_shared_and_read_only),
        cmocka_unit_test(test_namespaces),
        cmocka_unit_test(test_user_namespace_mapping),
        cmocka_unit_test(test_mounts),
        cmocka_unit_test(test_process_is_unprivileged),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_cpu_quota_floor),
        cmocka_unit_test(test_seccomp_profile),
        cmocka_unit_test(test_seccomp_clone_flags),
        cmocka_unit_test(test_seccomp_personality),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
