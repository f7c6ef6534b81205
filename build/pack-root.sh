#!/usr/bin/env bash
# Adds the app (wheels built from requirements.txt and app/) to the Debian root folder and packs a read-only
# squashfs slot image with its release file and the update public key.
# usage: pack-root.sh VERSION OUTPUT.squashfs [EXTRA_PSEUDO_FILE]
#   EXTRA_PSEUDO_FILE: mksquashfs pseudo definitions added to this image only (used for test variants).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/firmware/image.conf"
ARCH=${ARCH:-amd64}
out="$top/build/out/$ARCH"
version=$1 image=$2 extra=${3:-}
PY=${PY:-$top/.venv/bin/python}
root="$out/rootfs"
[ -d "$root/usr" ] || { echo "pack-root.sh: no root folder $root (run build-rootfs.sh)" >&2; exit 1; }
[ -f "$out/keys/update-pub.pem" ] || { echo "pack-root.sh: no update key (run build/dev-key.sh)" >&2; exit 1; }

# the overlay again (REUSE_ROOTFS=1 keeps an older root folder); the initramfs parts only count at build-rootfs time
(cd "$top/rootfs" && tar --exclude=README.md --exclude=./etc/initramfs-tools -cf - .) | tar -C "$root" -xf - --no-same-owner
# host-side (no chroot, so also for another architecture)
systemctl --root="$root" enable --quiet chargemanager.service chargemanager-firstboot.service \
  chargemanager-health.service chargemanager-update.path

site="$root/usr/lib/chargemanager/python"
# any file of the app's tree counts (templates, scripts, style sheets are packaged too), except build leftovers
changed() {
  find "$top/app" "$top/requirements.txt" -newer "$out/wheels/.done" -type f \
    -not -path '*/__pycache__/*' -not -path "$top/app/build/*" -not -path '*.egg-info/*' | head -1
}
# wheels for the image's python (3.11, as the build's) and architecture, not the build machine's
pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
case "$ARCH" in amd64) plat=x86_64 ;; arm64) plat=aarch64 ;; *) echo "unsupported arch $ARCH" >&2; exit 1 ;; esac
target=(--only-binary=:all: --python-version "$pyver" --platform "manylinux_2_34_$plat" --platform "manylinux_2_28_$plat"
        --platform "manylinux_2_17_$plat" --platform "manylinux2014_$plat")
if [ ! -f "$out/wheels/.done" ] || [ -n "$(changed)" ]; then
  echo "pack-root.sh: building wheels ($( [ -f "$out/wheels/.done" ] && echo "changed: $(changed)" || echo "first build"))"
  rm -rf "$out/wheels" "$top/app/build"
  mkdir -p "$out/wheels"
  "$PY" -m pip download -q --disable-pip-version-check "${target[@]}" -r "$top/requirements.txt" -d "$out/wheels"
  "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$out/wheels" "$top/app"
  rm -rf "$top/app/build"
  touch "$out/wheels/.done"
fi
rm -rf "$site"
mkdir -p "$site"
"$PY" -m pip install -q --disable-pip-version-check --no-index --find-links "$out/wheels" --target "$site" \
  --no-compile "${target[@]}" chargemanager
rm -rf "$site/bin"
# the root is read-only: byte-compile now (python3.11 in the image, the same bytecode as the build's 3.11)
"$PY" -m compileall -q -j0 "$site" >/dev/null
echo /usr/lib/chargemanager/python > "$root/usr/lib/python3/dist-packages/chargemanager.pth"
install -D -m 0644 "$out/keys/update-pub.pem" "$root/usr/share/chargemanager/update-pub.pem"

pseudo=$(mktemp)
trap 'rm -f "$pseudo"' EXIT
release=$(printf '{"device_type": "%s-%s", "version": "%s"}' "$DEVICE_TYPE_PREFIX" "$ARCH" "$version")
printf "usr/lib/chargemanager/release.json f 644 0 0 printf '%%s\\\\n' '%s'\n" "$release" > "$pseudo"
settings=$(printf '{"good_tries": %s, "update_tries": %s, "health_timeout_s": %s}' "$GOOD_TRIES" "$UPDATE_TRIES" "$HEALTH_TIMEOUT_S")
printf "usr/lib/chargemanager/update.json f 644 0 0 printf '%%s\\\\n' '%s'\n" "$settings" >> "$pseudo"
if [ -n "$extra" ]; then cat "$extra" >> "$pseudo"; fi
rm -f "$image"
mksquashfs "$root" "$image" -noappend -quiet -no-progress -comp zstd -Xcompression-level 6 -no-xattrs -pf "$pseudo" >/dev/null
echo "root slot image $image: $(du -h "$image" | cut -f1), version $version"
