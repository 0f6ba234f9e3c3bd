//! Validation of guest-transmit packets, from TX slots already copied out of
//! the ring.
//!
//! A packet on the TX ring is a first request (whose `size` is the size of
//! the whole packet), an optional chain of extra-info slots, then further
//! requests while the previous data request carries `NETTXF_more_data`
//! (`xen/io/netif.h`, "Guest transmit"). This module turns such a run of
//! slots into a [`TxPacket`] that only describes valid grant copies, or into
//! a verdict: drop the packet (and answer its slots with `NETIF_RSP_ERROR`),
//! or disconnect the frontend because it broke the ring protocol.
//!
//! The split between the two verdicts follows one rule: if the packet's
//! extent on the ring is still known, the packet is dropped and the ring
//! goes on; if it is not (the chain runs past the producer index, an
//! extra-info slot cannot be interpreted, the packet claims more slots than
//! any frontend may use), the ring is no longer trustworthy and the
//! frontend is disconnected. Linux netback draws the line in about the same
//! place; it treats a slot crossing a page as fatal, which this backend
//! only drops.

use alloc::vec::Vec;

use crate::frame::{ChecksumState, Gso};
use crate::wire::{
    ExtraInfo, GsoKind, TxRequest, NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED, NETTXF_EXTRA_INFO,
    NETTXF_MORE_DATA, PAGE_SIZE, TX_SLOT_SIZE, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_MAX,
    XEN_NETIF_EXTRA_TYPE_NONE, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6,
    XEN_NETIF_NR_SLOTS_MIN,
};

/// The smallest frame accepted: an Ethernet header.
pub const ETHERNET_HEADER_LEN: usize = 14;

/// The smallest GSO segment size accepted. Linux's TCP never goes below 88
/// (`TCP_MIN_MSS`); a smaller value would let one 64 KiB packet turn into
/// thousands of segments when it has to be segmented in software.
pub const MIN_GSO_SEGMENT_SIZE: u16 = 88;

/// Where a slot's answer goes: one response per consumed slot, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotAnswer {
    /// A data request; answered with its id and the packet's status.
    Data(u16),
    /// An extra-info slot; answered with `NETIF_RSP_NULL`.
    Extra,
}

/// Bounds on what one packet may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLimits {
    /// Packets with more data slots than this are dropped
    /// (`XEN_NETIF_NR_SLOTS_MIN`, 18, by default: what every frontend may
    /// assume a backend takes).
    pub max_slots: usize,
    /// A packet still going on after this many data slots disconnects the
    /// frontend: no frontend builds such a chain, and following it would be
    /// unbounded work.
    pub fatal_slots: usize,
}

impl Default for TxLimits {
    fn default() -> Self {
        Self {
            max_slots: XEN_NETIF_NR_SLOTS_MIN,
            fatal_slots: 64,
        }
    }
}

/// One grant copy a valid packet needs: `length` bytes at `offset` in `gref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxFragment {
    /// Grant reference of the page.
    pub gref: u32,
    /// Offset of the data in the page; `offset + length <= 4096`.
    pub offset: u16,
    /// Number of bytes; may be zero for an empty trailing request.
    pub length: u16,
}

/// A valid packet: the copies that assemble it and how to answer its slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxPacket {
    /// Total length; the fragments' lengths add up to it.
    pub length: usize,
    /// Data in order.
    pub fragments: Vec<TxFragment>,
    /// Checksum state from the first request's flags.
    pub checksum: ChecksumState,
    /// Segmentation offload, if requested.
    pub gso: Option<Gso>,
    /// One entry per consumed slot, in ring order.
    pub answers: Vec<SlotAnswer>,
}

/// Why a packet was dropped while the ring stays usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The packet has size zero.
    ZeroLength,
    /// The packet is shorter than an Ethernet header.
    TooShort,
    /// The packet uses more slots than the backend accepts.
    TooManySlots,
    /// The sizes of the later slots add up to more than the packet size
    /// (so the first slot's share would be negative, or the packet is
    /// larger than 64 KiB).
    SlotsExceedPacketSize,
    /// A slot's data crosses the end of its page.
    CrossesPageBoundary,
    /// The GSO extra-info names an unknown GSO type.
    BadGsoType,
    /// The GSO extra-info has a segment size of zero or below the minimum.
    BadGsoSize,
    /// The GSO extra-info sets feature bits this backend does not know.
    BadGsoFeatures,
    /// A grant copy of the packet's data failed (bad gref, no access, ...).
    GrantCopyFailed,
}

impl DropReason {
    /// The message for logs.
    pub fn message(self) -> &'static str {
        match self {
            Self::ZeroLength => "zero-length packet",
            Self::TooShort => "packet shorter than an Ethernet header",
            Self::TooManySlots => "packet uses more slots than allowed",
            Self::SlotsExceedPacketSize => "slot sizes add up to more than the packet size",
            Self::CrossesPageBoundary => "slot data crosses a page boundary",
            Self::BadGsoType => "unknown GSO type",
            Self::BadGsoSize => "GSO segment size zero or too small",
            Self::BadGsoFeatures => "unknown GSO feature bits",
            Self::GrantCopyFailed => "grant copy of packet data failed",
        }
    }
}

/// Why the frontend is disconnected: the ring no longer makes sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatalReason {
    /// The packet's slots run past the producer index.
    PacketRunsPastProducer,
    /// An extra-info slot has type `XEN_NETIF_EXTRA_TYPE_NONE` or an
    /// unknown type.
    BadExtraInfoType,
    /// The same extra-info type appears twice in one chain.
    DuplicateExtraInfo,
    /// The packet goes on for more slots than any frontend may use.
    SlotChainTooLong,
}

impl FatalReason {
    /// The message for logs.
    pub fn message(self) -> &'static str {
        match self {
            Self::PacketRunsPastProducer => "packet runs past the producer index",
            Self::BadExtraInfoType => "extra-info slot of invalid type",
            Self::DuplicateExtraInfo => "extra-info type repeated in one chain",
            Self::SlotChainTooLong => "packet chain longer than any frontend may build",
        }
    }
}

/// The verdict on one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxParse {
    /// A valid packet.
    Packet(TxPacket),
    /// Drop the packet and answer `answers` with `NETIF_RSP_ERROR` (data)
    /// or `NETIF_RSP_NULL` (extra info).
    Drop {
        /// Why.
        reason: DropReason,
        /// One entry per consumed slot, in ring order.
        answers: Vec<SlotAnswer>,
    },
    /// Disconnect the frontend.
    Fatal(FatalReason),
}

/// Where the parser gets its slots from: each call copies the next slot out
/// of the ring and consumes it, or returns `None` when the frontend has
/// published no further slot.
pub trait SlotSource {
    /// The next slot, copied.
    fn next_slot(&mut self) -> Option<[u8; TX_SLOT_SIZE]>;
}

impl<F: FnMut() -> Option<[u8; TX_SLOT_SIZE]>> SlotSource for F {
    fn next_slot(&mut self) -> Option<[u8; TX_SLOT_SIZE]> {
        self()
    }
}

/// Reads one packet from `source`, which must have at least one slot.
/// Consumes exactly the packet's slots unless the verdict is
/// [`TxParse::Fatal`], after which the ring is abandoned anyway.
pub fn parse_tx_packet(source: &mut impl SlotSource, limits: &TxLimits) -> TxParse {
    let Some(first_slot) = source.next_slot() else {
        return TxParse::Fatal(FatalReason::PacketRunsPastProducer);
    };
    let first = TxRequest::decode(&first_slot);
    let mut answers = Vec::with_capacity(4);
    answers.push(SlotAnswer::Data(first.id));
    let mut drop: Option<DropReason> = None;

    // Extra-info chain: at most one slot of each type, so at most
    // XEN_NETIF_EXTRA_TYPE_MAX - 1 slots.
    let mut gso = None;
    if first.flags & NETTXF_EXTRA_INFO != 0 {
        let mut seen = 0u8;
        loop {
            let Some(slot) = source.next_slot() else {
                return TxParse::Fatal(FatalReason::PacketRunsPastProducer);
            };
            answers.push(SlotAnswer::Extra);
            let extra = ExtraInfo::decode(&slot);
            if extra.kind == XEN_NETIF_EXTRA_TYPE_NONE || extra.kind >= XEN_NETIF_EXTRA_TYPE_MAX {
                return TxParse::Fatal(FatalReason::BadExtraInfoType);
            }
            let bit = 1u8 << extra.kind;
            if seen & bit != 0 {
                return TxParse::Fatal(FatalReason::DuplicateExtraInfo);
            }
            seen |= bit;
            if extra.kind == XEN_NETIF_EXTRA_TYPE_GSO {
                match judge_gso(&extra) {
                    Ok(value) => gso = Some(value),
                    Err(reason) => drop = drop.or(Some(reason)),
                }
            }
            // Multicast-control and hash extras are accepted and ignored:
            // this backend advertises neither feature.
            if !extra.has_more() {
                break;
            }
        }
    }

    // Data slots after the first.
    let total = usize::from(first.size);
    let mut remaining = total;
    let mut rest: Vec<TxFragment> = Vec::new();
    let mut more = first.flags & NETTXF_MORE_DATA != 0;
    let mut data_slots = 1usize;
    while more {
        if data_slots >= limits.fatal_slots {
            return TxParse::Fatal(FatalReason::SlotChainTooLong);
        }
        let Some(slot) = source.next_slot() else {
            return TxParse::Fatal(FatalReason::PacketRunsPastProducer);
        };
        let request = TxRequest::decode(&slot);
        answers.push(SlotAnswer::Data(request.id));
        data_slots += 1;
        more = request.flags & NETTXF_MORE_DATA != 0;
        let size = usize::from(request.size);
        if size > remaining {
            drop = drop.or(Some(DropReason::SlotsExceedPacketSize));
            remaining = 0;
        } else {
            remaining -= size;
        }
        if usize::from(request.offset) + size > PAGE_SIZE {
            drop = drop.or(Some(DropReason::CrossesPageBoundary));
        }
        rest.push(TxFragment {
            gref: request.gref,
            offset: request.offset,
            length: request.size,
        });
    }

    // The first slot carries what the later ones do not.
    let first_length = remaining;
    if usize::from(first.offset) + first_length > PAGE_SIZE {
        drop = drop.or(Some(DropReason::CrossesPageBoundary));
    }
    if data_slots > limits.max_slots {
        drop = Some(DropReason::TooManySlots);
    }
    if total == 0 {
        drop = Some(DropReason::ZeroLength);
    } else if total < ETHERNET_HEADER_LEN {
        drop = Some(DropReason::TooShort);
    }
    if let Some(reason) = drop {
        return TxParse::Drop { reason, answers };
    }

    let mut fragments = Vec::with_capacity(1 + rest.len());
    fragments.push(TxFragment {
        gref: first.gref,
        offset: first.offset,
        // first_length <= total <= u16::MAX
        length: first_length as u16,
    });
    fragments.extend(rest);
    let checksum = if first.flags & NETTXF_CSUM_BLANK != 0 {
        ChecksumState::Blank
    } else if first.flags & NETTXF_DATA_VALIDATED != 0 {
        ChecksumState::Validated
    } else {
        ChecksumState::Complete
    };
    TxParse::Packet(TxPacket {
        length: total,
        fragments,
        checksum,
        gso,
        answers,
    })
}

fn judge_gso(extra: &ExtraInfo) -> Result<Gso, DropReason> {
    let kind = match extra.gso_type() {
        XEN_NETIF_GSO_TYPE_TCPV4 => GsoKind::TcpV4,
        XEN_NETIF_GSO_TYPE_TCPV6 => GsoKind::TcpV6,
        _ => return Err(DropReason::BadGsoType),
    };
    if extra.gso_size() < MIN_GSO_SEGMENT_SIZE {
        return Err(DropReason::BadGsoSize);
    }
    if extra.gso_features() != 0 {
        return Err(DropReason::BadGsoFeatures);
    }
    Ok(Gso {
        kind,
        segment_size: extra.gso_size(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_MCAST_ADD};
    use alloc::vec;

    fn request(id: u16, size: u16, offset: u16, flags: u16) -> [u8; TX_SLOT_SIZE] {
        TxRequest {
            gref: 100 + u32::from(id),
            offset,
            flags,
            id,
            size,
        }
        .encode()
    }

    fn extra(kind: u8, flags: u8, payload: [u8; 6]) -> [u8; TX_SLOT_SIZE] {
        let mut slot = [0u8; TX_SLOT_SIZE];
        slot[..8].copy_from_slice(
            &ExtraInfo {
                kind,
                flags,
                payload,
            }
            .encode(),
        );
        slot
    }

    fn parse(slots: &[[u8; TX_SLOT_SIZE]]) -> (TxParse, usize) {
        let mut index = 0;
        let mut source = || {
            let slot = slots.get(index).copied();
            if slot.is_some() {
                index += 1;
            }
            slot
        };
        let verdict = parse_tx_packet(&mut source, &TxLimits::default());
        (verdict, index)
    }

    #[test]
    fn single_slot_packet() {
        let (verdict, used) = parse(&[request(3, 60, 100, 0), request(4, 60, 0, 0)]);
        assert_eq!(used, 1);
        let TxParse::Packet(packet) = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(packet.length, 60);
        assert_eq!(
            packet.fragments,
            vec![TxFragment {
                gref: 103,
                offset: 100,
                length: 60
            }]
        );
        assert_eq!(packet.answers, vec![SlotAnswer::Data(3)]);
        assert_eq!(packet.checksum, ChecksumState::Complete);
    }

    #[test]
    fn multi_slot_packet_with_gso_first_slot_gets_the_remainder() {
        let slots = [
            request(
                1,
                9000,
                0,
                NETTXF_MORE_DATA | NETTXF_EXTRA_INFO | NETTXF_CSUM_BLANK,
            ),
            extra(
                XEN_NETIF_EXTRA_TYPE_GSO,
                0,
                [0xa8, 0x05, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0, 0],
            ),
            request(2, 4096, 0, NETTXF_MORE_DATA),
            request(3, 2904, 0, 0),
        ];
        let (verdict, used) = parse(&slots);
        assert_eq!(used, 4);
        let TxParse::Packet(packet) = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(packet.fragments[0].length, 2000);
        assert_eq!(
            packet.gso,
            Some(Gso {
                kind: GsoKind::TcpV4,
                segment_size: 1448
            })
        );
        assert_eq!(packet.checksum, ChecksumState::Blank);
        assert_eq!(
            packet.answers,
            vec![
                SlotAnswer::Data(1),
                SlotAnswer::Extra,
                SlotAnswer::Data(2),
                SlotAnswer::Data(3)
            ]
        );
    }

    #[test]
    fn bad_packets_are_dropped_with_all_slots_answered() {
        let cases: [(&[[u8; TX_SLOT_SIZE]], DropReason); 5] = [
            (&[request(1, 0, 0, 0)], DropReason::ZeroLength),
            (&[request(1, 13, 0, 0)], DropReason::TooShort),
            (&[request(1, 100, 4000, 0)], DropReason::CrossesPageBoundary),
            (
                &[request(1, 100, 0, NETTXF_MORE_DATA), request(2, 200, 0, 0)],
                DropReason::SlotsExceedPacketSize,
            ),
            (
                &[
                    request(1, 5000, 0, NETTXF_MORE_DATA),
                    request(2, 1000, 3500, 0),
                ],
                DropReason::CrossesPageBoundary,
            ),
        ];
        for (slots, expected) in cases {
            let (verdict, used) = parse(slots);
            assert_eq!(used, slots.len());
            match verdict {
                TxParse::Drop { reason, answers } => {
                    assert_eq!(reason, expected);
                    assert_eq!(answers.len(), slots.len());
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn too_many_slots_is_dropped_then_fatal() {
        let mut slots = vec![request(0, 19 * 60, 0, NETTXF_MORE_DATA)];
        for id in 1..19 {
            let flags = if id == 18 { 0 } else { NETTXF_MORE_DATA };
            slots.push(request(id, 60, 0, flags));
        }
        let (verdict, used) = parse(&slots);
        assert_eq!(used, 19);
        assert!(matches!(
            verdict,
            TxParse::Drop {
                reason: DropReason::TooManySlots,
                ..
            }
        ));

        let endless: Vec<_> = (0..200)
            .map(|id| request(id, 60, 0, NETTXF_MORE_DATA))
            .collect();
        assert_eq!(
            parse(&endless).0,
            TxParse::Fatal(FatalReason::SlotChainTooLong)
        );
    }

    #[test]
    fn malformed_extra_info_chains_are_fatal() {
        let gso = extra(
            XEN_NETIF_EXTRA_TYPE_GSO,
            XEN_NETIF_EXTRA_FLAG_MORE,
            [0xa8, 0x05, 1, 0, 0, 0],
        );
        let head = request(1, 100, 0, NETTXF_EXTRA_INFO);
        assert_eq!(
            parse(&[head]).0,
            TxParse::Fatal(FatalReason::PacketRunsPastProducer)
        );
        assert_eq!(
            parse(&[head, extra(0, 0, [0; 6])]).0,
            TxParse::Fatal(FatalReason::BadExtraInfoType)
        );
        assert_eq!(
            parse(&[head, extra(9, 0, [0; 6])]).0,
            TxParse::Fatal(FatalReason::BadExtraInfoType)
        );
        assert_eq!(
            parse(&[head, gso, gso]).0,
            TxParse::Fatal(FatalReason::DuplicateExtraInfo)
        );
        assert_eq!(
            parse(&[head, gso]).0,
            TxParse::Fatal(FatalReason::PacketRunsPastProducer)
        );
        let (verdict, used) = parse(&[
            head,
            gso,
            extra(XEN_NETIF_EXTRA_TYPE_MCAST_ADD, 0, [1, 0, 0x5e, 0, 0, 1]),
        ]);
        assert_eq!(used, 3);
        assert!(matches!(verdict, TxParse::Packet(_)));
    }

    #[test]
    fn bad_gso_metadata_drops_the_packet() {
        let head = request(1, 100, 0, NETTXF_EXTRA_INFO);
        for (payload, expected) in [
            ([0xa8, 0x05, 7, 0, 0, 0], DropReason::BadGsoType),
            ([0, 0, 1, 0, 0, 0], DropReason::BadGsoSize),
            ([10, 0, 2, 0, 0, 0], DropReason::BadGsoSize),
            ([0xa8, 0x05, 1, 0, 1, 0], DropReason::BadGsoFeatures),
        ] {
            let (verdict, _) = parse(&[head, extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, payload)]);
            assert!(
                matches!(verdict, TxParse::Drop { reason, .. } if reason == expected),
                "{verdict:?}"
            );
        }
    }

    #[test]
    fn packet_running_past_producer_is_fatal() {
        assert_eq!(
            parse(&[request(1, 200, 0, NETTXF_MORE_DATA)]).0,
            TxParse::Fatal(FatalReason::PacketRunsPastProducer)
        );
        assert_eq!(
            parse(&[]).0,
            TxParse::Fatal(FatalReason::PacketRunsPastProducer)
        );
    }
}
