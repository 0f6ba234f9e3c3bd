//! Granting one of our own pages to another domain (`grant_table.h`,
//! version 1 entries): the direction the backends never need, and pcifront
//! does for its shared page.
//!
//! `GNTTABOP_setup_table` returns the machine frame of our first grant
//! table frame, which we map over a page taken from the heap. The
//! toolstack owns entries 0..8 (`GNTTAB_NR_RESERVED_ENTRIES`: console and
//! xenstore); we hand out entries from 8 on, never revoke them (the pages
//! live as long as the domain), and so need no more than that one frame.

use core::alloc::Layout;
use core::sync::atomic::{fence, AtomicU16, AtomicU32, Ordering};

use crate::layout::PAGE_SIZE;
use crate::pv::hypercall::hypercall;
use crate::pv::{mm, Global};

/// Entries in one frame of version 1 entries (8 bytes each).
const ENTRIES_PER_FRAME: u32 = (PAGE_SIZE / 8) as u32;
/// Flags of a writable data page mapping (present, rw, user, accessed, dirty).
const PAGE_FLAGS: u64 = 0x67;

/// Why a page could not be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantAccessError {
    /// Xen refused GNTTABOP_setup_table
    SetupRefused(i64),
    /// the grant table frame could not be mapped
    MapFailed(i64),
    /// every entry of the grant table frame is in use
    TableFull,
    /// the machine frame does not fit a version 1 grant entry
    FrameTooHigh,
}

struct Table {
    /// Virtual address of the mapped grant table frame.
    address: u64,
    /// Next entry never handed out.
    next: u32,
}

static TABLE: Global<Option<Table>> = Global::new(None);

fn setup() -> Result<Table, GrantAccessError> {
    let mut frame: xen_abi::xen_pfn_t = 0;
    let mut setup = xen_abi::gnttab_setup_table {
        dom: xen_abi::DOMID_SELF,
        nr_frames: 1,
        status: 0,
        frame_list: xen_abi::__guest_handle_xen_pfn_t { p: &mut frame },
    };
    // SAFETY: one `gnttab_setup_table` whose frame list points at one
    // `xen_pfn_t` on our stack, both live across the call.
    let rc = unsafe {
        hypercall(
            xen_abi::__HYPERVISOR_grant_table_op,
            u64::from(xen_abi::GNTTABOP_setup_table),
            &mut setup as *mut _ as u64,
            1,
            0,
            0,
        )
    };
    if rc != 0 || setup.status != 0 {
        return Err(GrantAccessError::SetupRefused(if rc != 0 {
            rc
        } else {
            i64::from(setup.status)
        }));
    }
    let layout = Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize)
        .map_err(|_| GrantAccessError::MapFailed(0))?;
    // SAFETY: a non-zero-sized layout.
    let page = unsafe { alloc::alloc::alloc(layout) } as u64;
    if page == 0 {
        return Err(GrantAccessError::MapFailed(0));
    }
    // SAFETY: the heap page is ours and never freed: from here on its
    // virtual address shows the grant table frame, accessed only through
    // atomics below. The frame that backed it stays allocated, unused.
    let rc = unsafe { mm::update_va_mapping(page, (frame << 12) | PAGE_FLAGS) };
    if rc != 0 {
        // SAFETY: the mapping did not change, so the page is still the
        // heap's, allocated above with `layout`.
        unsafe { alloc::alloc::dealloc(page as *mut u8, layout) };
        return Err(GrantAccessError::MapFailed(rc));
    }
    Ok(Table {
        address: page,
        next: xen_abi::GNTTAB_NR_RESERVED_ENTRIES,
    })
}

/// Lets `domid` map or copy machine frame `mfn` (read-only if asked);
/// returns the gref to tell it.
pub fn grant_access(domid: u16, mfn: u64, readonly: bool) -> Result<u32, GrantAccessError> {
    let mut table = TABLE.borrow_mut();
    if table.is_none() {
        *table = Some(setup()?);
    }
    let table = table.as_mut().ok_or(GrantAccessError::TableFull)?;
    if table.next >= ENTRIES_PER_FRAME {
        return Err(GrantAccessError::TableFull);
    }
    let frame = u32::try_from(mfn).map_err(|_| GrantAccessError::FrameTooHigh)?;
    let gref = table.next;
    table.next += 1;
    let entry = table.address + u64::from(gref) * 8;
    // SAFETY: `entry` is an 8-byte aligned entry inside the mapped grant
    // table frame; Xen reads it concurrently, hence atomics. The frame and
    // domid are published before the flags that make the entry valid, as
    // `grant_table.h` requires.
    unsafe {
        AtomicU32::from_ptr((entry + 4) as *mut u32).store(frame, Ordering::Relaxed);
        AtomicU16::from_ptr((entry + 2) as *mut u16).store(domid, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let flags = xen_abi::GTF_permit_access | if readonly { xen_abi::GTF_readonly } else { 0 };
        AtomicU16::from_ptr(entry as *mut u16).store(flags, Ordering::Release);
    }
    Ok(gref)
}
