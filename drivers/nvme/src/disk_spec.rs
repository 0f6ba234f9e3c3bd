//! The `disk=` option of the rumpdisk domain's command line for NVMe disks:
//! `<name>:<pci address>/<namespace id>`, for example
//! `disk=nvme0:0000:00:05.0/1`. The namespace id may be left out and is
//! then 1.

use core::fmt;

use pcidev::{Bdf, BdfError};

/// Longest accepted disk name, in bytes.
pub const MAX_NAME_LEN: usize = 32;

/// A parsed NVMe disk specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpec<'a> {
    /// The name blkback serves the disk under (`params` of the vbd).
    pub name: &'a str,
    /// Where the controller is.
    pub bdf: Bdf,
    /// Which namespace of the controller (1..=0xfffffffe).
    pub nsid: u32,
}

/// Why a disk specification was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskSpecError {
    /// The specification has no `:` separating the name from the PCI address.
    MissingName,
    /// The name is empty, too long, or not made of ASCII letters, digits, `-` and `_`.
    BadName,
    /// The PCI address is malformed.
    BadAddress(BdfError),
    /// The namespace id is not a decimal number in 1..=0xfffffffe.
    BadNamespace,
}

impl fmt::Display for DiskSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingName => {
                f.write_str("the specification has no ':' separating the name from the PCI address")
            }
            Self::BadName => f.write_str(
                "the name is empty, too long, or not made of ASCII letters, digits, '-' and '_'",
            ),
            Self::BadAddress(error) => write!(f, "the PCI address is malformed: {error}"),
            Self::BadNamespace => {
                f.write_str("the namespace id is not a decimal number in 1..=0xfffffffe")
            }
        }
    }
}

impl<'a> DiskSpec<'a> {
    /// Parses `<name>:<pci address>[/<nsid>]`.
    pub fn parse(text: &'a str) -> Result<Self, DiskSpecError> {
        let (name, rest) = text.split_once(':').ok_or(DiskSpecError::MissingName)?;
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(DiskSpecError::BadName);
        }
        let (address, nsid) = match rest.split_once('/') {
            Some((address, nsid)) => (address, Some(nsid)),
            None => (rest, None),
        };
        let bdf = Bdf::parse(address).map_err(DiskSpecError::BadAddress)?;
        let nsid = match nsid {
            None => 1,
            Some(digits) => {
                // Only plain decimal digits: `parse` alone would accept a sign.
                if digits.is_empty()
                    || digits.len() > 10
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(DiskSpecError::BadNamespace);
                }
                match digits.parse::<u32>() {
                    // 0 is no namespace and 0xffffffff means all of them.
                    Ok(nsid) if nsid != 0 && nsid != u32::MAX => nsid,
                    _ => return Err(DiskSpecError::BadNamespace),
                }
            }
        };
        Ok(Self { name, bdf, nsid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form() {
        let spec = DiskSpec::parse("nvme0:0000:00:05.0/1").unwrap();
        assert_eq!(spec.name, "nvme0");
        assert_eq!(spec.bdf, Bdf::parse("0000:00:05.0").unwrap());
        assert_eq!(spec.nsid, 1);
        let spec = DiskSpec::parse("fast_disk-2:01:1f.3/4294967294").unwrap();
        assert_eq!(
            (spec.name, spec.bdf.bus, spec.bdf.device, spec.nsid),
            ("fast_disk-2", 1, 0x1f, 0xffff_fffe)
        );
        assert_eq!(DiskSpec::parse("nvme1:00:04.0").unwrap().nsid, 1);
    }

    #[test]
    fn rejects_malformed() {
        for (text, error) in [
            ("nvme0", DiskSpecError::MissingName),
            (":0000:00:05.0/1", DiskSpecError::BadName),
            ("nv me:0000:00:05.0/1", DiskSpecError::BadName),
            ("a/b:0000:00:05.0/1", DiskSpecError::BadName),
            ("nvme0:0000:00:05.0/0", DiskSpecError::BadNamespace),
            ("nvme0:0000:00:05.0/4294967295", DiskSpecError::BadNamespace),
            ("nvme0:0000:00:05.0/+1", DiskSpecError::BadNamespace),
            ("nvme0:0000:00:05.0/", DiskSpecError::BadNamespace),
            (
                "nvme0:0000:00:05.0/99999999999",
                DiskSpecError::BadNamespace,
            ),
            ("nvme0:0000:00:05.0/1/2", DiskSpecError::BadNamespace),
            (
                "nvme0:0000:00:25.0/1",
                DiskSpecError::BadAddress(BdfError::OutOfRange),
            ),
        ] {
            assert_eq!(DiskSpec::parse(text), Err(error), "{text}");
        }
        let long = "n".repeat(MAX_NAME_LEN + 1) + ":00:05.0";
        assert_eq!(DiskSpec::parse(&long), Err(DiskSpecError::BadName));
    }
}
