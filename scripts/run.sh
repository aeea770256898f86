#!/bin/bash
# `make run`: one local pico stack (redis-server, pico-backend, nginx with
# the module) in the foreground, supervised. Everything lives under $VAR.
#
# - A part that exits unexpectedly is restarted with backoff (0.2 s
#   doubling to 10 s, back to 0.2 s once it has stayed up 30 s), and the
#   restart is logged. Sessions survive it: sandboxes are not children of
#   the backend, Redis keeps its data in the AOF, a restarted backend
#   reconciles, and tunnels never go through the backend.
# - Only Ctrl-C or SIGTERM (to this script or to make's process group)
#   stops the stack, and then it drains: nginx stops taking tunnels, every
#   session and sandbox is deleted, then the backend and Redis stop. When
#   this script returns, no process it started is left.
# - One stack per state folder: a second run on the same $VAR says which
#   PID holds it and exits 1. Parts left running by a run that was killed
#   with SIGKILL are found (PID files, checked against /proc) and stopped
#   cleanly first; their sandboxes are kept and reconciled.
#
# - RUNTIME=kubernetes-fake: the kubernetes runtime against the project's
#   fake API server (tests/fake_k8s/server.py, a fourth supervised part,
#   on 127.0.0.1:$K8S_FAKE_PORT, default 6443), whose pods are real sshd
#   from $IMAGES' sandbox rootfs. $VAR/kubeconfig points kubectl at it
#   (namespace pico-sandboxes): KUBECONFIG=var/kubeconfig kubectl get pods.
#   RUNTIME=kubernetes with K8S_API set uses a real API server instead.
#
# The state folder's lock is held on fd 9 and never inherited by the
# parts (each is started with 9>&-), so it dies with this script alone.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VAR=${VAR:-$ROOT/var}
IMAGES=${IMAGES:-$VAR/images}
LISTEN=${LISTEN:-127.0.0.1:8080}
BACKEND=${PICO_BACKEND_BIN:-$ROOT/bin/pico-backend}
RUN=$VAR/run

log() { echo "pico: $*"; }

mkdir -p "$RUN"
exec 9>>"$RUN/pico.lock"
if ! flock -n 9; then
    holder=$(cat "$RUN/pico.pid" 2>/dev/null || true)
    echo "pico: already running (PID ${holder:-unknown}) with state in $VAR;" \
        "stop it with Ctrl-C in its terminal or: kill ${holder:-<pid>}" >&2
    exit 1
fi
echo $$ >"$RUN/pico.pid"

FAKE_K8S=0
if [ "${RUNTIME:-local}" = kubernetes-fake ]; then
    FAKE_K8S=1
    K8S_FAKE_PORT=${K8S_FAKE_PORT:-6443}
    export RUNTIME=kubernetes K8S_API=http://127.0.0.1:$K8S_FAKE_PORT
fi

"$ROOT/scripts/pico-conf.sh" "$VAR" "$IMAGES" "$LISTEN" || exit 1

# kubectl's view of the fake: no credentials (the fake asks for none).
write_kubeconfig() {
    cat >"$VAR/kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pico-fake
  cluster:
    server: $K8S_API
contexts:
- name: pico-fake
  context:
    cluster: pico-fake
    namespace: pico-sandboxes
    user: pico-fake
current-context: pico-fake
users:
- name: pico-fake
  user: {}
EOF
    mv "$VAR/kubeconfig.tmp" "$VAR/kubeconfig"
}
[ "$FAKE_K8S" = 1 ] && write_kubeconfig

# -- leftovers of a run killed with SIGKILL -----------------------------------

# pid_is NAME PID: the process PID is this state folder's NAME.
pid_is() {
    local cmd
    [ -n "$2" ] && running "$2" || return 1
    case $1 in
    redis) [ "$(readlink "/proc/$2/cwd")" = "$VAR/redis" ] ;;
    k8s | backend | nginx)
        cmd=$(tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null) || return 1
        case $1:$cmd in
        backend:*"$VAR/conf/pico.conf"*) return 0 ;;
        nginx:*"$VAR/conf/nginx.conf"*) return 0 ;;
        k8s:*"$VAR/fake_k8s"*) return 0 ;;
        esac
        return 1
        ;;
    esac
}

# running PID: the process exists and is not a zombie (an orphan's
# zombie waits for PID 1, which may be slow to reap it).
running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# stop_pid NAME PID SIGNAL: signal, then wait up to 15 s, then SIGKILL.
stop_pid() {
    local i
    kill "-$3" "$2" 2>/dev/null || return 0
    for i in $(seq 150); do
        running "$2" || return 0
        sleep 0.1
    done
    log "$1 (PID $2) did not stop in 15 s; killing it"
    kill -KILL "$2" 2>/dev/null
}

# nginx workers whose master is gone still hold the listening socket;
# they are in the master's session (setsid), so they are found by it.
quit_orphan_workers() {
    local w
    for w in $(ps -e -o pid=,sid=,ppid= | awk -v s="$1" '$2 == s && $3 == 1 { print $1 }'); do
        log "nginx worker $w outlived its master; it finishes its tunnels and quits"
        kill -QUIT "$w" 2>/dev/null
    done
}

stop_leftovers() {
    local name sig pid
    for name in nginx backend redis k8s; do
        pid=$(cat "$RUN/$name.pid" 2>/dev/null || true)
        if pid_is "$name" "$pid"; then
            case $name in nginx) sig=QUIT ;; *) sig=TERM ;; esac
            log "found $name (PID $pid) left running by an earlier run that" \
                "was killed; stopping it (its sessions are kept)"
            stop_pid "$name" "$pid" "$sig"
        fi
        [ "$name" = nginx ] && [ -n "$pid" ] && quit_orphan_workers "$pid"
        rm -f "$RUN/$name.pid"
    done
}
stop_leftovers

# -- the parts ----------------------------------------------------------------

declare -A pid delay since
names=(redis backend nginx)
[ "$FAKE_K8S" = 1 ] && names=(k8s "${names[@]}")

# The fake API server, before the backend that needs it (its pods do
# not outlive it: a restarted fake is an empty cluster).
start_k8s() {
    setsid /usr/bin/python3 "$ROOT/tests/fake_k8s/server.py" \
        --port "$K8S_FAKE_PORT" --rootfs "$IMAGES/sandbox_latest/rootfs" \
        --state "$VAR/fake_k8s" --gc 9>&- \
        >>"$VAR/log/fake_k8s.log" 2>&1 &
    pid[k8s]=$!
    echo "${pid[k8s]}" >"$RUN/k8s.pid"
    local i
    for i in $(seq 100); do
        curl -sf -o /dev/null "$K8S_API/version" && return 0
        kill -0 "${pid[k8s]}" 2>/dev/null || return 0
        sleep 0.05
    done
}

start_redis() {
    setsid redis-server "$VAR/conf/redis.conf" 9>&- &
    pid[redis]=$!
    local i
    for i in $(seq 100); do
        redis-cli -s "$RUN/redis.sock" ping >/dev/null 2>&1 && return 0
        kill -0 "${pid[redis]}" 2>/dev/null || return 0
        sleep 0.05
    done
}

# The backend logs to stderr: shown here and kept in var/log.
start_backend() {
    setsid "$BACKEND" --config "$VAR/conf/pico.conf" 9>&- \
        2> >(exec tee -a "$VAR/log/backend.log" >&2 9>&-) &
    pid[backend]=$!
    echo "${pid[backend]}" >"$RUN/backend.pid"
    local i
    for i in $(seq 100); do
        [ -S "$RUN/backend.sock" ] && return 0
        kill -0 "${pid[backend]}" 2>/dev/null || return 0
        sleep 0.05
    done
}

start_nginx() {
    setsid nginx -p "$VAR/nginx" -c "$VAR/conf/nginx.conf" \
        -e "$VAR/log/nginx-error.log" 9>&- &
    pid[nginx]=$!
}

start_part() {
    "start_$1"
    since[$1]=$SECONDS
}

# A part exited on its own: log it, wait out its backoff, start it again.
restart_part() {
    local name=$1 status=$2 d
    [ "${since[$name]}" -le $((SECONDS - 30)) ] && delay[$name]=200
    d=${delay[$name]}
    log "$name (PID ${pid[$name]}) exited with status $status;" \
        "restarting it in $((d / 1000)).$(printf '%03d' $((d % 1000))) s"
    [ "$name" = nginx ] && quit_orphan_workers "${pid[nginx]}"
    sleep "$((d / 1000)).$(printf '%03d' $((d % 1000)))" &
    wait $! 2>/dev/null
    [ "$stopping" = 1 ] && return
    delay[$name]=$((d * 2 > 10000 ? 10000 : d * 2))
    start_part "$name"
    log "$name restarted (PID ${pid[$name]})"
}

# -- stopping -----------------------------------------------------------------

stopping=0
stop() {
    [ "$stopping" = 1 ] && return
    stopping=1
    # From here on nothing interrupts the drain: further signals are
    # ignored, a failed command does not end the script, and neither does
    # SIGPIPE if our output went away (a pipe to a `tee` that got the
    # same Ctrl-C).
    trap '' INT TERM PIPE
    log "stopping: draining sessions"
    # nginx first (no new tunnels), then the sandboxes, then the backend
    # and Redis that the drain needs.
    kill -QUIT "${pid[nginx]:-}" 2>/dev/null
    "$BACKEND" --config "$VAR/conf/pico.conf" drain 9>&-
    local name
    for name in nginx backend redis k8s; do
        [ -n "${pid[$name]:-}" ] || continue
        case $name in nginx) ;; *) kill -TERM "${pid[$name]}" 2>/dev/null ;; esac
        stop_pid "$name" "${pid[$name]}" TERM
        wait "${pid[$name]}" 2>/dev/null
    done
    [ -n "${pid[nginx]:-}" ] && quit_orphan_workers "${pid[nginx]}"
    wait 2>/dev/null # the log tee
    rm -f "$RUN/backend.pid" "$RUN/k8s.pid" "$RUN/pico.pid"
    log "stopped"
    exit 0
}
trap stop INT TERM EXIT

for name in "${names[@]}"; do
    delay[$name]=200
    start_part "$name"
done
log "listening on http://$LISTEN (state in $VAR); Ctrl-C stops and drains"

# Stay until a signal, or until whoever started us (make) is gone: a
# SIGKILL of make reaches nobody, so its end is watched for. Bash reaps
# exited children in the background, so `kill -0` fails for a part that
# exited and `wait PID` then gives its status. The short waits on a
# background sleep let a trap run at once.
parent=$PPID
while kill -0 "$parent" 2>/dev/null; do
    for name in "${names[@]}"; do
        if ! kill -0 "${pid[$name]}" 2>/dev/null; then
            wait "${pid[$name]}" 2>/dev/null
            restart_part "$name" $?
        fi
    done
    sleep 0.2 &
    wait $! 2>/dev/null
done
log "the command that started pico is gone"
