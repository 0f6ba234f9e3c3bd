//! The control plane: finding virtual disks in xenstore, their xenbus
//! lifecycle, feature negotiation, connecting rings, and dispatching events
//! and completions to the data path.
//!
//! Each virtual disk (vbd) is a backend directory
//! `/local/domain/<own domid>/backend/vbd/<frontend domid>/<devid>` written
//! by the toolstack. Its `params` node names one of the devices registered
//! with [`Blkback::add_device`] (for example `ram0`).
//!
//! The xenstore handshake itself (checking `online`, `frontend-id` and
//! `frontend`, publishing states, frontend restarts, `online = 0`, removal,
//! retrying failed publications) is [`xenbus::backend::BackendDevice`], the
//! helper netback uses too. This module adds what is particular to disks:
//!
//! 1. once `params` and `mode` exist: pick the device, publish the disk's
//!    properties and features with the helper's `start` (one transaction
//!    with `hotplug-status = connected` and state InitWait). GNU Mach's
//!    blkfront reads `sectors`, `info`, `sector-size`, `mode` and `params`
//!    without waiting for Connected, so all are there by then. An unknown
//!    device gets `hotplug-error` and Closed; other vbds are not affected.
//! 2. [`Action::Connect`]: read the frontend's ring and event channel
//!    nodes, map and bind.
//! 3. [`Action::Disconnect`]: unmap and unbind, and report back only once
//!    the device has finished the vbd's requests, so that Closed (and a
//!    restart's InitWait) is never published while the disk still works
//!    for the old connection.
//! 4. [`Action::Remove`]: forget the vbd, again once the device has
//!    finished its requests (their tags name the vbd's slot).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use log::{info, warn};
use xen_ring::RingError;
use xenbus::backend::{Action, BackendDevice, BackendDirectory, DeviceAddress, PathError, Phase};
use xenbus::platform::{DomId, EvtchnError, EvtchnPort, GrantError, GrantRef, TxId, XsError};
use xenbus::value::{self, ValueError};
use xenbus::XenbusState;

use crate::datapath::{tag_ring_slot, Connection, DiskContext, Io, Ring};
use crate::device::{BlockDevice, IoCompletion};
use crate::persistent::PersistentGrants;
use crate::proto::{Abi, Limits, SECTOR_SIZE, VDISK_CDROM, VDISK_READONLY, VDISK_REMOVABLE};
use crate::{Config, Platform, MAX_INDIRECT_SEGMENTS, MAX_QUEUES, MAX_RING_PAGE_ORDER};

/// The watch token of the backend directory (`backend/vbd`).
pub const BACKEND_WATCH_TOKEN: &str = "blkback";
/// Prefix of the watch tokens of each vbd's own watches (its backend
/// directory and its frontend's `state`).
const VBD_WATCH_TOKEN_PREFIX: &str = "blkback-frontend-";
/// Most vbds the tag layout can address.
const MAX_VBDS: usize = 1 << 16;
/// Most actions run for one event: each publishes a state, so a frontend
/// flipping its state meanwhile cannot keep one event going.
const MAX_ACTIONS_PER_EVENT: usize = 8;
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddDeviceError {
    /// The name is empty, too long or contains `/`.
    InvalidName,
    /// A device with this name is already registered.
    DuplicateName,
}

impl fmt::Display for AddDeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidName => "the name is empty, too long or contains '/'",
            Self::DuplicateName => "a device with this name is already registered",
        })
    }
}

/// What [`Blkback::poll`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PollStatus {
    /// Some ring had more requests than one poll takes, or a completion was
    /// handled: poll again before waiting for events.
    pub more_work: bool,
}

/// A snapshot of one virtual disk, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VbdStatus {
    /// The frontend's domain.
    pub frontend_id: DomId,
    /// The device id (`virtual-device`).
    pub devid: u32,
    /// The state this backend published.
    pub state: XenbusState,
    /// The registered device serving it, once probed.
    pub device: Option<String>,
    /// Connected rings.
    pub queues: usize,
    /// Entries per ring (0 when not connected).
    pub ring_size: u32,
    /// The negotiated request layout, when connected.
    pub abi: Option<Abi>,
    /// Data pages currently mapped persistently.
    pub persistent_grants: usize,
    /// Requests the device has not completed yet.
    pub device_in_flight: usize,
}

/// Why connecting to a frontend failed. The doc line is the log message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConnectError {
    /// A xenstore request failed.
    Xenstore(XsError),
    /// A required frontend node is missing.
    Missing(String),
    /// A frontend node holds an invalid value.
    Invalid(String, ValueError),
    /// multi-queue-num-queues is zero or above what was offered.
    QueueCount(u32),
    /// Mapping a ring failed.
    Map(GrantError),
    /// The ring mapping cannot hold a ring.
    Ring(RingError),
    /// Binding an event channel failed.
    Bind(EvtchnError),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Xenstore(error) => write!(f, "xenstore request failed: {error:?}"),
            Self::Missing(node) => write!(f, "frontend node {node} is missing"),
            Self::Invalid(node, error) => write!(f, "frontend node {node}: {error}"),
            Self::QueueCount(count) => {
                write!(
                    f,
                    "multi-queue-num-queues {count} is not between 1 and the offered maximum"
                )
            }
            Self::Map(error) => write!(f, "mapping the ring failed: {error:?}"),
            Self::Ring(error) => write!(f, "bad ring: {error}"),
            Self::Bind(error) => write!(f, "binding the event channel failed: {error:?}"),
        }
    }
}

struct Disk<D> {
    name: String,
    device: D,
}

struct Vbd<M> {
    /// Distinguishes this vbd from earlier ones in the same slot (24 bits in tags).
    id: u64,
    /// The xenstore side of the vbd's lifecycle.
    handshake: BackendDevice,
    /// Set once the disk is published (the handshake has started).
    disk: Option<usize>,
    context: Option<DiskContext>,
    connection: Option<Connection<M>>,
    device_in_flight: usize,
    /// Publishing the disk failed on a xenstore error: try again at the
    /// next poll.
    retry_start: bool,
    /// The datapath is torn down after [`Action::Disconnect`]; the helper
    /// is told once the device has finished the vbd's requests.
    disconnect_when_drained: bool,
    /// The helper returned [`Action::Remove`]; the slot is freed once the
    /// device has finished the vbd's requests.
    remove_when_drained: bool,
    /// An action the per-event bound left for the next poll.
    pending: Option<Action>,
}

impl<M> Vbd<M> {
    fn frontend_id(&self) -> DomId {
        self.handshake.frontend_id()
    }

    fn devid(&self) -> u32 {
        self.handshake.address().devid
    }

    /// Whether watch events still concern the vbd.
    fn live(&self) -> bool {
        !self.remove_when_drained
    }
}

/// The blkif backend engine, generic over the platform `P` and the device
/// type `D` (use an enum or `Box<dyn BlockDevice>` for mixed devices).
pub struct Blkback<P: Platform, D: BlockDevice> {
    config: Config,
    directory: BackendDirectory,
    disks: Vec<Disk<D>>,
    vbds: Vec<Option<Vbd<P::Mapping>>>,
    next_vbd_id: u64,
}

fn read_optional<P: Platform>(platform: &mut P, path: &str) -> Result<Option<String>, XsError> {
    match platform.read(TxId::NONE, path) {
        Ok(value) => Ok(Some(value)),
        Err(XsError::Enoent) => Ok(None),
        Err(error) => Err(error),
    }
}

impl<P: Platform, D: BlockDevice> Blkback<P, D> {
    /// A backend with no devices. Out-of-range settings are clamped to
    /// [`MAX_QUEUES`], [`MAX_RING_PAGE_ORDER`] and [`MAX_INDIRECT_SEGMENTS`];
    /// `requests_per_poll` and `max_persistent_grants` are at least 1.
    pub fn new(mut config: Config) -> Self {
        config.max_queues = config.max_queues.clamp(1, MAX_QUEUES);
        config.max_ring_page_order = config.max_ring_page_order.min(MAX_RING_PAGE_ORDER);
        config.max_indirect_segments = config.max_indirect_segments.min(MAX_INDIRECT_SEGMENTS);
        config.requests_per_poll = config.requests_per_poll.max(1);
        config.max_persistent_grants = config.max_persistent_grants.max(1);
        config.max_bytes_in_flight_per_ring = config.max_bytes_in_flight_per_ring.max(1);
        Self {
            directory: BackendDirectory::absolute(config.domid, "vbd"),
            config,
            disks: Vec::new(),
            vbds: Vec::new(),
            next_vbd_id: 1,
        }
    }

    /// The settings in effect.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The directory watched for virtual disks.
    pub fn backend_root(&self) -> &str {
        self.directory.root()
    }

    /// The backend directory itself, to recognise its devices' paths.
    pub fn directory(&self) -> &BackendDirectory {
        &self.directory
    }

    /// Registers `device` under `name`, the value a vbd's `params` uses.
    pub fn add_device(&mut self, name: &str, device: D) -> Result<(), AddDeviceError> {
        if name.is_empty() || name.len() > 64 || name.contains('/') {
            return Err(AddDeviceError::InvalidName);
        }
        if self.disks.iter().any(|disk| disk.name == name) {
            return Err(AddDeviceError::DuplicateName);
        }
        self.disks.push(Disk {
            name: name.to_string(),
            device,
        });
        Ok(())
    }

    /// The device registered as `name`.
    pub fn device(&self, name: &str) -> Option<&D> {
        self.disks
            .iter()
            .find(|disk| disk.name == name)
            .map(|disk| &disk.device)
    }

    /// The device registered as `name`, mutably.
    pub fn device_mut(&mut self, name: &str) -> Option<&mut D> {
        self.disks
            .iter_mut()
            .find(|disk| disk.name == name)
            .map(|disk| &mut disk.device)
    }

    /// Watches the backend directory (token [`BACKEND_WATCH_TOKEN`]) and
    /// takes on the vbds already there.
    pub fn start(&mut self, platform: &mut P) -> Result<(), XsError> {
        self.directory.watch(platform, BACKEND_WATCH_TOKEN)?;
        self.scan(platform);
        Ok(())
    }

    /// The state of every known vbd.
    pub fn vbds(&self) -> Vec<VbdStatus> {
        self.vbds
            .iter()
            .flatten()
            .map(|vbd| {
                let connection = vbd.connection.as_ref();
                VbdStatus {
                    frontend_id: vbd.frontend_id(),
                    devid: vbd.devid(),
                    state: vbd.handshake.published_state(),
                    device: vbd.disk.map(|disk| self.disks[disk].name.clone()),
                    queues: connection.map_or(0, |c| c.rings().len()),
                    ring_size: connection
                        .and_then(|c| c.rings().first())
                        .map_or(0, Ring::size),
                    abi: connection.map(Connection::abi),
                    persistent_grants: connection.map_or(0, Connection::persistent_grants),
                    device_in_flight: vbd.device_in_flight,
                }
            })
            .collect()
    }

    /// The state of the vbd `devid` of `frontend_id`.
    pub fn vbd(&self, frontend_id: DomId, devid: u32) -> Option<VbdStatus> {
        self.vbds()
            .into_iter()
            .find(|status| status.frontend_id == frontend_id && status.devid == devid)
    }

    /// A xenstore watch fired. Handles the backend directory (new, changed
    /// and removed vbds) and the frontends' `state` nodes. The path decides;
    /// the token is only checked to come from this engine.
    pub fn on_watch(&mut self, platform: &mut P, path: &str, token: &str) {
        if token != BACKEND_WATCH_TOKEN && !token.starts_with(VBD_WATCH_TOKEN_PREFIX) {
            return;
        }
        let absolute;
        let path = if path.starts_with('/') {
            path
        } else {
            absolute = format!("/local/domain/{}/{path}", self.config.domid);
            &absolute
        };
        match self.directory.recognise(path) {
            Ok(Some(address)) => {
                if self.find(address).is_none() {
                    self.discover(address, platform);
                    return;
                }
            }
            // The directory itself or a frontend domain's: look at all.
            Ok(None) => return self.scan(platform),
            Err(PathError::Foreign) => {}
            Err(error) => {
                warn!("ignoring watch event for {path}: {error}");
                return;
            }
        }
        let relevant: Vec<usize> = self
            .vbds
            .iter()
            .enumerate()
            .filter_map(|(index, vbd)| {
                let vbd = vbd.as_ref()?;
                (vbd.live() && vbd.handshake.is_relevant(path)).then_some(index)
            })
            .collect();
        for index in relevant {
            self.handle_event(index, path, platform);
        }
    }

    /// An event channel fired: the frontend queued requests. They are taken
    /// at the next [`Blkback::poll`], which looks at every ring anyway; this
    /// only re-enables delivery.
    pub fn on_event(&mut self, platform: &mut P, port: EvtchnPort) {
        let known = self.vbds.iter().flatten().any(|vbd| {
            vbd.connection
                .as_ref()
                .is_some_and(|c| c.rings().iter().any(|ring| ring.port() == port))
        });
        if known {
            platform.unmask(port);
        }
    }

    /// Does a bounded amount of work: drains device completions, takes at
    /// most [`Config::requests_per_poll`] requests off each connected ring
    /// (so one busy frontend cannot starve the others), drains completions
    /// again, publishes responses and sends notifications, finishes
    /// disconnecting and removing vbds whose requests have all completed,
    /// and retries the xenstore work of vbds whose last attempt failed.
    pub fn poll(&mut self, platform: &mut P) -> PollStatus {
        let mut status = PollStatus::default();
        status.more_work |= self.drain_completions(platform);
        for index in 0..self.vbds.len() {
            status.more_work |= self.serve_vbd(index, platform);
        }
        status.more_work |= self.drain_completions(platform);
        for vbd in self.vbds.iter_mut().flatten() {
            if let Some(connection) = vbd.connection.as_mut() {
                connection.push_responses(platform);
            }
        }
        for index in 0..self.vbds.len() {
            self.finish_draining(index, platform);
            self.retry(index, platform);
        }
        status
    }

    fn serve_vbd(&mut self, index: usize, platform: &mut P) -> bool {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return false;
        };
        let (Some(connection), Some(context), Some(disk)) =
            (vbd.connection.as_mut(), vbd.context.as_ref(), vbd.disk)
        else {
            return false;
        };
        let mut io = Io {
            platform,
            device: &mut self.disks[disk].device,
            disk: context,
            device_in_flight: &mut vbd.device_in_flight,
        };
        let mut more = false;
        let mut broken = None;
        for ring in 0..connection.rings().len() {
            match connection.serve_ring(ring, &mut io) {
                Ok(left) => more |= left,
                Err(error) => {
                    broken = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = broken {
            warn!(
                "vbd {}/{}: frontend broke the ring protocol ({error}); disconnecting",
                vbd.frontend_id(),
                vbd.devid()
            );
            // The helper publishes Closing once the rings are gone, so the
            // frontend closes its end and may start over.
            let action = vbd.handshake.disconnect();
            self.run_action(index, action, platform);
        }
        more
    }

    fn drain_completions(&mut self, platform: &mut P) -> bool {
        let mut any = false;
        for disk in 0..self.disks.len() {
            while let Some(completion) = self.disks[disk].device.poll_completion() {
                any = true;
                self.route_completion(disk, completion, platform);
            }
        }
        any
    }

    fn route_completion(&mut self, disk: usize, completion: IoCompletion, platform: &mut P) {
        let IoCompletion {
            tag,
            result,
            buffer,
        } = completion;
        let index = ((tag.0 >> 24) & 0xffff) as usize;
        let id = tag.0 >> 40;
        let Some(vbd) = self
            .vbds
            .get_mut(index)
            .and_then(Option::as_mut)
            .filter(|vbd| vbd.id & 0xff_ffff == id && vbd.disk == Some(disk))
        else {
            warn!(
                "device {} completed an unknown request",
                self.disks[disk].name
            );
            return;
        };
        vbd.device_in_flight = vbd.device_in_flight.saturating_sub(1);
        let (Some(connection), Some(context)) = (vbd.connection.as_mut(), vbd.context.as_ref())
        else {
            return;
        };
        let (ring, slot) = tag_ring_slot(tag);
        let mut io = Io {
            platform,
            device: &mut self.disks[disk].device,
            disk: context,
            device_in_flight: &mut vbd.device_in_flight,
        };
        connection.complete(ring, slot, result, buffer, &mut io);
    }

    fn find(&self, address: DeviceAddress) -> Option<usize> {
        self.vbds.iter().position(|vbd| {
            vbd.as_ref()
                .is_some_and(|vbd| vbd.handshake.address() == address)
        })
    }

    /// Lists the backend directory: takes on new vbds, and has every known
    /// vbd look at its own directory again (which notices removed ones).
    fn scan(&mut self, platform: &mut P) {
        let present = match self.directory.list(platform, MAX_VBDS) {
            Ok(present) => present,
            Err(error) => {
                warn!("cannot list {}: {error:?}", self.directory.root());
                return;
            }
        };
        for index in 0..self.vbds.len() {
            let Some(vbd) = self.vbds[index].as_ref().filter(|vbd| vbd.live()) else {
                continue;
            };
            let path = String::from(vbd.handshake.backend_path());
            self.handle_event(index, &path, platform);
        }
        for address in present {
            if self.find(address).is_none() {
                self.discover(address, platform);
            }
        }
    }

    fn discover(&mut self, address: DeviceAddress, platform: &mut P) {
        let index = match self.vbds.iter().position(Option::is_none) {
            Some(index) => index,
            None if self.vbds.len() < MAX_VBDS => {
                self.vbds.push(None);
                self.vbds.len() - 1
            }
            None => {
                warn!(
                    "{}: too many virtual disks; ignored",
                    self.directory.device_path(address)
                );
                return;
            }
        };
        let id = self.next_vbd_id;
        self.next_vbd_id += 1;
        self.vbds[index] = Some(Vbd {
            id,
            handshake: BackendDevice::new(&self.directory, address),
            disk: None,
            context: None,
            connection: None,
            device_in_flight: 0,
            retry_start: false,
            disconnect_when_drained: false,
            remove_when_drained: false,
            pending: None,
        });
        self.bring_up(index, platform);
    }

    /// A watch event that concerns vbd `index`.
    fn handle_event(&mut self, index: usize, path: &str, platform: &mut P) {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        match vbd.handshake.phase() {
            // Not published yet: `params` may just have appeared.
            Phase::Created | Phase::Probed => self.bring_up(index, platform),
            _ => {
                let action = vbd.handshake.on_watch(platform, path);
                self.run_action(index, action, platform);
            }
        }
    }

    /// Checks the vbd's nodes, picks its device and publishes the disk and
    /// features with state InitWait. Waits quietly while `params` or `mode`
    /// is missing (the toolstack writes them with the rest in one
    /// transaction); retries at the next poll after a xenstore failure.
    fn bring_up(&mut self, index: usize, platform: &mut P) {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        vbd.retry_start = false;
        let (frontend_id, devid) = (vbd.frontend_id(), vbd.devid());
        if vbd.handshake.phase() == Phase::Created {
            match vbd.handshake.probe(platform) {
                Ok(()) => info!("vbd {frontend_id}/{devid}: new"),
                Err(error) => {
                    match vbd.handshake.phase() {
                        Phase::Created => {
                            warn!("vbd {frontend_id}/{devid}: probing failed: {error}; will retry");
                            vbd.retry_start = true;
                        }
                        // Gone, or not online: nothing to serve.
                        Phase::Removed => self.vbds[index] = None,
                        // Refused; the helper has reported why. Kept so that
                        // its removal is noticed.
                        _ => warn!("vbd {frontend_id}/{devid}: refused: {error}"),
                    }
                    return;
                }
            }
        }
        if vbd.handshake.phase() != Phase::Probed {
            return;
        }
        let base = String::from(vbd.handshake.backend_path());
        let read = |platform: &mut P, key: &str| read_optional(platform, &format!("{base}/{key}"));
        let (params, mode) = match (read(platform, "params"), read(platform, "mode")) {
            (Ok(Some(params)), Ok(Some(mode))) => (params, mode),
            (Err(error), _) | (_, Err(error)) => {
                warn!("vbd {frontend_id}/{devid}: reading params or mode failed: {error:?}; will retry");
                vbd.retry_start = true;
                return;
            }
            _ => return,
        };
        let Some(disk) = self.disks.iter().position(|disk| disk.name == params) else {
            let reason = format!("no device named {params}");
            warn!("vbd {frontend_id}/{devid}: refused: {reason}");
            let action = vbd.handshake.fail(platform, &reason);
            return self.run_action(index, action, platform);
        };
        let writable = match mode.as_str() {
            "w" | "w!" => true,
            "r" => false,
            other => {
                warn!("vbd {frontend_id}/{devid}: mode {other:?} is not r or w; serving read-only");
                false
            }
        };
        let cdrom = matches!(read(platform, "device-type"), Ok(Some(kind)) if kind == "cdrom");
        let removable = matches!(read(platform, "removable"), Ok(Some(flag)) if flag == "1");
        let discard_enabled =
            !matches!(read(platform, "discard-enable"), Ok(Some(flag)) if flag == "0");
        let device = self.disks[disk].device.info();
        let read_only = !writable || device.read_only || cdrom;
        let discard = device.discard.filter(|_| discard_enabled && !read_only);
        let limits = Limits {
            sectors: device.sectors,
            read_only,
            flush: device.flush && !read_only,
            discard: discard.is_some(),
            secure_discard: discard.is_some_and(|discard| discard.secure),
            max_indirect_segments: self.config.max_indirect_segments,
        };
        let mut info = 0;
        if read_only {
            info |= VDISK_READONLY;
        }
        if cdrom {
            info |= VDISK_CDROM;
        }
        if removable || device.removable {
            info |= VDISK_REMOVABLE;
        }
        let flag = |on: bool| if on { "1" } else { "0" };
        let mut nodes: Vec<(&str, String)> = alloc::vec![
            ("sectors", device.sectors.to_string()),
            ("info", info.to_string()),
            ("sector-size", SECTOR_SIZE.to_string()),
            (
                "physical-sector-size",
                device
                    .physical_sector_size
                    .max(SECTOR_SIZE as u32)
                    .to_string()
            ),
            ("feature-flush-cache", flag(limits.flush).to_string()),
            ("feature-barrier", flag(limits.flush).to_string()),
            ("feature-discard", flag(limits.discard).to_string()),
            (
                "feature-persistent",
                flag(self.config.persistent_grants).to_string()
            ),
        ];
        if let Some(discard) = discard {
            nodes.push(("discard-granularity", discard.granularity.to_string()));
            nodes.push(("discard-alignment", discard.alignment.to_string()));
            nodes.push(("discard-secure", flag(discard.secure).to_string()));
        }
        if self.config.max_indirect_segments > 0 {
            nodes.push((
                "feature-max-indirect-segments",
                self.config.max_indirect_segments.to_string(),
            ));
        }
        if self.config.max_queues > 1 {
            nodes.push(("multi-queue-max-queues", self.config.max_queues.to_string()));
        }
        if self.config.max_ring_page_order > 0 {
            nodes.push((
                "max-ring-page-order",
                self.config.max_ring_page_order.to_string(),
            ));
        }
        let features: Vec<(&str, &str)> = nodes
            .iter()
            .map(|(key, value)| (*key, value.as_str()))
            .collect();
        let token = format!("{VBD_WATCH_TOKEN_PREFIX}{frontend_id}-{devid}");
        if let Err(error) = vbd.handshake.start(platform, &features, &token) {
            match vbd.handshake.phase() {
                Phase::Probed => {
                    warn!("vbd {frontend_id}/{devid}: publishing the disk failed: {error}; will retry");
                    vbd.retry_start = true;
                    return;
                }
                Phase::Removed => {
                    self.vbds[index] = None;
                    return;
                }
                // Published; only a watch is missing, and the backend
                // directory's own watch still brings its events.
                _ => warn!("vbd {frontend_id}/{devid}: {error}"),
            }
        }
        info!(
            "vbd {frontend_id}/{devid}: serving {params} ({} sectors{})",
            device.sectors,
            if read_only { ", read-only" } else { "" }
        );
        let tag_base = ((index as u64) << 24) | ((vbd.id & 0xff_ffff) << 40);
        vbd.context = Some(DiskContext {
            frontend: frontend_id,
            devid,
            limits,
            tag_base,
            requests_per_poll: self.config.requests_per_poll,
            max_bytes_in_flight_per_ring: self.config.max_bytes_in_flight_per_ring,
        });
        vbd.disk = Some(disk);
    }

    /// Does what the handshake asks, and reports back, until it asks for
    /// nothing more; at most [`MAX_ACTIONS_PER_EVENT`] steps, the rest is
    /// left for the next poll.
    fn run_action(&mut self, index: usize, mut action: Action, platform: &mut P) {
        for _ in 0..MAX_ACTIONS_PER_EVENT {
            action = match action {
                Action::None => return,
                Action::Connect => self.connect(index, platform),
                Action::Disconnect => {
                    self.teardown(index, platform);
                    let Some(vbd) = self.vbds[index].as_mut() else {
                        return;
                    };
                    if vbd.device_in_flight > 0 {
                        // Reported from `finish_draining`.
                        vbd.disconnect_when_drained = true;
                        return;
                    }
                    vbd.handshake.disconnected(platform)
                }
                Action::Remove => {
                    self.teardown(index, platform);
                    if let Some(vbd) = self.vbds[index].as_mut() {
                        vbd.remove_when_drained = true;
                    }
                    return self.finish_draining(index, platform);
                }
            };
        }
        if let Some(vbd) = self.vbds[index].as_mut() {
            vbd.pending = Some(action);
        }
    }

    /// Reads the frontend's transport nodes, maps the rings and binds the
    /// event channels; tells the handshake how it went.
    fn connect(&mut self, index: usize, platform: &mut P) -> Action {
        let Some(vbd) = self.vbds[index].as_ref() else {
            return Action::None;
        };
        let (frontend_id, devid) = (vbd.frontend_id(), vbd.devid());
        let frontend = String::from(vbd.handshake.frontend_path());
        let result = self.connect_rings(frontend_id, &frontend, platform);
        let Some(vbd) = self.vbds[index].as_mut() else {
            return Action::None;
        };
        match result {
            Ok(connection) => {
                info!(
                    "vbd {frontend_id}/{devid}: connected, {} queue(s) of {} entries, {}{}",
                    connection.rings().len(),
                    connection.rings()[0].size(),
                    connection.abi().protocol_name(),
                    if connection.persistent_enabled() {
                        ", persistent grants"
                    } else {
                        ""
                    },
                );
                vbd.connection = Some(connection);
                vbd.handshake.connected(platform)
            }
            Err(error) => {
                warn!("vbd {frontend_id}/{devid}: cannot connect: {error}");
                vbd.handshake
                    .fail(platform, &format!("cannot connect: {error}"))
            }
        }
    }

    fn connect_rings(
        &self,
        frontend_id: DomId,
        frontend: &str,
        platform: &mut P,
    ) -> Result<Connection<P::Mapping>, ConnectError> {
        let read = |platform: &mut P, node: &str| {
            read_optional(platform, node).map_err(ConnectError::Xenstore)
        };
        let require = |platform: &mut P, node: String| match read(platform, &node)? {
            Some(value) => Ok((node, value)),
            None => Err(ConnectError::Missing(node)),
        };
        let invalid = |node: &str| {
            let node = String::from(node);
            move |error| ConnectError::Invalid(node, error)
        };

        // No protocol node: a 32-bit x86 guest (Linux's blkback assumes the
        // same on x86, and GNU Mach writes none).
        let node = format!("{frontend}/protocol");
        let abi = match read(platform, &node)? {
            None => Abi::X86_32,
            Some(protocol) => {
                match value::parse_protocol(Some(&protocol)).map_err(invalid(&node))? {
                    value::Protocol::X86_32 => Abi::X86_32,
                    _ => Abi::X86_64,
                }
            }
        };
        let node = format!("{frontend}/feature-persistent");
        let persistent = match read(platform, &node)? {
            None => false,
            Some(flag) => value::parse_bool(&flag).map_err(invalid(&node))?,
        } && self.config.persistent_grants;
        let node = format!("{frontend}/multi-queue-num-queues");
        let queues = match read(platform, &node)? {
            None => 1,
            Some(count) => value::parse_u32(&count).map_err(invalid(&node))?,
        };
        if queues == 0 || queues > self.config.max_queues {
            return Err(ConnectError::QueueCount(queues));
        }
        let node = format!("{frontend}/ring-page-order");
        let order = match read(platform, &node)? {
            None => 0,
            Some(order) => value::parse_ring_page_order(&order, self.config.max_ring_page_order)
                .map_err(invalid(&node))?,
        };

        let mut rings: Vec<Ring<P::Mapping>> = Vec::new();
        let result = (|| {
            for queue in 0..queues {
                let base = if queues == 1 {
                    String::from(frontend)
                } else {
                    format!("{frontend}/queue-{queue}")
                };
                let mut grefs: Vec<GrantRef> = Vec::new();
                if order == 0 {
                    let (node, value) = require(platform, format!("{base}/ring-ref"))?;
                    grefs.push(value::parse_grant_ref(&value).map_err(invalid(&node))?);
                } else {
                    for page in 0..1u32 << order {
                        let (node, value) = require(platform, format!("{base}/ring-ref{page}"))?;
                        grefs.push(value::parse_grant_ref(&value).map_err(invalid(&node))?);
                    }
                }
                let (node, value) = require(platform, format!("{base}/event-channel"))?;
                let remote_port = value::parse_evtchn_port(&value).map_err(invalid(&node))?;
                let mapping = platform
                    .map(frontend_id, &grefs, true)
                    .map_err(ConnectError::Map)?;
                let port = match platform.bind_interdomain(frontend_id, remote_port) {
                    Ok(port) => port,
                    Err(error) => {
                        platform.unmap(mapping);
                        return Err(ConnectError::Bind(error));
                    }
                };
                match Ring::new(mapping, abi, port) {
                    Ok(ring) => rings.push(ring),
                    Err((error, mapping)) => {
                        platform.close(port);
                        platform.unmap(mapping);
                        return Err(ConnectError::Ring(error));
                    }
                }
            }
            Ok(())
        })();
        let persistent_table =
            persistent.then(|| PersistentGrants::new(self.config.max_persistent_grants));
        let connection = Connection::new(rings, abi, persistent_table);
        match result {
            Ok(()) => Ok(connection),
            Err(error) => {
                connection.teardown(platform);
                Err(error)
            }
        }
    }

    /// Unmaps the rings and persistent grants and closes the event channels.
    /// Requests still in the device complete into nothing.
    fn teardown(&mut self, index: usize, platform: &mut P) {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        if let Some(connection) = vbd.connection.take() {
            info!("vbd {}/{}: disconnected", vbd.frontend_id(), vbd.devid());
            connection.teardown(platform);
        }
    }

    /// Completes a pending disconnect or removal once the device holds
    /// nothing of the vbd's any more.
    fn finish_draining(&mut self, index: usize, platform: &mut P) {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        if vbd.device_in_flight != 0 {
            return;
        }
        if vbd.remove_when_drained {
            info!("vbd {}/{}: removed", vbd.frontend_id(), vbd.devid());
            self.vbds[index] = None;
            return;
        }
        if core::mem::take(&mut vbd.disconnect_when_drained) {
            let action = vbd.handshake.disconnected(platform);
            self.run_action(index, action, platform);
        }
    }

    /// Takes up xenstore work that a failure or the action bound left
    /// undone.
    fn retry(&mut self, index: usize, platform: &mut P) {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        if !vbd.live() || vbd.disconnect_when_drained {
            return;
        }
        if vbd.retry_start {
            self.bring_up(index, platform);
        } else if let Some(action) = vbd.pending.take() {
            self.run_action(index, action, platform);
        } else if vbd.handshake.needs_refresh() {
            let action = vbd.handshake.refresh(platform);
            self.run_action(index, action, platform);
        }
    }
}
