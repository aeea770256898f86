/*
 * config.h - pico-backend configuration.
 *
 * The file format is Redis-like: one "key value" pair per line, '#' starts
 * a comment, values may be double-quoted. Unknown keys are an error so a
 * typo never silently falls back to a default. conf/pico.conf.in lists
 * every key with its default; docs/configuration.md explains them.
 */
#ifndef PICO_CONFIG_H
#define PICO_CONFIG_H

#include <stddef.h>

#define PICO_PATH_MAX 1024

typedef struct pico_config {
    /* service */
    char listen[PICO_PATH_MAX];    /* "unix:/path" or "127.0.0.1:8081" */
    char listen_group[64];         /* group allowed on a unix listener */
    char redis[PICO_PATH_MAX];     /* "unix:/path" or "host:port" */
    char state_dir[PICO_PATH_MAX]; /* all per-session state lives here */
    char runtime[32];              /* "local" | "kubernetes" */
    int auth;                      /* 0 off, 1 on */
    int threads;                   /* max concurrent HTTP connections */
    char node_name[64];            /* identifies this backend in leases */

    /* sessions */
    long long ttl_default;   /* seconds, default 3600 */
    long long ttl_max;       /* seconds, default 86400 */
    long long lifetime_max;  /* created_at to the last expires_at */
    char default_image[128]; /* "sandbox:latest" */
    int max_sessions;        /* 429 beyond this many live ones */
    int memory_mb_default, memory_mb_max;
    int cpu_millicores_default, cpu_millicores_max;
    int pids_default, pids_max;
    int disk_mb_default, disk_mb_max; /* 0 default = no disk quota */
    int reaper_interval_ms;           /* how often the reaper looks */
    long long idle_timeout_default;   /* seconds, 0 = no idle stop */
    long long idle_timeout_max;       /* largest idle_timeout asked for */
    char idle_action[16];             /* "pause" | "delete" (core/pause.c) */

    /* local runtime */
    char images_dir[PICO_PATH_MAX];  /* <images_dir>/<name>_<tag>/rootfs */
    char runc[PICO_PATH_MAX];        /* runc binary */
    char init_binary[PICO_PATH_MAX]; /* pico-init, bind-mounted as PID 1 */
    char socket_group[64];           /* group of session ssh.sock (nginx) */
    int tmp_size_mb;                 /* /tmp tmpfs size in a sandbox */
    int ready_timeout_ms;            /* sshd banner must arrive by then */
    int warm_pool;                   /* started sandboxes kept ready, 0 off */
    char mkfs_ext4[PICO_PATH_MAX];   /* formats disk quota images */
    char runsc[PICO_PATH_MAX];       /* gVisor's runtime, tier gvisor */

    /* isolation tiers (session.h): the default and the allowed set, a
     * list of tier names separated by blanks or commas */
    char isolation[16];
    char isolation_allowed[64];

    /* network (netpolicy.h): the allowed set ("none" always is), where
     * the local runtime's NAT runs, and the egress policy */
    char network_allowed[64];
    char egress_netns[PICO_PATH_MAX]; /* "" = the backend's own */
    char egress_dns[64];              /* the resolver sandboxes use */
    char egress_allow_cidrs[2048];    /* "" = everything not denied */
    char egress_deny_cidrs[2048];
    char egress_allow_domains[4096]; /* names resolvable (and reachable) */
    char egress_deny_domains[4096];  /* names not resolvable */
    char dnsmasq[PICO_PATH_MAX];
    char slirp4netns[PICO_PATH_MAX];
    char nft[PICO_PATH_MAX];

    /* kubernetes runtime */
    char k8s_api[PICO_PATH_MAX]; /* "" = in-cluster or kubeconfig */
    char k8s_kubeconfig[PICO_PATH_MAX];
    char k8s_namespace[128];
    char k8s_image_prefix[256]; /* "sandbox:latest" -> prefix+that */
    int k8s_ready_timeout_s;    /* pod not Ready by then -> failed */
    char k8s_ca_file[PICO_PATH_MAX];
    char k8s_token_file[PICO_PATH_MAX];
    char k8s_runtime_class[254]; /* the pod's runtimeClassName, or "" */
} pico_config;

void config_defaults(pico_config *cfg);
/* Returns 0, or -1 with "file:line: what is wrong" in err. */
int config_load(pico_config *cfg, const char *path, char *err, size_t errlen);
/* The same for text already in memory; `name` is used in messages. */
/* 1 when tier is in cfg's allowed set. */
int config_isolation_allowed(const struct pico_config *cfg, const char *tier);

int config_parse(pico_config *cfg, const char *name, const char *text,
                 size_t len, char *err, size_t errlen);

#endif
