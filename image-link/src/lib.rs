//! How the driver domain images are linked. Each image crate's `build.rs`
//! calls [`pv_image`], and a domain that can hold NetBSD's drivers calls
//! [`netbsd_archives`] with the rump kernel components it uses.
//!
//! Layer: a build-time helper under the image crates (`domains/*`, and
//! `rumpuser-xen` for its test image); nothing of it is in an image. It only prints
//! `cargo:` instructions, and only when building for `x86_64-unknown-none`:
//! host builds of the same crates (tests, clippy) link normally.

use std::path::{Path, PathBuf};

fn building_image() -> bool {
    std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none")
}

/// Links the image (every binary of the crate) with the PV layout of
/// `rumpuser-xen/link.ld`.
pub fn pv_image() {
    pv_layout("rustc-link-arg");
}

/// [`pv_image`] for a crate whose binaries are images beside a library
/// that is not (`rumpuser-xen` and its test image).
pub fn pv_image_bins() {
    pv_layout("rustc-link-arg-bins");
}

fn pv_layout(instruction: &str) {
    println!("cargo:rerun-if-changed=build.rs");
    if !building_image() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rumpuser-xen/link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:{instruction}=-T{}", script.display());
    // The domain builder loads the image at its link address and applies no
    // relocations, so it must be a plain static executable, not static-PIE.
    println!("cargo:{instruction}=--no-pie");
    println!("cargo:{instruction}=-zmax-page-size=4096");
    println!("cargo:{instruction}=--gc-sections");
}

/// The rump kernel components of `librump*.a` an image needs, by archive
/// name without `lib` and `.a` (`rumpdev_virtio_ld`).
pub type Components<'a> = &'a [&'a str];

/// When the crate's `netbsd` feature is on, links the archives
/// `components` from the directory `RUMP_LIBDIR` names, whole: a rump
/// kernel component registers itself through linker sets
/// (`link_set_rump_components` and others), which nothing else refers to.
/// Stops the build, saying what is missing, when an archive is not in the
/// directory. Without `RUMP_LIBDIR` it only warns, so that the code can be
/// checked (`cargo clippy --features netbsd`); linking then fails on the
/// rump kernel's symbols.
pub fn netbsd_archives(components: Components<'_>) {
    println!("cargo:rerun-if-env-changed=RUMP_LIBDIR");
    if !building_image() || std::env::var_os("CARGO_FEATURE_NETBSD").is_none() {
        return;
    }
    let Some(libdir) = std::env::var_os("RUMP_LIBDIR").map(PathBuf::from) else {
        println!(
            "cargo:warning=RUMP_LIBDIR is not set: the netbsd feature needs NetBSD's rump \
             kernel archives to link (see docs/rumpuser.md)"
        );
        return;
    };
    let missing = missing_archives(&libdir, components);
    if !missing.is_empty() {
        panic!(
            "RUMP_LIBDIR {} lacks {}: this image needs the rump kernel components {}",
            libdir.display(),
            missing.join(", "),
            components.join(" ")
        );
    }
    println!("cargo:rustc-link-search=native={}", libdir.display());
    for component in components {
        println!(
            "cargo:rerun-if-changed={}",
            libdir.join(archive_name(component)).display()
        );
        println!("cargo:rustc-link-lib=static:+whole-archive,-bundle={component}");
    }
    // The bounds `__start_link_set_*`/`__stop_link_set_*` are how NetBSD
    // walks its linker sets; they must keep their sections alive.
    println!("cargo:rustc-link-arg=-znostart-stop-gc");
}

fn archive_name(component: &str) -> String {
    format!("lib{component}.a")
}

/// The archives of `components` that `libdir` does not hold.
fn missing_archives(libdir: &Path, components: Components<'_>) -> Vec<String> {
    components
        .iter()
        .map(|component| archive_name(component))
        .filter(|archive| !libdir.join(archive).is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_archives_are_named() {
        let directory =
            std::env::temp_dir().join(format!("image-link-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(directory.join("librump.a"), b"!<arch>\n").unwrap();
        assert_eq!(
            missing_archives(&directory, &["rump", "rumpvfs"]),
            ["librumpvfs.a"]
        );
        assert!(missing_archives(&directory, &["rump"]).is_empty());
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
