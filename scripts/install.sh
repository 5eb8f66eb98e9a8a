#!/usr/bin/env bash
# Installs qmpc on a bare-metal (systemd) host from this checkout.
#
#   sudo scripts/install.sh [--root DIR] [--config FILE] [--identity-key FILE] [--no-start]
#
# Lays out:
#   /usr/lib/qmpc/                  the daemon, engine, config examples, node_modules (with its Node 24)
#   /usr/bin/qmpc                   the CLI
#   /etc/systemd/system/qmpcd.service, /usr/lib/sysusers.d/qmpc.conf, /usr/lib/tmpfiles.d/qmpc.conf
#   /etc/qmpc/qmpcd.yaml            from --config, if given and not already present (never overwritten)
#   /var/lib/qmpc/identity.key      from --identity-key (the key whose peer id the committee names), 0600 qmpc
# then creates the qmpc user, the directories, reloads systemd and (unless
# --no-start, or the config is missing) enables and starts qmpcd.
# Run `npm ci` in the checkout first: node_modules travels as is.
set -euo pipefail

ROOT=/ CONFIG= KEY= START=1
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --identity-key) KEY=$2; shift 2 ;;
    --no-start) START=0; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 64 ;;
  esac
done

SRC=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$SRC/node_modules/node/bin/node" ] || { echo "install.sh: run 'npm ci' in $SRC first (node_modules/node is missing)" >&2; exit 69; }
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 77; }

LIB=$ROOT/usr/lib/qmpc
install -d -m 0755 "$LIB" "$ROOT/usr/bin" "$ROOT/etc/systemd/system" "$ROOT/usr/lib/sysusers.d" "$ROOT/usr/lib/tmpfiles.d"
# Copy what runs; tests, benchmarks and git metadata stay behind.
for d in daemon protocols plugins config; do
  [ -d "$SRC/$d" ] && cp -a "$SRC/$d" "$LIB/"
done
cp -a "$SRC/package.json" "$SRC/README.md" "$LIB/"
rm -rf "$LIB/node_modules" && cp -a "$SRC/node_modules" "$LIB/node_modules"
# Test and build tools stay behind where npm is at hand (the pinned Node is a runtime dependency and stays).
if command -v npm >/dev/null; then
  (cd "$LIB" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
fi
chmod -R go-w "$LIB"

cat > "$ROOT/usr/bin/qmpc" <<'SH'
#!/bin/sh
exec /usr/lib/qmpc/node_modules/node/bin/node --max-semi-space-size=2 /usr/lib/qmpc/daemon/cli.ts "$@"
SH
chmod 0755 "$ROOT/usr/bin/qmpc"
# The unit runs the pinned Node directly (no shell in between, so signals and sd_notify reach it).
ln -sfn node_modules/node "$LIB/node"

install -m 0644 "$SRC/systemd/qmpcd.service" "$ROOT/etc/systemd/system/qmpcd.service"
install -m 0644 "$SRC/systemd/qmpc.sysusers" "$ROOT/usr/lib/sysusers.d/qmpc.conf"
install -m 0644 "$SRC/systemd/qmpc.tmpfiles" "$ROOT/usr/lib/tmpfiles.d/qmpc.conf"

if [ "$ROOT" = / ]; then
  systemd-sysusers qmpc.conf
  systemd-tmpfiles --create qmpc.conf
else
  systemd-sysusers --root="$ROOT" qmpc.conf
  systemd-tmpfiles --root="$ROOT" --create qmpc.conf
fi
if [ -n "$CONFIG" ] && [ ! -e "$ROOT/etc/qmpc/qmpcd.yaml" ]; then
  install -m 0640 "$CONFIG" "$ROOT/etc/qmpc/qmpcd.yaml"
  if [ "$ROOT" = / ]; then chgrp qmpc /etc/qmpc/qmpcd.yaml; else chroot "$ROOT" chgrp qmpc /etc/qmpc/qmpcd.yaml; fi
fi

if [ -n "$KEY" ]; then
  # The committee names this key's peer id; without it the daemon would create a key of its own and refuse to start.
  install -m 0600 "$KEY" "$ROOT/var/lib/qmpc/identity.key"
  if [ "$ROOT" = / ]; then chown qmpc:qmpc /var/lib/qmpc/identity.key; else chroot "$ROOT" chown qmpc:qmpc /var/lib/qmpc/identity.key; fi
fi

if [ "$ROOT" = / ]; then
  systemctl daemon-reload
  if [ ! -e /etc/qmpc/qmpcd.yaml ]; then
    echo "install.sh: installed; put the party's configuration in /etc/qmpc/qmpcd.yaml, then: systemctl enable --now qmpcd"
  elif [ "$START" = 1 ]; then
    systemctl enable --now qmpcd.service
  else
    echo "install.sh: installed with /etc/qmpc/qmpcd.yaml; start it with: systemctl enable --now qmpcd"
  fi
fi
