//! Xen shared I/O rings, as specified by `xen/io/ring.h`.
#![no_std]
#![forbid(unsafe_code)]

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
