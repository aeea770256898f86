/*
 * session.h - the session record, as the backend and its runtime drivers
 * see it.
 *
 * A session is one sandbox plus the bookkeeping around it. The canonical
 * copy lives in Redis (see docs/redis.md); this struct is the in-memory
 * form used while handling one request. Fixed-size buffers keep records
 * free of ownership questions: every field is bounded by validation.
 */
#ifndef PICO_SESSION_H
#define PICO_SESSION_H

#include <stdint.h>
#include <stddef.h>
#include "core/netpolicy.h"

#define PICO_ID_LEN 36 /* canonical UUID text, lowercase */
#define PICO_IMAGE_MAX 128
#define PICO_NAME_MAX 64
#define PICO_ENDPOINT_MAX 512
#define PICO_PRINCIPAL_MAX 64
#define PICO_REASON_MAX 256
#define PICO_PUBKEY_MAX 8192
#define PICO_HOSTKEY_MAX 512
#define PICO_FPR_MAX 128
#define PICO_UID_MAX 64  /* a Kubernetes object uid (a UUID) */
#define PICO_TIME_MAX 32 /* "2025-10-24T03:45:00Z" */

typedef enum {
    SESSION_PENDING = 0,
    SESSION_RUNNING,
    SESSION_TERMINATING,
    SESSION_TERMINATED,
    SESSION_FAILED,
    SESSION_PAUSED /* frozen by POST .../pause or idle stop (core/pause.c) */
} session_status;

/* Below these a sandbox cannot run sshd plus a shell and Python, so a
 * request for less is refused up front rather than failing at login. */
#define PICO_MEMORY_MB_MIN 64
#define PICO_CPU_MILLICORES_MIN 10
#define PICO_PIDS_MIN 16
/* The smallest disk quota: an ext4 image below this holds little beyond
 * its own metadata. 0 means no quota. */
#define PICO_DISK_MB_MIN 16

/* isolation tiers: "runc" (a user namespace per sandbox) and "gvisor" */
#define PICO_ISOLATION_MAX 15

typedef struct {
    int memory_mb;      /* cgroup memory limit (also memory+swap) */
    int cpu_millicores; /* 1000 = one CPU */
    int pids;           /* pids cgroup limit */
    int disk_mb;        /* /workspace + /home/sandbox quota, 0 = none */
} session_limits;

typedef struct {
    char id[PICO_ID_LEN + 1];
    session_status status;
    char image[PICO_IMAGE_MAX + 1];
    long long ttl;        /* seconds */
    long long created_at; /* unix seconds */
    long long expires_at; /* unix seconds = created_at + ttl */
    char sandbox_name[PICO_NAME_MAX + 1];
    char owner[PICO_PRINCIPAL_MAX + 1];   /* "" when auth is off */
    char endpoint[PICO_ENDPOINT_MAX + 1]; /* "unix:/path" or "ip:port" */
    char reason[PICO_REASON_MAX + 1];     /* why failed, "" otherwise */
    session_limits limits;
    char ssh_public_key[PICO_PUBKEY_MAX + 1]; /* optional, "" if none */
    char isolation[PICO_ISOLATION_MAX + 1];   /* "runc" | "gvisor" */
    char network[PICO_NETWORK_MAX + 1];       /* "none" | "egress" */
    /* the request's narrower egress lists, "a.b.c.d/n,...", or "" */
    char egress_allow[PICO_REQ_CIDRS_TEXT + 1];
    char egress_deny[PICO_REQ_CIDRS_TEXT + 1];
    char host_key[PICO_HOSTKEY_MAX + 1]; /* "ssh-ed25519 AAAA..." */
    char host_key_fpr[PICO_FPR_MAX + 1]; /* "SHA256:..." */
    char sandbox_uid[PICO_UID_MAX + 1];  /* the pod's uid, "" if none */
    long long
        idle_timeout;    /* seconds without a tunnel before idle stop, 0 off */
    long long active_at; /* ms: running since (created or resumed), 0 unset */
    char *metadata_json; /* compact JSON object text or NULL; heap-owned */
} session;

const char *session_status_name(session_status s);
int session_status_parse(const char *name, session_status *out);

/* 1 when image matches name[:tag] as the API allows it (the local driver
 * checks its image names with it too). */
int session_image_valid(const char *image);

#endif
