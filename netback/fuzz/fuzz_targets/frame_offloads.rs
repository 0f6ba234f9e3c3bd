//! Arbitrary frames with arbitrary offload metadata through checksum
//! fill-in and software segmentation: never a panic, and every segment
//! produced carries a correct checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netback::frame::{adapt_for, verify_checksum, ChecksumState, Frame, Gso, Offloads};
use netback::wire::GsoKind;

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    let gso = match control & 3 {
        1 => Some(Gso {
            kind: GsoKind::TcpV4,
            segment_size: 88 + u16::from(control >> 2) * 16,
        }),
        2 => Some(Gso {
            kind: GsoKind::TcpV6,
            segment_size: 88 + u16::from(control >> 2) * 16,
        }),
        _ => None,
    };
    let frame = Frame {
        data: bytes.to_vec(),
        checksum: ChecksumState::Blank,
        gso,
    };
    let _ = adapt_for(frame, &Offloads::NONE, |out| {
        assert!(out.gso.is_none());
        assert_eq!(verify_checksum(&out.data), Ok(true));
    });
});
