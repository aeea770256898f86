#!/bin/sh
# Offline check of deploy/systemd: `make install` into a staging root,
# then `systemd-analyze verify --root` on every unit it installed. Any
# line systemd prints (an unknown key, a bad value, a missing binary)
# fails the check. --selftest first shows the check a unit with a bad
# KillMode and one whose binary is missing: both must be refused.
#
# usage: check_systemd.sh [--selftest] STAGING_DIR
set -eu
cd "$(dirname "$0")/../.."
selftest=0
[ "${1:-}" = --selftest ] && { selftest=1; shift; }
stage=$1
rm -rf "$stage"
mkdir -p "$stage/usr/lib/systemd" "$stage/usr/sbin" "$stage/usr/bin" "$stage/bin"
# What the units name outside pico, and the system's own units (verify
# resolves the default dependencies, sysinit.target and the like).
cp -a /usr/lib/systemd/system "$stage/usr/lib/systemd/"
cp /usr/sbin/nginx "$stage/usr/sbin/"
cp /usr/bin/redis-server "$stage/usr/bin/"
cp /bin/kill "$stage/bin/"

DESTDIR=$stage PREFIX=/usr/local SYSCONFDIR=/etc/pico STATEDIR=/var/lib/pico \
    UNITDIR=/etc/systemd/system LISTEN=0.0.0.0:8080 \
    scripts/install.sh >/dev/null

verify() { # verify UNIT...: 0 when systemd says nothing at all
    out=$(systemd-analyze verify --man=no --root="$stage" "$@" 2>&1) || true
    [ -z "$out" ] && return 0
    printf '%s\n' "$out"
    return 1
}

units=$(cd "$stage" && ls etc/systemd/system/pico*)
if [ "$selftest" = 1 ]; then
    bad=$stage/etc/systemd/system/pico-selftest.service
    sed 's/^KillMode=mixed/KillMode=mixd/' \
        "$stage/etc/systemd/system/pico-backend.service" >"$bad"
    if verify /etc/systemd/system/pico-selftest.service >/dev/null; then
        echo "check_systemd: selftest: a bad KillMode was not refused" >&2
        exit 1
    fi
    sed 's|^ExecStart=.*|ExecStart=/usr/local/sbin/pico-missing|' \
        "$stage/etc/systemd/system/pico-backend.service" >"$bad"
    if verify /etc/systemd/system/pico-selftest.service >/dev/null; then
        echo "check_systemd: selftest: a missing binary was not refused" >&2
        exit 1
    fi
    rm -f "$bad"
fi
for u in $units; do
    verify "/$u" || { echo "check_systemd: $u refused" >&2; exit 1; }
done
# The configuration install wrote names the installed files, not the checkout.
for f in pico.conf nginx.conf redis.conf; do
    if grep -q "$PWD" "$stage/etc/pico/$f"; then
        echo "check_systemd: /etc/pico/$f names the checkout" >&2
        exit 1
    fi
done
echo "check_systemd: $(echo "$units" | wc -w) units verified"
