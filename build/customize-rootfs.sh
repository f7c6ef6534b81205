#!/usr/bin/env bash
# mmdebstrap customize hook: $1 = the new root, $2 = output folder for kernel and initramfs.
set -euo pipefail
root=$1 out=$2
top=$(cd "$(dirname "$0")/.." && pwd)

(cd "$top/rootfs" && tar --exclude=README.md -cf - .) | tar -C "$root" -xf - --no-same-owner
chroot "$root" groupadd --system gpio
chroot "$root" useradd --system --user-group --groups dialout,gpio --home-dir /nonexistent \
  --shell /usr/sbin/nologin chargemanager
# the app's own units are enabled by pack-root.sh (the overlay may gain units after this root folder was built)
chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service systemd-timesyncd.service
# periodic jobs that make no sense on a read-only appliance (package lists, dpkg database backups)
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service; do
  chroot "$root" systemctl mask "$unit" >/dev/null 2>&1 || true
done
chroot "$root" systemctl set-default multi-user.target
# read-only root: an empty machine-id makes systemd use a transient one; logind needs the linger folder to exist
: > "$root/etc/machine-id"
mkdir -p "$root/data" "$root/var/lib/systemd/linger"
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"
# the kernel and initramfs live on the boot partition, not in the root slot
rm -rf "$root"/boot/*

# drivers a DIN-rail box never has (graphics, sound, wireless, media, infiniband, ...): ~half the root
kver=$(ls "$root/lib/modules")
kmod="$root/lib/modules/$kver/kernel"
rm -rf "$kmod/sound" "$kmod/drivers/gpu" "$kmod/drivers/media" "$kmod/drivers/infiniband" \
  "$kmod/drivers/net/wireless" "$kmod/net/wireless" "$kmod/net/mac80211" "$kmod/drivers/staging" \
  "$kmod/drivers/isdn" "$kmod/arch/x86/kvm" "$kmod/drivers/bluetooth" "$kmod/net/bluetooth" "$kmod/drivers/input/joystick" \
  "$kmod/drivers/input/touchscreen" "$kmod/drivers/hid" "$kmod/drivers/scsi/qla2xxx" "$kmod/drivers/scsi/lpfc" \
  "$kmod/drivers/net/ethernet/mellanox" "$kmod/drivers/net/ethernet/chelsio" "$kmod/drivers/net/ethernet/qlogic" \
  "$kmod/fs/btrfs" "$kmod/fs/xfs" "$kmod/fs/ocfs2" "$kmod/fs/gfs2" "$kmod/fs/nfs" "$kmod/fs/ceph"
chroot "$root" depmod "$kver"
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/locale/*
