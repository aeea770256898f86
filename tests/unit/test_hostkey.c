/* Unit tests of backend/runtime/hostkey.c: a generated host key is a real
 * ed25519 key whose public line and fingerprint match its private half, in the
 * formats sshd and OpenSSH clients use; every key is new. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <libssh/libssh.h>

#include "runtime/hostkey.h"

static void test_formats(void **state)
{
    hostkey hk;
    char err[256];

    assert_int_equal(hostkey_generate(&hk, err, sizeof(err)), 0);
    assert_true(strncmp(hk.private_key, "-----BEGIN OPENSSH PRIVATE KEY-----\n",
                        36) == 0);
    assert_non_null(
        strstr(hk.private_key, "-----END OPENSSH PRIVATE KEY-----"));
    assert_true(
        strncmp(hk.public_key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", 32) == 0);
    assert_null(strchr(hk.public_key, '\n'));
    /* SHA256: + 32 bytes in unpadded base64 */
    assert_true(strncmp(hk.fingerprint, "SHA256:", 7) == 0);
    assert_int_equal(strlen(hk.fingerprint), 7 + 43);
    assert_null(strchr(hk.fingerprint, '='));
    hostkey_wipe(&hk);
    assert_int_equal(hk.private_key[0], '\0');
}

/* The private key imports, and its public half is the reported one. */
static void test_halves_match(void **state)
{
    hostkey hk;
    ssh_key key = NULL;
    char err[256], *b64 = NULL, line[600];
    unsigned char *hash = NULL;
    size_t hlen = 0;
    char *fpr;

    assert_int_equal(hostkey_generate(&hk, err, sizeof(err)), 0);
    assert_int_equal(
        ssh_pki_import_privkey_base64(hk.private_key, NULL, NULL, NULL, &key),
        SSH_OK);
    assert_int_equal(ssh_key_type(key), SSH_KEYTYPE_ED25519);
    assert_int_equal(ssh_pki_export_pubkey_base64(key, &b64), SSH_OK);
    snprintf(line, sizeof(line), "ssh-ed25519 %s", b64);
    assert_string_equal(line, hk.public_key);
    assert_int_equal(
        ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen),
        0);
    fpr = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    assert_string_equal(fpr, hk.fingerprint);
    ssh_string_free_char(fpr);
    ssh_clean_pubkey_hash(&hash);
    ssh_string_free_char(b64);
    ssh_key_free(key);
}

static void test_keys_are_fresh(void **state)
{
    hostkey a, b;
    char err[256];

    assert_int_equal(hostkey_generate(&a, err, sizeof(err)), 0);
    assert_int_equal(hostkey_generate(&b, err, sizeof(err)), 0);
    assert_string_not_equal(a.public_key, b.public_key);
    assert_string_not_equal(a.fingerprint, b.fingerprint);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_halves_match),
        cmocka_unit_test(test_keys_are_fresh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
