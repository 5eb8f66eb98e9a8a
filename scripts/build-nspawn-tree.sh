#!/usr/bin/env bash
# Builds (once) the Debian bookworm tree that test/systemd-nspawn.test.ts boots
# with `systemd-nspawn -b`, and caches it; a complete tree is reused as is.
#
#   sudo scripts/build-nspawn-tree.sh [DIR]      (default /var/cache/qmpc-test/bookworm)
#
# Environment: QMPC_DEBIAN_MIRROR (default: the first URI in
# /etc/apt/sources.list.d/debian.sources, else http://deb.debian.org/debian).
# Prints the tree's path on stdout when it is ready. Exit codes: 0 ready,
# 69 debootstrap missing, 77 not root, 1 the build failed (nothing half-built
# is left at DIR).
#
# The tree is booted read-only under `--volatile=overlay`, so several
# containers share it and nothing they do is written back here.
set -euo pipefail

DIR=${1:-/var/cache/qmpc-test/bookworm}
STAMP=$DIR/.qmpc-tree-complete
# Bump when the recipe below changes: an older cached tree is rebuilt.
RECIPE=3

[ "$(id -u)" = 0 ] || { echo "build-nspawn-tree: must run as root" >&2; exit 77; }
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ]; then echo "$DIR"; exit 0; fi
command -v debootstrap >/dev/null || { echo "build-nspawn-tree: debootstrap is not installed (apt-get install debootstrap systemd-container)" >&2; exit 69; }

mkdir -p "$(dirname "$DIR")"
# One builder at a time; the second waits (bounded) and then finds the stamp.
exec 9>"$DIR.lock"
flock -w 600 9 || { echo "build-nspawn-tree: another build holds $DIR.lock" >&2; exit 1; }
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ]; then echo "$DIR"; exit 0; fi

MIRROR=${QMPC_DEBIAN_MIRROR:-}
if [ -z "$MIRROR" ] && [ -r /etc/apt/sources.list.d/debian.sources ]; then
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}

TMP=$DIR.tmp.$$
cleanup() { rm -rf --one-file-system "$TMP"; }
trap cleanup EXIT
rm -rf --one-file-system "$DIR" "$TMP"
echo "build-nspawn-tree: debootstrap bookworm from $MIRROR into $TMP" >&2
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$TMP" "$MIRROR" >&2

# A container boots quickly and quietly: no consoles to spawn, no services that
# would compete with the test for the network or time, no machine id baked in
# (each boot gets a fresh one, so the three containers differ).
for u in getty@.service console-getty.service serial-getty@.service systemd-networkd-wait-online.service \
         systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
         systemd-resolved.service; do
  ln -sfn /dev/null "$TMP/etc/systemd/system/$u"
done
: > "$TMP/etc/machine-id"
rm -f "$TMP/var/lib/dbus/machine-id"
echo qmpc-test > "$TMP/etc/hostname"
# Persistent journal is pointless on a volatile root; keep it in /run.
mkdir -p "$TMP/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\n' > "$TMP/etc/systemd/journald.conf.d/qmpc-test.conf"
rm -rf "$TMP/var/cache/apt/archives/"*.deb "$TMP/var/lib/apt/lists/"* 2>/dev/null || true

echo "$RECIPE" > "$TMP/.qmpc-tree-complete"
mv "$TMP" "$DIR"
trap - EXIT
echo "$DIR"
