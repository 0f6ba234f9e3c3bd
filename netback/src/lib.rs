//! netif backend engine and an in-domain L2 learning switch.
//!
//! Layer: a protocol engine. Above it sits the `rumpnet` driver domain,
//! which feeds it xenstore watch events, event channel events and time,
//! and plugs an uplink [`NetDevice`] into it. Below it are the platform
//! traits of [`xenbus::platform`] (grant copy and map, event channels,
//! xenstore), implemented by `rumpuser-xen` on real Xen and by `xensim` in
//! tests, and the rings of [`xen_ring`].
//!
//! It implements the backend half of
//! [`xen/io/netif.h`](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/io/netif.h):
//! guest transmit (TX) with scatter-gather, GSO extra-info and checksum
//! offload; guest receive (RX) by grant copy only; multiple queues; split
//! event channels; the control ring with Toeplitz receive steering. Every vif of the domain and an uplink port are joined by
//! a learning [`Switch`].
//!
//! The engine does no I/O of its own and never blocks: see [`Netback`] for
//! the calls a domain makes, and `docs/netback.md` for the wiring, the
//! xenstore keys and the validation rules.
//!
//! Everything from a frontend is hostile: ring slots are copied out once
//! and validated ([`tx`]), frame headers are parsed with every length
//! checked ([`frame`]), xenstore values go through [`xenbus::value`]. A bad
//! packet is dropped and answered with `NETIF_RSP_ERROR`; a frontend that
//! breaks the ring protocol is disconnected with a logged reason. No input
//! makes the engine panic or touch another vif.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod backend;
mod backlog;
pub mod control;
pub mod device;
pub mod frame;
pub mod hash;
pub mod switch;
pub mod tx;
pub mod wire;

pub use backend::{
    Config, FrontendFeatures, Netback, Platform, PollOutcome, VifCounters, VifStatus,
    DIRECTORY_WATCH_TOKEN, UPLINK_PORT,
};
pub use backlog::BacklogLimits;
pub use device::{DeviceError, MemoryDevice, NetDevice, NoUplink};
pub use frame::{ChecksumState, Frame, Gso, MacAddress, Offloads};
pub use switch::{Forward, PortCounters, PortId, Switch, SwitchConfig};
pub use xenbus::backend::DeviceAddress;
