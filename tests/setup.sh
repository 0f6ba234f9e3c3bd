#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine (run as root) to build and test everything:
# Debian packages, the bare-metal Rust target, and cargo tools. Idempotent.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# libxen-dev: Xen's public headers (bindgen input).  libclang-dev/clang: bindgen.
# gcc-multilib: the 32-bit layout checks.  binutils: objcopy and nm for the
# images.  g++: libFuzzer, built by the fuzz targets.  The rest: the
# real-Xen rig in QEMU.
# qemu-utils is deliberately not named: machines may carry a newer one.
apt-get install -y -qq --no-install-recommends \
    libxen-dev libclang-dev clang gcc g++ make binutils gcc-multilib libc6-dev \
    qemu-system-x86 debootstrap busybox-static cpio e2fsprogs kmod perl \
    ca-certificates xz-utils file >/dev/null

rustup target add x86_64-unknown-none
rustup component add rust-src clippy rustfmt

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
echo "setup: done"
