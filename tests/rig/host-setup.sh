#!/bin/bash
# Host preparation, idempotent:
#  1. install the host tools the rig needs from Debian (skipped when present);
#  2. fetch (apt-get download, never install) the Xen 4.17 hypervisor and the
#     Debian 6.1 kernel packages and unpack them under $RIG_CACHE/extract;
#  3. derive the boot artefacts: an uncompressed Xen ELF for QEMU's -kernel
#     (multiboot wants it gunzipped), the kernel bzImage for dom0 and an
#     uncompressed vmlinux ELF for the small guests (libxc then skips the
#     multi-second xz unpacking under TCG).
set -euo pipefail
. "$(dirname "$0")/rig.env.sh"
export DEBIAN_FRONTEND=noninteractive

# qemu-utils is deliberately absent: nothing here needs qemu-img, and some
# hosts carry a newer qemu-utils from backports that Debian 12's would fight.
HOST_PACKAGES="qemu-system-x86 debootstrap busybox-static cpio e2fsprogs kmod xz-utils ca-certificates"
missing=
for p in $HOST_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "installing host packages:$missing"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

mkdir -p "$RIG_CACHE/debs"
cd "$RIG_CACHE/debs"
chmod 777 .   # apt-get download drops privileges to _apt
resolve_kernel() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
kernel_package=$(resolve_kernel)
if [ -z "$kernel_package" ]; then
  apt-get update -qq
  kernel_package=$(resolve_kernel)
fi
[ -n "$kernel_package" ] || die "cannot resolve linux-image-amd64 from the apt sources"
abi=${kernel_package#linux-image-}

for p in "$kernel_package" "$XEN_PACKAGE"; do
  if ! ls "${p}"_*.deb >/dev/null 2>&1; then
    say "downloading $p"
    apt-get download -qq "$p" || { apt-get update -qq; apt-get download -qq "$p"; }
  fi
done
kernel_deb=$(ls "${kernel_package}"_*.deb | tail -1)
xen_deb=$(ls "${XEN_PACKAGE}"_*.deb | tail -1)

# Unpack only when the .debs differ from what was unpacked last time.
unpacked=$(sha256sum "$kernel_deb" "$xen_deb" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$RIG_CACHE/unpacked.stamp" 2>/dev/null)" != "$unpacked" ] || [ ! -f "$RIG_CACHE/vmlinux" ]; then
  say "unpacking $kernel_deb and $xen_deb"
  rm -rf "$EXTRACT_DIR"; mkdir -p "$EXTRACT_DIR"
  dpkg-deb -x "$kernel_deb" "$EXTRACT_DIR/linux"
  dpkg-deb -x "$xen_deb" "$EXTRACT_DIR/xen"
  gunzip -c "$EXTRACT_DIR"/xen/boot/xen-4.17-amd64.gz > "$RIG_CACHE/xen"
  cp "$EXTRACT_DIR/linux/boot/vmlinuz-$abi" "$RIG_CACHE/vmlinuz"
  # The bzImage payload is one xz stream; find its magic and unpack it to
  # get the plain vmlinux ELF (the same job as Linux's extract-vmlinux).
  offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ' "$RIG_CACHE/vmlinuz" | head -1 | cut -d: -f1 || true)
  [ -n "$offset" ] || die "no xz stream in $RIG_CACHE/vmlinuz"
  tail -c +$((offset + 1)) "$RIG_CACHE/vmlinuz" | xz -dc --single-stream > "$RIG_CACHE/vmlinux" 2>/dev/null || true
  head -c 4 "$RIG_CACHE/vmlinux" | grep -q ELF || die "extracted vmlinux is not an ELF"
  echo "$abi" > "$KERNEL_ABI_FILE"
  dpkg-deb -f "$xen_deb" Version > "$RIG_CACHE/xen-version"
  dpkg-deb -f "$kernel_deb" Version > "$RIG_CACHE/kernel-version"
  echo "$unpacked" > "$RIG_CACHE/unpacked.stamp"
fi
say "host ready: Xen $(cat "$RIG_CACHE/xen-version"), kernel $abi ($(cat "$RIG_CACHE/kernel-version")), $(qemu-system-x86_64 --version | head -1)"
