//! Grant tables (`xen/include/public/grant_table.h`) as a backend uses
//! them: batched `GNTTABOP_copy` for data, `GNTTABOP_map_grant_ref` into a
//! reserved window for shared rings.

use alloc::vec::Vec;

use xen_ring::SharedMemory;
use xenbus::platform::{CopyOp, DomId, GrantCopy, GrantError, GrantMap, GrantRef, GrantSpan};

use super::abi::{
    gnttab_copy, gnttab_copy_gnttab_copy_ptr, gnttab_copy_gnttab_copy_ptr__bindgen_ty_1,
    gnttab_map_grant_ref, gnttab_unmap_grant_ref,
};
use super::hypercall::hypercall;
use super::Global;
use crate::layout::{page_pieces, GRANT_WINDOW_BASE, GRANT_WINDOW_PAGES, PAGE_SIZE};

fn grant_table_op<T>(command: u32, operations: &mut [T]) -> i64 {
    // SAFETY: `T` is the structure `command` expects (callers pair them),
    // and the slice lives across the call; Xen writes only the OUT fields.
    unsafe {
        hypercall(
            xen_abi::__HYPERVISOR_grant_table_op,
            u64::from(command),
            operations.as_mut_ptr() as u64,
            operations.len() as u64,
            0,
            0,
        )
    }
}

/// Batched grant copy on real Xen.
#[derive(Default)]
pub struct XenGrantCopy {
    batch: Vec<gnttab_copy>,
    /// For each hypercall entry, which operation it belongs to.
    owner: Vec<usize>,
}

fn local_pointer(address: u64) -> gnttab_copy_gnttab_copy_ptr {
    gnttab_copy_gnttab_copy_ptr {
        // A PV guest names its own frames by machine frame number.
        u: gnttab_copy_gnttab_copy_ptr__bindgen_ty_1 {
            gmfn: super::mm::virt_to_mfn(address),
        },
        domid: xen_abi::DOMID_SELF,
        offset: (address % PAGE_SIZE) as u16,
    }
}

fn grant_pointer(span: GrantSpan, delta: usize) -> gnttab_copy_gnttab_copy_ptr {
    gnttab_copy_gnttab_copy_ptr {
        u: gnttab_copy_gnttab_copy_ptr__bindgen_ty_1 { ref_: span.gref },
        domid: span.domid,
        offset: span.offset.wrapping_add(delta as u16),
    }
}

impl GrantCopy for XenGrantCopy {
    fn copy(&mut self, ops: &mut [CopyOp<'_>], status: &mut [Result<(), GrantError>]) {
        assert_eq!(ops.len(), status.len(), "one status per copy operation");
        self.batch.clear();
        self.owner.clear();
        for (index, op) in ops.iter_mut().enumerate() {
            status[index] = Ok(());
            // A local buffer may straddle pages of ours; each piece is one
            // hypercall entry (Xen copies within one frame per entry).
            match op {
                CopyOp::FromGrant {
                    source,
                    destination,
                } => {
                    let mut done = 0;
                    for (address, length) in
                        page_pieces(destination.as_mut_ptr() as u64, destination.len())
                    {
                        self.batch.push(gnttab_copy {
                            source: grant_pointer(*source, done),
                            dest: local_pointer(address),
                            len: length as u16,
                            flags: xen_abi::GNTCOPY_source_gref,
                            status: 0,
                        });
                        self.owner.push(index);
                        done += length;
                    }
                }
                CopyOp::ToGrant {
                    source,
                    destination,
                } => {
                    let mut done = 0;
                    for (address, length) in page_pieces(source.as_ptr() as u64, source.len()) {
                        self.batch.push(gnttab_copy {
                            source: local_pointer(address),
                            dest: grant_pointer(*destination, done),
                            len: length as u16,
                            flags: xen_abi::GNTCOPY_dest_gref,
                            status: 0,
                        });
                        self.owner.push(index);
                        done += length;
                    }
                }
                CopyOp::GrantToGrant {
                    source,
                    destination,
                    length,
                } => {
                    self.batch.push(gnttab_copy {
                        source: grant_pointer(*source, 0),
                        dest: grant_pointer(*destination, 0),
                        len: *length,
                        flags: xen_abi::GNTCOPY_source_gref | xen_abi::GNTCOPY_dest_gref,
                        status: 0,
                    });
                    self.owner.push(index);
                }
            }
        }
        // A grant offset past the page is refused by Xen with
        // GNTST_bad_copy_arg, which we pass on like any other status.
        let rc = grant_table_op(xen_abi::GNTTABOP_copy, &mut self.batch);
        log::trace!("GNTTABOP_copy of {} entries: rc {rc}", self.batch.len());
        for (entry, &index) in self.batch.iter().zip(self.owner.iter()) {
            let outcome = if rc != 0 {
                Err(GrantError::GeneralError)
            } else {
                match GrantError::from_status(entry.status) {
                    None => Ok(()),
                    Some(error) => Err(error),
                }
            };
            if let Err(error) = outcome {
                log::debug!("grant copy entry for operation {index} failed: {error:?}");
            }
            if status[index].is_ok() {
                status[index] = outcome;
            }
        }
    }
}

/// Foreign pages mapped contiguously in the grant window.
pub struct GrantMapping {
    address: u64,
    pages: usize,
    handles: Vec<u32>,
}

impl SharedMemory for GrantMapping {
    fn len(&self) -> usize {
        self.pages * PAGE_SIZE as usize
    }

    fn load_u32(&self, offset: usize) -> u32 {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= self.len(),
            "load outside the mapping"
        );
        // SAFETY: inside the mapped window, aligned; the peer may write it
        // concurrently, so the access is a single atomic load and no
        // reference outlives it.
        unsafe {
            core::sync::atomic::AtomicU32::from_ptr((self.address as usize + offset) as *mut u32)
        }
        .load(core::sync::atomic::Ordering::Acquire)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= self.len(),
            "store outside the mapping"
        );
        // SAFETY: as for `load_u32`.
        unsafe {
            core::sync::atomic::AtomicU32::from_ptr((self.address as usize + offset) as *mut u32)
        }
        .store(value, core::sync::atomic::Ordering::Release)
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        assert!(
            offset + destination.len() <= self.len(),
            "read outside the mapping"
        );
        // SAFETY: the range lies inside the mapping (checked above).
        unsafe { crate::foreign::copy_from_foreign(self.address as usize + offset, destination) }
    }

    fn write(&self, offset: usize, source: &[u8]) {
        assert!(
            offset + source.len() <= self.len(),
            "write outside the mapping"
        );
        // SAFETY: the range lies inside the mapping (checked above).
        unsafe { crate::foreign::copy_to_foreign(self.address as usize + offset, source) }
    }
}

/// Free slots of the grant window, one bit per page.
static WINDOW: Global<[u64; (GRANT_WINDOW_PAGES / 64) as usize]> =
    Global::new([0; (GRANT_WINDOW_PAGES / 64) as usize]);

fn reserve_window(pages: usize) -> Option<u64> {
    let mut window = WINDOW.borrow_mut();
    let total = GRANT_WINDOW_PAGES as usize;
    let used = |window: &[u64], page: usize| window[page / 64] & (1 << (page % 64)) != 0;
    let mut start = 0;
    while start + pages <= total {
        match (start..start + pages).find(|&page| used(&window[..], page)) {
            Some(busy) => start = busy + 1,
            None => {
                for page in start..start + pages {
                    window[page / 64] |= 1 << (page % 64);
                }
                return Some(GRANT_WINDOW_BASE + start as u64 * PAGE_SIZE);
            }
        }
    }
    None
}

fn release_window(address: u64, pages: usize) {
    let mut window = WINDOW.borrow_mut();
    let first = ((address - GRANT_WINDOW_BASE) / PAGE_SIZE) as usize;
    for page in first..first + pages {
        window[page / 64] &= !(1 << (page % 64));
    }
}

/// Grant map on real Xen.
#[derive(Default)]
pub struct XenGrantMap;

impl GrantMap for XenGrantMap {
    type Mapping = GrantMapping;

    fn map(
        &mut self,
        domid: DomId,
        grefs: &[GrantRef],
        writable: bool,
    ) -> Result<GrantMapping, GrantError> {
        if grefs.is_empty() {
            return Err(GrantError::BadGntref);
        }
        let address = reserve_window(grefs.len()).ok_or(GrantError::NoSpace)?;
        let flags = xen_abi::GNTMAP_host_map
            | if writable {
                0
            } else {
                xen_abi::GNTMAP_readonly
            };
        let mut operations: Vec<gnttab_map_grant_ref> = grefs
            .iter()
            .enumerate()
            .map(|(index, &gref)| gnttab_map_grant_ref {
                host_addr: address + index as u64 * PAGE_SIZE,
                flags,
                ref_: gref,
                dom: domid,
                status: 0,
                handle: 0,
                dev_bus_addr: 0,
            })
            .collect();
        let rc = grant_table_op(xen_abi::GNTTABOP_map_grant_ref, &mut operations);
        let failure = if rc != 0 {
            Some(GrantError::GeneralError)
        } else {
            operations
                .iter()
                .find_map(|operation| GrantError::from_status(operation.status))
        };
        log::trace!(
            "GNTTABOP_map_grant_ref of {} gref(s) of domain {domid} at {address:#x}: rc {rc}, {failure:?}",
            grefs.len()
        );
        let mapping = GrantMapping {
            address,
            pages: grefs.len(),
            handles: operations
                .iter()
                .map(|operation| operation.handle)
                .collect(),
        };
        if let Some(error) = failure {
            // Undo the pages that did map.
            let mapped: Vec<(usize, u32)> = operations
                .iter()
                .enumerate()
                .filter(|(_, operation)| rc == 0 && operation.status == 0)
                .map(|(index, operation)| (index, operation.handle))
                .collect();
            if unmap_pages(address, &mapped) {
                release_window(address, grefs.len());
            }
            return Err(error);
        }
        Ok(mapping)
    }

    fn unmap(&mut self, mapping: GrantMapping) {
        let pages: Vec<(usize, u32)> = mapping.handles.iter().copied().enumerate().collect();
        if unmap_pages(mapping.address, &pages) {
            release_window(mapping.address, mapping.pages);
        }
    }
}

/// Unmaps the given (page index, handle) pairs; false if any failed, in
/// which case the window slots must stay reserved.
fn unmap_pages(address: u64, pages: &[(usize, u32)]) -> bool {
    if pages.is_empty() {
        return true;
    }
    let mut operations: Vec<gnttab_unmap_grant_ref> = pages
        .iter()
        .map(|&(index, handle)| gnttab_unmap_grant_ref {
            host_addr: address + index as u64 * PAGE_SIZE,
            dev_bus_addr: 0,
            handle,
            status: 0,
        })
        .collect();
    let rc = grant_table_op(xen_abi::GNTTABOP_unmap_grant_ref, &mut operations);
    if rc != 0 || operations.iter().any(|operation| operation.status != 0) {
        log::error!("grant unmap at {address:#x} failed (rc {rc}); window slots stay reserved");
        return false;
    }
    true
}
