/*
 * app.h - what one running pico-backend holds: its configuration, the
 * runtime driver it uses and its Redis store. Passed to every part
 * instead of globals.
 */
#ifndef PICO_APP_H
#define PICO_APP_H

#include "core/config.h"
#include "runtime/runtime.h"
#include "store/store.h"

typedef struct {
    pico_config cfg;
    const runtime_ops *ops;
    runtime *rt;
    store *st;
} pico_app;

#endif
