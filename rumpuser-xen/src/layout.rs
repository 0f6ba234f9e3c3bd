//! Address arithmetic of the PV memory layout: pseudo-physical frame `pfn`
//! is mapped at `VIRT_BASE + pfn * PAGE_SIZE`, and a virtual address splits
//! into four 9-bit page-table indices above the 12-bit page offset.

/// Size of a page.
pub const PAGE_SIZE: u64 = 4096;
/// Where pseudo-physical frame 0 is mapped (the image's link address).
pub const VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
/// Start of the window where foreign grants are mapped (the last GiB).
pub const GRANT_WINDOW_BASE: u64 = 0xffff_ffff_c000_0000;
/// Pages in the grant window (64 MiB).
pub const GRANT_WINDOW_PAGES: u64 = 16384;
/// Most pseudo-physical pages the 1:1 area can map before the grant window.
pub const MAX_MAPPED_PAGES: u64 = (GRANT_WINDOW_BASE - VIRT_BASE) / PAGE_SIZE;

/// Virtual address of pseudo-physical frame `pfn`.
pub const fn pfn_to_virt(pfn: u64) -> u64 {
    VIRT_BASE + pfn * PAGE_SIZE
}

/// Pseudo-physical frame of a virtual address in the 1:1 area.
pub const fn virt_to_pfn(address: u64) -> Option<u64> {
    if address < VIRT_BASE || address >= GRANT_WINDOW_BASE {
        return None;
    }
    Some((address - VIRT_BASE) / PAGE_SIZE)
}

/// Index into the page table of `level` (4 = top, 1 = leaf) for `address`.
pub const fn table_index(address: u64, level: u32) -> usize {
    ((address >> (12 + 9 * (level - 1))) & 511) as usize
}

/// Splits `[address, address + length)` into pieces that stay inside one
/// page each: `(address, length)` pairs.
pub fn page_pieces(address: u64, length: usize) -> impl Iterator<Item = (u64, usize)> {
    let end = address + length as u64;
    let mut cursor = address;
    core::iter::from_fn(move || {
        if cursor >= end {
            return None;
        }
        let page_end = (cursor / PAGE_SIZE + 1) * PAGE_SIZE;
        let piece_end = page_end.min(end);
        let piece = (cursor, (piece_end - cursor) as usize);
        cursor = piece_end;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pfn_and_virtual_address_round_trip() {
        assert_eq!(pfn_to_virt(0), VIRT_BASE);
        assert_eq!(virt_to_pfn(pfn_to_virt(1234) + 17), Some(1234));
        assert_eq!(virt_to_pfn(VIRT_BASE - 1), None);
        assert_eq!(virt_to_pfn(GRANT_WINDOW_BASE), None);
    }

    #[test]
    fn table_indices_of_the_image_base() {
        // 0xffffffff80000000: L4 511, L3 510, L2 0, L1 0.
        assert_eq!(table_index(VIRT_BASE, 4), 511);
        assert_eq!(table_index(VIRT_BASE, 3), 510);
        assert_eq!(table_index(VIRT_BASE, 2), 0);
        assert_eq!(table_index(VIRT_BASE + 0x20_3000, 2), 1);
        assert_eq!(table_index(VIRT_BASE + 0x20_3000, 1), 3);
        assert_eq!(table_index(GRANT_WINDOW_BASE, 3), 511);
    }

    #[test]
    fn pieces_never_cross_a_page() {
        let pieces: std::vec::Vec<_> = page_pieces(0x1ff0, 0x1020).collect();
        assert_eq!(pieces, [(0x1ff0, 0x10), (0x2000, 0x1000), (0x3000, 0x10)]);
        assert_eq!(page_pieces(0x1000, 0).count(), 0);
        assert_eq!(
            page_pieces(0x1000, 4096).collect::<std::vec::Vec<_>>(),
            [(0x1000, 4096)]
        );
    }
}
