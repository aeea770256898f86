/*
 * driver_cli.c - runs the kubernetes runtime driver alone, for
 * tests/fake_k8s/test_driver.py.
 *
 * The end-to-end tests drive the driver through the whole stack; this
 * small program calls runtime_k8s_ops directly so the driver's own
 * behaviour (error paths, watches, cleanup) is tested without nginx,
 * Redis or the HTTP API in the way.
 *
 *   driver_cli API_URL NAMESPACE READY_TIMEOUT_S COMMAND [ID] [PUBKEY]
 *   COMMAND: create ID [PUBKEY] | destroy ID | alive ID | list | health
 *
 * create prints "endpoint host_key host_key_fpr"; failures print the
 * driver's reason on stderr and exit 1. Environment: K8S_KUBECONFIG
 * (use that file, not API_URL), K8S_INCLUSTER (use
 * KUBERNETES_SERVICE_HOST/PORT), K8S_TOKEN_FILE, K8S_CA_FILE,
 * K8S_RUNTIME_CLASS.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/config.h"
#include "runtime/kubernetes/runtime_k8s.h"
#include "core/util.h"

static void print_id(const char *id, void *arg)
{
    (void)arg;
    printf("%s\n", id);
}

static int usage(void)
{
    fprintf(stderr, "usage: driver_cli API NS TIMEOUT "
                    "create|destroy|alive ID [PUBKEY] | list | health\n");
    return 2;
}

int main(int argc, char **argv)
{
    const runtime_ops *ops = &runtime_k8s_ops;
    static pico_config cfg;
    static session s;
    char err[512] = "";
    const char *cmd;
    runtime *rt;
    long long timeout;
    int rc = 1;

    if (argc < 5 || parse_ll(argv[3], &timeout) < 0 || timeout < 0 ||
        timeout > INT_MAX)
        return usage();
    snprintf(cfg.k8s_api, sizeof(cfg.k8s_api), "%s", argv[1]);
    snprintf(cfg.k8s_namespace, sizeof(cfg.k8s_namespace), "%s", argv[2]);
    cfg.k8s_ready_timeout_s = (int)timeout;
    if (getenv("K8S_KUBECONFIG") != NULL) {
        cfg.k8s_api[0] = '\0';
        snprintf(cfg.k8s_kubeconfig, sizeof(cfg.k8s_kubeconfig), "%s",
                 getenv("K8S_KUBECONFIG"));
    }
    /* In-cluster: no k8s_api, KUBERNETES_SERVICE_HOST/PORT from the
     * environment. */
    if (getenv("K8S_INCLUSTER") != NULL)
        cfg.k8s_api[0] = '\0';
    if (getenv("K8S_CA_FILE") != NULL)
        snprintf(cfg.k8s_ca_file, sizeof(cfg.k8s_ca_file), "%s",
                 getenv("K8S_CA_FILE"));
    if (getenv("K8S_TOKEN_FILE") != NULL)
        snprintf(cfg.k8s_token_file, sizeof(cfg.k8s_token_file), "%s",
                 getenv("K8S_TOKEN_FILE"));
    if (getenv("K8S_RUNTIME_CLASS") != NULL)
        snprintf(cfg.k8s_runtime_class, sizeof(cfg.k8s_runtime_class), "%s",
                 getenv("K8S_RUNTIME_CLASS"));
    cmd = argv[4];
    rt = ops->open(&cfg, err, sizeof(err));
    if (rt == NULL) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    if (strcmp(cmd, "create") == 0 && argc >= 6) {
        snprintf(s.id, sizeof(s.id), "%s", argv[5]);
        snprintf(s.image, sizeof(s.image), "sandbox:latest");
        snprintf(s.sandbox_name, sizeof(s.sandbox_name), "sandbox-%s", argv[5]);
        snprintf(s.ssh_public_key, sizeof(s.ssh_public_key), "%s",
                 argc > 6 ? argv[6] : "");
        s.limits.memory_mb = 512;
        s.limits.cpu_millicores = 1000;
        s.limits.pids = 256;
        rc = ops->create(rt, &s, err, sizeof(err));
        if (rc == 0)
            printf("%s\n%s\n%s\n", s.endpoint, s.host_key, s.host_key_fpr);
    } else if (strcmp(cmd, "destroy") == 0 && argc >= 6) {
        rc = ops->destroy(rt, argv[5], err, sizeof(err));
    } else if (strcmp(cmd, "alive") == 0 && argc >= 6) {
        printf("%d\n", ops->alive(rt, argv[5]));
        rc = 0;
    } else if (strcmp(cmd, "list") == 0) {
        rc = ops->list(rt, print_id, NULL, err, sizeof(err));
    } else if (strcmp(cmd, "health") == 0) {
        rc = ops->health(rt, err, sizeof(err));
    } else {
        ops->close(rt);
        return usage();
    }
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", cmd, err);
    ops->close(rt);
    return rc == 0 ? 0 : 1;
}
