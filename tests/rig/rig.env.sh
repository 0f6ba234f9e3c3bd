# Settings shared by the rig's host-side scripts. Sourced, never run.
#
# Everything large (extracted packages, the root filesystem, initramfs images)
# lives under $RIG_CACHE so that a second run reuses it. `cargo xtask e2e`
# sets RIG_CACHE to <workspace>/target/rig/cache unless it is already set.
RIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RIG_CACHE=${RIG_CACHE:-$(cd "$RIG_DIR/../.." && pwd)/target/rig/cache}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SUITE=bookworm
XEN_PACKAGE=xen-hypervisor-4.17-amd64
XEN_TOOLS_PACKAGE=xen-utils-4.17

# Written by host-setup.sh: the kernel ABI linux-image-amd64 points at.
KERNEL_ABI_FILE=$RIG_CACHE/kernel-abi
EXTRACT_DIR=$RIG_CACHE/extract
ROOTFS_DIR=$RIG_CACHE/rootfs
ROOTFS_IMAGE=$RIG_CACHE/rootfs.ext4

mkdir -p "$RIG_CACHE"
KERNEL_ABI=
if [ -f "$KERNEL_ABI_FILE" ]; then KERNEL_ABI=$(cat "$KERNEL_ABI_FILE"); fi
KERNEL_TREE=$EXTRACT_DIR/linux

say() { echo "rig: $*"; }
die() { echo "rig: error: $*" >&2; exit 1; }

# stamp_matches NAME INPUT... : true when $RIG_CACHE/NAME.stamp records the
# same checksum of the given files (and kernel ABI) as now. Used to skip a
# rebuild when nothing it depends on changed.
inputs_checksum() { { echo "$KERNEL_ABI"; cat "$@"; } | sha256sum | cut -d' ' -f1; }
stamp_matches() {
  local name=$1; shift
  [ -f "$RIG_CACHE/$name.stamp" ] && [ "$(cat "$RIG_CACHE/$name.stamp")" = "$(inputs_checksum "$@")" ]
}
stamp_write() { local name=$1; shift; inputs_checksum "$@" > "$RIG_CACHE/$name.stamp"; }
