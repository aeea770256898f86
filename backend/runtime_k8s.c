/*
 * runtime_k8s.c - the "kubernetes" runtime driver (placeholder until implemented).
 */
#include <stdio.h>
#include "runtime.h"

static runtime *k8s_open(const struct pico_config *cfg, char *err, size_t errlen)
{
    snprintf(err, errlen, "runtime kubernetes is not implemented yet");
    return NULL;
}

const runtime_ops runtime_k8s_ops = {
    .name = "kubernetes",
    .open = k8s_open,
};
