#!/bin/sh
# Installs the Debian packages pico builds, runs and tests with, if any is
# missing. Quiet and quick when everything is there already.
set -eu

PKGS="build-essential pkg-config clang libclang-rt-14-dev valgrind
clang-format clang-tidy cppcheck
nginx nginx-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev
libssh-dev libssl-dev libmicrohttpd-dev libcmocka-dev
redis-server runc runsc mmdebstrap openssh-client openssh-sftp-server
python3 python3-pytest python3-paramiko python3-yaml python3-venv
python3-pip python3-setuptools jq curl iproute2
openssl e2fsprogs systemd procps util-linux prometheus
slirp4netns nftables dnsmasq-base
chromium strace"

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = "installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "pico: missing Debian packages:$missing" >&2
    echo "pico: run as root, or: sudo apt-get install$missing" >&2
    exit 1
fi
echo "pico: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
