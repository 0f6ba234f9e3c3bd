//! The frontend half of a ring (`FRONT_RING_*` in `io/ring.h`).

use core::sync::atomic::{fence, Ordering};

use crate::{
    needs_notify, Geometry, RingError, SharedMemory, REQ_EVENT_OFFSET, REQ_PROD_OFFSET,
    RSP_EVENT_OFFSET, RSP_PROD_OFFSET, SRING_HEADER_SIZE,
};

/// The frontend's end of a shared ring: puts requests on, takes responses off.
///
/// Holds the frontend's private indices (`struct *_front_ring`):
/// `req_prod_pvt`, the next request slot to fill, and `rsp_cons`, the next
/// response to copy out. The backend is treated as hostile too: a `rsp_prod`
/// that runs past the requests actually sent is an error.
#[derive(Debug)]
pub struct FrontRing<M> {
    memory: M,
    geometry: Geometry,
    req_prod_pvt: u32,
    rsp_cons: u32,
    /// The `req_prod` this end last published (see `BackRing`'s
    /// `rsp_prod_published` for why it is kept privately).
    req_prod_published: u32,
}

impl<M: SharedMemory> FrontRing<M> {
    /// `XEN_FRONT_RING_INIT`: initialises the shared header
    /// (`SHARED_RING_INIT`: producers 0, event indices 1, padding zeroed) and
    /// the private indices (`FRONT_RING_INIT`).
    pub fn init(memory: M, slot_size: usize) -> Result<Self, RingError> {
        Self::init_at(memory, slot_size, 0)
    }

    /// Like [`init`](Self::init) but with every index starting at `index`
    /// instead of 0 (event indices at `index + 1`). An honest peer cannot
    /// tell the difference; tests use it to cross the `u32` wrap early.
    pub fn init_at(memory: M, slot_size: usize, index: u32) -> Result<Self, RingError> {
        let geometry = Geometry::new(memory.len(), slot_size)?;
        memory.store_u32(REQ_PROD_OFFSET, index);
        memory.store_u32(RSP_PROD_OFFSET, index);
        memory.store_u32(REQ_EVENT_OFFSET, index.wrapping_add(1));
        memory.store_u32(RSP_EVENT_OFFSET, index.wrapping_add(1));
        memory.write(
            RSP_EVENT_OFFSET + 4,
            &[0; SRING_HEADER_SIZE - RSP_EVENT_OFFSET - 4],
        );
        Ok(Self {
            memory,
            geometry,
            req_prod_pvt: index,
            rsp_cons: index,
            req_prod_published: index,
        })
    }

    /// Number of entries in the ring (`RING_SIZE`).
    pub fn size(&self) -> u32 {
        self.geometry.entries
    }

    /// Size of one slot in bytes.
    pub fn slot_size(&self) -> usize {
        self.geometry.slot_size
    }

    /// Index of the next request slot to fill.
    pub fn req_prod_pvt(&self) -> u32 {
        self.req_prod_pvt
    }

    /// Index of the next response to copy out.
    pub fn rsp_cons(&self) -> u32 {
        self.rsp_cons
    }

    /// The shared memory the ring lives in.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Number of request slots that may be filled now (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        self.geometry.entries - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Whether no request slot is free (`RING_FULL`).
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Writes `source` into the slot at `req_prod_pvt` and advances it. The
    /// backend sees it after the next
    /// [`push_requests_and_check_notify`](Self::push_requests_and_check_notify).
    pub fn push_request(&mut self, source: &[u8]) -> Result<(), RingError> {
        self.geometry.check_buffer(source.len())?;
        if self.is_full() {
            return Err(RingError::RingFull);
        }
        let offset = self.geometry.slot_offset(self.req_prod_pvt);
        self.memory.write(offset, source);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_REQUESTS`: publishes the queued requests without deciding
    /// about a notification.
    pub fn push_requests(&mut self) {
        // xen_wmb(): the backend sees the requests before the index.
        fence(Ordering::Release);
        self.memory.store_u32(REQ_PROD_OFFSET, self.req_prod_pvt);
        self.req_prod_published = self.req_prod_pvt;
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes the queued requests
    /// and returns whether the backend asked to be notified of one of them.
    pub fn push_requests_and_check_notify(&mut self) -> bool {
        let old = self.req_prod_published;
        let new = self.req_prod_pvt;
        self.push_requests();
        // xen_mb(): the backend sees the new req_prod before we read req_event.
        fence(Ordering::SeqCst);
        needs_notify(old, new, self.memory.load_u32(REQ_EVENT_OFFSET))
    }

    /// Reads `rsp_prod` and checks it lies between `rsp_cons` and the
    /// published `req_prod`: a backend cannot answer requests never sent.
    fn load_rsp_prod(&self) -> Result<u32, RingError> {
        let rsp_prod = self.memory.load_u32(RSP_PROD_OFFSET);
        // xen_rmb(): see the responses no earlier than the index announcing them.
        fence(Ordering::Acquire);
        let outstanding = self.req_prod_published.wrapping_sub(self.rsp_cons);
        if rsp_prod.wrapping_sub(self.rsp_cons) > outstanding {
            return Err(RingError::ResponseOverflow {
                rsp_prod,
                rsp_cons: self.rsp_cons,
                req_prod: self.req_prod_published,
            });
        }
        Ok(rsp_prod)
    }

    /// Responses published but not yet copied out
    /// (`RING_HAS_UNCONSUMED_RESPONSES`).
    pub fn unconsumed_responses(&self) -> Result<u32, RingError> {
        Ok(self.load_rsp_prod()?.wrapping_sub(self.rsp_cons))
    }

    /// Copies the next response into `destination` and advances `rsp_cons`
    /// (`RING_COPY_RESPONSE` then `rsp_cons++`). Returns `Ok(false)` if
    /// there is none. `destination` may be shorter than a slot.
    pub fn next_response(&mut self, destination: &mut [u8]) -> Result<bool, RingError> {
        self.geometry.check_buffer(destination.len())?;
        if self.unconsumed_responses()? == 0 {
            return Ok(false);
        }
        let offset = self.geometry.slot_offset(self.rsp_cons);
        self.memory.read(offset, destination);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(true)
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: before going idle, asks the backend
    /// to notify at the next response (`rsp_event = rsp_cons + 1`) and checks
    /// once more. Returns whether there is work to do.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.unconsumed_responses()? != 0 {
            return Ok(true);
        }
        self.memory
            .store_u32(RSP_EVENT_OFFSET, self.rsp_cons.wrapping_add(1));
        // xen_mb(): rsp_event is visible before rsp_prod is read again.
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_responses()? != 0)
    }
}
