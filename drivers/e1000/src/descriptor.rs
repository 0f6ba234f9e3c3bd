//! Legacy transmit and receive descriptors (16 bytes each, little endian),
//! as byte arrays copied to and from DMA memory.
//!
//! The driver never keeps a reference into descriptor memory: it writes a
//! whole descriptor with one copy-in and reads the device's write-back with
//! one copy-out, then decodes the copy. A write-back is the device's word
//! and is checked like any other input ([`RxWriteBack::judge`]).

/// Size of one descriptor in bytes.
pub const DESCRIPTOR_SIZE: usize = 16;

/// A descriptor as it sits in memory.
pub type DescriptorBytes = [u8; DESCRIPTOR_SIZE];

/// Transmit descriptor command bits (byte 11).
pub mod tx_command {
    /// End of packet: the last descriptor of a frame.
    pub const EOP: u8 = 1 << 0;
    /// Insert FCS (the Ethernet CRC).
    pub const IFCS: u8 = 1 << 1;
    /// Report status: write DD back when done.
    pub const RS: u8 = 1 << 3;
    /// Extension: set for context and data descriptors, clear for legacy.
    pub const DEXT: u8 = 1 << 5;
}

/// Transmit descriptor status bits (low nibble of byte 12).
pub mod tx_status {
    /// Descriptor done.
    pub const DD: u8 = 1 << 0;
    /// Excess collisions.
    pub const EC: u8 = 1 << 1;
    /// Late collision.
    pub const LC: u8 = 1 << 2;
}

/// Receive descriptor status bits (byte 12).
pub mod rx_status {
    /// Descriptor done.
    pub const DD: u8 = 1 << 0;
    /// End of packet.
    pub const EOP: u8 = 1 << 1;
}

/// Receive descriptor error bits (byte 13).
pub mod rx_errors {
    /// CRC or alignment error.
    pub const CE: u8 = 1 << 0;
    /// Symbol error.
    pub const SE: u8 = 1 << 1;
    /// Sequence error.
    pub const SEQ: u8 = 1 << 2;
    /// Carrier extension error.
    pub const CXE: u8 = 1 << 4;
    /// RX data error.
    pub const RXE: u8 = 1 << 7;
    /// The errors that mean the frame's bytes are bad. TCPE and IPE (bits 5
    /// and 6) only report checksum offload results, which the driver does
    /// not use.
    pub const FRAME: u8 = CE | SE | SEQ | CXE | RXE;
}

/// A legacy transmit descriptor for one buffer.
pub fn tx_legacy(buffer_address: u64, length: u16, command: u8) -> DescriptorBytes {
    let mut bytes = [0u8; DESCRIPTOR_SIZE];
    bytes[0..8].copy_from_slice(&buffer_address.to_le_bytes());
    bytes[8..10].copy_from_slice(&length.to_le_bytes());
    // CSO (byte 10), STA (12), CSS (13) and special (14..16) stay zero.
    bytes[11] = command;
    bytes
}

/// The status nibble of a transmit descriptor as the device wrote it back.
pub fn tx_status_of(bytes: &DescriptorBytes) -> u8 {
    bytes[12] & 0x0F
}

/// A receive descriptor handed to the device: its buffer, and a status of
/// zero so that a stale DD cannot be mistaken for a new write-back.
pub fn rx_fresh(buffer_address: u64) -> DescriptorBytes {
    let mut bytes = [0u8; DESCRIPTOR_SIZE];
    bytes[0..8].copy_from_slice(&buffer_address.to_le_bytes());
    bytes
}

/// The fields of a receive descriptor the device writes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxWriteBack {
    /// Bytes the device says it wrote into the buffer.
    pub length: u16,
    /// Status byte (DD, EOP, ...).
    pub status: u8,
    /// Error byte.
    pub errors: u8,
}

/// What a receive write-back means once checked against the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxJudgement {
    /// DD is clear: the device has not filled this descriptor yet.
    NotDone,
    /// A good fragment of `length` bytes; `end_of_packet` if it ends a frame.
    Fragment {
        /// Bytes of the buffer that hold data.
        length: usize,
        /// Whether this is the frame's last descriptor.
        end_of_packet: bool,
    },
    /// The device reported a receive error for the frame.
    FrameError {
        /// Whether this is the frame's last descriptor.
        end_of_packet: bool,
    },
    /// The length is larger than the buffer: the write-back cannot be true.
    BogusLength {
        /// Whether this is the frame's last descriptor.
        end_of_packet: bool,
    },
}

impl RxWriteBack {
    /// Decodes a copied-out descriptor.
    pub fn decode(bytes: &DescriptorBytes) -> Self {
        Self {
            length: u16::from_le_bytes([bytes[8], bytes[9]]),
            status: bytes[12],
            errors: bytes[13],
        }
    }

    /// Checks the write-back against the size of the buffer the driver gave.
    pub fn judge(&self, buffer_size: usize) -> RxJudgement {
        if self.status & rx_status::DD == 0 {
            return RxJudgement::NotDone;
        }
        let end_of_packet = self.status & rx_status::EOP != 0;
        if self.errors & rx_errors::FRAME != 0 {
            return RxJudgement::FrameError { end_of_packet };
        }
        let length = usize::from(self.length);
        if length > buffer_size {
            return RxJudgement::BogusLength { end_of_packet };
        }
        RxJudgement::Fragment {
            length,
            end_of_packet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_descriptor_layout() {
        let bytes = tx_legacy(
            0x1122_3344_5566_7788,
            0x05EA,
            tx_command::EOP | tx_command::RS,
        );
        assert_eq!(
            bytes,
            [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xEA, 0x05, 0, 0x09, 0, 0, 0, 0]
        );
        assert_eq!(tx_status_of(&bytes), 0);
        let mut done = bytes;
        done[12] = 0xF0 | tx_status::DD;
        assert_eq!(tx_status_of(&done), tx_status::DD);
    }

    #[test]
    fn rx_write_back_is_judged_against_the_buffer() {
        let mut bytes = rx_fresh(0x1000);
        assert_eq!(
            RxWriteBack::decode(&bytes).judge(2048),
            RxJudgement::NotDone
        );
        bytes[8..10].copy_from_slice(&2048u16.to_le_bytes());
        bytes[12] = rx_status::DD | rx_status::EOP;
        assert_eq!(
            RxWriteBack::decode(&bytes).judge(2048),
            RxJudgement::Fragment {
                length: 2048,
                end_of_packet: true
            }
        );
        bytes[8..10].copy_from_slice(&2049u16.to_le_bytes());
        assert_eq!(
            RxWriteBack::decode(&bytes).judge(2048),
            RxJudgement::BogusLength {
                end_of_packet: true
            }
        );
        bytes[12] = rx_status::DD;
        bytes[13] = rx_errors::CE;
        assert_eq!(
            RxWriteBack::decode(&bytes).judge(2048),
            RxJudgement::FrameError {
                end_of_packet: false
            }
        );
        // Checksum results alone do not spoil a frame.
        bytes[8..10].copy_from_slice(&60u16.to_le_bytes());
        bytes[13] = 0x60;
        assert_eq!(
            RxWriteBack::decode(&bytes).judge(2048),
            RxJudgement::Fragment {
                length: 60,
                end_of_packet: false
            }
        );
    }
}
