//! [`LocalMemory`]: shared memory inside one address space.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::{SharedMemory, XEN_PAGE_SIZE};

/// Zero-initialised memory that both ends of a ring can hold in one process.
///
/// Cloning yields another handle to the same bytes (an `Arc`), so a
/// simulator or a test gives one clone to the frontend and one to the
/// backend. The bytes live in `AtomicU32` words, so the two ends may run on
/// different threads without data races, and the ring's fences order the
/// accesses as they would on a real shared page. Multi-byte values are
/// little-endian, as on x86.
///
/// Out-of-range accesses panic, as [`SharedMemory`] allows: ring code only
/// computes in-range offsets.
#[derive(Clone)]
pub struct LocalMemory {
    words: Arc<[AtomicU32]>,
    len: usize,
}

impl LocalMemory {
    /// `len` zero bytes.
    pub fn new(len: usize) -> Self {
        let words: Vec<AtomicU32> = (0..len.div_ceil(4)).map(|_| AtomicU32::new(0)).collect();
        Self {
            words: words.into(),
            len,
        }
    }

    /// `count` zeroed Xen pages, a mapping of `count * XEN_PAGE_SIZE` bytes
    /// (a ring of `ring-page-order` n has `1 << n` pages).
    pub fn pages(count: usize) -> Self {
        Self::new(count * XEN_PAGE_SIZE)
    }

    /// A mapping holding a copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let memory = Self::new(bytes.len());
        memory.write(0, bytes);
        memory
    }

    /// A copy of the whole mapping.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut bytes = alloc::vec![0; self.len];
        self.read(0, &mut bytes);
        bytes
    }

    /// Whether `self` and `other` are handles to the same bytes.
    pub fn same_memory(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.words, &other.words)
    }

    fn check_range(&self, offset: usize, len: usize) {
        let in_range = offset.checked_add(len).is_some_and(|end| end <= self.len);
        assert!(
            in_range,
            "access of {len} bytes at offset {offset} outside a {}-byte mapping",
            self.len
        );
    }
}

impl core::fmt::Debug for LocalMemory {
    /// The length only: the contents of a multi-page ring are no use in a log.
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("LocalMemory")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl SharedMemory for LocalMemory {
    fn len(&self) -> usize {
        self.len
    }

    fn load_u32(&self, offset: usize) -> u32 {
        assert!(
            offset.is_multiple_of(4),
            "unaligned u32 load at offset {offset}"
        );
        self.check_range(offset, 4);
        self.words[offset / 4].load(Ordering::Relaxed)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        assert!(
            offset.is_multiple_of(4),
            "unaligned u32 store at offset {offset}"
        );
        self.check_range(offset, 4);
        self.words[offset / 4].store(value, Ordering::Relaxed);
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        self.check_range(offset, destination.len());
        for (position, byte) in destination.iter_mut().enumerate() {
            let address = offset + position;
            let word = self.words[address / 4].load(Ordering::Relaxed);
            *byte = word.to_le_bytes()[address % 4];
        }
    }

    fn write(&self, offset: usize, source: &[u8]) {
        self.check_range(offset, source.len());
        let mut position = 0;
        while position < source.len() {
            let address = offset + position;
            let word = &self.words[address / 4];
            let first = address % 4;
            let count = (4 - first).min(source.len() - position);
            let chunk = &source[position..position + count];
            if count == 4 {
                let bytes = [chunk[0], chunk[1], chunk[2], chunk[3]];
                word.store(u32::from_le_bytes(bytes), Ordering::Relaxed);
            } else {
                // A partial word: merge so the neighbouring bytes, which may
                // belong to another slot or field, are preserved.
                let mut mask_bytes = [0u8; 4];
                let mut value_bytes = [0u8; 4];
                for (index, &byte) in chunk.iter().enumerate() {
                    mask_bytes[first + index] = 0xff;
                    value_bytes[first + index] = byte;
                }
                let mask = u32::from_le_bytes(mask_bytes);
                let value = u32::from_le_bytes(value_bytes);
                // The closure always returns `Some`, so this cannot fail.
                let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some((old & !mask) | value)
                });
            }
            position += count;
        }
    }
}
