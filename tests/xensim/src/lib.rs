//! xensim: a simulated Xen hypervisor for tests and benchmarks.
//!
//! Layer: sits where Xen and xenstored sit. Above it are the protocol
//! engines (`blkback`, `netback`), which use it through the platform traits
//! of `xenbus::platform`, and the mock frontends of [`frontend`], which use
//! its inherent API the way a guest kernel uses hypercalls. Below it is
//! nothing but `std`: every domain is a set of threads in one process.
//!
//! What it simulates, with the semantics and checks of the real thing:
//!
//! * **Domains** with ids (dom0 is the toolstack) and their own 4 KiB
//!   pages ([`Page`]), shared between threads through atomics.
//! * **Grant tables v1** (`xen/include/public/grant_table.h`): grant and
//!   end access, `GNTTABOP_copy` with the status codes of
//!   `xen/common/grant_table.c`, map and unmap with pin counts.
//! * **Event channels** (`xen/include/public/event_channel.h`): unbound and
//!   interdomain ports, send, mask and unmask, pending bits, close, and a
//!   blocking wait for pending ports.
//! * **xenstored** (`docs/misc/xenstore.txt`, `tools/xenstored`): nodes with
//!   permissions, watches with tokens and the initial event, transactions
//!   that fail with `EAGAIN` on conflict, and the default quotas.
//! * **The toolstack** ([`toolstack`]): the xenstore nodes libxl writes for
//!   a vbd or vif served by a driver domain, detach and domain destroy.
//!
//! Not simulated: grant table v2 (sub-page and transitive grants), grant
//! transfer, XSM, VIRQ/IPI/PIRQ ports, the xenstore wire protocol (requests
//! are direct calls), watch depths, and per-domain permissions on the
//! special `@` watches (only dom0 receives them). `directory` lists
//! children sorted by name, where xenstored keeps creation order.
//!
//! Everything is deterministic for a given [`SimConfig::seed`]. All handles
//! are `Send + Sync`; one mutex guards the whole machine, and page contents
//! live outside it, so a data copy never blocks the control plane.
//!
//! ```
//! use xensim::{Hypervisor, PAGE_SIZE};
//! use xen_ring::SharedMemory;
//! use xenbus::platform::{CopyOp, GrantCopy, GrantSpan};
//!
//! let xen = Hypervisor::new();
//! let frontend = xen.create_domain("guest");
//! let backend = xen.create_domain("driver");
//!
//! // The frontend fills a page and grants it read-only to the backend.
//! let (gfn, page) = frontend.alloc_page();
//! page.write(0, b"hello");
//! let gref = frontend.grant_access(backend.domid(), gfn, true).unwrap();
//!
//! // The backend copies it out with GNTTABOP_copy.
//! let mut buffer = [0u8; 5];
//! let mut backend_handle = backend.clone();
//! let mut ops = [CopyOp::FromGrant {
//!     source: GrantSpan { domid: frontend.domid(), gref, offset: 0 },
//!     destination: &mut buffer,
//! }];
//! let mut status = [Ok(())];
//! backend_handle.copy(&mut ops, &mut status);
//! assert_eq!(status, [Ok(())]);
//! assert_eq!(&buffer, b"hello");
//! # let _ = PAGE_SIZE;
//! ```
//!
//! # Writing a mock frontend
//!
//! A frontend is a [`Domain`] handle used the way a guest driver uses its
//! hypercalls and xenstore connection. The toolstack creates the device;
//! the frontend publishes its ring and event channel and follows the
//! backend's state through a watch. `examples/handshake.rs` runs the whole
//! exchange with a backend built on `xenbus::backend`.
//!
//! ```
//! use xen_ring::FrontRing;
//! use xenbus::platform::{TxId, Xenstore};
//! use xenbus::XenbusState;
//! use xensim::{Hypervisor, VbdConfig, LONG_WAIT};
//!
//! let xen = Hypervisor::new();
//! let driver = xen.create_domain("rumpdisk");
//! let mut guest = xen.create_domain("guest");
//! let nodes = xen
//!     .toolstack()
//!     .attach_vbd(&VbdConfig::new(driver.domid(), guest.domid(), "/dev/disk"))
//!     .unwrap();
//!
//! // Follow the backend's state (the watch fires once straight away).
//! let backend_state = format!("{}/state", nodes.backend);
//! guest.watch(&backend_state, "backend-state").unwrap();
//! assert!(guest.wait_watch(LONG_WAIT).is_some());
//!
//! // Ring page, grant, event channel, published in one transaction.
//! let (gfn, page) = guest.alloc_page();
//! let mut ring = FrontRing::init(page, 112).unwrap();
//! let ring_ref = guest.grant_access(driver.domid(), gfn, false).unwrap();
//! let port = guest.alloc_unbound(driver.domid()).unwrap();
//! let tx = guest.transaction_start().unwrap();
//! guest.write(tx, &format!("{}/ring-ref", nodes.frontend), &ring_ref.to_string()).unwrap();
//! guest.write(tx, &format!("{}/event-channel", nodes.frontend), &port.to_string()).unwrap();
//! guest.write(tx, &format!("{}/state", nodes.frontend), XenbusState::Initialised.as_str()).unwrap();
//! guest.transaction_end(tx, true).unwrap(); // Err(XsError::Eagain): retry
//!
//! // Later: push requests, kick the backend, take responses when the
//! // port fires (`guest.wait_ports(timeout)` or `guest.wait_activity`).
//! ring.push_request(&[0; 112]).unwrap();
//! if ring.push_requests_and_check_notify() {
//!     guest.send(port).unwrap();
//! }
//! ```
#![forbid(unsafe_code)]

pub mod evtchn;
pub mod frontend;
pub mod grant;
pub mod memory;
mod rng;
pub mod toolstack;
pub mod xenstore;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use xenbus::platform::{DomId, EvtchnPort, GrantRef, DOMID_SELF};

pub use evtchn::PortStatus;
pub use grant::{
    EndAccessError, GrantEntry, GrantHandle, Mapping, GNTTAB_NR_RESERVED_ENTRIES,
    GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING,
};
pub use memory::{Gfn, Page, PAGE_SIZE};
pub use toolstack::{DeviceKind, DeviceNodes, Toolstack, VbdConfig, VifConfig};
pub use xenstore::WatchEvent;

use grant::{GrantTable, MapTrack};
use xenstore::Store;

/// The toolstack domain's id.
pub const DOM0: DomId = 0;

/// Sizes and the seed of a simulated machine.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed for everything chosen at random (today: gref allocation order).
    pub seed: u64,
    /// Grant table size of each domain in frames; a v1 frame holds 512
    /// entries. Xen's default limit is 64 frames.
    pub grant_frames: u32,
    /// Whether [`Domain::grant_access`] hands out grefs in a seeded random
    /// order (true) or lowest first, as a freshly booted Linux does (false).
    pub shuffle_grefs: bool,
    /// Maximum number of simultaneous grant maps per domain (maptrack
    /// handles).
    pub max_maptrack_handles: u32,
    /// Number of event channel ports per domain (4096 for the 2-level ABI
    /// on 64-bit guests).
    pub evtchn_ports: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0x5eed,
            grant_frames: 32,
            shuffle_grefs: true,
            max_maptrack_handles: 65536,
            evtchn_ports: 4096,
        }
    }
}

/// Everything one domain owns inside the hypervisor.
pub(crate) struct DomainState {
    pub(crate) name: String,
    pub(crate) pages: BTreeMap<Gfn, Page>,
    pub(crate) next_gfn: Gfn,
    pub(crate) grants: GrantTable,
    pub(crate) maptrack: MapTrack,
    pub(crate) ports: evtchn::PortTable,
    /// Injected failures for this domain's next grant copies and maps.
    pub(crate) grant_faults: grant::FaultPlan,
    pub(crate) stats: DomainStats,
}

/// What a domain has asked of the hypervisor so far: for tests that check
/// behaviour such as notification suppression or copy batching by counting,
/// never by timing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DomainStats {
    /// Successful `EVTCHNOP_send` calls (including ones dropped on an
    /// unbound port).
    pub events_sent: u64,
    /// Grant copy operations that succeeded.
    pub grant_copies: u64,
    /// Bytes moved by successful grant copies.
    pub grant_copy_bytes: u64,
    /// Grant copy operations that failed.
    pub grant_copy_errors: u64,
    /// Grants mapped (one per gref).
    pub grant_maps: u64,
    /// Grants unmapped.
    pub grant_unmaps: u64,
}

/// The whole machine, behind one mutex.
pub(crate) struct State {
    pub(crate) config: SimConfig,
    pub(crate) rng: rng::SplitMix64,
    pub(crate) domains: BTreeMap<DomId, DomainState>,
    pub(crate) next_domid: DomId,
    pub(crate) store: Store,
}

impl State {
    /// Resolves `DOMID_SELF` against the caller.
    pub(crate) fn resolve(caller: DomId, domid: DomId) -> DomId {
        if domid == DOMID_SELF {
            caller
        } else {
            domid
        }
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Signalled whenever an event channel becomes pending or a watch
    /// event is queued.
    wakeup: Condvar,
}

/// A simulated machine: hypervisor, xenstored and toolstack.
///
/// Cloning gives another handle to the same machine.
#[derive(Clone)]
pub struct Hypervisor {
    shared: Arc<Shared>,
}

impl fmt::Debug for Hypervisor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        formatter
            .debug_struct("Hypervisor")
            .field("domains", &state.domains.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Hypervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Hypervisor {
    /// A machine with the default [`SimConfig`], running only dom0.
    pub fn new() -> Self {
        Self::with_config(SimConfig::default())
    }

    /// A machine running only dom0.
    pub fn with_config(config: SimConfig) -> Self {
        let rng = rng::SplitMix64::new(config.seed);
        let state = State {
            config,
            rng,
            domains: BTreeMap::new(),
            next_domid: 1,
            store: Store::new(),
        };
        let hypervisor = Hypervisor {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                wakeup: Condvar::new(),
            }),
        };
        {
            let mut state = hypervisor.lock();
            state.add_domain(DOM0, "Domain-0");
        }
        hypervisor
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A test thread that panicked while holding the lock leaves the
        // machine in a consistent state (every operation completes its
        // bookkeeping before it can panic), so poisoning is ignored.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn wake_all(&self) {
        self.shared.wakeup.notify_all();
    }

    /// Waits until `ready` returns `Some` or `timeout` passes. `ready` runs
    /// under the machine lock each time something was signalled.
    pub(crate) fn wait_until<T>(
        &self,
        timeout: Duration,
        mut ready: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        loop {
            if let Some(value) = ready(&mut state) {
                return Some(value);
            }
            let remaining = match deadline {
                Some(deadline) => deadline.checked_duration_since(Instant::now())?,
                None => Duration::from_secs(3600),
            };
            if remaining.is_zero() {
                return None;
            }
            state = self
                .shared
                .wakeup
                .wait_timeout(state, remaining)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The toolstack domain.
    pub fn dom0(&self) -> Domain {
        Domain {
            hypervisor: self.clone(),
            domid: DOM0,
        }
    }

    /// Creates a domain with the next free id and the xenstore nodes libxl
    /// gives a new guest (`/local/domain/<domid>` readable by the guest,
    /// `data`, `control/shutdown` and friends writable by it).
    pub fn create_domain(&self, name: &str) -> Domain {
        let domid = {
            let mut state = self.lock();
            let domid = state.next_domid;
            state.next_domid += 1;
            state.add_domain(domid, name);
            domid
        };
        self.wake_all();
        Domain {
            hypervisor: self.clone(),
            domid,
        }
    }

    /// A handle to a running domain, or `None` if `domid` does not exist.
    pub fn domain(&self, domid: DomId) -> Option<Domain> {
        let exists = self.lock().domains.contains_key(&domid);
        exists.then(|| Domain {
            hypervisor: self.clone(),
            domid,
        })
    }

    /// Ids of the running domains, in order.
    pub fn domids(&self) -> Vec<DomId> {
        self.lock().domains.keys().copied().collect()
    }

    /// The libxl-like toolstack of this machine.
    pub fn toolstack(&self) -> Toolstack {
        Toolstack::new(self.clone())
    }

    /// Every xenstore node at or below `path`, one line each, as
    /// `path = "value"   (n0,r4)`, the format of the lab's reference dump.
    pub fn dump_store(&self, path: &str) -> Vec<String> {
        self.lock().store.dump(path)
    }

    /// Destroys a domain the way the hypervisor does once the toolstack
    /// calls `XEN_DOMCTL_destroydomain`: its event channels close (peers'
    /// ends become unbound), the grant maps it holds are released, its
    /// xenstore connection with watches and transactions goes away, and
    /// `@releaseDomain` fires. Pages it granted that others still map stay
    /// valid for them until they unmap, like a zombie domain's memory.
    ///
    /// This does not touch the domain's xenstore nodes; use
    /// [`Toolstack::destroy_domain`] for the full libxl sequence.
    pub fn destroy_domain(&self, domid: DomId) -> Result<(), SimError> {
        if domid == DOM0 {
            return Err(SimError::Dom0);
        }
        {
            let mut state = self.lock();
            if !state.domains.contains_key(&domid) {
                return Err(SimError::NoSuchDomain);
            }
            state.release_domain(domid);
        }
        self.wake_all();
        Ok(())
    }
}

impl State {
    fn add_domain(&mut self, domid: DomId, name: &str) {
        let grants = GrantTable::new(
            self.config.grant_frames,
            self.config.shuffle_grefs,
            &mut self.rng,
        );
        self.domains.insert(
            domid,
            DomainState {
                name: name.to_string(),
                pages: BTreeMap::new(),
                next_gfn: 0x1000,
                grants,
                maptrack: MapTrack::default(),
                ports: evtchn::PortTable::new(self.config.evtchn_ports),
                grant_faults: grant::FaultPlan::default(),
                stats: DomainStats::default(),
            },
        );
        self.store.introduce_domain(domid, name);
    }

    fn release_domain(&mut self, domid: DomId) {
        self.close_all_ports(domid);
        self.release_all_maps(domid);
        self.domains.remove(&domid);
        self.store.release_domain(domid);
    }
}

/// Why a machine-level operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// No such domain.
    NoSuchDomain,
    /// dom0 cannot be destroyed.
    Dom0,
    /// A xenstore operation failed.
    Xenstore(xenbus::platform::XsError),
    /// The backend did not reach the awaited state in time.
    Timeout,
}

impl From<xenbus::platform::XsError> for SimError {
    fn from(error: xenbus::platform::XsError) -> Self {
        SimError::Xenstore(error)
    }
}

/// One domain's view of the machine: what a guest kernel reaches through
/// hypercalls and its xenstore connection.
///
/// Implements the platform traits ([`xenbus::platform::GrantCopy`],
/// [`xenbus::platform::GrantMap`], [`xenbus::platform::EventChannels`],
/// [`xenbus::platform::Xenstore`]) so an engine can run on it, and offers
/// the frontend side (pages, granting, allocating ports, watch queues) as
/// inherent methods. Cheap to clone; clones act as the same domain.
#[derive(Clone)]
pub struct Domain {
    hypervisor: Hypervisor,
    domid: DomId,
}

impl fmt::Debug for Domain {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Domain")
            .field("domid", &self.domid)
            .finish()
    }
}

impl Domain {
    /// This domain's id.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The machine this domain runs on.
    pub fn hypervisor(&self) -> &Hypervisor {
        &self.hypervisor
    }

    /// The domain's name, or `None` once it is destroyed.
    pub fn name(&self) -> Option<String> {
        self.hypervisor
            .lock()
            .domains
            .get(&self.domid)
            .map(|domain| domain.name.clone())
    }

    /// Counters of what this domain asked of the hypervisor (zero once the
    /// domain is destroyed).
    pub fn stats(&self) -> DomainStats {
        self.hypervisor
            .lock()
            .domains
            .get(&self.domid)
            .map(|domain| domain.stats)
            .unwrap_or_default()
    }

    /// Whether the domain still exists.
    pub fn is_alive(&self) -> bool {
        self.hypervisor.lock().domains.contains_key(&self.domid)
    }

    /// The xenstore path of this domain's home, `/local/domain/<domid>`.
    pub fn home(&self) -> String {
        format!("/local/domain/{}", self.domid)
    }

    /// Allocates a zeroed page of this domain's memory and returns its
    /// frame number (what goes into a grant entry) and a handle to it.
    ///
    /// # Panics
    ///
    /// If the domain was destroyed.
    pub fn alloc_page(&self) -> (Gfn, Page) {
        let mut state = self.hypervisor.lock();
        let domain = state
            .domains
            .get_mut(&self.domid)
            .expect("alloc_page on a destroyed domain");
        let gfn = domain.next_gfn;
        domain.next_gfn += 1;
        let page = Page::new();
        domain.pages.insert(gfn, page.clone());
        (gfn, page)
    }

    /// The page at `gfn`, if this domain has one there.
    pub fn page(&self, gfn: Gfn) -> Option<Page> {
        let state = self.hypervisor.lock();
        state.domains.get(&self.domid)?.pages.get(&gfn).cloned()
    }

    /// Gives the page at `gfn` back to the hypervisor (like
    /// `XENMEM_decrease_reservation`). Grants that still name the frame
    /// then fail with `GNTST_bad_page`; existing maps keep the memory.
    /// Returns whether there was a page.
    pub fn free_page(&self, gfn: Gfn) -> bool {
        let mut state = self.hypervisor.lock();
        state
            .domains
            .get_mut(&self.domid)
            .is_some_and(|domain| domain.pages.remove(&gfn).is_some())
    }
}

/// How long [`Domain::wait_activity`] and friends wait when told to wait
/// "forever" in tests: long enough never to fire on a healthy run.
pub const LONG_WAIT: Duration = Duration::from_secs(30);

/// What woke a domain up: pending ports and queued watch events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// Ports that were pending and unmasked; their pending bits are now
    /// clear.
    pub ports: Vec<EvtchnPort>,
    /// Watch events, oldest first.
    pub watches: Vec<WatchEvent>,
}

impl Domain {
    /// Blocks until at least one unmasked port is pending or a watch event
    /// is queued, or `timeout` passes; then takes all of them (clearing the
    /// pending bits, as a guest's upcall handler does). An empty
    /// [`Activity`] means the timeout passed.
    pub fn wait_activity(&self, timeout: Duration) -> Activity {
        let domid = self.domid;
        self.hypervisor
            .wait_until(timeout, |state| {
                let activity = state.take_activity(domid);
                (!activity.ports.is_empty() || !activity.watches.is_empty()).then_some(activity)
            })
            .unwrap_or_default()
    }

    /// Takes pending ports and watch events without blocking.
    pub fn poll_activity(&self) -> Activity {
        self.hypervisor.lock().take_activity(self.domid)
    }
}

impl State {
    fn take_activity(&mut self, domid: DomId) -> Activity {
        Activity {
            ports: self.take_pending(domid),
            watches: self.store.take_events(domid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        assert_send_sync::<Hypervisor>();
        assert_send_sync::<Domain>();
        assert_send_sync::<Page>();
        assert_send_sync::<Mapping>();
        assert_send_sync::<Toolstack>();
    }
}
