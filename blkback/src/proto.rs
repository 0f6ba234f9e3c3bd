//! The blkif wire format and the validation of requests into typed form.
//!
//! Everything here works on bytes already copied out of the shared ring
//! (`RING_COPY_REQUEST`), so a frontend that rewrites its ring slot after the
//! copy changes nothing. [`parse_request`] turns one copied slot into a
//! [`Request`] or a [`Rejection`] that says which response to send and why;
//! [`parse_indirect_segments`] does the same for the segment array copied
//! out of indirect pages.
//!
//! Layouts (`xen/io/blkif.h`). The x86_64 ABI aligns the `u64` fields to 8
//! bytes; the x86_32 ABI (i386 `struct blkif_request` as GNU Mach and 32-bit
//! Linux lay it out) aligns them to 4, so `id` sits at offset 4 instead of 8
//! and the whole request is 108 bytes instead of 112:
//!
//! | field              | x86_64 | x86_32 |
//! |--------------------|--------|--------|
//! | operation          | 0      | 0      |
//! | nr_segments / flag / indirect_op | 1 | 1 |
//! | handle (rw, discard) | 2    | 2      |
//! | id                 | 8      | 4      |
//! | sector_number      | 16     | 12     |
//! | `seg[11]` (8 bytes each) | 24 | 20     |
//! | discard nr_sectors | 24     | 20     |
//! | indirect nr_segments (u16) | 2 | 2   |
//! | indirect handle    | 24     | 20     |
//! | `indirect_grefs[8]`  | 28     | 24     |
//! | request size       | 112    | 108    |
//! | response: id, operation, status | 0, 8, 10 (16 bytes) | 0, 8, 10 (12 bytes) |

use core::fmt;

use xenbus::platform::GrantRef;

/// `BLKIF_OP_READ`.
pub const BLKIF_OP_READ: u8 = xen_abi::BLKIF_OP_READ;
/// `BLKIF_OP_WRITE`.
pub const BLKIF_OP_WRITE: u8 = xen_abi::BLKIF_OP_WRITE;
/// `BLKIF_OP_WRITE_BARRIER`.
pub const BLKIF_OP_WRITE_BARRIER: u8 = xen_abi::BLKIF_OP_WRITE_BARRIER;
/// `BLKIF_OP_FLUSH_DISKCACHE`.
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = xen_abi::BLKIF_OP_FLUSH_DISKCACHE;
/// `BLKIF_OP_RESERVED_1` (SLES device-specific packets; never served).
pub const BLKIF_OP_RESERVED_1: u8 = xen_abi::BLKIF_OP_RESERVED_1;
/// `BLKIF_OP_DISCARD`.
pub const BLKIF_OP_DISCARD: u8 = xen_abi::BLKIF_OP_DISCARD;
/// `BLKIF_OP_INDIRECT`.
pub const BLKIF_OP_INDIRECT: u8 = xen_abi::BLKIF_OP_INDIRECT;

/// `BLKIF_DISCARD_SECURE`, the only defined bit of a discard's `flag`.
pub const BLKIF_DISCARD_SECURE: u8 = xen_abi::BLKIF_DISCARD_SECURE as u8;

/// `BLKIF_RSP_OKAY`.
pub const BLKIF_RSP_OKAY: i16 = xen_abi::BLKIF_RSP_OKAY;
/// `BLKIF_RSP_ERROR`.
pub const BLKIF_RSP_ERROR: i16 = xen_abi::BLKIF_RSP_ERROR;
/// `BLKIF_RSP_EOPNOTSUPP`.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = xen_abi::BLKIF_RSP_EOPNOTSUPP;

/// `VDISK_CDROM` bit of the `info` node.
pub const VDISK_CDROM: u32 = xen_abi::VDISK_CDROM;
/// `VDISK_REMOVABLE` bit of the `info` node.
pub const VDISK_REMOVABLE: u32 = xen_abi::VDISK_REMOVABLE;
/// `VDISK_READONLY` bit of the `info` node.
pub const VDISK_READONLY: u32 = xen_abi::VDISK_READONLY;

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments of a direct request.
pub const MAX_SEGMENTS_PER_REQUEST: usize = xen_abi::BLKIF_MAX_SEGMENTS_PER_REQUEST as usize;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`: grefs in an indirect request.
pub const MAX_INDIRECT_PAGES_PER_REQUEST: usize =
    xen_abi::BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST as usize;
/// Size of one `struct blkif_request_segment` (same in both ABIs).
pub const SEGMENT_SIZE: usize = 8;
/// Segments one indirect page holds (`PAGE_SIZE / sizeof(struct blkif_request_segment)`).
pub const SEGMENTS_PER_INDIRECT_PAGE: usize = PAGE_SIZE / SEGMENT_SIZE;
/// The unit of `sector_number`, `first_sect`, `last_sect` and `sectors`.
pub const SECTOR_SIZE: usize = 512;
/// A Xen page: every segment lives in one granted page.
pub const PAGE_SIZE: usize = 4096;
/// Sectors in one page: `last_sect` is at most this minus one.
pub const SECTORS_PER_PAGE: u8 = (PAGE_SIZE / SECTOR_SIZE) as u8;

/// The size of the largest request slot; a copied slot fits in this buffer.
pub const MAX_REQUEST_SIZE: usize = 112;
/// The size of the largest response.
pub const MAX_RESPONSE_SIZE: usize = 16;

/// The machine ABI of a frontend's ring, from its `protocol` node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    /// `x86_32-abi`: 4-byte aligned `u64` fields, 108-byte requests.
    X86_32,
    /// `x86_64-abi` (this backend's native ABI): 112-byte requests.
    X86_64,
}

impl Abi {
    /// Size of `struct blkif_request` in this ABI.
    pub const fn request_size(self) -> usize {
        match self {
            Self::X86_32 => 108,
            Self::X86_64 => 112,
        }
    }

    /// Size of `struct blkif_response` in this ABI.
    pub const fn response_size(self) -> usize {
        match self {
            Self::X86_32 => 12,
            Self::X86_64 => 16,
        }
    }

    /// Size of one ring slot: the request/response union.
    pub const fn slot_size(self) -> usize {
        self.request_size()
    }

    /// Offset of `id` (identical for read/write, discard and indirect).
    const fn id_offset(self) -> usize {
        match self {
            Self::X86_32 => 4,
            Self::X86_64 => 8,
        }
    }

    const fn sector_offset(self) -> usize {
        self.id_offset() + 8
    }

    /// Offset of `seg[0]`, of discard's `nr_sectors` and of indirect's `handle`.
    const fn after_sector_offset(self) -> usize {
        self.sector_offset() + 8
    }

    /// Offset of `indirect_grefs[0]`: after the `u16` handle and its padding.
    const fn indirect_grefs_offset(self) -> usize {
        self.after_sector_offset() + 4
    }

    /// The `protocol` value naming this ABI (`XEN_IO_PROTO_ABI_*`).
    pub const fn protocol_name(self) -> &'static str {
        match self {
            Self::X86_32 => "x86_32-abi",
            Self::X86_64 => "x86_64-abi",
        }
    }
}

/// One `struct blkif_request_segment`, checked: `first_sect <= last_sect < 8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The granted page holding the data.
    pub gref: GrantRef,
    /// First sector of the page to transfer.
    pub first_sect: u8,
    /// Last sector of the page to transfer (inclusive).
    pub last_sect: u8,
}

impl Segment {
    /// Number of sectors the segment transfers (1 to 8).
    pub fn sectors(&self) -> u64 {
        u64::from(self.last_sect - self.first_sect) + 1
    }

    /// Bytes the segment transfers.
    pub fn len(&self) -> usize {
        self.sectors() as usize * SECTOR_SIZE
    }

    /// Always false: a checked segment transfers at least one sector.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Byte offset of the data inside the granted page.
    pub fn offset(&self) -> u16 {
        u16::from(self.first_sect) * SECTOR_SIZE as u16
    }

    fn decode(bytes: &[u8]) -> Result<Self, RejectReason> {
        let segment = Segment {
            gref: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            first_sect: bytes[4],
            last_sect: bytes[5],
        };
        if segment.last_sect >= SECTORS_PER_PAGE {
            return Err(RejectReason::LastSectorPastPage);
        }
        if segment.first_sect > segment.last_sect {
            return Err(RejectReason::FirstSectorAfterLast);
        }
        Ok(segment)
    }
}

/// Up to eleven segments of a direct request, held inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectSegments {
    segments: [Segment; MAX_SEGMENTS_PER_REQUEST],
    count: u8,
}

impl DirectSegments {
    const EMPTY: Segment = Segment {
        gref: 0,
        first_sect: 0,
        last_sect: 0,
    };

    /// No segments (flush and barrier without data).
    pub const fn none() -> Self {
        Self {
            segments: [Self::EMPTY; MAX_SEGMENTS_PER_REQUEST],
            count: 0,
        }
    }

    /// The segments.
    pub fn as_slice(&self) -> &[Segment] {
        &self.segments[..usize::from(self.count)]
    }
}

/// Whether data moves from the disk to the frontend or the other way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Disk to frontend (`BLKIF_OP_READ`).
    Read,
    /// Frontend to disk (`BLKIF_OP_WRITE`).
    Write,
}

/// A request validated against the device's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `BLKIF_OP_READ` or `BLKIF_OP_WRITE` with its segments inline.
    ReadWrite {
        /// Echoed in the response.
        id: u64,
        /// Read or write.
        direction: Direction,
        /// First sector on the disk.
        sector: u64,
        /// One to eleven segments; the sector range is inside the device.
        segments: DirectSegments,
    },
    /// `BLKIF_OP_INDIRECT`: the segments are in granted indirect pages and
    /// still have to be copied out and checked with [`parse_indirect_segments`].
    Indirect {
        /// Echoed in the response.
        id: u64,
        /// Read or write (`indirect_op`).
        direction: Direction,
        /// First sector on the disk.
        sector: u64,
        /// One to the advertised maximum.
        nr_segments: u16,
        /// The indirect pages: `ceil(nr_segments / 512)` grefs.
        indirect_grefs: [GrantRef; MAX_INDIRECT_PAGES_PER_REQUEST],
    },
    /// `BLKIF_OP_FLUSH_DISKCACHE` (`barrier == false`) or
    /// `BLKIF_OP_WRITE_BARRIER` (`barrier == true`), optionally carrying data
    /// to write at `sector` after every earlier write and before the flush.
    Flush {
        /// Echoed in the response.
        id: u64,
        /// Whether later requests must wait for this one (`WRITE_BARRIER`).
        barrier: bool,
        /// Where the data goes (meaningless without segments).
        sector: u64,
        /// Zero to eleven segments.
        segments: DirectSegments,
    },
    /// `BLKIF_OP_DISCARD`.
    Discard {
        /// Echoed in the response.
        id: u64,
        /// First sector.
        sector: u64,
        /// Number of sectors.
        nr_sectors: u64,
        /// `BLKIF_DISCARD_SECURE` was set (only accepted if supported).
        secure: bool,
    },
}

impl Request {
    /// The frontend's `id`.
    pub fn id(&self) -> u64 {
        match *self {
            Self::ReadWrite { id, .. }
            | Self::Indirect { id, .. }
            | Self::Flush { id, .. }
            | Self::Discard { id, .. } => id,
        }
    }
}

/// What the device and the negotiated features allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Device size in 512-byte sectors.
    pub sectors: u64,
    /// Writes, flushes, barriers and discards are refused.
    pub read_only: bool,
    /// `BLKIF_OP_FLUSH_DISKCACHE` and `BLKIF_OP_WRITE_BARRIER` are served.
    pub flush: bool,
    /// `BLKIF_OP_DISCARD` is served.
    pub discard: bool,
    /// Discards with `BLKIF_DISCARD_SECURE` are served.
    pub secure_discard: bool,
    /// The advertised `feature-max-indirect-segments`; 0 refuses `BLKIF_OP_INDIRECT`.
    pub max_indirect_segments: u16,
}

/// Why a request was refused. The doc line of each variant is its log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The operation code is not one of blkif.h's.
    UnknownOperation,
    /// The operation is reserved and never served.
    ReservedOperation,
    /// The device or the backend does not offer this operation.
    NotSupported,
    /// Secure discard was asked for but the device cannot do it.
    SecureDiscardNotSupported,
    /// The discard flag has bits other than `BLKIF_DISCARD_SECURE`.
    UnknownDiscardFlag,
    /// A read or write has no segments.
    NoSegments,
    /// A direct request has more than eleven segments.
    TooManySegments,
    /// An indirect request has more segments than advertised.
    TooManyIndirectSegments,
    /// An indirect request's `indirect_op` is neither read nor write.
    BadIndirectOperation,
    /// A segment's `last_sect` is beyond the page's last sector.
    LastSectorPastPage,
    /// A segment's `first_sect` is after its `last_sect`.
    FirstSectorAfterLast,
    /// The sector range ends beyond the device (or overflows).
    SectorOutOfRange,
    /// A write-like request reached a read-only device.
    ReadOnly,
    /// An indirect page could not be copied (bad or foreign gref).
    IndirectPageUnreadable,
    /// A segment's page could not be copied or mapped (bad or foreign gref).
    GrantFailed,
    /// The device reported an error.
    DeviceError,
    /// The device does not support the operation it was given.
    DeviceNotSupported,
    /// The device refused the request at submission.
    DeviceRefused,
    /// The backend could not allocate a data buffer.
    OutOfMemory,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownOperation => "unknown operation",
            Self::ReservedOperation => "reserved operation",
            Self::NotSupported => "operation not offered for this device",
            Self::SecureDiscardNotSupported => "secure discard not supported by the device",
            Self::UnknownDiscardFlag => "discard flag has unknown bits",
            Self::NoSegments => "read or write without segments",
            Self::TooManySegments => "more than 11 segments in a direct request",
            Self::TooManyIndirectSegments => "more indirect segments than advertised",
            Self::BadIndirectOperation => "indirect_op is neither read nor write",
            Self::LastSectorPastPage => "last_sect beyond the page",
            Self::FirstSectorAfterLast => "first_sect after last_sect",
            Self::SectorOutOfRange => "sector range beyond the device",
            Self::ReadOnly => "write to a read-only device",
            Self::IndirectPageUnreadable => "indirect page could not be copied",
            Self::GrantFailed => "data page grant failed",
            Self::DeviceError => "device error",
            Self::DeviceNotSupported => "device does not support the operation",
            Self::DeviceRefused => "device refused the request",
            Self::OutOfMemory => "out of memory for the data buffer",
        })
    }
}

impl RejectReason {
    /// The `BLKIF_RSP_*` status a request refused for this reason gets.
    pub fn status(self) -> i16 {
        match self {
            Self::UnknownOperation
            | Self::ReservedOperation
            | Self::NotSupported
            | Self::SecureDiscardNotSupported
            | Self::DeviceNotSupported => BLKIF_RSP_EOPNOTSUPP,
            _ => BLKIF_RSP_ERROR,
        }
    }
}

/// A refused request: the response to send and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The request's `id`, echoed.
    pub id: u64,
    /// The request's `operation` byte, echoed.
    pub operation: u8,
    /// Why.
    pub reason: RejectReason,
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

/// Checks that `sectors` sectors starting at `sector` lie inside the device.
pub fn check_range(sector: u64, sectors: u64, limits: &Limits) -> Result<(), RejectReason> {
    match sector.checked_add(sectors) {
        Some(end) if end <= limits.sectors => Ok(()),
        _ => Err(RejectReason::SectorOutOfRange),
    }
}

/// Total sectors of a checked segment list.
pub fn total_sectors(segments: &[Segment]) -> u64 {
    segments.iter().map(Segment::sectors).sum()
}

fn direct_segments(slot: &[u8], abi: Abi, count: u8) -> Result<DirectSegments, RejectReason> {
    if usize::from(count) > MAX_SEGMENTS_PER_REQUEST {
        return Err(RejectReason::TooManySegments);
    }
    let mut segments = DirectSegments::none();
    let base = abi.after_sector_offset();
    for index in 0..usize::from(count) {
        let at = base + index * SEGMENT_SIZE;
        segments.segments[index] = Segment::decode(&slot[at..at + SEGMENT_SIZE])?;
    }
    segments.count = count;
    Ok(segments)
}

/// The `operation` a response to the request in `slot` carries: the
/// request's own, except for `BLKIF_OP_INDIRECT`, whose response carries its
/// `indirect_op` (Linux's blkback does this, and Linux's blkfront since 5.14
/// treats any other value as a broken backend).
pub fn response_operation(slot: &[u8]) -> u8 {
    if slot[0] == BLKIF_OP_INDIRECT {
        slot[1]
    } else {
        slot[0]
    }
}

/// Decodes and validates one request slot copied out of the ring.
///
/// `slot` must hold at least `abi.request_size()` bytes (a copy, never the
/// ring itself). Indirect requests are checked as far as the slot goes: the
/// segment count, the operation and the page count; their segments are
/// checked by [`parse_indirect_segments`] once copied out.
pub fn parse_request(slot: &[u8], abi: Abi, limits: &Limits) -> Result<Request, Rejection> {
    let operation = response_operation(slot);
    let id = u64_at(slot, abi.id_offset());
    let sector = u64_at(slot, abi.sector_offset());
    let reject = |reason| Rejection {
        id,
        operation,
        reason,
    };
    match slot[0] {
        BLKIF_OP_READ | BLKIF_OP_WRITE => {
            let operation = slot[0];
            let direction = if operation == BLKIF_OP_READ {
                Direction::Read
            } else {
                Direction::Write
            };
            if direction == Direction::Write && limits.read_only {
                return Err(reject(RejectReason::ReadOnly));
            }
            let count = slot[1];
            if count == 0 {
                return Err(reject(RejectReason::NoSegments));
            }
            let segments = direct_segments(slot, abi, count).map_err(reject)?;
            check_range(sector, total_sectors(segments.as_slice()), limits).map_err(reject)?;
            Ok(Request::ReadWrite {
                id,
                direction,
                sector,
                segments,
            })
        }
        operation @ (BLKIF_OP_WRITE_BARRIER | BLKIF_OP_FLUSH_DISKCACHE) => {
            if !limits.flush {
                return Err(reject(RejectReason::NotSupported));
            }
            if limits.read_only {
                return Err(reject(RejectReason::ReadOnly));
            }
            let segments = direct_segments(slot, abi, slot[1]).map_err(reject)?;
            if !segments.as_slice().is_empty() {
                check_range(sector, total_sectors(segments.as_slice()), limits).map_err(reject)?;
            }
            Ok(Request::Flush {
                id,
                barrier: operation == BLKIF_OP_WRITE_BARRIER,
                sector,
                segments,
            })
        }
        BLKIF_OP_DISCARD => {
            if !limits.discard {
                return Err(reject(RejectReason::NotSupported));
            }
            let flag = slot[1];
            if flag & !BLKIF_DISCARD_SECURE != 0 {
                return Err(reject(RejectReason::UnknownDiscardFlag));
            }
            let secure = flag & BLKIF_DISCARD_SECURE != 0;
            if secure && !limits.secure_discard {
                return Err(reject(RejectReason::SecureDiscardNotSupported));
            }
            if limits.read_only {
                return Err(reject(RejectReason::ReadOnly));
            }
            let nr_sectors = u64_at(slot, abi.after_sector_offset());
            check_range(sector, nr_sectors, limits).map_err(reject)?;
            Ok(Request::Discard {
                id,
                sector,
                nr_sectors,
                secure,
            })
        }
        BLKIF_OP_INDIRECT => {
            if limits.max_indirect_segments == 0 {
                return Err(reject(RejectReason::NotSupported));
            }
            let direction = match slot[1] {
                BLKIF_OP_READ => Direction::Read,
                BLKIF_OP_WRITE => Direction::Write,
                _ => return Err(reject(RejectReason::BadIndirectOperation)),
            };
            if direction == Direction::Write && limits.read_only {
                return Err(reject(RejectReason::ReadOnly));
            }
            let nr_segments = u16::from_le_bytes([slot[2], slot[3]]);
            if nr_segments == 0 {
                return Err(reject(RejectReason::NoSegments));
            }
            if nr_segments > limits.max_indirect_segments {
                return Err(reject(RejectReason::TooManyIndirectSegments));
            }
            // Even the largest count fits in eight pages, so the grefs are
            // always inside the slot; the count bound above keeps the
            // request within what was advertised.
            let pages = indirect_pages(nr_segments);
            if pages > MAX_INDIRECT_PAGES_PER_REQUEST {
                return Err(reject(RejectReason::TooManyIndirectSegments));
            }
            // A range check now refuses the request before any page is
            // copied: every segment moves at least one sector.
            check_range(sector, u64::from(nr_segments), limits).map_err(reject)?;
            let mut indirect_grefs = [0; MAX_INDIRECT_PAGES_PER_REQUEST];
            for (index, gref) in indirect_grefs.iter_mut().enumerate().take(pages) {
                *gref = u32_at(slot, abi.indirect_grefs_offset() + 4 * index);
            }
            Ok(Request::Indirect {
                id,
                direction,
                sector,
                nr_segments,
                indirect_grefs,
            })
        }
        BLKIF_OP_RESERVED_1 => Err(reject(RejectReason::ReservedOperation)),
        _ => Err(reject(RejectReason::UnknownOperation)),
    }
}

/// Number of indirect pages that hold `nr_segments` segments.
pub fn indirect_pages(nr_segments: u16) -> usize {
    usize::from(nr_segments).div_ceil(SEGMENTS_PER_INDIRECT_PAGE)
}

/// Decodes the segments copied out of an indirect request's pages
/// (`nr_segments * 8` bytes) and checks each and the whole range.
pub fn parse_indirect_segments(
    bytes: &[u8],
    sector: u64,
    limits: &Limits,
) -> Result<alloc::vec::Vec<Segment>, RejectReason> {
    let mut segments = alloc::vec::Vec::new();
    segments
        .try_reserve_exact(bytes.len() / SEGMENT_SIZE)
        .map_err(|_| RejectReason::OutOfMemory)?;
    for chunk in bytes.chunks_exact(SEGMENT_SIZE) {
        segments.push(Segment::decode(chunk)?);
    }
    check_range(sector, total_sectors(&segments), limits)?;
    Ok(segments)
}

/// Encodes a `struct blkif_response` for `abi` into `out`; returns its length.
pub fn encode_response(
    abi: Abi,
    id: u64,
    operation: u8,
    status: i16,
    out: &mut [u8; MAX_RESPONSE_SIZE],
) -> usize {
    *out = [0; MAX_RESPONSE_SIZE];
    out[0..8].copy_from_slice(&id.to_le_bytes());
    out[8] = operation;
    out[10..12].copy_from_slice(&status.to_le_bytes());
    abi.response_size()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        sectors: 1000,
        read_only: false,
        flush: true,
        discard: true,
        secure_discard: false,
        max_indirect_segments: 256,
    };

    fn slot(abi: Abi, operation: u8, count: u8, id: u64, sector: u64) -> [u8; 112] {
        let mut slot = [0u8; 112];
        slot[0] = operation;
        slot[1] = count;
        slot[abi.id_offset()..abi.id_offset() + 8].copy_from_slice(&id.to_le_bytes());
        slot[abi.sector_offset()..abi.sector_offset() + 8].copy_from_slice(&sector.to_le_bytes());
        slot
    }

    fn set_segment(slot: &mut [u8], abi: Abi, index: usize, gref: u32, first: u8, last: u8) {
        let at = abi.after_sector_offset() + index * SEGMENT_SIZE;
        slot[at..at + 4].copy_from_slice(&gref.to_le_bytes());
        slot[at + 4] = first;
        slot[at + 5] = last;
    }

    #[test]
    fn x86_32_read_uses_packed_offsets() {
        let abi = Abi::X86_32;
        let mut raw = slot(abi, BLKIF_OP_READ, 2, 0xdead_beef_1234, 10);
        set_segment(&mut raw, abi, 0, 77, 0, 7);
        set_segment(&mut raw, abi, 1, 78, 2, 3);
        let request = parse_request(&raw, abi, &LIMITS).unwrap();
        let Request::ReadWrite {
            id,
            sector,
            segments,
            direction,
        } = request
        else {
            panic!("not a read: {request:?}");
        };
        assert_eq!(
            (id, sector, direction),
            (0xdead_beef_1234, 10, Direction::Read)
        );
        assert_eq!(segments.as_slice()[1].gref, 78);
        assert_eq!(total_sectors(segments.as_slice()), 10);
    }

    #[test]
    fn range_end_exactly_at_capacity_is_accepted_and_one_past_is_not() {
        let abi = Abi::X86_64;
        let mut raw = slot(abi, BLKIF_OP_WRITE, 1, 1, 992);
        set_segment(&mut raw, abi, 0, 5, 0, 7);
        assert!(parse_request(&raw, abi, &LIMITS).is_ok());
        let mut raw = slot(abi, BLKIF_OP_WRITE, 1, 1, 993);
        set_segment(&mut raw, abi, 0, 5, 0, 7);
        let rejection = parse_request(&raw, abi, &LIMITS).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::SectorOutOfRange);
        let mut raw = slot(abi, BLKIF_OP_WRITE, 1, 1, u64::MAX - 2);
        set_segment(&mut raw, abi, 0, 5, 0, 7);
        assert_eq!(
            parse_request(&raw, abi, &LIMITS).unwrap_err().reason,
            RejectReason::SectorOutOfRange
        );
    }

    #[test]
    fn unknown_and_unoffered_operations_get_eopnotsupp() {
        let abi = Abi::X86_64;
        let rejection = parse_request(&slot(abi, 99, 0, 7, 0), abi, &LIMITS).unwrap_err();
        assert_eq!((rejection.id, rejection.operation), (7, 99));
        assert_eq!(rejection.reason.status(), BLKIF_RSP_EOPNOTSUPP);
        let mut raw = slot(abi, BLKIF_OP_DISCARD, BLKIF_DISCARD_SECURE, 7, 0);
        raw[24] = 8;
        assert_eq!(
            parse_request(&raw, abi, &LIMITS).unwrap_err().reason,
            RejectReason::SecureDiscardNotSupported
        );
    }

    #[test]
    fn indirect_needs_one_page_per_512_segments() {
        assert_eq!(indirect_pages(1), 1);
        assert_eq!(indirect_pages(512), 1);
        assert_eq!(indirect_pages(513), 2);
        let abi = Abi::X86_32;
        let mut raw = slot(abi, BLKIF_OP_INDIRECT, BLKIF_OP_WRITE, 3, 0);
        raw[2..4].copy_from_slice(&257u16.to_le_bytes());
        let rejection = parse_request(&raw, abi, &LIMITS).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::TooManyIndirectSegments);
        // The response carries the indirect_op, as Linux's blkfront checks.
        assert_eq!(rejection.operation, BLKIF_OP_WRITE);
        raw[2..4].copy_from_slice(&256u16.to_le_bytes());
        raw[24..28].copy_from_slice(&41u32.to_le_bytes());
        let Request::Indirect { indirect_grefs, .. } = parse_request(&raw, abi, &LIMITS).unwrap()
        else {
            panic!("not indirect");
        };
        assert_eq!(indirect_grefs[0], 41);
    }

    /// The hand-written offsets agree with what the C compiler makes of
    /// blkif.h for each ABI (bindgen layouts in `xen-abi`).
    #[test]
    fn offsets_match_the_c_layouts() {
        use core::mem::{offset_of, size_of};
        use xen_abi::blkif::{x86_32, x86_64};
        for (abi, request, id, sector, seg, discard_sectors, indirect_handle, grefs, response) in [
            (
                Abi::X86_64,
                size_of::<x86_64::blkif_request>(),
                offset_of!(x86_64::blkif_request, id),
                offset_of!(x86_64::blkif_request, sector_number),
                offset_of!(x86_64::blkif_request, seg),
                offset_of!(x86_64::blkif_request_discard, nr_sectors),
                offset_of!(x86_64::blkif_request_indirect, handle),
                offset_of!(x86_64::blkif_request_indirect, indirect_grefs),
                size_of::<x86_64::blkif_response>(),
            ),
            (
                Abi::X86_32,
                size_of::<x86_32::blkif_request>(),
                offset_of!(x86_32::blkif_request, id),
                offset_of!(x86_32::blkif_request, sector_number),
                offset_of!(x86_32::blkif_request, seg),
                offset_of!(x86_32::blkif_request_discard, nr_sectors),
                offset_of!(x86_32::blkif_request_indirect, handle),
                offset_of!(x86_32::blkif_request_indirect, indirect_grefs),
                size_of::<x86_32::blkif_response>(),
            ),
        ] {
            assert_eq!(abi.request_size(), request, "{abi:?}");
            assert_eq!(abi.id_offset(), id, "{abi:?}");
            assert_eq!(abi.sector_offset(), sector, "{abi:?}");
            assert_eq!(abi.after_sector_offset(), seg, "{abi:?}");
            assert_eq!(abi.after_sector_offset(), discard_sectors, "{abi:?}");
            assert_eq!(abi.after_sector_offset(), indirect_handle, "{abi:?}");
            assert_eq!(abi.indirect_grefs_offset(), grefs, "{abi:?}");
            assert_eq!(abi.response_size(), response, "{abi:?}");
        }
        assert_eq!(Abi::X86_64.slot_size(), x86_64::SLOT_SIZE);
        assert_eq!(Abi::X86_32.slot_size(), x86_32::SLOT_SIZE);
    }

    #[test]
    fn responses_have_the_abi_size() {
        let mut out = [0u8; MAX_RESPONSE_SIZE];
        assert_eq!(encode_response(Abi::X86_32, 5, 1, -1, &mut out), 12);
        assert_eq!(&out[10..12], &(-1i16).to_le_bytes());
        assert_eq!(encode_response(Abi::X86_64, 5, 1, 0, &mut out), 16);
    }
}
