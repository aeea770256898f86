/*
 * oci.c - builds the OCI runtime config (config.json) of a local sandbox.
 *
 * What a sandbox gets, and why:
 *   - the shared root filesystem, read-only; writable per-session folders
 *     bind-mounted at /workspace and /home/sandbox; /tmp and /run are
 *     size-limited tmpfs (charged to the sandbox's memory cgroup)
 *   - new pid, ipc, uts, mount, network and cgroup namespaces; the network
 *     namespace has only lo, so nothing on the host (Redis, the backend,
 *     anything on the host's loopback) is reachable from inside; with
 *     egress, one the backend made and filters instead (egress.c)
 *   - root inside keeps only the capabilities sshd needs to switch to the
 *     user (setuid/setgid, chroot for privilege separation, chown of the
 *     pty, kill of the session); no new privileges after that
 *   - memory (+swap), pids and CPU limits from the session
 *   - /proc and /sys paths masked and read-only as in runc's default spec
 *   - a seccomp filter: everything allowed but the syscalls a sandbox
 *     user never needs and that widen the kernel's attack surface
 *     (keyrings, bpf, io_uring, mounts, namespaces, modules, ...)
 *   - a user namespace: the sandbox's ids 0..65535 are a host range of its
 *     own (idmap.c), so its root is no host user at all, and nobody logs
 *     in as root anyway (sshd allows only the `sandbox` user)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>
#include "runtime/local/oci.h"

/* Exactly what sshd -i needs, found by dropping one at a time: chroot and
 * setuid/setgid for privilege separation and the switch to the user,
 * chown of the session's pty, and audit writes (sshd treats a refused
 * login audit record on a tty as fatal). Not DAC_OVERRIDE, FOWNER or
 * KILL: after the switch, sshd signals processes of its own uid. */
static const char *const caps[] = {"CAP_CHOWN",       "CAP_SETGID",
                                   "CAP_SETUID",      "CAP_SYS_CHROOT",
                                   "CAP_AUDIT_WRITE", NULL};

static const char *const masked_paths[] = {
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    /* loop devices' backing files
     * name other sessions */
    "/sys/devices/virtual/block", NULL};

static const char *const readonly_paths[] = {"/proc/bus",           "/proc/fs",
                                             "/proc/irq",           "/proc/sys",
                                             "/proc/sysrq-trigger", NULL};

static json_t *string_array(const char *const *v)
{
    json_t *a = json_array();

    for (; a != NULL && *v != NULL; v++) {
        if (json_array_append_new(a, json_string(*v)) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *oci_mount(const char *dest, const char *type, const char *source,
                         json_t *options)
{
    return json_pack("{s:s, s:s, s:s, s:o}", "destination", dest, "type", type,
                     "source", source, "options", options);
}

static json_t *bind_mount(const char *dest, const char *source, int ro)
{
    return oci_mount(dest, "bind", source,
                     json_pack("[s, s, s, s]", "rbind", ro ? "ro" : "rw",
                               "nosuid", "nodev"));
}

/* sysfs can be mounted only from the user namespace owning the network
 * namespace; an egress sandbox's belongs to the host (egress.c), so it
 * gets an empty, read-only /sys rather than the host's. */
static json_t *sys_mount(const oci_params *p)
{
    if (p->netns != NULL)
        return oci_mount("/sys", "tmpfs", "tmpfs",
                         json_pack("[s,s,s,s,s]", "nosuid", "noexec", "nodev",
                                   "ro", "size=4k"));
    return oci_mount("/sys", "sysfs", "sysfs",
                     json_pack("[s,s,s,s]", "nosuid", "noexec", "nodev", "ro"));
}

static json_t *mounts(const oci_params *p)
{
    char tmpsize[32];
    json_t *m;

    snprintf(tmpsize, sizeof(tmpsize), "size=%dm", p->tmp_size_mb);
    m = json_pack(
        "[o,o,o,o,o,o,o,o,o,o,o,o]",
        oci_mount("/proc", "proc", "proc",
                  json_pack("[s,s,s]", "nosuid", "noexec", "nodev")),
        oci_mount("/dev", "tmpfs", "tmpfs",
                  json_pack("[s,s,s,s]", "nosuid", "strictatime", "mode=755",
                            "size=65536k")),
        oci_mount("/dev/pts", "devpts", "devpts",
                  json_pack("[s,s,s,s,s,s]", "nosuid", "noexec", "newinstance",
                            "ptmxmode=0666", "mode=0620", "gid=5")),
        oci_mount("/dev/shm", "tmpfs", "shm",
                  json_pack("[s,s,s,s,s]", "nosuid", "noexec", "nodev",
                            "mode=1777", "size=65536k")),
        oci_mount("/dev/mqueue", "mqueue", "mqueue",
                  json_pack("[s,s,s]", "nosuid", "noexec", "nodev")),
        sys_mount(p),
        oci_mount(
            "/tmp", "tmpfs", "tmpfs",
            json_pack("[s,s,s,s]", "nosuid", "nodev", "mode=1777", tmpsize)),
        oci_mount(
            "/run", "tmpfs", "tmpfs",
            json_pack("[s,s,s,s]", "nosuid", "nodev", "mode=755", "size=16m")),
        bind_mount("/workspace", p->workspace, 0),
        bind_mount("/home/sandbox", p->home, 0),
        bind_mount("/etc/ssh/pico", p->keys, 1),
        bind_mount(OCI_INIT_PATH, p->init_binary, 1));
    /* gvisor: the folder pico-init binds its socket in, under /run */
    if (m != NULL && p->ep != NULL &&
        json_array_append_new(m, bind_mount("/run/pico", p->ep, 0)) < 0) {
        json_decref(m);
        return NULL;
    }
    /* egress: the resolver the policy allows (egress.c) */
    if (m != NULL && p->resolv != NULL &&
        json_array_append_new(m, bind_mount("/etc/resolv.conf", p->resolv, 1)) <
            0) {
        json_decref(m);
        return NULL;
    }
    return m;
}

static json_t *process(const oci_params *p)
{
    json_t *args =
        p->listen ? json_pack("[s,s,s]", OCI_INIT_PATH, "--listen", p->listen)
                  : json_pack("[s]", OCI_INIT_PATH);

    return json_pack(
        "{s:b, s:{s:i, s:i}, s:o, s:[s,s], s:s, s:{s:o, s:o, s:o}, "
        "s:[{s:s, s:i, s:i}], s:b}",
        "terminal", 0, "user", "uid", 0, "gid", 0, "args", args, "env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
        "LANG=C.UTF-8", "cwd", "/", "capabilities", "bounding",
        string_array(caps), "effective", string_array(caps), "permitted",
        string_array(caps), "rlimits", "type", "RLIMIT_NOFILE", "hard", 4096,
        "soft", 4096, "noNewPrivileges", 1);
}

static json_t *resources(const oci_params *p)
{
    json_int_t mem = (json_int_t)p->memory_mb * 1024 * 1024;
    /* the kernel's smallest CFS quota is 1 ms per period (10 millicores) */
    json_int_t quota = (json_int_t)p->cpu_millicores * 100;

    if (quota < 1000)
        quota = 1000;

    return json_pack("{s:[{s:b, s:s}], s:{s:I, s:I}, s:{s:I, s:I}, s:{s:I}}",
                     "devices", "allow", 0, "access", "rwm", "memory", "limit",
                     mem, "swap", mem, "cpu", "quota", quota, "period",
                     (json_int_t)100000, "pids", "limit", (json_int_t)p->pids);
}

/* ---------------------------------------------------------------------
 * Seccomp: default allow, deny what a sandbox user never needs
 * ------------------------------------------------------------------- */

/*
 * Refused with EPERM. The sandbox's root is an unprivileged host uid in a
 * user namespace with few capabilities: those already stop most of
 * these (and a user namespace opens some unprivileged paths), the filter
 * keeps the kernel code behind them out of reach even if a capability
 * check has a bug. Grouped as in docs/runtime-local.md, which says why.
 * Names libseccomp does not know are skipped by runc.
 */
static const char *const denied_syscalls[] = {
    /* kernel keyrings: per-user, not namespaced, a steady source of CVEs */
    "add_key", "keyctl", "request_key",
    /* kernel programs, profiling, page-fault handling in user space */
    "bpf", "perf_event_open", "userfaultfd",
    /* io_uring: its own path into most of the kernel, many CVEs */
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    /* modules, kexec, reboot, swap, accounting, quotas */
    "init_module", "finit_module", "delete_module", "create_module",
    "query_module", "get_kernel_syms", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    /* mounts and namespaces (chroot stays: sshd's privilege separation) */
    "mount", "umount", "umount2", "pivot_root", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "open_tree", "mount_setattr", "setns",
    "unshare",
    /* file handles bypass path permissions ("shocker"); fanotify */
    "name_to_handle_at", "open_by_handle_at", "fanotify_init",
    /* raw I/O ports, the kernel log, the clock, terminals, obsolete calls */
    "iopl", "ioperm", "syslog", "settimeofday", "clock_settime",
    "clock_adjtime", "stime", "vhangup", "lookup_dcookie", "nfsservctl",
    "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old", NULL};

/* clone() flags that make a namespace; clone() with any of them is
 * refused, plain fork/vfork/threads are not. */
static const unsigned long clone_ns_flags[] = {
    0x00020000, /* CLONE_NEWNS */
    0x02000000, /* CLONE_NEWCGROUP */
    0x04000000, /* CLONE_NEWUTS */
    0x08000000, /* CLONE_NEWIPC */
    0x10000000, /* CLONE_NEWUSER */
    0x20000000, /* CLONE_NEWPID */
    0x40000000, /* CLONE_NEWNET */
};

/* personality() values allowed, as bits: PER_LINUX32 (0x8), UNAME26
 * (0x20000) and ADDR_NO_RANDOMIZE (0x40000, what gdb and setarch -R
 * use). Plus the query 0xffffffff, which changes nothing. */
#define PERSONALITY_OK 0x00060008UL
#define PERSONALITY_QUERY_BIT 0x80000000UL

static json_t *masked_eq(int index, unsigned long mask, unsigned long value)
{
    return json_pack("{s:i, s:I, s:I, s:s}", "index", index, "value",
                     (json_int_t)mask, "valueTwo", (json_int_t)value, "op",
                     "SCMP_CMP_MASKED_EQ");
}

/* One rule: refuse `name` with errno when arg 0 & mask == value. */
static int deny_masked(json_t *rules, const char *name, int errno_ret,
                       unsigned long mask, unsigned long value)
{
    return json_array_append_new(
        rules, json_pack("{s:[s], s:s, s:i, s:[o]}", "names", name, "action",
                         "SCMP_ACT_ERRNO", "errnoRet", errno_ret, "args",
                         masked_eq(0, mask, value)));
}

/*
 * libseccomp compares an argument once per rule, and rules for one
 * syscall are OR'ed, so "anything but these values" is written bit by
 * bit. With bit 31 clear (every real personality): refuse any bit outside
 * PERSONALITY_OK. With bit 31 set: refuse unless every bit is set (the
 * query), i.e. refuse when any of bits 0-30 is clear.
 */
static int personality_rules(json_t *rules)
{
    int rc = 0;

    for (int b = 0; b < 31 && rc == 0; b++) {
        unsigned long bit = 1UL << b;
        if (!(bit & PERSONALITY_OK))
            rc = deny_masked(rules, "personality", EPERM,
                             bit | PERSONALITY_QUERY_BIT, bit);
        if (rc == 0)
            rc =
                deny_masked(rules, "personality", EPERM,
                            bit | PERSONALITY_QUERY_BIT, PERSONALITY_QUERY_BIT);
    }
    return rc;
}

static json_t *seccomp(void)
{
    json_t *rules = json_array();
    int rc = rules ? 0 : -1;

    if (rc == 0)
        rc = json_array_append_new(
            rules,
            json_pack("{s:o, s:s, s:i}", "names", string_array(denied_syscalls),
                      "action", "SCMP_ACT_ERRNO", "errnoRet", EPERM));
    /* clone3 passes its flags in memory a filter cannot read: ENOSYS makes
     * glibc (threads, posix_spawn) fall back to clone(), which can be
     * checked */
    if (rc == 0)
        rc = json_array_append_new(
            rules, json_pack("{s:[s], s:s, s:i}", "names", "clone3", "action",
                             "SCMP_ACT_ERRNO", "errnoRet", ENOSYS));
    for (size_t i = 0;
         rc == 0 && i < sizeof(clone_ns_flags) / sizeof(clone_ns_flags[0]); i++)
        rc = deny_masked(rules, "clone", EPERM, clone_ns_flags[i],
                         clone_ns_flags[i]);
    if (rc == 0)
        rc = personality_rules(rules);
    if (rc < 0) {
        json_decref(rules);
        return NULL;
    }
    /* x86_64 binaries, and 32-bit (int 0x80) and x32 entries into the same
     * kernel, which would otherwise bypass a filter made for x86_64 */
    return json_pack("{s:s, s:[s,s,s], s:o}", "defaultAction", "SCMP_ACT_ALLOW",
                     "architectures", "SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                     "SCMP_ARCH_X32", "syscalls", rules);
}

static json_t *id_mapping(const oci_params *p)
{
    return json_pack("[{s:i, s:I, s:I}]", "containerID", 0, "hostID",
                     (json_int_t)p->id_base, "size", (json_int_t)p->id_size);
}

static json_t *linux_section(const oci_params *p)
{
    json_t *l = json_pack(
        "{s:s, s:o, s:[{s:s},{s:s},{s:s},{s:s},{s:s},{s:s}], s:o, s:o, s:o}",
        "cgroupsPath", p->cgroups_path, "resources", resources(p), "namespaces",
        "type", "pid", "type", "ipc", "type", "uts", "type", "mount", "type",
        "network", "type", "cgroup", "maskedPaths", string_array(masked_paths),
        "readonlyPaths", string_array(readonly_paths), "seccomp", seccomp());

    /* egress: a namespace the backend made (egress.c), owned by the host's
     * user namespace, so the sandbox's root cannot change its routes or
     * filter; runc joins it before it makes the user namespace */
    if (l != NULL && p->netns != NULL &&
        json_object_set_new(json_array_get(json_object_get(l, "namespaces"), 4),
                            "path", json_string(p->netns)) < 0) {
        json_decref(l);
        return NULL;
    }
    /* the sandbox's root is an unprivileged host user of its own range
     * (idmap.c): an escape through the kernel lands as nobody the host
     * knows, and no capability of it counts outside */
    if (l != NULL && p->id_size > 0 &&
        (json_array_append_new(json_object_get(l, "namespaces"),
                               json_pack("{s:s}", "type", "user")) < 0 ||
         json_object_set_new(l, "uidMappings", id_mapping(p)) < 0 ||
         json_object_set_new(l, "gidMappings", id_mapping(p)) < 0)) {
        json_decref(l);
        return NULL;
    }
    return l;
}

char *oci_config_json(const oci_params *p)
{
    char *text;
    json_t *root =
        json_pack("{s:s, s:{s:s, s:b}, s:o, s:s, s:o, s:o}", "ociVersion",
                  "1.0.2", "root", "path", p->rootfs, "readonly", 1, "process",
                  process(p), "hostname", p->hostname, "mounts", mounts(p),
                  "linux", linux_section(p));

    if (root == NULL)
        return NULL;
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}
