//! Links the image with the PV layout of `rumpuser-xen/link.ld` when built
//! for `x86_64-unknown-none` (host builds, for tests and clippy, link
//! normally), and with feature `netbsd` the rump kernel components of
//! NetBSD's ld@virtio disk driver.

fn main() {
    image_link::pv_image();
    image_link::netbsd_archives(&[
        "rump",
        "rumpvfs",
        "rumpdev",
        "rumpdev_disk",
        "rumpdev_pci",
        "rumpdev_pci_virtio",
        "rumpdev_virtio_ld",
    ]);
}
