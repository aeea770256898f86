/*
 * hostkey.c - per-sandbox SSH host keys (see hostkey.h), made with libssh.
 *
 * ed25519 because it is generated in microseconds and every OpenSSH
 * client accepts it. libssh exports ed25519 private keys in the OpenSSH
 * format sshd reads.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <libssh/libssh.h>
#include "runtime/hostkey.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

static void hostkey_init(void)
{
    init_rc = ssh_init();
}

/* "ssh-ed25519 AAAA..." from the key's public half. */
static int export_public(ssh_key key, hostkey *hk)
{
    char *b64 = NULL;
    const char *type = ssh_key_type_to_char(ssh_key_type(key));
    int n;

    if (type == NULL || ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK)
        return -1;
    n = snprintf(hk->public_key, sizeof(hk->public_key), "%s %s", type, b64);
    ssh_string_free_char(b64);
    return n > 0 && (size_t)n < sizeof(hk->public_key) ? 0 : -1;
}

/* "SHA256:..." exactly as `ssh-keygen -lf` and ssh clients print it. */
static int export_fingerprint(ssh_key key, hostkey *hk)
{
    unsigned char *hash = NULL;
    size_t hlen = 0, len;
    char *fpr;
    int rc = -1;

    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) !=
        SSH_OK)
        return -1;
    fpr = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    ssh_clean_pubkey_hash(&hash);
    if (fpr == NULL)
        return -1;
    len = strlen(fpr);
    if (strncmp(fpr, "SHA256:", 7) == 0 && len < sizeof(hk->fingerprint)) {
        memcpy(hk->fingerprint, fpr, len + 1);
        rc = 0;
    }
    ssh_string_free_char(fpr);
    return rc;
}

static int export_private(ssh_key key, hostkey *hk)
{
    char *text = NULL;
    size_t len;
    int rc = -1;

    if (ssh_pki_export_privkey_base64(key, NULL, NULL, NULL, &text) != SSH_OK)
        return -1;
    len = strlen(text);
    if (len < sizeof(hk->private_key)) {
        memcpy(hk->private_key, text, len + 1);
        rc = 0;
    }
    explicit_bzero(text, len);
    ssh_string_free_char(text);
    return rc;
}

int hostkey_generate(hostkey *hk, char *err, size_t errlen)
{
    ssh_key key = NULL;
    const char *what;

    memset(hk, 0, sizeof(*hk));
    if (pthread_once(&init_once, hostkey_init) != 0 || init_rc != 0) {
        snprintf(err, errlen, "host key: libssh did not initialise");
        return -1;
    }
    if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK) {
        snprintf(err, errlen, "host key: ed25519 key generation failed");
        return -1;
    }
    if (export_private(key, hk) < 0)
        what = "private key";
    else if (export_public(key, hk) < 0)
        what = "public key";
    else if (export_fingerprint(key, hk) < 0)
        what = "fingerprint";
    else
        what = NULL;
    ssh_key_free(key);
    if (what != NULL) {
        hostkey_wipe(hk);
        snprintf(err, errlen, "host key: cannot export the %s", what);
        return -1;
    }
    return 0;
}

void hostkey_wipe(hostkey *hk)
{
    explicit_bzero(hk, sizeof(*hk));
}
