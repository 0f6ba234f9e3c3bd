//! The backend half of a ring (`BACK_RING_*` in `io/ring.h`).

use core::sync::atomic::{fence, Ordering};

use crate::{
    needs_notify, Geometry, RingError, SharedMemory, REQ_EVENT_OFFSET, REQ_PROD_OFFSET,
    RSP_EVENT_OFFSET, RSP_PROD_OFFSET,
};

/// The backend's end of a shared ring: takes requests off, puts responses on.
///
/// Holds the backend's private indices (`struct *_back_ring`): `req_cons`,
/// the next request to copy out, and `rsp_prod_pvt`, the next response slot
/// to fill. Everything read from the shared header is validated against
/// them before use.
#[derive(Debug)]
pub struct BackRing<M> {
    memory: M,
    geometry: Geometry,
    req_cons: u32,
    rsp_prod_pvt: u32,
    /// The `rsp_prod` this end last published. `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`
    /// re-reads it from the page; only this end writes it, so the private
    /// copy is the same value for an honest frontend and cannot be skewed by
    /// a hostile one.
    rsp_prod_published: u32,
}

impl<M: SharedMemory> BackRing<M> {
    /// `BACK_RING_INIT`: attaches to a ring the frontend has just initialised
    /// (`SHARED_RING_INIT`), with both private indices at 0. The shared page
    /// is not written.
    pub fn new(memory: M, slot_size: usize) -> Result<Self, RingError> {
        Self::at_index(memory, slot_size, 0)
    }

    /// Attaches to a ring that may already carry traffic, for example when a
    /// frontend reconnects after resume: the private indices start at the
    /// `rsp_prod` found on the page, as Linux's blkback does
    /// (`BACK_RING_ATTACH` with the published `rsp_prod`). Requests between
    /// `rsp_prod` and `req_prod` are then served as new.
    ///
    /// Fails if the frontend's `req_prod` is not within one ring of that
    /// `rsp_prod`.
    pub fn attach(memory: M, slot_size: usize) -> Result<Self, RingError> {
        let mut ring = Self::at_index(memory, slot_size, 0)?;
        let rsp_prod = ring.memory.load_u32(RSP_PROD_OFFSET);
        ring.req_cons = rsp_prod;
        ring.rsp_prod_pvt = rsp_prod;
        ring.rsp_prod_published = rsp_prod;
        ring.unconsumed_requests()?;
        Ok(ring)
    }

    /// `BACK_RING_ATTACH(r, s, index, size)`: private indices start at `index`.
    fn at_index(memory: M, slot_size: usize, index: u32) -> Result<Self, RingError> {
        let geometry = Geometry::new(memory.len(), slot_size)?;
        Ok(Self {
            memory,
            geometry,
            req_cons: index,
            rsp_prod_pvt: index,
            rsp_prod_published: index,
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

    /// Index of the next request to copy out.
    pub fn req_cons(&self) -> u32 {
        self.req_cons
    }

    /// Index of the next response slot to fill.
    pub fn rsp_prod_pvt(&self) -> u32 {
        self.rsp_prod_pvt
    }

    /// The shared memory the ring lives in.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Requests consumed but not yet answered with [`push_response`](Self::push_response).
    pub fn requests_in_flight(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Reads `req_prod` and checks it is one a well-behaved frontend could
    /// publish: not behind `req_cons`, and no more than `RING_SIZE` ahead of
    /// `rsp_prod_pvt` (`RING_REQUEST_PROD_OVERFLOW`). Issues the read barrier
    /// that orders the following slot reads after the index read.
    fn load_req_prod(&self) -> Result<u32, RingError> {
        let req_prod = self.memory.load_u32(REQ_PROD_OFFSET);
        // xen_rmb(): see the requests no earlier than the index announcing them.
        fence(Ordering::Acquire);
        let ahead_of_responses = req_prod.wrapping_sub(self.rsp_prod_pvt);
        if ahead_of_responses > self.geometry.entries {
            return Err(RingError::RequestOverflow {
                req_prod,
                rsp_prod_pvt: self.rsp_prod_pvt,
            });
        }
        if ahead_of_responses < self.requests_in_flight() {
            return Err(RingError::RequestProducerRewound {
                req_prod,
                req_cons: self.req_cons,
            });
        }
        Ok(req_prod)
    }

    /// Requests published but not yet copied out
    /// (`RING_HAS_UNCONSUMED_REQUESTS`), capped by the free response slots as
    /// in C so that `RING_REQUEST_CONS_OVERFLOW` can never happen.
    pub fn unconsumed_requests(&self) -> Result<u32, RingError> {
        let req_prod = self.load_req_prod()?;
        let published = req_prod.wrapping_sub(self.req_cons);
        let response_room = self.geometry.entries - self.requests_in_flight();
        Ok(published.min(response_room))
    }

    /// Copies the next request into `destination` and advances `req_cons`
    /// (`RING_COPY_REQUEST` then `req_cons++`). Returns `Ok(false)` if there
    /// is no request to take. Each request is read from the shared page
    /// exactly once; decode and validate the copy, never the ring.
    ///
    /// `destination` may be shorter than a slot (a request smaller than the
    /// response in the slot union); only its length is copied.
    pub fn next_request(&mut self, destination: &mut [u8]) -> Result<bool, RingError> {
        self.geometry.check_buffer(destination.len())?;
        if self.unconsumed_requests()? == 0 {
            return Ok(false);
        }
        let offset = self.geometry.slot_offset(self.req_cons);
        self.memory.read(offset, destination);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(true)
    }

    /// Writes `source` into the slot at `rsp_prod_pvt` and advances it
    /// (`RING_GET_RESPONSE(r, rsp_prod_pvt++)`); the frontend sees it after
    /// the next [`push_responses_and_check_notify`](Self::push_responses_and_check_notify).
    ///
    /// Fails with [`RingError::NoRequestToAnswer`] if every consumed request
    /// is already answered: the slot would still hold an unread request.
    pub fn push_response(&mut self, source: &[u8]) -> Result<(), RingError> {
        self.geometry.check_buffer(source.len())?;
        if self.requests_in_flight() == 0 {
            return Err(RingError::NoRequestToAnswer);
        }
        let offset = self.geometry.slot_offset(self.rsp_prod_pvt);
        self.memory.write(offset, source);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_RESPONSES`: publishes the queued responses without
    /// deciding about a notification.
    pub fn push_responses(&mut self) {
        // xen_wmb(): the frontend sees the responses before the index.
        fence(Ordering::Release);
        self.memory.store_u32(RSP_PROD_OFFSET, self.rsp_prod_pvt);
        self.rsp_prod_published = self.rsp_prod_pvt;
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes the queued responses
    /// and returns whether the frontend asked to be notified of one of them
    /// (its `rsp_event` lies among the newly published indices).
    pub fn push_responses_and_check_notify(&mut self) -> bool {
        let old = self.rsp_prod_published;
        let new = self.rsp_prod_pvt;
        self.push_responses();
        // xen_mb(): the frontend sees the new rsp_prod before we read
        // rsp_event, or it sees neither and its final check catches them.
        fence(Ordering::SeqCst);
        needs_notify(old, new, self.memory.load_u32(RSP_EVENT_OFFSET))
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: before going idle, asks the frontend
    /// to notify at the next request (`req_event = req_cons + 1`) and checks
    /// once more, closing the race with a request published meanwhile.
    /// Returns whether there is work to do.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        self.final_check_for_requests_at_least(1)
    }

    /// The batching variant `io/ring.h` suggests writing ("a customised
    /// version of the FINAL_CHECK macro"): returns whether at least `wanted`
    /// requests are waiting, and if not, asks the frontend to notify only
    /// once that many are (`req_event = req_cons + wanted`) and checks again.
    /// A `wanted` of 0 counts as 1. Asking for more than the ring can hold
    /// unanswered is never satisfied, so keep `wanted` within
    /// `size() - requests_in_flight()`.
    pub fn final_check_for_requests_at_least(&mut self, wanted: u32) -> Result<bool, RingError> {
        let wanted = wanted.max(1);
        if self.unconsumed_requests()? >= wanted {
            return Ok(true);
        }
        self.memory
            .store_u32(REQ_EVENT_OFFSET, self.req_cons.wrapping_add(wanted));
        // xen_mb(): req_event is visible before req_prod is read again.
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_requests()? >= wanted)
    }
}
