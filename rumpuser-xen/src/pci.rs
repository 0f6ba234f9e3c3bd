//! The portable arithmetic beneath the PCI passthrough layer (`pv::pci`):
//! the `xen_pci_op` request as pcifront lays it into the shared page
//! ([`xen/io/pciif.h`](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/io/pciif.h)),
//! the addresses pciback writes into xenstore, BAR decoding, and the
//! bookkeeping of machine-contiguous DMA regions. Nothing here touches the
//! hypervisor, so all of it is unit-tested on the host.

use core::fmt;
use core::mem::offset_of;

use pcidev::{Bdf, PciError};
use xen_abi::{xen_msix_entry, xen_pci_op, xen_pci_sharedinfo};

/// Byte offset of `flags` in the shared page (`XEN_PCIF_active` lives there).
pub const SHARED_FLAGS: usize = offset_of!(xen_pci_sharedinfo, flags);
/// Byte offset of the `xen_pci_op` in the shared page.
pub const SHARED_OP: usize = offset_of!(xen_pci_sharedinfo, op);
/// Most MSI-X entries one request carries (`SH_INFO_MAX_VEC`).
pub const MAX_MSIX_ENTRIES: usize = 128;

const _: () = assert!(core::mem::size_of::<xen_msix_entry>() == 4);
const _: () = assert!(
    core::mem::size_of::<[xen_msix_entry; MAX_MSIX_ENTRIES]>()
        == core::mem::size_of::<xen_pci_op>() - offset_of!(xen_pci_op, msix_entries)
);

/// A function as pcifront names it in a request: segment, bus and
/// `devfn` (device << 3 | function), pciback's virtual address of the
/// device (`vdev-N`), which is not its host address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpTarget {
    /// PCI segment (`domain` in the request).
    pub segment: u32,
    /// Bus.
    pub bus: u32,
    /// `device << 3 | function`.
    pub devfn: u32,
}

impl From<Bdf> for OpTarget {
    fn from(address: Bdf) -> Self {
        Self {
            segment: u32::from(address.segment),
            bus: u32::from(address.bus),
            devfn: u32::from(address.device) << 3 | u32::from(address.function),
        }
    }
}

/// One request to pciback, before it is written into the shared page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciOp {
    /// `XEN_PCI_OP_*`.
    pub cmd: u32,
    /// The function the request is about.
    pub target: OpTarget,
    /// Config space offset (reads and writes).
    pub offset: i32,
    /// Access width in bytes (reads and writes).
    pub size: i32,
    /// Value to write; for `enable_msix`, the number of entries.
    pub value: u32,
    /// MSI-X table indices for `enable_msix` (at most 128).
    pub msix_entries: alloc::vec::Vec<u16>,
}

impl PciOp {
    /// `XEN_PCI_OP_conf_read` of `width` bytes at `offset`.
    pub fn config_read(target: OpTarget, offset: u16, width: u8) -> Self {
        Self::config(xen_abi::XEN_PCI_OP_conf_read, target, offset, width, 0)
    }

    /// `XEN_PCI_OP_conf_write` of the low `width` bytes of `value` at `offset`.
    pub fn config_write(target: OpTarget, offset: u16, width: u8, value: u32) -> Self {
        Self::config(xen_abi::XEN_PCI_OP_conf_write, target, offset, width, value)
    }

    fn config(cmd: u32, target: OpTarget, offset: u16, width: u8, value: u32) -> Self {
        Self {
            cmd,
            target,
            offset: i32::from(offset),
            size: i32::from(width),
            value,
            msix_entries: alloc::vec::Vec::new(),
        }
    }

    /// A command that carries no operands (`enable_msi`, `disable_msi`,
    /// `disable_msix`).
    pub fn plain(cmd: u32, target: OpTarget) -> Self {
        Self::config(cmd, target, 0, 0, 0)
    }

    /// `XEN_PCI_OP_enable_msix` for MSI-X table entries `0..count`
    /// (`count` is clamped to 128).
    pub fn enable_msix(target: OpTarget, count: u16) -> Self {
        let count = count.min(MAX_MSIX_ENTRIES as u16);
        Self {
            cmd: xen_abi::XEN_PCI_OP_enable_msix,
            target,
            offset: 0,
            size: 0,
            value: u32::from(count),
            msix_entries: (0..count).collect(),
        }
    }

    /// The 32-bit words to store into the shared page, as (byte offset in
    /// the page, value): every field of the `xen_pci_op` the request uses,
    /// `err` cleared, and the MSI-X entries with their `vector` cleared.
    pub fn words(&self) -> alloc::vec::Vec<(usize, u32)> {
        let field = |offset: usize| SHARED_OP + offset;
        let mut words = alloc::vec![
            (field(offset_of!(xen_pci_op, cmd)), self.cmd),
            (field(offset_of!(xen_pci_op, err)), 0),
            (field(offset_of!(xen_pci_op, domain)), self.target.segment),
            (field(offset_of!(xen_pci_op, bus)), self.target.bus),
            (field(offset_of!(xen_pci_op, devfn)), self.target.devfn),
            (field(offset_of!(xen_pci_op, offset)), self.offset as u32),
            (field(offset_of!(xen_pci_op, size)), self.size as u32),
            (field(offset_of!(xen_pci_op, value)), self.value),
            (field(offset_of!(xen_pci_op, info)), 0),
        ];
        for (index, &entry) in self.msix_entries.iter().enumerate() {
            // `struct xen_msix_entry { uint16_t vector; uint16_t entry; }`,
            // little-endian: the entry is the high half of the word.
            words.push((msix_entry_offset(index), u32::from(entry) << 16));
        }
        words
    }
}

/// Byte offset in the shared page of `msix_entries[index]`.
pub fn msix_entry_offset(index: usize) -> usize {
    SHARED_OP + offset_of!(xen_pci_op, msix_entries) + index * 4
}

/// Byte offset in the shared page of `op.err`.
pub const REPLY_ERR: usize = SHARED_OP + offset_of!(xen_pci_op, err);
/// Byte offset in the shared page of `op.value`.
pub const REPLY_VALUE: usize = SHARED_OP + offset_of!(xen_pci_op, value);

/// The pirq pciback returned in an MSI-X entry word (`vector`, low half).
pub fn msix_entry_pirq(word: u32) -> u16 {
    word as u16
}

/// Why pciback refused a request (`op.err`, `XEN_PCI_ERR_*` or a negative
/// errno from the MSI paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciOpError {
    /// pciback does not know the device
    DeviceNotFound,
    /// the offset is outside the config space
    InvalidOffset,
    /// pciback does not let this domain make that access
    AccessDenied,
    /// pciback does not implement the request
    NotImplemented,
    /// pciback failed to carry out the request
    OperationFailed,
    /// pciback answered with an unknown error code
    Other(i32),
}

impl PciOpError {
    /// Decodes `op.err`; 0 is success.
    pub fn from_err(err: i32) -> Result<(), Self> {
        match err {
            0 => Ok(()),
            xen_abi::XEN_PCI_ERR_dev_not_found => Err(Self::DeviceNotFound),
            xen_abi::XEN_PCI_ERR_invalid_offset => Err(Self::InvalidOffset),
            xen_abi::XEN_PCI_ERR_access_denied => Err(Self::AccessDenied),
            xen_abi::XEN_PCI_ERR_not_implemented => Err(Self::NotImplemented),
            xen_abi::XEN_PCI_ERR_op_failed => Err(Self::OperationFailed),
            other => Err(Self::Other(other)),
        }
    }

    /// The [`PciError`] a driver sees for this refusal.
    pub fn to_pci_error(self) -> PciError {
        match self {
            Self::DeviceNotFound => PciError::DeviceGone,
            Self::InvalidOffset => PciError::OutOfBounds,
            Self::AccessDenied => PciError::Denied,
            Self::NotImplemented | Self::OperationFailed | Self::Other(_) => PciError::Denied,
        }
    }
}

impl fmt::Display for PciOpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeviceNotFound => f.write_str("pciback does not know the device"),
            Self::InvalidOffset => f.write_str("the offset is outside the config space"),
            Self::AccessDenied => f.write_str("pciback does not let this domain make that access"),
            Self::NotImplemented => f.write_str("pciback does not implement the request"),
            Self::OperationFailed => f.write_str("pciback failed to carry out the request"),
            Self::Other(code) => write!(f, "pciback answered with unknown error code {code}"),
        }
    }
}

/// Parses a PCI address as pciback and libxl write it into xenstore
/// (`dev-N`, `vdev-N`): `ssss:bb:dd.f`, where pciback writes the function
/// with two digits (`0000:00:00.00`). Values come from another domain, so
/// anything else is `None`.
pub fn parse_xenstore_address(text: &str) -> Option<Bdf> {
    let (location, function) = text.rsplit_once('.')?;
    if function.is_empty() || function.len() > 2 || !function.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let function = u8::from_str_radix(function, 16).ok()?;
    // Bdf::parse checks every other field; give it a one-digit function.
    let address = Bdf::parse(&alloc::format!("{location}.{function:x}")).ok()?;
    // A four-digit segment is how both writers spell it; insist on it, so
    // the short `bb:dd.f` form Bdf also accepts is not taken from xenstore.
    (location.split(':').count() == 3).then_some(address)
}

/// What kind of region a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// Nothing: the BAR reads as zero, or sizes to zero.
    Unimplemented,
    /// I/O port space (not mapped by this layer).
    Io,
    /// 32-bit memory space.
    Memory32,
    /// 64-bit memory space: this BAR and the next hold the address.
    Memory64,
}

/// A decoded memory BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBar {
    /// Bus (and, in a PV domain, machine) address of the region.
    pub address: u64,
    /// Length in bytes, a power of two.
    pub length: u64,
    /// Whether the region is prefetchable.
    pub prefetchable: bool,
}

/// The kind of BAR `low` (its value as read) describes.
pub fn bar_kind(low: u32) -> BarKind {
    if low & 1 != 0 {
        return BarKind::Io;
    }
    match (low >> 1) & 3 {
        0 => BarKind::Memory32,
        2 => BarKind::Memory64,
        // Type 1 (below 1 MiB) is obsolete and type 3 reserved.
        _ => BarKind::Unimplemented,
    }
}

/// Decodes a memory BAR from the value read (`low`, and `high` for the
/// upper half of a 64-bit BAR) and the value read back after writing all
/// ones (`sized_low`, `sized_high`). `None` for an I/O or unimplemented
/// BAR, a size that is not a power of two, or a region that wraps.
pub fn decode_memory_bar(
    low: u32,
    high: u32,
    sized_low: u32,
    sized_high: u32,
) -> Option<MemoryBar> {
    let kind = bar_kind(low);
    let (address, mask) = match kind {
        BarKind::Memory32 => (
            u64::from(low & !0xf),
            u64::from(sized_low & !0xf) | 0xffff_ffff_0000_0000,
        ),
        BarKind::Memory64 => (
            u64::from(high) << 32 | u64::from(low & !0xf),
            u64::from(sized_high) << 32 | u64::from(sized_low & !0xf),
        ),
        BarKind::Io | BarKind::Unimplemented => return None,
    };
    if mask == 0 || mask == 0xffff_ffff_0000_0000 {
        return None;
    }
    // The writable address bits are the mask; the length is its lowest set
    // bit, and every bit above it must be writable too.
    let length = mask & mask.wrapping_neg();
    if mask.wrapping_add(length) != 0 {
        return None;
    }
    address.checked_add(length - 1)?;
    Some(MemoryBar {
        address,
        length,
        prefetchable: low & 0x8 != 0,
    })
}

/// Page-table entry flags of an uncached MMIO page: present, writable,
/// user (a 64-bit PV kernel runs in ring 3), accessed, dirty, PWT and PCD.
pub const MMIO_PTE_FLAGS: u64 = 1 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6;

/// The page-table entry mapping machine page `address` uncached.
pub fn mmio_pte(address: u64) -> u64 {
    (address & 0x000f_ffff_ffff_f000) | MMIO_PTE_FLAGS
}

/// One machine-contiguous region of DMA memory: `pages` pages mapped at
/// virtual `base` and found by the device at bus address `bus_base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaRegion {
    /// Virtual address of the first byte.
    pub base: u64,
    /// Bus address of the first byte.
    pub bus_base: u64,
    /// Length in bytes.
    pub length: u64,
}

impl DmaRegion {
    /// Bus address of the byte at virtual `address`, if inside the region.
    pub fn bus_address(&self, address: u64) -> Option<u64> {
        let offset = address.checked_sub(self.base)?;
        (offset < self.length).then(|| self.bus_base + offset)
    }

    /// Whether `[address, address + length)` lies inside the region.
    pub fn contains(&self, address: u64, length: u64) -> bool {
        address >= self.base
            && address
                .checked_add(length)
                .is_some_and(|end| end <= self.base + self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> OpTarget {
        OpTarget::from(Bdf {
            segment: 0,
            bus: 0,
            device: 5,
            function: 1,
        })
    }

    #[test]
    fn shared_page_layout_matches_pciif() {
        // xen_pci_sharedinfo: flags, then op { cmd, err, domain, bus,
        // devfn, offset, size, value, info, msix_entries[128] }.
        assert_eq!(SHARED_FLAGS, 0);
        assert_eq!(SHARED_OP, 4);
        assert_eq!(REPLY_ERR, 8);
        assert_eq!(REPLY_VALUE, 32);
        assert_eq!(msix_entry_offset(0), 40);
        assert_eq!(msix_entry_offset(127), 40 + 127 * 4);
    }

    #[test]
    fn config_read_encoding() {
        let op = PciOp::config_read(target(), 0x10, 4);
        assert_eq!(target().devfn, 5 << 3 | 1);
        let words = op.words();
        assert_eq!(
            words,
            [
                (4, xen_abi::XEN_PCI_OP_conf_read),
                (8, 0),
                (12, 0),
                (16, 0),
                (20, 0x29),
                (24, 0x10),
                (28, 4),
                (32, 0),
                (36, 0)
            ]
        );
    }

    #[test]
    fn config_write_and_msix_encoding() {
        let write = PciOp::config_write(target(), 0x4, 2, 0x6);
        assert!(write.words().contains(&(4, xen_abi::XEN_PCI_OP_conf_write)));
        assert!(write.words().contains(&(32, 6)));
        assert!(write.words().contains(&(28, 2)));

        let msix = PciOp::enable_msix(target(), 3);
        let words = msix.words();
        assert!(words.contains(&(4, xen_abi::XEN_PCI_OP_enable_msix)));
        assert!(words.contains(&(32, 3)));
        assert_eq!(&words[9..], &[(40, 0), (44, 1 << 16), (48, 2 << 16)]);
        assert_eq!(PciOp::enable_msix(target(), 1000).msix_entries.len(), 128);
        // The pirq comes back in the low half.
        assert_eq!(msix_entry_pirq(0x0002_0037), 0x37);
    }

    #[test]
    fn errors_decode() {
        assert_eq!(PciOpError::from_err(0), Ok(()));
        assert_eq!(PciOpError::from_err(-1), Err(PciOpError::DeviceNotFound));
        assert_eq!(PciOpError::from_err(-3), Err(PciOpError::AccessDenied));
        assert_eq!(PciOpError::from_err(-5), Err(PciOpError::OperationFailed));
        assert_eq!(PciOpError::from_err(-22), Err(PciOpError::Other(-22)));
        assert_eq!(PciOpError::AccessDenied.to_pci_error(), PciError::Denied);
    }

    #[test]
    fn xenstore_addresses() {
        let expected = Bdf {
            segment: 0,
            bus: 0,
            device: 5,
            function: 0,
        };
        assert_eq!(parse_xenstore_address("0000:00:05.0"), Some(expected));
        assert_eq!(parse_xenstore_address("0000:00:05.00"), Some(expected));
        assert_eq!(
            parse_xenstore_address("0001:1f:1f.07"),
            Some(Bdf {
                segment: 1,
                bus: 0x1f,
                device: 0x1f,
                function: 7
            })
        );
        for bad in [
            "",
            "00:05.0",
            "0000:00:05.8",
            "0000:00:05.000",
            "0000:00:20.0",
            "0000:00:05",
            "0000:00:05.",
            "0000:000:05.0",
            "x000:00:05.0",
            "0000:00:05.-1",
            "0000:00:05.0 ",
        ] {
            assert_eq!(parse_xenstore_address(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bar_decoding() {
        // 32-bit, 16 KiB, non-prefetchable at 0xfebd0000.
        assert_eq!(
            decode_memory_bar(0xfebd_0000, 0, 0xffff_c000, 0),
            Some(MemoryBar {
                address: 0xfebd_0000,
                length: 0x4000,
                prefetchable: false
            })
        );
        // 64-bit prefetchable, 8 GiB at 0x8_0000_0000.
        assert_eq!(
            decode_memory_bar(0x0000_000c, 0x8, 0x0000_000c, 0xffff_fffe),
            Some(MemoryBar {
                address: 0x8_0000_0000,
                length: 0x2_0000_0000,
                prefetchable: true
            })
        );
        // 64-bit, 16 KiB, below 4 GiB.
        assert_eq!(
            decode_memory_bar(0xfe00_0004, 0, 0xffff_c004, 0xffff_ffff).map(|bar| bar.length),
            Some(0x4000)
        );
        // I/O, unimplemented, holes in the mask, wrapping.
        assert_eq!(decode_memory_bar(0xc001, 0, 0xffff_ffe1, 0), None);
        assert_eq!(decode_memory_bar(0, 0, 0, 0), None);
        assert_eq!(decode_memory_bar(0xfebd_0000, 0, 0xfff0_c000, 0), None);
        assert_eq!(
            decode_memory_bar(0xffff_f004, 0xffff_ffff, 0xffff_c004, 0xffff_ffff),
            None
        );
        assert_eq!(bar_kind(0x2), BarKind::Unimplemented);
        assert_eq!(bar_kind(0x4), BarKind::Memory64);
    }

    #[test]
    fn mmio_entries_are_uncached() {
        assert_eq!(mmio_pte(0xfebd_1234) & !0xfff, 0xfebd_1000);
        assert_eq!(mmio_pte(0) & 0x18, 0x18, "PWT and PCD");
        assert_eq!(mmio_pte(0) & 0x80, 0, "no PAT bit, no large page");
    }

    #[test]
    fn dma_region_arithmetic() {
        let region = DmaRegion {
            base: 0xffff_ffff_8100_0000,
            bus_base: 0x4_0020_0000,
            length: 0x20_0000,
        };
        assert_eq!(
            region.bus_address(0xffff_ffff_8100_1234),
            Some(0x4_0020_1234)
        );
        assert_eq!(region.bus_address(0xffff_ffff_8120_0000), None);
        assert_eq!(region.bus_address(0xffff_ffff_80ff_ffff), None);
        assert!(region.contains(0xffff_ffff_8100_0000, 0x20_0000));
        assert!(!region.contains(0xffff_ffff_8100_0001, 0x20_0000));
        assert!(!region.contains(0xffff_ffff_8100_0000, u64::MAX));
    }
}
