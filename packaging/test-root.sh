#!/usr/bin/env bash
# A fresh Debian root for the package tests (tests/packages.rs): bookworm
# minbase with the packages the .deb depends on and recommends, and systemd
# (the unit is started by a real systemd under systemd-nspawn), from the
# Debian mirror.
# Usage: packaging/test-root.sh DIR (kept if it is already complete).
set -euo pipefail
dir=${1:?usage: test-root.sh DIR}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -x "$dir/usr/bin/dpkg" ] && [ -e "$dir/usr/lib/ipxe/undionly.kpxe" ] && [ -x "$dir/lib/systemd/systemd" ] && [ -e "$dir/.complete" ]; then
  echo "test-root: $dir is ready"
  exit 0
fi
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
debootstrap --variant=minbase --include=ipxe,iproute2,ipmitool,systemd,systemd-sysv,dbus bookworm "$dir" "$mirror"
touch "$dir/.complete"
echo "test-root: built $dir"
