//! The backend half of the xenbus handshake, for one device.
//!
//! Every split driver goes through the same dance in xenstore
//! (`xen/io/xenbus.h`, and `docs/misc/xenstore-paths.pandoc` for the nodes):
//!
//! 1. The toolstack (libxl) writes the backend directory
//!    `backend/<type>/<frontend-id>/<devid>` in the driver domain's home with
//!    `frontend`, `frontend-id`, `online=1`, `state=1` and type-specific keys
//!    (`params`, `mode`, `mac`, ...), and the frontend's
//!    `device/<type>/<devid>` directory.
//! 2. The backend checks `frontend`/`frontend-id`, publishes its features,
//!    reports `hotplug-status=connected` and moves to `InitWait`.
//! 3. The frontend publishes its rings and event channels and moves to
//!    `Initialised` (or straight to `Connected`); the backend maps the rings
//!    and moves to `Connected`.
//! 4. On `block-detach`/`network-detach` the toolstack writes `online=0`;
//!    on guest shutdown the frontend moves to `Closing`/`Closed`. The backend
//!    tears its datapath down and moves to `Closing`, then `Closed`.
//! 5. A frontend that comes back to `Initialising` after `Closed` (a guest
//!    reboot, a module reload) finds the backend in `InitWait` again.
//!
//! [`BackendDevice`] does all of the xenstore side of this for one device
//! and leaves the engine (blkback, netback) only its own work: reading the
//! rings when told [`Action::Connect`] and tearing them down when told
//! [`Action::Disconnect`]. It does no I/O of its own beyond the
//! [`Xenstore`] calls it is handed, and each call does a bounded amount of
//! work (a few reads, at most [`MAX_TRANSACTION_ATTEMPTS`] transactions).
//!
//! Everything read from the frontend's directory is hostile, and the
//! backend directory is only as trusted as the toolstack: values go through
//! [`crate::value`] and a refusal becomes a logged reason, an `error` node
//! and `Closed`, never a panic.
//!
//! # Driving it
//!
//! The engine watches the backend directory ([`BackendDirectory::watch`])
//! and routes every watch event:
//!
//! * a path under the directory names a device ([`BackendDirectory::recognise`]);
//!   an unknown device is created, probed and started, a known one gets
//!   [`BackendDevice::on_watch`];
//! * any other path (the frontend's `state`, which each device watches with
//!   its own token) goes to the device whose [`BackendDevice::is_relevant`]
//!   accepts it; giving each device a token of its own (its backend path is
//!   a good one) makes that a lookup.
//!
//! Every call that can move the handshake returns an [`Action`]; the engine
//! does the work asked and reports back, which returns the next action,
//! until [`Action::None`] or [`Action::Remove`]. When xenstore fails under
//! it, the helper publishes nothing it cannot stand behind and sets
//! [`BackendDevice::needs_refresh`]; the engine then calls
//! [`BackendDevice::refresh`] on its next timer tick.
//!
//! # Example
//!
//! ```
//! use xenbus::backend::{Action, BackendDevice, BackendDirectory, DeviceAddress};
//! use xenbus::platform::Xenstore;
//! use xenbus::value;
//!
//! /// What the engine keeps once connected.
//! struct Rings {
//!     ring_ref: u32,
//!     event_channel: u32,
//! }
//!
//! /// One disk the engine serves.
//! struct Disk {
//!     handshake: BackendDevice,
//!     rings: Option<Rings>,
//! }
//!
//! /// A device appeared under `backend/vbd`: check it, open its backing
//! /// store, advertise features, wait for the frontend.
//! fn attach<X: Xenstore>(
//!     xs: &mut X,
//!     directory: &BackendDirectory,
//!     address: DeviceAddress,
//! ) -> Option<Disk> {
//!     let mut handshake = BackendDevice::new(directory, address);
//!     // Checks `online`, `frontend-id` and `frontend`; a refusal has
//!     // already been reported in xenstore and logged.
//!     handshake.probe(xs).ok()?;
//!     let params = handshake.read_backend(xs, "params", |v| {
//!         value::parse_text(v, 256).map(String::from)
//!     });
//!     let Ok(_params) = params else {
//!         let _ = handshake.fail(xs, "params: missing or malformed");
//!         return None;
//!     };
//!     // Backing store open: publish features, `hotplug-status=connected`
//!     // and `state=InitWait` in one transaction, then watch both ends.
//!     let token = String::from(handshake.backend_path());
//!     handshake
//!         .start(xs, &[("feature-flush-cache", "1"), ("sectors", "32768")], &token)
//!         .ok()?;
//!     Some(Disk { handshake, rings: None })
//! }
//!
//! /// A watch event for `disk`. Returns `false` once the disk is finished.
//! fn on_watch<X: Xenstore>(xs: &mut X, disk: &mut Disk, path: &str) -> bool {
//!     let mut action = disk.handshake.on_watch(xs, path);
//!     loop {
//!         action = match action {
//!             Action::None => return true,
//!             Action::Remove => return false,
//!             Action::Connect => {
//!                 let device = &disk.handshake;
//!                 let ring_ref = device.read_frontend(xs, "ring-ref", value::parse_grant_ref);
//!                 let port = device.read_frontend(xs, "event-channel", value::parse_evtchn_port);
//!                 match (ring_ref, port) {
//!                     (Ok(ring_ref), Ok(event_channel)) => {
//!                         // Map the ring, bind the event channel ...
//!                         disk.rings = Some(Rings { ring_ref, event_channel });
//!                         disk.handshake.connected(xs)
//!                     }
//!                     (Err(error), _) | (_, Err(error)) => {
//!                         disk.handshake.fail(xs, &format!("{error}"))
//!                     }
//!                 }
//!             }
//!             Action::Disconnect => {
//!                 // Finish or fail in-flight I/O, unmap, unbind ...
//!                 disk.rings = None;
//!                 disk.handshake.disconnected(xs)
//!             }
//!         }
//!     }
//! }
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::platform::{DomId, TxId, Xenstore, XsError};
use crate::state::XenbusState;
use crate::value::{self, ValueError};

pub mod hold;
pub mod retire;

/// How often a transaction is retried when xenstored answers `EAGAIN`.
pub const MAX_TRANSACTION_ATTEMPTS: u32 = 8;

/// The longest message written to an `error` or `hotplug-error` node.
pub const MAX_ERROR_MESSAGE_LEN: usize = 256;

/// The most devices [`BackendDirectory::list`] returns, whatever it is asked.
pub const MAX_LISTED_DEVICES: usize = 1024;

/// The longest key name [`BackendDevice::start`] accepts.
pub const MAX_KEY_LEN: usize = 64;

/// Why a handshake step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// A xenstore request failed.
    Xenstore(XsError),
    /// A node the handshake needs is missing or refused.
    Field(FieldError),
    /// The transaction still conflicted after `MAX_TRANSACTION_ATTEMPTS` attempts.
    TransactionConflicts,
    /// The device's backend directory is gone.
    Gone,
    /// The device is not `online=1`: the toolstack is detaching it (or has
    /// not finished attaching it), so it is left alone.
    Offline,
    /// The operation is not allowed in the device's current phase.
    WrongPhase,
    /// A key to publish is empty, too long, or not made of `[A-Za-z0-9_-]`.
    BadKey,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Xenstore(error) => write!(f, "xenstore request failed: {error:?}"),
            Self::Field(error) => write!(f, "{error}"),
            Self::TransactionConflicts => f.write_str("the transaction kept conflicting"),
            Self::Gone => f.write_str("the backend directory is gone"),
            Self::Offline => f.write_str("the device is not online"),
            Self::WrongPhase => f.write_str("not allowed in the device's current phase"),
            Self::BadKey => f.write_str("a key to publish is malformed"),
        }
    }
}

impl From<XsError> for HandshakeError {
    fn from(error: XsError) -> Self {
        Self::Xenstore(error)
    }
}

/// Why one node could not be used, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The key, relative to the device directory it was read from.
    pub key: String,
    /// What was wrong with it.
    pub reason: FieldReason,
}

/// What was wrong with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldReason {
    /// The node does not exist (or is not readable by this domain).
    Missing,
    /// The node could not be read.
    Xenstore(XsError),
    /// The node's value was refused.
    Invalid(ValueError),
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            FieldReason::Missing => write!(f, "{}: missing", self.key),
            FieldReason::Xenstore(error) => write!(f, "{}: read failed: {error:?}", self.key),
            FieldReason::Invalid(error) => write!(f, "{}: {error}", self.key),
        }
    }
}

/// Runs `body` in a xenstore transaction, and runs it again (at most
/// [`MAX_TRANSACTION_ATTEMPTS`] times) while the commit, or a request in it,
/// fails with `EAGAIN`. Any other error aborts the transaction and is
/// returned. `body` must therefore be safe to repeat.
pub fn with_transaction<X, T>(
    xs: &mut X,
    mut body: impl FnMut(&mut X, TxId) -> Result<T, HandshakeError>,
) -> Result<T, HandshakeError>
where
    X: Xenstore + ?Sized,
{
    for _ in 0..MAX_TRANSACTION_ATTEMPTS {
        let tx = xs.transaction_start()?;
        match body(xs, tx) {
            Ok(result) => match xs.transaction_end(tx, true) {
                Ok(()) => return Ok(result),
                Err(XsError::Eagain) => continue,
                Err(error) => return Err(HandshakeError::Xenstore(error)),
            },
            Err(error) => {
                if let Err(abort) = xs.transaction_end(tx, false) {
                    log::warn!("xenstore transaction abort failed: {abort:?}");
                }
                if error != HandshakeError::Xenstore(XsError::Eagain) {
                    return Err(error);
                }
            }
        }
    }
    Err(HandshakeError::TransactionConflicts)
}

/// One device under a backend directory: `backend/<type>/<frontend_id>/<devid>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceAddress {
    /// The domain of the frontend.
    pub frontend_id: DomId,
    /// The device id (for vbd the `virtual-device` number, for vif the handle).
    pub devid: u32,
}

/// Why a path under a backend directory was not recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path is not under this backend directory.
    Foreign,
    /// The frontend domain component is not a valid domain id.
    FrontendId(ValueError),
    /// The device id component is not a canonical decimal.
    Devid(ValueError),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Foreign => f.write_str("the path is not under this backend directory"),
            Self::FrontendId(error) => write!(f, "bad frontend domain component: {error}"),
            Self::Devid(error) => write!(f, "bad device id component: {error}"),
        }
    }
}

/// A backend directory of one device type, such as `backend/vbd`, and the
/// rules to recognise its devices in watch events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendDirectory {
    root: String,
    device_type: &'static str,
}

impl BackendDirectory {
    /// The directory `backend/<device_type>`, relative to this domain's home
    /// (`/local/domain/<own domid>`), which is how a driver domain that does
    /// not know its own domid names it.
    pub fn new(device_type: &'static str) -> Self {
        Self {
            root: format!("backend/{device_type}"),
            device_type,
        }
    }

    /// The directory `/local/domain/<own_domid>/backend/<device_type>`.
    pub fn absolute(own_domid: DomId, device_type: &'static str) -> Self {
        Self {
            root: format!("/local/domain/{own_domid}/backend/{device_type}"),
            device_type,
        }
    }

    /// The directory's path: the path to watch for new devices.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Watches the directory, so that devices the toolstack adds (and
    /// every change below them) arrive as watch events with `token`.
    pub fn watch<X: Xenstore + ?Sized>(&self, xs: &mut X, token: &str) -> Result<(), XsError> {
        xs.watch(&self.root, token)
    }

    /// The device type (`vbd`, `vif`).
    pub fn device_type(&self) -> &'static str {
        self.device_type
    }

    /// The path of one device's backend directory.
    pub fn device_path(&self, address: DeviceAddress) -> String {
        format!("{}/{}/{}", self.root, address.frontend_id, address.devid)
    }

    /// Recognises the device a watch event under this directory is about.
    /// `Ok(None)` means the path is the directory itself or a frontend
    /// domain's sub-directory, which names no single device.
    pub fn recognise(&self, path: &str) -> Result<Option<DeviceAddress>, PathError> {
        let rest = path
            .strip_prefix(self.root.as_str())
            .ok_or(PathError::Foreign)?;
        if rest.is_empty() {
            return Ok(None);
        }
        let rest = rest.strip_prefix('/').ok_or(PathError::Foreign)?;
        let mut parts = rest.splitn(3, '/');
        let frontend_id = parts.next().unwrap_or("");
        let frontend_id = value::parse_domid(frontend_id).map_err(PathError::FrontendId)?;
        let Some(devid) = parts.next() else {
            return Ok(None);
        };
        let devid = value::parse_u32(devid).map_err(PathError::Devid)?;
        Ok(Some(DeviceAddress { frontend_id, devid }))
    }

    /// Lists the devices currently in this directory, at most `max_devices`
    /// (and never more than [`MAX_LISTED_DEVICES`]). Names that are not
    /// canonical domain or device ids are skipped and logged.
    pub fn list<X: Xenstore + ?Sized>(
        &self,
        xs: &mut X,
        max_devices: usize,
    ) -> Result<Vec<DeviceAddress>, XsError> {
        let limit = max_devices.min(MAX_LISTED_DEVICES);
        let mut devices = Vec::new();
        let frontends = match xs.directory(TxId::NONE, &self.root) {
            Ok(names) => names,
            Err(XsError::Enoent) => return Ok(devices),
            Err(error) => return Err(error),
        };
        for frontend in &frontends {
            let frontend_id = match value::parse_domid(frontend) {
                Ok(domid) => domid,
                Err(error) => {
                    log::warn!("{}: skipping entry: {error}", self.root);
                    continue;
                }
            };
            let path = format!("{}/{frontend_id}", self.root);
            let devids = match xs.directory(TxId::NONE, &path) {
                Ok(names) => names,
                // Removed between the two listings.
                Err(XsError::Enoent) => continue,
                Err(error) => return Err(error),
            };
            for devid in &devids {
                let devid = match value::parse_u32(devid) {
                    Ok(devid) => devid,
                    Err(error) => {
                        log::warn!("{path}: skipping entry: {error}");
                        continue;
                    }
                };
                if devices.len() == limit {
                    log::warn!(
                        "{}: more than {limit} devices, ignoring the rest",
                        self.root
                    );
                    return Ok(devices);
                }
                devices.push(DeviceAddress { frontend_id, devid });
            }
        }
        Ok(devices)
    }
}

/// What the engine must do next for a device.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do until the next watch event.
    None,
    /// The frontend has published its rings: read them with
    /// [`BackendDevice::read_frontend`], set up the datapath, then call
    /// [`BackendDevice::connected`], or [`BackendDevice::fail`] if that
    /// was impossible (after undoing any partial setup).
    Connect,
    /// Tear the datapath down (finish or fail in-flight requests, unmap the
    /// rings, close the event channels), then call
    /// [`BackendDevice::disconnected`].
    Disconnect,
    /// The device is finished and its watches are removed: drop it. The
    /// engine holds no datapath for it when this is returned.
    Remove,
}

/// Where a device is in its life, as the helper sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created; [`BackendDevice::probe`] has not succeeded yet.
    Created,
    /// `frontend` and `frontend-id` are checked; [`BackendDevice::start`] is next.
    Probed,
    /// No datapath; the backend has published the given state.
    Idle(XenbusState),
    /// [`Action::Connect`] was returned; waiting for `connected` or `fail`.
    Connecting,
    /// The datapath is up and `Connected` is published.
    Connected,
    /// [`Action::Disconnect`] was returned; waiting for `disconnected`.
    Disconnecting,
    /// Failed before it ever started; waits only for removal.
    Failed,
    /// Finished; every relevant event returns [`Action::Remove`].
    Removed,
}

/// What the frontend's `state` node says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendView {
    /// A valid state.
    State(XenbusState),
    /// The node is missing or unreadable: the frontend is gone.
    Gone,
    /// The node holds something that is not a state.
    Garbage,
}

/// What the backend directory says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendView {
    /// `online` is `1`.
    Online,
    /// `online` is `0`, missing, or not a boolean: the toolstack wants the
    /// device detached.
    Offline,
    /// The backend directory itself is gone.
    Gone,
}

/// What the helper does after looking at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Nothing,
    Connect,
    Disconnect,
    Publish(XenbusState),
    PublishThenRemove(XenbusState),
    Remove,
}

/// Whether a frontend in this state may still be using the rings.
fn frontend_active(frontend: FrontendView) -> bool {
    matches!(
        frontend,
        FrontendView::State(
            XenbusState::Initialised
                | XenbusState::Connected
                | XenbusState::Closing
                | XenbusState::Reconfiguring
                | XenbusState::Reconfigured
        )
    )
}

/// The whole handshake policy, without I/O.
fn decide(phase: Phase, frontend: FrontendView, backend: BackendView) -> Step {
    use XenbusState as S;
    match phase {
        Phase::Created | Phase::Probed | Phase::Disconnecting | Phase::Removed => Step::Nothing,
        Phase::Failed => match backend {
            BackendView::Online => Step::Nothing,
            BackendView::Offline | BackendView::Gone => Step::Remove,
        },
        Phase::Connecting | Phase::Connected => match (backend, frontend) {
            (BackendView::Gone | BackendView::Offline, _) => Step::Disconnect,
            (
                BackendView::Online,
                FrontendView::State(
                    S::Initialised | S::Connected | S::Reconfiguring | S::Reconfigured,
                )
                | FrontendView::Garbage,
            ) => Step::Nothing,
            (BackendView::Online, _) => Step::Disconnect,
        },
        Phase::Idle(published) => match backend {
            BackendView::Gone => Step::Remove,
            BackendView::Offline if frontend_active(frontend) => {
                if published == S::Closing {
                    Step::Nothing
                } else {
                    Step::Publish(S::Closing)
                }
            }
            BackendView::Offline if published == S::Closed => Step::Remove,
            BackendView::Offline => Step::PublishThenRemove(S::Closed),
            BackendView::Online => match frontend {
                FrontendView::State(S::Initialised | S::Connected) => match published {
                    S::InitWait => Step::Connect,
                    // `Connected` without a datapath must not stand.
                    S::Connected => Step::Publish(S::Closing),
                    _ => Step::Nothing,
                },
                FrontendView::State(S::Closing) => match published {
                    S::Closing | S::Closed => Step::Nothing,
                    _ => Step::Publish(S::Closing),
                },
                FrontendView::State(S::Closed | S::Unknown) | FrontendView::Gone => {
                    if published == S::Closed {
                        Step::Nothing
                    } else {
                        Step::Publish(S::Closed)
                    }
                }
                FrontendView::State(S::Initialising | S::InitWait) => {
                    if published == S::InitWait {
                        Step::Nothing
                    } else {
                        Step::Publish(S::InitWait)
                    }
                }
                FrontendView::State(S::Reconfiguring | S::Reconfigured) | FrontendView::Garbage => {
                    if published == S::Connected {
                        Step::Publish(S::Closing)
                    } else {
                        Step::Nothing
                    }
                }
            },
        },
    }
}

/// The backend end of one split device's xenstore handshake.
///
/// See the [module documentation](self) for the protocol and an example.
#[derive(Debug)]
pub struct BackendDevice {
    address: DeviceAddress,
    device_type: &'static str,
    backend_path: String,
    frontend_path: String,
    frontend_state_path: String,
    watch_token: Option<String>,
    phase: Phase,
    hotplug_connected: bool,
    last_frontend: FrontendView,
    needs_refresh: bool,
}

impl BackendDevice {
    /// A device at `address` under `directory`. Does no I/O.
    pub fn new(directory: &BackendDirectory, address: DeviceAddress) -> Self {
        Self {
            address,
            device_type: directory.device_type,
            backend_path: directory.device_path(address),
            frontend_path: String::new(),
            frontend_state_path: String::new(),
            watch_token: None,
            phase: Phase::Created,
            hotplug_connected: false,
            last_frontend: FrontendView::Gone,
            needs_refresh: false,
        }
    }

    /// The device's address under its backend directory.
    pub fn address(&self) -> DeviceAddress {
        self.address
    }

    /// The frontend's domain id.
    pub fn frontend_id(&self) -> DomId {
        self.address.frontend_id
    }

    /// The device's backend directory, e.g. `backend/vbd/5/51728`.
    pub fn backend_path(&self) -> &str {
        &self.backend_path
    }

    /// The frontend's directory, e.g. `/local/domain/5/device/vbd/51728`;
    /// empty until [`probe`](Self::probe) succeeded.
    pub fn frontend_path(&self) -> &str {
        &self.frontend_path
    }

    /// The token of the device's watches, once [`start`](Self::start)
    /// set them.
    pub fn watch_token(&self) -> Option<&str> {
        self.watch_token.as_deref()
    }

    /// Where the device is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the last look at xenstore could not finish because a
    /// request failed, so the published state may lag behind the two ends
    /// (for example still `Connected` after a disconnect). The engine
    /// should call [`refresh`](Self::refresh) again later, on its next
    /// timer tick.
    pub fn needs_refresh(&self) -> bool {
        self.needs_refresh
    }

    /// The frontend state seen at the last look.
    pub fn last_frontend(&self) -> FrontendView {
        self.last_frontend
    }

    /// Reads and checks `online`, `frontend-id` and `frontend`.
    ///
    /// A device that is gone or not `online=1` is left untouched and
    /// reported as [`HandshakeError::Gone`] or [`HandshakeError::Offline`]:
    /// this is what a device looks like between the toolstack's `online=0`
    /// and its removal, when watch events for it still arrive; the device
    /// is then [`Phase::Removed`] and every later relevant event returns
    /// [`Action::Remove`]. On any
    /// other refusal the device is failed (see [`fail`](Self::fail)), so
    /// the toolstack sees why, and the reason is returned.
    pub fn probe<X: Xenstore + ?Sized>(&mut self, xs: &mut X) -> Result<(), HandshakeError> {
        if self.phase != Phase::Created {
            return Err(HandshakeError::WrongPhase);
        }
        match self.read_online(xs)? {
            BackendView::Online => {}
            BackendView::Offline => {
                self.phase = Phase::Removed;
                return Err(HandshakeError::Offline);
            }
            BackendView::Gone => {
                self.phase = Phase::Removed;
                return Err(HandshakeError::Gone);
            }
        }
        match self.check_frontend(xs) {
            Ok(frontend_path) => {
                self.frontend_state_path = format!("{frontend_path}/state");
                self.frontend_path = frontend_path;
                self.phase = Phase::Probed;
                Ok(())
            }
            Err(HandshakeError::Gone) => {
                self.phase = Phase::Removed;
                Err(HandshakeError::Gone)
            }
            Err(error) => {
                let _ = self.fail(xs, &format!("{error}"));
                Err(error)
            }
        }
    }

    fn check_frontend<X: Xenstore + ?Sized>(&self, xs: &mut X) -> Result<String, HandshakeError> {
        let frontend_id = self
            .read_backend(xs, "frontend-id", value::parse_domid)
            .map_err(|error| match error.reason {
                FieldReason::Missing if !self.backend_exists(xs) => HandshakeError::Gone,
                _ => HandshakeError::Field(error),
            })?;
        if frontend_id != self.address.frontend_id {
            return Err(HandshakeError::Field(FieldError {
                key: "frontend-id".into(),
                reason: FieldReason::Invalid(ValueError::FrontendPathDomid),
            }));
        }
        let (frontend_id, device_type, devid) = (frontend_id, self.device_type, self.address.devid);
        self.read_backend(xs, "frontend", |path| {
            value::check_frontend_path(path, frontend_id, device_type, devid)
                .map(|()| String::from(path))
        })
        .map_err(HandshakeError::Field)
    }

    fn backend_exists<X: Xenstore + ?Sized>(&self, xs: &mut X) -> bool {
        !matches!(
            xs.read(TxId::NONE, &self.backend_path),
            Err(XsError::Enoent)
        )
    }

    /// Reads `key` in the backend directory and parses it with `parse`.
    pub fn read_backend<X, T>(
        &self,
        xs: &mut X,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Result<T, FieldError>
    where
        X: Xenstore + ?Sized,
    {
        read_field(xs, &self.backend_path, key, parse)
    }

    /// Reads `key` in the frontend directory and parses it with `parse`.
    pub fn read_frontend<X, T>(
        &self,
        xs: &mut X,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Result<T, FieldError>
    where
        X: Xenstore + ?Sized,
    {
        if self.frontend_path.is_empty() {
            return Err(FieldError {
                key: key.into(),
                reason: FieldReason::Missing,
            });
        }
        read_field(xs, &self.frontend_path, key, parse)
    }

    /// Like [`read_frontend`](Self::read_frontend), but a missing node is
    /// `Ok(None)`: for optional keys such as `protocol` or `feature-*`.
    pub fn read_frontend_optional<X, T>(
        &self,
        xs: &mut X,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Result<Option<T>, FieldError>
    where
        X: Xenstore + ?Sized,
    {
        match self.read_frontend(xs, key, parse) {
            Ok(value) => Ok(Some(value)),
            Err(FieldError {
                reason: FieldReason::Missing,
                ..
            }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Writes `key = value` in the backend directory, outside the handshake
    /// (for example a new `sectors` after a resize).
    pub fn write_backend<X: Xenstore + ?Sized>(
        &self,
        xs: &mut X,
        key: &str,
        value: &str,
    ) -> Result<(), HandshakeError> {
        check_key(key)?;
        xs.write(TxId::NONE, &format!("{}/{key}", self.backend_path), value)?;
        Ok(())
    }

    /// Publishes `features` (key, value pairs in the backend directory),
    /// `hotplug-status=connected` and `state=InitWait` in one transaction,
    /// then watches the backend directory and the frontend's `state` with
    /// `watch_token`. The watches fire once at once, so the next
    /// [`on_watch`](Self::on_watch) sees where the frontend already is.
    ///
    /// Call it once the device's backing (disk, switch port) is ready:
    /// `hotplug-status=connected` tells the toolstack the device is usable.
    /// If a watch cannot be set, the state is already published and the
    /// error is returned; [`refresh`](Self::refresh) still works.
    pub fn start<X: Xenstore + ?Sized>(
        &mut self,
        xs: &mut X,
        features: &[(&str, &str)],
        watch_token: &str,
    ) -> Result<(), HandshakeError> {
        if self.phase != Phase::Probed {
            return Err(HandshakeError::WrongPhase);
        }
        for (key, _) in features {
            check_key(key)?;
        }
        let backend_path = self.backend_path.clone();
        let result = with_transaction(xs, |xs, tx| {
            require_backend(xs, tx, &backend_path)?;
            for (key, value) in features {
                xs.write(tx, &format!("{backend_path}/{key}"), value)?;
            }
            xs.write(tx, &format!("{backend_path}/hotplug-status"), "connected")?;
            xs.write(
                tx,
                &format!("{backend_path}/state"),
                XenbusState::InitWait.as_str(),
            )?;
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(HandshakeError::Gone) => {
                self.phase = Phase::Removed;
                return Err(HandshakeError::Gone);
            }
            Err(error) => return Err(error),
        }
        self.hotplug_connected = true;
        self.phase = Phase::Idle(XenbusState::InitWait);
        xs.watch(&self.backend_path, watch_token)?;
        if let Err(error) = xs.watch(&self.frontend_state_path, watch_token) {
            self.unwatch_path(xs, &self.backend_path, watch_token);
            return Err(error.into());
        }
        self.watch_token = Some(watch_token.into());
        log::info!("{}: waiting for {}", self.backend_path, self.frontend_path);
        Ok(())
    }

    /// Whether a watch event path concerns this device.
    pub fn is_relevant(&self, path: &str) -> bool {
        self.is_frontend_state(path)
            || path
                .strip_prefix(self.backend_path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Handles a watch event: looks at both ends when `path` concerns the
    /// device, publishes any state change that needs no engine work, and
    /// says what the engine must do.
    pub fn on_watch<X: Xenstore + ?Sized>(&mut self, xs: &mut X, path: &str) -> Action {
        let interesting = self.is_frontend_state(path)
            || path == self.backend_path
            || path
                .strip_prefix(self.backend_path.as_str())
                .is_some_and(|rest| rest == "/online");
        if !interesting {
            return Action::None;
        }
        self.refresh(xs)
    }

    fn is_frontend_state(&self, path: &str) -> bool {
        // Empty until `probe` has read the frontend path.
        !self.frontend_state_path.is_empty() && path == self.frontend_state_path
    }

    /// Looks at both ends now, as [`on_watch`](Self::on_watch) does for a
    /// relevant event.
    pub fn refresh<X: Xenstore + ?Sized>(&mut self, xs: &mut X) -> Action {
        if self.phase == Phase::Removed {
            // Finished devices keep saying so, for engines that held on to
            // one (for example after `probe` reported it offline).
            return Action::Remove;
        }
        if matches!(self.phase, Phase::Created | Phase::Probed) {
            // Nothing is published yet; `start` comes first.
            return Action::None;
        }
        // Set again below if this look cannot finish.
        self.needs_refresh = false;
        // Bounded: each round either returns or publishes one state, and
        // publishing can lead to at most one further publication
        // (Closing -> Closed is never followed by another within a round).
        for _ in 0..3 {
            let (Some(frontend), Some(backend)) =
                (self.look_at_frontend(xs), self.look_at_backend(xs))
            else {
                self.needs_refresh = true;
                return Action::None;
            };
            match decide(self.phase, frontend, backend) {
                Step::Nothing => return Action::None,
                Step::Connect => {
                    log::info!("{}: frontend is ready, connecting", self.backend_path);
                    self.phase = Phase::Connecting;
                    return Action::Connect;
                }
                Step::Disconnect => {
                    log::info!(
                        "{}: disconnecting (frontend {frontend:?}, backend {backend:?})",
                        self.backend_path
                    );
                    self.phase = Phase::Disconnecting;
                    return Action::Disconnect;
                }
                Step::Remove => return self.remove(xs),
                Step::Publish(state) => match self.publish(xs, state) {
                    Ok(()) => continue,
                    Err(HandshakeError::Gone) => return self.remove(xs),
                    Err(error) => {
                        log::warn!("{}: cannot publish {state:?}: {error}", self.backend_path);
                        self.needs_refresh = true;
                        return Action::None;
                    }
                },
                Step::PublishThenRemove(state) => match self.publish(xs, state) {
                    Ok(()) | Err(HandshakeError::Gone) => return self.remove(xs),
                    Err(error) => {
                        // Stay, so that the toolstack sees Closed once
                        // xenstore works again.
                        log::warn!("{}: cannot publish {state:?}: {error}", self.backend_path);
                        self.needs_refresh = true;
                        return Action::None;
                    }
                },
            }
        }
        Action::None
    }

    /// The engine has set up its datapath after [`Action::Connect`]:
    /// publishes `Connected` and looks at both ends again.
    pub fn connected<X: Xenstore + ?Sized>(&mut self, xs: &mut X) -> Action {
        if self.phase != Phase::Connecting {
            log::warn!(
                "{}: connected() in phase {:?}",
                self.backend_path,
                self.phase
            );
            return Action::None;
        }
        self.phase = Phase::Connected;
        match self.publish(xs, XenbusState::Connected) {
            Ok(()) => log::info!("{}: connected", self.backend_path),
            Err(HandshakeError::Gone) => {
                self.phase = Phase::Disconnecting;
                return Action::Disconnect;
            }
            Err(error) => {
                // The frontend cannot see us connected; unwind so that the
                // next event starts over rather than leaving a half state.
                log::warn!("{}: cannot publish Connected: {error}", self.backend_path);
                self.phase = Phase::Disconnecting;
                return Action::Disconnect;
            }
        }
        self.refresh(xs)
    }

    /// The engine has torn its datapath down after [`Action::Disconnect`]:
    /// publishes `Closing`/`Closed`/`InitWait` as both ends require.
    pub fn disconnected<X: Xenstore + ?Sized>(&mut self, xs: &mut X) -> Action {
        if self.phase != Phase::Disconnecting {
            log::warn!(
                "{}: disconnected() in phase {:?}",
                self.backend_path,
                self.phase
            );
            return Action::None;
        }
        // The state last published: `Connected`, or `InitWait` when the
        // connect never finished. `decide` moves on from there.
        let published = self.published_state();
        self.phase = Phase::Idle(published);
        self.refresh(xs)
    }

    /// The engine has to drop a connected datapath on its own (the
    /// frontend broke the ring protocol): returns [`Action::Disconnect`].
    /// Once the engine has torn the datapath down and called
    /// [`disconnected`](Self::disconnected), `Closing` is published, so
    /// the frontend closes its end; it may then start over from
    /// `Initialising`. In any other phase there is no datapath to drop and
    /// nothing happens.
    pub fn disconnect(&mut self) -> Action {
        if self.phase != Phase::Connected {
            log::warn!(
                "{}: disconnect() in phase {:?}",
                self.backend_path,
                self.phase
            );
            return Action::None;
        }
        log::info!("{}: the engine disconnects", self.backend_path);
        self.phase = Phase::Disconnecting;
        Action::Disconnect
    }

    /// Reports a failure the toolstack should show: writes `message` to the
    /// backend's `error` node (and `hotplug-status=error` with
    /// `hotplug-error` if the device never reported itself connected), and
    /// publishes `Closed`. The engine must hold no datapath for the device.
    ///
    /// A device that fails before [`start`](Self::start) stays failed until
    /// the toolstack removes it; one that fails later can be reconnected
    /// by the frontend starting over from `Initialising`.
    pub fn fail<X: Xenstore + ?Sized>(&mut self, xs: &mut X, message: &str) -> Action {
        log::warn!("{}: failed: {message}", self.backend_path);
        let message = truncate(message, MAX_ERROR_MESSAGE_LEN);
        let backend_path = self.backend_path.clone();
        let hotplug_connected = self.hotplug_connected;
        let result = with_transaction(xs, |xs, tx| {
            require_backend(xs, tx, &backend_path)?;
            xs.write(tx, &format!("{backend_path}/error"), message)?;
            if !hotplug_connected {
                xs.write(tx, &format!("{backend_path}/hotplug-error"), message)?;
                xs.write(tx, &format!("{backend_path}/hotplug-status"), "error")?;
            }
            xs.write(
                tx,
                &format!("{backend_path}/state"),
                XenbusState::Closed.as_str(),
            )?;
            Ok(())
        });
        // What the frontend sees if the report cannot be written.
        let mut published = XenbusState::Closed;
        match result {
            Ok(()) => {}
            Err(HandshakeError::Gone) => return self.remove(xs),
            Err(error) => {
                log::warn!("{}: cannot report failure: {error}", self.backend_path);
                published = self.published_state();
            }
        }
        match self.phase {
            Phase::Created | Phase::Probed | Phase::Failed => {
                self.phase = Phase::Failed;
                Action::None
            }
            Phase::Removed => Action::None,
            _ => {
                self.phase = Phase::Idle(published);
                self.refresh(xs)
            }
        }
    }

    /// Removes the device's watches and marks it finished, for an engine
    /// that shuts down on its own. The engine must hold no datapath for it.
    pub fn stop<X: Xenstore + ?Sized>(&mut self, xs: &mut X) {
        let _ = self.remove(xs);
    }

    /// The state the backend last published (or, while the engine
    /// connects, still stands behind): for status pages and tests.
    pub fn published_state(&self) -> XenbusState {
        match self.phase {
            Phase::Idle(state) => state,
            Phase::Connected | Phase::Disconnecting => XenbusState::Connected,
            Phase::Connecting => XenbusState::InitWait,
            Phase::Failed => XenbusState::Closed,
            Phase::Created | Phase::Probed | Phase::Removed => XenbusState::Initialising,
        }
    }

    fn remove<X: Xenstore + ?Sized>(&mut self, xs: &mut X) -> Action {
        if let Some(token) = self.watch_token.take() {
            self.unwatch_path(xs, &self.backend_path, &token);
            self.unwatch_path(xs, &self.frontend_state_path, &token);
        }
        log::info!("{}: removed", self.backend_path);
        self.phase = Phase::Removed;
        Action::Remove
    }

    fn unwatch_path<X: Xenstore + ?Sized>(&self, xs: &mut X, path: &str, token: &str) {
        if let Err(error) = xs.unwatch(path, token) {
            log::warn!("{}: unwatch {path} failed: {error:?}", self.backend_path);
        }
    }

    /// Writes `state` in a transaction that first checks the node exists,
    /// so a device the toolstack just removed is not brought back as a
    /// stray `state` node.
    fn publish<X: Xenstore + ?Sized>(
        &mut self,
        xs: &mut X,
        state: XenbusState,
    ) -> Result<(), HandshakeError> {
        let path = format!("{}/state", self.backend_path);
        with_transaction(xs, |xs, tx| {
            match xs.read(tx, &path) {
                Ok(_) => {}
                Err(XsError::Enoent) => return Err(HandshakeError::Gone),
                Err(error) => return Err(error.into()),
            }
            xs.write(tx, &path, state.as_str())?;
            Ok(())
        })?;
        log::debug!("{}: state {state:?}", self.backend_path);
        if let Phase::Idle(_) = self.phase {
            self.phase = Phase::Idle(state);
        }
        Ok(())
    }

    /// Reads the frontend's state; `None` when xenstore could not answer
    /// (the next event will look again).
    fn look_at_frontend<X: Xenstore + ?Sized>(&mut self, xs: &mut X) -> Option<FrontendView> {
        let view = match xs.read(TxId::NONE, &self.frontend_state_path) {
            Ok(text) => match XenbusState::parse(&text) {
                Some(state) => FrontendView::State(state),
                None => {
                    log::warn!(
                        "{}: frontend state is not a XenbusState, ignoring it",
                        self.backend_path
                    );
                    FrontendView::Garbage
                }
            },
            // A frontend that hides its state is treated as gone.
            Err(XsError::Enoent | XsError::Eacces) => FrontendView::Gone,
            Err(error) => {
                log::warn!(
                    "{}: cannot read frontend state: {error:?}",
                    self.backend_path
                );
                return None;
            }
        };
        self.last_frontend = view;
        Some(view)
    }

    /// Reads `online`; `None` when xenstore could not answer.
    fn look_at_backend<X: Xenstore + ?Sized>(&self, xs: &mut X) -> Option<BackendView> {
        match self.read_online(xs) {
            Ok(view) => Some(view),
            Err(error) => {
                log::warn!("{}: cannot read online: {error:?}", self.backend_path);
                None
            }
        }
    }

    fn read_online<X: Xenstore + ?Sized>(&self, xs: &mut X) -> Result<BackendView, XsError> {
        match xs.read(TxId::NONE, &format!("{}/online", self.backend_path)) {
            Ok(text) => Ok(match value::parse_bool(&text) {
                Ok(true) => BackendView::Online,
                Ok(false) => BackendView::Offline,
                Err(error) => {
                    log::warn!("{}: online: {error}, taking it as 0", self.backend_path);
                    BackendView::Offline
                }
            }),
            // Linux reads a missing `online` as 0 too.
            Err(XsError::Enoent) if self.backend_exists(xs) => Ok(BackendView::Offline),
            Err(XsError::Enoent) => Ok(BackendView::Gone),
            Err(error) => Err(error),
        }
    }
}

fn read_field<X, T>(
    xs: &mut X,
    directory: &str,
    key: &str,
    parse: impl FnOnce(&str) -> Result<T, ValueError>,
) -> Result<T, FieldError>
where
    X: Xenstore + ?Sized,
{
    let reason = match xs.read(TxId::NONE, &format!("{directory}/{key}")) {
        Ok(text) => match parse(&text) {
            Ok(value) => return Ok(value),
            Err(error) => FieldReason::Invalid(error),
        },
        Err(XsError::Enoent | XsError::Eacces) => FieldReason::Missing,
        Err(error) => FieldReason::Xenstore(error),
    };
    let error = FieldError {
        key: key.into(),
        reason,
    };
    log::warn!("{directory}: {error}");
    Err(error)
}

fn require_backend<X: Xenstore + ?Sized>(
    xs: &mut X,
    tx: TxId,
    backend_path: &str,
) -> Result<(), HandshakeError> {
    match xs.read(tx, backend_path) {
        Ok(_) => Ok(()),
        Err(XsError::Enoent) => Err(HandshakeError::Gone),
        Err(error) => Err(error.into()),
    }
}

fn check_key(key: &str) -> Result<(), HandshakeError> {
    let well_formed = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if well_formed {
        Ok(())
    } else {
        Err(HandshakeError::BadKey)
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
