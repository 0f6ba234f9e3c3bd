//! DMA memory: buffers whose bus address is their machine address.
//!
//! A PV domain's pages are where the IOMMU maps them: at their machine
//! frame numbers. A one-page buffer is therefore always contiguous on the
//! bus, but a larger one must be machine-contiguous, which our pages
//! generally are not. At first use we trade runs of ordinary pages for
//! 2 MiB machine-contiguous extents with `XENMEM_exchange` (`memory.h`; as
//! Linux's `xen_create_contiguous_region` does) and carve buffers out of
//! those regions; if Xen refuses, only buffers of at most one page are
//! offered, taken straight from the heap.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::sync::atomic::{fence, Ordering};

use pcidev::{check_range, BusAddress, PciError};

use crate::foreign::{copy_from_foreign, copy_to_foreign};
use crate::heap::FreeRanges;
use crate::layout::{virt_to_pfn, PAGE_SIZE};
use crate::pci::DmaRegion;
use crate::pv::hypercall::hypercall_op;
use crate::pv::{mm, Global};

/// Order of one exchanged extent: 512 pages, 2 MiB, the largest Xen lets a
/// domain with a passed-through device ask for (`CONFIG_PTDOM_MAX_ORDER`).
const EXTENT_ORDER: u32 = 9;
/// Regions made at first use: room for several 1 MiB requests in flight
/// besides the queues.
const REGIONS: usize = 4;
/// Smallest unit handed out, so buffers never share a cache line.
const GRANULE: usize = 64;

struct Region {
    region: DmaRegion,
    free: Box<FreeRanges>,
}

enum Pool {
    Untried,
    Ready(Vec<Region>),
}

static POOL: Global<Pool> = Global::new(Pool::Untried);

/// A buffer of DMA memory.
#[derive(Debug)]
pub struct XenDmaBuffer {
    address: u64,
    length: usize,
    /// Bytes reserved (the length rounded up to the granule, or a page).
    reserved: usize,
    bus: u64,
    /// Index of the region it came from, or `None` for a heap page.
    region: Option<usize>,
}

/// Issues `XENMEM_<command>` with its argument structure.
///
/// # Safety
///
/// `argument` must be the structure `command` takes, and its guest handles
/// must point at arrays that live across the call.
unsafe fn memory_op<T>(command: u32, argument: &mut T) -> i64 {
    // SAFETY: the caller pairs `command` with its structure and arrays.
    unsafe { hypercall_op(xen_abi::__HYPERVISOR_memory_op, command, argument) }
}

fn map_page(address: u64, mfn: u64) -> i64 {
    // SAFETY: `address` is a page of our own heap range and `mfn` the frame
    // that backs it (old or newly exchanged); nothing else maps it.
    unsafe { mm::update_va_mapping(address, (mfn << 12) | 0x67) }
}

/// Trades the `1 << EXTENT_ORDER` pages of a fresh heap range for one
/// machine-contiguous extent.
fn exchange_region() -> Result<DmaRegion, i64> {
    let pages = 1usize << EXTENT_ORDER;
    let length = pages * PAGE_SIZE as usize;
    let layout = Layout::from_size_align(length, PAGE_SIZE as usize).map_err(|_| 0)?;
    // SAFETY: a non-zero-sized layout. The range is kept for the domain's
    // life.
    let base = unsafe { alloc::alloc::alloc(layout) } as u64;
    if base == 0 {
        return Err(-12);
    }
    let page_address = |index: usize| base + index as u64 * PAGE_SIZE;
    // A heap page always has a pfn; if one had none, pfn 0 must not stand
    // in for it (its p2m entry would be overwritten below).
    let pfns: Option<Vec<u64>> = (0..pages)
        .map(|index| virt_to_pfn(page_address(index)))
        .collect();
    let Some(pfns) = pfns else {
        // SAFETY: nothing was unmapped yet; the range goes back to the heap
        // it came from, allocated above with `layout`.
        unsafe { alloc::alloc::dealloc(base as *mut u8, layout) };
        return Err(-22);
    };
    let mut old_mfns: Vec<u64> = pfns.iter().map(|&pfn| mm::pfn_to_mfn(pfn)).collect();
    // Xen takes only frames nobody maps.
    for index in 0..pages {
        let rc = map_page_out(page_address(index));
        if rc != 0 {
            for (undo, &mfn) in old_mfns.iter().enumerate().take(index) {
                map_page(page_address(undo), mfn);
            }
            // SAFETY: every page is mapped as before; the range goes back
            // to the heap it came from.
            unsafe { alloc::alloc::dealloc(base as *mut u8, layout) };
            return Err(rc);
        }
    }
    let mut new_mfn: xen_abi::xen_pfn_t = 0;
    let in_list = old_mfns.clone();
    let mut exchange = xen_abi::xen_memory_exchange {
        in_: xen_abi::xen_memory_reservation {
            extent_start: xen_abi::__guest_handle_xen_pfn_t {
                p: old_mfns.as_mut_ptr(),
            },
            nr_extents: pages as u64,
            extent_order: 0,
            mem_flags: 0,
            domid: xen_abi::DOMID_SELF,
        },
        out: xen_abi::xen_memory_reservation {
            extent_start: xen_abi::__guest_handle_xen_pfn_t { p: &mut new_mfn },
            nr_extents: 1,
            extent_order: EXTENT_ORDER,
            mem_flags: 0,
            domid: xen_abi::DOMID_SELF,
        },
        nr_exchanged: 0,
    };
    // SAFETY: XENMEM_exchange takes a `struct xen_memory_exchange`, whose
    // in and out extent arrays live on this stack frame across the call.
    let rc = unsafe { memory_op(xen_abi::XENMEM_exchange, &mut exchange) };
    if rc != 0 || exchange.nr_exchanged != pages as u64 {
        // One output extent is exchanged whole or not at all: our frames
        // are still ours.
        for (index, &mfn) in in_list.iter().enumerate() {
            map_page(page_address(index), mfn);
        }
        // SAFETY: as above.
        unsafe { alloc::alloc::dealloc(base as *mut u8, layout) };
        return Err(if rc != 0 { rc } else { -1 });
    }
    let mut updates: Vec<xen_abi::mmu_update> = Vec::with_capacity(pages);
    for (index, &pfn) in pfns.iter().enumerate() {
        let mfn = new_mfn + index as u64;
        // SAFETY: Xen just gave us `mfn` in exchange for the old frame of
        // `pfn`, which is unmapped and no longer ours.
        unsafe { mm::set_pfn_to_mfn(pfn, mfn) };
        updates.push(xen_abi::mmu_update {
            ptr: (mfn << 12) | u64::from(xen_abi::MMU_MACHPHYS_UPDATE),
            val: pfn,
        });
    }
    // From here on a failure leaks the range: it never goes back to the
    // heap, so its pfns keep the new frames (the p2m above is right for
    // them) and nothing else will map or hand out those pages.
    // SAFETY: m2p updates of frames that are ours, pointing at their pfns.
    if let Err((rc, done)) = unsafe { mm::mmu_update(&updates) } {
        // A frame whose m2p entry is stale would translate back to the
        // wrong pfn; such a range is not used.
        log::error!("pci: m2p update after exchange failed: {rc} ({done} of {pages} done)");
        return Err(rc);
    }
    for index in 0..pages {
        let rc = map_page(page_address(index), new_mfn + index as u64);
        if rc != 0 {
            // The range is half mapped; leave it out of every pool.
            log::error!("pci: cannot map exchanged frame: {rc}");
            return Err(rc);
        }
    }
    Ok(DmaRegion {
        base,
        bus_base: new_mfn << 12,
        length: length as u64,
    })
}

fn map_page_out(address: u64) -> i64 {
    // SAFETY: the page belongs to a heap range we just took and nobody
    // uses; unmapping it lets Xen take its frame.
    unsafe { mm::update_va_mapping(address, 0) }
}

fn make_pool() -> Vec<Region> {
    let mut regions = Vec::new();
    for _ in 0..REGIONS {
        match exchange_region() {
            Ok(region) => {
                log::info!(
                    "pci: DMA region of {} KiB at bus address {:#x}",
                    region.length >> 10,
                    region.bus_base
                );
                let mut free = Box::new(FreeRanges::new());
                free.free(region.base as usize, region.length as usize);
                regions.push(Region { region, free });
            }
            Err(rc) => {
                log::warn!("pci: XENMEM_exchange refused ({rc}); DMA buffers larger than a page are limited to the regions made so far");
                break;
            }
        }
    }
    regions
}

/// Zeroes a buffer just taken from a region (granule-aligned and sized).
fn zero(address: u64, length: usize) {
    for offset in (0..length).step_by(8) {
        // SAFETY: `[address, address + length)` is a buffer we just took
        // and own, 64-byte aligned and sized; the device cannot reach it yet.
        unsafe { ((address as usize + offset) as *mut u64).write_volatile(0) };
    }
}

/// Allocates `length` zeroed bytes aligned to `align` (at most a page).
pub fn allocate(length: usize, align: usize) -> Result<XenDmaBuffer, PciError> {
    if length == 0 || !align.is_power_of_two() || align > PAGE_SIZE as usize {
        return Err(PciError::OutOfMemory);
    }
    let reserved = length
        .checked_next_multiple_of(GRANULE)
        .ok_or(PciError::OutOfMemory)?;
    let align = align.max(GRANULE);
    let mut pool = POOL.borrow_mut();
    if let Pool::Untried = *pool {
        *pool = Pool::Ready(make_pool());
    }
    if let Pool::Ready(regions) = &mut *pool {
        for (index, region) in regions.iter_mut().enumerate() {
            if let Some(address) = region.free.allocate(reserved, align) {
                let address = address as u64;
                let bus = region
                    .region
                    .bus_address(address)
                    .ok_or(PciError::OutOfMemory)?;
                zero(address, reserved);
                return Ok(XenDmaBuffer {
                    address,
                    length,
                    reserved,
                    bus,
                    region: Some(index),
                });
            }
        }
    }
    drop(pool);
    // A single page is machine-contiguous by itself.
    if length <= PAGE_SIZE as usize {
        let layout = Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize)
            .map_err(|_| PciError::OutOfMemory)?;
        // SAFETY: a non-zero-sized layout.
        let address = unsafe { alloc::alloc::alloc_zeroed(layout) } as u64;
        if address == 0 {
            return Err(PciError::OutOfMemory);
        }
        return Ok(XenDmaBuffer {
            address,
            length,
            reserved: PAGE_SIZE as usize,
            bus: mm::virt_to_mfn(address) << 12,
            region: None,
        });
    }
    Err(PciError::OutOfMemory)
}

/// Takes back a buffer the device can no longer reach.
pub fn free(buffer: XenDmaBuffer) {
    match buffer.region {
        Some(index) => {
            if let Pool::Ready(regions) = &mut *POOL.borrow_mut() {
                if let Some(region) = regions.get_mut(index) {
                    region.free.free(buffer.address as usize, buffer.reserved);
                }
            }
        }
        None => {
            if let Ok(layout) = Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize) {
                // SAFETY: a heap page allocated in `allocate` with this
                // layout; the caller guarantees the device is done with it.
                unsafe { alloc::alloc::dealloc(buffer.address as *mut u8, layout) };
            }
        }
    }
}

impl XenDmaBuffer {
    /// Virtual address of the buffer's first byte (for the rump kernel's
    /// PCI host, which hands out pointers, not buffer objects).
    pub fn virtual_address(&self) -> u64 {
        self.address
    }
}

impl pcidev::DmaBuffer for XenDmaBuffer {
    fn len(&self) -> usize {
        self.length
    }

    fn bus_address(&self) -> BusAddress {
        BusAddress(self.bus)
    }

    fn read(&self, offset: usize, destination: &mut [u8]) -> Result<(), PciError> {
        check_range(self.length as u64, offset as u64, destination.len() as u64)?;
        fence(Ordering::SeqCst);
        // SAFETY: `[offset, offset + destination.len())` is inside the
        // buffer (checked above), which is mapped and ours until `free`;
        // the copy is volatile because the device may be writing it.
        unsafe { copy_from_foreign(self.address as usize + offset, destination) };
        fence(Ordering::SeqCst);
        Ok(())
    }

    fn write(&self, offset: usize, source: &[u8]) -> Result<(), PciError> {
        check_range(self.length as u64, offset as u64, source.len() as u64)?;
        fence(Ordering::SeqCst);
        // SAFETY: as in `read`: inside the buffer (checked above), mapped
        // and ours until `free`.
        unsafe { copy_to_foreign(self.address as usize + offset, source) };
        fence(Ordering::SeqCst);
        Ok(())
    }
}
