/*
 * runtime_local.c - the "local" runtime driver (placeholder until implemented).
 */
#include <stdio.h>
#include "runtime.h"

static runtime *local_open(const struct pico_config *cfg, char *err, size_t errlen)
{
    snprintf(err, errlen, "runtime local is not implemented yet");
    return NULL;
}

const runtime_ops runtime_local_ops = {
    .name = "local",
    .open = local_open,
};
