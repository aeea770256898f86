/*
 * runtime_k8s.h - the "kubernetes" runtime driver (a pod per session), as
 * main.c (and the driver's test program, tests/fake_k8s/driver_cli.c)
 * pick it. Everything else of the driver is internal to
 * runtime/kubernetes/ (k8s.h).
 */
#ifndef PICO_RUNTIME_K8S_H
#define PICO_RUNTIME_K8S_H

#include "runtime/runtime.h"

extern const runtime_ops runtime_k8s_ops;

#endif
