//! A mock blkfront, in two flavours that behave like real guests' drivers.
//!
//! * [`BlkfrontConfig::linux`] negotiates like Linux's `xen-blkfront`:
//!   waits for the backend's InitWait, asks for as many queues and as large a
//!   ring as the backend offers (up to its own limits), writes
//!   `protocol = x86_64-abi` and `feature-persistent = 1`, uses indirect
//!   requests for transfers of more than 11 pages, keeps persistently
//!   granted data pages in a LIFO pool, and goes Initialised, then Connected
//!   once the backend is.
//! * [`BlkfrontConfig::gnu_mach`] behaves like GNU Mach's 32-bit PV
//!   blkfront: no `protocol` node (so the x86_32 layout), one single-page
//!   ring, at most 11 segments, no optional features; it reads `sectors`,
//!   `sector-size`, `info`, `mode` and `params` from the backend as soon as
//!   the backend has left Initialising and fails (GNU Mach panics) if any
//!   is missing; it writes only `ring-ref`, `event-channel` and `state`
//!   (straight to Connected).
//!
//! The mock is driven step by step from one thread: [`Blkfront::step`]
//! advances the xenbus handshake, [`Blkfront::submit`] queues requests and
//! [`Blkfront::collect`] takes responses. Hostile tests use the raw hooks
//! ([`Blkfront::push_raw`], [`Blkfront::ring_memory`],
//! [`Blkfront::grant_data_page`], [`Blkfront::write_node`]) to send what no
//! honest driver would.
//!
//! The request layout is encoded here independently of the backend's
//! decoder (`xen/io/blkif.h`; x86_32 packs the `u64` fields at 4-byte
//! alignment, so `id` is at offset 4 and a request is 108 bytes).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use xen_ring::{FrontRing, RingError, SharedMemory};
use xenbus::platform::{
    DomId, EvtchnError, EvtchnPort, GrantError, GrantRef, TxId, Xenstore, XsError,
};
use xenbus::XenbusState;

use crate::memory::{Gfn, Page, PAGE_SIZE};
use crate::toolstack::DeviceNodes;
use crate::Domain;

/// `BLKIF_OP_READ`.
pub const OP_READ: u8 = 0;
/// `BLKIF_OP_WRITE`.
pub const OP_WRITE: u8 = 1;
/// `BLKIF_OP_WRITE_BARRIER`.
pub const OP_WRITE_BARRIER: u8 = 2;
/// `BLKIF_OP_FLUSH_DISKCACHE`.
pub const OP_FLUSH_DISKCACHE: u8 = 3;
/// `BLKIF_OP_DISCARD`.
pub const OP_DISCARD: u8 = 5;
/// `BLKIF_OP_INDIRECT`.
pub const OP_INDIRECT: u8 = 6;
/// `BLKIF_RSP_OKAY`.
pub const RSP_OKAY: i16 = 0;
/// `BLKIF_RSP_ERROR`.
pub const RSP_ERROR: i16 = -1;
/// `BLKIF_RSP_EOPNOTSUPP`.
pub const RSP_EOPNOTSUPP: i16 = -2;
/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`.
pub const MAX_DIRECT_SEGMENTS: usize = 11;
/// The blkif sector.
pub const SECTOR_SIZE: usize = 512;

/// The request layout a frontend uses on its ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingAbi {
    /// 32-bit x86: 108-byte requests, 12-byte responses.
    X86_32,
    /// 64-bit x86: 112-byte requests, 16-byte responses.
    X86_64,
}

impl RingAbi {
    /// Size of a ring slot (the request, the larger union member).
    pub fn slot_size(self) -> usize {
        match self {
            RingAbi::X86_32 => 108,
            RingAbi::X86_64 => 112,
        }
    }

    fn id_offset(self) -> usize {
        match self {
            RingAbi::X86_32 => 4,
            RingAbi::X86_64 => 8,
        }
    }
}

/// Which real driver the mock imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Linux `xen-blkfront`.
    Linux,
    /// GNU Mach's blkfront (Hurd, 32-bit PV).
    GnuMach,
}

/// How the mock frontend negotiates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkfrontConfig {
    /// The driver imitated.
    pub flavour: Flavour,
    /// Queues to ask for; capped by the backend's `multi-queue-max-queues`.
    pub queues: u32,
    /// Ring page order to ask for; capped by `max-ring-page-order`.
    pub ring_page_order: u32,
    /// Ask for persistent grants.
    pub persistent: bool,
    /// Use indirect requests when the backend offers them.
    pub indirect: bool,
    /// The `protocol` node to write, if any.
    pub protocol: Option<String>,
    /// The layout actually used on the ring.
    pub abi: RingAbi,
}

impl BlkfrontConfig {
    /// Linux `xen-blkfront` with every feature: 4 queues, 16-page rings,
    /// persistent grants, indirect segments, `x86_64-abi`.
    pub fn linux() -> Self {
        BlkfrontConfig {
            flavour: Flavour::Linux,
            queues: 4,
            ring_page_order: 4,
            persistent: true,
            indirect: true,
            protocol: Some("x86_64-abi".to_string()),
            abi: RingAbi::X86_64,
        }
    }

    /// GNU Mach's blkfront: nothing optional, no `protocol`, 32-bit layout.
    pub fn gnu_mach() -> Self {
        BlkfrontConfig {
            flavour: Flavour::GnuMach,
            queues: 1,
            ring_page_order: 0,
            persistent: false,
            indirect: false,
            protocol: None,
            abi: RingAbi::X86_32,
        }
    }
}

/// What the backend published about the disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskInfo {
    /// `sectors`.
    pub sectors: u64,
    /// `sector-size`.
    pub sector_size: u32,
    /// `info` (`VDISK_*` bits).
    pub info: u32,
    /// `feature-flush-cache`.
    pub flush: bool,
    /// `feature-barrier`.
    pub barrier: bool,
    /// `feature-discard`.
    pub discard: bool,
    /// `discard-secure`.
    pub secure_discard: bool,
}

/// Why the mock frontend could not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlkfrontError {
    /// A xenstore request failed.
    Xenstore(XsError),
    /// A backend node GNU Mach reads unconditionally is missing (it would panic).
    MissingBackendNode(String),
    /// A backend node holds a value that does not parse.
    BadBackendNode(String),
    /// Granting a page failed.
    Grant(GrantError),
    /// Allocating or using an event channel failed.
    Evtchn(EvtchnError),
    /// The ring reported an error (the backend broke the protocol).
    Ring(RingError),
    /// The device is not connected.
    NotConnected,
    /// The queue index is out of range.
    NoSuchQueue,
    /// The ring has no free slot.
    RingFull,
    /// The request needs more segments than the negotiated features allow.
    TooManySegments,
    /// The data length is not a positive multiple of 512 bytes.
    BadLength,
    /// The backend answered a request id that is not outstanding.
    UnknownResponse(u64),
    /// The response's operation is not the one the request expects.
    WrongOperation {
        /// The request id.
        id: u64,
        /// The request's operation (`indirect_op` for indirect requests).
        expected: u8,
        /// What the backend sent.
        got: u8,
    },
}

impl fmt::Display for BlkfrontError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, formatter)
    }
}

impl std::error::Error for BlkfrontError {}

impl From<XsError> for BlkfrontError {
    fn from(error: XsError) -> Self {
        BlkfrontError::Xenstore(error)
    }
}

/// A request for [`Blkfront::submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlkOp {
    /// Read `sectors` sectors from `sector`.
    Read {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        sectors: u32,
    },
    /// Write `data` (a multiple of 512 bytes) at `sector`.
    Write {
        /// First sector.
        sector: u64,
        /// The data.
        data: Vec<u8>,
    },
    /// `BLKIF_OP_FLUSH_DISKCACHE` without data.
    Flush,
    /// `BLKIF_OP_WRITE_BARRIER`, with `data` (possibly empty) at `sector`.
    Barrier {
        /// First sector.
        sector: u64,
        /// The data, possibly empty.
        data: Vec<u8>,
    },
    /// `BLKIF_OP_DISCARD`.
    Discard {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        sectors: u64,
        /// Set `BLKIF_DISCARD_SECURE`.
        secure: bool,
    },
}

/// A response the backend sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The request id.
    pub id: u64,
    /// The `operation` echoed.
    pub operation: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
    /// For a successful read, the data.
    pub data: Option<Vec<u8>>,
}

/// Contiguous shared memory over several pages: a multi-page ring as the
/// frontend sees it.
#[derive(Debug, Clone)]
pub struct PageArray {
    pages: Vec<Page>,
}

impl PageArray {
    /// Splits `offset..offset + length` at page boundaries into
    /// (page index, offset in page, offset in the caller's buffer, length).
    fn pieces(offset: usize, length: usize) -> Vec<(usize, usize, usize, usize)> {
        let mut pieces = Vec::new();
        let mut done = 0;
        while done < length {
            let position = offset + done;
            let in_page = position % PAGE_SIZE;
            let count = (PAGE_SIZE - in_page).min(length - done);
            pieces.push((position / PAGE_SIZE, in_page, done, count));
            done += count;
        }
        pieces
    }
}

impl SharedMemory for PageArray {
    fn len(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }
    fn load_u32(&self, offset: usize) -> u32 {
        self.pages[offset / PAGE_SIZE].load_u32(offset % PAGE_SIZE)
    }
    fn store_u32(&self, offset: usize, value: u32) {
        self.pages[offset / PAGE_SIZE].store_u32(offset % PAGE_SIZE, value)
    }
    fn read(&self, offset: usize, destination: &mut [u8]) {
        for (page, at, from, count) in Self::pieces(offset, destination.len()) {
            self.pages[page].read(at, &mut destination[from..from + count]);
        }
    }
    fn write(&self, offset: usize, source: &[u8]) {
        for (page, at, from, count) in Self::pieces(offset, source.len()) {
            self.pages[page].write(at, &source[from..from + count]);
        }
    }
}

/// A data page of the frontend and its current grant.
#[derive(Debug, Clone)]
pub struct DataPage {
    /// The frame.
    pub gfn: Gfn,
    /// The page.
    pub page: Page,
    /// The gref granting it to the backend.
    pub gref: GrantRef,
}

struct Queue {
    ring: FrontRing<PageArray>,
    ring_grefs: Vec<GrantRef>,
    ring_gfns: Vec<Gfn>,
    port: EvtchnPort,
}

struct Pending {
    queue: usize,
    operation: u8,
    /// Data pages and how many bytes of each the request uses.
    pages: Vec<(DataPage, usize)>,
    indirect_pages: Vec<DataPage>,
    read: bool,
}

/// One segment as it goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireSegment {
    /// Data page gref.
    pub gref: GrantRef,
    /// First sector in the page.
    pub first_sect: u8,
    /// Last sector in the page (inclusive).
    pub last_sect: u8,
}

/// Encodes a read/write/flush/barrier request slot with direct segments.
pub fn encode_rw(
    abi: RingAbi,
    operation: u8,
    id: u64,
    sector: u64,
    segments: &[WireSegment],
) -> Vec<u8> {
    let mut slot = vec![0u8; abi.slot_size()];
    slot[0] = operation;
    slot[1] = segments.len() as u8;
    let id_at = abi.id_offset();
    slot[id_at..id_at + 8].copy_from_slice(&id.to_le_bytes());
    slot[id_at + 8..id_at + 16].copy_from_slice(&sector.to_le_bytes());
    for (index, segment) in segments.iter().enumerate() {
        let at = id_at + 16 + index * 8;
        slot[at..at + 4].copy_from_slice(&segment.gref.to_le_bytes());
        slot[at + 4] = segment.first_sect;
        slot[at + 5] = segment.last_sect;
    }
    slot
}

/// Encodes a discard request slot.
pub fn encode_discard(abi: RingAbi, id: u64, sector: u64, sectors: u64, flag: u8) -> Vec<u8> {
    let mut slot = vec![0u8; abi.slot_size()];
    slot[0] = OP_DISCARD;
    slot[1] = flag;
    let id_at = abi.id_offset();
    slot[id_at..id_at + 8].copy_from_slice(&id.to_le_bytes());
    slot[id_at + 8..id_at + 16].copy_from_slice(&sector.to_le_bytes());
    slot[id_at + 16..id_at + 24].copy_from_slice(&sectors.to_le_bytes());
    slot
}

/// Encodes an indirect request slot.
pub fn encode_indirect(
    abi: RingAbi,
    indirect_op: u8,
    id: u64,
    sector: u64,
    nr_segments: u16,
    indirect_grefs: &[GrantRef],
) -> Vec<u8> {
    let mut slot = vec![0u8; abi.slot_size()];
    slot[0] = OP_INDIRECT;
    slot[1] = indirect_op;
    slot[2..4].copy_from_slice(&nr_segments.to_le_bytes());
    let id_at = abi.id_offset();
    slot[id_at..id_at + 8].copy_from_slice(&id.to_le_bytes());
    slot[id_at + 8..id_at + 16].copy_from_slice(&sector.to_le_bytes());
    // handle (u16) and padding, then the grefs.
    let grefs_at = id_at + 16 + 4;
    for (index, gref) in indirect_grefs.iter().enumerate().take(8) {
        slot[grefs_at + 4 * index..grefs_at + 4 * index + 4].copy_from_slice(&gref.to_le_bytes());
    }
    slot
}

/// Encodes the segment array of an indirect page.
pub fn encode_segments(segments: &[WireSegment]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(segments.len() * 8);
    for segment in segments {
        bytes.extend_from_slice(&segment.gref.to_le_bytes());
        bytes.extend_from_slice(&[segment.first_sect, segment.last_sect, 0, 0]);
    }
    bytes
}

/// The mock frontend of one vbd.
pub struct Blkfront {
    domain: Domain,
    backend_id: DomId,
    frontend_path: String,
    backend_path: String,
    config: BlkfrontConfig,
    state: XenbusState,
    queues: Vec<Queue>,
    disk: Option<DiskInfo>,
    persistent: bool,
    max_indirect_segments: u32,
    next_id: u64,
    outstanding: BTreeMap<u64, Pending>,
    completions: VecDeque<Completion>,
    /// Unused data pages (LIFO); persistent ones keep their grant.
    pool: Vec<DataPage>,
    /// Pages that lost their grant and wait to be granted again.
    spare_pages: Vec<(Gfn, Page)>,
}

impl fmt::Debug for Blkfront {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Blkfront")
            .field("frontend", &self.frontend_path)
            .field("state", &self.state)
            .finish()
    }
}

impl Blkfront {
    /// A frontend for the vbd at `nodes` (made by the toolstack), running in
    /// `domain`, in state Initialising.
    pub fn new(domain: Domain, nodes: &DeviceNodes, config: BlkfrontConfig) -> Self {
        Blkfront {
            domain,
            backend_id: nodes.backend_id,
            frontend_path: nodes.frontend.clone(),
            backend_path: nodes.backend.clone(),
            config,
            state: XenbusState::Initialising,
            queues: Vec::new(),
            disk: None,
            persistent: false,
            max_indirect_segments: 0,
            next_id: 1,
            outstanding: BTreeMap::new(),
            completions: VecDeque::new(),
            pool: Vec::new(),
            spare_pages: Vec::new(),
        }
    }

    /// The frontend's domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The frontend's xenstore directory.
    pub fn frontend_path(&self) -> &str {
        &self.frontend_path
    }

    /// The backend's xenstore directory.
    pub fn backend_path(&self) -> &str {
        &self.backend_path
    }

    /// The frontend's own state.
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The request layout in use.
    pub fn abi(&self) -> RingAbi {
        self.config.abi
    }

    /// What the backend published, once read.
    pub fn disk(&self) -> Option<&DiskInfo> {
        self.disk.as_ref()
    }

    /// Number of queues set up.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Entries per ring.
    pub fn ring_size(&self) -> u32 {
        self.queues.first().map_or(0, |queue| queue.ring.size())
    }

    /// Whether persistent grants were negotiated.
    pub fn persistent(&self) -> bool {
        self.persistent
    }

    /// The negotiated indirect segment limit (0: direct requests only).
    pub fn max_indirect_segments(&self) -> u32 {
        self.max_indirect_segments
    }

    /// Requests sent and not answered yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether both ends are Connected.
    pub fn is_connected(&self) -> bool {
        self.state == XenbusState::Connected && self.backend_state() == Some(XenbusState::Connected)
    }

    /// The backend's published state (`None`: node missing or invalid).
    pub fn backend_state(&self) -> Option<XenbusState> {
        self.read_backend("state")
            .ok()
            .and_then(|state| XenbusState::parse(&state))
    }

    /// Reads a node of the backend directory.
    pub fn read_backend(&self, key: &str) -> Result<String, XsError> {
        self.domain
            .clone()
            .read(TxId::NONE, &format!("{}/{key}", self.backend_path))
    }

    /// Writes a node of the frontend directory (hostile tests write garbage).
    pub fn write_node(&self, key: &str, value: &str) -> Result<(), XsError> {
        self.domain
            .clone()
            .write(TxId::NONE, &format!("{}/{key}", self.frontend_path), value)
    }

    fn set_state(&mut self, state: XenbusState) -> Result<(), BlkfrontError> {
        self.state = state;
        self.write_node("state", state.as_str())?;
        Ok(())
    }

    fn backend_number(&self, key: &str) -> Result<Option<u64>, BlkfrontError> {
        match self.read_backend(key) {
            Ok(value) => value
                .parse()
                .map(Some)
                .map_err(|_| BlkfrontError::BadBackendNode(key.to_string())),
            Err(XsError::Enoent) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Advances the handshake as far as the backend's state allows. Call it
    /// whenever anything may have changed; it is idempotent.
    pub fn step(&mut self) -> Result<(), BlkfrontError> {
        let backend = self.backend_state();
        use XenbusState::{Closed, Closing, Connected, InitWait, Initialised, Initialising};
        let closing = matches!(backend, Some(Closing) | Some(Closed));
        match (self.config.flavour, self.state) {
            (Flavour::Linux, Initialising) if backend == Some(InitWait) => {
                self.talk_to_backend_linux()?;
            }
            // GNU Mach goes ahead as soon as the backend has left Initialising.
            (Flavour::GnuMach, Initialising) if matches!(backend, Some(state) if (InitWait..=Connected).contains(&state)) =>
            {
                self.talk_to_backend_gnu_mach()?;
            }
            (Flavour::Linux, Initialised) if backend == Some(Connected) => {
                self.read_disk_info()?;
                self.set_state(Connected)?;
            }
            (_, Connected) if closing => self.begin_close()?,
            (_, Closing) if closing || backend.is_none() => {
                self.release();
                self.set_state(Closed)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn read_disk_info(&mut self) -> Result<(), BlkfrontError> {
        let flag = |this: &Self, key: &str| -> Result<bool, BlkfrontError> {
            Ok(this.backend_number(key)?.unwrap_or(0) == 1)
        };
        let required = |this: &Self, key: &str| -> Result<u64, BlkfrontError> {
            this.backend_number(key)?
                .ok_or_else(|| BlkfrontError::MissingBackendNode(key.to_string()))
        };
        let info = DiskInfo {
            sectors: required(self, "sectors")?,
            sector_size: required(self, "sector-size")? as u32,
            info: required(self, "info")? as u32,
            flush: flag(self, "feature-flush-cache")?,
            barrier: flag(self, "feature-barrier")?,
            discard: flag(self, "feature-discard")?,
            secure_discard: flag(self, "discard-secure")?,
        };
        if self.config.flavour == Flavour::Linux {
            self.persistent = self.config.persistent && flag(self, "feature-persistent")?;
        }
        self.disk = Some(info);
        Ok(())
    }

    fn talk_to_backend_linux(&mut self) -> Result<(), BlkfrontError> {
        let max_queues = self.backend_number("multi-queue-max-queues")?.unwrap_or(1) as u32;
        let max_order = self.backend_number("max-ring-page-order")?.unwrap_or(0) as u32;
        let queues = self.config.queues.clamp(1, max_queues.max(1));
        let order = self.config.ring_page_order.min(max_order);
        self.max_indirect_segments = if self.config.indirect {
            self.backend_number("feature-max-indirect-segments")?
                .unwrap_or(0) as u32
        } else {
            0
        };
        self.setup_queues(queues, order)?;
        let mut domain = self.domain.clone();
        let base = self.frontend_path.clone();
        if order > 0 {
            domain.write(
                TxId::NONE,
                &format!("{base}/ring-page-order"),
                &order.to_string(),
            )?;
        }
        if queues > 1 {
            domain.write(
                TxId::NONE,
                &format!("{base}/multi-queue-num-queues"),
                &queues.to_string(),
            )?;
        }
        self.write_queue_nodes(order)?;
        if let Some(protocol) = &self.config.protocol {
            domain.write(TxId::NONE, &format!("{base}/protocol"), protocol)?;
        }
        domain.write(
            TxId::NONE,
            &format!("{base}/feature-persistent"),
            if self.config.persistent { "1" } else { "0" },
        )?;
        self.set_state(XenbusState::Initialised)
    }

    fn talk_to_backend_gnu_mach(&mut self) -> Result<(), BlkfrontError> {
        for key in ["sectors", "sector-size", "info", "mode", "params"] {
            match self.read_backend(key) {
                Ok(_) => {}
                Err(XsError::Enoent) => {
                    return Err(BlkfrontError::MissingBackendNode(key.to_string()))
                }
                Err(error) => return Err(error.into()),
            }
        }
        self.read_disk_info()?;
        self.setup_queues(1, 0)?;
        self.write_queue_nodes(0)?;
        self.set_state(XenbusState::Connected)
    }

    fn setup_queues(&mut self, queues: u32, order: u32) -> Result<(), BlkfrontError> {
        self.queues.clear();
        for _ in 0..queues {
            let mut pages = Vec::new();
            let mut grefs = Vec::new();
            let mut gfns = Vec::new();
            for _ in 0..1u32 << order {
                let (gfn, page) = self.domain.alloc_page();
                let gref = self
                    .domain
                    .grant_access(self.backend_id, gfn, false)
                    .map_err(BlkfrontError::Grant)?;
                pages.push(page);
                grefs.push(gref);
                gfns.push(gfn);
            }
            let ring = FrontRing::init(PageArray { pages }, self.config.abi.slot_size())
                .map_err(BlkfrontError::Ring)?;
            let port = self
                .domain
                .alloc_unbound(self.backend_id)
                .map_err(BlkfrontError::Evtchn)?;
            self.queues.push(Queue {
                ring,
                ring_grefs: grefs,
                ring_gfns: gfns,
                port,
            });
        }
        Ok(())
    }

    fn write_queue_nodes(&mut self, order: u32) -> Result<(), BlkfrontError> {
        let mut domain = self.domain.clone();
        let count = self.queues.len();
        for (index, queue) in self.queues.iter().enumerate() {
            let base = if count == 1 {
                self.frontend_path.clone()
            } else {
                format!("{}/queue-{index}", self.frontend_path)
            };
            if order == 0 {
                domain.write(
                    TxId::NONE,
                    &format!("{base}/ring-ref"),
                    &queue.ring_grefs[0].to_string(),
                )?;
            } else {
                for (page, gref) in queue.ring_grefs.iter().enumerate() {
                    domain.write(
                        TxId::NONE,
                        &format!("{base}/ring-ref{page}"),
                        &gref.to_string(),
                    )?;
                }
            }
            domain.write(
                TxId::NONE,
                &format!("{base}/event-channel"),
                &queue.port.to_string(),
            )?;
        }
        Ok(())
    }

    /// Starts a clean shutdown (state Closing); [`Blkfront::step`] finishes
    /// it once the backend follows.
    pub fn begin_close(&mut self) -> Result<(), BlkfrontError> {
        if matches!(self.state, XenbusState::Closing | XenbusState::Closed) {
            return Ok(());
        }
        self.set_state(XenbusState::Closing)
    }

    /// Starts over after a close, as a rebooted or reloaded driver does:
    /// state Initialising, everything renegotiated.
    pub fn restart(&mut self) -> Result<(), BlkfrontError> {
        self.release();
        self.disk = None;
        self.set_state(XenbusState::Initialising)
    }

    /// Forgets rings, ports, outstanding requests and grants.
    fn release(&mut self) {
        for queue in std::mem::take(&mut self.queues) {
            let _ = self.domain.close_port(queue.port);
            for (gref, gfn) in queue.ring_grefs.iter().zip(&queue.ring_gfns) {
                let _ = self.domain.end_access(*gref);
                self.domain.free_page(*gfn);
            }
        }
        let pending: Vec<Pending> = std::mem::take(&mut self.outstanding)
            .into_values()
            .collect();
        for request in pending {
            for (page, _) in request.pages {
                self.ungrant(page);
            }
            for page in request.indirect_pages {
                self.ungrant(page);
            }
        }
        for page in std::mem::take(&mut self.pool) {
            self.ungrant(page);
        }
    }

    fn ungrant(&mut self, page: DataPage) {
        // Fails while the backend still maps the page: then the page is
        // leaked, as Linux does with a grant it cannot end.
        if self.domain.end_access(page.gref).is_ok() {
            self.spare_pages.push((page.gfn, page.page));
        }
    }

    /// A data page granted to the backend: from the LIFO pool when
    /// persistent, else freshly granted (`readonly` for data the backend
    /// only reads, as Linux does without persistent grants).
    pub fn grant_data_page(&mut self, readonly: bool) -> Result<DataPage, BlkfrontError> {
        if self.persistent {
            if let Some(page) = self.pool.pop() {
                return Ok(page);
            }
        }
        let (gfn, page) = self
            .spare_pages
            .pop()
            .unwrap_or_else(|| self.domain.alloc_page());
        let readonly = readonly && !self.persistent;
        let gref = self
            .domain
            .grant_access(self.backend_id, gfn, readonly)
            .map_err(BlkfrontError::Grant)?;
        Ok(DataPage { gfn, page, gref })
    }

    fn return_data_page(&mut self, page: DataPage) {
        if self.persistent {
            self.pool.push(page);
        } else {
            self.ungrant(page);
        }
    }

    /// Whether queue `queue` can take a request now.
    pub fn has_room(&self, queue: usize) -> bool {
        self.queues
            .get(queue)
            .is_some_and(|queue| !queue.ring.is_full())
    }

    /// Puts a request on queue `queue` and notifies the backend. Returns the
    /// request id.
    pub fn submit(&mut self, queue: usize, op: BlkOp) -> Result<u64, BlkfrontError> {
        if !self.is_connected() && self.state != XenbusState::Connected {
            return Err(BlkfrontError::NotConnected);
        }
        if queue >= self.queues.len() {
            return Err(BlkfrontError::NoSuchQueue);
        }
        if self.queues[queue].ring.is_full() {
            return Err(BlkfrontError::RingFull);
        }
        let id = self.next_id;
        let abi = self.config.abi;
        let (slot, pending) = match op {
            BlkOp::Read { sector, sectors } => {
                let bytes = sectors as usize * SECTOR_SIZE;
                self.data_request(queue, OP_READ, id, sector, bytes, None)?
            }
            BlkOp::Write { sector, data } => {
                self.data_request(queue, OP_WRITE, id, sector, data.len(), Some(&data))?
            }
            BlkOp::Barrier { sector, data } => {
                if data.is_empty() {
                    (
                        encode_rw(abi, OP_WRITE_BARRIER, id, sector, &[]),
                        Pending {
                            queue,
                            operation: OP_WRITE_BARRIER,
                            pages: Vec::new(),
                            indirect_pages: Vec::new(),
                            read: false,
                        },
                    )
                } else {
                    self.data_request(queue, OP_WRITE_BARRIER, id, sector, data.len(), Some(&data))?
                }
            }
            BlkOp::Flush => (
                encode_rw(abi, OP_FLUSH_DISKCACHE, id, 0, &[]),
                Pending {
                    queue,
                    operation: OP_FLUSH_DISKCACHE,
                    pages: Vec::new(),
                    indirect_pages: Vec::new(),
                    read: false,
                },
            ),
            BlkOp::Discard {
                sector,
                sectors,
                secure,
            } => (
                encode_discard(abi, id, sector, sectors, u8::from(secure)),
                Pending {
                    queue,
                    operation: OP_DISCARD,
                    pages: Vec::new(),
                    indirect_pages: Vec::new(),
                    read: false,
                },
            ),
        };
        self.next_id += 1;
        self.outstanding.insert(id, pending);
        self.push_raw(queue, &slot)?;
        Ok(id)
    }

    fn data_request(
        &mut self,
        queue: usize,
        operation: u8,
        id: u64,
        sector: u64,
        bytes: usize,
        data: Option<&[u8]>,
    ) -> Result<(Vec<u8>, Pending), BlkfrontError> {
        if bytes == 0 || !bytes.is_multiple_of(SECTOR_SIZE) {
            return Err(BlkfrontError::BadLength);
        }
        let page_count = bytes.div_ceil(PAGE_SIZE);
        let indirect = page_count > MAX_DIRECT_SEGMENTS;
        if indirect
            && (operation == OP_WRITE_BARRIER || page_count > self.max_indirect_segments as usize)
        {
            return Err(BlkfrontError::TooManySegments);
        }
        let read = operation == OP_READ;
        let mut pages = Vec::new();
        let mut segments = Vec::new();
        for index in 0..page_count {
            let length = (bytes - index * PAGE_SIZE).min(PAGE_SIZE);
            let page = self.grant_data_page(!read)?;
            if let Some(data) = data {
                page.page
                    .write(0, &data[index * PAGE_SIZE..index * PAGE_SIZE + length]);
            }
            segments.push(WireSegment {
                gref: page.gref,
                first_sect: 0,
                last_sect: (length / SECTOR_SIZE - 1) as u8,
            });
            pages.push((page, length));
        }
        let abi = self.config.abi;
        let mut indirect_pages = Vec::new();
        let slot = if indirect {
            let encoded = encode_segments(&segments);
            let mut grefs = Vec::new();
            for chunk in encoded.chunks(PAGE_SIZE) {
                let page = self.grant_data_page(true)?;
                page.page.write(0, chunk);
                grefs.push(page.gref);
                indirect_pages.push(page);
            }
            encode_indirect(abi, operation, id, sector, segments.len() as u16, &grefs)
        } else {
            encode_rw(abi, operation, id, sector, &segments)
        };
        Ok((
            slot,
            Pending {
                queue,
                // Responses to indirect requests carry the indirect_op.
                operation,
                pages,
                indirect_pages,
                read,
            },
        ))
    }

    /// Puts raw slot bytes on queue `queue`, publishes and notifies
    /// (hostile tests craft their own requests with this).
    pub fn push_raw(&mut self, queue: usize, slot: &[u8]) -> Result<(), BlkfrontError> {
        let queue = self
            .queues
            .get_mut(queue)
            .ok_or(BlkfrontError::NoSuchQueue)?;
        queue.ring.push_request(slot).map_err(|error| match error {
            RingError::RingFull => BlkfrontError::RingFull,
            other => BlkfrontError::Ring(other),
        })?;
        if queue.ring.push_requests_and_check_notify() {
            self.domain
                .send(queue.port)
                .map_err(BlkfrontError::Evtchn)?;
        }
        Ok(())
    }

    /// Puts raw slot bytes on the ring without publishing them (to batch).
    pub fn queue_raw(&mut self, queue: usize, slot: &[u8]) -> Result<(), BlkfrontError> {
        let queue = self
            .queues
            .get_mut(queue)
            .ok_or(BlkfrontError::NoSuchQueue)?;
        queue.ring.push_request(slot).map_err(BlkfrontError::Ring)
    }

    /// Publishes queued requests of `queue` and notifies.
    pub fn kick(&mut self, queue: usize) -> Result<(), BlkfrontError> {
        let queue = self
            .queues
            .get_mut(queue)
            .ok_or(BlkfrontError::NoSuchQueue)?;
        queue.ring.push_requests();
        self.domain.send(queue.port).map_err(BlkfrontError::Evtchn)
    }

    /// Sends an event on queue `queue`'s channel without publishing anything.
    pub fn notify(&self, queue: usize) -> Result<(), BlkfrontError> {
        let queue = self.queues.get(queue).ok_or(BlkfrontError::NoSuchQueue)?;
        self.domain.send(queue.port).map_err(BlkfrontError::Evtchn)
    }

    /// The shared ring memory of `queue` (hostile tests rewrite indices and
    /// slots through it).
    pub fn ring_memory(&self, queue: usize) -> Option<&PageArray> {
        self.queues.get(queue).map(|queue| queue.ring.memory())
    }

    /// Registers a request pushed with [`Blkfront::push_raw`] so that its
    /// response is accepted by [`Blkfront::collect`]; `operation` is what
    /// the response must carry (the `indirect_op` for an indirect request).
    pub fn expect_response(&mut self, queue: usize, id: u64, operation: u8) {
        self.outstanding.insert(
            id,
            Pending {
                queue,
                operation,
                pages: Vec::new(),
                indirect_pages: Vec::new(),
                read: false,
            },
        );
    }

    /// A fresh request id.
    pub fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Takes every response the backend published, frees the pages of the
    /// answered requests, and returns what completed (in ring order).
    pub fn collect(&mut self) -> Result<Vec<Completion>, BlkfrontError> {
        let mut raw = Vec::new();
        for queue in &mut self.queues {
            loop {
                let mut response = [0u8; 16];
                let size = match self.config.abi {
                    RingAbi::X86_32 => 12,
                    RingAbi::X86_64 => 16,
                };
                if !queue
                    .ring
                    .next_response(&mut response[..size])
                    .map_err(BlkfrontError::Ring)?
                {
                    if !queue
                        .ring
                        .final_check_for_responses()
                        .map_err(BlkfrontError::Ring)?
                    {
                        break;
                    }
                    continue;
                }
                raw.push(response);
            }
        }
        for response in raw {
            let id = u64::from_le_bytes(response[0..8].try_into().expect("eight bytes"));
            let operation = response[8];
            let status = i16::from_le_bytes([response[10], response[11]]);
            let Some(pending) = self.outstanding.remove(&id) else {
                return Err(BlkfrontError::UnknownResponse(id));
            };
            // Linux's blkfront (since 5.14) refuses a response whose
            // operation is not the request's (the indirect_op for an
            // indirect request) and stops using the device.
            if operation != pending.operation {
                return Err(BlkfrontError::WrongOperation {
                    id,
                    expected: pending.operation,
                    got: operation,
                });
            }
            let _ = pending.queue;
            let data = (pending.read && status == RSP_OKAY).then(|| {
                let mut data = Vec::new();
                for (page, length) in &pending.pages {
                    let mut chunk = vec![0u8; *length];
                    page.page.read(0, &mut chunk);
                    data.extend_from_slice(&chunk);
                }
                data
            });
            for (page, _) in pending.pages {
                self.return_data_page(page);
            }
            for page in pending.indirect_pages {
                self.return_data_page(page);
            }

            self.completions.push_back(Completion {
                id,
                operation,
                status,
                data,
            });
        }
        Ok(self.completions.drain(..).collect())
    }
}
