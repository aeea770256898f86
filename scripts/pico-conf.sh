#!/bin/sh
# Writes the configuration of one pico stack (redis, pico-backend, nginx)
# into <var>/conf from the templates in conf/ and redis/, and lays out the
# state folder. `make run` and the test harness both use it, so what the
# tests exercise is what users run.
#
# usage: pico-conf.sh VAR IMAGES LISTEN
# environment (optional): AUTH=on|off  RUNTIME=local|kubernetes
#   NODE=<name> WORKERS=<n> K8S_API=<url> NGINX_USER=<user>
#   CONF_DIR=<dir> (default VAR/conf) MODULE_SO=<ngx_pico_module.so>
#   INIT_BIN=<pico-init> (defaults: the checkout's build; make install
#   points them at the installed files) DESTDIR=<staging root> (files
#   are written below it; the paths inside them are without it)
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
CONF_DIR=${CONF_DIR:-$VAR/conf}
MODULE_SO=${MODULE_SO:-$ROOT/build/modules/ngx_pico_module.so}
INIT_BIN=${INIT_BIN:-$ROOT/bin/pico-init}

D=${DESTDIR:-}
mkdir -p "$D$CONF_DIR" "$D$VAR/run" "$D$VAR/log" "$D$VAR/redis" \
         "$D$VAR/nginx" "$D$VAR/sessions" "$D$VAR/runc" "$D$IMAGES"
# nginx workers run as $NGINX_USER and must reach the sockets in run/ and
# sessions/: the folders let that group in, and nobody else.
if [ "$(id -u)" = 0 ]; then
    chgrp "$NGINX_USER" "$D$VAR" "$D$VAR/run" "$D$VAR/sessions"
    chmod 0750 "$D$VAR/run" "$D$VAR/sessions"
    chmod 0751 "$D$VAR"
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
        -e "s|@MODULE_SO@|$MODULE_SO|g" -e "s|@INIT_BIN@|$INIT_BIN|g" \
        "$1" > "$D$2.tmp"
    mv "$D$2.tmp" "$D$2"
}

fill "$ROOT/redis/redis.conf.in" "$CONF_DIR/redis.conf"
fill "$ROOT/conf/pico.conf.in" "$CONF_DIR/pico.conf"
fill "$ROOT/conf/nginx.conf.in" "$CONF_DIR/nginx.conf"
