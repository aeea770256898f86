#!/bin/bash
# `make run`: starts redis-server, pico-backend and nginx in the
# foreground for one local stack, and on Ctrl-C or SIGTERM stops all of
# them, sandboxes included. Everything lives under $VAR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VAR=${VAR:-$ROOT/var}
IMAGES=${IMAGES:-$VAR/images}
LISTEN=${LISTEN:-127.0.0.1:8080}

"$ROOT/scripts/pico-conf.sh" "$VAR" "$IMAGES" "$LISTEN"

pids=()
stopping=0
stop() {
    [ "$stopping" = 1 ] && return
    stopping=1
    # Whatever happens now, finish stopping: no early exit on a failed
    # command, and no death by SIGPIPE if our output went away (a pipe to
    # a `tee` that got the same Ctrl-C).
    set +e
    trap '' PIPE
    echo "pico: stopping"
    # nginx first (no new tunnels), then the sandboxes, then the backend
    # and redis that the drain needs.
    [ -n "${nginx_pid:-}" ] && kill -QUIT "$nginx_pid" 2>/dev/null || true
    "$ROOT/bin/pico-backend" --config "$VAR/conf/pico.conf" drain || true
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "pico: stopped"
}
trap stop INT TERM EXIT

# Each service runs in its own session so that Ctrl-C, which the terminal
# sends to the whole foreground group, reaches only this script: the trap
# then stops them in order, and the drain still has redis and the backend.
setsid redis-server "$VAR/conf/redis.conf" &
pids+=($!)
for _ in $(seq 100); do
    [ -S "$VAR/run/redis.sock" ] && redis-cli -s "$VAR/run/redis.sock" ping \
        >/dev/null 2>&1 && break
    sleep 0.05
done

# The backend logs to stderr: show it here and keep it in var/log.
setsid "$ROOT/bin/pico-backend" --config "$VAR/conf/pico.conf" \
    2> >(tee -a "$VAR/log/backend.log" >&2) &
backend_pid=$!
pids=("$backend_pid" "${pids[@]}")
for _ in $(seq 100); do
    [ -S "$VAR/run/backend.sock" ] && break
    sleep 0.05
done

setsid nginx -p "$VAR/nginx" -c "$VAR/conf/nginx.conf" -e "$VAR/log/nginx-error.log" &
nginx_pid=$!

echo "pico: listening on http://$LISTEN (state in $VAR); Ctrl-C stops"
# Stay until one of them exits, or until whoever started us (make) is
# gone: `kill <make's pid>` does not reach this script, so it watches.
# The short waits on a background sleep let the trap run at once.
parent=$PPID
while kill -0 "$parent" 2>/dev/null; do
    for p in "${pids[@]}" "$nginx_pid"; do
        kill -0 "$p" 2>/dev/null || break 2
    done
    sleep 0.5 &
    wait $! || true
done
