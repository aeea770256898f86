/*
 * runtime_local.h - the "local" runtime driver (runc on this host), as
 * main.c picks it. Everything else of the driver is internal to
 * runtime/local/ (local.h).
 */
#ifndef PICO_RUNTIME_LOCAL_H
#define PICO_RUNTIME_LOCAL_H

#include "runtime/runtime.h"

extern const runtime_ops runtime_local_ops;

#endif
