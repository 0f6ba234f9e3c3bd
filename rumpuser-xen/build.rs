//! Links the crate's binaries (the test image `rumpuser-smoke`) with the
//! PV layout of `link.ld` when built for `x86_64-unknown-none`; the library
//! and host builds are left alone.

fn main() {
    image_link::pv_image_bins();
}
