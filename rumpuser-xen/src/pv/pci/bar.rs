//! Memory BARs mapped uncached into our address space.
//!
//! The toolstack gives the domain `iomem` permission for the BARs of the
//! functions it passes through, and Xen then accepts a page-table entry of
//! ours that points at those machine pages: it sees the frame is not RAM
//! (or belongs to `DOMID_IO`) and checks the permission against the
//! caller. The foreign-domain form (`update_va_mapping_otherdomain` with
//! `DOMID_IO`) is refused to a domU by Xen's default XSM policy, so a plain
//! `update_va_mapping` is used, as Linux's ioremap does. The
//! virtual range is a heap allocation whose own frames are set aside (kept
//! allocated, unused) for as long as the BAR is mapped, which is the
//! domain's life.

use core::alloc::Layout;
use core::sync::atomic::{compiler_fence, Ordering};

use crate::layout::{virt_to_pfn, PAGE_SIZE};
use crate::pci::{mmio_pte, MemoryBar};
use crate::pv::mm;

/// Most bytes of one BAR we map: enough for any NVMe or NIC register file
/// (the rest of a larger BAR is not mapped, and `bar_len` says so).
pub const MAX_MAPPED_BYTES: u64 = 4 << 20;

/// A BAR mapped at a virtual address.
#[derive(Debug, Clone, Copy)]
pub struct MappedBar {
    /// Virtual address of the BAR's first byte.
    address: u64,
    /// Bytes mapped.
    length: u64,
}

/// Why a BAR could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// no virtual range could be taken from the heap
    OutOfMemory,
    /// Xen refused the mapping (no iomem permission?)
    Refused(i64),
    /// the BAR is unassigned (address 0) or reaches beyond the 52 bits a
    /// page-table entry holds
    BadAddress,
    /// nothing, or more than `MAX_MAPPED_BYTES`, was asked for
    BadLength,
}

/// End of the machine addresses a page-table entry can name.
const MACHINE_ADDRESS_LIMIT: u64 = 1 << 52;

fn restore(address: u64) {
    let Some(pfn) = virt_to_pfn(address) else {
        return;
    };
    // SAFETY: puts back the mapping of our own frame that the page had
    // before `map` replaced it; nothing used the page in between.
    unsafe {
        mm::update_va_mapping(address, (mm::pfn_to_mfn(pfn) << 12) | 0x67);
    }
}

/// Maps `bar` (at most [`MAX_MAPPED_BYTES`] of it), uncached.
pub fn map(bar: &MemoryBar) -> Result<MappedBar, MapError> {
    map_range(bar.address, bar.length.min(MAX_MAPPED_BYTES))
}

/// Maps `length` bytes of device memory from `machine_address` on,
/// uncached. The length must be from 1 to [`MAX_MAPPED_BYTES`].
pub fn map_range(machine_address: u64, length: u64) -> Result<MappedBar, MapError> {
    if length == 0 || length > MAX_MAPPED_BYTES {
        return Err(MapError::BadLength);
    }
    let first_page = machine_address & !(PAGE_SIZE - 1);
    let in_page = machine_address - first_page;
    let span = (in_page + length).next_multiple_of(PAGE_SIZE);
    // `mmio_pte` keeps only the frame bits: a higher address would map
    // some other frame.
    if machine_address == 0 || first_page.saturating_add(span) > MACHINE_ADDRESS_LIMIT {
        return Err(MapError::BadAddress);
    }
    let layout = Layout::from_size_align(span as usize, PAGE_SIZE as usize)
        .map_err(|_| MapError::OutOfMemory)?;
    // SAFETY: a non-zero-sized layout.
    let base = unsafe { alloc::alloc::alloc(layout) } as u64;
    if base == 0 {
        return Err(MapError::OutOfMemory);
    }
    let mut page = 0;
    while page < span {
        // SAFETY: the page is a heap page we own and nobody uses; it now
        // shows the device's registers, reached only through `MappedBar`'s
        // volatile accesses.
        let rc = unsafe { mm::update_va_mapping(base + page, mmio_pte(first_page + page)) };
        if rc != 0 {
            let mut undo = 0;
            while undo < page {
                restore(base + undo);
                undo += PAGE_SIZE;
            }
            // SAFETY: every page has its own frame back; the range is the
            // heap's again, allocated above with `layout`.
            unsafe { alloc::alloc::dealloc(base as *mut u8, layout) };
            return Err(MapError::Refused(rc));
        }
        page += PAGE_SIZE;
    }
    Ok(MappedBar {
        address: base + in_page,
        length,
    })
}

impl MappedBar {
    /// Virtual address of the first byte mapped.
    pub fn address(&self) -> u64 {
        self.address
    }

    /// Bytes mapped (never zero).
    pub fn mapped_bytes(&self) -> u64 {
        self.length
    }

    fn register(&self, offset: u64, width: u64) -> Result<u64, pcidev::PciError> {
        pcidev::check_register(self.length, offset, width)?;
        Ok(self.address + offset)
    }

    /// One 32-bit load.
    pub fn read32(&self, offset: u64) -> Result<u32, pcidev::PciError> {
        let address = self.register(offset, 4)?;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: inside the mapped BAR (checked), aligned; a volatile
        // access of exactly this width.
        let value = unsafe { (address as *const u32).read_volatile() };
        compiler_fence(Ordering::SeqCst);
        Ok(value)
    }

    /// One 32-bit store.
    pub fn write32(&self, offset: u64, value: u32) -> Result<(), pcidev::PciError> {
        let address = self.register(offset, 4)?;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as for `read32`.
        unsafe { (address as *mut u32).write_volatile(value) };
        compiler_fence(Ordering::SeqCst);
        Ok(())
    }

    /// One 64-bit load.
    pub fn read64(&self, offset: u64) -> Result<u64, pcidev::PciError> {
        let address = self.register(offset, 8)?;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as for `read32`.
        let value = unsafe { (address as *const u64).read_volatile() };
        compiler_fence(Ordering::SeqCst);
        Ok(value)
    }

    /// One 64-bit store.
    pub fn write64(&self, offset: u64, value: u64) -> Result<(), pcidev::PciError> {
        let address = self.register(offset, 8)?;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as for `read32`.
        unsafe { (address as *mut u64).write_volatile(value) };
        compiler_fence(Ordering::SeqCst);
        Ok(())
    }
}
