#!/bin/sh
# Writes the configuration of one pico stack (redis, pico-backend, nginx)
# into <var>/conf from the templates in conf/ and redis/, and lays out the
# state folder. `make run` and the test harness both use it, so what the
# tests exercise is what users run.
#
# usage: pico-conf.sh VAR IMAGES LISTEN
# environment (optional): AUTH=on|off  RUNTIME=local|kubernetes
#   NODE=<name> WORKERS=<n> K8S_API=<url> NGINX_USER=<user>
set -eu

VAR=$1 IMAGES=$2 LISTEN=$3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
AUTH=${AUTH:-off}
RUNTIME=${RUNTIME:-local}
NODE=${NODE:-$(hostname)}
# nginx workers: 3 by default, more than this machine's 2 cores. A tunnel
# costs a worker two of its 20,000 descriptors, so 2 workers stop near
# 17,700 tunnels; idle tunnels cost a worker no CPU, and 3 hold 26,000
# (docs/nginx-module.md, pico_max_tunnels).
WORKERS=${WORKERS:-3}
K8S_API=${K8S_API:-}
NGINX_USER=${NGINX_USER:-www-data}

mkdir -p "$VAR/conf" "$VAR/run" "$VAR/log" "$VAR/redis" "$VAR/nginx" \
         "$VAR/sessions" "$VAR/runc" "$IMAGES"
# nginx workers run as $NGINX_USER and must reach the sockets in run/ and
# sessions/: the folders let that group in, and nobody else.
if [ "$(id -u)" = 0 ]; then
    chgrp "$NGINX_USER" "$VAR" "$VAR/run" "$VAR/sessions"
    chmod 0750 "$VAR/run" "$VAR/sessions"
    chmod 0751 "$VAR"
    USER_LINE="user $NGINX_USER;"
else
    USER_LINE=""
fi

fill() {
    sed -e "s|@ROOT@|$ROOT|g" -e "s|@VAR@|$VAR|g" -e "s|@IMAGES@|$IMAGES|g" \
        -e "s|@LISTEN@|$LISTEN|g" -e "s|@AUTH@|$AUTH|g" \
        -e "s|@RUNTIME@|$RUNTIME|g" -e "s|@NODE@|$NODE|g" \
        -e "s|@WORKERS@|$WORKERS|g" -e "s|@K8S_API@|$K8S_API|g" \
        -e "s|@NGINX_USER@|$NGINX_USER|g" -e "s|@USER_LINE@|$USER_LINE|g" \
        "$1" > "$2.tmp"
    mv "$2.tmp" "$2"
}

fill "$ROOT/redis/redis.conf.in" "$VAR/conf/redis.conf"
fill "$ROOT/conf/pico.conf.in" "$VAR/conf/pico.conf"
fill "$ROOT/conf/nginx.conf.in" "$VAR/conf/nginx.conf"
