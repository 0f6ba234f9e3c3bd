//! `cargo xtask build`: the driver domain images.
//!
//! Each domain is a binary crate built for `x86_64-unknown-none`; its ELF is
//! copied to `target/domains/<name>`, which is what `xl-configs/<name>.cfg`
//! boots, without its debug information (`objcopy --strip-debug`: the
//! symbol table stays, for crash reports and `xenctx`). The unstripped ELF
//! stays in `target/x86_64-unknown-none/release/` for `addr2line`. Link settings (entry point, linker script)
//! belong to the domain crates and `rumpuser-xen`, not to this task.
//! Test images (`rig::TEST_IMAGES`: `rumpuser-smoke`, a binary of
//! `rumpuser-xen`) are built and placed the same way, for the rig tests
//! that boot them.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::rig::{DOMAIN_IMAGES, TEST_IMAGES, TEST_IMAGE_PACKAGE};

const TARGET: &str = "x86_64-unknown-none";

pub fn build(root: &Path) -> Result<(), String> {
    let libdir = std::env::var_os("RUMP_LIBDIR").map(std::path::PathBuf::from);
    let archives = match &libdir {
        Some(libdir) => Some(rump_archives(libdir)?),
        None => None,
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--release", "--target", TARGET]);
    for name in DOMAIN_IMAGES {
        command.args(["-p", name]);
    }
    command.args(["-p", TEST_IMAGE_PACKAGE]);
    if archives.is_some() {
        // The domains' build scripts link the archives of RUMP_LIBDIR
        // (inherited from our environment) that their drivers need.
        command.args(["--features", &NETBSD_FEATURES.join(",")]);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the domain images failed ({status})"));
    }
    let destination = root.join("target/domains");
    fs::create_dir_all(&destination).map_err(|e| format!("{}: {e}", destination.display()))?;
    for name in DOMAIN_IMAGES.iter().chain(TEST_IMAGES) {
        let built = root.join("target").join(TARGET).join("release").join(name);
        let bytes = fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
        check_xen_pv_image(&bytes).map_err(|problem| format!("{}: {problem}", built.display()))?;
        let image = destination.join(name);
        fs::write(&image, &bytes).map_err(|e| format!("{}: {e}", image.display()))?;
        strip_debug(&image)?;
        let size = fs::metadata(&image)
            .map_err(|e| format!("{}: {e}", image.display()))?
            .len();
        println!("xtask: {} ({size} bytes)", image.display());
    }
    let marker = destination.join(NETBSD_MARKER);
    match (&libdir, &archives) {
        (Some(libdir), Some(archives)) => {
            let text = format!(
                "NetBSD rump kernel drivers linked from {} ({} archives there: {})\n\
                 images: {}\n",
                libdir.display(),
                archives.len(),
                archives.join(" "),
                NETBSD_FEATURES.join(" ")
            );
            fs::write(&marker, text).map_err(|e| format!("{}: {e}", marker.display()))?;
            println!(
                "xtask: NetBSD rump kernel tier built: {} hold NetBSD's drivers, linked from {} \
                 ({})",
                NETBSD_FEATURES.join(", "),
                libdir.display(),
                marker.display()
            );
        }
        _ => {
            if marker.exists() {
                fs::remove_file(&marker).map_err(|e| format!("{}: {e}", marker.display()))?;
            }
            println!(
                "xtask: NetBSD rump kernel tier skipped: RUMP_LIBDIR is not set \
                 (the images hold the native Rust drivers only; see docs/rumpuser.md)"
            );
        }
    }
    Ok(())
}

/// The image features that link NetBSD's drivers when `RUMP_LIBDIR` is set.
const NETBSD_FEATURES: &[&str] = &["rumpdisk/netbsd", "rumpnet/netbsd"];

/// Written to `target/domains/` when the images hold NetBSD's drivers, and
/// removed when they do not: what the rig's NetBSD tests look for.
pub const NETBSD_MARKER: &str = "netbsd-tier";

/// Removes the debug sections of the ELF at `image` in place.
fn strip_debug(image: &Path) -> Result<(), String> {
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(image)
        .status()
        .map_err(|e| format!("cannot run objcopy (binutils): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "objcopy --strip-debug {} failed ({status})",
            image.display()
        ))
    }
}

/// The `librump*.a` files of `libdir`, sorted; an error unless `librump.a`
/// is among them and each is an `ar` archive.
fn rump_archives(libdir: &Path) -> Result<Vec<String>, String> {
    let entries =
        fs::read_dir(libdir).map_err(|e| format!("RUMP_LIBDIR {}: {e}", libdir.display()))?;
    let mut archives = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("RUMP_LIBDIR {}: {e}", libdir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("librump") && name.ends_with(".a")) {
            continue;
        }
        let mut magic = [0u8; 8];
        let readable = fs::File::open(entry.path())
            .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut magic));
        if readable.is_err() || &magic != b"!<arch>\n" {
            return Err(format!(
                "RUMP_LIBDIR: {} is not an ar archive",
                entry.path().display()
            ));
        }
        archives.push(name);
    }
    archives.sort();
    if !archives.iter().any(|name| name == "librump.a") {
        return Err(format!(
            "RUMP_LIBDIR {} has no librump.a: not a directory of rump kernel archives",
            libdir.display()
        ));
    }
    Ok(archives)
}

/// Refuses an image `xl create` would refuse: not a 64-bit x86 ELF
/// executable, or without the `Xen` ELF notes (xen/include/public/elfnote.h)
/// that tell the domain builder how to load a PV kernel.
pub fn check_xen_pv_image(elf: &[u8]) -> Result<(), String> {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    if elf.get(..5) != Some(b"\x7fELF\x02") || elf.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    if u16_at(16) != Some(2) || u16_at(18) != Some(62) {
        return Err("not an x86_64 executable (ET_EXEC, EM_X86_64)".into());
    }
    let truncated = || "truncated ELF header".to_string();
    let program_headers = u64_at(32).ok_or_else(truncated)? as usize;
    let entry_size = u16_at(54).ok_or_else(truncated)? as usize;
    let count = u16_at(56).ok_or_else(truncated)? as usize;
    for index in 0..count {
        let header = program_headers + index * entry_size;
        const PT_NOTE: u32 = 4;
        if u32_at(header) != Some(PT_NOTE) {
            continue;
        }
        let offset = u64_at(header + 8).ok_or_else(truncated)? as usize;
        let size = u64_at(header + 32).ok_or_else(truncated)? as usize;
        let mut at = offset;
        while at + 12 <= offset + size {
            let (Some(name_size), Some(desc_size)) = (u32_at(at), u32_at(at + 4)) else {
                break;
            };
            let name = elf
                .get(at + 12..at + 12 + name_size as usize)
                .unwrap_or_default();
            if name == b"Xen\0" {
                return Ok(());
            }
            let align = |n: u32| (n as usize).div_ceil(4) * 4;
            at += 12 + align(name_size) + align(desc_size);
        }
    }
    Err("no Xen ELF notes (PT_NOTE named \"Xen\"): xl create cannot boot it as a PV kernel".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rump_libdir_needs_librump_and_real_archives() {
        let directory =
            std::env::temp_dir().join(format!("xtask-rump-libdir-{}", std::process::id()));
        fs::create_dir_all(&directory).unwrap();
        fs::write(directory.join("librumpvfs.a"), b"!<arch>\nrest").unwrap();
        fs::write(directory.join("notes.txt"), b"ignored").unwrap();
        assert!(rump_archives(&directory)
            .unwrap_err()
            .contains("no librump.a"));
        fs::write(directory.join("librump.a"), b"!<arch>\nrest").unwrap();
        assert_eq!(
            rump_archives(&directory).unwrap(),
            ["librump.a", "librumpvfs.a"]
        );
        fs::write(directory.join("librumpdev.a"), b"not an archive").unwrap();
        assert!(rump_archives(&directory)
            .unwrap_err()
            .contains("not an ar archive"));
        assert!(rump_archives(&directory.join("missing")).is_err());
        fs::remove_dir_all(&directory).unwrap();
    }

    /// A minimal ELF64 executable with one PT_NOTE holding one note.
    fn elf_with_note(note_name: &[u8]) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[16..18].copy_from_slice(&2u16.to_le_bytes());
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        let note_offset = elf.len();
        let mut note = Vec::new();
        note.extend_from_slice(&(note_name.len() as u32).to_le_bytes());
        note.extend_from_slice(&8u32.to_le_bytes());
        note.extend_from_slice(&6u32.to_le_bytes());
        note.extend_from_slice(note_name);
        while note.len() % 4 != 0 {
            note.push(0);
        }
        note.extend_from_slice(&[0; 8]);
        elf[64..68].copy_from_slice(&4u32.to_le_bytes());
        elf[72..80].copy_from_slice(&(note_offset as u64).to_le_bytes());
        elf[96..104].copy_from_slice(&(note.len() as u64).to_le_bytes());
        elf.extend_from_slice(&note);
        elf
    }

    #[test]
    fn an_elf_with_xen_notes_is_accepted() {
        assert_eq!(check_xen_pv_image(&elf_with_note(b"Xen\0")), Ok(()));
    }

    #[test]
    fn images_xl_cannot_boot_are_refused() {
        assert!(check_xen_pv_image(&elf_with_note(b"GNU\0")).is_err());
        assert!(check_xen_pv_image(b"MZ not an elf").is_err());
        assert!(check_xen_pv_image(&elf_with_note(b"Xen\0")[..70]).is_err());
        let mut aarch64 = elf_with_note(b"Xen\0");
        aarch64[18] = 183;
        assert!(check_xen_pv_image(&aarch64).is_err());
    }
}
