#!/usr/bin/env bash
# Write the appliance disk image to an SD card or eMMC. THIS ERASES THE WHOLE TARGET DEVICE.
# usage: tools/flash-image.sh build/out/amd64/disk.img /dev/sdX
#   Refuses partitions, mounted devices and the disk holding this machine's root; asks for the device name again.
set -euo pipefail
image=${1:-} target=${2:-}
if [ -z "$image" ] || [ -z "$target" ]; then
  echo "usage: $0 DISK.img /dev/DEVICE   (the whole device, e.g. /dev/sdb or /dev/mmcblk0)" >&2; exit 2
fi
[ -f "$image" ] || { echo "no image file $image" >&2; exit 1; }
[ -b "$target" ] || { echo "$target is not a block device" >&2; exit 1; }
[ "$(lsblk -ndo TYPE "$target")" = disk ] || { echo "$target is not a whole disk (give /dev/sdX, not a partition)" >&2; exit 1; }
root_disk=$(lsblk -ndo PKNAME "$(findmnt -no SOURCE /)" 2>/dev/null || true)
if [ -n "$root_disk" ] && [ "/dev/$root_disk" = "$target" ]; then
  echo "$target holds this machine's root file system: refusing" >&2; exit 1
fi
if lsblk -nro MOUNTPOINT "$target" | grep -q .; then
  echo "$target has mounted partitions; unmount them first:" >&2
  lsblk -o NAME,SIZE,MOUNTPOINT "$target" >&2; exit 1
fi
image_bytes=$(stat -c %s "$image")
target_bytes=$(blockdev --getsize64 "$target")
if [ "$image_bytes" -gt "$target_bytes" ]; then
  echo "$target ($target_bytes bytes) is smaller than the image ($image_bytes bytes)" >&2; exit 1
fi
echo "WARNING: everything on $target will be erased:"
lsblk -o NAME,SIZE,MODEL,SERIAL,TRAN "$target"
read -r -p "Type the device name ($target) to continue: " answer
[ "$answer" = "$target" ] || { echo "not confirmed; nothing written" >&2; exit 1; }
dd if="$image" of="$target" bs=4M conv=fsync,sparse status=progress
sync
echo "done: $target holds the appliance image (data partition is formatted on first boot)"
