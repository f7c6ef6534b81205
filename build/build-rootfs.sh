#!/usr/bin/env bash
# Debian root file system of the appliance, as a folder: build/out/<arch>/rootfs (+ vmlinuz, initrd.img).
# mmdebstrap (minbase) + firmware/packages.txt + the rootfs/ overlay, user, enabled units, trimmed kernel modules.
# The app itself is added later by pack-root.sh, so app changes do not need a new Debian root.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/firmware/image.conf"
ARCH=${ARCH:-amd64}
out="$top/build/out/$ARCH"
[ "$(id -u)" -eq 0 ] || { echo "build-rootfs.sh: must run as root (mmdebstrap --mode=root)" >&2; exit 1; }
mkdir -p "$out"

if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
  # a fresh machine has neither the binfmt_misc mount nor the qemu registration
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable "qemu-$(dpkg-architecture -a"$ARCH" -qDEB_HOST_GNU_CPU 2>/dev/null)" || true
fi

pkgs=$(sed -e 's/#.*//' -e "s/@ARCH@/$ARCH/" "$top/firmware/packages.txt" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
rm -rf "$out/rootfs"
mkdir -p "$out/rootfs"
mmdebstrap --mode=root --variant=minbase --arch="$ARCH" --include="$pkgs" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --setup-hook='mkdir -p "$1/etc/initramfs-tools" && cp -a '"$top"'/rootfs/etc/initramfs-tools/. "$1/etc/initramfs-tools/"' \
  --customize-hook='bash '"$top"'/build/customize-rootfs.sh "$1" '"$out" \
  "$SUITE" "$out/rootfs" "$MIRROR"
echo "rootfs: $(du -sh "$out/rootfs" | cut -f1) in $out/rootfs"
