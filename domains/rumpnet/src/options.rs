//! The domain's settings from its command line (`extra=` in the xl
//! config). The words come from whoever wrote the config, so each is
//! checked; a bad one is reported and the default kept.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use pcidev::{Bdf, BdfError};

use xenbus::backend::hold::DEFAULT_HOLD_NS;

/// Settings of the rumpnet domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// How often per-vif statistics are written to xenstore (ns).
    pub statistics_interval_ns: u64,
    /// How long a newly found vif is kept in InitWait (ns).
    pub attach_hold_ns: u64,
    /// Queues offered to each frontend.
    pub max_queues: u32,
    /// The device behind the switch's uplink port: a NIC passed through
    /// to the domain (`uplink=0000:00:10.0`) or a NetBSD driver's
    /// interface (`uplink=netbsd:wm0`); none by default.
    pub uplink: Option<UplinkChoice>,
}

/// What the switch's uplink port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkChoice {
    /// The NIC passed through at this PCI address, driven by
    /// `drivers/e1000`.
    Pci(Bdf),
    /// A network interface of NetBSD's drivers, in an image that holds them.
    Netbsd(InterfaceName),
}

/// As on the command line: `0000:00:10.0` or `netbsd:wm0`.
impl fmt::Display for UplinkChoice {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(address) => write!(formatter, "{address}"),
            Self::Netbsd(name) => write!(formatter, "netbsd:{}", name.as_str()),
        }
    }
}

/// A NetBSD interface name: a driver name and a unit number (`wm0`), at
/// most 15 bytes (`IFNAMSIZ` less the NUL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceName {
    bytes: [u8; 15],
    length: u8,
}

impl InterfaceName {
    /// `name` if it is a lower-case driver name followed by digits.
    pub fn parse(name: &str) -> Option<Self> {
        let digits = name.trim_start_matches(|c: char| c.is_ascii_lowercase());
        let valid = name.len() <= 15
            && !digits.is_empty()
            && digits.len() < name.len()
            && digits.bytes().all(|byte| byte.is_ascii_digit());
        if !valid {
            return None;
        }
        let mut bytes = [0; 15];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(Self {
            bytes,
            length: name.len() as u8,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Built from a `&str` of ASCII bytes only.
        core::str::from_utf8(&self.bytes[..usize::from(self.length)]).unwrap_or_default()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            statistics_interval_ns: 1_000_000_000,
            attach_hold_ns: DEFAULT_HOLD_NS,
            max_queues: 4,
            uplink: None,
        }
    }
}

/// Why a word of the command line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionError {
    /// not a whole number
    NotANumber,
    /// out of range
    OutOfRange,
    /// not a PCI address
    Address(BdfError),
    /// not a NetBSD interface name such as wm0
    Interface,
}

impl fmt::Display for OptionError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotANumber => formatter.write_str("not a whole number"),
            Self::OutOfRange => formatter.write_str("out of range"),
            Self::Address(error) => write!(formatter, "not a PCI address: {error}"),
            Self::Interface => formatter.write_str("not a NetBSD interface name such as wm0"),
        }
    }
}

/// A refused word and the reason.
pub type Refusal = (String, OptionError);

fn number(value: &str, range: core::ops::RangeInclusive<u64>) -> Result<u64, OptionError> {
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(OptionError::NotANumber);
    }
    let number: u64 = value.parse().map_err(|_| OptionError::NotANumber)?;
    if range.contains(&number) {
        Ok(number)
    } else {
        Err(OptionError::OutOfRange)
    }
}

/// Reads the settings from `command_line`; words it does not know are
/// left to others (`loglevel=` belongs to the platform) and ignored here.
/// The last valid occurrence of a word wins.
pub fn parse(command_line: &str) -> (Options, Vec<Refusal>) {
    let mut options = Options::default();
    let mut refused = Vec::new();
    for word in command_line.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        let result = match key {
            // Between a tenth of a second and a minute: more often costs
            // xenstore traffic, less often is useless to an operator.
            "statistics-ms" => number(value, 100..=60_000)
                .map(|ms| options.statistics_interval_ns = ms * 1_000_000),
            "attach-hold-ms" => {
                number(value, 0..=8_000).map(|ms| options.attach_hold_ns = ms * 1_000_000)
            }
            // xen/io/netif.h allows any count; Linux netback offers up to
            // 8 by default. More queues than this only cost memory here.
            "max-queues" => number(value, 1..=8).map(|queues| options.max_queues = queues as u32),
            "uplink" => match value.strip_prefix("netbsd:") {
                Some(name) => InterfaceName::parse(name)
                    .map(|name| options.uplink = Some(UplinkChoice::Netbsd(name)))
                    .ok_or(OptionError::Interface),
                None => Bdf::parse(value)
                    .map(|address| options.uplink = Some(UplinkChoice::Pci(address)))
                    .map_err(OptionError::Address),
            },
            _ => continue,
        };
        if let Err(error) = result {
            refused.push((String::from(word), error));
        }
    }
    (options, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_words() {
        assert_eq!(
            parse("loglevel=debug something"),
            (Options::default(), Vec::new())
        );
    }

    #[test]
    fn reads_every_setting() {
        let (options, refused) =
            parse("statistics-ms=2000 attach-hold-ms=0 max-queues=1 uplink=0000:00:10.0");
        assert!(refused.is_empty());
        assert_eq!(
            options,
            Options {
                statistics_interval_ns: 2_000_000_000,
                attach_hold_ns: 0,
                max_queues: 1,
                uplink: Some(UplinkChoice::Pci(Bdf {
                    segment: 0,
                    bus: 0,
                    device: 0x10,
                    function: 0
                })),
            }
        );
    }

    #[test]
    fn a_netbsd_interface_can_be_the_uplink() {
        let (options, refused) = parse(
            "uplink=netbsd:wm0 uplink=netbsd:wm uplink=netbsd:0 uplink=netbsd:Wm1 \
             uplink=netbsd:averyveryverylong0",
        );
        let Some(UplinkChoice::Netbsd(name)) = options.uplink else {
            panic!("{options:?}");
        };
        assert_eq!(name.as_str(), "wm0");
        assert_eq!(refused.len(), 4);
        assert!(refused
            .iter()
            .all(|(_, reason)| *reason == OptionError::Interface));
    }

    #[test]
    fn refuses_bad_values_and_keeps_the_default() {
        let (options, refused) = parse(
            "statistics-ms=10 statistics-ms=abc attach-hold-ms=-1 max-queues=0 max-queues=9 \
             attach-hold-ms=99999999999999 uplink=00:10 uplink=0000:00:20.0",
        );
        assert_eq!(options, Options::default());
        let reasons: Vec<OptionError> = refused.iter().map(|(_, reason)| *reason).collect();
        assert_eq!(
            reasons,
            [
                OptionError::OutOfRange,
                OptionError::NotANumber,
                OptionError::NotANumber,
                OptionError::OutOfRange,
                OptionError::OutOfRange,
                OptionError::NotANumber,
                OptionError::Address(BdfError::Syntax),
                OptionError::Address(BdfError::OutOfRange),
            ]
        );
        assert_eq!(refused[0].0, "statistics-ms=10");
    }

    #[test]
    fn the_last_valid_word_wins() {
        let (options, refused) = parse("max-queues=2 max-queues=x max-queues=3");
        assert_eq!(options.max_queues, 3);
        assert_eq!(refused.len(), 1);
    }
}
