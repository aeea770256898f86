/*
 * hostkey.h - SSH host keys for sandboxes.
 *
 * Every sandbox gets its own ed25519 host key, made by the backend when
 * the session is created (libssh, no ssh-keygen process). The private half
 * goes into the sandbox (a file for the local driver, a Secret for the
 * Kubernetes one); the public half and its fingerprint are stored with
 * the session so clients can pin the key they connect to.
 */
#ifndef PICO_HOSTKEY_H
#define PICO_HOSTKEY_H

#include <stddef.h>
#include "core/session.h"

#define PICO_HOSTKEY_PRIV_MAX 2048

typedef struct {
    /* "-----BEGIN OPENSSH PRIVATE KEY-----\n...", as sshd reads it */
    char private_key[PICO_HOSTKEY_PRIV_MAX];
    /* "ssh-ed25519 AAAA..." (no comment, no newline) */
    char public_key[PICO_HOSTKEY_MAX + 1];
    /* "SHA256:<base64 without padding>", as OpenSSH prints it */
    char fingerprint[PICO_FPR_MAX + 1];
} hostkey;

/* Generates a fresh ed25519 key into hk. Thread-safe. 0, or -1 with a
 * reason in err. Wipe hk with hostkey_wipe() when done with it. */
int hostkey_generate(hostkey *hk, char *err, size_t errlen);

/* Clears the private key from memory. */
void hostkey_wipe(hostkey *hk);

#endif
