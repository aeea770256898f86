/*
 * k8s_list.c - list(): every session id that has a pod or a secret with
 * pico's labels in the sandbox namespace, page by page, each reported
 * once, so reconcile can remove what Redis does not know.
 */
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

/* Pages through one kind's labelled objects, reporting new session ids. */
static int list_kind(runtime *rt, const char *kind, id_set *seen,
                     runtime_list_cb cb, void *arg, char *err, size_t errlen)
{
    char base[320], path[K8S_PATH_MAX * 2], cont[1024] = "";

    object_path(rt, kind, NULL, base, sizeof(base));
    do {
        const char *next;
        json_t *item;
        k8s_resp r;
        size_t i;

        snprintf(path, sizeof(path), "%s?labelSelector=%s&limit=%d%s%s", base,
                 K8S_SELECTOR, K8S_LIST_PAGE, cont[0] ? "&continue=" : "",
                 cont);
        if (k8s_request(&rt->conn, "GET", path, NULL, NULL, K8S_CALL_TIMEOUT_S,
                        &r, err, errlen) < 0)
            return -1;
        if (r.status != 200) {
            k8s_error(&r, "listing sandboxes", err, errlen);
            k8s_resp_free(&r);
            return -1;
        }
        json_array_foreach(json_object_get(r.body, "items"), i, item)
        {
            json_t *lb =
                json_object_get(json_object_get(item, "metadata"), "labels");
            const char *id =
                json_string_value(json_object_get(lb, "session-id"));

            if (id != NULL && uuid_valid(id) && id_set_add(seen, id))
                cb(id, arg);
        }
        next = jstr(r.body, "metadata", "continue");
        cont[0] = '\0';
        /* The token is opaque; only URL-safe ones are passed back. */
        if (next != NULL && strlen(next) < sizeof(cont) &&
            strspn(next, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                         "0123456789-_.~") == strlen(next))
            snprintf(cont, sizeof(cont), "%s", next);
        k8s_resp_free(&r);
    } while (cont[0]);
    return 0;
}

/* Pods, and Secrets too: a backend that died between making the Secret
 * and the Pod leaves a Secret no Pod owns. */
int k8s_list(runtime *rt, runtime_list_cb cb, void *arg, char *err,
             size_t errlen)
{
    id_set seen = {NULL, 0, 0};
    int rc;

    rc = list_kind(rt, "pods", &seen, cb, arg, err, errlen);
    if (rc == 0)
        rc = list_kind(rt, "secrets", &seen, cb, arg, err, errlen);
    free(seen.ids);
    return rc;
}
