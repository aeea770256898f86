#!/bin/sh
# Builds the root filesystem local sandboxes run on: a minimal Debian
# bookworm made by mmdebstrap from deploy/sandbox/packages.txt (the same
# list the Kubernetes sandbox image uses), customised for pico:
#
#   - user `sandbox` (uid 1000, password `sandbox`, bash)
#   - sshd configured for inetd mode: pico-init runs `sshd -i` per
#     connection; host key and authorized_keys come from a per-session
#     read-only mount at /etc/ssh/pico
#   - every mount point a sandbox needs exists already, because sandboxes
#     share this tree read-only and runc must never write to it
#
# The result is <IMAGES_DIR>/<NAME>_<TAG>/rootfs. It is built in a
# temporary folder and renamed into place when complete, and skipped when
# its completion stamp exists. The stamp records a hash of this script and
# the package list; when they changed since, a warning says so, and
# REBUILD=1 rebuilds. Rebuilding replaces the tree under running
# sandboxes, which is why it never happens on its own: stop them first.
#
# usage: [REBUILD=1] build-rootfs.sh IMAGES_DIR NAME TAG
set -eu

[ $# -eq 3 ] || { echo "usage: $0 IMAGES_DIR NAME TAG" >&2; exit 2; }
IMAGES=$1 NAME=$2 TAG=$3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKGLIST=$ROOT/deploy/sandbox/packages.txt
case "$NAME$TAG" in
*/* | *..* | "") echo "build-rootfs: bad name or tag" >&2; exit 2 ;;
esac

DEST=$IMAGES/${NAME}_$TAG
STAMP=$DEST/.complete
# The stamp records what built the tree, so editing this script or the
# package list rebuilds it.
SUM=$(cat "$0" "$PKGLIST" | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "${REBUILD:-0}" != 1 ]; then
    if [ "$(cat "$STAMP")" != "$SUM" ]; then
        echo "build-rootfs: $DEST was built from an older build-rootfs.sh" \
            "or package list; with no sandboxes running:" \
            "REBUILD=1 make rootfs" >&2
    fi
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "build-rootfs: must run as root (mmdebstrap, chroot)" >&2
    exit 1
fi

PKGS=$(grep -v '^[[:space:]]*#' "$PKGLIST" | tr -s ' \n' ',' | sed 's/^,//;s/,$//')
mkdir -p "$IMAGES"
TMP=$(mktemp -d "$IMAGES/.${NAME}_$TAG.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
R=$TMP/rootfs

echo "build-rootfs: mmdebstrap bookworm ($PKGS) -> $DEST"
mmdebstrap --quiet --variant=minbase --include="$PKGS" \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$R"

# --- the sandbox user --------------------------------------------------
chroot "$R" useradd --uid 1000 --user-group --create-home \
    --home-dir /home/sandbox --shell /bin/bash sandbox
echo 'sandbox:sandbox' | chroot "$R" chpasswd

# --- mount points (the tree is read-only at run time) ------------------
mkdir -p "$R/workspace" "$R/etc/ssh/pico" "$R/.pico"
: >"$R/.pico/init"
chmod 0755 "$R/.pico/init"
chown 1000:1000 "$R/workspace" "$R/home/sandbox"

# --- sshd --------------------------------------------------------------
# Keys made by the package would be shared by every sandbox: each session
# gets its own instead.
rm -f "$R"/etc/ssh/ssh_host_*
cat >"$R/etc/ssh/sshd_config" <<'EOF'
# pico sandbox sshd. pico-init (PID 1) accepts connections on the socket
# the backend hands it and runs `sshd -i` for each, so there is no
# listener, no pid file and no daemon here.
HostKey /etc/ssh/pico/ssh_host_ed25519_key
AuthorizedKeysFile /etc/ssh/pico/authorized_keys
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers sandbox
UsePAM no
PrintMotd no
PrintLastLog no
PidFile none
AcceptEnv LANG LC_*
X11Forwarding no
# SFTP starts where shells start.
Subsystem sftp internal-sftp -d /workspace
EOF

# Sessions start in /workspace. sshd always starts in $HOME, and Debian's
# bash reads /etc/bash.bashrc first for ssh sessions (interactive ones and
# `ssh host cmd` alike, SSH_SOURCE_BASHRC), so the top-level shell of a
# session moves there; nested shells and cd's of the user are untouched.
BASHRC=$R/etc/bash.bashrc
{
    cat <<'EOF'
# pico: ssh sessions start in /workspace (top-level shell only).
if [ "${SHLVL:-1}" -le 1 ] && [ -n "${SSH_CONNECTION:-}" ] &&
   [ "$PWD" = "$HOME" ] && [ -d /workspace ]; then
    cd /workspace
fi
EOF
    cat "$BASHRC"
} >"$BASHRC.new"
mv "$BASHRC.new" "$BASHRC"

# --- smaller -----------------------------------------------------------
rm -rf "$R"/var/cache/apt/* "$R"/var/lib/apt/lists/* "$R"/var/log/*.log \
    "$R"/var/cache/debconf/*-old "$R"/var/lib/dpkg/*-old

printf '%s\n' "$SUM" >"$TMP/.complete"
if [ -e "$DEST" ]; then
    mv "$DEST" "$DEST.old.$$"
    rm -rf "$DEST.old.$$"
fi
mv "$TMP" "$DEST"
trap - EXIT
chmod 0755 "$DEST"
echo "build-rootfs: done, $(du -sh "$DEST/rootfs" 2>/dev/null | cut -f1) in $DEST/rootfs"
