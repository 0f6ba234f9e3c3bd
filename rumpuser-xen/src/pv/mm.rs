//! Memory: the p2m/m2p translations, the page tables, the heap.
//!
//! PV page tables hold machine frame numbers and are read-only to the guest;
//! every change goes through `HYPERVISOR_mmu_update` (or
//! `update_va_mapping` for one leaf), which Xen validates. The domain
//! builder maps only the image and its bootstrap data; [`init`] maps the
//! remaining pseudo-physical pages 1:1 at `VIRT_BASE + pfn * 4096`, creates
//! empty leaf tables for the grant window, and gives what is left to the
//! heap.

use core::alloc::{GlobalAlloc, Layout};

use super::abi::{mmu_update, start_info, MACH2PHYS_VIRT_START};
use super::hypercall::hypercall;
use super::Global;
use crate::heap::FreeRanges;
use crate::layout::{
    pfn_to_virt, table_index, virt_to_pfn, GRANT_WINDOW_BASE, GRANT_WINDOW_PAGES, MAX_MAPPED_PAGES,
    PAGE_SIZE,
};

const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
const PTE_ACCESSED: u64 = 1 << 5;
const PTE_DIRTY: u64 = 1 << 6;
const PTE_FRAME: u64 = 0x000f_ffff_ffff_f000;
/// Flags of a writable data page and of a table entry pointing to a table.
/// 64-bit PV kernels run in ring 3, so every level needs the user bit.
const PAGE_FLAGS: u64 = PTE_PRESENT | PTE_WRITABLE | PTE_USER | PTE_ACCESSED | PTE_DIRTY;
const TABLE_FLAGS: u64 = PTE_PRESENT | PTE_WRITABLE | PTE_USER | PTE_ACCESSED;
/// A page-table page as the guest maps it: read-only.
const READ_ONLY_FLAGS: u64 = PTE_PRESENT | PTE_USER | PTE_ACCESSED;
/// `MMU_NORMAL_PT_UPDATE` in the low bits of `mmu_update.ptr`.
const NORMAL_PT_UPDATE: u64 = xen_abi::MMU_NORMAL_PT_UPDATE as u64;

struct Memory {
    /// `start_info.mfn_list`: the p2m table.
    mfn_list: u64,
    nr_pages: u64,
    /// Virtual address of the level-4 table.
    pt_base: u64,
}

static MEMORY: Global<Memory> = Global::new(Memory {
    mfn_list: 0,
    nr_pages: 0,
    pt_base: 0,
});

/// Machine frame of pseudo-physical frame `pfn` (the p2m).
pub fn pfn_to_mfn(pfn: u64) -> u64 {
    let memory = MEMORY.borrow();
    assert!(pfn < memory.nr_pages, "pfn {pfn:#x} beyond the p2m");
    // SAFETY: the p2m has `nr_pages` entries, mapped by the domain builder
    // and never unmapped; `pfn` is in range.
    unsafe {
        (memory.mfn_list as *const u64)
            .add(pfn as usize)
            .read_volatile()
    }
}

/// Points the p2m entry of `pfn` at `mfn`: used by the PCI layer after
/// `XENMEM_exchange` gave a run of our pseudo-physical frames new machine
/// frames (`pv::pci`, DMA memory).
///
/// # Safety
///
/// `mfn` must be a frame Xen gave this domain to back `pfn`, and the old
/// frame must no longer be mapped or used.
pub unsafe fn set_pfn_to_mfn(pfn: u64, mfn: u64) {
    let memory = MEMORY.borrow();
    assert!(pfn < memory.nr_pages, "pfn {pfn:#x} beyond the p2m");
    // SAFETY: the p2m has `nr_pages` entries, mapped writable by the
    // domain builder for the domain's life; `pfn` is in range, and the
    // caller vouches for the new value.
    unsafe {
        (memory.mfn_list as *mut u64)
            .add(pfn as usize)
            .write_volatile(mfn)
    }
}

/// Pseudo-physical frame of machine frame `mfn` (Xen's read-only m2p).
pub fn mfn_to_pfn(mfn: u64) -> u64 {
    // SAFETY: Xen maps the machine-to-phys table read-only into every PV
    // guest at MACH2PHYS_VIRT_START; it covers all machine frames and a frame
    // of ours is always in it.
    unsafe {
        (MACH2PHYS_VIRT_START as *const u64)
            .add(mfn as usize)
            .read_volatile()
    }
}

/// Machine frame backing the 1:1-mapped virtual address `address`.
pub fn virt_to_mfn(address: u64) -> u64 {
    let pfn = virt_to_pfn(address).expect("address outside the 1:1 area");
    pfn_to_mfn(pfn)
}

/// Virtual address of one of our own machine frames in the 1:1 area.
pub fn mfn_to_virt(mfn: u64) -> u64 {
    pfn_to_virt(mfn_to_pfn(mfn))
}

/// Replaces the leaf mapping of `address` with `pte` (0 unmaps).
///
/// # Safety
///
/// Nothing may use the old mapping of `address` afterwards, and the new
/// mapping must not alias memory Rust code owns elsewhere.
pub unsafe fn update_va_mapping(address: u64, pte: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe {
        hypercall(
            xen_abi::__HYPERVISOR_update_va_mapping,
            address,
            pte,
            u64::from(xen_abi::UVMF_INVLPG),
            0,
            0,
        )
    }
}

fn update_page_tables(updates: &[mmu_update]) {
    if updates.is_empty() {
        return;
    }
    // SAFETY: `updates` is an array of valid `mmu_update` requests; each one
    // either maps a fresh frame of ours or links a zeroed, read-only table,
    // so no memory in use changes meaning.
    if let Err((rc, done)) = unsafe { mmu_update(updates) } {
        panic!("mmu_update failed: {rc} after {done} of {}", updates.len());
    }
}

/// Issues `updates` in one `HYPERVISOR_mmu_update` call on our own
/// domain. On failure, returns Xen's error code and how many requests were
/// done before it.
///
/// # Safety
///
/// No request may change what memory in use maps to, or the meaning of a
/// page table or machine-to-physical entry anything relies on.
pub(crate) unsafe fn mmu_update(updates: &[mmu_update]) -> Result<(), (i64, u32)> {
    let mut done = 0u32;
    // SAFETY: the requests are valid and harmless (the caller's contract);
    // `done` outlives the call.
    let rc = unsafe {
        hypercall(
            xen_abi::__HYPERVISOR_mmu_update,
            updates.as_ptr() as u64,
            updates.len() as u64,
            &mut done as *mut u32 as u64,
            u64::from(xen_abi::DOMID_SELF),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err((rc, done))
    }
}

/// Builds the page tables of the 1:1 area, page by page.
struct TableBuilder {
    /// Next pseudo-physical frame never used for anything.
    next_free_pfn: u64,
    batch: [mmu_update; 128],
    batched: usize,
}

impl TableBuilder {
    fn entry(table_va: u64, index: usize) -> u64 {
        // SAFETY: `table_va` is the mapped (read-only) address of a live
        // page table of ours; reading an entry is always allowed.
        unsafe { (table_va as *const u64).add(index).read_volatile() }
    }

    fn flush(&mut self) {
        update_page_tables(&self.batch[..self.batched]);
        self.batched = 0;
    }

    fn push(&mut self, update: mmu_update) {
        self.batch[self.batched] = update;
        self.batched += 1;
        if self.batched == self.batch.len() {
            self.flush();
        }
    }

    /// Takes a free frame, zeroes it and remaps it read-only so Xen will
    /// accept it as a page table. Returns its mfn.
    fn new_table(&mut self, memory: &Memory) -> u64 {
        let pfn = self.next_free_pfn;
        self.next_free_pfn += 1;
        assert!(pfn < memory.nr_pages, "out of memory for page tables");
        let address = pfn_to_virt(pfn);
        assert!(
            self.leaf(memory, address).is_some(),
            "page-table frame {pfn:#x} is not in the bootstrap mapping"
        );
        // SAFETY: the frame is free (never handed out) and mapped writable
        // by the bootstrap tables, checked above.
        unsafe { core::ptr::write_bytes(address as *mut u8, 0, PAGE_SIZE as usize) };
        let mfn = pfn_to_mfn(pfn);
        // SAFETY: the frame is ours and unused; mapping it read-only changes
        // no memory Rust code refers to.
        let rc = unsafe { update_va_mapping(address, (mfn << 12) | READ_ONLY_FLAGS) };
        assert!(rc == 0, "cannot make frame {pfn:#x} read-only: {rc}");
        mfn
    }

    /// Walks to the leaf table of `address`; returns (leaf table va, leaf
    /// table mfn) if every upper level exists.
    fn leaf(&self, memory: &Memory, address: u64) -> Option<(u64, u64)> {
        let mut table_va = memory.pt_base;
        let mut table_mfn = 0;
        for level in [4, 3, 2] {
            let entry = Self::entry(table_va, table_index(address, level));
            if entry & PTE_PRESENT == 0 {
                return None;
            }
            table_mfn = (entry & PTE_FRAME) >> 12;
            table_va = mfn_to_virt(table_mfn);
        }
        Some((table_va, table_mfn))
    }

    /// Like [`Self::leaf`], creating missing levels.
    fn ensure_leaf(&mut self, memory: &Memory, address: u64) -> (u64, u64) {
        let mut table_va = memory.pt_base;
        let mut table_mfn = virt_to_mfn(memory.pt_base);
        for level in [4, 3, 2] {
            let index = table_index(address, level);
            let entry = Self::entry(table_va, index);
            let child_mfn = if entry & PTE_PRESENT != 0 {
                (entry & PTE_FRAME) >> 12
            } else {
                // Pending leaf updates might target the table we are about
                // to link under; order does not matter to Xen, but flushing
                // keeps the batch about one table at a time.
                self.flush();
                let child = self.new_table(memory);
                update_page_tables(&[mmu_update {
                    ptr: ((table_mfn << 12) + index as u64 * 8) | NORMAL_PT_UPDATE,
                    val: (child << 12) | TABLE_FLAGS,
                }]);
                child
            };
            table_mfn = child_mfn;
            table_va = mfn_to_virt(child_mfn);
        }
        (table_va, table_mfn)
    }
}

/// Maps all memory and sets up the heap. Called once, first thing at boot.
pub fn init(start_info: &start_info) {
    let nr_pages = start_info.nr_pages.min(MAX_MAPPED_PAGES);
    {
        let mut memory = MEMORY.borrow_mut();
        memory.mfn_list = start_info.mfn_list;
        memory.nr_pages = start_info.nr_pages;
        memory.pt_base = start_info.pt_base;
    }
    let memory = MEMORY.borrow();
    // The builder puts the page tables last (before the boot stack, which
    // we left); everything after them is free.
    let first_free_pfn = virt_to_pfn(start_info.pt_base).expect("pt_base outside the image area")
        + start_info.nr_pt_frames
        + 1;
    let mut builder = TableBuilder {
        next_free_pfn: first_free_pfn,
        batch: [mmu_update { ptr: 0, val: 0 }; 128],
        batched: 0,
    };
    let mut pfn = first_free_pfn;
    while pfn < nr_pages {
        let address = pfn_to_virt(pfn);
        let (leaf_va, leaf_mfn) = builder.ensure_leaf(&memory, address);
        let index = table_index(address, 1);
        // Leave existing entries alone: the bootstrap mapping and the
        // read-only page-table frames we just took.
        if TableBuilder::entry(leaf_va, index) & PTE_PRESENT == 0 {
            builder.push(mmu_update {
                ptr: ((leaf_mfn << 12) + index as u64 * 8) | NORMAL_PT_UPDATE,
                val: (pfn_to_mfn(pfn) << 12) | PAGE_FLAGS,
            });
        }
        pfn += 1;
    }
    builder.flush();
    let mut page = 0;
    while page < GRANT_WINDOW_PAGES {
        builder.ensure_leaf(&memory, GRANT_WINDOW_BASE + page * PAGE_SIZE);
        page += 512;
    }
    builder.flush();
    drop(memory);

    let heap_start = pfn_to_virt(builder.next_free_pfn);
    let heap_end = pfn_to_virt(nr_pages);
    HEAP.ranges
        .borrow_mut()
        .free(heap_start as usize, (heap_end - heap_start) as usize);
}

/// Bytes the heap has free right now.
pub fn heap_free_bytes() -> usize {
    HEAP.ranges.borrow().free_bytes()
}

/// The global allocator: [`FreeRanges`] over the 1:1-mapped free pages.
pub struct Heap {
    ranges: Global<FreeRanges>,
}

#[global_allocator]
static HEAP: Heap = Heap {
    ranges: Global::new(FreeRanges::new()),
};

// SAFETY: `FreeRanges` hands out disjoint, aligned ranges of mapped,
// writable memory that nothing else uses, and takes them back only on
// dealloc; the `Global` cell panics rather than allow re-entrant use.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self
            .ranges
            .borrow_mut()
            .allocate(layout.size(), layout.align())
        {
            Some(address) => address as *mut u8,
            None => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        self.ranges
            .borrow_mut()
            .free(pointer as usize, layout.size());
    }
}
