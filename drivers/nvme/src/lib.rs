//! NVMe driver for a passed-through PCI controller, serving one namespace
//! as a [`blkback::BlockDevice`].
//!
//! Layer: a device driver. Below it sit the safe PCI traits of [`pcidev`]
//! (config space, BAR 0 registers, DMA buffers, interrupts as polled
//! events), which `rumpuser-xen` is to implement over pcifront on real Xen
//! (not written yet), and which the `model` module (feature `model`) implements over
//! plain memory for tests. Above it sits `blkback`, which
//! serves the namespace to blkfronts. It implements the parts of the
//! [NVM Express Base Specification](https://nvmexpress.org/specifications/)
//! (revision 1.4) and its NVM Command Set that a block backend needs:
//! controller reset and enable, the admin queue, Identify, one I/O queue
//! pair, Read, Write, Flush and Dataset Management (deallocate), with PRP
//! lists for transfers of many pages. `docs/nvme.md` describes the design.
//!
//! Like the engines, the driver does no I/O of its own accord and knows no
//! clock. [`Nvme::poll_bring_up`] and [`Nvme::tick`] take the current time
//! in milliseconds from the caller; requests go in through
//! [`blkback::BlockDevice::submit`] and come out of
//! [`blkback::BlockDevice::poll_completion`], which drains the completion
//! queue (a bounded amount of work per call).
//!
//! Wiring, as the rumpdisk domain is to do it:
//!
//! ```text
//! let spec = DiskSpec::parse("nvme0:0000:00:05.0/1")?;
//! let device = platform.pci_device(spec.bdf)?;        // implements pcidev::PciDevice
//! let mut nvme = Nvme::new(device, Config::new(spec.nsid));
//! while nvme.poll_bring_up(clock.now_ms()) == Status::Starting {
//!     platform.wait(10 ms);
//! }
//! backend.add_device(spec.name, nvme)?;                // blkback takes it
//! loop {
//!     // ... events; a device interrupt is a reason to call backend.poll ...
//!     backend.device_mut(spec.name).unwrap().tick(clock.now_ms());
//! }
//! ```
//!
//! The controller is not trusted: a register that reads all ones, a
//! completion for a command not in flight, a fatal status or a command that
//! never completes stops the driver with an [`NvmeError`], fails every
//! request in flight with [`blkback::IoError::Media`], and keeps (never
//! frees) every buffer the controller might still write.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod disk_spec;
mod driver;
#[cfg(feature = "model")]
pub mod model;
pub mod spec;

pub use disk_spec::{DiskSpec, DiskSpecError, MAX_NAME_LEN};
pub use driver::{Config, Nvme, NvmeError, Status};
