/*
 * local.h - what the files of the local runtime driver share: its state
 * (struct runtime, the warm pool), a session's paths, and the functions
 * one file of runtime/local/ calls in another. Internal to the driver:
 * nothing outside runtime/local/ includes it (main.c picks the driver
 * through runtime_local.h).
 *
 *   local.c     runtime_ops: open, create, destroy, alive, list, health
 *   pool.c      the warm pool of started, unclaimed sandboxes
 *   state.c     a sandbox's folder: paths, keys, config.json, removal
 *   runc.c      running runc and telling what it left running
 *   endpoint.c  the session's unix listener and the readiness probe
 *   idmap.c     user namespace ranges per sandbox, the idmapped rootfs
 *   egress.c    "network": "egress": the netns, its filter, slirp4netns
 *   oci.c, disk.c, subprocess.c, hostkey.c (runtime/)  their own headers
 */
#ifndef PICO_RUNTIME_LOCAL_INTERNAL_H
#define PICO_RUNTIME_LOCAL_INTERNAL_H

#include <sys/types.h>
#include <pthread.h>
#include "core/config.h"
#include "core/session.h"
#include "core/util.h"
#include "runtime/hostkey.h"
#include "runtime/local/runtime_local.h"
#include "runtime/local/subprocess.h"

#define SANDBOX_UID 1000
#define SANDBOX_GID 1000
#define CID_PREFIX "pico-"
#define CGROUP_PARENT "/pico"
#define RUNC_TIMEOUT_MS 30000 /* runc itself never takes this long */
#define POOL_PREFIX "pool-"
#define CONTAINER_FILE "container" /* names a pooled session's container */
#define DISK_RELEASE_MS 2000 /* a dead sandbox's loop device frees by then */
#define KILL_WAIT_MS 10000   /* for a killed init to be gone */
/* destroy: runc state, kill, runc delete, loop device release */
#define DESTROY_MAX_MS (2LL * RUNC_TIMEOUT_MS + KILL_WAIT_MS + DISK_RELEASE_MS)
/* user namespace ranges (idmap.c): slot n maps ids 0..IDMAP_SIZE-1 of its
 * sandbox to host IDMAP_BASE + n * IDMAP_SIZE onwards; the last slot ends
 * below 2^31, clear of the host's own users and of nobody (65534) */
#define IDMAP_BASE 0x100000u
#define IDMAP_SIZE 65536u
#define IDMAP_SLOTS 16384
#define IDMAP_FILE "idmap" /* a sandbox folder's slot, decimal */

typedef struct idmap_slots idmap_slots;

/* tier gvisor: the folder's file "isolation" says so (absent = runc);
 * pico-init listens itself at GVISOR_SOCK, the session's ep/ folder */
#define TIER_FILE "isolation"
#define GVISOR_SOCK "/run/pico/ssh.sock"

/* A started, ready pool sandbox nobody has claimed yet. */
typedef struct {
    char name[96]; /* folder under pool/, container CID_PREFIX + name */
    char host_key[PICO_HOSTKEY_MAX + 1];
    char host_key_fpr[PICO_FPR_MAX + 1];
    pid_t init; /* its PID 1 on the host, for the hostname at claim */
} pool_entry;

typedef struct {
    int size;                /* warm_pool; 0 = no pool, nothing below is used */
    char dir[PICO_PATH_MAX]; /* <state_dir>/pool */
    char prefix[96];         /* "pool-<node>.": this node's entries */
    char image[128];
    session_limits limits;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pool_entry *ready; /* size slots, nready used */
    int nready, stop, started;
    unsigned long long seq;
    pthread_t thread;
} warm_pool;

/* "network": "egress" (egress.c), from the configuration */
typedef struct {
    int enabled;                /* network_allowed has egress */
    char netns[PICO_PATH_MAX];  /* where the NAT's outside end runs; "" own */
    char dns[16];               /* the resolver in each sandbox's resolv.conf */
    char slirp[PICO_PATH_MAX];  /* slirp4netns */
    char nft[PICO_PATH_MAX];    /* nft */
    pico_cidr_list allow, deny; /* allow empty = everything */
    /* domain policy: a dnsmasq per sandbox answers only what these allow */
    int allow_names, deny_names; /* how many in each list */
    char allow_domains[4096], deny_domains[4096];
    char dnsmasq[PICO_PATH_MAX];
} egress_conf;

struct runtime {
    char runc[PICO_PATH_MAX];
    char runc_root[PICO_PATH_MAX];    /* <state_dir>/runc */
    char runsc[PICO_PATH_MAX];        /* gVisor, when the tier is allowed */
    char runsc_root[PICO_PATH_MAX];   /* <state_dir>/runsc */
    int gvisor;                       /* 1 when tier gvisor is allowed */
    char sessions_dir[PICO_PATH_MAX]; /* <state_dir>/sessions */
    char images_dir[PICO_PATH_MAX];
    char init_binary[PICO_PATH_MAX];
    char mkfs_ext4[PICO_PATH_MAX];
    gid_t socket_gid;
    int tmp_size_mb;
    int ready_timeout_ms;
    idmap_slots *slots; /* which user namespace ranges are taken */
    warm_pool pool;
    egress_conf egress;
};

typedef struct {
    char dir[PICO_PATH_MAX];
    char workspace[PICO_PATH_MAX];
    char home[PICO_PATH_MAX];
    char keys[PICO_PATH_MAX];
    char sock[PICO_PATH_MAX];
    char config[PICO_PATH_MAX];
    char disk[PICO_PATH_MAX];  /* mount point of the quota image */
    char image[PICO_PATH_MAX]; /* the quota image, disk.img */
    char loop[PICO_PATH_MAX];  /* disk.loop: its loop device's number */
    char ep[PICO_PATH_MAX]; /* gvisor: folder of the socket pico-init makes */
    char netns[PICO_PATH_MAX];   /* egress: the sandbox's netns, bind-mounted */
    char resolv[PICO_PATH_MAX];  /* egress: its /etc/resolv.conf */
    char slirp[PICO_PATH_MAX];   /* egress: slirp4netns's pid, decimal */
    char dnsmasq[PICO_PATH_MAX]; /* egress with domains: dnsmasq's pid */
    char cid[128];
    char cgroup[160];
    int gvisor; /* run by runsc instead of runc */
} session_paths;

/* -- state.c: a sandbox's folder ------------------------------------------ */

/* snprintf that treats truncation as an error: every path here must fit
 * exactly or not be used at all. */
int fmt_exact(char *buf, size_t len, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
/* The image's folder <images_dir>/<name>_<tag>; -1 for a bad name. */
int image_dir(const runtime *rt, const char *image, char *buf, size_t len);
/* Creates path (O_EXCL, no symlinks) with exactly data. */
int write_file(const char *path, const char *data, size_t len, mode_t mode);
int remove_tree(const char *path);
int paths_in(const char *parent, const char *folder, const char *name,
             session_paths *p);
int pool_name_valid(const char *name);
int paths_for(const runtime *rt, const char *id, session_paths *p);
int tier_of(session_paths *p);
int prepare_bundle(const runtime *rt, const session *s, const session_paths *p,
                   const char *rootfs, unsigned id_base, hostkey *hk, char *err,
                   size_t errlen);
/* Writes keys/authorized_keys, owned by the sandbox's root (id_base). */
int write_authorized_keys(const char *keys, const char *pubkey,
                          unsigned id_base);
int disk_setup(const char *rootfs, const session_paths *p, unsigned id_base,
               char *err, size_t errlen);
void disk_release(const session_paths *p);

/* -- idmap.c: user namespace ranges and the idmapped rootfs -------------- */
unsigned idmap_base(int slot);
idmap_slots *idmap_open(const char *const *dirs);
void idmap_close(idmap_slots *t);
int idmap_take(idmap_slots *t, const char *dir);
void idmap_put(idmap_slots *t, int slot);
int idmap_read_slot(const char *dir);
int idmap_mount_rootfs(const char *rootfs, int slot, char *err, size_t errlen);

/* -- runc.c --------------------------------------------------------------- */
int run_runc(const runtime *rt, int gvisor, const char *const *args,
             int keep_fd, int ports_fd, buf_t *out, char *errbuf,
             size_t errlen);
int runc_delete(const runtime *rt, const session_paths *p, char *err,
                size_t errlen);
int start_container(const runtime *rt, const session_paths *p, int lfd, int pfd,
                    char *err, size_t errlen);
#define RUNC_PAUSED 2 /* runc_state's *running for a frozen container */
int runc_state(const runtime *rt, const session_paths *p, pid_t *pid,
               int *running);
int runc_freeze(const runtime *rt, const session_paths *p, const char *op,
                char *err, size_t errlen);
int pid_in_sandbox(pid_t pid, const session_paths *p);
int runc_init_running(const runtime *rt, const session_paths *p);
void kill_init(pid_t pid, const session_paths *p);

/* -- endpoint.c: the session's socket ------------------------------------- */
int check_sock_len(const char *sock, char *err, size_t errlen);
/* <dir>/ports.sock, the listener of pico-init's port relay (fd 4) */
int ports_listen(const runtime *rt, const session_paths *p, char *err,
                 size_t errlen);
int sandbox_listen(const runtime *rt, const char *path, char *err,
                   size_t errlen);
int probe_connect(const char *path, char *err, size_t errlen);
int wait_banner(int fd, int timeout_ms, char *err, size_t errlen);
int gvisor_endpoint(const runtime *rt, const session_paths *p, int timeout_ms,
                    char *err, size_t errlen);

/* -- local.c: what the pool borrows from the cold path -------------------- */
int ensure_dir(const char *path, mode_t mode);
int start_sandbox(const runtime *rt, const session *s, const session_paths *p,
                  const char *pool_name, hostkey *hk, char *err, size_t errlen);
int destroy_paths(const runtime *rt, const session_paths *p, char *err,
                  size_t errlen);

/* -- egress.c: "network": "egress" -------------------------------------- */
int egress_open(runtime *rt, const struct pico_config *cfg, char *err,
                size_t errlen);
/* Makes p->netns, its filter and resolv.conf, starts slirp4netns; on
 * failure undoes what it made. */
int egress_setup(const runtime *rt, const session *s, const session_paths *p,
                 char *err, size_t errlen);
/* egress_dns.c: starts the sandbox's dnsmasq (the thread is in its
 * namespace) */
int egress_dns_start(const runtime *rt, const session_paths *p, char *err,
                     size_t errlen);
/* Stops slirp4netns and releases the netns mount, when there are any. */
void egress_teardown(const session_paths *p);

/* -- pool.c: the warm pool ------------------------------------------------ */
int pool_open(runtime *rt, const struct pico_config *cfg, char *err,
              size_t errlen);
void pool_close(runtime *rt);
int pool_claim(runtime *rt, session *s, const session_paths *p, char *err,
               size_t errlen);

#endif
