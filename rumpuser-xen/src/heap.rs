//! Bookkeeping of the kernel heap: a first-fit list of free address ranges.
//!
//! The list lives in a fixed array outside the heap itself, so the allocator
//! never writes into the memory it manages and the whole policy is plain
//! arithmetic that the host tests check. The PV platform wraps it in the
//! global allocator (`pv::heap`).

/// Most free ranges tracked at once. When a free would need one more, the
/// freed block is dropped from the books (leaked) and counted, rather than
/// corrupting anything.
pub const MAX_RANGES: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    start: usize,
    end: usize,
}

/// Free address ranges, sorted by address, never adjacent or overlapping.
pub struct FreeRanges {
    ranges: [Range; MAX_RANGES],
    count: usize,
    leaked_bytes: usize,
}

impl Default for FreeRanges {
    fn default() -> Self {
        Self::new()
    }
}

impl FreeRanges {
    /// An empty heap.
    pub const fn new() -> Self {
        Self {
            ranges: [Range { start: 0, end: 0 }; MAX_RANGES],
            count: 0,
            leaked_bytes: 0,
        }
    }

    /// Bytes currently free.
    pub fn free_bytes(&self) -> usize {
        self.ranges[..self.count]
            .iter()
            .map(|range| range.end - range.start)
            .sum()
    }

    /// Bytes dropped from the books because the range table was full.
    pub fn leaked_bytes(&self) -> usize {
        self.leaked_bytes
    }

    /// Takes `size` bytes aligned to `align` (a power of two) from the
    /// lowest range that fits. Returns the start address.
    pub fn allocate(&mut self, size: usize, align: usize) -> Option<usize> {
        let size = size.max(1);
        for index in 0..self.count {
            let Range { start, end } = self.ranges[index];
            let aligned = start.checked_add(align - 1)? & !(align - 1);
            let Some(block_end) = aligned.checked_add(size) else {
                continue;
            };
            if block_end > end {
                continue;
            }
            // Split into [start, aligned) and [block_end, end); either may be empty.
            match (aligned > start, block_end < end) {
                (false, false) => self.remove(index),
                (false, true) => self.ranges[index].start = block_end,
                (true, false) => self.ranges[index].end = aligned,
                (true, true) => {
                    if self.count == MAX_RANGES {
                        // No room for the split; try further ranges rather
                        // than lose the alignment gap.
                        continue;
                    }
                    self.ranges[index].end = aligned;
                    self.insert_at(
                        index + 1,
                        Range {
                            start: block_end,
                            end,
                        },
                    );
                }
            }
            return Some(aligned);
        }
        None
    }

    /// Returns `[start, start + size)` to the free list, merging with its
    /// neighbours. The range must not overlap a free range.
    pub fn free(&mut self, start: usize, size: usize) {
        let size = size.max(1);
        let end = start + size;
        let index = self.ranges[..self.count].partition_point(|range| range.start < start);
        let merges_previous = index > 0 && self.ranges[index - 1].end == start;
        let merges_next = index < self.count && self.ranges[index].start == end;
        match (merges_previous, merges_next) {
            (true, true) => {
                self.ranges[index - 1].end = self.ranges[index].end;
                self.remove(index);
            }
            (true, false) => self.ranges[index - 1].end = end,
            (false, true) => self.ranges[index].start = start,
            (false, false) => {
                if self.count == MAX_RANGES {
                    self.leaked_bytes += size;
                } else {
                    self.insert_at(index, Range { start, end });
                }
            }
        }
    }

    fn remove(&mut self, index: usize) {
        self.ranges.copy_within(index + 1..self.count, index);
        self.count -= 1;
    }

    fn insert_at(&mut self, index: usize, range: Range) {
        self.ranges.copy_within(index..self.count, index + 1);
        self.ranges[index] = range;
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap(start: usize, size: usize) -> FreeRanges {
        let mut ranges = FreeRanges::new();
        ranges.free(start, size);
        ranges
    }

    #[test]
    fn allocations_are_aligned_disjoint_and_inside_the_heap() {
        let mut ranges = heap(0x1003, 0x10000);
        let mut taken: std::vec::Vec<(usize, usize)> = std::vec::Vec::new();
        for (size, align) in [(1, 1), (24, 8), (4096, 4096), (100, 16), (7, 64)] {
            let start = ranges.allocate(size, align).unwrap();
            assert_eq!(start % align, 0);
            assert!(start >= 0x1003 && start + size <= 0x11003);
            for &(other, other_size) in &taken {
                assert!(start + size <= other || other + other_size <= start);
            }
            taken.push((start, size));
        }
    }

    #[test]
    fn freeing_everything_coalesces_back_to_one_range() {
        let mut ranges = heap(0x10000, 0x8000);
        let blocks: std::vec::Vec<usize> = (0..8)
            .map(|_| ranges.allocate(0x1000, 0x1000).unwrap())
            .collect();
        assert_eq!(ranges.allocate(1, 1), None);
        for &block in blocks.iter().rev().step_by(2) {
            ranges.free(block, 0x1000);
        }
        for &block in blocks.iter().step_by(2) {
            ranges.free(block, 0x1000);
        }
        assert_eq!(ranges.count, 1);
        assert_eq!(ranges.free_bytes(), 0x8000);
        assert_eq!(ranges.allocate(0x8000, 0x1000), Some(0x10000));
    }

    #[test]
    fn exhausted_heap_reports_none() {
        let mut ranges = heap(0, 64);
        assert_eq!(ranges.allocate(65, 1), None);
        assert_eq!(ranges.allocate(64, 1), Some(0));
        assert_eq!(ranges.allocate(1, 1), None);
    }

    #[test]
    fn alignment_gap_is_kept_free() {
        let mut ranges = heap(0x1008, 0x2000);
        assert_eq!(ranges.allocate(0x100, 0x1000), Some(0x2000));
        assert_eq!(ranges.free_bytes(), 0x2000 - 0x100);
        assert_eq!(ranges.allocate(0xff8, 8), Some(0x1008));
    }

    #[test]
    fn full_table_leaks_instead_of_corrupting() {
        let mut ranges = FreeRanges::new();
        for index in 0..MAX_RANGES + 3 {
            ranges.free(index * 16, 8);
        }
        assert_eq!(ranges.count, MAX_RANGES);
        assert_eq!(ranges.leaked_bytes(), 3 * 8);
        assert_eq!(ranges.free_bytes(), MAX_RANGES * 8);
    }
}
