//! Properties of the PCI address parser: every address survives printing
//! and parsing, and no input makes it panic or accept something it cannot
//! print back.

use pcidev::Bdf;
use proptest::prelude::*;

proptest! {
    #[test]
    fn printed_addresses_parse_back(
        segment in any::<u16>(),
        bus in any::<u8>(),
        device in 0u8..=0x1f,
        function in 0u8..=7,
    ) {
        let bdf = Bdf { segment, bus, device, function };
        prop_assert_eq!(Bdf::parse(&bdf.to_string()), Ok(bdf));
        // The short form means segment 0.
        let short = format!("{bus:x}:{device:x}.{function}");
        prop_assert_eq!(Bdf::parse(&short), Ok(Bdf { segment: 0, ..bdf }));
    }

    #[test]
    fn arbitrary_text_is_parsed_or_refused(text in "[0-9a-fA-F:.xg+ -]{0,16}") {
        if let Ok(bdf) = Bdf::parse(&text) {
            prop_assert!(bdf.device <= 0x1f && bdf.function <= 7);
            prop_assert_eq!(Bdf::parse(&bdf.to_string()), Ok(bdf));
            // Accepted text has exactly one '.' and one or two ':'.
            prop_assert_eq!(text.matches('.').count(), 1);
            prop_assert!((1..=2).contains(&text.matches(':').count()));
        }
    }
}
