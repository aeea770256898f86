/*
 * oci.h - the OCI runtime config (config.json) of a local sandbox.
 *
 * runtime_local.c fills an oci_params from the session and configuration;
 * oci_config_json() turns it into the bundle's config.json for runc. All
 * isolation decisions of the local runtime live in oci.c, in one place.
 */
#ifndef PICO_OCI_H
#define PICO_OCI_H

typedef struct {
    const char *rootfs;      /* shared read-only root filesystem (abs) */
    const char *hostname;    /* the sandbox name */
    const char *init_binary; /* host path of pico-init, mounted read-only */
    const char *workspace;   /* host folder mounted at /workspace */
    const char *home;        /* host folder mounted at /home/sandbox */
    const char *keys;        /* host folder mounted at /etc/ssh/pico (ro) */
    const char *cgroups_path;
    int memory_mb;      /* memory limit, also memory+swap */
    int cpu_millicores; /* CFS quota per 100 ms period */
    int pids;           /* pids cgroup limit */
    int tmp_size_mb;    /* /tmp tmpfs size */
    unsigned id_base;   /* host uid/gid of the sandbox's root */
    unsigned id_size;   /* ids mapped from there (0 = no user namespace) */
    const char *listen; /* gvisor: pico-init --listen <path>, else NULL */
    const char *ep;     /* gvisor: host folder mounted at dirname(listen) */
    const char *netns;  /* egress: the network namespace to join, or NULL */
    const char *resolv; /* egress: mounted at /etc/resolv.conf, or NULL */
} oci_params;

/* The path inside the sandbox where pico-init is mounted and run. */
#define OCI_INIT_PATH "/.pico/init"

/* config.json text (malloc'd, the caller frees), or NULL when out of
 * memory. */
char *oci_config_json(const oci_params *p);

#endif
