#!/bin/bash
# The busybox initramfs that boots dom0 and the Linux driver domain (it
# switch_roots into the root filesystem) and that *is* the small PV guests.
# Outputs, in $RIG_CACHE:
#   initramfs.cpio.gz   busybox, the Xen frontend modules, our scripts
#   tools.ext4          fio and iperf3 for the guests (see below)
set -euo pipefail
. "$(dirname "$0")/rig.env.sh"
[ -n "$KERNEL_ABI" ] || die "run host-setup.sh first"
[ -f "$ROOTFS_DIR/usr/bin/fio" ] || die "run build-rootfs.sh first (fio comes from the root filesystem)"

inputs=("$0" "$RIG_DIR/guest/initramfs-init" "$RIG_DIR/guest/domu-steps" "$ROOTFS_DIR/.rig-debootstrap")
if stamp_matches initramfs "${inputs[@]}" && [ -f "$RIG_CACHE/tools.ext4" ]; then
  say "initramfs up to date"
  exit 0
fi

base=$RIG_CACHE/initramfs-root
rm -rf "$base"
mkdir -p "$base"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,newroot,tmp,etc,lib/modules/$KERNEL_ABI}
cp /bin/busybox "$base/bin/busybox"
install -m 755 "$RIG_DIR/guest/initramfs-init" "$base/init"
install -m 755 "$RIG_DIR/guest/domu-steps" "$base/rig-domu"
# The tools disk brings its own dynamic loader; programs look for it here.
mkdir -p "$base/lib64"
ln -s /opt/rig-tools/lib/ld-linux-x86-64.so.2 "$base/lib64/ld-linux-x86-64.so.2"

# Modules and everything they depend on, resolved against the kernel's own
# modules.dep (the host's kernel is not involved).
# The .deb ships no modules.dep; make one for the unpacked tree.
[ -f "$KERNEL_TREE/lib/modules/$KERNEL_ABI/modules.dep" ] || depmod -b "$KERNEL_TREE" "$KERNEL_ABI"
modules="virtio_pci virtio_blk xen-blkfront ext4 crc32c_generic xen-netfront"
for module in $modules; do
  modprobe -d "$KERNEL_TREE" -S "$KERNEL_ABI" --show-depends "$module" | awk '$1 == "insmod" {print $2}'
done | sort -u | while read -r file; do
  relative=${file#"$KERNEL_TREE"/}
  mkdir -p "$base/$(dirname "$relative")"
  cp "$file" "$base/$relative"
done
cp "$KERNEL_TREE/lib/modules/$KERNEL_ABI"/modules.{order,builtin,builtin.modinfo} "$base/lib/modules/$KERNEL_ABI/"
depmod -b "$base" "$KERNEL_ABI"
(cd "$base" && find . | cpio -o -H newc --quiet) | gzip -1 > "$RIG_CACHE/initramfs.cpio.gz"

# Tools disk: fio and iperf3 with every shared library they load, taken
# from the root filesystem. fio drags in ceph, gluster and ICU (about 80 MiB),
# far too much to unpack into every guest's RAM, so the tools travel as a
# small read-only ext4 image that a guest gets as xvdz and mounts at
# /opt/rig-tools (guest/domu-steps, rig.tools=1).
tools=$RIG_CACHE/tools-root
rm -rf "$tools"
mkdir -p "$tools/bin" "$tools/lib"
cp "$ROOTFS_DIR/usr/bin/fio" "$ROOTFS_DIR/usr/bin/iperf3" "$tools/bin/"
cp -L "$ROOTFS_DIR/lib64/ld-linux-x86-64.so.2" "$tools/lib/"
chroot "$ROOTFS_DIR" ldd /usr/bin/fio /usr/bin/iperf3 | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  while read -r library; do cp -L "$ROOTFS_DIR$library" "$tools/lib/"; done
rm -f "$RIG_CACHE/tools.ext4"
mke2fs -q -t ext4 -L rigtools -d "$tools" "$RIG_CACHE/tools.ext4" "$(( $(du -sm "$tools" | cut -f1) + 16 ))M"

stamp_write initramfs "${inputs[@]}"
say "initramfs $(du -h "$RIG_CACHE/initramfs.cpio.gz" | cut -f1), tools disk $(du -h --apparent-size "$RIG_CACHE/tools.ext4" | cut -f1)"
