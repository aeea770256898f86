/*
 * oci.c - builds the OCI runtime config (config.json) of a local sandbox.
 *
 * What a sandbox gets, and why:
 *   - the shared root filesystem, read-only; writable per-session folders
 *     bind-mounted at /workspace and /home/sandbox; /tmp and /run are
 *     size-limited tmpfs (charged to the sandbox's memory cgroup)
 *   - new pid, ipc, uts, mount, network and cgroup namespaces; the network
 *     namespace has only lo, so nothing on the host (Redis, the backend,
 *     anything on the host's loopback) is reachable from inside
 *   - root inside keeps only the capabilities sshd needs to switch to the
 *     user (setuid/setgid, chroot for privilege separation, chown of the
 *     pty, kill of the session); no new privileges after that
 *   - memory (+swap), pids and CPU limits from the session
 *   - /proc and /sys paths masked and read-only as in runc's default spec
 * No user namespace: sandbox root is host root without capabilities, and
 * nobody logs in as root (sshd allows only the `sandbox` user).
 */
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>
#include "oci.h"

/* Exactly what sshd -i needs, found by dropping one at a time: chroot and
 * setuid/setgid for privilege separation and the switch to the user,
 * chown of the session's pty, and audit writes (sshd treats a refused
 * login audit record on a tty as fatal). Not DAC_OVERRIDE, FOWNER or
 * KILL: after the switch, sshd signals processes of its own uid. */
static const char *const caps[] = {"CAP_CHOWN",       "CAP_SETGID",
                                   "CAP_SETUID",      "CAP_SYS_CHROOT",
                                   "CAP_AUDIT_WRITE", NULL};

static const char *const masked_paths[] = {"/proc/acpi",
                                           "/proc/asound",
                                           "/proc/kcore",
                                           "/proc/keys",
                                           "/proc/latency_stats",
                                           "/proc/timer_list",
                                           "/proc/timer_stats",
                                           "/proc/sched_debug",
                                           "/proc/scsi",
                                           "/sys/firmware",
                                           NULL};

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

static json_t *mounts(const oci_params *p)
{
    char tmpsize[32];

    snprintf(tmpsize, sizeof(tmpsize), "size=%dm", p->tmp_size_mb);
    return json_pack(
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
        oci_mount("/sys", "sysfs", "sysfs",
                  json_pack("[s,s,s,s]", "nosuid", "noexec", "nodev", "ro")),
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
}

static json_t *process(void)
{
    return json_pack(
        "{s:b, s:{s:i, s:i}, s:[s], s:[s,s], s:s, s:{s:o, s:o, s:o}, "
        "s:[{s:s, s:i, s:i}], s:b}",
        "terminal", 0, "user", "uid", 0, "gid", 0, "args", OCI_INIT_PATH, "env",
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

static json_t *linux_section(const oci_params *p)
{
    return json_pack(
        "{s:s, s:o, s:[{s:s},{s:s},{s:s},{s:s},{s:s},{s:s}], s:o, s:o}",
        "cgroupsPath", p->cgroups_path, "resources", resources(p), "namespaces",
        "type", "pid", "type", "ipc", "type", "uts", "type", "mount", "type",
        "network", "type", "cgroup", "maskedPaths", string_array(masked_paths),
        "readonlyPaths", string_array(readonly_paths));
}

char *oci_config_json(const oci_params *p)
{
    char *text;
    json_t *root =
        json_pack("{s:s, s:{s:s, s:b}, s:o, s:s, s:o, s:o}", "ociVersion",
                  "1.0.2", "root", "path", p->rootfs, "readonly", 1, "process",
                  process(), "hostname", p->hostname, "mounts", mounts(p),
                  "linux", linux_section(p));

    if (root == NULL)
        return NULL;
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}
