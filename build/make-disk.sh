#!/usr/bin/env bash
# GPT disk image: boot (ext4: kernel, initramfs, bootstate), rootA and rootB (the same factory squashfs in both),
# data (left empty: the appliance formats it on first boot). Sparse file, written without loop devices.
# usage: make-disk.sh ROOT.squashfs DISK.img
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/firmware/image.conf"
ARCH=${ARCH:-amd64}
out="$top/build/out/$ARCH"
squash=$1 disk=$2
mib=2048   # sectors per MiB
sq_bytes=$(stat -c %s "$squash")
if [ "$sq_bytes" -gt $((ROOT_SIZE_MIB * 1024 * 1024)) ]; then
  echo "make-disk.sh: $squash ($sq_bytes bytes) does not fit a ${ROOT_SIZE_MIB} MiB root slot" >&2; exit 1
fi

bootdir=$(mktemp -d)
trap 'rm -rf "$bootdir"' EXIT
cp "$out/vmlinuz" "$out/initrd.img" "$bootdir/"
printf 'BOOT_ORDER="A B"\nA_LEFT=%s\nB_LEFT=%s\nTRIAL=\nTRIAL_VERSION=\nLAST_FAILED=\nLAST_FAILED_VERSION=\n' "$GOOD_TRIES" "$GOOD_TRIES" > "$bootdir/bootstate"
printf '%s\n' "$KERNEL_CMDLINE" > "$bootdir/cmdline.txt"
cp "$bootdir/cmdline.txt" "$out/cmdline.txt"   # for qemu's direct kernel boot (tests/system)
rm -f "$out/boot.ext4"
mkfs.ext4 -q -L boot -d "$bootdir" "$out/boot.ext4" "${BOOT_SIZE_MIB}M"

total_mib=$((1 + BOOT_SIZE_MIB + 2 * ROOT_SIZE_MIB + DATA_SIZE_MIB + 1))
rm -f "$disk"
truncate -s "${total_mib}M" "$disk"
sed -e "s/@BOOT_SECTORS@/$((BOOT_SIZE_MIB * mib))/" -e "s/@ROOT_SECTORS@/$((ROOT_SIZE_MIB * mib))/g" \
    -e "s/@DATA_SECTORS@/$((DATA_SIZE_MIB * mib))/" "$top/firmware/partitions.sfdisk.in" | sfdisk -q "$disk"
put() { dd if="$1" of="$disk" bs=1M seek="$2" conv=notrunc,sparse status=none; }
put "$out/boot.ext4" 1
put "$squash" $((1 + BOOT_SIZE_MIB))
put "$squash" $((1 + BOOT_SIZE_MIB + ROOT_SIZE_MIB))
rm -f "$out/boot.ext4"
echo "disk image $disk: ${total_mib} MiB (boot ${BOOT_SIZE_MIB}, rootA/rootB ${ROOT_SIZE_MIB} each, data ${DATA_SIZE_MIB})"
