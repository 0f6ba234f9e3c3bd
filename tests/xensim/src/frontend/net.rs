//! Mock netfronts: one that behaves like Linux's xen-netfront and one that
//! behaves like GNU Mach's (the Hurd's) netfront.
//!
//! Both drive a real backend through the simulated hypervisor exactly as a
//! guest does: they allocate and grant ring pages, allocate unbound event
//! channels, write their keys to xenstore, put requests on the rings and
//! read responses back. The slot layouts of `xen/io/netif.h` are encoded
//! here independently of any backend crate, so a backend's own layout
//! mistakes show up as failures rather than cancelling out.
//!
//! The Linux flavour negotiates scatter-gather, GSO, checksum offload,
//! several queues, split event channels and `feature-rx-notify`. The GNU
//! Mach flavour sends single-slot packets only, uses one event channel,
//! writes `feature-no-csum-offload=1` and `request-rx-copy=1`, and refuses
//! to start unless the backend is in exactly `InitWait`.
//!
//! The mocks never block: a test calls [`Netfront::connect`] once the
//! backend published `InitWait`, then alternates between driving the
//! backend and calling [`Netfront::process`]. Hostile tests reach for
//! [`Netfront::push_raw_tx`] and [`Netfront::set_tx_req_prod`] to put
//! anything at all on the ring.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use xen_ring::{FrontRing, RingError, SharedMemory};
use xenbus::platform::{DomId, EvtchnPort, GrantRef, TxId, Xenstore, XsError};
use xenbus::XenbusState;

use crate::{Domain, Gfn, Page, PAGE_SIZE};

const TX_SLOT: usize = 12;
const RX_SLOT: usize = 8;
const NETTXF_CSUM_BLANK: u16 = 1;
const NETTXF_DATA_VALIDATED: u16 = 2;
const NETTXF_MORE_DATA: u16 = 4;
const NETTXF_EXTRA_INFO: u16 = 8;
const NETRXF_DATA_VALIDATED: u16 = 1;
const NETRXF_CSUM_BLANK: u16 = 2;
const NETRXF_MORE_DATA: u16 = 4;
const NETRXF_EXTRA_INFO: u16 = 8;
const EXTRA_TYPE_GSO: u8 = 1;
const EXTRA_FLAG_MORE: u8 = 1;
/// `NETIF_RSP_NULL`.
pub const NETIF_RSP_NULL: i16 = 1;
/// `NETIF_RSP_OKAY`.
pub const NETIF_RSP_OKAY: i16 = 0;
/// `NETIF_RSP_ERROR`.
pub const NETIF_RSP_ERROR: i16 = -1;

/// Which guest's driver to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Linux xen-netfront.
    Linux,
    /// GNU Mach's netfront.
    GnuMach,
}

/// What the frontend asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetfrontConfig {
    /// Which driver to imitate.
    pub flavour: Flavour,
    /// Queues wanted; the backend's `multi-queue-max-queues` caps it.
    pub queues: u32,
    /// Use `event-channel-tx`/`-rx` when the backend offers it.
    pub split_event_channels: bool,
    /// `feature-sg`.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// Takes blank IPv4 checksums (else writes `feature-no-csum-offload=1`).
    pub checksum_offload: bool,
    /// `feature-ipv6-csum-offload`.
    pub ipv6_checksum_offload: bool,
    /// `feature-rx-notify`.
    pub rx_notify: bool,
    /// Receive buffers kept posted per queue (at most the ring size).
    pub rx_buffers: u32,
    /// Offset of the first slot's data in its page.
    pub first_slot_offset: u16,
    /// Set up a control ring when the backend offers `feature-ctrl-ring`.
    pub control_ring: bool,
}

impl NetfrontConfig {
    /// What Linux's xen-netfront asks for.
    pub fn linux() -> Self {
        Self {
            flavour: Flavour::Linux,
            queues: 2,
            split_event_channels: true,
            sg: true,
            gso_tcpv4: true,
            gso_tcpv6: true,
            checksum_offload: true,
            ipv6_checksum_offload: true,
            rx_notify: true,
            rx_buffers: 256,
            first_slot_offset: 66,
            control_ring: true,
        }
    }

    /// What GNU Mach's netfront asks for.
    pub fn gnu_mach() -> Self {
        Self {
            flavour: Flavour::GnuMach,
            queues: 1,
            split_event_channels: false,
            sg: false,
            gso_tcpv4: false,
            gso_tcpv6: false,
            checksum_offload: false,
            ipv6_checksum_offload: false,
            rx_notify: false,
            rx_buffers: 64,
            first_slot_offset: 0,
            control_ring: false,
        }
    }
}

/// Why the mock frontend could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetfrontError {
    /// A xenstore request failed.
    Xenstore(XsError),
    /// The backend is not in the state this frontend needs.
    BackendState(Option<XenbusState>),
    /// The backend does not offer receive by grant copy.
    NoRxCopy,
    /// Granting, mapping or an event channel failed.
    Hypervisor(String),
    /// A ring operation failed.
    Ring(RingError),
    /// The frame needs more slots than this frontend may use, or the TX
    /// ring has no room.
    NoRoom,
    /// The frontend is not connected.
    NotConnected,
    /// The backend broke the protocol (bad response).
    Protocol(String),
}

impl fmt::Display for NetfrontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl From<XsError> for NetfrontError {
    fn from(error: XsError) -> Self {
        Self::Xenstore(error)
    }
}

impl From<RingError> for NetfrontError {
    fn from(error: RingError) -> Self {
        Self::Ring(error)
    }
}

/// How to send a frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxOptions {
    /// Leave the TCP/UDP checksum blank (`NETTXF_csum_blank`).
    pub checksum_blank: bool,
    /// Mark the data validated (`NETTXF_data_validated`).
    pub data_validated: bool,
    /// Send as a TCP super-packet: (`XEN_NETIF_GSO_TYPE_*`, segment size).
    pub gso: Option<(u8, u16)>,
}

/// A frame the backend delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// The queue it arrived on.
    pub queue: usize,
    /// The bytes.
    pub data: Vec<u8>,
    /// `NETRXF_csum_blank` was set.
    pub checksum_blank: bool,
    /// `NETRXF_data_validated` was set.
    pub data_validated: bool,
    /// GSO extra info: (type, segment size).
    pub gso: Option<(u8, u16)>,
    /// Number of data slots used.
    pub slots: usize,
}

struct TxSlotState {
    gref: GrantRef,
    gfn: Gfn,
}

struct RxSlotState {
    gref: GrantRef,
    gfn: Gfn,
    page: Page,
}

struct FrontQueue {
    tx: FrontRing<Page>,
    rx: FrontRing<Page>,
    tx_ring_gref: GrantRef,
    rx_ring_gref: GrantRef,
    tx_port: EvtchnPort,
    rx_port: EvtchnPort,
    /// In-flight TX requests by id.
    tx_in_flight: BTreeMap<u16, TxSlotState>,
    next_tx_id: u16,
    /// Posted RX buffers by id.
    rx_posted: BTreeMap<u16, RxSlotState>,
    /// Ids in the order their requests were put on the ring: responses
    /// come back in the same slots, so in the same order.
    rx_order: VecDeque<u16>,
    next_rx_id: u16,
    /// Data slots of an RX packet being assembled.
    partial: Option<ReceivedFrame>,
    /// A slot of the packet being assembled carried an error status.
    partial_failed: bool,
    expect_extra: bool,
}

/// Counters the mock keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetfrontCounters {
    /// TX data slots answered `NETIF_RSP_OKAY`.
    pub tx_ok: u64,
    /// TX data slots answered with an error.
    pub tx_errors: u64,
    /// TX extra-info slots answered `NETIF_RSP_NULL`.
    pub tx_null: u64,
    /// RX packets delivered with an error status.
    pub rx_errors: u64,
    /// Notifications sent to the backend.
    pub notifications: u64,
}

/// A mock netfront bound to one vif.
pub struct Netfront {
    domain: Domain,
    backend_id: DomId,
    devid: u32,
    config: NetfrontConfig,
    path: String,
    backend_path: String,
    queues: Vec<FrontQueue>,
    /// The control ring and its event channel, when set up.
    control: Option<(FrontRing<Page>, EvtchnPort)>,
    next_control_id: u16,
    split: bool,
    received: VecDeque<ReceivedFrame>,
    counters: NetfrontCounters,
    /// Pages behind grefs made by `grant_writable_page`.
    raw_pages: BTreeMap<GrantRef, (Gfn, Page)>,
    /// Statuses of TX data slots by id, most recent last (for tests).
    pub tx_statuses: Vec<(u16, i16)>,
}

impl fmt::Debug for Netfront {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netfront")
            .field("domid", &self.domain.domid())
            .field("devid", &self.devid)
            .field("flavour", &self.config.flavour)
            .field("queues", &self.queues.len())
            .finish()
    }
}

impl Netfront {
    /// A frontend for interface `devid` of `domain`, served by
    /// `backend_id`. Does nothing yet.
    pub fn new(domain: Domain, backend_id: DomId, devid: u32, config: NetfrontConfig) -> Self {
        let path = format!("{}/device/vif/{devid}", domain.home());
        let backend_path = format!(
            "/local/domain/{backend_id}/backend/vif/{}/{devid}",
            domain.domid()
        );
        Self {
            domain,
            backend_id,
            devid,
            config,
            path,
            backend_path,
            queues: Vec::new(),
            control: None,
            next_control_id: 0,
            split: false,
            received: VecDeque::new(),
            counters: NetfrontCounters::default(),
            raw_pages: BTreeMap::new(),
            tx_statuses: Vec::new(),
        }
    }

    /// The frontend's xenstore directory.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The backend's xenstore directory.
    pub fn backend_path(&self) -> &str {
        &self.backend_path
    }

    /// The guest domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Counters.
    pub fn counters(&self) -> NetfrontCounters {
        self.counters
    }

    /// Number of connected queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Whether split event channels are in use.
    pub fn uses_split_event_channels(&self) -> bool {
        self.split
    }

    fn read(&mut self, path: &str) -> Result<Option<String>, NetfrontError> {
        match self.domain.read(TxId::NONE, path) {
            Ok(value) => Ok(Some(value)),
            Err(XsError::Enoent) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    fn backend_flag(&mut self, key: &str) -> Result<bool, NetfrontError> {
        let path = format!("{}/{key}", self.backend_path);
        Ok(self.read(&path)?.as_deref() == Some("1"))
    }

    /// The backend's published state.
    pub fn backend_state(&mut self) -> Option<XenbusState> {
        let path = format!("{}/state", self.backend_path);
        self.read(&path)
            .ok()
            .flatten()
            .and_then(|v| XenbusState::parse(&v))
    }

    /// Writes the frontend's `state`.
    pub fn set_state(&mut self, state: XenbusState) -> Result<(), NetfrontError> {
        let path = format!("{}/state", self.path);
        self.domain.write(TxId::NONE, &path, state.as_str())?;
        Ok(())
    }

    /// Writes any key in the frontend directory (for hostile tests).
    pub fn write_key(&mut self, key: &str, value: &str) -> Result<(), NetfrontError> {
        let path = format!("{}/{key}", self.path);
        self.domain.write(TxId::NONE, &path, value)?;
        Ok(())
    }

    /// Sets up the rings and event channels, publishes them with the
    /// features, and moves to `Connected`, as both drivers do once the
    /// backend is in `InitWait`.
    pub fn connect(&mut self) -> Result<(), NetfrontError> {
        let state = self.backend_state();
        if state != Some(XenbusState::InitWait) {
            return Err(NetfrontError::BackendState(state));
        }
        if !self.backend_flag("feature-rx-copy")? {
            return Err(NetfrontError::NoRxCopy);
        }
        let max_queues = self
            .read(&format!("{}/multi-queue-max-queues", self.backend_path))?
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1);
        let queues = match self.config.flavour {
            Flavour::GnuMach => 1,
            Flavour::Linux => self.config.queues.clamp(1, max_queues.max(1)),
        };
        self.split = self.config.split_event_channels
            && self.config.flavour == Flavour::Linux
            && self.backend_flag("feature-split-event-channels")?;
        self.queues.clear();
        for _ in 0..queues {
            let queue = self.make_queue()?;
            self.queues.push(queue);
        }
        let mut keys: Vec<(String, String)> = Vec::new();
        for (index, queue) in self.queues.iter().enumerate() {
            let prefix = if queues == 1 {
                String::new()
            } else {
                format!("queue-{index}/")
            };
            keys.push((
                format!("{prefix}tx-ring-ref"),
                queue.tx_ring_gref.to_string(),
            ));
            keys.push((
                format!("{prefix}rx-ring-ref"),
                queue.rx_ring_gref.to_string(),
            ));
            if self.split {
                keys.push((
                    format!("{prefix}event-channel-tx"),
                    queue.tx_port.to_string(),
                ));
                keys.push((
                    format!("{prefix}event-channel-rx"),
                    queue.rx_port.to_string(),
                ));
            } else {
                keys.push((format!("{prefix}event-channel"), queue.tx_port.to_string()));
            }
        }
        self.control = None;
        if self.config.flavour == Flavour::Linux
            && self.config.control_ring
            && self.backend_flag("feature-ctrl-ring")?
        {
            let hypervisor =
                |error: &dyn fmt::Debug| NetfrontError::Hypervisor(format!("{error:?}"));
            let (gfn, page) = self.domain.alloc_page();
            let ring = FrontRing::init(page, 16)?;
            let gref = self
                .domain
                .grant_access(self.backend_id, gfn, false)
                .map_err(|e| hypervisor(&e))?;
            let port = self
                .domain
                .alloc_unbound(self.backend_id)
                .map_err(|e| hypervisor(&e))?;
            keys.push(("ctrl-ring-ref".into(), gref.to_string()));
            keys.push(("event-channel-ctrl".into(), port.to_string()));
            self.control = Some((ring, port));
        }
        let flag = |on: bool| if on { "1" } else { "0" }.to_string();
        keys.push(("request-rx-copy".into(), "1".into()));
        match self.config.flavour {
            Flavour::GnuMach => {
                keys.push(("feature-no-csum-offload".into(), "1".into()));
            }
            Flavour::Linux => {
                if queues > 1 {
                    keys.push(("multi-queue-num-queues".into(), queues.to_string()));
                }
                keys.push(("feature-rx-notify".into(), flag(self.config.rx_notify)));
                keys.push(("feature-sg".into(), flag(self.config.sg)));
                keys.push(("feature-gso-tcpv4".into(), flag(self.config.gso_tcpv4)));
                keys.push(("feature-gso-tcpv6".into(), flag(self.config.gso_tcpv6)));
                keys.push((
                    "feature-no-csum-offload".into(),
                    flag(!self.config.checksum_offload),
                ));
                keys.push((
                    "feature-ipv6-csum-offload".into(),
                    flag(self.config.ipv6_checksum_offload),
                ));
            }
        }
        for (key, value) in keys {
            self.write_key(&key, &value)?;
        }
        for index in 0..self.queues.len() {
            self.post_rx_buffers(index)?;
        }
        self.set_state(XenbusState::Connected)
    }

    fn make_queue(&mut self) -> Result<FrontQueue, NetfrontError> {
        let hypervisor = |error: &dyn fmt::Debug| NetfrontError::Hypervisor(format!("{error:?}"));
        let (tx_gfn, tx_page) = self.domain.alloc_page();
        let (rx_gfn, rx_page) = self.domain.alloc_page();
        let tx = FrontRing::init(tx_page, TX_SLOT)?;
        let rx = FrontRing::init(rx_page, RX_SLOT)?;
        let tx_ring_gref = self
            .domain
            .grant_access(self.backend_id, tx_gfn, false)
            .map_err(|e| hypervisor(&e))?;
        let rx_ring_gref = self
            .domain
            .grant_access(self.backend_id, rx_gfn, false)
            .map_err(|e| hypervisor(&e))?;
        let tx_port = self
            .domain
            .alloc_unbound(self.backend_id)
            .map_err(|e| hypervisor(&e))?;
        let rx_port = if self.split {
            self.domain
                .alloc_unbound(self.backend_id)
                .map_err(|e| hypervisor(&e))?
        } else {
            tx_port
        };
        Ok(FrontQueue {
            tx,
            rx,
            tx_ring_gref,
            rx_ring_gref,
            tx_port,
            rx_port,
            tx_in_flight: BTreeMap::new(),
            next_tx_id: 0,
            rx_posted: BTreeMap::new(),
            rx_order: VecDeque::new(),
            next_rx_id: 0,
            partial: None,
            partial_failed: false,
            expect_extra: false,
        })
    }

    /// Posts receive buffers on queue `index` until `rx_buffers` are
    /// outstanding, and notifies if the backend asked for it and the
    /// frontend uses `feature-rx-notify`.
    pub fn post_rx_buffers(&mut self, index: usize) -> Result<(), NetfrontError> {
        let backend_id = self.backend_id;
        let wanted = self.config.rx_buffers as usize;
        let notify_allowed = self.config.rx_notify && self.config.flavour == Flavour::Linux;
        let domain = self.domain.clone();
        let queue = self
            .queues
            .get_mut(index)
            .ok_or(NetfrontError::NotConnected)?;
        let mut posted = false;
        while queue.rx_posted.len() < wanted && !queue.rx.is_full() {
            let id = queue.next_rx_id;
            queue.next_rx_id = queue.next_rx_id.wrapping_add(1);
            if queue.rx_posted.contains_key(&id) {
                break;
            }
            let (gfn, page) = domain.alloc_page();
            let gref = domain
                .grant_access(backend_id, gfn, false)
                .map_err(|e| NetfrontError::Hypervisor(format!("{e:?}")))?;
            let mut slot = [0u8; RX_SLOT];
            slot[0..2].copy_from_slice(&id.to_le_bytes());
            slot[4..8].copy_from_slice(&gref.to_le_bytes());
            queue.rx.push_request(&slot)?;
            queue.rx_posted.insert(id, RxSlotState { gref, gfn, page });
            queue.rx_order.push_back(id);
            posted = true;
        }
        if posted && queue.rx.push_requests_and_check_notify() && notify_allowed {
            domain
                .send(queue.rx_port)
                .map_err(|e| NetfrontError::Hypervisor(format!("{e:?}")))?;
            self.counters.notifications += 1;
        }
        Ok(())
    }

    /// Sends `frame` on queue `queue` as the driver would: first slot at
    /// `first_slot_offset`, then whole pages; GSO extra info after the
    /// first slot.
    pub fn send(
        &mut self,
        queue: usize,
        frame: &[u8],
        options: TxOptions,
    ) -> Result<(), NetfrontError> {
        let first_room = PAGE_SIZE - usize::from(self.config.first_slot_offset);
        let mut chunks: Vec<(u16, &[u8])> = Vec::new();
        let first_len = frame.len().min(first_room);
        chunks.push((self.config.first_slot_offset, &frame[..first_len]));
        for chunk in frame[first_len..].chunks(PAGE_SIZE) {
            chunks.push((0, chunk));
        }
        let single_slot_only = self.config.flavour == Flavour::GnuMach || !self.config.sg;
        if (single_slot_only && chunks.len() > 1) || chunks.len() > 18 {
            return Err(NetfrontError::NoRoom);
        }
        if frame.len() > usize::from(u16::MAX) {
            return Err(NetfrontError::NoRoom);
        }
        let mut slots: Vec<[u8; TX_SLOT]> = Vec::new();
        let backend_id = self.backend_id;
        let domain = self.domain.clone();
        let queue_state = self
            .queues
            .get_mut(queue)
            .ok_or(NetfrontError::NotConnected)?;
        let needed = chunks.len() + usize::from(options.gso.is_some());
        if (queue_state.tx.free_requests() as usize) < needed {
            return Err(NetfrontError::NoRoom);
        }
        let count = chunks.len();
        for (index, (offset, data)) in chunks.into_iter().enumerate() {
            let (gfn, page) = domain.alloc_page();
            page.write(usize::from(offset), data);
            let gref = domain
                .grant_access(backend_id, gfn, true)
                .map_err(|e| NetfrontError::Hypervisor(format!("{e:?}")))?;
            let id = queue_state.next_tx_id;
            queue_state.next_tx_id = queue_state.next_tx_id.wrapping_add(1);
            queue_state
                .tx_in_flight
                .insert(id, TxSlotState { gref, gfn });
            let mut flags = 0;
            if index + 1 < count {
                flags |= NETTXF_MORE_DATA;
            }
            let size = if index == 0 { frame.len() } else { data.len() } as u16;
            if index == 0 {
                if options.checksum_blank {
                    flags |= NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED;
                }
                if options.data_validated {
                    flags |= NETTXF_DATA_VALIDATED;
                }
                if options.gso.is_some() {
                    flags |= NETTXF_EXTRA_INFO;
                }
            }
            slots.push(encode_tx(gref, offset, flags, id, size));
            if index == 0 {
                if let Some((kind, mss)) = options.gso {
                    slots.push(encode_gso_extra(kind, mss, 0));
                }
            }
        }
        self.push_raw_tx(queue, &slots)
    }

    /// Puts `slots` on queue `queue`'s TX ring as they are, pushes and
    /// notifies. The frontend tracks nothing about them.
    pub fn push_raw_tx(
        &mut self,
        queue: usize,
        slots: &[[u8; TX_SLOT]],
    ) -> Result<(), NetfrontError> {
        let domain = self.domain.clone();
        let queue_state = self
            .queues
            .get_mut(queue)
            .ok_or(NetfrontError::NotConnected)?;
        for slot in slots {
            queue_state.tx.push_request(slot)?;
        }
        if queue_state.tx.push_requests_and_check_notify() {
            domain
                .send(queue_state.tx_port)
                .map_err(|e| NetfrontError::Hypervisor(format!("{e:?}")))?;
            self.counters.notifications += 1;
        }
        Ok(())
    }

    /// Grants a fresh page holding `data` at `offset` to the backend and
    /// returns the gref (for hand-made hostile slots).
    pub fn grant_data(&mut self, offset: usize, data: &[u8]) -> Result<GrantRef, NetfrontError> {
        let (gfn, page) = self.domain.alloc_page();
        page.write(offset, data);
        self.domain
            .grant_access(self.backend_id, gfn, true)
            .map_err(|e| NetfrontError::Hypervisor(format!("{e:?}")))
    }

    /// Writes `req_prod` of queue `queue`'s TX ring directly, as a hostile
    /// frontend may, and notifies.
    pub fn set_tx_req_prod(&mut self, queue: usize, value: u32) -> Result<(), NetfrontError> {
        let queue_state = self.queues.get(queue).ok_or(NetfrontError::NotConnected)?;
        queue_state
            .tx
            .memory()
            .store_u32(xen_ring::REQ_PROD_OFFSET, value);
        let port = queue_state.tx_port;
        self.domain
            .send(port)
            .map_err(|e| NetfrontError::Hypervisor(format!("{e:?}")))
    }

    /// Posts one receive request with any gref (for hostile tests); the
    /// frontend tracks it like its own buffers but owns no page for it.
    pub fn push_raw_rx(&mut self, queue: usize, gref: GrantRef) -> Result<(), NetfrontError> {
        // A page this frontend granted is read back when answered; any
        // other gref gets a scratch page that nothing is ever copied into.
        let (gfn, page) = match self.raw_pages.remove(&gref) {
            Some(page) => page,
            None => self.domain.alloc_page(),
        };
        let queue_state = self
            .queues
            .get_mut(queue)
            .ok_or(NetfrontError::NotConnected)?;
        let id = queue_state.next_rx_id;
        queue_state.next_rx_id = queue_state.next_rx_id.wrapping_add(1);
        let mut slot = [0u8; RX_SLOT];
        slot[0..2].copy_from_slice(&id.to_le_bytes());
        slot[4..8].copy_from_slice(&gref.to_le_bytes());
        queue_state.rx.push_request(&slot)?;
        queue_state
            .rx_posted
            .insert(id, RxSlotState { gref, gfn, page });
        queue_state.rx_order.push_back(id);
        queue_state.rx.push_requests();
        Ok(())
    }

    /// Grants a fresh zeroed page writable to the backend and returns the
    /// gref, for hand-made receive requests. The page is read back when a
    /// response names the request.
    pub fn grant_writable_page(&mut self) -> Result<GrantRef, NetfrontError> {
        let (gfn, page) = self.domain.alloc_page();
        let gref = self
            .domain
            .grant_access(self.backend_id, gfn, false)
            .map_err(|e| NetfrontError::Hypervisor(format!("{e:?}")))?;
        self.raw_pages.insert(gref, (gfn, page));
        Ok(gref)
    }

    /// Writes `req_prod` of queue `queue`'s RX ring directly, as a hostile
    /// frontend may.
    pub fn set_rx_req_prod(&mut self, queue: usize, value: u32) -> Result<(), NetfrontError> {
        let queue_state = self.queues.get(queue).ok_or(NetfrontError::NotConnected)?;
        queue_state
            .rx
            .memory()
            .store_u32(xen_ring::REQ_PROD_OFFSET, value);
        Ok(())
    }

    /// Reads TX and RX responses on every queue, keeps received frames,
    /// re-posts receive buffers. Returns the number of frames completed.
    pub fn process(&mut self) -> Result<usize, NetfrontError> {
        // Take pending events as the upcall handler would.
        let _ = self.domain.poll_activity();
        let mut completed = 0;
        for index in 0..self.queues.len() {
            self.process_tx(index)?;
            completed += self.process_rx(index)?;
            self.post_rx_buffers(index)?;
        }
        Ok(completed)
    }

    fn process_tx(&mut self, index: usize) -> Result<(), NetfrontError> {
        let domain = self.domain.clone();
        let queue = &mut self.queues[index];
        loop {
            let mut slot = [0u8; TX_SLOT];
            if !queue.tx.next_response(&mut slot[..4])? {
                break;
            }
            let id = u16::from_le_bytes([slot[0], slot[1]]);
            let status = i16::from_le_bytes([slot[2], slot[3]]);
            if status == NETIF_RSP_NULL {
                self.counters.tx_null += 1;
                continue;
            }
            self.tx_statuses.push((id, status));
            if status == NETIF_RSP_OKAY {
                self.counters.tx_ok += 1;
            } else {
                self.counters.tx_errors += 1;
            }
            if let Some(state) = queue.tx_in_flight.remove(&id) {
                let _ = domain.end_access(state.gref);
                domain.free_page(state.gfn);
            }
        }
        Ok(())
    }

    fn process_rx(&mut self, index: usize) -> Result<usize, NetfrontError> {
        let domain = self.domain.clone();
        let mut completed = 0;
        let queue = &mut self.queues[index];
        loop {
            let mut slot = [0u8; RX_SLOT];
            // Responses sit in the slot of the request they answer, so the
            // request's id is known from the index even for extra info.
            if !queue.rx.next_response(&mut slot)? {
                break;
            }
            let Some(expected) = queue.rx_order.pop_front() else {
                return Err(NetfrontError::Protocol(
                    "RX response without a request".into(),
                ));
            };
            if queue.expect_extra {
                // Extra info overlays the response; its buffer is unused.
                queue.expect_extra = slot[1] & EXTRA_FLAG_MORE != 0;
                if slot[0] == EXTRA_TYPE_GSO {
                    let size = u16::from_le_bytes([slot[2], slot[3]]);
                    if let Some(partial) = queue.partial.as_mut() {
                        partial.gso = Some((slot[4], size));
                    }
                }
                if let Some(buffer) = queue.rx_posted.remove(&expected) {
                    let _ = domain.end_access(buffer.gref);
                    domain.free_page(buffer.gfn);
                }
                continue;
            }
            let id = u16::from_le_bytes([slot[0], slot[1]]);
            let offset = u16::from_le_bytes([slot[2], slot[3]]);
            let flags = u16::from_le_bytes([slot[4], slot[5]]);
            let status = i16::from_le_bytes([slot[6], slot[7]]);
            if id != expected {
                return Err(NetfrontError::Protocol(format!(
                    "RX response id {id} in the slot of request {expected}"
                )));
            }
            let Some(buffer) = queue.rx_posted.remove(&id) else {
                return Err(NetfrontError::Protocol(format!(
                    "RX response for unknown id {id}"
                )));
            };
            let partial = queue.partial.get_or_insert_with(|| ReceivedFrame {
                queue: index,
                data: Vec::new(),
                checksum_blank: flags & NETRXF_CSUM_BLANK != 0,
                data_validated: flags & NETRXF_DATA_VALIDATED != 0,
                gso: None,
                slots: 0,
            });
            partial.slots += 1;
            if status < 0 {
                queue.partial_failed = true;
            } else {
                let length = status as usize;
                if usize::from(offset) + length > PAGE_SIZE {
                    return Err(NetfrontError::Protocol("RX data crosses a page".into()));
                }
                let mut bytes = vec![0u8; length];
                buffer.page.read(usize::from(offset), &mut bytes);
                partial.data.extend_from_slice(&bytes);
            }
            let _ = domain.end_access(buffer.gref);
            domain.free_page(buffer.gfn);
            if flags & NETRXF_EXTRA_INFO != 0 {
                queue.expect_extra = true;
            }
            if flags & NETRXF_MORE_DATA == 0 {
                let frame = queue.partial.take().expect("partial frame");
                let failed = std::mem::take(&mut queue.partial_failed);
                // Linux netfront drops packets of more than
                // XEN_NETIF_NR_SLOTS_MIN slots.
                if failed || frame.slots > 18 {
                    self.counters.rx_errors += 1;
                } else {
                    self.received.push_back(frame);
                    completed += 1;
                }
            }
        }
        Ok(completed)
    }

    /// Whether a control ring is set up.
    pub fn has_control_ring(&self) -> bool {
        self.control.is_some()
    }

    /// Puts a `xen_netif_ctrl_request` on the control ring and notifies;
    /// returns its id.
    pub fn control_request(&mut self, kind: u16, data: [u32; 3]) -> Result<u16, NetfrontError> {
        let id = self.next_control_id;
        self.next_control_id = self.next_control_id.wrapping_add(1);
        let domain = self.domain.clone();
        let (ring, port) = self.control.as_mut().ok_or(NetfrontError::NotConnected)?;
        let mut slot = [0u8; 16];
        slot[0..2].copy_from_slice(&id.to_le_bytes());
        slot[2..4].copy_from_slice(&kind.to_le_bytes());
        for (index, word) in data.iter().enumerate() {
            slot[4 + index * 4..8 + index * 4].copy_from_slice(&word.to_le_bytes());
        }
        ring.push_request(&slot)?;
        if ring.push_requests_and_check_notify() {
            domain
                .send(*port)
                .map_err(|e| NetfrontError::Hypervisor(format!("{e:?}")))?;
        }
        Ok(id)
    }

    /// Writes the control ring's `req_prod` directly, as a hostile
    /// frontend may, and notifies.
    pub fn set_control_req_prod(&mut self, value: u32) -> Result<(), NetfrontError> {
        let (ring, port) = self.control.as_ref().ok_or(NetfrontError::NotConnected)?;
        ring.memory().store_u32(xen_ring::REQ_PROD_OFFSET, value);
        let port = *port;
        self.domain
            .send(port)
            .map_err(|e| NetfrontError::Hypervisor(format!("{e:?}")))
    }

    /// Reads the control responses published so far: `(id, type, status,
    /// data)`.
    pub fn control_responses(&mut self) -> Result<Vec<(u16, u16, u32, u32)>, NetfrontError> {
        let (ring, _) = self.control.as_mut().ok_or(NetfrontError::NotConnected)?;
        let mut responses = Vec::new();
        let mut slot = [0u8; 12];
        while ring.next_response(&mut slot)? {
            let word = |at: usize| {
                u32::from_le_bytes([slot[at], slot[at + 1], slot[at + 2], slot[at + 3]])
            };
            responses.push((
                u16::from_le_bytes([slot[0], slot[1]]),
                u16::from_le_bytes([slot[2], slot[3]]),
                word(4),
                word(8),
            ));
        }
        Ok(responses)
    }

    /// Takes the frames received so far.
    pub fn take_received(&mut self) -> Vec<ReceivedFrame> {
        self.received.drain(..).collect()
    }

    /// Number of TX requests not yet answered.
    pub fn tx_in_flight(&self) -> usize {
        self.queues.iter().map(|q| q.tx_in_flight.len()).sum()
    }

    /// Moves to `Closing` then `Closed` and forgets the rings, as a guest
    /// does on `ifdown`/unload. The pages stay granted until the backend
    /// is gone, as they would in a real guest that waits for it.
    pub fn close(&mut self) -> Result<(), NetfrontError> {
        self.set_state(XenbusState::Closing)?;
        self.set_state(XenbusState::Closed)?;
        self.drop_rings();
        Ok(())
    }

    /// Forgets the rings and ports without telling anyone (a crashed guest).
    pub fn drop_rings(&mut self) {
        if let Some((_, port)) = self.control.take() {
            let _ = self.domain.close_port(port);
        }
        for queue in self.queues.drain(..) {
            let _ = self.domain.close_port(queue.tx_port);
            if queue.rx_port != queue.tx_port {
                let _ = self.domain.close_port(queue.rx_port);
            }
        }
    }

    /// Starts over from `Initialising`, as a guest reloading its driver.
    pub fn restart(&mut self) -> Result<(), NetfrontError> {
        self.drop_rings();
        self.set_state(XenbusState::Initialising)
    }
}

/// Encodes a `netif_tx_request_t`.
pub fn encode_tx(gref: GrantRef, offset: u16, flags: u16, id: u16, size: u16) -> [u8; TX_SLOT] {
    let mut slot = [0u8; TX_SLOT];
    slot[0..4].copy_from_slice(&gref.to_le_bytes());
    slot[4..6].copy_from_slice(&offset.to_le_bytes());
    slot[6..8].copy_from_slice(&flags.to_le_bytes());
    slot[8..10].copy_from_slice(&id.to_le_bytes());
    slot[10..12].copy_from_slice(&size.to_le_bytes());
    slot
}

/// Encodes a GSO `netif_extra_info_t` in a TX slot.
pub fn encode_gso_extra(kind: u8, segment_size: u16, flags: u8) -> [u8; TX_SLOT] {
    let mut slot = [0u8; TX_SLOT];
    slot[0] = EXTRA_TYPE_GSO;
    slot[1] = flags;
    slot[2..4].copy_from_slice(&segment_size.to_le_bytes());
    slot[4] = kind;
    slot
}

/// Encodes any `netif_extra_info_t` in a TX slot.
pub fn encode_extra(kind: u8, flags: u8, payload: [u8; 6]) -> [u8; TX_SLOT] {
    let mut slot = [0u8; TX_SLOT];
    slot[0] = kind;
    slot[1] = flags;
    slot[2..8].copy_from_slice(&payload);
    slot
}

/// `NETTXF_*` flags, for hand-made slots.
pub mod tx_flags {
    /// `NETTXF_csum_blank`.
    pub const CSUM_BLANK: u16 = super::NETTXF_CSUM_BLANK;
    /// `NETTXF_data_validated`.
    pub const DATA_VALIDATED: u16 = super::NETTXF_DATA_VALIDATED;
    /// `NETTXF_more_data`.
    pub const MORE_DATA: u16 = super::NETTXF_MORE_DATA;
    /// `NETTXF_extra_info`.
    pub const EXTRA_INFO: u16 = super::NETTXF_EXTRA_INFO;
    /// `XEN_NETIF_EXTRA_FLAG_MORE`.
    pub const EXTRA_MORE: u8 = super::EXTRA_FLAG_MORE;
}
