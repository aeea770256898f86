/*
 * reconcile.h - brings Redis and the runtime back in line at start-up.
 */
#ifndef PICO_RECONCILE_H
#define PICO_RECONCILE_H

#include "app.h"

/* Pending records younger than this may be another backend's create in
 * flight; reconcile leaves them alone. */
#define PICO_PENDING_GRACE_S 60

/* 0, or -1 when the runtime or Redis could not be listed. */
int reconcile(pico_app *app);

#endif
