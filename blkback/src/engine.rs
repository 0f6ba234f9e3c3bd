//! The control plane: finding virtual disks in xenstore, the xenbus state
//! machine of each, feature negotiation, connecting rings, and dispatching
//! events and completions to the data path.
//!
//! Each virtual disk (vbd) is a backend directory
//! `/local/domain/<own domid>/backend/vbd/<frontend domid>/<devid>` written
//! by the toolstack. Its `params` node names one of the devices registered
//! with [`Blkback::add_device`] (for example `ram0`). Per vbd:
//!
//! 1. probe: read `frontend-id`, `frontend`, `params`, `mode`,
//!    `device-type`, `removable`, `discard-enable`; publish features and
//!    disk properties; `hotplug-status = connected`; state InitWait.
//!    (GNU Mach's blkfront reads `sectors`, `info`, `sector-size`, `mode` and
//!    `params` without waiting for Connected, so all are written here.)
//! 2. frontend Initialised or Connected: read its ring and event channel
//!    nodes, map and bind; state Connected.
//! 3. frontend Closing: disconnect; state Closing. Frontend Closed (or gone),
//!    or `online = 0`: disconnect; state Closed once the device has finished
//!    the disk's requests. A frontend that starts again (Initialising) while
//!    `online = 1` finds the backend back in InitWait.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use log::{info, warn};
use xen_ring::RingError;
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
/// Prefix of the watch tokens of frontend directories.
const FRONTEND_WATCH_TOKEN_PREFIX: &str = "blkback-frontend-";
/// Most vbds the tag layout can address.
const MAX_VBDS: usize = 1 << 16;

/// Why a device could not be registered.
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
    frontend_id: DomId,
    devid: u32,
    backend_path: String,
    /// Set and watched once probed.
    frontend_path: Option<String>,
    watch_token: String,
    disk: Option<usize>,
    context: Option<DiskContext>,
    /// `sectors`, `info`, ... published at probe.
    state: XenbusState,
    /// Probing refused the vbd for good (unknown device, bad nodes).
    failed: bool,
    online: bool,
    connection: Option<Connection<M>>,
    device_in_flight: usize,
    close_when_drained: bool,
    remove_when_drained: bool,
    /// A xenstore write failed: update again at the next poll.
    refresh: bool,
}

/// The blkif backend engine, generic over the platform `P` and the device
/// type `D` (use an enum or `Box<dyn BlockDevice>` for mixed devices).
pub struct Blkback<P: Platform, D: BlockDevice> {
    config: Config,
    backend_root: String,
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
            backend_root: format!("/local/domain/{}/backend/vbd", config.domid),
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
        &self.backend_root
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
        platform.watch(&self.backend_root, BACKEND_WATCH_TOKEN)?;
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
                    frontend_id: vbd.frontend_id,
                    devid: vbd.devid,
                    state: vbd.state,
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
    /// and removed vbds) and watched frontend directories. The path decides;
    /// the token is only checked to come from this engine.
    pub fn on_watch(&mut self, platform: &mut P, path: &str, token: &str) {
        if token != BACKEND_WATCH_TOKEN && !token.starts_with(FRONTEND_WATCH_TOKEN_PREFIX) {
            return;
        }
        let absolute;
        let path = if path.starts_with('/') {
            path
        } else {
            absolute = format!("/local/domain/{}/{path}", self.config.domid);
            &absolute
        };
        if let Some(rest) = path.strip_prefix(self.backend_root.as_str()) {
            let mut parts = rest.trim_start_matches('/').split('/');
            let frontend = parts.next().filter(|part| !part.is_empty());
            let devid = parts.next();
            match (frontend, devid) {
                (Some(frontend), Some(devid)) => {
                    let (Ok(frontend_id), Ok(devid)) =
                        (value::parse_domid(frontend), value::parse_u32(devid))
                    else {
                        return;
                    };
                    match self.find(frontend_id, devid) {
                        Some(index) => self.update(index, platform),
                        None => self.discover(frontend_id, devid, platform),
                    }
                }
                _ => self.scan(platform),
            }
            return;
        }
        let matching: Vec<usize> = self
            .vbds
            .iter()
            .enumerate()
            .filter_map(|(index, vbd)| {
                let frontend = vbd.as_ref()?.frontend_path.as_deref()?;
                let inside = path
                    .strip_prefix(frontend)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
                inside.then_some(index)
            })
            .collect();
        for index in matching {
            self.update(index, platform);
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
    /// closing vbds whose requests have all completed, and retries the
    /// xenstore updates of vbds whose last write failed.
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
            self.finish_closing(index, platform);
            let refresh = self.vbds[index]
                .as_mut()
                .is_some_and(|vbd| core::mem::take(&mut vbd.refresh));
            if refresh {
                self.update(index, platform);
            }
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
                vbd.frontend_id, vbd.devid
            );
            self.disconnect(index, platform);
            self.switch_state(index, platform, XenbusState::Closing);
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

    fn find(&self, frontend_id: DomId, devid: u32) -> Option<usize> {
        self.vbds.iter().position(|vbd| {
            vbd.as_ref()
                .is_some_and(|vbd| vbd.frontend_id == frontend_id && vbd.devid == devid)
        })
    }

    /// Lists the backend directory: takes on new vbds, drops removed ones.
    fn scan(&mut self, platform: &mut P) {
        let frontends = match platform.directory(TxId::NONE, &self.backend_root) {
            Ok(frontends) => frontends,
            Err(XsError::Enoent) => Vec::new(),
            Err(error) => {
                warn!("cannot list {}: {error:?}", self.backend_root);
                return;
            }
        };
        let mut present = Vec::new();
        for frontend in frontends {
            let Ok(frontend_id) = value::parse_domid(&frontend) else {
                warn!("ignoring {}/{frontend}: not a domain id", self.backend_root);
                continue;
            };
            let path = format!("{}/{frontend}", self.backend_root);
            let devids = match platform.directory(TxId::NONE, &path) {
                Ok(devids) => devids,
                Err(_) => continue,
            };
            for devid in devids {
                match value::parse_u32(&devid) {
                    Ok(devid) => present.push((frontend_id, devid)),
                    Err(error) => warn!("ignoring {path}/{devid}: {error}"),
                }
            }
        }
        for index in 0..self.vbds.len() {
            let gone = self.vbds[index].as_ref().is_some_and(|vbd| {
                !present.contains(&(vbd.frontend_id, vbd.devid)) && !vbd.remove_when_drained
            });
            if gone {
                self.remove(index, platform);
            }
        }
        for (frontend_id, devid) in present {
            match self.find(frontend_id, devid) {
                Some(index) => self.update(index, platform),
                None => self.discover(frontend_id, devid, platform),
            }
        }
    }

    fn discover(&mut self, frontend_id: DomId, devid: u32, platform: &mut P) {
        let backend_path = format!("{}/{frontend_id}/{devid}", self.backend_root);
        if platform.directory(TxId::NONE, &backend_path).is_err() {
            return;
        }
        let index = match self.vbds.iter().position(Option::is_none) {
            Some(index) => index,
            None if self.vbds.len() < MAX_VBDS => {
                self.vbds.push(None);
                self.vbds.len() - 1
            }
            None => {
                warn!("{backend_path}: too many virtual disks; ignored");
                return;
            }
        };
        let id = self.next_vbd_id;
        self.next_vbd_id += 1;
        info!("vbd {frontend_id}/{devid}: new");
        self.vbds[index] = Some(Vbd {
            id,
            frontend_id,
            devid,
            watch_token: format!("{FRONTEND_WATCH_TOKEN_PREFIX}{frontend_id}-{devid}"),
            backend_path,
            frontend_path: None,
            disk: None,
            context: None,
            state: XenbusState::Initialising,
            failed: false,
            online: true,
            connection: None,
            device_in_flight: 0,
            close_when_drained: false,
            remove_when_drained: false,
            refresh: false,
        });
        self.update(index, platform);
    }

    /// Re-reads what matters for vbd `index` and advances its state machine.
    fn update(&mut self, index: usize, platform: &mut P) {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        if vbd.remove_when_drained {
            return;
        }
        if let Err(XsError::Enoent) = platform.directory(TxId::NONE, &vbd.backend_path) {
            return self.remove(index, platform);
        }
        if vbd.failed {
            return;
        }
        vbd.online = match read_optional(platform, &format!("{}/online", vbd.backend_path)) {
            Ok(Some(online)) => value::parse_bool(&online).unwrap_or_else(|error| {
                warn!("{}/online: {error}; treated as offline", vbd.backend_path);
                false
            }),
            Ok(None) => true,
            Err(_) => vbd.online,
        };
        if vbd.context.is_none() && !self.probe(index, platform) {
            return;
        }
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        let Some(frontend_path) = vbd.frontend_path.clone() else {
            return;
        };
        let frontend_state = match read_optional(platform, &format!("{frontend_path}/state")) {
            Ok(Some(state)) => match XenbusState::parse(&state) {
                Some(state) => state,
                None => {
                    warn!("{frontend_path}/state: invalid value; ignored");
                    return;
                }
            },
            // The frontend's directory is gone: as good as Closed.
            Ok(None) => XenbusState::Closed,
            Err(_) => return,
        };
        self.drive(index, platform, frontend_state);
    }

    fn drive(&mut self, index: usize, platform: &mut P, frontend: XenbusState) {
        use XenbusState::*;
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        let online = vbd.online;
        let drained = vbd.device_in_flight == 0;
        let state = vbd.state;
        match frontend {
            Closing => {
                self.disconnect(index, platform);
                if !matches!(state, Closing | Closed) {
                    self.switch_state(index, platform, Closing);
                }
            }
            Closed | Unknown => {
                self.disconnect(index, platform);
                if state != Closed {
                    if let Some(vbd) = self.vbds[index].as_mut() {
                        vbd.close_when_drained = true;
                    }
                    self.finish_closing(index, platform);
                }
            }
            Initialised | Connected => {
                // Once Closed, the frontend was Closed too: Initialised or
                // Connected now means it started again (GNU Mach goes
                // straight to Connected).
                if state == Closed && online && drained {
                    info!("vbd {}/{}: frontend restarted", vbd.frontend_id, vbd.devid);
                    self.switch_state(index, platform, InitWait);
                    self.connect(index, platform);
                } else if state == InitWait && online {
                    self.connect(index, platform);
                } else if state == Connected && !online {
                    // The toolstack asks for the disk back: ask the frontend to close.
                    self.switch_state(index, platform, Closing);
                }
            }
            Initialising | InitWait | Reconfiguring | Reconfigured => {
                if state == Closed && online && drained {
                    info!("vbd {}/{}: frontend restarted", vbd.frontend_id, vbd.devid);
                    self.switch_state(index, platform, InitWait);
                }
            }
        }
    }

    /// Publishes the disk and features and enters InitWait. Returns false if
    /// the vbd is not ready yet or was refused.
    fn probe(&mut self, index: usize, platform: &mut P) -> bool {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return false;
        };
        let base = vbd.backend_path.clone();
        let read = |platform: &mut P, key: &str| read_optional(platform, &format!("{base}/{key}"));
        // The toolstack writes these in one transaction; until they all
        // exist there is nothing to do.
        let (Ok(Some(frontend_id)), Ok(Some(frontend)), Ok(Some(params)), Ok(Some(mode))) = (
            read(platform, "frontend-id"),
            read(platform, "frontend"),
            read(platform, "params"),
            read(platform, "mode"),
        ) else {
            return false;
        };
        let frontend_ok = match value::parse_domid(&frontend_id) {
            Ok(id) if id == vbd.frontend_id => {
                value::check_frontend_path(&frontend, vbd.frontend_id, "vbd", vbd.devid)
                    .map_err(|error| format!("frontend {frontend}: {error}"))
            }
            Ok(_) => Err(format!("frontend-id {frontend_id} does not match the path")),
            Err(error) => Err(format!("frontend-id: {error}")),
        };
        let disk = frontend_ok.and_then(|()| {
            self.disks
                .iter()
                .position(|disk| disk.name == params)
                .ok_or_else(|| format!("no device named {params}"))
        });
        let disk = match disk {
            Ok(disk) => disk,
            Err(reason) => {
                self.refuse(index, platform, &reason);
                return false;
            }
        };
        let writable = match mode.as_str() {
            "w" | "w!" => true,
            "r" => false,
            other => {
                warn!(
                    "vbd {}/{}: mode {other:?} is not r or w; serving read-only",
                    vbd.frontend_id, vbd.devid
                );
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
        nodes.push(("hotplug-status", "connected".to_string()));
        for (key, value) in &nodes {
            if let Err(error) = platform.write(TxId::NONE, &format!("{base}/{key}"), value) {
                warn!(
                    "vbd {}/{}: writing {key} failed: {error:?}; will retry",
                    vbd.frontend_id, vbd.devid
                );
                vbd.refresh = true;
                return false;
            }
        }
        if let Err(error) = platform.watch(&frontend, &vbd.watch_token) {
            warn!(
                "vbd {}/{}: watching {frontend} failed: {error:?}",
                vbd.frontend_id, vbd.devid
            );
            return false;
        }
        info!(
            "vbd {}/{}: serving {params} ({} sectors{})",
            vbd.frontend_id,
            vbd.devid,
            device.sectors,
            if read_only { ", read-only" } else { "" }
        );
        let tag_base = ((index as u64) << 24) | ((vbd.id & 0xff_ffff) << 40);
        vbd.context = Some(DiskContext {
            frontend: vbd.frontend_id,
            devid: vbd.devid,
            limits,
            tag_base,
            requests_per_poll: self.config.requests_per_poll,
            max_bytes_in_flight_per_ring: self.config.max_bytes_in_flight_per_ring,
        });
        vbd.frontend_path = Some(frontend);
        vbd.disk = Some(disk);
        self.switch_state(index, platform, XenbusState::InitWait);
        true
    }

    /// Gives up on a vbd the toolstack set up wrongly (unknown device, bad
    /// `frontend`): `hotplug-error` says why, and the state is Closed.
    fn refuse(&mut self, index: usize, platform: &mut P, reason: &str) {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        warn!("vbd {}/{}: refused: {reason}", vbd.frontend_id, vbd.devid);
        vbd.failed = true;
        let base = vbd.backend_path.clone();
        for (key, value) in [("hotplug-error", reason), ("hotplug-status", "error")] {
            if let Err(error) = platform.write(TxId::NONE, &format!("{base}/{key}"), value) {
                warn!("writing {base}/{key} failed: {error:?}");
            }
        }
        self.switch_state(index, platform, XenbusState::Closed);
    }

    /// Reads the frontend's transport nodes, maps the rings and binds the
    /// event channels; Connected on success, Closing with a logged reason
    /// otherwise.
    fn connect(&mut self, index: usize, platform: &mut P) {
        let Some(vbd) = self.vbds[index].as_ref() else {
            return;
        };
        let Some(frontend) = vbd.frontend_path.clone() else {
            return;
        };
        if vbd.connection.is_some() {
            // Connected before, but publishing the state failed.
            self.switch_state(index, platform, XenbusState::Connected);
            return;
        }
        let (frontend_id, devid) = (vbd.frontend_id, vbd.devid);
        match self.connect_rings(frontend_id, &frontend, platform) {
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
                if let Some(vbd) = self.vbds[index].as_mut() {
                    vbd.connection = Some(connection);
                }
                self.switch_state(index, platform, XenbusState::Connected);
            }
            Err(error) => {
                warn!("vbd {frontend_id}/{devid}: cannot connect: {error}");
                self.switch_state(index, platform, XenbusState::Closing);
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

    fn disconnect(&mut self, index: usize, platform: &mut P) {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        if let Some(connection) = vbd.connection.take() {
            info!("vbd {}/{}: disconnected", vbd.frontend_id, vbd.devid);
            connection.teardown(platform);
        }
    }

    fn switch_state(&mut self, index: usize, platform: &mut P, state: XenbusState) {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        if vbd.state == state {
            return;
        }
        let path = format!("{}/state", vbd.backend_path);
        match platform.write(TxId::NONE, &path, state.as_str()) {
            Ok(()) => vbd.state = state,
            Err(error) => {
                // Keep the old state, so that the next update does the
                // transition again.
                warn!("writing {path} failed: {error:?}; will retry");
                vbd.refresh = true;
            }
        }
    }

    /// Completes a pending close or removal once the device holds nothing
    /// of the vbd's any more.
    fn finish_closing(&mut self, index: usize, platform: &mut P) {
        let Some(vbd) = self.vbds[index].as_mut() else {
            return;
        };
        if vbd.device_in_flight != 0 {
            return;
        }
        if vbd.remove_when_drained {
            if vbd.frontend_path.is_some() {
                let _ = platform.unwatch(
                    vbd.frontend_path.as_deref().unwrap_or_default(),
                    &vbd.watch_token,
                );
            }
            info!("vbd {}/{}: removed", vbd.frontend_id, vbd.devid);
            self.vbds[index] = None;
            return;
        }
        if core::mem::take(&mut vbd.close_when_drained) {
            self.switch_state(index, platform, XenbusState::Closed);
            // A frontend may already be starting again.
            self.update(index, platform);
        }
    }

    /// The backend directory is gone: release everything.
    fn remove(&mut self, index: usize, platform: &mut P) {
        self.disconnect(index, platform);
        if let Some(vbd) = self.vbds[index].as_mut() {
            vbd.remove_when_drained = true;
        }
        self.finish_closing(index, platform);
    }
}
