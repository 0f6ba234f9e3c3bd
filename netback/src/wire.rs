//! Byte layouts of the netif ring slots, from `xen/io/netif.h`.
//!
//! Every request is copied out of the shared ring exactly once, into one of
//! the fixed-size arrays below, and decoded from that copy. Responses are
//! encoded into arrays and then written to the ring. All fields are
//! little-endian (x86); the layouts are the same for 32- and 64-bit
//! frontends because netif's structures contain no 64-bit fields.

/// Size of one TX ring slot: `netif_tx_request_t` (12 bytes) is the larger
/// member of the request/response union.
pub const TX_SLOT_SIZE: usize = 12;
/// Size of one RX ring slot: `netif_rx_request_t` and `netif_rx_response_t`
/// are both 8 bytes.
pub const RX_SLOT_SIZE: usize = 8;
/// Size of `netif_tx_response_t`.
pub const TX_RESPONSE_SIZE: usize = 4;
/// Size of `netif_extra_info_t` as it overlays an RX response.
pub const EXTRA_INFO_SIZE: usize = 8;

/// Size of a Xen page; no slot's data may cross one.
pub const PAGE_SIZE: usize = 4096;

/// `NETTXF_csum_blank`: the protocol checksum field is blank.
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// `NETTXF_data_validated`: the data has been validated against its checksum.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// `NETTXF_more_data`: the packet continues in the next request.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// `NETTXF_extra_info`: the request is followed by extra-info slots.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// `NETRXF_data_validated`.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// `NETRXF_csum_blank`.
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// `NETRXF_more_data`.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// `NETRXF_extra_info`.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;

/// `XEN_NETIF_EXTRA_TYPE_NONE`: never valid on the wire.
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_EXTRA_TYPE_GSO`.
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_ADD`.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_DEL`.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// `XEN_NETIF_EXTRA_TYPE_HASH`.
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// `XEN_NETIF_EXTRA_TYPE_MAX`: first value that is not a type.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;
/// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;

/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV6`.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// `NETIF_RSP_DROPPED`.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// `NETIF_RSP_ERROR`.
pub const NETIF_RSP_ERROR: i16 = -1;
/// `NETIF_RSP_OKAY`.
pub const NETIF_RSP_OKAY: i16 = 0;
/// `NETIF_RSP_NULL`: the answer to an extra-info slot.
pub const NETIF_RSP_NULL: i16 = 1;

/// `XEN_NETIF_NR_SLOTS_MIN`: the number of slots per packet every backend
/// must accept.
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;
/// `XEN_NETIF_MAX_TX_SIZE`: the largest packet a TX request can describe.
pub const XEN_NETIF_MAX_TX_SIZE: usize = 0xFFFF;

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// A decoded `netif_tx_request_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRequest {
    /// Grant reference of the page holding this slot's data.
    pub gref: u32,
    /// Offset of the data inside that page.
    pub offset: u16,
    /// `NETTXF_*` flags.
    pub flags: u16,
    /// Request identifier, echoed in the response.
    pub id: u16,
    /// For the first slot of a packet the packet's total size, otherwise
    /// this slot's size.
    pub size: u16,
}

impl TxRequest {
    /// Decodes a TX slot copied out of the ring.
    pub fn decode(slot: &[u8; TX_SLOT_SIZE]) -> Self {
        Self {
            gref: u32_at(slot, 0),
            offset: u16_at(slot, 4),
            flags: u16_at(slot, 6),
            id: u16_at(slot, 8),
            size: u16_at(slot, 10),
        }
    }

    /// Encodes the request (used by the mock frontends).
    pub fn encode(&self) -> [u8; TX_SLOT_SIZE] {
        let mut slot = [0u8; TX_SLOT_SIZE];
        slot[0..4].copy_from_slice(&self.gref.to_le_bytes());
        slot[4..6].copy_from_slice(&self.offset.to_le_bytes());
        slot[6..8].copy_from_slice(&self.flags.to_le_bytes());
        slot[8..10].copy_from_slice(&self.id.to_le_bytes());
        slot[10..12].copy_from_slice(&self.size.to_le_bytes());
        slot
    }
}

/// A decoded `netif_tx_response_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxResponse {
    /// The id of the request this answers.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

impl TxResponse {
    /// Encodes the response for the ring.
    pub fn encode(&self) -> [u8; TX_RESPONSE_SIZE] {
        let mut slot = [0u8; TX_RESPONSE_SIZE];
        slot[0..2].copy_from_slice(&self.id.to_le_bytes());
        slot[2..4].copy_from_slice(&self.status.to_le_bytes());
        slot
    }

    /// Decodes a response (used by the mock frontends).
    pub fn decode(slot: &[u8]) -> Self {
        Self {
            id: u16_at(slot, 0),
            status: u16_at(slot, 2) as i16,
        }
    }
}

/// A decoded `netif_rx_request_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxRequest {
    /// Request identifier, echoed in the response.
    pub id: u16,
    /// Grant reference of the page the frontend offers for received data.
    pub gref: u32,
}

impl RxRequest {
    /// Decodes an RX slot copied out of the ring.
    pub fn decode(slot: &[u8; RX_SLOT_SIZE]) -> Self {
        Self {
            id: u16_at(slot, 0),
            gref: u32_at(slot, 4),
        }
    }

    /// Encodes the request (used by the mock frontends).
    pub fn encode(&self) -> [u8; RX_SLOT_SIZE] {
        let mut slot = [0u8; RX_SLOT_SIZE];
        slot[0..2].copy_from_slice(&self.id.to_le_bytes());
        slot[4..8].copy_from_slice(&self.gref.to_le_bytes());
        slot
    }
}

/// A decoded `netif_rx_response_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxResponse {
    /// The id of the request this answers.
    pub id: u16,
    /// Offset of the data in the granted page.
    pub offset: u16,
    /// `NETRXF_*` flags.
    pub flags: u16,
    /// Negative: `NETIF_RSP_*`; otherwise the number of bytes in this slot.
    pub status: i16,
}

impl RxResponse {
    /// Encodes the response for the ring.
    pub fn encode(&self) -> [u8; RX_SLOT_SIZE] {
        let mut slot = [0u8; RX_SLOT_SIZE];
        slot[0..2].copy_from_slice(&self.id.to_le_bytes());
        slot[2..4].copy_from_slice(&self.offset.to_le_bytes());
        slot[4..6].copy_from_slice(&self.flags.to_le_bytes());
        slot[6..8].copy_from_slice(&self.status.to_le_bytes());
        slot
    }

    /// Decodes a response (used by the mock frontends).
    pub fn decode(slot: &[u8; RX_SLOT_SIZE]) -> Self {
        Self {
            id: u16_at(slot, 0),
            offset: u16_at(slot, 2),
            flags: u16_at(slot, 4),
            status: u16_at(slot, 6) as i16,
        }
    }
}

/// The kind of TCP segmentation offload a large packet asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// `XEN_NETIF_GSO_TYPE_TCPV4`.
    TcpV4,
    /// `XEN_NETIF_GSO_TYPE_TCPV6`.
    TcpV6,
}

impl GsoKind {
    /// The `XEN_NETIF_GSO_TYPE_*` value.
    pub fn wire_type(self) -> u8 {
        match self {
            Self::TcpV4 => XEN_NETIF_GSO_TYPE_TCPV4,
            Self::TcpV6 => XEN_NETIF_GSO_TYPE_TCPV6,
        }
    }
}

/// A decoded `netif_extra_info_t`, before its contents are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*` as sent.
    pub kind: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*` as sent.
    pub flags: u8,
    /// The six type-specific bytes (`u.gso`, `u.mcast`, `u.hash`).
    pub payload: [u8; 6],
}

impl ExtraInfo {
    /// Decodes the first eight bytes of a slot as extra info.
    pub fn decode(slot: &[u8]) -> Self {
        let mut payload = [0u8; 6];
        payload.copy_from_slice(&slot[2..8]);
        Self {
            kind: slot[0],
            flags: slot[1],
            payload,
        }
    }

    /// A GSO extra-info (`u.gso`): segment size, type, no features.
    pub fn gso(kind: GsoKind, segment_size: u16) -> Self {
        let mut payload = [0u8; 6];
        payload[0..2].copy_from_slice(&segment_size.to_le_bytes());
        payload[2] = kind.wire_type();
        Self {
            kind: XEN_NETIF_EXTRA_TYPE_GSO,
            flags: 0,
            payload,
        }
    }

    /// Encodes into the eight bytes shared by the TX and RX layouts.
    pub fn encode(&self) -> [u8; EXTRA_INFO_SIZE] {
        let mut slot = [0u8; EXTRA_INFO_SIZE];
        slot[0] = self.kind;
        slot[1] = self.flags;
        slot[2..8].copy_from_slice(&self.payload);
        slot
    }

    /// Whether another extra-info slot follows.
    pub fn has_more(&self) -> bool {
        self.flags & XEN_NETIF_EXTRA_FLAG_MORE != 0
    }

    /// `u.gso.size`.
    pub fn gso_size(&self) -> u16 {
        u16_at(&self.payload, 0)
    }

    /// `u.gso.type`.
    pub fn gso_type(&self) -> u8 {
        self.payload[2]
    }

    /// `u.gso.features`.
    pub fn gso_features(&self) -> u16 {
        u16_at(&self.payload, 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_request_round_trips_through_bytes() {
        let request = TxRequest {
            gref: 0x0102_0304,
            offset: 0x0506,
            flags: 0x0708,
            id: 0x090a,
            size: 0x0b0c,
        };
        let bytes = request.encode();
        assert_eq!(
            bytes,
            [0x04, 0x03, 0x02, 0x01, 0x06, 0x05, 0x08, 0x07, 0x0a, 0x09, 0x0c, 0x0b]
        );
        assert_eq!(TxRequest::decode(&bytes), request);
    }

    #[test]
    fn rx_layouts_match_the_header_diagrams() {
        let request = RxRequest { id: 7, gref: 99 };
        assert_eq!(request.encode(), [7, 0, 0, 0, 99, 0, 0, 0]);
        let response = RxResponse {
            id: 1,
            offset: 2,
            flags: 3,
            status: -1,
        };
        assert_eq!(response.encode(), [1, 0, 2, 0, 3, 0, 0xff, 0xff]);
        assert_eq!(RxResponse::decode(&response.encode()), response);
        let tx = TxResponse { id: 5, status: -2 };
        assert_eq!(TxResponse::decode(&tx.encode()), tx);
    }

    #[test]
    fn gso_extra_info_layout() {
        let extra = ExtraInfo::gso(GsoKind::TcpV6, 1448);
        let bytes = extra.encode();
        assert_eq!(bytes, [1, 0, 0xa8, 0x05, 2, 0, 0, 0]);
        let decoded = ExtraInfo::decode(&bytes);
        assert_eq!(decoded.gso_size(), 1448);
        assert_eq!(decoded.gso_type(), XEN_NETIF_GSO_TYPE_TCPV6);
        assert_eq!(decoded.gso_features(), 0);
        assert!(!decoded.has_more());
    }
}
