//! Links the image with the PV layout of `rumpuser-xen/link.ld` when built
//! for `x86_64-unknown-none` (host builds, for tests and clippy, link
//! normally), and with feature `netbsd` the rump kernel components of
//! NetBSD's wm(4) Ethernet driver and of bpf(4), through which the domain
//! takes and sends its frames.

fn main() {
    image_link::pv_image();
    image_link::netbsd_archives(&[
        "rump",
        "rumpvfs",
        "rumpdev",
        "rumpdev_bpf",
        "rumpnet",
        "rumpnet_net",
        "rumpdev_pci",
        "rumpdev_miiphy",
        "rumpdev_pci_if_wm",
    ]);
}
