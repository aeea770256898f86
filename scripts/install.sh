#!/bin/sh
# make install: pico on one host under systemd (docs/systemd.md).
#
# usage: install.sh   environment: DESTDIR PREFIX SYSCONFDIR STATEDIR
#                     UNITDIR LISTEN (see mk/systemd.mk for defaults)
# Binaries go to PREFIX, the three configurations to SYSCONFDIR (written
# by pico-conf.sh, as for make run, with the installed paths), the state
# folder is laid out in STATEDIR and the units go to UNITDIR. DESTDIR
# stages all of it below another root (what make test checks).
set -eu
cd "$(dirname "$0")/.."
D=${DESTDIR:-}
LIBDIR=$PREFIX/lib/pico
DOCDIR=$PREFIX/share/doc/pico

install -D -m 0755 bin/pico-backend "$D$PREFIX/sbin/pico-backend"
install -D -m 0755 bin/pico-init "$D$LIBDIR/pico-init"
install -D -m 0644 build/modules/ngx_pico_module.so \
    "$D$LIBDIR/ngx_pico_module.so"
install -D -m 0644 docs/systemd.md "$D$DOCDIR/systemd.md"

DESTDIR=$D CONF_DIR=$SYSCONFDIR MODULE_SO=$LIBDIR/ngx_pico_module.so \
    INIT_BIN=$LIBDIR/pico-init \
    scripts/pico-conf.sh "$STATEDIR" "$STATEDIR/images" "$LISTEN"

mkdir -p "$D$UNITDIR"
for u in deploy/systemd/*.in; do
    out=$D$UNITDIR/$(basename "$u" .in)
    sed -e "s|@SBINDIR@|$PREFIX/sbin|g" -e "s|@CONFDIR@|$SYSCONFDIR|g" \
        -e "s|@STATEDIR@|$STATEDIR|g" -e "s|@DOCDIR@|$DOCDIR|g" \
        "$u" >"$out.tmp"
    mv "$out.tmp" "$out"
done
install -m 0644 deploy/systemd/pico.target "$D$UNITDIR/pico.target"

if [ -z "$D" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
echo "installed; build the sandbox image with:" \
    "scripts/build-rootfs.sh $STATEDIR/images sandbox latest"
echo "then: systemctl enable --now pico.target"
