//! Driver domain image (built for `x86_64-unknown-none`).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("this image runs as a Xen PV domain; build it with `cargo xtask build`");
}
