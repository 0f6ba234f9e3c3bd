//! The `disk=` words of the command line (`extra=` in the xl config):
//! which disks to serve. `disk=NAME:SIZE` creates a RAM disk;
//! `disk=NAME:ssss:bb:dd.f[/NSID]` serves namespace NSID (default 1) of the
//! NVMe controller passed through at that PCI address (`nvme::DiskSpec`);
//! `disk=NAME:netbsd:UNIT` serves the raw disk of a NetBSD driver's unit
//! (`ld0`), in an image that holds NetBSD's drivers (`docs/rumpuser.md`).
//! The command line comes from whoever wrote the xl config, so it is
//! checked, and a bad word is reported and skipped rather than trusted.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Bytes per sector of the disks served (blkif sectors are 512 bytes).
pub const SECTOR_SIZE: u64 = 512;

/// The longest disk name (it becomes the `target=` of `xl block-attach`).
pub const MAX_NAME_LEN: usize = 32;

/// One RAM disk to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// The name vbds refer to in their `params` node.
    pub name: String,
    /// Size in 512-byte sectors.
    pub sectors: u64,
}

/// Why a `disk=` word was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSpecError {
    /// expected NAME:SIZE
    MissingSize,
    /// the name is empty, longer than 32 bytes, or not [A-Za-z0-9_-]
    BadName,
    /// the size is not a number with an optional K, M or G suffix
    BadSize,
    /// the size is zero, not a whole number of 512-byte sectors, or too large
    BadSizeValue,
    /// the same name appears twice
    DuplicateName,
}

impl fmt::Display for DiskSpecError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::MissingSize => "expected NAME:SIZE",
            Self::BadName => "the name is empty, longer than 32 bytes, or not [A-Za-z0-9_-]",
            Self::BadSize => "the size is not a number with an optional K, M or G suffix",
            Self::BadSizeValue => {
                "the size is zero, not a whole number of 512-byte sectors, or too large"
            }
            Self::DuplicateName => "the same name appears twice",
        })
    }
}

/// Parses one `NAME:SIZE` value (`ram0:64M`).
pub fn parse_disk(value: &str) -> Result<DiskSpec, DiskSpecError> {
    let (name, size) = value.split_once(':').ok_or(DiskSpecError::MissingSize)?;
    if !name_ok(name) {
        return Err(DiskSpecError::BadName);
    }
    let (digits, multiplier) = match size.as_bytes().last() {
        Some(b'K' | b'k') => (&size[..size.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&size[..size.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&size[..size.len() - 1], 1 << 30),
        _ => (size, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) || digits.len() > 12 {
        return Err(DiskSpecError::BadSize);
    }
    let number: u64 = digits.parse().map_err(|_| DiskSpecError::BadSize)?;
    let bytes = number
        .checked_mul(multiplier)
        .ok_or(DiskSpecError::BadSizeValue)?;
    // A RAM disk must fit in memory: 1 TiB is far beyond any domain here.
    if bytes == 0 || bytes % SECTOR_SIZE != 0 || bytes > 1 << 40 {
        return Err(DiskSpecError::BadSizeValue);
    }
    Ok(DiskSpec {
        name: name.into(),
        sectors: bytes / SECTOR_SIZE,
    })
}

/// Whether a `disk=` value names a PCI device rather than a size: a RAM
/// disk's size never holds a `:`, `.` or `/`, a PCI address always does.
pub fn is_nvme_word(value: &str) -> bool {
    !is_netbsd_word(value)
        && value
            .split_once(':')
            .is_some_and(|(_, rest)| rest.contains([':', '.', '/']))
}

/// Whether a `disk=` value names a NetBSD driver's unit (`NAME:netbsd:UNIT`).
pub fn is_netbsd_word(value: &str) -> bool {
    value
        .split_once(':')
        .is_some_and(|(_, rest)| rest.starts_with("netbsd:"))
}

/// One NetBSD disk to serve.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetbsdSpec {
    /// The name vbds refer to in their `params` node.
    pub name: String,
    /// The driver's unit, such as `ld0`.
    pub unit: String,
}

/// Why a NetBSD `disk=` word was refused.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetbsdSpecError {
    /// the name is empty, longer than 32 bytes, or not [A-Za-z0-9_-]
    BadName,
    /// the unit is not a driver name and a number, such as ld0
    BadUnit,
    /// the same name or unit appears twice
    Duplicate,
}

impl fmt::Display for NetbsdSpecError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::BadName => "the name is empty, longer than 32 bytes, or not [A-Za-z0-9_-]",
            Self::BadUnit => "the unit is not a driver name and a number, such as ld0",
            Self::Duplicate => "the same name or unit appears twice",
        })
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Every NetBSD `disk=` word of `command_line`, in order, refusing names
/// already taken by `taken` (the RAM and NVMe disks).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub fn parse_netbsd_command_line(
    command_line: &str,
    taken: &[&str],
) -> (Vec<NetbsdSpec>, Vec<(String, NetbsdSpecError)>) {
    let mut disks: Vec<NetbsdSpec> = Vec::new();
    let mut refused = Vec::new();
    for word in command_line.split_ascii_whitespace() {
        let Some(value) = word.strip_prefix("disk=") else {
            continue;
        };
        let Some((name, unit)) = value
            .split_once(':')
            .and_then(|(name, rest)| Some((name, rest.strip_prefix("netbsd:")?)))
        else {
            continue;
        };
        let digits = unit.trim_start_matches(|c: char| c.is_ascii_lowercase());
        let unit_ok = unit.len() <= 15
            && digits.len() < unit.len()
            && !digits.is_empty()
            && digits.bytes().all(|byte| byte.is_ascii_digit());
        let verdict = if !name_ok(name) {
            Err(NetbsdSpecError::BadName)
        } else if !unit_ok {
            Err(NetbsdSpecError::BadUnit)
        } else if taken.contains(&name)
            || disks
                .iter()
                .any(|disk| disk.name == name || disk.unit == unit)
        {
            Err(NetbsdSpecError::Duplicate)
        } else {
            Ok(NetbsdSpec {
                name: name.into(),
                unit: unit.into(),
            })
        };
        match verdict {
            Ok(spec) => disks.push(spec),
            Err(error) => refused.push((value.into(), error)),
        }
    }
    (disks, refused)
}

/// Every RAM `disk=` word of `command_line`, in order: the accepted specs
/// and the refused words with their reasons. NVMe words are left to
/// [`parse_nvme_command_line`].
pub fn parse_command_line(command_line: &str) -> (Vec<DiskSpec>, Vec<(String, DiskSpecError)>) {
    let mut disks: Vec<DiskSpec> = Vec::new();
    let mut refused = Vec::new();
    for word in command_line.split_ascii_whitespace() {
        let Some(value) = word.strip_prefix("disk=") else {
            continue;
        };
        if is_nvme_word(value) || is_netbsd_word(value) {
            continue;
        }
        match parse_disk(value) {
            Ok(disk) if disks.iter().any(|known| known.name == disk.name) => {
                refused.push((value.into(), DiskSpecError::DuplicateName));
            }
            Ok(disk) => disks.push(disk),
            Err(error) => refused.push((value.into(), error)),
        }
    }
    (disks, refused)
}

/// One NVMe namespace to serve.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeSpec {
    /// The name vbds refer to in their `params` node.
    pub name: String,
    /// The controller's host PCI address, as the xl config's `pci=` names it.
    pub address: pcidev::Bdf,
    /// The namespace id.
    pub nsid: u32,
}

/// Why an NVMe `disk=` word was refused.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvmeSpecError {
    /// The word does not parse (`nvme::DiskSpec`'s reason).
    Syntax(nvme::DiskSpecError),
    /// The same name appears twice, among RAM or NVMe disks.
    DuplicateName,
    /// The same controller appears twice (one driver per controller).
    DuplicateController,
}

impl fmt::Display for NvmeSpecError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(error) => write!(formatter, "{error}"),
            Self::DuplicateName => formatter.write_str("the same name appears twice"),
            Self::DuplicateController => formatter
                .write_str("the same controller appears twice (one namespace per controller)"),
        }
    }
}

/// Every NVMe `disk=` word of `command_line`, in order, refusing names
/// already taken by `ram_disks`. (The host build of the binary checks only
/// RAM disk words; these are used by the image.)
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub fn parse_nvme_command_line(
    command_line: &str,
    ram_disks: &[DiskSpec],
) -> (Vec<NvmeSpec>, Vec<(String, NvmeSpecError)>) {
    let mut disks: Vec<NvmeSpec> = Vec::new();
    let mut refused = Vec::new();
    for word in command_line.split_ascii_whitespace() {
        let Some(value) = word.strip_prefix("disk=") else {
            continue;
        };
        if !is_nvme_word(value) {
            continue;
        }
        let spec = match nvme::DiskSpec::parse(value) {
            Ok(spec) => spec,
            Err(error) => {
                refused.push((value.into(), NvmeSpecError::Syntax(error)));
                continue;
            }
        };
        if ram_disks.iter().any(|disk| disk.name == spec.name)
            || disks.iter().any(|disk| disk.name == spec.name)
        {
            refused.push((value.into(), NvmeSpecError::DuplicateName));
        } else if disks.iter().any(|disk| disk.address == spec.bdf) {
            refused.push((value.into(), NvmeSpecError::DuplicateController));
        } else {
            disks.push(NvmeSpec {
                name: spec.name.into(),
                address: spec.bdf,
                nsid: spec.nsid,
            });
        }
    }
    (disks, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_with_suffixes() {
        assert_eq!(
            parse_disk("ram0:64M"),
            Ok(DiskSpec {
                name: "ram0".into(),
                sectors: 64 * 2048
            })
        );
        assert_eq!(parse_disk("a:1k").map(|disk| disk.sectors), Ok(2));
        assert_eq!(parse_disk("b-1_x:2G").map(|disk| disk.sectors), Ok(4 << 20));
        assert_eq!(parse_disk("c:4096").map(|disk| disk.sectors), Ok(8));
    }

    #[test]
    fn refuses_bad_words() {
        assert_eq!(parse_disk("ram0"), Err(DiskSpecError::MissingSize));
        assert_eq!(parse_disk(":1M"), Err(DiskSpecError::BadName));
        assert_eq!(parse_disk("a/b:1M"), Err(DiskSpecError::BadName));
        let long_name = alloc::format!("{}:1M", "x".repeat(MAX_NAME_LEN + 1));
        assert_eq!(parse_disk(&long_name), Err(DiskSpecError::BadName));
        assert_eq!(parse_disk("a:"), Err(DiskSpecError::BadSize));
        assert_eq!(parse_disk("a:M"), Err(DiskSpecError::BadSize));
        assert_eq!(parse_disk("a:-1M"), Err(DiskSpecError::BadSize));
        assert_eq!(parse_disk("a:1T"), Err(DiskSpecError::BadSize));
        assert_eq!(parse_disk("a:0M"), Err(DiskSpecError::BadSizeValue));
        assert_eq!(parse_disk("a:1000"), Err(DiskSpecError::BadSizeValue));
        assert_eq!(
            parse_disk("a:999999999999G"),
            Err(DiskSpecError::BadSizeValue)
        );
    }

    #[test]
    fn command_line_keeps_order_and_reports_refusals() {
        let (disks, refused) =
            parse_command_line("loglevel=debug disk=ram0:64M disk=bad disk=ram1:16M disk=ram0:1M");
        let names: Vec<&str> = disks.iter().map(|disk| disk.name.as_str()).collect();
        assert_eq!(names, ["ram0", "ram1"]);
        assert_eq!(
            refused,
            [
                ("bad".into(), DiskSpecError::MissingSize),
                ("ram0:1M".into(), DiskSpecError::DuplicateName)
            ]
        );
    }

    #[test]
    fn netbsd_words_name_a_unit() {
        let line = "disk=ram0:64M disk=vb:netbsd:ld0 disk=nv:0000:00:05.0 disk=ram0:netbsd:ld1 \
                    disk=x:netbsd:ld0 disk=bad:netbsd:0 disk=bad:netbsd:ld disk=b/d:netbsd:ld2 \
                    disk=two:netbsd:ld10 disk=up:netbsd:LD3";
        let (ram, ram_refused) = parse_command_line(line);
        assert_eq!(ram.len(), 1);
        assert!(ram_refused.is_empty(), "{ram_refused:?}");
        let (nvme, nvme_refused) = parse_nvme_command_line(line, &ram);
        assert_eq!((nvme.len(), nvme_refused.len()), (1, 0));
        let (netbsd, refused) = parse_netbsd_command_line(line, &["ram0", "nv"]);
        assert_eq!(
            netbsd,
            [
                NetbsdSpec {
                    name: "vb".into(),
                    unit: "ld0".into()
                },
                NetbsdSpec {
                    name: "two".into(),
                    unit: "ld10".into()
                }
            ]
        );
        let reasons: Vec<NetbsdSpecError> = refused.iter().map(|(_, reason)| *reason).collect();
        assert_eq!(
            reasons,
            [
                NetbsdSpecError::Duplicate,
                NetbsdSpecError::Duplicate,
                NetbsdSpecError::BadUnit,
                NetbsdSpecError::BadUnit,
                NetbsdSpecError::BadName,
                NetbsdSpecError::BadUnit
            ]
        );
    }

    #[test]
    fn nvme_words_are_told_apart_from_sizes() {
        assert!(is_nvme_word("nvme0:0000:00:05.0/1"));
        assert!(is_nvme_word("nvme0:00:05.0"));
        assert!(!is_nvme_word("ram0:64M"));
        assert!(!is_nvme_word("ram0"));
        let line = "disk=ram0:64M disk=nvme0:0000:00:05.0/2 disk=fast:00:06.0 \
                    disk=ram0:0000:00:07.0 disk=nvme0:0000:00:08.0 disk=other:0000:00:05.0/3 \
                    disk=bad:0000:00:40.0";
        let (ram, ram_refused) = parse_command_line(line);
        assert_eq!(ram.len(), 1);
        assert!(ram_refused.is_empty(), "{ram_refused:?}");
        let (nvme, refused) = parse_nvme_command_line(line, &ram);
        let address = |device| pcidev::Bdf {
            segment: 0,
            bus: 0,
            device,
            function: 0,
        };
        assert_eq!(
            nvme,
            [
                NvmeSpec {
                    name: "nvme0".into(),
                    address: address(5),
                    nsid: 2
                },
                NvmeSpec {
                    name: "fast".into(),
                    address: address(6),
                    nsid: 1
                }
            ]
        );
        let reasons: Vec<&NvmeSpecError> = refused.iter().map(|(_, reason)| reason).collect();
        assert_eq!(reasons.len(), 4);
        assert_eq!(reasons[0], &NvmeSpecError::DuplicateName);
        assert_eq!(reasons[1], &NvmeSpecError::DuplicateName);
        assert_eq!(reasons[2], &NvmeSpecError::DuplicateController);
        assert!(matches!(reasons[3], NvmeSpecError::Syntax(_)));
    }
}
