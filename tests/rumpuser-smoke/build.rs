//! Links the image with the PV layout of `rumpuser-xen/link.ld` when built
//! for `x86_64-unknown-none`; host builds (tests, clippy) link normally.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = Path::new(&manifest).join("../../rumpuser-xen/link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg=-T{}", script.display());
    // The domain builder loads the image at its link address and applies no
    // relocations, so it must be a plain static executable, not static-PIE.
    println!("cargo:rustc-link-arg=--no-pie");
    println!("cargo:rustc-link-arg=-zmax-page-size=4096");
    println!("cargo:rustc-link-arg=--gc-sections");
}
