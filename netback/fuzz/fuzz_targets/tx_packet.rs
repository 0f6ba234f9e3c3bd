//! Arbitrary bytes as a TX ring's slots: the parser must never panic, must
//! consume only published slots, and a valid packet must describe copies
//! that stay inside their pages and add up to the packet length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netback::tx::{parse_tx_packet, TxLimits, TxParse};

fuzz_target!(|data: &[u8]| {
    let slots: Vec<[u8; 12]> = data
        .chunks_exact(12)
        .map(|chunk| chunk.try_into().unwrap())
        .collect();
    if slots.is_empty() {
        return;
    }
    let limits = TxLimits::default();
    let mut offset = 0;
    while offset < slots.len() {
        let mut index = offset;
        let mut source = || {
            let slot = slots.get(index).copied();
            if slot.is_some() {
                index += 1;
            }
            slot
        };
        match parse_tx_packet(&mut source, &limits) {
            TxParse::Packet(packet) => {
                assert_eq!(packet.answers.len(), index - offset);
                let sum: usize = packet.fragments.iter().map(|f| usize::from(f.length)).sum();
                assert_eq!(sum, packet.length);
                assert!(packet.length >= 14);
                for fragment in &packet.fragments {
                    assert!(usize::from(fragment.offset) + usize::from(fragment.length) <= 4096);
                }
            }
            TxParse::Drop { answers, .. } => assert_eq!(answers.len(), index - offset),
            TxParse::Fatal(_) => return,
        }
        offset = index;
    }
});
