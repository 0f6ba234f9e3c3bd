//! Copies between this domain's memory and memory another party may write
//! at any moment (a granted page mapped from a guest, a device's DMA
//! buffer): volatile accesses only, so the compiler never assumes such
//! memory is stable and no reference into it is ever formed.

/// Copies `destination.len()` bytes from foreign memory at `address` with
/// volatile loads: aligned 8-byte words for the bulk, bytes at the edges.
/// Volatile accesses never form a reference into memory the peer may change
/// meanwhile, and word-sized ones cost an eighth of the byte-wise loop
/// (which matters most under emulation).
///
/// # Safety
///
/// `address..address + destination.len()` must be mapped and readable.
pub unsafe fn copy_from_foreign(address: usize, destination: &mut [u8]) {
    let head = address
        .next_multiple_of(8)
        .wrapping_sub(address)
        .min(destination.len());
    let (bytes, rest) = destination.split_at_mut(head);
    for (index, byte) in bytes.iter_mut().enumerate() {
        // SAFETY: inside the caller's range.
        *byte = unsafe { ((address + index) as *const u8).read_volatile() };
    }
    let mut address = address + head;
    let mut words = rest.chunks_exact_mut(8);
    for chunk in &mut words {
        // SAFETY: inside the caller's range, and 8-aligned after the head.
        let word = unsafe { (address as *const u64).read_volatile() };
        chunk.copy_from_slice(&word.to_ne_bytes());
        address += 8;
    }
    for (index, byte) in words.into_remainder().iter_mut().enumerate() {
        // SAFETY: inside the caller's range.
        *byte = unsafe { ((address + index) as *const u8).read_volatile() };
    }
}

/// Copies `source` to foreign memory at `address` with volatile stores, as
/// [`copy_from_foreign`] reads.
///
/// # Safety
///
/// `address..address + source.len()` must be mapped and writable.
pub unsafe fn copy_to_foreign(address: usize, source: &[u8]) {
    let head = address
        .next_multiple_of(8)
        .wrapping_sub(address)
        .min(source.len());
    let (bytes, rest) = source.split_at(head);
    for (index, &byte) in bytes.iter().enumerate() {
        // SAFETY: inside the caller's range.
        unsafe { ((address + index) as *mut u8).write_volatile(byte) };
    }
    let mut address = address + head;
    let mut words = rest.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        // SAFETY: inside the caller's range, and 8-aligned after the head.
        unsafe { (address as *mut u64).write_volatile(u64::from_ne_bytes(word)) };
        address += 8;
    }
    for (index, &byte) in words.remainder().iter().enumerate() {
        // SAFETY: inside the caller's range.
        unsafe { ((address + index) as *mut u8).write_volatile(byte) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|index| (index * 7 + 3) as u8).collect()
    }

    /// Every start alignment and length around the word size, both ways,
    /// and nothing outside the range touched.
    #[test]
    fn every_alignment_and_length_round_trips() {
        for start in 0..16 {
            for len in [0, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 4096] {
                let foreign = pattern(start + len + 16);
                let mut copy = alloc::vec![0xee; len];
                // SAFETY: inside `foreign`.
                unsafe { copy_from_foreign(foreign.as_ptr() as usize + start, &mut copy) };
                assert_eq!(copy, foreign[start..start + len], "read {start}+{len}");

                let mut target = alloc::vec![0x55u8; start + len + 16];
                let source = pattern(len);
                // SAFETY: inside `target`.
                unsafe { copy_to_foreign(target.as_mut_ptr() as usize + start, &source) };
                assert_eq!(
                    target[start..start + len],
                    source[..],
                    "write {start}+{len}"
                );
                assert!(target[..start].iter().all(|&byte| byte == 0x55));
                assert!(target[start + len..].iter().all(|&byte| byte == 0x55));
            }
        }
    }
}
