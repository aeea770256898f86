/* Unit tests of backend/core/session.c: create-request validation (every field
 * and the ways it can be wrong) and the session's JSON form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <libssh/libssh.h>

#include "core/session_api.h"
#include "core/util.h"

static pico_config cfg;

static int setup(void **state)
{
    config_defaults(&cfg);
    return 0;
}

static int req(const char *body, session *s, char *err, size_t n)
{
    memset(s, 0, sizeof(*s));
    return session_parse_request(&cfg, body, strlen(body), s, err, n);
}

/* Expects body to be refused with a message starting with prefix. */
static void refused(const char *body, const char *prefix)
{
    session s;
    char err[512] = "";

    if (req(body, &s, err, sizeof(err)) == 0) {
        session_free(&s);
        fail_msg("accepted: %s", body);
    }
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("%s: message \"%s\" does not start with \"%s\"", body, err,
                 prefix);
    assert_null(s.metadata_json);
}

static void test_defaults(void **state)
{
    session s;
    char err[256];

    memset(&s, 0, sizeof(s));
    assert_int_equal(session_parse_request(&cfg, "", 0, &s, err, sizeof(err)),
                     0);
    assert_int_equal(s.ttl, 3600);
    assert_string_equal(s.image, "sandbox:latest");
    assert_int_equal(s.limits.memory_mb, 512);
    assert_null(s.metadata_json);
    assert_int_equal(req("{}", &s, err, sizeof(err)), 0);
}

static void test_valid_request(void **state)
{
    session s;
    char err[256];

    assert_int_equal(req("{\"ttl\":60,\"image\":\"sandbox:latest\","
                         "\"metadata\":{\"team\":\"a b\",\"x.y-z\":\"\"},"
                         "\"resources\":{\"memory_mb\":256,\"pids\":64,"
                         "\"cpu_millicores\":500}}",
                         &s, err, sizeof(err)),
                     0);
    assert_int_equal(s.ttl, 60);
    assert_int_equal(s.limits.memory_mb, 256);
    assert_int_equal(s.limits.cpu_millicores, 500);
    assert_int_equal(s.limits.pids, 64);
    assert_string_equal(s.metadata_json, "{\"team\":\"a b\",\"x.y-z\":\"\"}");
    session_free(&s);
}

static void test_ttl(void **state)
{
    refused("{\"ttl\":0}", "ttl:");
    refused("{\"ttl\":-1}", "ttl:");
    refused("{\"ttl\":1.5}", "ttl:");
    refused("{\"ttl\":\"60\"}", "ttl:");
    refused("{\"ttl\":null}", "ttl:");
    refused("{\"ttl\":86401}", "ttl:");
    refused("{\"ttl\":1e30}", "ttl:");
    refused("{\"ttl\":99999999999999999999999}", "body:");
    refused("{\"ttl\":true}", "ttl:");
}

static void test_idle_timeout(void **state)
{
    session s;
    char err[256];

    assert_int_equal(req("{}", &s, err, sizeof(err)), 0);
    assert_int_equal(s.idle_timeout, 0); /* the default: off */
    assert_int_equal(req("{\"idle_timeout\":86400}", &s, err, sizeof(err)), 0);
    assert_int_equal(s.idle_timeout, 86400);
    refused("{\"idle_timeout\":-1}", "idle_timeout: must be an integer");
    refused("{\"idle_timeout\":86401}", "idle_timeout:");
    refused("{\"idle_timeout\":\"5\"}", "idle_timeout:");
    refused("{\"idle_timeout\":1.5}", "idle_timeout:");
    refused("{\"idle_timeout\":null}", "idle_timeout:");
}

static void test_image(void **state)
{
    refused("{\"image\":\";rm -rf /\"}", "image:");
    refused("{\"image\":\"$(id)\"}", "image:");
    refused("{\"image\":\"`id`\"}", "image:");
    refused("{\"image\":\"Sandbox:latest\"}", "image:");
    refused("{\"image\":\"../x\"}", "image:");
    refused("{\"image\":\"a:\"}", "image:");
    refused("{\"image\":\"a:b:c\"}", "image:");
    refused("{\"image\":\"\"}", "image:");
    refused("{\"image\":\"a\\u0000b\"}", "body:");
    refused("{\"image\":5}", "image:");
    assert_true(session_image_valid("sandbox"));
    assert_true(session_image_valid("sandbox:1.2_x-y"));
    assert_false(session_image_valid("-sandbox"));
    assert_false(session_image_valid("sandbox:.x"));
}

static void test_body_shape(void **state)
{
    refused("{bad", "body:");
    refused("[1]", "body:");
    refused("null", "body:");
    refused("{\"ttl\":1,\"ttl\":2}", "body:");
    refused("{\"foo\":1}", "foo: unknown field");
    refused("{\"ttl\":60} trailing", "body:");
}

static void test_metadata(void **state)
{
    char body[4096], *p;
    int i;

    refused("{\"metadata\":[]}", "metadata:");
    refused("{\"metadata\":{\"a;b\":\"x\"}}", "metadata:");
    refused("{\"metadata\":{\"$(id)\":\"x\"}}", "metadata:");
    refused("{\"metadata\":{\"\":\"x\"}}", "metadata:");
    refused("{\"metadata\":{\"a\":1}}", "metadata.a:");
    refused("{\"metadata\":{\"a\":\"x\\ny\"}}", "metadata.a:");
    refused("{\"metadata\":{\"a\":\"x\\u007f\"}}", "metadata.a:");
    refused("{\"metadata\":{\"a\":\"x\\u0085\"}}", "metadata.a:");
    p = body + sprintf(body, "{\"metadata\":{");
    for (i = 0; i < 33; i++)
        p += sprintf(p, "%s\"k%d\":\"v\"", i ? "," : "", i);
    memcpy(p, "}}", 3);
    refused(body, "metadata:");
    p = body + sprintf(body, "{\"metadata\":{\"a\":\"");
    memset(p, 'x', 1025);
    memcpy(p + 1025, "\"}}", 4);
    refused(body, "metadata.a:");
}

static void test_resources(void **state)
{
    refused("{\"resources\":5}", "resources:");
    refused("{\"resources\":{\"memory_mb\":0}}", "resources.memory_mb:");
    refused("{\"resources\":{\"memory_mb\":63}}", "resources.memory_mb:");
    refused("{\"resources\":{\"pids\":15}}", "resources.pids:");
    refused("{\"resources\":{\"cpu_millicores\":9}}",
            "resources.cpu_millicores:");
    refused("{\"resources\":{\"memory_mb\":4097}}", "resources.memory_mb:");
    refused("{\"resources\":{\"cpu_millicores\":\"1\"}}",
            "resources.cpu_millicores:");
    refused("{\"resources\":{\"pids\":1.5}}", "resources.pids:");
    refused("{\"resources\":{\"disk\":1}}", "resources.disk:");
}

static void test_disk(void **state)
{
    session s;
    char err[256];

    /* off by default: no quota unless asked */
    assert_int_equal(req("{}", &s, err, sizeof(err)), 0);
    assert_int_equal(s.limits.disk_mb, 0);
    assert_int_equal(
        req("{\"resources\":{\"disk_mb\":32}}", &s, err, sizeof(err)), 0);
    assert_int_equal(s.limits.disk_mb, 32);
    assert_int_equal(
        req("{\"resources\":{\"disk_mb\":0}}", &s, err, sizeof(err)), 0);
    assert_int_equal(s.limits.disk_mb, 0);
    refused("{\"resources\":{\"disk_mb\":-1}}", "resources.disk_mb: must be");
    refused("{\"resources\":{\"disk_mb\":15}}", "resources.disk_mb: must be");
    refused("{\"resources\":{\"disk_mb\":10241}}",
            "resources.disk_mb: must be an integer between 16 and 10240");
    refused("{\"resources\":{\"disk_mb\":32.5}}", "resources.disk_mb:");
    refused("{\"resources\":{\"disk_mb\":\"32\"}}", "resources.disk_mb:");
    /* with a default quota a request may change it, not drop it */
    cfg.disk_mb_default = 64;
    assert_int_equal(req("{}", &s, err, sizeof(err)), 0);
    assert_int_equal(s.limits.disk_mb, 64);
    refused("{\"resources\":{\"disk_mb\":0}}", "resources.disk_mb:");
    cfg.disk_mb_default = 0;
}

static void test_isolation(void **state)
{
    session s;
    char err[256];

    /* the default tier, and only it unless more are allowed */
    assert_int_equal(req("{}", &s, err, sizeof(err)), 0);
    assert_string_equal(s.isolation, "runc");
    assert_int_equal(req("{\"isolation\":\"runc\"}", &s, err, sizeof(err)), 0);
    refused("{\"isolation\":\"gvisor\"}",
            "isolation: gvisor is not allowed on this server (allowed: runc)");
    refused("{\"isolation\":\"kvm\"}", "isolation: must be");
    refused("{\"isolation\":7}", "isolation: must be");
    refused("{\"isolation\":\"gvisor\\u0000\"}", "body: invalid JSON");
    copy_str(cfg.isolation_allowed, sizeof(cfg.isolation_allowed),
             "runc,gvisor");
    assert_int_equal(req("{\"isolation\":\"gvisor\"}", &s, err, sizeof(err)),
                     0);
    assert_string_equal(s.isolation, "gvisor");
    /* Kubernetes: no runtime class to map a tier to yet */
    copy_str(cfg.runtime, sizeof(cfg.runtime), "kubernetes");
    refused("{\"isolation\":\"gvisor\"}",
            "isolation: gvisor is not available on the Kubernetes runtime");
    copy_str(cfg.runtime, sizeof(cfg.runtime), "local");
    cfg.isolation_allowed[0] = '\0';
}

static void test_pubkey(void **state)
{
    ssh_key key = NULL;
    char *b64 = NULL, line[2048], body[4096];
    session s;
    char err[256];

    assert_int_equal(ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key), SSH_OK);
    assert_int_equal(ssh_pki_export_pubkey_base64(key, &b64), SSH_OK);
    snprintf(line, sizeof(line), "ssh-ed25519 %s user@host", b64);
    assert_true(session_pubkey_valid(line));
    snprintf(body, sizeof(body), "{\"ssh_public_key\":\"%s\"}", line);
    assert_int_equal(req(body, &s, err, sizeof(err)), 0);
    assert_string_equal(s.ssh_public_key, line);
    /* the wrong type name for the blob */
    snprintf(line, sizeof(line), "ssh-rsa %s", b64);
    assert_false(session_pubkey_valid(line));
    snprintf(line, sizeof(line), "ssh-ed25519 %s\nssh-ed25519 %s", b64, b64);
    assert_false(session_pubkey_valid(line));
    assert_false(session_pubkey_valid("ssh-ed25519 AAAA"));
    assert_false(session_pubkey_valid("ssh-dss AAAA"));
    assert_false(session_pubkey_valid(""));
    refused("{\"ssh_public_key\":\"ssh-ed25519 AAAA\"}", "ssh_public_key:");
    refused("{\"ssh_public_key\":7}", "ssh_public_key:");
    ssh_string_free_char(b64);
    ssh_key_free(key);
}

static void test_json(void **state)
{
    session s;
    session_tunnels t = {1, 3, 100, 200, 1761277500123LL};
    json_t *j;

    memset(&s, 0, sizeof(s));
    strcpy(s.id, "0f8fad5b-d9cb-469f-a165-70867728950e");
    s.status = SESSION_RUNNING;
    strcpy(s.image, "sandbox:latest");
    s.ttl = 60;
    s.created_at = 1761277500;
    s.expires_at = 1761277560;
    strcpy(s.sandbox_name, "sandbox-0f8fad5b-d9cb-469f-a165-70867728950e");
    strcpy(s.host_key_fpr, "SHA256:abc");
    s.limits.memory_mb = 512;
    s.limits.disk_mb = 32;
    s.metadata_json = strdup("{\"b\":\"2\",\"a\":\"1\"}");
    j = session_to_json(&s, &t);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "status")),
                        "running");
    assert_string_equal(json_string_value(json_object_get(j, "created_at")),
                        "2025-10-24T03:45:00Z");
    assert_string_equal(json_string_value(json_object_get(j, "expires_at")),
                        "2025-10-24T03:46:00Z");
    assert_string_equal(json_string_value(json_object_get(j, "tunnel_path")),
                        "/v1/sessions/0f8fad5b-d9cb-469f-a165-70867728950e/"
                        "tunnel");
    assert_true(json_is_null(json_object_get(j, "host_key")));
    assert_null(json_object_get(j, "reason"));
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(j, "resources"), "disk_mb")),
                     32);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "metadata"), "b")),
        "2");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(j, "tunnels"), "bytes_down")),
                     200);
    json_decref(j);
    s.status = SESSION_FAILED;
    strcpy(s.reason, "boom");
    j = session_to_json(&s, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "reason")),
                        "boom");
    assert_string_equal(json_string_value(json_object_get(j, "status")),
                        "failed");
    json_decref(j);
    session_free(&s);
}

static void test_status_names(void **state)
{
    session_status st;

    assert_int_equal(session_status_parse("terminating", &st), 0);
    assert_int_equal(st, SESSION_TERMINATING);
    assert_string_equal(session_status_name(SESSION_PENDING), "pending");
    assert_int_equal(session_status_parse("paused", &st), 0);
    assert_int_equal(st, SESSION_PAUSED);
    assert_string_equal(session_status_name(SESSION_PAUSED), "paused");
    assert_int_equal(session_status_parse("bogus", &st), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_valid_request),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_image),
        cmocka_unit_test(test_body_shape),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_resources),
        cmocka_unit_test(test_disk),
        cmocka_unit_test(test_isolation),
        cmocka_unit_test(test_pubkey),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_idle_timeout),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
