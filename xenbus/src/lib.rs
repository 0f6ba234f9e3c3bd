//! Xenbus: the control plane shared by every split driver.
//!
//! This crate sits between the platform (`rumpuser-xen` on real Xen,
//! `xensim` in tests), which moves bytes to and from xenstored, and the
//! backend engines (`blkback`, `netback`), which use it to find their
//! devices and run the xenbus handshake. It holds:
//!
//! * [`platform`]: the traits engines are generic over (grants, event
//!   channels, xenstore);
//! * [`state`]: `XenbusState` from `xen/io/xenbus.h`;
//! * [`value`]: bounded parsers for values other domains write;
//! * [`backend`]: the backend side of the handshake for one device.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod backend;
pub mod platform;
pub mod ring;
pub mod state;
pub mod value;
pub mod wire;

pub use platform::{DomId, EvtchnPort, GrantRef};
pub use state::XenbusState;
