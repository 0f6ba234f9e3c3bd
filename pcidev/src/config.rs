//! Configuration space header registers and the command register.

use crate::{ConfigSpace, PciError};

/// Offsets of the type 0 header registers drivers use.
pub mod register {
    /// Vendor ID (`u16`).
    pub const VENDOR_ID: u16 = 0x00;
    /// Device ID (`u16`).
    pub const DEVICE_ID: u16 = 0x02;
    /// Command (`u16`).
    pub const COMMAND: u16 = 0x04;
    /// Status (`u16`).
    pub const STATUS: u16 = 0x06;
    /// Revision ID (`u8`).
    pub const REVISION_ID: u16 = 0x08;
    /// Class code: programming interface, subclass, class (3 bytes from here).
    pub const CLASS_CODE: u16 = 0x09;
    /// Base address register 0 (`u32`); BAR n is at `BAR0 + 4 * n`.
    pub const BAR0: u16 = 0x10;
    /// First capability pointer (`u8`).
    pub const CAPABILITIES_POINTER: u16 = 0x34;
    /// Status bit: the capability list is implemented.
    pub const STATUS_CAPABILITIES_LIST: u16 = 1 << 4;
}

/// Command register bit: respond to memory space accesses (BARs).
pub const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
/// Command register bit: the device may master the bus (DMA, MSI).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command register bit: the INTx pin is not asserted.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// Turns on memory space decoding and bus mastering, leaving the other
/// command bits as they are. Returns the previous command register.
pub fn enable_bus_master<C: ConfigSpace + ?Sized>(config: &mut C) -> Result<u16, PciError> {
    let command = config.config_read16(register::COMMAND)?;
    if command == 0xffff {
        return Err(PciError::DeviceGone);
    }
    config.config_write16(
        register::COMMAND,
        command | COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER,
    )?;
    Ok(command)
}
