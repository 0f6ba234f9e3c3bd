//! Links the image with the PV layout of `rumpuser-xen/link.ld` when built
//! for `x86_64-unknown-none`; host builds (tests, clippy) link normally.

fn main() {
    image_link::pv_image();
}
