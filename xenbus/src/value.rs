//! Bounded parsers for xenstore values written by other domains.
//!
//! A frontend (or any domain that can write a node we read) is hostile: it
//! can write any bytes, of any length up to `XENSTORE_PAYLOAD_MAX`, at any
//! moment. Every value a backend acts on goes through one of these parsers,
//! which accept exactly the canonical spelling and nothing else, and say why
//! they refused in a [`ValueError`] that is fit for a log line.
//!
//! The canonical spellings are the ones Linux, NetBSD and libxl write:
//! unsigned decimal without sign, blanks or leading zeros; MAC addresses as
//! six colon-separated hex pairs; `protocol` as `x86_32-abi`/`x86_64-abi`.

use core::fmt;
use core::ops::RangeInclusive;

use crate::platform::{DomId, EvtchnPort, GrantRef};

/// The longest decimal we accept: `u32::MAX` has ten digits.
pub const MAX_DECIMAL_LEN: usize = 10;

/// The first domain id that does not name a real domain
/// (`DOMID_FIRST_RESERVED` in `xen/xen.h`). `DOMID_SELF`, `DOMID_IO`, ... are
/// all at or above it, and none of them may appear as a peer in xenstore.
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;

/// Number of event channel ports of the FIFO ABI (`EVTCHN_FIFO_NR_CHANNELS`
/// in `xen/event_channel.h`), the largest any Xen offers. Ports are below it.
pub const EVTCHN_MAX_PORTS: EvtchnPort = 1 << 17;

/// The longest `protocol`, `mac`, boolean or number value worth reading:
/// anything longer is rejected before it is looked at.
pub const MAX_SHORT_VALUE_LEN: usize = 32;

/// Why a value from another domain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueError {
    /// The value is empty.
    Empty,
    /// The value is longer than any valid spelling.
    TooLong,
    /// The value contains a byte that is not a decimal digit.
    NotDecimal,
    /// The number has a leading zero.
    LeadingZero,
    /// The number does not fit the field's type.
    OutOfRange,
    /// Event channel port 0 is never a valid port.
    PortZero,
    /// The event channel port is beyond the largest port any Xen allocates.
    PortTooLarge,
    /// The ring page order is larger than this backend offers.
    RingOrderTooLarge,
    /// The domain id is a reserved one (`DOMID_FIRST_RESERVED` or above).
    ReservedDomid,
    /// The MAC address is not six colon-separated pairs of hex digits.
    MacSyntax,
    /// The MAC address is a multicast address.
    MacMulticast,
    /// The `protocol` value names no ABI this backend understands.
    UnknownProtocol,
    /// The boolean is neither `0` nor `1`.
    NotBoolean,
    /// The number is outside the range this field allows.
    NotInRange,
    /// The text contains a byte outside printable ASCII.
    NotPrintable,
    /// The access mode is neither `r` nor `w`.
    BadMode,
    /// The path is not of the form `/local/domain/<domid>/device/<type>/<devid>`.
    FrontendPathSyntax,
    /// The frontend path names a domain other than `frontend-id`.
    FrontendPathDomid,
    /// The frontend path names a device type other than the backend's.
    FrontendPathType,
    /// The frontend path names a device id other than the backend's.
    FrontendPathDevid,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "the value is empty",
            Self::TooLong => "the value is longer than any valid spelling",
            Self::NotDecimal => "the value contains a byte that is not a decimal digit",
            Self::LeadingZero => "the number has a leading zero",
            Self::OutOfRange => "the number does not fit the field's type",
            Self::PortZero => "event channel port 0 is never valid",
            Self::PortTooLarge => "the event channel port is beyond the largest port Xen allocates",
            Self::RingOrderTooLarge => "the ring page order is larger than this backend offers",
            Self::ReservedDomid => "the domain id is a reserved one",
            Self::MacSyntax => "the MAC address is not six colon-separated hex pairs",
            Self::MacMulticast => "the MAC address is a multicast address",
            Self::UnknownProtocol => "the protocol names no ABI this backend understands",
            Self::NotBoolean => "the boolean is neither 0 nor 1",
            Self::NotInRange => "the number is outside the range this field allows",
            Self::NotPrintable => "the text contains a byte outside printable ASCII",
            Self::BadMode => "the access mode is neither r nor w",
            Self::FrontendPathSyntax => {
                "the path is not /local/domain/<domid>/device/<type>/<devid>"
            }
            Self::FrontendPathDomid => "the frontend path names a domain other than frontend-id",
            Self::FrontendPathType => "the frontend path names another device type",
            Self::FrontendPathDevid => "the frontend path names another device id",
        })
    }
}

/// Parses an unsigned decimal `u32`: digits only, no sign, no blanks, no
/// leading zero (except `0` itself), at most [`MAX_DECIMAL_LEN`] digits.
pub fn parse_u32(value: &str) -> Result<u32, ValueError> {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Err(ValueError::Empty);
    }
    if bytes.len() > MAX_DECIMAL_LEN {
        return Err(ValueError::TooLong);
    }
    if !bytes.iter().all(u8::is_ascii_digit) {
        return Err(ValueError::NotDecimal);
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return Err(ValueError::LeadingZero);
    }
    let mut number: u64 = 0;
    for &digit in bytes {
        // Ten digits fit comfortably in a u64, so this never overflows.
        number = number * 10 + u64::from(digit - b'0');
    }
    u32::try_from(number).map_err(|_| ValueError::OutOfRange)
}

/// Parses an unsigned decimal `u16` with the rules of [`parse_u32`].
pub fn parse_u16(value: &str) -> Result<u16, ValueError> {
    u16::try_from(parse_u32(value)?).map_err(|_| ValueError::OutOfRange)
}

/// Parses an unsigned decimal `u8` with the rules of [`parse_u32`].
pub fn parse_u8(value: &str) -> Result<u8, ValueError> {
    u8::try_from(parse_u32(value)?).map_err(|_| ValueError::OutOfRange)
}

/// Parses an unsigned decimal `u32` (rules of [`parse_u32`]) that must lie
/// in `range`, such as `multi-queue-num-queues` in `1..=max_queues`.
pub fn parse_u32_in(value: &str, range: RangeInclusive<u32>) -> Result<u32, ValueError> {
    let number = parse_u32(value)?;
    if !range.contains(&number) {
        return Err(ValueError::NotInRange);
    }
    Ok(number)
}

/// Accepts free text (`params`, `bridge`, `type`) of at most `max_len`
/// bytes of printable ASCII (0x20..=0x7e), as xenstore.txt recommends;
/// anything else is refused rather than passed on to a log or a lookup.
pub fn parse_text(value: &str, max_len: usize) -> Result<&str, ValueError> {
    if value.is_empty() {
        return Err(ValueError::Empty);
    }
    if value.len() > max_len {
        return Err(ValueError::TooLong);
    }
    if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(ValueError::NotPrintable);
    }
    Ok(value)
}

/// Parses a vbd `mode` as libxl writes it: `r` (read-only, `false`) or `w`
/// (writable, `true`).
pub fn parse_mode(value: &str) -> Result<bool, ValueError> {
    match value {
        "r" => Ok(false),
        "w" => Ok(true),
        "" => Err(ValueError::Empty),
        _ if value.len() > MAX_SHORT_VALUE_LEN => Err(ValueError::TooLong),
        _ => Err(ValueError::BadMode),
    }
}

/// Parses a grant reference (`ring-ref`, `tx-ring-ref`, ...). Whether the
/// reference is valid is for the hypervisor to say when it is used.
pub fn parse_grant_ref(value: &str) -> Result<GrantRef, ValueError> {
    parse_u32(value)
}

/// Parses an event channel port (`event-channel`, `event-channel-tx`, ...):
/// neither 0 nor beyond [`EVTCHN_MAX_PORTS`].
pub fn parse_evtchn_port(value: &str) -> Result<EvtchnPort, ValueError> {
    match parse_u32(value)? {
        0 => Err(ValueError::PortZero),
        port if port >= EVTCHN_MAX_PORTS => Err(ValueError::PortTooLarge),
        port => Ok(port),
    }
}

/// Parses a ring page order (`ring-page-order`), which must not exceed the
/// `max_order` this backend advertised in `max-ring-page-order`.
pub fn parse_ring_page_order(value: &str, max_order: u32) -> Result<u32, ValueError> {
    let order = parse_u32(value)?;
    if order > max_order {
        return Err(ValueError::RingOrderTooLarge);
    }
    Ok(order)
}

/// Parses a domain id (`frontend-id`, `backend-id`); reserved ids such as
/// `DOMID_SELF` are refused.
pub fn parse_domid(value: &str) -> Result<DomId, ValueError> {
    let domid = parse_u16(value)?;
    if domid >= DOMID_FIRST_RESERVED {
        return Err(ValueError::ReservedDomid);
    }
    Ok(domid)
}

/// Parses a boolean flag (`feature-*`, `online`, `request-rx-copy`): exactly
/// `0` or `1`.
pub fn parse_bool(value: &str) -> Result<bool, ValueError> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        "" => Err(ValueError::Empty),
        _ if value.len() > MAX_SHORT_VALUE_LEN => Err(ValueError::TooLong),
        _ => Err(ValueError::NotBoolean),
    }
}

/// Parses a unicast MAC address written as `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(value: &str) -> Result<[u8; 6], ValueError> {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Err(ValueError::Empty);
    }
    if bytes.len() > MAX_SHORT_VALUE_LEN {
        return Err(ValueError::TooLong);
    }
    if bytes.len() != 17 {
        return Err(ValueError::MacSyntax);
    }
    let mut mac = [0u8; 6];
    for (index, octet) in mac.iter_mut().enumerate() {
        let at = index * 3;
        if index > 0 && bytes[at - 1] != b':' {
            return Err(ValueError::MacSyntax);
        }
        let high = hex_digit(bytes[at]).ok_or(ValueError::MacSyntax)?;
        let low = hex_digit(bytes[at + 1]).ok_or(ValueError::MacSyntax)?;
        *octet = (high << 4) | low;
    }
    if mac[0] & 1 != 0 {
        return Err(ValueError::MacMulticast);
    }
    Ok(mac)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The ring ABI a frontend speaks, from its `protocol` node
/// (`XEN_IO_PROTO_ABI_*` in `xen/io/protocols.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// No `protocol` node: the frontend uses the backend's native layout.
    /// This backend is x86_64, so native means the `x86_64-abi` layout.
    Native,
    /// `x86_32-abi`: 32-bit x86 frontends (for example GNU Mach).
    X86_32,
    /// `x86_64-abi`: 64-bit x86 frontends.
    X86_64,
}

impl Protocol {
    /// Whether requests use the 32-bit x86 layout (4-byte aligned `u64`s).
    pub fn is_x86_32(self) -> bool {
        self == Self::X86_32
    }
}

/// Parses the frontend's `protocol` node; `None` (the node is missing)
/// means the native ABI.
pub fn parse_protocol(value: Option<&str>) -> Result<Protocol, ValueError> {
    match value {
        None => Ok(Protocol::Native),
        Some("x86_32-abi") => Ok(Protocol::X86_32),
        Some("x86_64-abi") => Ok(Protocol::X86_64),
        Some("") => Err(ValueError::Empty),
        Some(other) if other.len() > MAX_SHORT_VALUE_LEN => Err(ValueError::TooLong),
        Some(_) => Err(ValueError::UnknownProtocol),
    }
}

/// Checks a backend's `frontend` node: it must be exactly
/// `/local/domain/<frontend_id>/device/<device_type>/<devid>`, with canonical
/// decimals, so that the backend never reads or watches another domain's
/// nodes on a toolstack's (or a hostile writer's) say-so.
pub fn check_frontend_path(
    path: &str,
    frontend_id: DomId,
    device_type: &str,
    devid: u32,
) -> Result<(), ValueError> {
    let rest = path
        .strip_prefix("/local/domain/")
        .ok_or(ValueError::FrontendPathSyntax)?;
    let mut parts = rest.split('/');
    let (Some(domid), Some("device"), Some(kind), Some(id), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(ValueError::FrontendPathSyntax);
    };
    let domid = parse_domid(domid).map_err(|_| ValueError::FrontendPathSyntax)?;
    let id = parse_u32(id).map_err(|_| ValueError::FrontendPathSyntax)?;
    if domid != frontend_id {
        return Err(ValueError::FrontendPathDomid);
    }
    if kind != device_type {
        return Err(ValueError::FrontendPathType);
    }
    if id != devid {
        return Err(ValueError::FrontendPathDevid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use proptest::prelude::*;

    /// The canonical-decimal rule stated independently: "0", or a non-zero
    /// digit followed by digits, whose value fits.
    fn expected_u32(text: &str) -> Option<u32> {
        let bytes = text.as_bytes();
        let canonical = text == "0"
            || (matches!(bytes.first(), Some(b'1'..=b'9')) && bytes.iter().all(u8::is_ascii_digit));
        if !canonical {
            return None;
        }
        text.parse::<u64>().ok().and_then(|n| u32::try_from(n).ok())
    }

    proptest! {
        #[test]
        fn decimal_agrees_with_the_rule(text in "[0-9+ -]{0,12}|.{0,12}") {
            prop_assert_eq!(parse_u32(&text).ok(), expected_u32(&text));
            prop_assert_eq!(
                parse_domid(&text).ok(),
                expected_u32(&text).filter(|n| *n < 0x7ff0).map(|n| n as u16)
            );
        }

        #[test]
        fn mac_round_trips(mac in any::<[u8; 6]>(), upper in any::<bool>()) {
            let text = if upper {
                alloc::format!(
                    "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
                    mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
                )
            } else {
                alloc::format!(
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
                )
            };
            if mac[0] & 1 == 0 {
                prop_assert_eq!(parse_mac(&text), Ok(mac));
            } else {
                prop_assert_eq!(parse_mac(&text), Err(ValueError::MacMulticast));
            }
        }

        #[test]
        fn parsers_never_panic(text in any::<String>(), max in any::<u32>()) {
            let _ = parse_u8(&text);
            let _ = parse_evtchn_port(&text);
            let _ = parse_ring_page_order(&text, max);
            let _ = parse_bool(&text);
            let _ = parse_mac(&text);
            let _ = parse_protocol(Some(&text));
            let _ = parse_mode(&text);
            let _ = parse_text(&text, max as usize);
            let _ = check_frontend_path(&text, 5, "vbd", 51728);
        }
    }

    #[test]
    fn decimal_accepts_canonical_spellings() {
        assert_eq!(parse_u32("0"), Ok(0));
        assert_eq!(parse_u32("7"), Ok(7));
        assert_eq!(parse_u32("51728"), Ok(51728));
        assert_eq!(parse_u32("4294967295"), Ok(u32::MAX));
        assert_eq!(parse_u16("65535"), Ok(u16::MAX));
        assert_eq!(parse_u8("255"), Ok(u8::MAX));
    }

    #[test]
    fn decimal_rejects_everything_else() {
        assert_eq!(parse_u32(""), Err(ValueError::Empty));
        assert_eq!(parse_u32("00"), Err(ValueError::LeadingZero));
        assert_eq!(parse_u32("08"), Err(ValueError::LeadingZero));
        assert_eq!(parse_u32("+8"), Err(ValueError::NotDecimal));
        assert_eq!(parse_u32("-8"), Err(ValueError::NotDecimal));
        assert_eq!(parse_u32(" 8"), Err(ValueError::NotDecimal));
        assert_eq!(parse_u32("8 "), Err(ValueError::NotDecimal));
        assert_eq!(parse_u32("8\n"), Err(ValueError::NotDecimal));
        assert_eq!(parse_u32("0x10"), Err(ValueError::NotDecimal));
        assert_eq!(parse_u32("١"), Err(ValueError::NotDecimal));
        assert_eq!(parse_u32("4294967296"), Err(ValueError::OutOfRange));
        assert_eq!(parse_u32("9999999999"), Err(ValueError::OutOfRange));
        assert_eq!(parse_u32("10000000000"), Err(ValueError::TooLong));
        assert_eq!(parse_u16("65536"), Err(ValueError::OutOfRange));
        assert_eq!(parse_u8("256"), Err(ValueError::OutOfRange));
    }

    #[test]
    fn decimal_matches_std_on_canonical_inputs() {
        for n in [0u32, 1, 9, 10, 99, 100, 65535, 65536, 1 << 31, u32::MAX] {
            let text = alloc::format!("{n}");
            assert_eq!(parse_u32(&text), Ok(n));
        }
    }

    #[test]
    fn ports_refs_orders_and_domids() {
        assert_eq!(parse_grant_ref("8"), Ok(8));
        assert_eq!(parse_evtchn_port("9"), Ok(9));
        assert_eq!(parse_evtchn_port("0"), Err(ValueError::PortZero));
        assert_eq!(parse_evtchn_port("131071"), Ok(131071));
        assert_eq!(parse_evtchn_port("131072"), Err(ValueError::PortTooLarge));
        assert_eq!(parse_ring_page_order("0", 4), Ok(0));
        assert_eq!(parse_ring_page_order("4", 4), Ok(4));
        assert_eq!(
            parse_ring_page_order("5", 4),
            Err(ValueError::RingOrderTooLarge)
        );
        assert_eq!(parse_domid("0"), Ok(0));
        assert_eq!(parse_domid("32751"), Ok(0x7fef));
        assert_eq!(parse_domid("32752"), Err(ValueError::ReservedDomid));
        assert_eq!(parse_domid("65535"), Err(ValueError::ReservedDomid));
        assert_eq!(parse_domid("65536"), Err(ValueError::OutOfRange));
    }

    #[test]
    fn ranges_text_and_modes() {
        assert_eq!(parse_u32_in("1", 1..=8), Ok(1));
        assert_eq!(parse_u32_in("8", 1..=8), Ok(8));
        assert_eq!(parse_u32_in("0", 1..=8), Err(ValueError::NotInRange));
        assert_eq!(parse_u32_in("9", 1..=8), Err(ValueError::NotInRange));
        assert_eq!(parse_u32_in("08", 1..=8), Err(ValueError::LeadingZero));
        assert_eq!(parse_text("/srv/disk.img", 64), Ok("/srv/disk.img"));
        assert_eq!(parse_text("a b~", 4), Ok("a b~"));
        assert_eq!(parse_text("", 64), Err(ValueError::Empty));
        assert_eq!(parse_text("abcde", 4), Err(ValueError::TooLong));
        assert_eq!(parse_text("a\nb", 64), Err(ValueError::NotPrintable));
        assert_eq!(parse_text("a\u{7f}", 64), Err(ValueError::NotPrintable));
        assert_eq!(parse_text("\u{1b}[2J", 64), Err(ValueError::NotPrintable));
        assert_eq!(parse_text("é", 64), Err(ValueError::NotPrintable));
        assert_eq!(parse_mode("r"), Ok(false));
        assert_eq!(parse_mode("w"), Ok(true));
        assert_eq!(parse_mode(""), Err(ValueError::Empty));
        assert_eq!(parse_mode("rw"), Err(ValueError::BadMode));
        assert_eq!(parse_mode("W"), Err(ValueError::BadMode));
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("0"), Ok(false));
        assert_eq!(parse_bool("1"), Ok(true));
        assert_eq!(parse_bool(""), Err(ValueError::Empty));
        assert_eq!(parse_bool("2"), Err(ValueError::NotBoolean));
        assert_eq!(parse_bool("01"), Err(ValueError::NotBoolean));
        assert_eq!(parse_bool("true"), Err(ValueError::NotBoolean));
        assert_eq!(parse_bool(&"1".repeat(40)), Err(ValueError::TooLong));
    }

    #[test]
    fn mac_addresses() {
        assert_eq!(
            parse_mac("00:16:3e:00:01:11"),
            Ok([0x00, 0x16, 0x3e, 0x00, 0x01, 0x11])
        );
        assert_eq!(
            parse_mac("AA:bb:CC:dd:EE:fe"),
            Ok([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xfe])
        );
        assert_eq!(parse_mac(""), Err(ValueError::Empty));
        assert_eq!(parse_mac("00:16:3e:00:01"), Err(ValueError::MacSyntax));
        assert_eq!(parse_mac("00:16:3e:00:01:1"), Err(ValueError::MacSyntax));
        assert_eq!(parse_mac("00:16:3e:00:01:111"), Err(ValueError::MacSyntax));
        assert_eq!(parse_mac("00-16-3e-00-01-11"), Err(ValueError::MacSyntax));
        assert_eq!(parse_mac("00:16:3e:00:01:1g"), Err(ValueError::MacSyntax));
        assert_eq!(parse_mac("0016:3e:00:01:11:"), Err(ValueError::MacSyntax));
        assert_eq!(
            parse_mac("01:00:5e:00:00:01"),
            Err(ValueError::MacMulticast)
        );
        assert_eq!(
            parse_mac("ff:ff:ff:ff:ff:ff"),
            Err(ValueError::MacMulticast)
        );
        assert_eq!(parse_mac(&"0".repeat(64)), Err(ValueError::TooLong));
        // A multi-byte character where a hex digit belongs must not split a
        // char boundary or panic.
        assert_eq!(parse_mac("00:16:3e:00:01:é"), Err(ValueError::MacSyntax));
        assert_eq!(parse_mac("é0:16:3e:00:01:1"), Err(ValueError::MacSyntax));
    }

    #[test]
    fn protocols() {
        assert_eq!(parse_protocol(None), Ok(Protocol::Native));
        assert_eq!(parse_protocol(Some("x86_32-abi")), Ok(Protocol::X86_32));
        assert_eq!(parse_protocol(Some("x86_64-abi")), Ok(Protocol::X86_64));
        assert_eq!(parse_protocol(Some("")), Err(ValueError::Empty));
        assert_eq!(
            parse_protocol(Some("arm-abi")),
            Err(ValueError::UnknownProtocol)
        );
        assert_eq!(
            parse_protocol(Some("x86_32-abi ")),
            Err(ValueError::UnknownProtocol)
        );
        assert!(Protocol::X86_32.is_x86_32());
        assert!(!Protocol::Native.is_x86_32());
    }

    #[test]
    fn frontend_paths() {
        let good = "/local/domain/5/device/vbd/51728";
        assert_eq!(check_frontend_path(good, 5, "vbd", 51728), Ok(()));
        assert_eq!(
            check_frontend_path(good, 6, "vbd", 51728),
            Err(ValueError::FrontendPathDomid)
        );
        assert_eq!(
            check_frontend_path(good, 5, "vif", 51728),
            Err(ValueError::FrontendPathType)
        );
        assert_eq!(
            check_frontend_path(good, 5, "vbd", 51712),
            Err(ValueError::FrontendPathDevid)
        );
        for bad in [
            "",
            "/",
            "local/domain/5/device/vbd/51728",
            "/local/domain/5/device/vbd/51728/",
            "/local/domain/5/device/vbd/51728/state",
            "/local/domain/05/device/vbd/51728",
            "/local/domain/5/devices/vbd/51728",
            "/local/domain/5/device/vbd",
            "/local/domain//device/vbd/51728",
            "/local/domain/32752/device/vbd/51728",
            "/local/domain/5/device/vbd/x",
            "/local/domain/5/device/vbd/051728",
        ] {
            assert_eq!(
                check_frontend_path(bad, 5, "vbd", 51728),
                Err(ValueError::FrontendPathSyntax),
                "{bad:?}"
            );
        }
    }
}
