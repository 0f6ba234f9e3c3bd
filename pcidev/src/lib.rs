//! Safe access to one passed-through PCI device: the traits device drivers
//! are generic over.
//!
//! Layer: the platform contract for PCI drivers, the PCI counterpart of
//! `xenbus::platform`. Below it sits the platform: `rumpuser-xen`
//! (`pv::pci::PciDevice`) implements these traits over pcifront (config
//! space through
//! [`xen/io/pciif.h`](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/io/pciif.h)),
//! mapped BARs, event channels bound to MSI-X/MSI/INTx, and DMA-able
//! memory; the drivers' behavioural device models implement them
//! over plain memory for tests. Above it sit the drivers
//! (`drivers/nvme`, the e1000 driver), which are `forbid(unsafe_code)` and
//! see nothing of the hardware but what is here. See `docs/nvme.md` for the
//! contract a platform must honour.
//!
//! A device is hostile in the same way a foreign domain is: its registers
//! and the DMA memory it writes can hold any value at any moment. Nothing
//! here hands out a reference into device-visible memory; every access is a
//! copy, and every out-of-range access is an error, never a panic.
//!
//! Ordering: every call is one access performed in program order with
//! respect to every other call on the same device, DMA buffers included. A
//! platform puts the needed barriers inside its implementation (on x86 a
//! compiler fence around volatile accesses to uncached or coherent memory).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod address;
mod capability;
mod config;

pub use address::{Bdf, BdfError};
pub use capability::{capabilities, find_capability, Capability, CapabilityId};
pub use config::{
    enable_bus_master, register, COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE, COMMAND_MEMORY_SPACE,
};

use core::fmt;

/// Why a device access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// The access lies outside the region.
    OutOfBounds,
    /// The offset is not a multiple of the access width.
    Misaligned,
    /// The BAR is not implemented, not a memory BAR, or not mapped.
    NoSuchBar,
    /// The device no longer answers (removed, reset, or reads all ones).
    DeviceGone,
    /// The platform does not let this domain perform the access.
    Denied,
    /// No DMA memory of the requested size and alignment is available.
    OutOfMemory,
    /// The requested interrupt mode or vector is not available.
    NoSuchVector,
    /// The capability list loops, points into the header, or runs too long.
    MalformedCapabilityList,
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutOfBounds => "the access lies outside the region",
            Self::Misaligned => "the offset is not a multiple of the access width",
            Self::NoSuchBar => "the BAR is not implemented, not a memory BAR, or not mapped",
            Self::DeviceGone => "the device no longer answers",
            Self::Denied => "the platform does not let this domain perform the access",
            Self::OutOfMemory => "no DMA memory of the requested size and alignment is available",
            Self::NoSuchVector => "the requested interrupt mode or vector is not available",
            Self::MalformedCapabilityList => {
                "the capability list loops, points into the header, or runs too long"
            }
        })
    }
}

/// The device's 256-byte (or 4 KiB, with extended space) configuration space.
pub trait ConfigSpace {
    /// Reads the byte at `offset`.
    fn config_read8(&mut self, offset: u16) -> Result<u8, PciError>;
    /// Reads the little-endian `u16` at `offset` (2-byte aligned).
    fn config_read16(&mut self, offset: u16) -> Result<u16, PciError>;
    /// Reads the little-endian `u32` at `offset` (4-byte aligned).
    fn config_read32(&mut self, offset: u16) -> Result<u32, PciError>;
    /// Writes the byte at `offset`.
    fn config_write8(&mut self, offset: u16, value: u8) -> Result<(), PciError>;
    /// Writes the `u16` at `offset` (2-byte aligned).
    fn config_write16(&mut self, offset: u16, value: u16) -> Result<(), PciError>;
    /// Writes the `u32` at `offset` (4-byte aligned).
    fn config_write32(&mut self, offset: u16, value: u32) -> Result<(), PciError>;
}

/// Memory-mapped BARs. `bar` is the BAR index 0..=5 (a 64-bit BAR is named
/// by its lower index). Offsets are bytes from the start of the BAR and
/// must be aligned to the access width; the platform checks both against
/// the BAR's length, uses exactly one access of that width, and reports
/// [`PciError`] instead of touching anything outside.
pub trait Mmio {
    /// Length in bytes of memory BAR `bar`, as mapped.
    fn bar_len(&mut self, bar: u8) -> Result<u64, PciError>;
    /// Loads a `u32` register.
    fn read32(&mut self, bar: u8, offset: u64) -> Result<u32, PciError>;
    /// Stores a `u32` register.
    fn write32(&mut self, bar: u8, offset: u64, value: u32) -> Result<(), PciError>;
    /// Loads a `u64` register.
    fn read64(&mut self, bar: u8, offset: u64) -> Result<u64, PciError>;
    /// Stores a `u64` register.
    fn write64(&mut self, bar: u8, offset: u64, value: u64) -> Result<(), PciError>;
}

/// Checks a register access of `width` bytes (1, 2, 4 or 8) at `offset`
/// into a region of `len` bytes: the rule every [`Mmio`] and
/// [`ConfigSpace`] implementation applies.
pub fn check_register(len: u64, offset: u64, width: u64) -> Result<(), PciError> {
    if !offset.is_multiple_of(width.max(1)) {
        return Err(PciError::Misaligned);
    }
    check_range(len, offset, width)
}

/// Checks a copy of `count` bytes at `offset` into a region of `len` bytes:
/// the rule every [`DmaBuffer`] implementation applies.
pub fn check_range(len: u64, offset: u64, count: u64) -> Result<(), PciError> {
    match offset.checked_add(count) {
        Some(end) if end <= len => Ok(()),
        _ => Err(PciError::OutOfBounds),
    }
}

/// An address as the device sees it on the bus (what goes in a descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusAddress(pub u64);

/// Memory the device reads and writes by DMA: physically contiguous, and
/// coherent with the CPU (or made so by the platform around each access).
/// The device may change it at any moment, so it is only ever copied.
pub trait DmaBuffer {
    /// Length in bytes.
    fn len(&self) -> usize;
    /// Whether the buffer is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bus address of the first byte; byte `n` is at this address plus `n`.
    fn bus_address(&self) -> BusAddress;
    /// Copies `destination.len()` bytes out of the buffer from `offset` on.
    fn read(&self, offset: usize, destination: &mut [u8]) -> Result<(), PciError>;
    /// Copies `source` into the buffer from `offset` on.
    fn write(&self, offset: usize, source: &[u8]) -> Result<(), PciError>;
}

/// DMA memory allocation.
pub trait Dma {
    /// A buffer made by [`Dma::allocate`].
    type Buffer: DmaBuffer;

    /// Allocates `len` zeroed bytes, physically contiguous, with a bus
    /// address that is a multiple of `align` (a power of two, at most 4096).
    fn allocate(&mut self, len: usize, align: usize) -> Result<Self::Buffer, PciError>;

    /// Returns a buffer. The caller must first make sure the device can no
    /// longer reach it (the command finished, or the device was disabled); a
    /// buffer the device may still write is kept, never freed. A buffer
    /// dropped without `free` is leaked, which is safe.
    fn free(&mut self, buffer: Self::Buffer);
}

/// How the device signals interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptMode {
    /// MSI-X: vectors from the device's MSI-X table.
    MsiX,
    /// MSI: a power-of-two block of vectors.
    Msi,
    /// The legacy shared, level-triggered INTx pin: vector 0 only.
    Intx,
}

/// Device interrupts, delivered as events the driver polls. When a vector
/// fires, the platform records it and masks it; [`Interrupts::take_fired`]
/// reports it once, and it fires again only after [`Interrupts::unmask`].
/// A driver therefore takes the event, drains the device's queues, then
/// unmasks: an interrupt raised while draining is not lost, it fires at
/// unmask.
pub trait Interrupts {
    /// Routes up to `count` vectors (numbered from 0) of `mode` to this
    /// domain, all unmasked, and returns how many were granted (at least 1).
    fn enable_interrupts(&mut self, mode: InterruptMode, count: u16) -> Result<u16, PciError>;
    /// Stops delivery of every vector.
    fn disable_interrupts(&mut self);
    /// Takes one vector that fired since it was last taken.
    fn take_fired(&mut self) -> Option<u16>;
    /// Lets `vector` fire again.
    fn unmask(&mut self, vector: u16);
}

/// Everything a driver needs of its device, in one bound.
pub trait PciDevice: ConfigSpace + Mmio + Dma + Interrupts {}

impl<T: ConfigSpace + Mmio + Dma + Interrupts> PciDevice for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_checks() {
        assert_eq!(check_register(0x1000, 0xffc, 4), Ok(()));
        assert_eq!(check_register(0x1000, 0xffd, 4), Err(PciError::Misaligned));
        assert_eq!(
            check_register(0x1000, 0x1000, 4),
            Err(PciError::OutOfBounds)
        );
        assert_eq!(check_register(0x1000, 0xff8, 8), Ok(()));
        assert_eq!(
            check_register(0x1000, u64::MAX - 7, 8),
            Err(PciError::OutOfBounds)
        );
        // Copies need no alignment, only room.
        assert_eq!(check_range(0x1000, 3, 17), Ok(()));
        assert_eq!(check_range(0x1000, 0xff0, 17), Err(PciError::OutOfBounds));
        assert_eq!(check_range(0x1000, u64::MAX, 1), Err(PciError::OutOfBounds));
    }
}
