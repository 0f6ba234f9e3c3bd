//! blkif backend engine: serves block devices to other domains' blkfronts.
//!
//! Layer: a protocol engine. Below it sit the platform traits of
//! [`xenbus::platform`] (grant copy and map, event channels, xenstore),
//! implemented by `rumpuser-xen` on real Xen and by `xensim` in tests, the
//! ring halves of [`xen_ring`], and a [`BlockDevice`] (the [`RamDisk`] here,
//! a real disk driver in the rumpdisk domain). Above it sits the domain's
//! main loop, which feeds it events. It implements
//! [`xen/io/blkif.h`](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/io/blkif.h),
//! with the feature set of Linux's `drivers/block/xen-blkback`: flush,
//! barrier, discard, indirect segments, persistent grants, multi-page rings
//! and multiple queues, for x86_64 and x86_32 frontends.
//!
//! The engine does no I/O of its own. Inputs: [`Blkback::on_watch`] (a
//! xenstore watch fired), [`Blkback::on_event`] (an event channel fired),
//! [`Blkback::poll`] (do bounded work: take device completions, serve rings).
//! Outputs: calls on the platform and on the devices.
//!
//! ```text
//! let mut backend = Blkback::new(Config::new(my_domid));
//! backend.add_device("ram0", RamDisk::new(2048 * 1024)?)?;
//! backend.start(&mut platform)?;          // watches backend/vbd
//! loop {
//!     match platform.wait() {
//!         Watch(path, token) => backend.on_watch(&mut platform, &path, &token),
//!         Event(port) => backend.on_event(&mut platform, port),
//!         DiskInterrupt => {}
//!     }
//!     while backend.poll(&mut platform).more_work {}
//! }
//! ```
//!
//! Every byte from a frontend is hostile: ring slots are copied out once and
//! validated into [`proto::Request`]s; bad requests are answered with
//! `BLKIF_RSP_ERROR`/`BLKIF_RSP_EOPNOTSUPP` and a logged reason; a ring
//! whose indices break the protocol gets its device disconnected. Nothing a
//! frontend does can panic the engine or touch another frontend's device.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod datapath;
pub mod device;
mod engine;
mod persistent;
pub mod proto;

pub use device::{
    BlockDevice, DeviceInfo, DiscardInfo, IoCompletion, IoError, IoRequest, IoTag, RamDisk,
    RamDiskError, SubmitError,
};
pub use engine::{AddDeviceError, Blkback, PollStatus, VbdStatus, BACKEND_WATCH_TOKEN};

use xenbus::platform::{DomId, EventChannels, GrantCopy, GrantMap, Xenstore};

/// Everything the engine needs from the platform, in one bound.
pub trait Platform: GrantCopy + GrantMap + EventChannels + Xenstore {}

impl<T: GrantCopy + GrantMap + EventChannels + Xenstore> Platform for T {}

/// Engine settings. [`Config::new`] gives the values documented per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This backend domain's id: devices are found under
    /// `/local/domain/<domid>/backend/vbd`.
    pub domid: DomId,
    /// `multi-queue-max-queues` (default 4; 1 leaves the node out).
    pub max_queues: u32,
    /// `max-ring-page-order` (default 4, i.e. 16-page rings; at most 4).
    pub max_ring_page_order: u32,
    /// `feature-max-indirect-segments` (default 256; 0 refuses
    /// `BLKIF_OP_INDIRECT` and leaves the node out; at most 4096).
    pub max_indirect_segments: u16,
    /// Offer `feature-persistent` (default true).
    pub persistent_grants: bool,
    /// Most data pages kept mapped per virtual disk (default 16384, 64 MiB).
    pub max_persistent_grants: usize,
    /// Most requests taken off one ring in one [`Blkback::poll`] (default 32).
    pub requests_per_poll: usize,
    /// Data buffered for one ring's requests in flight, in bytes, before the
    /// ring is left alone until some complete (default 4 MiB).
    pub max_bytes_in_flight_per_ring: usize,
}

impl Config {
    /// The defaults, for the backend domain `domid`.
    pub fn new(domid: DomId) -> Self {
        Self {
            domid,
            max_queues: 4,
            max_ring_page_order: 4,
            max_indirect_segments: 256,
            persistent_grants: true,
            max_persistent_grants: 16384,
            requests_per_poll: 32,
            max_bytes_in_flight_per_ring: 4 << 20,
        }
    }
}

/// The largest `max-ring-page-order` the engine accepts in its [`Config`].
pub const MAX_RING_PAGE_ORDER: u32 = 4;
/// The most queues the engine accepts in its [`Config`].
pub const MAX_QUEUES: u32 = 64;
/// The most indirect segments the engine accepts in its [`Config`]
/// (`BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST` pages of 512 segments).
pub const MAX_INDIRECT_SEGMENTS: u16 = 4096;
