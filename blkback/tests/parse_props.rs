//! Property test of request parsing: random slots, encoded by the mock
//! frontend's independent encoder, are parsed by the engine and compared
//! with an expectation written from blkif.h's rules, here, separately.

use blkback::proto::{
    parse_request, Abi, Direction, Limits, Request, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR,
};
use proptest::prelude::*;
use xensim::frontend::blk::{encode_discard, encode_indirect, encode_rw, RingAbi, WireSegment};

#[derive(Debug, Clone)]
struct Raw {
    abi: RingAbi,
    operation: u8,
    /// nr_segments, discard flag or indirect_op, depending on the operation.
    second: u8,
    id: u64,
    sector: u64,
    segments: Vec<(u32, u8, u8)>,
    nr_sectors: u64,
    indirect_count: u16,
    indirect_grefs: [u32; 8],
}

impl Raw {
    fn encode(&self) -> Vec<u8> {
        let segments: Vec<WireSegment> = self
            .segments
            .iter()
            .map(|&(gref, first_sect, last_sect)| WireSegment {
                gref,
                first_sect,
                last_sect,
            })
            .collect();
        match self.operation {
            5 => encode_discard(self.abi, self.id, self.sector, self.nr_sectors, self.second),
            6 => encode_indirect(
                self.abi,
                self.second,
                self.id,
                self.sector,
                self.indirect_count,
                &self.indirect_grefs,
            ),
            operation => {
                let mut slot = encode_rw(self.abi, operation, self.id, self.sector, &segments);
                slot[1] = self.second;
                slot
            }
        }
    }
}

/// What blkif.h says should happen.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    /// Served; the fields the backend must act on.
    Served {
        sector: u64,
        segments: Vec<(u32, u8, u8)>,
        indirect: Option<(u16, Vec<u32>)>,
    },
    /// Refused with this status.
    Refused(i16),
}

fn segments_ok(segments: &[(u32, u8, u8)]) -> bool {
    segments
        .iter()
        .all(|&(_, first, last)| first <= last && last <= 7)
}

fn fits(sector: u64, count: u64, limits: &Limits) -> bool {
    sector
        .checked_add(count)
        .is_some_and(|end| end <= limits.sectors)
}

fn expect(raw: &Raw, limits: &Limits) -> Expected {
    use Expected::*;
    let sectors_of = |segments: &[(u32, u8, u8)]| -> u64 {
        segments
            .iter()
            .map(|&(_, first, last)| u64::from(last - first) + 1)
            .sum()
    };
    let used: Vec<(u32, u8, u8)> = raw
        .segments
        .iter()
        .copied()
        .take(usize::from(raw.second))
        .collect();
    match raw.operation {
        0 | 1 => {
            let write = raw.operation == 1;
            if write && limits.read_only {
                return Refused(BLKIF_RSP_ERROR);
            }
            if raw.second == 0 || raw.second > 11 || !segments_ok(&used) {
                return Refused(BLKIF_RSP_ERROR);
            }
            if !fits(raw.sector, sectors_of(&used), limits) {
                return Refused(BLKIF_RSP_ERROR);
            }
            Served {
                sector: raw.sector,
                segments: used,
                indirect: None,
            }
        }
        2 | 3 => {
            if !limits.flush {
                return Refused(BLKIF_RSP_EOPNOTSUPP);
            }
            if limits.read_only || raw.second > 11 || !segments_ok(&used) {
                return Refused(BLKIF_RSP_ERROR);
            }
            if !used.is_empty() && !fits(raw.sector, sectors_of(&used), limits) {
                return Refused(BLKIF_RSP_ERROR);
            }
            Served {
                sector: raw.sector,
                segments: used,
                indirect: None,
            }
        }
        5 => {
            if !limits.discard {
                return Refused(BLKIF_RSP_EOPNOTSUPP);
            }
            if raw.second > 1 {
                return Refused(BLKIF_RSP_ERROR);
            }
            if raw.second == 1 && !limits.secure_discard {
                return Refused(BLKIF_RSP_EOPNOTSUPP);
            }
            if limits.read_only || !fits(raw.sector, raw.nr_sectors, limits) {
                return Refused(BLKIF_RSP_ERROR);
            }
            Served {
                sector: raw.sector,
                segments: Vec::new(),
                indirect: None,
            }
        }
        6 => {
            if limits.max_indirect_segments == 0 {
                return Refused(BLKIF_RSP_EOPNOTSUPP);
            }
            let count = raw.indirect_count;
            let bad_op = raw.second > 1;
            let write_to_ro = raw.second == 1 && limits.read_only;
            if bad_op || write_to_ro || count == 0 || count > limits.max_indirect_segments {
                return Refused(BLKIF_RSP_ERROR);
            }
            if !fits(raw.sector, u64::from(count), limits) {
                return Refused(BLKIF_RSP_ERROR);
            }
            let pages = usize::from(count).div_ceil(512);
            Served {
                sector: raw.sector,
                segments: Vec::new(),
                indirect: Some((count, raw.indirect_grefs[..pages].to_vec())),
            }
        }
        _ => Refused(BLKIF_RSP_EOPNOTSUPP),
    }
}

fn actual(raw: &Raw, limits: &Limits) -> (Expected, u64, u8) {
    let abi = match raw.abi {
        RingAbi::X86_32 => Abi::X86_32,
        RingAbi::X86_64 => Abi::X86_64,
    };
    let slot = raw.encode();
    assert_eq!(slot.len(), abi.request_size());
    match parse_request(&slot, abi, limits) {
        Err(rejection) => (
            Expected::Refused(rejection.reason.status()),
            rejection.id,
            rejection.operation,
        ),
        Ok(request) => {
            let id = request.id();
            let as_tuples = |segments: &[blkback::proto::Segment]| {
                segments
                    .iter()
                    .map(|s| (s.gref, s.first_sect, s.last_sect))
                    .collect::<Vec<_>>()
            };
            let served = match request {
                Request::ReadWrite {
                    sector,
                    segments,
                    direction,
                    ..
                } => {
                    assert_eq!(direction == Direction::Write, raw.operation == 1);
                    Expected::Served {
                        sector,
                        segments: as_tuples(segments.as_slice()),
                        indirect: None,
                    }
                }
                Request::Flush {
                    sector,
                    segments,
                    barrier,
                    ..
                } => {
                    assert_eq!(barrier, raw.operation == 2);
                    Expected::Served {
                        sector,
                        segments: as_tuples(segments.as_slice()),
                        indirect: None,
                    }
                }
                Request::Discard {
                    sector,
                    nr_sectors,
                    secure,
                    ..
                } => {
                    assert_eq!(nr_sectors, raw.nr_sectors);
                    assert_eq!(secure, raw.second == 1);
                    Expected::Served {
                        sector,
                        segments: Vec::new(),
                        indirect: None,
                    }
                }
                Request::Indirect {
                    sector,
                    nr_segments,
                    indirect_grefs,
                    direction,
                    ..
                } => {
                    assert_eq!(direction == Direction::Write, raw.second == 1);
                    let pages = usize::from(nr_segments).div_ceil(512);
                    Expected::Served {
                        sector,
                        segments: Vec::new(),
                        indirect: Some((nr_segments, indirect_grefs[..pages].to_vec())),
                    }
                }
            };
            (served, id, blkback::proto::response_operation(&slot))
        }
    }
}

fn raw_strategy() -> impl Strategy<Value = Raw> {
    let abi = prop_oneof![Just(RingAbi::X86_32), Just(RingAbi::X86_64)];
    let operation = prop_oneof![4 => 0u8..=6, 1 => any::<u8>()];
    let second = prop_oneof![4 => 0u8..=12, 1 => any::<u8>()];
    let sector = prop_oneof![3 => 0u64..5000, 1 => any::<u64>()];
    let segment = (
        any::<u32>(),
        prop_oneof![4 => 0u8..=7, 1 => any::<u8>()],
        prop_oneof![4 => 0u8..=7, 1 => any::<u8>()],
    );
    let segments = proptest::collection::vec(segment, 11);
    let nr_sectors = prop_oneof![3 => 0u64..5000, 1 => any::<u64>()];
    let indirect_count = prop_oneof![3 => 0u16..=300, 1 => any::<u16>()];
    (
        abi,
        operation,
        second,
        any::<u64>(),
        sector,
        segments,
        nr_sectors,
        indirect_count,
        any::<[u32; 8]>(),
    )
        .prop_map(
            |(
                abi,
                operation,
                second,
                id,
                sector,
                segments,
                nr_sectors,
                indirect_count,
                indirect_grefs,
            )| {
                let second = if operation == 6 { second % 4 } else { second };
                Raw {
                    abi,
                    operation,
                    second,
                    id,
                    sector,
                    segments,
                    nr_sectors,
                    indirect_count,
                    indirect_grefs,
                }
            },
        )
}

fn limits_strategy() -> impl Strategy<Value = Limits> {
    (
        1u64..10_000,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(0u16), Just(256u16)],
    )
        .prop_map(
            |(sectors, read_only, flush, discard, secure, max_indirect_segments)| Limits {
                sectors,
                read_only,
                flush,
                discard,
                secure_discard: discard && secure,
                max_indirect_segments,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn parsing_matches_the_protocol_rules(raw in raw_strategy(), limits in limits_strategy()) {
        let (got, id, operation) = actual(&raw, &limits);
        prop_assert_eq!(got, expect(&raw, &limits), "{:?} with {:?}", raw, limits);
        prop_assert_eq!(id, raw.id, "the id is echoed");
        // Responses to indirect requests carry the indirect_op.
        let echoed = if raw.operation == 6 { raw.second } else { raw.operation };
        prop_assert_eq!(operation, echoed, "the operation is echoed");
    }
}
