//! Xenbus: the control plane shared by every split driver.
//!
//! Layer: between the platform and the backend engines. Below sits the
//! platform (`rumpuser-xen` on real Xen, `xensim` in tests), which owns the
//! xenstore ring page and the event channels; above sit the engines
//! (`blkback`, `netback`), which find their devices and run the xenbus
//! handshake through this crate. Everything here is plain state machines
//! and parsers over hostile input; nothing blocks or touches hardware.
//!
//! * [`platform`]: the traits engines are generic over (grants, event
//!   channels, xenstore).
//! * [`wire`]: the xenstore wire protocol of
//!   [`xen/io/xs_wire.h`](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/io/xs_wire.h)
//!   and `docs/misc/xenstore.txt`: framing, payloads, a stream decoder.
//! * [`ring`]: a xenstore client over the `xenstore_domain_interface` ring
//!   page, non-blocking, plus a blocking [`platform::Xenstore`] adapter.
//! * [`state`]: `XenbusState`, from
//!   [`xen/io/xenbus.h`](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/io/xenbus.h).
//! * [`value`]: bounded parsers for the values other domains write.
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
