//! Walking the capability list of the configuration space header.
//!
//! Pure logic over [`ConfigSpace`] reads. The list lives in device-written
//! memory, so it is treated as hostile: a pointer into the header, a loop
//! or an overlong list is [`PciError::MalformedCapabilityList`].

use alloc::vec::Vec;

use crate::config::register;
use crate::{ConfigSpace, PciError};

/// A capability ID (the first byte of each capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CapabilityId(pub u8);

impl CapabilityId {
    /// Power management.
    pub const POWER_MANAGEMENT: Self = Self(0x01);
    /// Message signalled interrupts.
    pub const MSI: Self = Self(0x05);
    /// Vendor specific.
    pub const VENDOR_SPECIFIC: Self = Self(0x09);
    /// PCI Express.
    pub const PCI_EXPRESS: Self = Self(0x10);
    /// MSI-X.
    pub const MSI_X: Self = Self(0x11);
}

/// One entry of the capability list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// What it is.
    pub id: CapabilityId,
    /// Where its first byte is in configuration space.
    pub offset: u8,
}

/// The most entries a well-formed list can hold: (256 - 64) / 4.
const MAX_CAPABILITIES: usize = 48;

/// Lists the device's capabilities in list order (empty if the status
/// register says there is no list).
pub fn capabilities<C: ConfigSpace + ?Sized>(config: &mut C) -> Result<Vec<Capability>, PciError> {
    let mut found = Vec::new();
    let status = config.config_read16(register::STATUS)?;
    if status == 0xffff {
        return Err(PciError::DeviceGone);
    }
    if status & register::STATUS_CAPABILITIES_LIST == 0 {
        return Ok(found);
    }
    // The bottom two bits of every pointer are reserved.
    let mut next = config.config_read8(register::CAPABILITIES_POINTER)? & !3;
    while next != 0 {
        if next < 0x40 || found.len() == MAX_CAPABILITIES {
            return Err(PciError::MalformedCapabilityList);
        }
        if found.iter().any(|seen: &Capability| seen.offset == next) {
            return Err(PciError::MalformedCapabilityList);
        }
        let header = config.config_read16(u16::from(next))?;
        found.push(Capability {
            id: CapabilityId(header as u8),
            offset: next,
        });
        next = (header >> 8) as u8 & !3;
    }
    Ok(found)
}

/// The offset of the first capability with `id`, if the device has one.
pub fn find_capability<C: ConfigSpace + ?Sized>(
    config: &mut C,
    id: CapabilityId,
) -> Result<Option<u8>, PciError> {
    Ok(capabilities(config)?
        .into_iter()
        .find(|capability| capability.id == id)
        .map(|capability| capability.offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration space in plain memory.
    struct Plain([u8; 256]);

    impl ConfigSpace for Plain {
        fn config_read8(&mut self, offset: u16) -> Result<u8, PciError> {
            self.0
                .get(usize::from(offset))
                .copied()
                .ok_or(PciError::OutOfBounds)
        }
        fn config_read16(&mut self, offset: u16) -> Result<u16, PciError> {
            Ok(u16::from_le_bytes([
                self.config_read8(offset)?,
                self.config_read8(offset + 1)?,
            ]))
        }
        fn config_read32(&mut self, offset: u16) -> Result<u32, PciError> {
            Ok(u32::from(self.config_read16(offset)?)
                | u32::from(self.config_read16(offset + 2)?) << 16)
        }
        fn config_write8(&mut self, offset: u16, value: u8) -> Result<(), PciError> {
            *self
                .0
                .get_mut(usize::from(offset))
                .ok_or(PciError::OutOfBounds)? = value;
            Ok(())
        }
        fn config_write16(&mut self, offset: u16, value: u16) -> Result<(), PciError> {
            let [low, high] = value.to_le_bytes();
            self.config_write8(offset, low)?;
            self.config_write8(offset + 1, high)
        }
        fn config_write32(&mut self, offset: u16, value: u32) -> Result<(), PciError> {
            self.config_write16(offset, value as u16)?;
            self.config_write16(offset + 2, (value >> 16) as u16)
        }
    }

    fn with_list(entries: &[(u8, u8, u8)]) -> Plain {
        let mut space = [0u8; 256];
        space[register::STATUS as usize] = register::STATUS_CAPABILITIES_LIST as u8;
        space[register::CAPABILITIES_POINTER as usize] = entries.first().map_or(0, |e| e.0);
        for &(offset, id, next) in entries {
            space[offset as usize] = id;
            space[offset as usize + 1] = next;
        }
        Plain(space)
    }

    #[test]
    fn walks_a_list() {
        let mut space = with_list(&[(0x40, 0x01, 0x50), (0x50, 0x11, 0x70 | 3), (0x70, 0x10, 0)]);
        let list = capabilities(&mut space).unwrap();
        let ids: Vec<_> = list.iter().map(|c| (c.offset, c.id.0)).collect();
        assert_eq!(ids, [(0x40, 0x01), (0x50, 0x11), (0x70, 0x10)]);
        assert_eq!(
            find_capability(&mut space, CapabilityId::MSI_X),
            Ok(Some(0x50))
        );
        assert_eq!(find_capability(&mut space, CapabilityId::MSI), Ok(None));
    }

    #[test]
    fn no_list_is_empty() {
        let mut space = with_list(&[(0x40, 0x01, 0)]);
        space.0[register::STATUS as usize] = 0;
        assert_eq!(capabilities(&mut space), Ok(Vec::new()));
    }

    #[test]
    fn hostile_lists_are_errors() {
        let mut looped = with_list(&[(0x40, 0x01, 0x50), (0x50, 0x05, 0x40)]);
        assert_eq!(
            capabilities(&mut looped),
            Err(PciError::MalformedCapabilityList)
        );
        let mut into_header = with_list(&[(0x40, 0x01, 0x10)]);
        assert_eq!(
            capabilities(&mut into_header),
            Err(PciError::MalformedCapabilityList)
        );
        let mut gone = Plain([0xff; 256]);
        assert_eq!(capabilities(&mut gone), Err(PciError::DeviceGone));
        // Every byte pointing to the next dword: a 48-entry chain ends at
        // 0xfc with a pointer back to 0x40, which is a loop.
        let mut chain = Plain([0; 256]);
        chain.0[register::STATUS as usize] = register::STATUS_CAPABILITIES_LIST as u8;
        chain.0[register::CAPABILITIES_POINTER as usize] = 0x40;
        for offset in (0x40..0x100).step_by(4) {
            chain.0[offset + 1] = if offset == 0xfc {
                0x40
            } else {
                offset as u8 + 4
            };
        }
        assert_eq!(
            capabilities(&mut chain),
            Err(PciError::MalformedCapabilityList)
        );
        chain.0[0xfd] = 0;
        assert_eq!(capabilities(&mut chain).map(|list| list.len()), Ok(48));
    }

    #[test]
    fn bus_master_sets_bits() {
        let mut space = with_list(&[]);
        space.0[register::COMMAND as usize] = crate::COMMAND_INTX_DISABLE as u8;
        space.0[register::COMMAND as usize + 1] = (crate::COMMAND_INTX_DISABLE >> 8) as u8;
        crate::enable_bus_master(&mut space).unwrap();
        assert_eq!(
            space.config_read16(register::COMMAND),
            Ok(crate::COMMAND_INTX_DISABLE
                | crate::COMMAND_MEMORY_SPACE
                | crate::COMMAND_BUS_MASTER)
        );
    }
}
