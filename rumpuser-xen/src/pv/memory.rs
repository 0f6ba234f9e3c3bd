//! [`SharedMemory`] over one page of our own memory that another party
//! (xenstored, xenconsoled, a peer domain) also writes.

use core::sync::atomic::{AtomicU32, Ordering};

use xen_ring::{SharedMemory, XEN_PAGE_SIZE};

/// One mapped page shared with another party. Accesses are volatile or
/// atomic and no reference into the page is ever handed out.
pub struct OwnPage {
    address: usize,
}

impl OwnPage {
    /// Wraps the page mapped at `address`.
    ///
    /// # Safety
    ///
    /// `address` must be page-aligned and stay mapped, writable, for the
    /// life of the value, and no Rust object may live in that page.
    pub unsafe fn new(address: u64) -> Self {
        Self {
            address: address as usize,
        }
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= XEN_PAGE_SIZE,
            "word access at {offset} outside the page"
        );
        // SAFETY: inside the page (checked) and aligned; the page is mapped
        // for our lifetime (constructor contract), and the other party's
        // concurrent writes are why the access is atomic.
        unsafe { AtomicU32::from_ptr((self.address + offset) as *mut u32) }
    }
}

impl SharedMemory for OwnPage {
    fn len(&self) -> usize {
        XEN_PAGE_SIZE
    }

    fn load_u32(&self, offset: usize) -> u32 {
        self.word(offset).load(Ordering::Acquire)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        self.word(offset).store(value, Ordering::Release)
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        assert!(
            offset + destination.len() <= XEN_PAGE_SIZE,
            "read outside the page"
        );
        // SAFETY: inside the mapped page (checked above).
        unsafe { crate::foreign::copy_from_foreign(self.address + offset, destination) }
    }

    fn write(&self, offset: usize, source: &[u8]) {
        assert!(
            offset + source.len() <= XEN_PAGE_SIZE,
            "write outside the page"
        );
        // SAFETY: inside the mapped page (checked above).
        unsafe { crate::foreign::copy_to_foreign(self.address + offset, source) }
    }
}
