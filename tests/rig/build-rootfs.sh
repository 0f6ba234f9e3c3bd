#!/bin/bash
# Root filesystem for dom0 and for the Linux reference driver domain:
# debootstrap (minbase) of Debian 12 plus the Xen 4.17 toolstack, fio and
# iperf3, the kernel's modules, and our PID 1 (guest/rootfs-init). Packed
# with `mke2fs -d` into $RIG_CACHE/rootfs.ext4 (no loop mounts). QEMU opens
# the image with snapshot=on, so every boot starts from the same bits.
set -euo pipefail
. "$(dirname "$0")/rig.env.sh"
[ -n "$KERNEL_ABI" ] || die "run host-setup.sh first"

PACKAGES=xen-utils-4.17,xen-utils-common,xenstore-utils,kmod,iproute2,bridge-utils,iputils-ping,procps,psmisc,e2fsprogs,fio,iperf3
BOOTSTRAP_STAMP=$ROOTFS_DIR/.rig-debootstrap
if [ "$(cat "$BOOTSTRAP_STAMP" 2>/dev/null)" != "$PACKAGES" ]; then
  say "debootstrap $DEBIAN_SUITE into $ROOTFS_DIR"
  rm -rf "$ROOTFS_DIR"
  debootstrap --variant=minbase --include="$PACKAGES" "$DEBIAN_SUITE" "$ROOTFS_DIR" "$DEBIAN_MIRROR" \
    > "$RIG_CACHE/debootstrap.log" 2>&1 || { tail -20 "$RIG_CACHE/debootstrap.log"; die "debootstrap failed"; }
  rm -rf "$ROOTFS_DIR"/usr/share/{doc,man,info,locale} "$ROOTFS_DIR"/var/cache/apt/archives/*.deb
  echo "$PACKAGES" > "$BOOTSTRAP_STAMP"
fi

if stamp_matches rootfs "$0" "$RIG_DIR/guest/rootfs-init" "$BOOTSTRAP_STAMP" && [ -f "$ROOTFS_IMAGE" ]; then
  say "rootfs image up to date"
  exit 0
fi

# Kernel modules, minus whole subsystems an emulated Xen host never loads.
rm -rf "$ROOTFS_DIR/lib/modules"
mkdir -p "$ROOTFS_DIR/lib/modules"
cp -a "$KERNEL_TREE/lib/modules/$KERNEL_ABI" "$ROOTFS_DIR/lib/modules/"
m=$ROOTFS_DIR/lib/modules/$KERNEL_ABI/kernel
rm -rf "$m"/sound "$m"/drivers/{gpu,media,staging,infiniband,bluetooth,iio,hid,usb,net/wireless,isdn,input} \
       "$m"/net/{wireless,mac80211,bluetooth}
depmod -b "$ROOTFS_DIR" "$KERNEL_ABI"

install -m 755 "$RIG_DIR/guest/rootfs-init" "$ROOTFS_DIR/sbin/rig-init"
echo rig > "$ROOTFS_DIR/etc/hostname"
sed -i 's/^root:[^:]*:/root::/' "$ROOTFS_DIR/etc/shadow"
mkdir -p "$ROOTFS_DIR"/{rig,var/log/xen/console,var/lib/xen,var/run/xen}
# No udev anywhere: xl (and xl devd) run the hotplug scripts themselves.
cat > "$ROOTFS_DIR/etc/xen/xl.conf" <<'XL'
autoballoon="off"
run_hotplug_scripts=1
XL

size_mb=$(( $(du -sm "$ROOTFS_DIR" | cut -f1) + 300 ))
rm -f "$ROOTFS_IMAGE"
mke2fs -q -t ext4 -L rigroot -d "$ROOTFS_DIR" "$ROOTFS_IMAGE" "${size_mb}M"
stamp_write rootfs "$0" "$RIG_DIR/guest/rootfs-init" "$BOOTSTRAP_STAMP"
say "rootfs image $ROOTFS_IMAGE (${size_mb} MiB, sparse)"
