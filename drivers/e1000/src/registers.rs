//! Register offsets and bits of the 8254x family as the 82540EM has them
//! (Intel "PCI/PCI-X Family of Gigabit Ethernet Controllers Software
//! Developer's Manual", 317453, chapter 13). The names are Intel's.
//!
//! Every register is 32 bits wide in BAR 0 (memory space).

/// Device Control.
pub const CTRL: u32 = 0x0000;
/// Device Status (read only).
pub const STATUS: u32 = 0x0008;
/// EEPROM Read (82540EM layout: start bit 0, done bit 4, address in 15:8,
/// data in 31:16).
pub const EERD: u32 = 0x0014;
/// Interrupt Cause Read; reading clears every cause.
pub const ICR: u32 = 0x00C0;
/// Interrupt Throttling.
pub const ITR: u32 = 0x00C4;
/// Interrupt Cause Set.
pub const ICS: u32 = 0x00C8;
/// Interrupt Mask Set/Read.
pub const IMS: u32 = 0x00D0;
/// Interrupt Mask Clear.
pub const IMC: u32 = 0x00D8;
/// Receive Control.
pub const RCTL: u32 = 0x0100;
/// Transmit Control.
pub const TCTL: u32 = 0x0400;
/// Transmit Inter Packet Gap.
pub const TIPG: u32 = 0x0410;
/// Receive Descriptor Base Address, low 32 bits.
pub const RDBAL: u32 = 0x2800;
/// Receive Descriptor Base Address, high 32 bits.
pub const RDBAH: u32 = 0x2804;
/// Receive Descriptor Length in bytes (a multiple of 128).
pub const RDLEN: u32 = 0x2808;
/// Receive Descriptor Head.
pub const RDH: u32 = 0x2810;
/// Receive Descriptor Tail.
pub const RDT: u32 = 0x2818;
/// Receive Delay Timer.
pub const RDTR: u32 = 0x2820;
/// Transmit Descriptor Base Address, low 32 bits.
pub const TDBAL: u32 = 0x3800;
/// Transmit Descriptor Base Address, high 32 bits.
pub const TDBAH: u32 = 0x3804;
/// Transmit Descriptor Length in bytes (a multiple of 128).
pub const TDLEN: u32 = 0x3808;
/// Transmit Descriptor Head.
pub const TDH: u32 = 0x3810;
/// Transmit Descriptor Tail.
pub const TDT: u32 = 0x3818;
/// Transmit Interrupt Delay Value.
pub const TIDV: u32 = 0x3820;
/// CRC Error Count (clears on read).
pub const CRCERRS: u32 = 0x4000;
/// Missed Packets Count: frames dropped for lack of receive descriptors or
/// FIFO space (clears on read).
pub const MPC: u32 = 0x4010;
/// Receive No Buffers Count (clears on read).
pub const RNBC: u32 = 0x40A0;
/// Multicast Table Array, 128 registers.
pub const MTA: u32 = 0x5200;
/// Registers in the Multicast Table Array.
pub const MTA_LEN: u32 = 128;
/// Receive Address Low, entry 0.
pub const RAL0: u32 = 0x5400;
/// Receive Address High, entry 0.
pub const RAH0: u32 = 0x5404;

/// CTRL bits.
pub mod ctrl {
    /// Full duplex.
    pub const FD: u32 = 1 << 0;
    /// Link reset.
    pub const LRST: u32 = 1 << 3;
    /// Auto-speed detection enable.
    pub const ASDE: u32 = 1 << 5;
    /// Set link up.
    pub const SLU: u32 = 1 << 6;
    /// Invert loss-of-signal.
    pub const ILOS: u32 = 1 << 7;
    /// Device reset; self-clearing.
    pub const RST: u32 = 1 << 26;
    /// VLAN mode enable.
    pub const VME: u32 = 1 << 30;
    /// PHY reset.
    pub const PHY_RST: u32 = 1 << 31;
}

/// STATUS bits.
pub mod status {
    /// Full duplex.
    pub const FD: u32 = 1 << 0;
    /// Link up.
    pub const LU: u32 = 1 << 1;
    /// Link speed: shift of the two-bit field.
    pub const SPEED_SHIFT: u32 = 6;
}

/// EERD fields of the 82540EM.
pub mod eerd {
    /// Start a read.
    pub const START: u32 = 1 << 0;
    /// The read is done and DATA is valid.
    pub const DONE: u32 = 1 << 4;
    /// Shift of the word address.
    pub const ADDR_SHIFT: u32 = 8;
    /// Shift of the data word.
    pub const DATA_SHIFT: u32 = 16;
}

/// Interrupt cause bits, shared by ICR, ICS, IMS and IMC.
pub mod interrupt {
    /// Transmit descriptor written back.
    pub const TXDW: u32 = 1 << 0;
    /// Transmit queue empty.
    pub const TXQE: u32 = 1 << 1;
    /// Link status change.
    pub const LSC: u32 = 1 << 2;
    /// Receive sequence error.
    pub const RXSEQ: u32 = 1 << 3;
    /// Receive descriptor minimum threshold reached.
    pub const RXDMT0: u32 = 1 << 4;
    /// Receiver overrun.
    pub const RXO: u32 = 1 << 6;
    /// Receiver timer interrupt (a frame was received).
    pub const RXT0: u32 = 1 << 7;
    /// Every cause the 82540EM has, for masking all of them.
    pub const ALL: u32 = 0x0001_FFFF;
}

/// RCTL bits.
pub mod rctl {
    /// Receiver enable.
    pub const EN: u32 = 1 << 1;
    /// Store bad packets.
    pub const SBP: u32 = 1 << 2;
    /// Unicast promiscuous.
    pub const UPE: u32 = 1 << 3;
    /// Multicast promiscuous.
    pub const MPE: u32 = 1 << 4;
    /// Long packet enable (frames over 1522 bytes).
    pub const LPE: u32 = 1 << 5;
    /// Descriptor minimum threshold: half of the ring.
    pub const RDMTS_HALF: u32 = 0 << 8;
    /// Broadcast accept mode.
    pub const BAM: u32 = 1 << 15;
    /// Buffer size 2048 bytes (BSIZE = 00, BSEX = 0).
    pub const BSIZE_2048: u32 = 0 << 16;
    /// Mask of the buffer size field.
    pub const BSIZE_MASK: u32 = 3 << 16;
    /// Buffer size extension.
    pub const BSEX: u32 = 1 << 25;
    /// Strip Ethernet CRC from received frames.
    pub const SECRC: u32 = 1 << 26;
}

/// TCTL bits and fields.
pub mod tctl {
    /// Transmitter enable.
    pub const EN: u32 = 1 << 1;
    /// Pad short packets to 64 bytes (with CRC).
    pub const PSP: u32 = 1 << 3;
    /// Shift of the collision threshold.
    pub const CT_SHIFT: u32 = 4;
    /// Shift of the collision distance.
    pub const COLD_SHIFT: u32 = 12;
    /// Collision threshold the manual recommends.
    pub const CT_DEFAULT: u32 = 0x0F;
    /// Collision distance for full duplex.
    pub const COLD_FULL_DUPLEX: u32 = 0x40;
}

/// TIPG values the manual recommends for the 82540EM on copper.
pub mod tipg {
    /// IPG transmit time.
    pub const IPGT_COPPER: u32 = 10;
    /// IPG receive time 1, at bit 10.
    pub const IPGR1: u32 = 8 << 10;
    /// IPG receive time 2, at bit 20.
    pub const IPGR2: u32 = 6 << 20;
}

/// RAH bits.
pub mod rah {
    /// Address valid.
    pub const AV: u32 = 1 << 31;
}

/// EEPROM word addresses.
pub mod eeprom {
    /// Words 0..3 hold the Ethernet address, low byte first.
    pub const ETHERNET_ADDRESS: u8 = 0;
}
