//! Xen shared I/O rings, both ends, as specified by
//! [`xen/io/ring.h`](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/io/ring.h).
//!
//! Layer: the lowest protocol layer. Below sits [`SharedMemory`], a
//! copy-in/copy-out view of the ring pages (simulated pages in `xensim`,
//! mapped grant pages in `rumpuser-xen`, [`LocalMemory`] in tests). Above sit
//! the protocol engines (`blkback`, `netback`) and the mock frontends, which
//! decode the raw slot bytes this crate hands out into typed requests.
//!
//! The crate is protocol-agnostic: a ring is described by its mapping and the
//! size of one slot (the `sizeof` of the request/response union that
//! `DEFINE_RING_TYPES` declares). [`BackRing`] is the `BACK_RING_*` half,
//! [`FrontRing`] the `FRONT_RING_*` half. Indices are free-running `u32`
//! (`RING_IDX`) compared with wrapping arithmetic, exactly as in C.
//!
//! The peer is hostile. Every slot is copied out exactly once
//! (`RING_COPY_REQUEST`), no reference into the shared page is ever formed,
//! and producer indices that no well-behaved peer could publish are reported
//! as [`RingError`] rather than trusted, looped on or panicked over.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod back;
mod front;
mod local;

pub use back::BackRing;
pub use front::FrontRing;
pub use local::LocalMemory;

/// Memory shared with another domain, which may change it at any moment.
///
/// Nothing hands out a reference into this memory: every access is a copy,
/// so a peer that rewrites the page can never change a value after it was
/// read. Implementations exist over simulated pages (`xensim`) and over
/// mapped grant pages (`rumpuser-xen`).
///
/// Offsets are in bytes from the start of the mapping. An access outside
/// `0..len()` is a bug in the caller (callers derive offsets from their own
/// validated indices), and implementations may panic on it.
pub trait SharedMemory {
    /// Size of the mapping in bytes.
    fn len(&self) -> usize;

    /// Whether the mapping is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads an aligned little-endian `u32` at `offset` with a single access.
    fn load_u32(&self, offset: usize) -> u32;

    /// Stores an aligned `u32` at `offset` with a single access.
    fn store_u32(&self, offset: usize, value: u32);

    /// Copies `destination.len()` bytes starting at `offset` out of the shared memory.
    fn read(&self, offset: usize, destination: &mut [u8]);

    /// Copies `source` into the shared memory starting at `offset`.
    fn write(&self, offset: usize, source: &[u8]);
}

/// Forwards [`SharedMemory`] through a reference or shared pointer, so one
/// mapping can back a ring and still be owned by whoever unmaps it.
macro_rules! forward_shared_memory {
    ($($pointer:ty),* $(,)?) => {$(
        impl<T: SharedMemory + ?Sized> SharedMemory for $pointer {
            fn len(&self) -> usize {
                (**self).len()
            }
            fn load_u32(&self, offset: usize) -> u32 {
                (**self).load_u32(offset)
            }
            fn store_u32(&self, offset: usize, value: u32) {
                (**self).store_u32(offset, value)
            }
            fn read(&self, offset: usize, destination: &mut [u8]) {
                (**self).read(offset, destination)
            }
            fn write(&self, offset: usize, source: &[u8]) {
                (**self).write(offset, source)
            }
        }
    )*};
}

forward_shared_memory!(&T, alloc::rc::Rc<T>, alloc::sync::Arc<T>);

/// Size of a Xen page; ring mappings are whole numbers of these
/// (`XEN_PAGE_SHIFT` in `io/ring.h`).
pub const XEN_PAGE_SIZE: usize = 4096;

/// Byte offset of `req_prod` in the shared ring header (`struct *_sring`).
pub const REQ_PROD_OFFSET: usize = 0;
/// Byte offset of `req_event` in the shared ring header.
pub const REQ_EVENT_OFFSET: usize = 4;
/// Byte offset of `rsp_prod` in the shared ring header.
pub const RSP_PROD_OFFSET: usize = 8;
/// Byte offset of `rsp_event` in the shared ring header.
pub const RSP_EVENT_OFFSET: usize = 12;
/// Size of the shared ring header, i.e. `offsetof(struct *_sring, ring)`:
/// four `RING_IDX`, the 4-byte `pvt` union and `__pad[44]`.
pub const SRING_HEADER_SIZE: usize = 64;

/// Number of entries of a ring in a `mapping_len`-byte mapping whose slots
/// are `slot_size` bytes: as many as fit after the header, rounded down to a
/// power of two (`__RING_SIZE`/`__CONST_RING_SIZE`, which use `__RD32`).
///
/// Returns `None` if not even one slot fits or `slot_size` is zero.
pub fn ring_entries(mapping_len: usize, slot_size: usize) -> Option<u32> {
    if slot_size == 0 {
        return None;
    }
    let fitting = mapping_len.checked_sub(SRING_HEADER_SIZE)? / slot_size;
    let fitting = u32::try_from(fitting).unwrap_or(u32::MAX);
    if fitting == 0 {
        return None;
    }
    // Largest power of two not above `fitting` (what `__RD32` computes).
    Some(1 << (31 - fitting.leading_zeros()))
}

/// Why a ring operation failed.
///
/// The `*Overflow`/`*Rewound` variants mean the peer published an index no
/// well-behaved peer can publish; the connection should be torn down. The
/// others are misuse by the local caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The slot size is zero.
    ZeroSlotSize,
    /// The shared memory is too small for the ring header and one slot.
    MappingTooSmall {
        /// Length of the mapping in bytes.
        mapping_len: usize,
        /// Requested slot size in bytes.
        slot_size: usize,
    },
    /// A buffer is larger than one ring slot.
    BufferLargerThanSlot {
        /// Length of the caller's buffer.
        buffer_len: usize,
        /// Size of one slot.
        slot_size: usize,
    },
    /// The frontend published more requests than there are free response
    /// slots (`RING_REQUEST_PROD_OVERFLOW`).
    RequestOverflow {
        /// The `req_prod` read from the shared ring.
        req_prod: u32,
        /// The backend's `rsp_prod_pvt`.
        rsp_prod_pvt: u32,
    },
    /// The frontend moved `req_prod` back behind requests already consumed.
    RequestProducerRewound {
        /// The `req_prod` read from the shared ring.
        req_prod: u32,
        /// The backend's `req_cons`.
        req_cons: u32,
    },
    /// The backend published a `rsp_prod` that is not between the responses
    /// already consumed and the requests published (`RING_RESPONSE_PROD_OVERFLOW`,
    /// tightened to the requests actually outstanding).
    ResponseOverflow {
        /// The `rsp_prod` read from the shared ring.
        rsp_prod: u32,
        /// The frontend's `rsp_cons`.
        rsp_cons: u32,
        /// The `req_prod` the frontend last published.
        req_prod: u32,
    },
    /// The ring has no free request slot (`RING_FULL`).
    RingFull,
    /// A response was pushed with no consumed request left to answer, which
    /// would overwrite a request the backend has not read yet.
    NoRequestToAnswer,
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::ZeroSlotSize => write!(f, "the slot size is zero"),
            Self::MappingTooSmall {
                mapping_len,
                slot_size,
            } => write!(
                f,
                "a {mapping_len}-byte mapping cannot hold the ring header and one {slot_size}-byte slot"
            ),
            Self::BufferLargerThanSlot {
                buffer_len,
                slot_size,
            } => write!(
                f,
                "a {buffer_len}-byte buffer is larger than one {slot_size}-byte slot"
            ),
            Self::RequestOverflow {
                req_prod,
                rsp_prod_pvt,
            } => write!(
                f,
                "frontend published req_prod {req_prod} with rsp_prod_pvt {rsp_prod_pvt}: more requests than the ring holds"
            ),
            Self::RequestProducerRewound { req_prod, req_cons } => write!(
                f,
                "frontend moved req_prod back to {req_prod}, behind req_cons {req_cons}"
            ),
            Self::ResponseOverflow {
                rsp_prod,
                rsp_cons,
                req_prod,
            } => write!(
                f,
                "backend published rsp_prod {rsp_prod} outside rsp_cons {rsp_cons}..=req_prod {req_prod}"
            ),
            Self::RingFull => write!(f, "the ring has no free request slot"),
            Self::NoRequestToAnswer => {
                write!(f, "a response was pushed with no consumed request to answer")
            }
        }
    }
}

/// The geometry shared by both halves: validated at construction, so slot
/// offsets computed from masked indices are always inside the mapping.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    entries: u32,
    slot_size: usize,
}

impl Geometry {
    fn new(mapping_len: usize, slot_size: usize) -> Result<Self, RingError> {
        if slot_size == 0 {
            return Err(RingError::ZeroSlotSize);
        }
        let entries = ring_entries(mapping_len, slot_size).ok_or(RingError::MappingTooSmall {
            mapping_len,
            slot_size,
        })?;
        Ok(Self { entries, slot_size })
    }

    /// Byte offset of the slot that free-running index `index` lands in
    /// (`RING_GET_REQUEST`/`RING_GET_RESPONSE`: `index & (RING_SIZE - 1)`).
    fn slot_offset(&self, index: u32) -> usize {
        let slot = (index & (self.entries - 1)) as usize;
        SRING_HEADER_SIZE + slot * self.slot_size
    }

    fn check_buffer(&self, buffer_len: usize) -> Result<(), RingError> {
        if buffer_len > self.slot_size {
            return Err(RingError::BufferLargerThanSlot {
                buffer_len,
                slot_size: self.slot_size,
            });
        }
        Ok(())
    }
}

/// The notification decision of `RING_PUSH_*_AND_CHECK_NOTIFY`: notify if
/// the peer's event index lies in `(old, new]`, i.e. the peer asked to be
/// woken at one of the entries just published.
fn needs_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests;
