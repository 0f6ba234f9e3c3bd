//! Properties of the `disk=` parser: every valid specification parses to
//! its parts, and arbitrary text never panics it.

use nvme::DiskSpec;
use pcidev::Bdf;
use proptest::prelude::*;

proptest! {
    #[test]
    fn valid_specifications_parse_to_their_parts(
        name in "[a-zA-Z0-9_-]{1,32}",
        segment in any::<u16>(),
        bus in any::<u8>(),
        device in 0u8..=0x1f,
        function in 0u8..=7,
        nsid in 1u32..0xffff_ffff,
    ) {
        let bdf = Bdf { segment, bus, device, function };
        let text = format!("{name}:{bdf}/{nsid}");
        let spec = DiskSpec::parse(&text).unwrap();
        prop_assert_eq!(spec.name, name.as_str());
        prop_assert_eq!(spec.bdf, bdf);
        prop_assert_eq!(spec.nsid, nsid);
    }

    #[test]
    fn arbitrary_text_is_parsed_or_refused(text in "[a-z0-9:./_+ -]{0,40}") {
        if let Ok(spec) = DiskSpec::parse(&text) {
            prop_assert!(!spec.name.is_empty() && spec.name.len() <= 32);
            prop_assert!(spec.nsid != 0 && spec.nsid != u32::MAX);
            prop_assert!(text.starts_with(spec.name));
        }
    }
}
