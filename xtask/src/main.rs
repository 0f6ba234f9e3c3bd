//! `cargo xtask`: the one entry point for building images and running the rig.
fn main() {
    eprintln!("usage: cargo xtask <build|e2e|bench>");
    std::process::exit(2);
}
