/*
 * session.c - the session model: status names, validation of create
 * requests and the session's JSON form.
 *
 * Everything a client sends passes through session_parse_request() before
 * it reaches Redis or a runtime driver, so the rest of the backend can
 * trust a session's fields: ids are UUIDs, images match a strict pattern,
 * metadata is bounded and free of control characters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh/libssh.h>

#include "core/session_api.h"
#include "core/util.h"

static const char *const status_names[] = {
    "pending", "running", "terminating", "terminated", "failed", "paused",
};

const char *session_status_name(session_status s)
{
    if ((unsigned)s >= sizeof(status_names) / sizeof(status_names[0]))
        return "unknown";
    return status_names[s];
}

int session_status_parse(const char *name, session_status *out)
{
    size_t i;

    for (i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++) {
        if (!strcmp(name, status_names[i])) {
            *out = (session_status)i;
            return 0;
        }
    }
    return -1;
}

void session_free(session *s)
{
    free(s->metadata_json);
    s->metadata_json = NULL;
}

/* [a-z0-9][a-z0-9._-]{0,63} */
static int image_part_valid(const char *p, size_t n)
{
    size_t i;

    if (n < 1 || n > 64)
        return 0;
    for (i = 0; i < n; i++) {
        char c = p[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return 0;
    }
    return 1;
}

int session_image_valid(const char *image)
{
    const char *colon = strchr(image, ':');

    if (colon == NULL)
        return image_part_valid(image, strlen(image));
    return image_part_valid(image, (size_t)(colon - image)) &&
           image_part_valid(colon + 1, strlen(colon + 1));
}

static int key_type_allowed(const char *t)
{
    static const char *const allowed[] = {
        "ssh-ed25519",         "ssh-rsa",
        "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
    };
    size_t i;

    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (!strcmp(t, allowed[i]))
            return 1;
    return 0;
}

int session_pubkey_valid(const char *key)
{
    char type[32], b64[PICO_PUBKEY_MAX + 1];
    const char *p = key, *sp;
    size_t n;
    ssh_key k = NULL;
    int ok;

    for (sp = key; *sp; sp++)
        if ((unsigned char)*sp < 0x20 || *sp == 0x7f)
            return 0; /* one line, printable: it ends up in a file */
    sp = strchr(p, ' ');
    if (sp == NULL || (size_t)(sp - p) >= sizeof(type))
        return 0;
    memcpy(type, p, (size_t)(sp - p));
    type[sp - p] = '\0';
    if (!key_type_allowed(type))
        return 0;
    p = sp + 1;
    n = strcspn(p, " ");
    if (n == 0 || n >= sizeof(b64))
        return 0;
    memcpy(b64, p, n);
    b64[n] = '\0';
    if (ssh_pki_import_pubkey_base64(b64, ssh_key_type_from_name(type), &k) !=
        SSH_OK)
        return 0;
    /* The blob names its own type; it must agree with the line's. */
    ok = ssh_key_type(k) == ssh_key_type_from_name(type);
    ssh_key_free(k);
    return ok;
}

static int meta_key_valid(const char *k)
{
    size_t n = strlen(k);

    return n >= 1 && n <= PICO_META_KEY_MAX && name_chars_valid(k, n);
}

static int meta_value_valid(const char *v, size_t n)
{
    size_t i;

    if (n > PICO_META_VALUE_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
        /* C1 controls U+0080..U+009F are 0xc2 0x80..0x9f in UTF-8
         * (jansson has already checked the encoding). */
        if (c == 0xc2 && i + 1 < n && (unsigned char)v[i + 1] >= 0x80 &&
            (unsigned char)v[i + 1] <= 0x9f)
            return 0;
    }
    return 1;
}

static int parse_metadata(json_t *v, session *s, char *err, size_t errlen)
{
    const char *key;
    json_t *val;

    if (!json_is_object(v)) {
        snprintf(err, errlen, "metadata: must be an object of strings");
        return -1;
    }
    if (json_object_size(v) > PICO_META_PAIRS_MAX) {
        snprintf(err, errlen, "metadata: at most %d keys", PICO_META_PAIRS_MAX);
        return -1;
    }
    json_object_foreach(v, key, val)
    {
        if (!meta_key_valid(key)) {
            snprintf(err, errlen,
                     "metadata: keys must match [A-Za-z0-9_.-]{1,%d}",
                     PICO_META_KEY_MAX);
            return -1;
        }
        if (!json_is_string(val)) {
            snprintf(err, errlen, "metadata.%s: must be a string", key);
            return -1;
        }
        if (!meta_value_valid(json_string_value(val),
                              json_string_length(val))) {
            snprintf(err, errlen,
                     "metadata.%s: at most %d bytes without control "
                     "characters",
                     key, PICO_META_VALUE_MAX);
            return -1;
        }
    }
    s->metadata_json = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s->metadata_json == NULL) {
        snprintf(err, errlen, "metadata: out of memory");
        return -1;
    }
    return 0;
}

static int parse_limit(json_t *v, const char *name, int min, int max, int *out,
                       char *err, size_t errlen)
{
    json_int_t n;

    if (!json_is_integer(v) || (n = json_integer_value(v)) < min || n > max) {
        snprintf(err, errlen,
                 "resources.%s: must be an integer between %d and %d", name,
                 min, max);
        return -1;
    }
    *out = (int)n;
    return 0;
}

/* disk_mb: a quota between the minimum and disk_mb_max; 0 (no quota) only
 * where that is the service's default anyway, so a request cannot opt out
 * of a quota the operator set. */
static int parse_disk(const pico_config *cfg, json_t *v, session *s, char *err,
                      size_t errlen)
{
    if (json_is_integer(v) && json_integer_value(v) == 0 &&
        cfg->disk_mb_default == 0) {
        s->limits.disk_mb = 0;
        return 0;
    }
    return parse_limit(v, "disk_mb", PICO_DISK_MB_MIN, cfg->disk_mb_max,
                       &s->limits.disk_mb, err, errlen);
}

static int parse_resources(const pico_config *cfg, json_t *v, session *s,
                           char *err, size_t errlen)
{
    const char *key;
    json_t *val;

    if (!json_is_object(v)) {
        snprintf(err, errlen, "resources: must be an object");
        return -1;
    }
    json_object_foreach(v, key, val)
    {
        int rc;
        if (!strcmp(key, "memory_mb"))
            rc = parse_limit(val, key, PICO_MEMORY_MB_MIN, cfg->memory_mb_max,
                             &s->limits.memory_mb, err, errlen);
        else if (!strcmp(key, "cpu_millicores"))
            rc = parse_limit(val, key, PICO_CPU_MILLICORES_MIN,
                             cfg->cpu_millicores_max, &s->limits.cpu_millicores,
                             err, errlen);
        else if (!strcmp(key, "pids"))
            rc = parse_limit(val, key, PICO_PIDS_MIN, cfg->pids_max,
                             &s->limits.pids, err, errlen);
        else if (!strcmp(key, "disk_mb"))
            rc = parse_disk(cfg, val, s, err, errlen);
        else {
            snprintf(err, errlen,
                     "resources.%.64s: unknown field (allowed: memory_mb, "
                     "cpu_millicores, pids, disk_mb)",
                     key);
            rc = -1;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* "isolation": a tier of the configured allowed set. On Kubernetes a
 * tier other than the default would be a pod runtime class, which is not
 * configurable yet: refused there with a message that says so. */
static int parse_isolation(const pico_config *cfg, json_t *v, session *s,
                           char *err, size_t errlen)
{
    const char *t = json_is_string(v) ? json_string_value(v) : NULL;

    if (t == NULL || json_string_length(v) > PICO_ISOLATION_MAX ||
        strlen(t) != json_string_length(v) ||
        (strcmp(t, "runc") != 0 && strcmp(t, "gvisor") != 0)) {
        snprintf(err, errlen, "isolation: must be \"runc\" or \"gvisor\"");
        return -1;
    }
    if (strcmp(cfg->runtime, "kubernetes") == 0 &&
        strcmp(t, cfg->isolation) != 0) {
        snprintf(err, errlen,
                 "isolation: %s is not available on the Kubernetes runtime "
                 "(it needs a pod runtime class, none is configured); only "
                 "%s",
                 t, cfg->isolation);
        return -1;
    }
    if (!config_isolation_allowed(cfg, t)) {
        snprintf(
            err, errlen,
            "isolation: %s is not allowed on this server (allowed: %s%s%s)", t,
            cfg->isolation, cfg->isolation_allowed[0] ? " " : "",
            cfg->isolation_allowed);
        return -1;
    }
    copy_str(s->isolation, sizeof(s->isolation), t);
    return 0;
}

/* "network": "none" or "egress", the latter where network_allowed says. */
static int parse_network(const pico_config *cfg, json_t *v, session *s,
                         char *err, size_t errlen)
{
    const char *t = json_is_string(v) ? json_string_value(v) : NULL;

    if (t == NULL || strlen(t) != json_string_length(v) ||
        (strcmp(t, "none") != 0 && strcmp(t, "egress") != 0)) {
        snprintf(err, errlen, "network: must be \"none\" or \"egress\"");
        return -1;
    }
    if (!netpolicy_network_allowed(cfg, t)) {
        snprintf(err, errlen,
                 "network: %s is not allowed on this server (allowed: %s)", t,
                 netpolicy_network_allowed(cfg, "egress") ? "none, egress"
                                                          : "none");
        return -1;
    }
    copy_str(s->network, sizeof(s->network), t);
    return 0;
}

static int parse_field(const pico_config *cfg, const char *key, json_t *v,
                       session *s, char *err, size_t errlen)
{
    if (!strcmp(key, "ttl")) {
        json_int_t n;
        if (!json_is_integer(v) || (n = json_integer_value(v)) < 1 ||
            n > cfg->ttl_max) {
            snprintf(err, errlen, "ttl: must be an integer between 1 and %lld",
                     cfg->ttl_max);
            return -1;
        }
        s->ttl = n;
    } else if (!strcmp(key, "image")) {
        if (!json_is_string(v) || json_string_length(v) > PICO_IMAGE_MAX ||
            strlen(json_string_value(v)) != json_string_length(v) ||
            !session_image_valid(json_string_value(v))) {
            snprintf(err, errlen,
                     "image: must be a string like \"sandbox:latest\" "
                     "(name[:tag], lowercase letters, digits, . _ -)");
            return -1;
        }
        copy_str(s->image, sizeof(s->image), json_string_value(v));
    } else if (!strcmp(key, "ssh_public_key")) {
        if (!json_is_string(v) || json_string_length(v) > PICO_PUBKEY_MAX ||
            strlen(json_string_value(v)) != json_string_length(v) ||
            !session_pubkey_valid(json_string_value(v))) {
            snprintf(err, errlen,
                     "ssh_public_key: must be one OpenSSH public key line "
                     "(ssh-ed25519, ssh-rsa or ecdsa-sha2-*)");
            return -1;
        }
        copy_str(s->ssh_public_key, sizeof(s->ssh_public_key),
                 json_string_value(v));
    } else if (!strcmp(key, "isolation")) {
        return parse_isolation(cfg, v, s, err, errlen);
    } else if (!strcmp(key, "network")) {
        return parse_network(cfg, v, s, err, errlen);
    } else if (!strcmp(key, "egress")) {
        return netpolicy_parse_request(cfg, v, s->egress_allow, s->egress_deny,
                                       err, errlen);
    } else if (!strcmp(key, "idle_timeout")) {
        json_int_t n;
        if (!json_is_integer(v) || (n = json_integer_value(v)) < 0 ||
            n > cfg->idle_timeout_max) {
            snprintf(err, errlen,
                     "idle_timeout: must be an integer between 0 (off) and "
                     "%lld",
                     cfg->idle_timeout_max);
            return -1;
        }
        s->idle_timeout = n;
    } else if (!strcmp(key, "metadata")) {
        return parse_metadata(v, s, err, errlen);
    } else if (!strcmp(key, "resources")) {
        return parse_resources(cfg, v, s, err, errlen);
    } else {
        snprintf(
            err, errlen,
            "%.64s: unknown field (allowed: ttl, image, ssh_public_key, "
            "isolation, network, egress, metadata, resources, idle_timeout)",
            key);
        return -1;
    }
    return 0;
}

int session_parse_request(const pico_config *cfg, const char *body, size_t len,
                          session *s, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root, *v;
    const char *key;
    int rc = 0, lists;

    s->ttl = cfg->ttl_default;
    copy_str(s->image, sizeof(s->image), cfg->default_image);
    s->limits.memory_mb = cfg->memory_mb_default;
    s->limits.cpu_millicores = cfg->cpu_millicores_default;
    s->limits.pids = cfg->pids_default;
    s->limits.disk_mb = cfg->disk_mb_default;
    s->ssh_public_key[0] = '\0';
    copy_str(s->isolation, sizeof(s->isolation), cfg->isolation);
    copy_str(s->network, sizeof(s->network), "none");
    s->egress_allow[0] = s->egress_deny[0] = '\0';
    s->idle_timeout = cfg->idle_timeout_default;
    s->metadata_json = NULL;
    if (len == 0)
        return 0;
    if (len > PICO_BODY_MAX) {
        snprintf(err, errlen, "body: larger than %d bytes", PICO_BODY_MAX);
        return -1;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "body: invalid JSON (line %d, column %d): %s",
                 jerr.line, jerr.column, jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "body: must be a JSON object");
        json_decref(root);
        return -1;
    }
    json_object_foreach(root, key, v)
    {
        if (parse_field(cfg, key, v, s, err, errlen) < 0) {
            rc = -1;
            break;
        }
    }
    lists = json_object_get(root, "egress") != NULL;
    json_decref(root);
    if (rc == 0 && strcmp(s->network, "egress") == 0 &&
        strcmp(s->isolation, "gvisor") == 0) {
        snprintf(err, errlen, "network: egress needs isolation runc");
        rc = -1;
    }
    if (rc == 0 && lists && strcmp(s->network, "egress") != 0) {
        snprintf(err, errlen, "egress: needs \"network\": \"egress\"");
        rc = -1;
    }
    if (rc < 0)
        session_free(s);
    return rc;
}

/* Loads a request body that must be a JSON object. A number too large
 * for an integer makes jansson refuse the whole text; read again with
 * integers as reals, it is reported as that field's error (the caller's
 * range check says which), not as invalid JSON. */
static json_t *load_object(const char *body, size_t len, char *err,
                           size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL)
        root = json_loadb(
            body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, NULL);
    if (root == NULL) {
        snprintf(err, errlen, "body: invalid JSON (line %d, column %d): %s",
                 jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "body: must be a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

int session_parse_patch(const pico_config *cfg, const char *body, size_t len,
                        long long *ttl, char *err, size_t errlen)
{
    json_t *root, *v;
    const char *key;
    json_int_t n = 0;
    int rc = 0;

    if (len == 0) {
        snprintf(err, errlen, "ttl: required");
        return -1;
    }
    if (len > PICO_BODY_MAX) {
        snprintf(err, errlen, "body: larger than %d bytes", PICO_BODY_MAX);
        return -1;
    }
    root = load_object(body, len, err, errlen);
    if (root == NULL)
        return -1;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "ttl") != 0) {
            snprintf(err, errlen, "%.64s: unknown field (allowed: ttl)", key);
            rc = -1;
            break;
        }
    }
    v = json_object_get(root, "ttl");
    if (rc == 0 && v == NULL) {
        snprintf(err, errlen, "ttl: required");
        rc = -1;
    } else if (rc == 0 &&
               (!json_is_integer(v) || (n = json_integer_value(v)) < 1 ||
                n > cfg->ttl_max)) {
        snprintf(err, errlen, "ttl: must be an integer between 1 and %lld",
                 cfg->ttl_max);
        rc = -1;
    } else if (rc == 0) {
        *ttl = n;
    }
    json_decref(root);
    return rc;
}

static json_t *time_or_null(long long t)
{
    char buf[PICO_TIME_MAX + 1];

    if (t <= 0 || format_rfc3339(t, buf, sizeof(buf)) < 0)
        return json_null();
    return json_string(buf);
}

static json_t *str_or_null(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

static json_t *tunnels_json(const session_tunnels *t)
{
    session_tunnels zero = {0, 0, 0, 0, 0};

    if (t == NULL)
        t = &zero;
    return json_pack("{s:I,s:I,s:I,s:I,s:o}", "open", (json_int_t)t->open,
                     "opened", (json_int_t)t->opened, "bytes_up",
                     (json_int_t)t->bytes_up, "bytes_down",
                     (json_int_t)t->bytes_down, "last_activity",
                     time_or_null(t->last_activity_ms / 1000));
}

/* "a/n,b/n" (the stored form of a request's egress list) as a JSON
 * array of strings. */
static json_t *cidr_text_array(const char *text)
{
    json_t *a = json_array();
    const char *p = text;

    while (a != NULL && *p) {
        size_t n = strcspn(p, ",");
        if (n > 0)
            json_array_append_new(a, json_stringn(p, n));
        p += n + (p[n] == ',');
    }
    return a;
}

json_t *session_to_json(const session *s, const session_tunnels *t)
{
    char tunnel_path[64 + PICO_ID_LEN];
    json_t *o, *meta = NULL;

    snprintf(tunnel_path, sizeof(tunnel_path), "/v1/sessions/%s/tunnel", s->id);
    if (s->metadata_json && s->metadata_json[0])
        meta = json_loads(s->metadata_json, 0, NULL);
    if (!json_is_object(meta)) {
        json_decref(meta);
        meta = json_object();
    }
    o = json_pack(
        "{s:s,s:s,s:s,s:I,s:o,s:o,s:s,s:s,s:s,s:o,s:o,s:{s:i,s:i,s:i,s:i},"
        "s:o,s:o}",
        "session_id", s->id, "status", session_status_name(s->status), "image",
        s->image, "ttl", (json_int_t)s->ttl, "created_at",
        time_or_null(s->created_at), "expires_at", time_or_null(s->expires_at),
        "sandbox_name", s->sandbox_name, "tunnel_path", tunnel_path, "ssh_user",
        "sandbox", "host_key", str_or_null(s->host_key), "host_key_fingerprint",
        str_or_null(s->host_key_fpr), "resources", "memory_mb",
        s->limits.memory_mb, "cpu_millicores", s->limits.cpu_millicores, "pids",
        s->limits.pids, "disk_mb", s->limits.disk_mb, "metadata", meta,
        "tunnels", tunnels_json(t));
    if (o && s->reason[0])
        json_object_set_new(o, "reason", json_string(s->reason));
    if (o)
        json_object_set_new(
            o, "isolation",
            json_string(s->isolation[0] ? s->isolation : "runc"));
    if (o)
        json_object_set_new(o, "network",
                            json_string(s->network[0] ? s->network : "none"));
    if (o && (s->egress_allow[0] || s->egress_deny[0]))
        json_object_set_new(o, "egress",
                            json_pack("{s:o, s:o}", "allow_cidrs",
                                      cidr_text_array(s->egress_allow),
                                      "deny_cidrs",
                                      cidr_text_array(s->egress_deny)));
    if (o)
        json_object_set_new(o, "idle_timeout",
                            json_integer((json_int_t)s->idle_timeout));
    if (o && s->ssh_public_key[0])
        json_object_set_new(o, "ssh_public_key",
                            json_string(s->ssh_public_key));
    return o;
}
