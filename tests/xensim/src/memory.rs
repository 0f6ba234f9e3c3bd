//! Guest pages: 4 KiB frames shared between threads through atomics.
//!
//! A real grant mapping lets two domains touch the same machine frame at
//! the same time. Here a frame is an array of `AtomicU32` behind an `Arc`,
//! so both "domains" (threads) may read and write it concurrently without
//! undefined behaviour, and 32-bit loads and stores are single accesses, as
//! `xen/io/ring.h` index updates require.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use xen_ring::SharedMemory;

/// Size of a guest page (`XEN_PAGE_SIZE`).
pub const PAGE_SIZE: usize = 4096;

const WORDS_PER_PAGE: usize = PAGE_SIZE / 4;

/// A guest frame number: the index of a page in its domain's memory.
pub type Gfn = u64;

/// The storage of one frame.
///
/// Index words (`load_u32`/`store_u32`, what `io/ring.h` producers and
/// consumers use) are sequentially consistent. Bulk bytes use acquire loads
/// and release stores: on x86 these are plain moves, and a peer that
/// follows the ring protocol (data, barrier, index) sees complete data.
#[derive(Debug)]
pub(crate) struct Frame {
    words: Box<[AtomicU32; WORDS_PER_PAGE]>,
}

impl Frame {
    fn new() -> Self {
        Frame {
            words: Box::new([const { AtomicU32::new(0) }; WORDS_PER_PAGE]),
        }
    }

    fn load_u32(&self, offset: usize) -> u32 {
        assert!(
            offset & 3 == 0 && offset + 4 <= PAGE_SIZE,
            "unaligned or out-of-page u32 access at {offset}"
        );
        self.words[offset / 4].load(Ordering::SeqCst)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        assert!(
            offset & 3 == 0 && offset + 4 <= PAGE_SIZE,
            "unaligned or out-of-page u32 access at {offset}"
        );
        self.words[offset / 4].store(value, Ordering::SeqCst);
    }

    /// Copies bytes out; `offset + destination.len()` must be within the page.
    fn read(&self, offset: usize, destination: &mut [u8]) {
        assert!(
            offset + destination.len() <= PAGE_SIZE,
            "read past the end of a page"
        );
        // Unaligned head, whole words, unaligned tail.
        let length = destination.len();
        let head = ((4 - offset % 4) % 4).min(length);
        let (head_bytes, rest) = destination.split_at_mut(head);
        self.read_partial(offset, head_bytes);
        // Plain indexed loops: these run for every byte a test moves, and
        // iterator adapters cost several calls per word in debug builds.
        let first_word = (offset + head) / 4;
        let whole = rest.len() / 4 * 4;
        let mut index = 0;
        while index < whole {
            let word = self.words[first_word + index / 4].load(Ordering::Acquire);
            let bytes = word.to_le_bytes();
            rest[index] = bytes[0];
            rest[index + 1] = bytes[1];
            rest[index + 2] = bytes[2];
            rest[index + 3] = bytes[3];
            index += 4;
        }
        let tail = &mut rest[whole..];
        self.read_partial(offset + length - tail.len(), tail);
    }

    /// Copies bytes in; `offset + source.len()` must be within the page.
    fn write(&self, offset: usize, source: &[u8]) {
        assert!(
            offset + source.len() <= PAGE_SIZE,
            "write past the end of a page"
        );
        let head = ((4 - offset % 4) % 4).min(source.len());
        let (head_bytes, rest) = source.split_at(head);
        self.write_partial(offset, head_bytes);
        let first_word = (offset + head) / 4;
        let whole = rest.len() / 4 * 4;
        let mut index = 0;
        while index < whole {
            let word = u32::from_le_bytes([
                rest[index],
                rest[index + 1],
                rest[index + 2],
                rest[index + 3],
            ]);
            self.words[first_word + index / 4].store(word, Ordering::Release);
            index += 4;
        }
        let tail = &rest[whole..];
        self.write_partial(offset + source.len() - tail.len(), tail);
    }

    /// Reads bytes that lie within one word.
    fn read_partial(&self, offset: usize, destination: &mut [u8]) {
        if destination.is_empty() {
            return;
        }
        let start = offset % 4;
        let word = self.words[offset / 4].load(Ordering::Acquire).to_le_bytes();
        destination.copy_from_slice(&word[start..start + destination.len()]);
    }

    /// Writes bytes that lie within one word, with one compare-exchange so
    /// a concurrent writer of the other bytes is never undone and a reader
    /// never sees a half-written byte.
    fn write_partial(&self, offset: usize, source: &[u8]) {
        if source.is_empty() {
            return;
        }
        let start = offset % 4;
        let _ = self.words[offset / 4].fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
            let mut bytes = old.to_le_bytes();
            bytes[start..start + source.len()].copy_from_slice(source);
            Some(u32::from_le_bytes(bytes))
        });
    }
}

/// One 4 KiB page of a domain's own memory.
///
/// Cloning a `Page` gives another handle to the same frame. The owning
/// domain uses it to fill buffers before granting them and to read what a
/// backend wrote; all access is by copy, so a concurrent writer in another
/// thread is harmless.
#[derive(Debug, Clone)]
pub struct Page {
    pub(crate) frame: Arc<Frame>,
}

impl Page {
    /// A fresh zeroed page.
    pub(crate) fn new() -> Self {
        Page {
            frame: Arc::new(Frame::new()),
        }
    }

    /// Copies the whole page out.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut bytes = vec![0; PAGE_SIZE];
        self.frame.read(0, &mut bytes);
        bytes
    }

    /// Sets every byte of the page to `byte`.
    pub fn fill(&self, byte: u8) {
        self.frame.write(0, &[byte; PAGE_SIZE]);
    }

    /// Whether `self` and `other` are the same frame.
    pub fn same_frame(&self, other: &Page) -> bool {
        Arc::ptr_eq(&self.frame, &other.frame)
    }
}

impl SharedMemory for Page {
    fn len(&self) -> usize {
        PAGE_SIZE
    }

    fn load_u32(&self, offset: usize) -> u32 {
        self.frame.load_u32(offset)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        self.frame.store_u32(offset, value);
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        self.frame.read(offset, destination);
    }

    fn write(&self, offset: usize, source: &[u8]) {
        self.frame.write(offset, source);
    }
}

/// Several frames seen as one contiguous range, as a grant mapping of a
/// multi-page ring is. Accesses may cross page boundaries.
#[derive(Debug, Clone)]
pub(crate) struct FrameRange {
    frames: Vec<Arc<Frame>>,
}

impl FrameRange {
    pub(crate) fn new(frames: Vec<Arc<Frame>>) -> Self {
        FrameRange { frames }
    }

    pub(crate) fn len(&self) -> usize {
        self.frames.len() * PAGE_SIZE
    }

    fn check(&self, offset: usize, length: usize) {
        assert!(
            offset
                .checked_add(length)
                .is_some_and(|end| end <= self.len()),
            "access at {offset}+{length} outside a mapping of {} bytes",
            self.len()
        );
    }

    pub(crate) fn load_u32(&self, offset: usize) -> u32 {
        self.check(offset, 4);
        self.frames[offset / PAGE_SIZE].load_u32(offset % PAGE_SIZE)
    }

    pub(crate) fn store_u32(&self, offset: usize, value: u32) {
        self.check(offset, 4);
        self.frames[offset / PAGE_SIZE].store_u32(offset % PAGE_SIZE, value);
    }

    pub(crate) fn read(&self, offset: usize, destination: &mut [u8]) {
        self.check(offset, destination.len());
        let mut done = 0;
        while done < destination.len() {
            let position = offset + done;
            let in_page = position % PAGE_SIZE;
            let count = (PAGE_SIZE - in_page).min(destination.len() - done);
            self.frames[position / PAGE_SIZE].read(in_page, &mut destination[done..done + count]);
            done += count;
        }
    }

    pub(crate) fn write(&self, offset: usize, source: &[u8]) {
        self.check(offset, source.len());
        let mut done = 0;
        while done < source.len() {
            let position = offset + done;
            let in_page = position % PAGE_SIZE;
            let count = (PAGE_SIZE - in_page).min(source.len() - done);
            self.frames[position / PAGE_SIZE].write(in_page, &source[done..done + count]);
            done += count;
        }
    }
}

/// Copies `length` bytes between two frames (which may be the same frame).
pub(crate) fn copy_between(
    source: &Frame,
    source_offset: usize,
    destination: &Frame,
    destination_offset: usize,
    length: usize,
) {
    let mut buffer = [0; PAGE_SIZE];
    let buffer = &mut buffer[..length];
    source.read(source_offset, buffer);
    destination.write(destination_offset, buffer);
}

pub(crate) fn frame_read(frame: &Frame, offset: usize, destination: &mut [u8]) {
    frame.read(offset, destination);
}

pub(crate) fn frame_write(frame: &Frame, offset: usize, source: &[u8]) {
    frame.write(offset, source);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_at_every_alignment() {
        let page = Page::new();
        for start in 0..8 {
            let data: Vec<u8> = (0..13).map(|i| (i * 7 + start) as u8).collect();
            page.write(100 + start, &data);
            let mut back = vec![0; data.len()];
            page.read(100 + start, &mut back);
            assert_eq!(back, data);
        }
    }

    #[test]
    fn every_offset_and_length_near_word_edges() {
        let page = Page::new();
        let pattern: Vec<u8> = (0..PAGE_SIZE).map(|i| (i * 31 % 251) as u8).collect();
        page.write(0, &pattern);
        for offset in [0, 1, 2, 3, 4, 5, 7, 8, 4090, 4093, 4095] {
            for length in 0..=(PAGE_SIZE - offset).min(11) {
                let mut back = vec![0; length];
                page.read(offset, &mut back);
                assert_eq!(back, &pattern[offset..offset + length], "{offset}+{length}");
                let fresh: Vec<u8> = (0..length).map(|i| (i as u8) ^ 0x5a).collect();
                page.write(offset, &fresh);
                let whole = page.to_vec();
                assert_eq!(&whole[offset..offset + length], &fresh[..]);
                assert_eq!(
                    &whole[..offset],
                    &pattern[..offset],
                    "bytes before {offset}"
                );
                assert_eq!(
                    &whole[offset + length..],
                    &pattern[offset + length..],
                    "bytes after {offset}+{length}"
                );
                page.write(offset, &pattern[offset..offset + length]);
            }
        }
    }

    #[test]
    fn words_are_little_endian() {
        let page = Page::new();
        page.store_u32(8, 0x0403_0201);
        let mut bytes = [0; 4];
        page.read(8, &mut bytes);
        assert_eq!(bytes, [1, 2, 3, 4]);
        page.write(12, &[5, 6, 7, 8]);
        assert_eq!(page.load_u32(12), 0x0807_0605);
    }

    #[test]
    fn partial_word_write_keeps_neighbours() {
        let page = Page::new();
        page.store_u32(0, 0xaabb_ccdd);
        page.write(1, &[0x11]);
        assert_eq!(page.load_u32(0), 0xaabb_11dd);
    }

    #[test]
    fn range_crosses_page_boundaries() {
        let pages = [Page::new(), Page::new()];
        let range = FrameRange::new(pages.iter().map(|p| p.frame.clone()).collect());
        let data: Vec<u8> = (0..64).collect();
        range.write(PAGE_SIZE - 32, &data);
        let mut tail = [0; 32];
        pages[0].read(PAGE_SIZE - 32, &mut tail);
        assert_eq!(&tail[..], &data[..32]);
        let mut head = [0; 32];
        pages[1].read(0, &mut head);
        assert_eq!(&head[..], &data[32..]);
        let mut back = vec![0; 64];
        range.read(PAGE_SIZE - 32, &mut back);
        assert_eq!(back, data);
    }

    #[test]
    #[should_panic(expected = "outside a mapping")]
    fn range_rejects_access_past_the_end() {
        let range = FrameRange::new(vec![Page::new().frame]);
        range.load_u32(PAGE_SIZE);
    }
}
