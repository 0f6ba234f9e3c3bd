//! TX request parsing checked against an independently written
//! expectation, on random slot sequences.

use netback::tx::{parse_tx_packet, DropReason, FatalReason, TxLimits, TxParse};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Slot {
    Data {
        offset: u16,
        flags: u16,
        size: u16,
    },
    Extra {
        kind: u8,
        flags: u8,
        gso_type: u8,
        gso_size: u16,
    },
}

fn encode(slot: &Slot, id: u16) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    match *slot {
        Slot::Data {
            offset,
            flags,
            size,
        } => {
            bytes[0..4].copy_from_slice(&(1000 + u32::from(id)).to_le_bytes());
            bytes[4..6].copy_from_slice(&offset.to_le_bytes());
            bytes[6..8].copy_from_slice(&flags.to_le_bytes());
            bytes[8..10].copy_from_slice(&id.to_le_bytes());
            bytes[10..12].copy_from_slice(&size.to_le_bytes());
        }
        Slot::Extra {
            kind,
            flags,
            gso_type,
            gso_size,
        } => {
            bytes[0] = kind;
            bytes[1] = flags;
            bytes[2..4].copy_from_slice(&gso_size.to_le_bytes());
            bytes[4] = gso_type;
        }
    }
    bytes
}

/// What netif.h and this backend's documented policy say, computed from
/// the decoded slot list in a different shape: first find the packet's
/// extent, then judge it.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Packet { consumed: usize, length: usize },
    Drop { consumed: usize },
    Fatal,
}

fn expect(slots: &[Slot], limits: &TxLimits) -> Expected {
    let Some(Slot::Data {
        offset,
        flags,
        size,
    }) = slots.first().cloned()
    else {
        // A first slot that decodes as extra info is still read as a
        // request; the generator only puts data first.
        return Expected::Fatal;
    };
    let mut at = 1;
    let mut bad = false;
    if flags & 8 != 0 {
        let mut kinds = Vec::new();
        loop {
            let Some(Slot::Extra {
                kind,
                flags,
                gso_type,
                gso_size,
            }) = slots.get(at).cloned()
            else {
                return if slots.get(at).is_none() {
                    Expected::Fatal
                } else {
                    // A data slot where an extra was due: judged by its bytes.
                    reinterpret_as_extra(slots, at)
                };
            };
            at += 1;
            if kind == 0 || kind >= 5 || kinds.contains(&kind) {
                return Expected::Fatal;
            }
            kinds.push(kind);
            if kind == 1 && (!(1..=2).contains(&gso_type) || gso_size < 88) {
                bad = true;
            }
            if flags & 1 == 0 {
                break;
            }
        }
    }
    let mut sizes = Vec::new();
    let mut offsets = Vec::new();
    let mut more = flags & 4 != 0;
    while more {
        if 1 + sizes.len() >= limits.fatal_slots {
            return Expected::Fatal;
        }
        match slots.get(at) {
            None => return Expected::Fatal,
            Some(slot) => {
                let bytes = encode(slot, 0);
                let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
                let size = u16::from_le_bytes([bytes[10], bytes[11]]);
                let offset = u16::from_le_bytes([bytes[4], bytes[5]]);
                sizes.push(usize::from(size));
                offsets.push(usize::from(offset));
                more = flags & 4 != 0;
                at += 1;
            }
        }
    }
    let total = usize::from(size);
    let rest: usize = sizes.iter().sum();
    // Running remainder: any slot larger than what is left is an error.
    let mut left = total;
    for s in &sizes {
        if *s > left {
            bad = true;
            left = 0;
        } else {
            left -= s;
        }
    }
    let _ = rest;
    if offsets.iter().zip(&sizes).any(|(o, s)| o + s > 4096) {
        bad = true;
    }
    if usize::from(offset) + left > 4096 {
        bad = true;
    }
    if 1 + sizes.len() > limits.max_slots || total < 14 {
        bad = true;
    }
    if bad {
        Expected::Drop { consumed: at }
    } else {
        Expected::Packet {
            consumed: at,
            length: total,
        }
    }
}

/// A data slot generated where extra info was expected is judged by its
/// raw bytes, as the backend sees them.
fn reinterpret_as_extra(slots: &[Slot], at: usize) -> Expected {
    let bytes = encode(&slots[at], 0);
    let kind = bytes[0];
    if kind == 0 || kind >= 5 {
        return Expected::Fatal;
    }
    // Rare: a data slot whose gref byte is a valid extra type. Re-run on
    // the same bytes reinterpreted.
    let mut reinterpreted = slots.to_vec();
    reinterpreted[at] = Slot::Extra {
        kind,
        flags: bytes[1],
        gso_type: bytes[4],
        gso_size: u16::from_le_bytes([bytes[2], bytes[3]]),
    };
    expect(&reinterpreted, &TxLimits::default())
}

fn slot_strategy() -> impl Strategy<Value = Slot> {
    prop_oneof![
        3 => (0u16..4200, prop::sample::select(vec![0u16, 4, 8, 12, 1, 5]), prop_oneof![0u16..200, 0u16..5000, any::<u16>()])
            .prop_map(|(offset, flags, size)| Slot::Data { offset, flags, size }),
        1 => (0u8..6, 0u8..2, 0u8..4, prop_oneof![0u16..100, 500u16..2000])
            .prop_map(|(kind, flags, gso_type, gso_size)| Slot::Extra { kind, flags, gso_type, gso_size }),
    ]
}

proptest! {
    #[test]
    fn parser_matches_the_expectation(
        first in (0u16..4200, prop::sample::select(vec![0u16, 4, 8, 12, 1]), any::<u16>()),
        rest in prop::collection::vec(slot_strategy(), 0..30),
    ) {
        let mut slots = vec![Slot::Data { offset: first.0, flags: first.1, size: first.2 }];
        slots.extend(rest);
        let encoded: Vec<[u8; 12]> = slots.iter().enumerate().map(|(i, s)| encode(s, i as u16)).collect();
        let limits = TxLimits::default();
        let mut index = 0;
        let mut source = || {
            let slot = encoded.get(index).copied();
            if slot.is_some() { index += 1; }
            slot
        };
        let verdict = parse_tx_packet(&mut source, &limits);
        let expected = expect(&slots, &limits);
        match (&verdict, &expected) {
            (TxParse::Packet(packet), Expected::Packet { consumed, length }) => {
                prop_assert_eq!(index, *consumed);
                prop_assert_eq!(packet.length, *length);
                prop_assert_eq!(packet.answers.len(), *consumed);
                let sum: usize = packet.fragments.iter().map(|f| usize::from(f.length)).sum();
                prop_assert_eq!(sum, *length);
                for fragment in &packet.fragments {
                    prop_assert!(usize::from(fragment.offset) + usize::from(fragment.length) <= 4096);
                }
            }
            (TxParse::Drop { answers, reason }, Expected::Drop { consumed }) => {
                prop_assert_eq!(index, *consumed);
                prop_assert_eq!(answers.len(), *consumed);
                let _: DropReason = *reason;
            }
            (TxParse::Fatal(reason), Expected::Fatal) => {
                let _: FatalReason = *reason;
            }
            _ => prop_assert!(false, "parser {:?} but expected {:?}", verdict, expected),
        }
    }
}
