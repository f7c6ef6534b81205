#!/usr/bin/env bash
# make image: Debian root -> app + squashfs -> GPT disk image, all in build/out/<arch>/.
# REUSE_ROOTFS=1 keeps an existing Debian root folder (only the app and the images are rebuilt).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/firmware/image.conf"
export ARCH=${ARCH:-amd64}
out="$top/build/out/$ARCH"
version=${IMAGE_VERSION:-$VERSION}
bash "$top/build/dev-key.sh"
if [ "${REUSE_ROOTFS:-0}" != 1 ] || [ ! -d "$out/rootfs/usr" ]; then
  bash "$top/build/build-rootfs.sh"
fi
bash "$top/build/pack-root.sh" "$version" "$out/root-$version.squashfs"
bash "$top/build/make-disk.sh" "$out/root-$version.squashfs" "$out/disk.img"
printf '%s\n' "$version" > "$out/disk.version"
