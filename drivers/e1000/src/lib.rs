//! Driver for the Intel 82540EM Gigabit Ethernet controller (QEMU's
//! `e1000`), passed through to a driver domain.
//!
//! Layer: a device driver. Below it is the safe PCI API of [`pcidev`]
//! (config space, BAR 0 registers, DMA buffers, interrupts as polled
//! events), implemented by `rumpuser-xen` over pcifront on real Xen and by
//! [`model`] in tests. Above it, the `rumpnet` domain plugs it into
//! `netback`'s switch as the uplink port through [`netback::NetDevice`].
//!
//! It follows Intel's "PCI/PCI-X Family of Gigabit Ethernet Controllers
//! Software Developer's Manual" (317453): reset, Ethernet address from
//! RAL0/RAH0 or the EEPROM, link set-up, one legacy transmit ring and one
//! legacy receive ring of 2048-byte buffers. See `docs/e1000.md` for the
//! design and what the platform must provide.
//!
//! The device is trusted no more than a foreign domain: every register
//! value and every descriptor it writes back is copied out once and checked
//! ([`descriptor::RxWriteBack::judge`]); a lie costs the frame and a
//! counter, never a panic. The driver does no I/O beyond the calls on its
//! device and never blocks: each call does a bounded, documented amount of
//! work.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod descriptor;
mod driver;
#[cfg(feature = "model")]
pub mod model;
pub mod registers;

pub use driver::{
    Config, Error, PollOutcome, SendError, Statistics, BUFFER_SIZE, E1000, MAX_FRAME_LEN,
    MAX_LONG_FRAME_LEN, MIN_FRAME_LEN, SUPPORTED_DEVICE_IDS,
};
