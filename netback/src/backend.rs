//! The engine: finds this domain's vifs in xenstore, connects their rings,
//! and moves frames between them and the uplink through the switch.
//!
//! It does no I/O of its own. The platform's loop calls
//! [`Netback::on_watch`] for every xenstore watch event,
//! [`Netback::on_event`] for every event channel that fired, and
//! [`Netback::poll`] after either (and periodically, for frontends that do
//! not notify when they post receive buffers). Each poll does a bounded
//! amount of work per queue, documented on [`Config`].

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use xen_ring::{BackRing, RingError, SharedMemory, REQ_EVENT_OFFSET};
use xenbus::backend::{Action, BackendDevice, BackendDirectory, DeviceAddress, Phase};
use xenbus::platform::{
    CopyOp, DomId, EventChannels, EvtchnPort, GrantCopy, GrantError, GrantMap, GrantRef, GrantSpan,
    TxId, Xenstore,
};
use xenbus::value;

use crate::backlog::{Backlog, BacklogLimits};
use crate::control::{self, CTRL_SLOT_SIZE};
use crate::device::NetDevice;
use crate::frame::{adapt_for, ChecksumState, Frame, MacAddress, Offloads};
use crate::hash::HashConfig;
use crate::switch::{PortCounters, PortId, Switch, SwitchConfig};
use crate::tx::{parse_tx_packet, SlotAnswer, TxLimits, TxPacket, TxParse};
use crate::wire::{
    ExtraInfo, RxRequest, RxResponse, TxResponse, NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY,
    NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA, PAGE_SIZE,
    RX_SLOT_SIZE, TX_SLOT_SIZE, XEN_NETIF_NR_SLOTS_MIN,
};

/// Everything the engine needs from the platform, in one object.
pub trait Platform: GrantCopy + GrantMap + EventChannels + Xenstore {}

impl<T: GrantCopy + GrantMap + EventChannels + Xenstore> Platform for T {}

/// The port of the uplink device on the switch.
pub const UPLINK_PORT: PortId = PortId(0);

/// The watch token of the `backend/vif` directory watch.
pub const DIRECTORY_WATCH_TOKEN: &str = "netback";

/// Settings of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Queues offered to each frontend (`multi-queue-max-queues`).
    pub max_queues: u32,
    /// Vifs served at once; further ones are left alone (and logged).
    pub max_vifs: usize,
    /// Packets taken off one queue's TX ring per poll.
    pub tx_budget: usize,
    /// Frames put on one queue's RX ring per poll.
    pub rx_budget: usize,
    /// Frames taken from the uplink per poll.
    pub uplink_budget: usize,
    /// Requests answered on one control ring per poll.
    pub control_budget: usize,
    /// Per-packet slot limits on the TX ring.
    pub tx_limits: TxLimits,
    /// Bounds of each RX queue's backlog.
    pub backlog: BacklogLimits,
    /// The learning switch.
    pub switch: SwitchConfig,
    /// Whether the switch has an uplink port (port 0).
    pub uplink: bool,
    /// Drop guest frames whose source MAC is not the vif's `mac` from the
    /// toolstack, so that no guest can make the switch send it another
    /// guest's frames. Turn off for guests that bridge other hosts' frames.
    pub enforce_source_mac: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_queues: 4,
            max_vifs: 64,
            tx_budget: 64,
            rx_budget: 128,
            uplink_budget: 64,
            control_budget: 16,
            tx_limits: TxLimits::default(),
            backlog: BacklogLimits::default(),
            switch: SwitchConfig::default(),
            uplink: true,
            enforce_source_mac: true,
        }
    }
}

/// What the frontend asked for, from its xenstore directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrontendFeatures {
    /// `feature-sg`: takes multi-slot packets on its RX ring.
    pub sg: bool,
    /// `feature-gso-tcpv4`: takes TCPv4 super-packets.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`: takes TCPv6 super-packets.
    pub gso_tcpv6: bool,
    /// Not `feature-no-csum-offload`: takes IPv4 frames with blank checksums.
    pub checksum_ipv4: bool,
    /// `feature-ipv6-csum-offload`: takes IPv6 frames with blank checksums.
    pub checksum_ipv6: bool,
    /// `feature-rx-notify`: notifies when it posts RX requests.
    pub rx_notify: bool,
    /// Whether it uses separate TX and RX event channels.
    pub split_event_channels: bool,
    /// Number of queues in use.
    pub queues: u32,
}

impl FrontendFeatures {
    fn offloads(&self) -> Offloads {
        Offloads {
            checksum_ipv4: self.checksum_ipv4,
            checksum_ipv6: self.checksum_ipv6,
            // A super-packet needs several slots.
            gso_tcpv4: self.gso_tcpv4 && self.sg,
            gso_tcpv6: self.gso_tcpv6 && self.sg,
        }
    }
}

/// Counters of one vif beyond its switch port's, all from the backend's
/// point of view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VifCounters {
    /// TX packets dropped as invalid (answered with `NETIF_RSP_ERROR`).
    pub tx_invalid: u64,
    /// TX packets whose data could not be copied from the guest.
    pub tx_grant_errors: u64,
    /// TX frames dropped for a source MAC other than the vif's.
    pub tx_spoofed: u64,
    /// RX frames whose data could not be copied to the guest.
    pub rx_grant_errors: u64,
    /// Frames not deliverable to this frontend (too large without
    /// `feature-sg`, headers not understood for an offload it lacks).
    pub rx_undeliverable: u64,
    /// Times the datapath was torn down for breaking the protocol.
    pub protocol_errors: u64,
    /// Times the datapath was connected.
    pub connects: u64,
}

/// What the engine reports about one vif.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifStatus {
    /// Frontend domain and handle.
    pub address: DeviceAddress,
    /// The switch port of the vif.
    pub port: PortId,
    /// The `mac` the toolstack wrote for the frontend, if valid.
    pub mac: Option<MacAddress>,
    /// Whether the rings are connected.
    pub connected: bool,
    /// What the frontend negotiated, while connected.
    pub features: Option<FrontendFeatures>,
    /// The switch counters: `received_*` is guest transmit, `sent_*` is
    /// guest receive.
    pub port_counters: PortCounters,
    /// Protocol counters.
    pub counters: VifCounters,
    /// Why the datapath was last torn down or refused, if it was.
    pub last_error: Option<String>,
}

/// What a poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Some queue hit its budget: poll again soon.
    pub more_work: bool,
    /// Guest packets taken off TX rings.
    pub tx_packets: usize,
    /// Frames put on RX rings.
    pub rx_frames: usize,
}

struct Queue<M> {
    tx: BackRing<Rc<M>>,
    rx: BackRing<Rc<M>>,
    tx_mapping: Rc<M>,
    rx_mapping: Rc<M>,
    tx_port: EvtchnPort,
    rx_port: EvtchnPort,
    backlog: Backlog,
}

struct ControlRing<M> {
    ring: BackRing<Rc<M>>,
    mapping: Rc<M>,
    port: EvtchnPort,
}

struct Datapath<M> {
    features: FrontendFeatures,
    queues: Vec<Queue<M>>,
    control: Option<ControlRing<M>>,
    hash: HashConfig,
}

struct Vif<M> {
    device: BackendDevice,
    port: PortId,
    mac: Option<MacAddress>,
    datapath: Option<Datapath<M>>,
    counters: VifCounters,
    last_error: Option<String>,
}

/// `DeviceAddress` as an ordered map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct VifKey {
    frontend_id: DomId,
    devid: u32,
}

impl VifKey {
    fn of(address: DeviceAddress) -> Self {
        Self {
            frontend_id: address.frontend_id,
            devid: address.devid,
        }
    }

    fn address(self) -> DeviceAddress {
        DeviceAddress {
            frontend_id: self.frontend_id,
            devid: self.devid,
        }
    }
}

/// Which ring of a queue an event channel serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventTarget {
    address: DeviceAddress,
    queue: usize,
}

/// A datapath failure that breaks the protocol: the vif is disconnected.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProtocolError(String);

/// The netif backend engine with its switch.
///
/// A driver domain makes one, calls [`start`](Self::start) once, then for
/// ever: [`on_watch`](Self::on_watch) for each xenstore watch event,
/// [`on_event`](Self::on_event) for each event channel that fired, and
/// [`poll`](Self::poll) after them and on a periodic tick (frontends without
/// `feature-rx-notify` never kick when they post receive buffers). Each
/// poll's work is bounded by the budgets of [`Config`]; `more_work` in its
/// outcome says to poll again soon. `docs/netback.md` shows the loop.
pub struct Netback<P: Platform> {
    config: Config,
    directory: BackendDirectory,
    vifs: BTreeMap<VifKey, Vif<P::Mapping>>,
    ports: BTreeMap<PortId, DeviceAddress>,
    events: BTreeMap<EvtchnPort, EventTarget>,
    switch: Switch,
    next_port: u32,
    started: bool,
    /// Bytes in all RX backlogs together (bounded by `backlog.bytes_engine`).
    backlog_bytes: usize,
}

impl<P: Platform> Netback<P> {
    /// An engine serving no vif yet. Call [`start`](Self::start) next.
    pub fn new(config: Config) -> Self {
        let mut switch = Switch::new(config.switch);
        if config.uplink {
            switch.add_port(UPLINK_PORT);
        }
        Self {
            config,
            directory: BackendDirectory::new("vif"),
            vifs: BTreeMap::new(),
            ports: BTreeMap::new(),
            events: BTreeMap::new(),
            switch,
            next_port: 1,
            started: false,
            backlog_bytes: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The backend directory (`backend/vif`, relative to this domain's
    /// home), to recognise its devices' paths.
    pub fn directory(&self) -> &BackendDirectory {
        &self.directory
    }

    /// Watches `backend/vif` (relative to this domain's home) and attaches
    /// the vifs already there. The watch fires once at once; its events
    /// come back through [`on_watch`](Self::on_watch).
    pub fn start(&mut self, platform: &mut P) -> Result<(), xenbus::platform::XsError> {
        platform.watch(self.directory.root(), DIRECTORY_WATCH_TOKEN)?;
        self.started = true;
        self.scan(platform);
        Ok(())
    }

    /// Handles a xenstore watch event: new vifs under `backend/vif`, the
    /// toolstack's `online`, frontends' `state` changes.
    pub fn on_watch(&mut self, platform: &mut P, path: &str, token: &str) {
        if token == DIRECTORY_WATCH_TOKEN {
            match self.directory.recognise(path) {
                Ok(Some(address)) => {
                    if !self.vifs.contains_key(&VifKey::of(address)) {
                        self.attach(platform, address);
                    }
                }
                Ok(None) => self.scan(platform),
                Err(_) => {}
            }
        }
        let relevant: Vec<DeviceAddress> = self
            .vifs
            .iter()
            .filter(|(_, vif)| vif.device.is_relevant(path))
            .map(|(key, _)| key.address())
            .collect();
        for address in relevant {
            let Some(vif) = self.vifs.get_mut(&VifKey::of(address)) else {
                continue;
            };
            let action = vif.device.on_watch(platform, path);
            self.run_action(platform, address, action);
        }
    }

    /// Notes that event channel `port` fired. Returns whether the port
    /// belongs to one of the engine's queues. The work happens in the next
    /// [`poll`](Self::poll), which looks at every connected ring anyway;
    /// this only re-enables delivery on the port, as blkback does (a
    /// platform may mask a port when it delivers it). A port that is not a
    /// queue's stays as it is: it is closed or about to be.
    pub fn on_event(&mut self, platform: &mut P, port: EvtchnPort) -> bool {
        match self.events.get(&port) {
            Some(target) => {
                log::trace!(
                    "event on port {port}: vif {}/{} queue {}",
                    target.address.frontend_id,
                    target.address.devid,
                    target.queue
                );
                platform.unmask(port);
                true
            }
            None => false,
        }
    }

    /// Moves frames: takes packets off every TX ring (at most
    /// `tx_budget` each), up to `uplink_budget` frames from the uplink,
    /// switches them, and fills every RX ring that has frames waiting (at
    /// most `rx_budget` each). `now` is the time since any fixed point, and
    /// drives MAC ageing.
    pub fn poll(
        &mut self,
        platform: &mut P,
        uplink: &mut impl NetDevice,
        now: Duration,
    ) -> PollOutcome {
        let mut outcome = PollOutcome::default();
        let addresses: Vec<DeviceAddress> = self.vifs.keys().map(|key| key.address()).collect();

        // Control rings.
        for address in &addresses {
            match self.serve_control(platform, *address) {
                Ok(more) => outcome.more_work |= more,
                Err(error) => self.protocol_failure(platform, *address, &error.0),
            }
        }

        // Guest transmit, queue by queue.
        for address in &addresses {
            let queues = match self
                .vifs
                .get(&VifKey::of(*address))
                .and_then(|vif| vif.datapath.as_ref())
            {
                Some(datapath) => datapath.queues.len(),
                None => continue,
            };
            for queue in 0..queues {
                let mut frames = Vec::new();
                match self.transmit_queue(platform, *address, queue, &mut frames) {
                    Ok((packets, more)) => {
                        outcome.tx_packets += packets;
                        outcome.more_work |= more;
                    }
                    Err(error) => {
                        self.protocol_failure(platform, *address, &error.0);
                        break;
                    }
                }
                let Some(ingress) = self.vifs.get(&VifKey::of(*address)).map(|vif| vif.port) else {
                    break;
                };
                for frame in frames {
                    self.switch_frame(ingress, frame, uplink, now);
                }
            }
        }

        // The uplink.
        if self.config.uplink {
            for _ in 0..self.config.uplink_budget {
                let Some(frame) = uplink.receive() else {
                    break;
                };
                self.switch_frame(UPLINK_PORT, frame, uplink, now);
            }
        }

        // Guest receive.
        for address in &addresses {
            let queues = match self
                .vifs
                .get(&VifKey::of(*address))
                .and_then(|vif| vif.datapath.as_ref())
            {
                Some(datapath) => datapath.queues.len(),
                None => continue,
            };
            for queue in 0..queues {
                match self.receive_queue(platform, *address, queue, now) {
                    Ok((frames, more)) => {
                        outcome.rx_frames += frames;
                        outcome.more_work |= more;
                    }
                    Err(error) => {
                        self.protocol_failure(platform, *address, &error.0);
                        break;
                    }
                }
            }
        }

        self.switch.age(now);
        outcome
    }

    /// The vifs and their counters, for publishing or inspection.
    pub fn vifs(&self) -> Vec<VifStatus> {
        self.vifs
            .iter()
            .map(|(key, vif)| VifStatus {
                address: key.address(),
                port: vif.port,
                mac: vif.mac,
                connected: vif.datapath.is_some(),
                features: vif.datapath.as_ref().map(|datapath| datapath.features),
                port_counters: self.switch.counters(vif.port).unwrap_or_default(),
                counters: vif.counters,
                last_error: vif.last_error.clone(),
            })
            .collect()
    }

    /// Bytes of frames waiting in RX backlogs for frontends' buffers, all
    /// vifs together.
    pub fn backlog_bytes(&self) -> usize {
        self.backlog_bytes
    }

    /// The counters of the uplink port.
    pub fn uplink_counters(&self) -> Option<PortCounters> {
        self.switch.counters(UPLINK_PORT)
    }

    /// The switch, for inspection.
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// Writes each connected vif's counters under its backend directory
    /// (`statistics/<name>`), from the guest's point of view. Call it
    /// rarely (every few seconds): each call is a handful of xenstore
    /// writes per vif.
    pub fn publish_statistics(&mut self, platform: &mut P) {
        for status in self.vifs() {
            if !status.connected {
                continue;
            }
            let Some(vif) = self.vifs.get(&VifKey::of(status.address)) else {
                continue;
            };
            let counters = status.port_counters;
            let values: [(&str, u64); 8] = [
                ("tx-packets", counters.received_packets),
                ("tx-bytes", counters.received_bytes),
                ("rx-packets", counters.sent_packets),
                ("rx-bytes", counters.sent_bytes),
                ("rx-drops", counters.drops),
                ("errors", counters.errors),
                ("tx-invalid", status.counters.tx_invalid),
                ("protocol-errors", status.counters.protocol_errors),
            ];
            for (name, count) in values {
                let path = format!("{}/statistics/{name}", vif.device.backend_path());
                if let Err(error) = platform.write(TxId::NONE, &path, &count.to_string()) {
                    log::debug!("{path}: {error:?}");
                }
            }
        }
    }

    /// Tears down every vif's datapath and removes the watches, for a
    /// domain that shuts down.
    pub fn shutdown(&mut self, platform: &mut P) {
        let addresses: Vec<DeviceAddress> = self.vifs.keys().map(|key| key.address()).collect();
        for address in addresses {
            self.teardown(platform, address);
            if let Some(mut vif) = self.vifs.remove(&VifKey::of(address)) {
                vif.device.stop(platform);
                self.switch.remove_port(vif.port);
                self.ports.remove(&vif.port);
            }
        }
        if self.started {
            let _ = platform.unwatch(self.directory.root(), DIRECTORY_WATCH_TOKEN);
            self.started = false;
        }
    }

    fn scan(&mut self, platform: &mut P) {
        match self.directory.list(platform, self.config.max_vifs) {
            Ok(addresses) => {
                for address in addresses {
                    if !self.vifs.contains_key(&VifKey::of(address)) {
                        self.attach(platform, address);
                    }
                }
            }
            Err(error) => log::warn!("backend/vif: cannot list: {error:?}"),
        }
    }

    fn attach(&mut self, platform: &mut P, address: DeviceAddress) {
        if self.vifs.len() >= self.config.max_vifs {
            log::warn!(
                "vif {}/{}: already serving {} vifs, ignoring it",
                address.frontend_id,
                address.devid,
                self.vifs.len()
            );
            return;
        }
        let mut device = BackendDevice::new(&self.directory, address);
        match device.probe(platform) {
            Ok(()) => {}
            Err(xenbus::backend::HandshakeError::Gone) => return,
            Err(error) => {
                // The helper has reported it; keep the device so that its
                // removal is noticed and it is not probed again meanwhile.
                log::warn!("{}: refused: {error}", device.backend_path());
            }
        }
        let mut mac = None;
        if device.phase() == Phase::Probed {
            // `mac`, `bridge`, `script` come from the toolstack; only `mac`
            // means something here, and only for reporting.
            mac = match device.read_backend(platform, "mac", value::parse_mac) {
                Ok(mac) => Some(mac),
                Err(error) => {
                    log::warn!("{}: {error}", device.backend_path());
                    None
                }
            };
            let max_queues = self.config.max_queues.max(1).to_string();
            let features: [(&str, &str); 9] = [
                ("feature-ctrl-ring", "1"),
                ("feature-sg", "1"),
                ("feature-gso-tcpv4", "1"),
                ("feature-gso-tcpv6", "1"),
                ("feature-ipv6-csum-offload", "1"),
                ("feature-rx-copy", "1"),
                ("feature-rx-flip", "0"),
                ("feature-split-event-channels", "1"),
                ("multi-queue-max-queues", &max_queues),
            ];
            let token = format!("netback/{}/{}", address.frontend_id, address.devid);
            if let Err(error) = device.start(platform, &features, &token) {
                log::warn!("{}: cannot start: {error}", device.backend_path());
                if device.phase() == Phase::Removed {
                    return;
                }
            }
        }
        let port = PortId(self.next_port);
        self.next_port += 1;
        self.switch.add_port(port);
        self.ports.insert(port, address);
        log::info!(
            "vif {}/{}: attached as switch port {}",
            address.frontend_id,
            address.devid,
            port.0
        );
        self.vifs.insert(
            VifKey::of(address),
            Vif {
                device,
                port,
                mac,
                datapath: None,
                counters: VifCounters::default(),
                last_error: None,
            },
        );
    }

    fn run_action(&mut self, platform: &mut P, address: DeviceAddress, mut action: Action) {
        // Each step publishes a state; a frontend flipping its state
        // meanwhile cannot keep this going past the bound.
        for _ in 0..8 {
            let Some(vif) = self.vifs.get_mut(&VifKey::of(address)) else {
                return;
            };
            action = match action {
                Action::None => return,
                Action::Connect => match connect::<P>(platform, &vif.device, &self.config) {
                    Ok(datapath) => {
                        for (index, queue) in datapath.queues.iter().enumerate() {
                            let target = EventTarget {
                                address,
                                queue: index,
                            };
                            self.events.insert(queue.tx_port, target);
                            self.events.insert(queue.rx_port, target);
                        }
                        if let Some(control) = &datapath.control {
                            let target = EventTarget { address, queue: 0 };
                            self.events.insert(control.port, target);
                        }
                        vif.datapath = Some(datapath);
                        vif.counters.connects += 1;
                        if self.config.enforce_source_mac {
                            if let Some(mac) = vif.mac {
                                self.switch.pin(mac, vif.port);
                            }
                        }
                        vif.device.connected(platform)
                    }
                    Err(reason) => {
                        vif.last_error = Some(reason.clone());
                        vif.device.fail(platform, &reason)
                    }
                },
                Action::Disconnect => {
                    self.teardown(platform, address);
                    match self.vifs.get_mut(&VifKey::of(address)) {
                        Some(vif) => vif.device.disconnected(platform),
                        None => return,
                    }
                }
                Action::Remove => {
                    self.teardown(platform, address);
                    if let Some(vif) = self.vifs.remove(&VifKey::of(address)) {
                        self.switch.remove_port(vif.port);
                        self.ports.remove(&vif.port);
                        log::info!("vif {}/{}: removed", address.frontend_id, address.devid);
                    }
                    return;
                }
            };
        }
    }

    /// Tears the datapath down after a protocol violation and reports it.
    fn protocol_failure(&mut self, platform: &mut P, address: DeviceAddress, reason: &str) {
        log::warn!(
            "vif {}/{}: disconnecting: {reason}",
            address.frontend_id,
            address.devid
        );
        self.teardown(platform, address);
        let Some(vif) = self.vifs.get_mut(&VifKey::of(address)) else {
            return;
        };
        vif.counters.protocol_errors += 1;
        vif.last_error = Some(String::from(reason));
        let action = vif.device.fail(platform, reason);
        self.run_action(platform, address, action);
    }

    /// Unmaps the rings, closes the event channels and drops the backlog.
    fn teardown(&mut self, platform: &mut P, address: DeviceAddress) {
        let Some(vif) = self.vifs.get_mut(&VifKey::of(address)) else {
            return;
        };
        let Some(datapath) = vif.datapath.take() else {
            return;
        };
        let port = vif.port;
        if let Some(control) = datapath.control {
            self.events.remove(&control.port);
            release_control(platform, control);
        }
        for mut queue in datapath.queues {
            self.backlog_bytes -= queue.backlog.bytes();
            let dropped = queue.backlog.clear();
            for _ in 0..dropped {
                self.switch.count_drop(port);
            }
            self.events.remove(&queue.tx_port);
            self.events.remove(&queue.rx_port);
            platform.close(queue.tx_port);
            if queue.rx_port != queue.tx_port {
                platform.close(queue.rx_port);
            }
            let Queue {
                tx,
                rx,
                tx_mapping,
                rx_mapping,
                ..
            } = queue;
            drop(tx);
            drop(rx);
            for mapping in [tx_mapping, rx_mapping] {
                match Rc::try_unwrap(mapping) {
                    Ok(mapping) => platform.unmap(mapping),
                    Err(_) => log::warn!("ring mapping still shared at teardown"),
                }
            }
        }
        self.switch.forget_port_addresses(port);
        self.switch.unpin_port(port);
    }

    /// Answers up to `control_budget` requests on a vif's control ring;
    /// returns whether requests are left.
    fn serve_control(
        &mut self,
        platform: &mut P,
        address: DeviceAddress,
    ) -> Result<bool, ProtocolError> {
        let budget = self.config.control_budget;
        let Some(datapath) = self
            .vifs
            .get_mut(&VifKey::of(address))
            .and_then(|vif| vif.datapath.as_mut())
        else {
            return Ok(false);
        };
        let queues = datapath.queues.len();
        let Some(control) = datapath.control.as_mut() else {
            return Ok(false);
        };
        let (notify, more) = control::serve(
            &mut control.ring,
            &mut datapath.hash,
            queues,
            platform,
            address.frontend_id,
            budget,
        )
        .map_err(|error| ProtocolError(format!("control ring: {error}")))?;
        if notify {
            platform.notify(control.port);
        }
        Ok(more)
    }

    /// Takes up to `tx_budget` packets off one TX ring. Returns the number
    /// of packets and whether the budget ran out with requests left.
    fn transmit_queue(
        &mut self,
        platform: &mut P,
        address: DeviceAddress,
        queue_index: usize,
        frames: &mut Vec<Frame>,
    ) -> Result<(usize, bool), ProtocolError> {
        let budget = self.config.tx_budget;
        let limits = self.config.tx_limits;
        let Some(vif) = self.vifs.get_mut(&VifKey::of(address)) else {
            return Ok((0, false));
        };
        let port = vif.port;
        // Without a valid `mac` there is nothing to enforce against.
        let enforce_source = self.config.enforce_source_mac && vif.mac.is_some();
        let Some(queue) = vif
            .datapath
            .as_mut()
            .and_then(|datapath| datapath.queues.get_mut(queue_index))
        else {
            return Ok((0, false));
        };
        let frontend_id = address.frontend_id;
        let mut packets = 0;
        let mut more = false;
        loop {
            if packets == budget {
                more = queue.tx.unconsumed_requests().map_err(ring_error)? != 0;
                break;
            }
            let available = queue.tx.unconsumed_requests().map_err(ring_error)?;
            if available == 0 {
                if queue.tx.final_check_for_requests().map_err(ring_error)? {
                    continue;
                }
                break;
            }
            // The parser may read only the slots published now.
            let mut left = available;
            let mut ring_failure = None;
            let verdict = {
                let ring = &mut queue.tx;
                let mut source = || -> Option<[u8; TX_SLOT_SIZE]> {
                    if left == 0 {
                        return None;
                    }
                    let mut slot = [0u8; TX_SLOT_SIZE];
                    match ring.next_request(&mut slot) {
                        Ok(true) => {
                            left -= 1;
                            Some(slot)
                        }
                        Ok(false) => None,
                        Err(error) => {
                            ring_failure = Some(error);
                            None
                        }
                    }
                };
                parse_tx_packet(&mut source, &limits)
            };
            if let Some(error) = ring_failure {
                return Err(ring_error(error));
            }
            packets += 1;
            match verdict {
                TxParse::Fatal(reason) => {
                    return Err(ProtocolError(format!("TX ring: {}", reason.message())));
                }
                TxParse::Drop { reason, answers } => {
                    log::debug!(
                        "vif {}/{}: dropping TX packet: {}",
                        address.frontend_id,
                        address.devid,
                        reason.message()
                    );
                    vif.counters.tx_invalid += 1;
                    self.switch.count_error(port);
                    answer_tx(&mut queue.tx, &answers, NETIF_RSP_ERROR)?;
                }
                TxParse::Packet(packet) => match copy_packet(platform, frontend_id, &packet) {
                    Ok(frame) if enforce_source && frame.source() != vif.mac => {
                        log::debug!(
                            "vif {}/{}: dropping frame with a foreign source MAC",
                            address.frontend_id,
                            address.devid
                        );
                        vif.counters.tx_spoofed += 1;
                        self.switch.count_error(port);
                        answer_tx(&mut queue.tx, &packet.answers, NETIF_RSP_ERROR)?;
                    }
                    Ok(frame) => {
                        answer_tx(&mut queue.tx, &packet.answers, NETIF_RSP_OKAY)?;
                        frames.push(frame);
                    }
                    Err(error) => {
                        log::debug!(
                            "vif {}/{}: TX grant copy failed: {error:?}",
                            address.frontend_id,
                            address.devid
                        );
                        vif.counters.tx_grant_errors += 1;
                        self.switch.count_error(port);
                        answer_tx(&mut queue.tx, &packet.answers, NETIF_RSP_ERROR)?;
                    }
                },
            }
        }
        if queue.tx.push_responses_and_check_notify() {
            platform.notify(queue.tx_port);
        }
        Ok((packets, more))
    }

    /// Puts up to `rx_budget` waiting frames on one RX ring. Returns the
    /// number delivered and whether the budget ran out with frames left
    /// and buffers posted.
    fn receive_queue(
        &mut self,
        platform: &mut P,
        address: DeviceAddress,
        queue_index: usize,
        now: Duration,
    ) -> Result<(usize, bool), ProtocolError> {
        let budget = self.config.rx_budget;
        let timeout = self.config.backlog.timeout;
        let Some(vif) = self.vifs.get_mut(&VifKey::of(address)) else {
            return Ok((0, false));
        };
        let port = vif.port;
        let Some(datapath) = vif.datapath.as_mut() else {
            return Ok((0, false));
        };
        let features = datapath.features;
        let Some(queue) = datapath.queues.get_mut(queue_index) else {
            return Ok((0, false));
        };
        let frontend_id = address.frontend_id;
        let bytes_before = queue.backlog.bytes();
        let result = Self::fill_rx_ring(
            platform,
            &mut self.switch,
            port,
            &mut vif.counters,
            features,
            queue,
            frontend_id,
            budget,
            now.checked_sub(timeout),
        );
        self.backlog_bytes -= bytes_before - queue.backlog.bytes();
        result
    }

    /// The body of [`receive_queue`](Self::receive_queue), on borrowed parts.
    #[allow(clippy::too_many_arguments)]
    fn fill_rx_ring(
        platform: &mut P,
        switch: &mut Switch,
        port: PortId,
        counters: &mut VifCounters,
        features: FrontendFeatures,
        queue: &mut Queue<P::Mapping>,
        frontend_id: DomId,
        budget: usize,
        expire_before: Option<Duration>,
    ) -> Result<(usize, bool), ProtocolError> {
        if let Some(deadline) = expire_before {
            for _ in 0..queue.backlog.expire(deadline) {
                switch.count_drop(port);
            }
        }
        let mut delivered = 0;
        let mut pushed = false;
        let mut more = false;
        while let Some((source, queued, frame)) = queue.backlog.pop() {
            if delivered == budget {
                queue.backlog.unpop(source, queued, frame);
                more = true;
                break;
            }
            let data_slots = frame.data.len().div_ceil(PAGE_SIZE).max(1);
            let slots = data_slots + usize::from(frame.gso.is_some());
            if (!features.sg && data_slots > 1) || slots > XEN_NETIF_NR_SLOTS_MIN {
                counters.rx_undeliverable += 1;
                switch.count_error(port);
                continue;
            }
            let slots = slots as u32;
            let mut available = queue.rx.unconsumed_requests().map_err(ring_error)?;
            if available < slots {
                // Ask to be woken once enough buffers are posted, then look
                // again to close the race with the frontend (as
                // RING_FINAL_CHECK_FOR_REQUESTS does for one request).
                let wake_at = queue.rx.req_cons().wrapping_add(slots);
                queue.rx.memory().store_u32(REQ_EVENT_OFFSET, wake_at);
                core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
                available = queue.rx.unconsumed_requests().map_err(ring_error)?;
                if available < slots {
                    queue.backlog.unpop(source, queued, frame);
                    break;
                }
            }
            let mut requests = Vec::with_capacity(slots as usize);
            for _ in 0..slots {
                let mut slot = [0u8; RX_SLOT_SIZE];
                if !queue.rx.next_request(&mut slot).map_err(ring_error)? {
                    return Err(ProtocolError(String::from(
                        "RX ring: requests vanished while being consumed",
                    )));
                }
                requests.push(RxRequest::decode(&slot));
            }
            let ok = copy_to_guest(platform, frontend_id, &frame, &requests);
            write_rx_responses(&mut queue.rx, &frame, &requests, ok)?;
            pushed = true;
            if ok {
                delivered += 1;
                switch.count_sent(port, frame.data.len());
            } else {
                counters.rx_grant_errors += 1;
                switch.count_error(port);
            }
        }
        if pushed && queue.rx.push_responses_and_check_notify() {
            platform.notify(queue.rx_port);
        }
        Ok((delivered, more))
    }

    /// Sends a frame that entered the switch on `ingress` where the switch
    /// says.
    fn switch_frame(
        &mut self,
        ingress: PortId,
        frame: Frame,
        uplink: &mut impl NetDevice,
        now: Duration,
    ) {
        match self.switch.forward(ingress, &frame.data, now) {
            crate::switch::Forward::Discard => {}
            crate::switch::Forward::Unicast(port) => {
                self.deliver(port, ingress, frame, uplink, now)
            }
            crate::switch::Forward::Flood(ports) => {
                let last = ports.len().saturating_sub(1);
                let mut frame = Some(frame);
                for (index, port) in ports.into_iter().enumerate() {
                    let copy = if index == last {
                        frame.take()
                    } else {
                        frame.clone()
                    };
                    if let Some(copy) = copy {
                        self.deliver(port, ingress, copy, uplink, now);
                    }
                }
            }
        }
    }

    /// Hands a frame to one port: to the uplink device now, or to a vif
    /// queue's backlog.
    fn deliver(
        &mut self,
        port: PortId,
        ingress: PortId,
        frame: Frame,
        uplink: &mut impl NetDevice,
        now: Duration,
    ) {
        if port == UPLINK_PORT {
            let offloads = uplink.offloads();
            let switch = &mut self.switch;
            let result = adapt_for(frame, &offloads, |out| {
                let length = out.data.len();
                match uplink.transmit(out) {
                    Ok(()) => switch.count_sent(UPLINK_PORT, length),
                    Err(_) => switch.count_drop(UPLINK_PORT),
                }
            });
            if let Err(error) = result {
                log::debug!("uplink: {}", error.message());
                self.switch.count_error(UPLINK_PORT);
            }
            return;
        }
        let Some(address) = self.ports.get(&port).copied() else {
            return;
        };
        let Some(vif) = self.vifs.get_mut(&VifKey::of(address)) else {
            return;
        };
        let Some(datapath) = vif.datapath.as_mut() else {
            self.switch.count_drop(port);
            return;
        };
        let queues = datapath.queues.len();
        let queue_index = if queues > 1 {
            datapath
                .hash
                .queue_for(&frame.data, queues)
                .unwrap_or_else(|| (frame.flow_hash() as usize) % queues)
        } else {
            0
        };
        let offloads = datapath.features.offloads();
        let Some(queue) = datapath.queues.get_mut(queue_index) else {
            return;
        };
        let limits = &self.config.backlog;
        let switch = &mut self.switch;
        let backlog_bytes = &mut self.backlog_bytes;
        let result = adapt_for(frame, &offloads, |out| {
            let length = out.data.len();
            if *backlog_bytes + length > limits.bytes_engine {
                switch.count_drop(port);
                return;
            }
            match queue.backlog.push(ingress, out, now, limits) {
                Ok(()) => *backlog_bytes += length,
                Err(_) => switch.count_drop(port),
            }
        });
        if let Err(error) = result {
            log::debug!(
                "vif {}/{}: undeliverable frame: {}",
                address.frontend_id,
                address.devid,
                error.message()
            );
            vif.counters.rx_undeliverable += 1;
            self.switch.count_error(port);
        }
    }
}

fn ring_error(error: RingError) -> ProtocolError {
    ProtocolError(format!("ring: {error}"))
}

/// Answers every slot of a TX packet: data slots with `status`, extra-info
/// slots with `NETIF_RSP_NULL`.
fn answer_tx<M: SharedMemory>(
    ring: &mut BackRing<M>,
    answers: &[SlotAnswer],
    status: i16,
) -> Result<(), ProtocolError> {
    for answer in answers {
        let response = match *answer {
            SlotAnswer::Data(id) => TxResponse { id, status },
            SlotAnswer::Extra => TxResponse {
                id: 0,
                status: NETIF_RSP_NULL,
            },
        };
        ring.push_response(&response.encode()).map_err(ring_error)?;
    }
    Ok(())
}

/// Copies a valid packet's data out of the guest's pages in one batch.
fn copy_packet<P: Platform>(
    platform: &mut P,
    frontend_id: DomId,
    packet: &TxPacket,
) -> Result<Frame, GrantError> {
    let mut data = vec![0u8; packet.length];
    {
        let mut ops = Vec::with_capacity(packet.fragments.len());
        let mut rest: &mut [u8] = &mut data;
        for fragment in &packet.fragments {
            let (head, tail) = rest.split_at_mut(usize::from(fragment.length));
            rest = tail;
            if head.is_empty() {
                continue;
            }
            ops.push(CopyOp::FromGrant {
                source: GrantSpan {
                    domid: frontend_id,
                    gref: fragment.gref,
                    offset: fragment.offset,
                },
                destination: head,
            });
        }
        let mut status = vec![Ok(()); ops.len()];
        platform.copy(&mut ops, &mut status);
        if let Some(Err(error)) = status.into_iter().find(Result::is_err) {
            return Err(error);
        }
    }
    Ok(Frame {
        data,
        checksum: packet.checksum,
        gso: packet.gso,
    })
}

/// Copies a frame into the pages of `requests` (one page per data slot;
/// with GSO the second request carries the extra info and no data).
/// Returns whether every copy succeeded.
fn copy_to_guest<P: Platform>(
    platform: &mut P,
    frontend_id: DomId,
    frame: &Frame,
    requests: &[RxRequest],
) -> bool {
    let mut ops = Vec::with_capacity(requests.len());
    for (chunk, request) in frame
        .data
        .chunks(PAGE_SIZE)
        .zip(data_requests(frame, requests))
    {
        ops.push(CopyOp::ToGrant {
            source: chunk,
            destination: GrantSpan {
                domid: frontend_id,
                gref: request.gref,
                offset: 0,
            },
        });
    }
    let mut status = vec![Ok(()); ops.len()];
    platform.copy(&mut ops, &mut status);
    status.iter().all(Result::is_ok)
}

/// The requests whose pages carry data, in order.
fn data_requests<'a>(
    frame: &Frame,
    requests: &'a [RxRequest],
) -> impl Iterator<Item = &'a RxRequest> {
    let skip_extra = frame.gso.is_some();
    requests
        .iter()
        .enumerate()
        .filter(move |(index, _)| !(skip_extra && *index == 1))
        .map(|(_, request)| request)
}

/// Writes the responses for one frame, each in the slot of the request it
/// consumed (netif.h requires it: extra info has no id).
fn write_rx_responses<M: SharedMemory>(
    ring: &mut BackRing<M>,
    frame: &Frame,
    requests: &[RxRequest],
    ok: bool,
) -> Result<(), ProtocolError> {
    if !ok {
        let last = requests.len() - 1;
        for (index, request) in requests.iter().enumerate() {
            let response = RxResponse {
                id: request.id,
                offset: 0,
                flags: if index == last { 0 } else { NETRXF_MORE_DATA },
                status: NETIF_RSP_ERROR,
            };
            ring.push_response(&response.encode()).map_err(ring_error)?;
        }
        return Ok(());
    }
    let chunks: Vec<&[u8]> = if frame.data.is_empty() {
        vec![&[][..]]
    } else {
        frame.data.chunks(PAGE_SIZE).collect()
    };
    let mut data = data_requests(frame, requests);
    for (index, chunk) in chunks.iter().enumerate() {
        let Some(request) = data.next() else {
            break;
        };
        let mut flags = 0;
        if index + 1 < chunks.len() {
            flags |= NETRXF_MORE_DATA;
        }
        if index == 0 {
            flags |= match frame.checksum {
                ChecksumState::Blank => NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED,
                ChecksumState::Validated => NETRXF_DATA_VALIDATED,
                ChecksumState::Complete => 0,
            };
            if frame.gso.is_some() {
                flags |= NETRXF_EXTRA_INFO;
            }
        }
        let response = RxResponse {
            id: request.id,
            offset: 0,
            flags,
            status: chunk.len() as i16,
        };
        ring.push_response(&response.encode()).map_err(ring_error)?;
        if index == 0 {
            if let Some(gso) = frame.gso {
                let extra = ExtraInfo::gso(gso.kind, gso.segment_size);
                ring.push_response(&extra.encode()).map_err(ring_error)?;
            }
        }
    }
    Ok(())
}

/// Reads what the frontend published, maps its rings and binds its event
/// channels. On failure everything set up so far is undone and the reason
/// returned.
fn connect<P: Platform>(
    platform: &mut P,
    device: &BackendDevice,
    config: &Config,
) -> Result<Datapath<P::Mapping>, String> {
    let field = |error: xenbus::backend::FieldError| format!("{error}");
    let flag = |platform: &mut P, key: &str| -> Result<bool, String> {
        device
            .read_frontend_optional(platform, key, value::parse_bool)
            .map(|value| value.unwrap_or(false))
            .map_err(field)
    };
    if !flag(platform, "request-rx-copy")? {
        return Err(String::from(
            "frontend does not request rx-copy (receive by page flipping is not supported)",
        ));
    }
    let sg = flag(platform, "feature-sg")?;
    let gso_tcpv4 = flag(platform, "feature-gso-tcpv4")?;
    let gso_tcpv6 = flag(platform, "feature-gso-tcpv6")?;
    let no_checksum = flag(platform, "feature-no-csum-offload")?;
    let checksum_ipv6 = flag(platform, "feature-ipv6-csum-offload")?;
    let rx_notify = flag(platform, "feature-rx-notify")?;
    let queues = device
        .read_frontend_optional(platform, "multi-queue-num-queues", value::parse_u32)
        .map_err(field)?
        .unwrap_or(1);
    if queues == 0 || queues > config.max_queues.max(1) {
        return Err(format!(
            "multi-queue-num-queues: {queues} is not between 1 and {}",
            config.max_queues.max(1)
        ));
    }
    let mut features = FrontendFeatures {
        sg,
        gso_tcpv4,
        gso_tcpv6,
        checksum_ipv4: !no_checksum,
        checksum_ipv6,
        rx_notify,
        split_event_channels: false,
        queues,
    };
    let mut datapath = Datapath {
        features,
        queues: Vec::new(),
        control: None,
        hash: HashConfig::default(),
    };
    for index in 0..queues {
        let prefix = if queues == 1 {
            String::new()
        } else {
            format!("queue-{index}/")
        };
        match connect_queue(platform, device, &prefix) {
            Ok((queue, split)) => {
                features.split_event_channels = split;
                datapath.queues.push(queue);
            }
            Err(reason) => {
                release_queues(platform, datapath.queues);
                return Err(reason);
            }
        }
    }
    datapath.features = features;
    match connect_control(platform, device) {
        Ok(control) => datapath.control = control,
        Err(reason) => {
            release_queues(platform, datapath.queues);
            return Err(reason);
        }
    }
    Ok(datapath)
}

/// Maps the control ring and binds its event channel if the frontend
/// published them (`ctrl-ring-ref`, `event-channel-ctrl`).
fn connect_control<P: Platform>(
    platform: &mut P,
    device: &BackendDevice,
) -> Result<Option<ControlRing<P::Mapping>>, String> {
    let field = |error: xenbus::backend::FieldError| format!("{error}");
    let gref = device
        .read_frontend_optional(platform, "ctrl-ring-ref", value::parse_grant_ref)
        .map_err(field)?;
    let port = device
        .read_frontend_optional(platform, "event-channel-ctrl", value::parse_evtchn_port)
        .map_err(field)?;
    let (gref, remote_port) = match (gref, port) {
        (None, None) => return Ok(None),
        (Some(gref), Some(port)) => (gref, port),
        _ => {
            return Err(String::from(
                "ctrl-ring-ref and event-channel-ctrl must come together",
            ))
        }
    };
    let frontend_id = device.frontend_id();
    let mapping = platform
        .map(frontend_id, &[gref], true)
        .map_err(|error| format!("ctrl-ring-ref {gref}: cannot map: {error:?}"))?;
    let mapping = Rc::new(mapping);
    let ring = match BackRing::new(mapping.clone(), CTRL_SLOT_SIZE) {
        Ok(ring) => ring,
        Err(error) => {
            if let Ok(mapping) = Rc::try_unwrap(mapping) {
                platform.unmap(mapping);
            }
            return Err(format!("control ring: {error}"));
        }
    };
    let port = match platform.bind_interdomain(frontend_id, remote_port) {
        Ok(port) => port,
        Err(error) => {
            drop(ring);
            if let Ok(mapping) = Rc::try_unwrap(mapping) {
                platform.unmap(mapping);
            }
            return Err(format!(
                "event-channel-ctrl {remote_port}: cannot bind: {error:?}"
            ));
        }
    };
    Ok(Some(ControlRing {
        ring,
        mapping,
        port,
    }))
}

fn release_control<P: Platform>(platform: &mut P, control: ControlRing<P::Mapping>) {
    platform.close(control.port);
    let ControlRing { ring, mapping, .. } = control;
    drop(ring);
    match Rc::try_unwrap(mapping) {
        Ok(mapping) => platform.unmap(mapping),
        Err(_) => log::warn!("control ring mapping still shared at teardown"),
    }
}

fn release_queues<P: Platform>(platform: &mut P, queues: Vec<Queue<P::Mapping>>) {
    for queue in queues {
        platform.close(queue.tx_port);
        if queue.rx_port != queue.tx_port {
            platform.close(queue.rx_port);
        }
        let Queue {
            tx,
            rx,
            tx_mapping,
            rx_mapping,
            ..
        } = queue;
        drop(tx);
        drop(rx);
        for mapping in [tx_mapping, rx_mapping] {
            if let Ok(mapping) = Rc::try_unwrap(mapping) {
                platform.unmap(mapping);
            }
        }
    }
}

fn connect_queue<P: Platform>(
    platform: &mut P,
    device: &BackendDevice,
    prefix: &str,
) -> Result<(Queue<P::Mapping>, bool), String> {
    let field = |error: xenbus::backend::FieldError| format!("{error}");
    let frontend_id = device.frontend_id();
    let tx_ref: GrantRef = device
        .read_frontend(
            platform,
            &format!("{prefix}tx-ring-ref"),
            value::parse_grant_ref,
        )
        .map_err(field)?;
    let rx_ref: GrantRef = device
        .read_frontend(
            platform,
            &format!("{prefix}rx-ring-ref"),
            value::parse_grant_ref,
        )
        .map_err(field)?;
    let split_tx = device
        .read_frontend_optional(
            platform,
            &format!("{prefix}event-channel-tx"),
            value::parse_evtchn_port,
        )
        .map_err(field)?;
    let (remote_tx, remote_rx, split) = match split_tx {
        Some(tx) => {
            let rx = device
                .read_frontend(
                    platform,
                    &format!("{prefix}event-channel-rx"),
                    value::parse_evtchn_port,
                )
                .map_err(field)?;
            (tx, rx, true)
        }
        None => {
            let port = device
                .read_frontend(
                    platform,
                    &format!("{prefix}event-channel"),
                    value::parse_evtchn_port,
                )
                .map_err(field)?;
            (port, port, false)
        }
    };

    let tx_mapping = platform
        .map(frontend_id, &[tx_ref], true)
        .map_err(|error| format!("{prefix}tx-ring-ref {tx_ref}: cannot map: {error:?}"))?;
    let rx_mapping = match platform.map(frontend_id, &[rx_ref], true) {
        Ok(mapping) => mapping,
        Err(error) => {
            platform.unmap(tx_mapping);
            return Err(format!(
                "{prefix}rx-ring-ref {rx_ref}: cannot map: {error:?}"
            ));
        }
    };
    let tx_mapping = Rc::new(tx_mapping);
    let rx_mapping = Rc::new(rx_mapping);
    let rings = BackRing::new(tx_mapping.clone(), TX_SLOT_SIZE)
        .and_then(|tx| BackRing::new(rx_mapping.clone(), RX_SLOT_SIZE).map(|rx| (tx, rx)));
    let unmap_both = |platform: &mut P, tx: Rc<P::Mapping>, rx: Rc<P::Mapping>| {
        for mapping in [tx, rx] {
            if let Ok(mapping) = Rc::try_unwrap(mapping) {
                platform.unmap(mapping);
            }
        }
    };
    let (tx, rx) = match rings {
        Ok(rings) => rings,
        Err(error) => {
            unmap_both(platform, tx_mapping, rx_mapping);
            return Err(format!("{prefix}rings: {error}"));
        }
    };
    let tx_port = match platform.bind_interdomain(frontend_id, remote_tx) {
        Ok(port) => port,
        Err(error) => {
            drop((tx, rx));
            unmap_both(platform, tx_mapping, rx_mapping);
            return Err(format!(
                "{prefix}event channel {remote_tx}: cannot bind: {error:?}"
            ));
        }
    };
    let rx_port = if split {
        match platform.bind_interdomain(frontend_id, remote_rx) {
            Ok(port) => port,
            Err(error) => {
                platform.close(tx_port);
                drop((tx, rx));
                unmap_both(platform, tx_mapping, rx_mapping);
                return Err(format!(
                    "{prefix}event channel {remote_rx}: cannot bind: {error:?}"
                ));
            }
        }
    } else {
        tx_port
    };
    Ok((
        Queue {
            tx,
            rx,
            tx_mapping,
            rx_mapping,
            tx_port,
            rx_port,
            backlog: Backlog::default(),
        },
        split,
    ))
}
