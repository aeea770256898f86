/*
 * k8s_list.c - list(): every session id that has a pod, a secret or a
 * network policy with pico's labels in the sandbox namespace, page by page,
 * each reported once, so reconcile can remove what Redis does not know.
 * Continue tokens of any length are passed back; an expired one (410) lists
 * again from the start.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/util.h"
#include "runtime/kubernetes/k8s.h"

/* Session ids already reported by list() (pods first, then secrets). */
typedef struct {
    char (*ids)[PICO_ID_LEN + 1];
    size_t n, cap;
} id_set;

/* Percent-encodes all but RFC 3986's unreserved characters (malloc'd). */
static char *url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *o = out;

    if (out == NULL)
        return NULL;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
            (ch >= '0' && ch <= '9') || strchr("-_.~", ch) != NULL) {
            *o++ = (char)ch;
        } else {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    *o = '\0';
    return out;
}

static int id_set_add(id_set *set, const char *id)
{
    size_t i;

    for (i = 0; i < set->n; i++)
        if (strcmp(set->ids[i], id) == 0)
            return 0;
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        void *p = realloc(set->ids, cap * sizeof(*set->ids));

        if (p == NULL)
            return 0;
        set->ids = p;
        set->cap = cap;
    }
    memcpy(set->ids[set->n++], id, PICO_ID_LEN + 1);
    return 1;
}

/* Reports the session ids of one page's items not reported before. */
static void report_items(json_t *body, id_set *seen, runtime_list_cb cb,
                         void *arg)
{
    json_t *item;
    size_t i;

    json_array_foreach(json_object_get(body, "items"), i, item)
    {
        json_t *lb =
            json_object_get(json_object_get(item, "metadata"), "labels");
        const char *id = json_string_value(json_object_get(lb, "session-id"));

        if (id != NULL && uuid_valid(id) && id_set_add(seen, id))
            cb(id, arg);
    }
}

/*
 * Pages through one kind's labelled objects, reporting new session ids.
 * The continue token is opaque and of no set length: it is passed back
 * whole, percent-encoded. A 410 on a page means the token expired (its
 * snapshot left the server's history): list again from the start, a few
 * times at most; ids already reported are not reported twice.
 */
static int list_kind(runtime *rt, const char *kind, id_set *seen,
                     runtime_list_cb cb, void *arg, char *err, size_t errlen)
{
    char base[320];
    char *cont = NULL, *path = NULL;
    int restarts = 0, rc = 0;

    object_path(rt, kind, NULL, base, sizeof(base));
    for (;;) {
        const char *next;
        k8s_resp r;
        int more;

        free(path);
        if (asprintf(&path, "%s?labelSelector=%s&limit=%d%s%s", base,
                     K8S_SELECTOR, K8S_LIST_PAGE, cont ? "&continue=" : "",
                     cont ? cont : "") < 0) {
            path = NULL;
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        if (k8s_request(&rt->conn, "GET", path, NULL, NULL, K8S_CALL_TIMEOUT_S,
                        &r, err, errlen) < 0) {
            rc = -1;
            break;
        }
        if (r.status == 410 && cont != NULL && restarts++ < K8S_LIST_RESTARTS) {
            k8s_resp_free(&r);
            free(cont);
            cont = NULL; /* expired: from the start again */
            continue;
        }
        if (r.status != 200) {
            k8s_error(&r, "listing sandboxes", err, errlen);
            k8s_resp_free(&r);
            rc = -1;
            break;
        }
        report_items(r.body, seen, cb, arg);
        next = jstr(r.body, "metadata", "continue");
        more = next != NULL && next[0];
        free(cont);
        cont = more ? url_escape(next) : NULL;
        k8s_resp_free(&r); /* next points into it */
        if (more && cont == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
        if (cont == NULL || rc != 0)
            break;
    }
    free(cont);
    free(path);
    return rc;
}

/* Pods, and Secrets and NetworkPolicies too: a backend that died between
 * making them and the Pod leaves objects no Pod owns. */
int k8s_list(runtime *rt, runtime_list_cb cb, void *arg, char *err,
             size_t errlen)
{
    id_set seen = {NULL, 0, 0};
    int rc;

    rc = list_kind(rt, "pods", &seen, cb, arg, err, errlen);
    if (rc == 0)
        rc = list_kind(rt, "secrets", &seen, cb, arg, err, errlen);
    if (rc == 0)
        rc = list_kind(rt, "networkpolicies", &seen, cb, arg, err, errlen);
    free(seen.ids);
    return rc;
}
