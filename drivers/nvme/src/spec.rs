//! Register layout, queue entry formats and data structures of the NVM
//! Express Base Specification (revision 1.4) and NVM Command Set that this
//! driver uses. Pure encoding and decoding: no device access.

/// Controller Capabilities (`u64`).
pub const REG_CAP: u64 = 0x00;
/// Version (`u32`).
pub const REG_VS: u64 = 0x08;
/// Interrupt Mask Set (`u32`).
pub const REG_INTMS: u64 = 0x0c;
/// Controller Configuration (`u32`).
pub const REG_CC: u64 = 0x14;
/// Controller Status (`u32`).
pub const REG_CSTS: u64 = 0x1c;
/// Admin Queue Attributes (`u32`).
pub const REG_AQA: u64 = 0x24;
/// Admin Submission Queue base address (`u64`).
pub const REG_ASQ: u64 = 0x28;
/// Admin Completion Queue base address (`u64`).
pub const REG_ACQ: u64 = 0x30;
/// First doorbell register.
pub const DOORBELL_BASE: u64 = 0x1000;

/// CC.EN: enable.
pub const CC_EN: u32 = 1;
/// CC.IOSQES = 6 (64-byte submission entries), CC.IOCQES = 4 (16-byte
/// completion entries), CC.MPS = 0 (4 KiB pages), CC.CSS = 0 (NVM command
/// set), CC.AMS = 0 (round robin).
pub const CC_CONFIGURATION: u32 = (6 << 16) | (4 << 20);
/// CC.SHN = 01: normal shutdown notification.
pub const CC_SHN_NORMAL: u32 = 1 << 14;
/// CC.SHN field mask.
pub const CC_SHN_MASK: u32 = 3 << 14;
/// CSTS.SHST field mask.
pub const CSTS_SHST_MASK: u32 = 3 << 2;
/// CSTS.SHST = 10: shutdown processing complete.
pub const CSTS_SHST_COMPLETE: u32 = 2 << 2;
/// CSTS.RDY: ready.
pub const CSTS_RDY: u32 = 1;
/// CSTS.CFS: controller fatal status.
pub const CSTS_CFS: u32 = 1 << 1;

/// The memory page size the driver configures (CC.MPS = 0).
pub const PAGE_SIZE: usize = 4096;
/// Size of a submission queue entry.
pub const SQ_ENTRY_SIZE: usize = 64;
/// Size of a completion queue entry.
pub const CQ_ENTRY_SIZE: usize = 16;

/// The fields of CAP the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Maximum Queue Entries Supported, as a count (CAP.MQES is 0's based).
    pub max_queue_entries: u32,
    /// CAP.TO: worst-case time for CSTS.RDY to change, in 500 ms units.
    pub timeout_units: u8,
    /// CAP.DSTRD: doorbell stride is `4 << doorbell_stride` bytes.
    pub doorbell_stride: u8,
    /// CAP.CSS bit 0: the NVM command set is supported.
    pub nvm_command_set: bool,
    /// CAP.MPSMIN: smallest page size is `4096 << page_size_minimum`.
    pub page_size_minimum: u8,
}

impl Capabilities {
    /// Decodes CAP.
    pub fn decode(cap: u64) -> Self {
        Self {
            max_queue_entries: (cap & 0xffff) as u32 + 1,
            timeout_units: (cap >> 24) as u8,
            doorbell_stride: ((cap >> 32) & 0xf) as u8,
            nvm_command_set: (cap >> 37) & 1 == 1,
            page_size_minimum: ((cap >> 48) & 0xf) as u8,
        }
    }

    /// CAP.TO in milliseconds.
    pub fn timeout_ms(&self) -> u64 {
        u64::from(self.timeout_units) * 500
    }

    /// Offset of the doorbell of submission queue `qid` (tail) or of
    /// completion queue `qid` (head).
    pub fn doorbell(&self, qid: u16, completion: bool) -> u64 {
        DOORBELL_BASE + (2 * u64::from(qid) + u64::from(completion)) * (4 << self.doorbell_stride)
    }
}

/// Admin command opcodes.
pub mod admin {
    /// Delete I/O Submission Queue.
    pub const DELETE_IO_SQ: u8 = 0x00;
    /// Create I/O Submission Queue.
    pub const CREATE_IO_SQ: u8 = 0x01;
    /// Delete I/O Completion Queue.
    pub const DELETE_IO_CQ: u8 = 0x04;
    /// Create I/O Completion Queue.
    pub const CREATE_IO_CQ: u8 = 0x05;
    /// Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Set Features.
    pub const SET_FEATURES: u8 = 0x09;
    /// Identify CNS value: the namespace data structure for NSID.
    pub const CNS_NAMESPACE: u32 = 0x00;
    /// Identify CNS value: the controller data structure.
    pub const CNS_CONTROLLER: u32 = 0x01;
    /// Feature identifier: Number of Queues.
    pub const FEATURE_NUMBER_OF_QUEUES: u32 = 0x07;
}

/// NVM command set opcodes.
pub mod nvm {
    /// Flush.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
    /// Dataset Management.
    pub const DATASET_MANAGEMENT: u8 = 0x09;
    /// Dataset Management CDW11.AD: deallocate the ranges.
    pub const DSM_DEALLOCATE: u32 = 1 << 2;
    /// Size of one Dataset Management range.
    pub const DSM_RANGE_SIZE: usize = 16;
    /// Most ranges one Dataset Management command carries.
    pub const DSM_MAX_RANGES: usize = 256;
}

/// A submission queue entry, built field by field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Command {
    /// CDW0 bits 7:0.
    pub opcode: u8,
    /// CDW0 bits 31:16: command identifier.
    pub command_id: u16,
    /// Namespace identifier.
    pub nsid: u32,
    /// PRP entry 1.
    pub prp1: u64,
    /// PRP entry 2.
    pub prp2: u64,
    /// Command dwords 10 to 15.
    pub cdw: [u32; 6],
}

impl Command {
    /// The 64-byte little-endian entry (PSDT = 0: PRPs, no fused operation).
    pub fn encode(&self) -> [u8; SQ_ENTRY_SIZE] {
        let mut entry = [0u8; SQ_ENTRY_SIZE];
        let cdw0 = u32::from(self.opcode) | (u32::from(self.command_id) << 16);
        entry[0..4].copy_from_slice(&cdw0.to_le_bytes());
        entry[4..8].copy_from_slice(&self.nsid.to_le_bytes());
        entry[24..32].copy_from_slice(&self.prp1.to_le_bytes());
        entry[32..40].copy_from_slice(&self.prp2.to_le_bytes());
        for (index, dword) in self.cdw.iter().enumerate() {
            let at = 40 + 4 * index;
            entry[at..at + 4].copy_from_slice(&dword.to_le_bytes());
        }
        entry
    }
}

/// A completion queue entry, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// DW0: command specific result.
    pub result: u32,
    /// Submission queue head pointer.
    pub sq_head: u16,
    /// Submission queue identifier.
    pub sq_id: u16,
    /// Command identifier.
    pub command_id: u16,
    /// Phase tag.
    pub phase: bool,
    /// Status field without the phase tag: SC in bits 7:0, SCT in 10:8,
    /// CRD 12:11, M bit 13, DNR bit 14. Zero is success.
    pub status: u16,
}

impl Completion {
    /// Decodes a 16-byte entry.
    pub fn decode(entry: &[u8; CQ_ENTRY_SIZE]) -> Self {
        let dword = |index: usize| {
            u32::from_le_bytes([
                entry[4 * index],
                entry[4 * index + 1],
                entry[4 * index + 2],
                entry[4 * index + 3],
            ])
        };
        let (dw2, dw3) = (dword(2), dword(3));
        Self {
            result: dword(0),
            sq_head: dw2 as u16,
            sq_id: (dw2 >> 16) as u16,
            command_id: dw3 as u16,
            phase: (dw3 >> 16) & 1 == 1,
            status: (dw3 >> 17) as u16,
        }
    }

    /// Status Code Type (0 generic, 1 command specific, 2 media and data
    /// integrity, ...).
    pub fn status_code_type(&self) -> u8 {
        ((self.status >> 8) & 7) as u8
    }

    /// Status Code.
    pub fn status_code(&self) -> u8 {
        self.status as u8
    }
}

/// Generic status code: Invalid Command Opcode.
pub const STATUS_INVALID_OPCODE: u8 = 0x01;
/// Generic status code: Invalid Field in Command.
pub const STATUS_INVALID_FIELD: u8 = 0x02;

fn le16(data: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([data[at], data[at + 1]])
}

fn le32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn le64(data: &[u8], at: usize) -> u64 {
    u64::from(le32(data, at)) | (u64::from(le32(data, at + 4)) << 32)
}

/// The fields of the Identify Controller data structure the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyController {
    /// PCI vendor ID.
    pub vendor_id: u16,
    /// MDTS: largest transfer is `PAGE_SIZE << mdts` bytes; 0 means no limit.
    pub mdts: u8,
    /// NN: number of namespaces (largest valid NSID).
    pub namespaces: u32,
    /// ONCS bit 2: Dataset Management is supported.
    pub dataset_management: bool,
    /// VWC bit 0: a volatile write cache is present.
    pub volatile_write_cache: bool,
}

impl IdentifyController {
    /// Decodes the 4096-byte structure.
    pub fn decode(data: &[u8; PAGE_SIZE]) -> Self {
        Self {
            vendor_id: le16(data, 0),
            mdts: data[77],
            namespaces: le32(data, 516),
            dataset_management: le16(data, 520) & (1 << 2) != 0,
            volatile_write_cache: data[525] & 1 != 0,
        }
    }
}

/// The fields of the Identify Namespace data structure the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyNamespace {
    /// NSZE: size in logical blocks.
    pub size_blocks: u64,
    /// LBADS of the format in use: blocks are `1 << block_shift` bytes.
    pub block_shift: u8,
    /// MS of the format in use: metadata bytes per block.
    pub metadata_size: u16,
    /// NSATTR bit 0: the namespace is write protected.
    pub write_protected: bool,
}

impl IdentifyNamespace {
    /// Decodes the 4096-byte structure.
    pub fn decode(data: &[u8; PAGE_SIZE]) -> Self {
        // FLBAS bits 3:0 select one of the formats listed from byte 128.
        let format = usize::from(data[26] & 0xf);
        let descriptor = le32(data, 128 + 4 * format);
        Self {
            size_blocks: le64(data, 0),
            block_shift: (descriptor >> 16) as u8,
            metadata_size: descriptor as u16,
            write_protected: data[99] & 1 != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_layout() {
        let entry = Command {
            opcode: 0x02,
            command_id: 0xbeef,
            nsid: 1,
            prp1: 0x1122_3344_5566_7788,
            prp2: 0x1000,
            cdw: [1, 2, 3, 4, 5, 6],
        }
        .encode();
        assert_eq!(&entry[0..4], &[0x02, 0, 0xef, 0xbe]);
        assert_eq!(&entry[4..8], &[1, 0, 0, 0]);
        assert_eq!(&entry[8..24], &[0; 16]);
        assert_eq!(entry[24], 0x88);
        assert_eq!(entry[31], 0x11);
        assert_eq!(&entry[32..40], &0x1000u64.to_le_bytes());
        assert_eq!(&entry[40..44], &[1, 0, 0, 0]);
        assert_eq!(&entry[60..64], &[6, 0, 0, 0]);
    }

    #[test]
    fn completion_layout() {
        let mut entry = [0u8; CQ_ENTRY_SIZE];
        entry[0..4].copy_from_slice(&7u32.to_le_bytes());
        entry[8..12].copy_from_slice(&(0x0003_0005u32).to_le_bytes());
        // CID 9, phase 1, SC 0x81, SCT 1, DNR.
        let dw3 = 9 | (1 << 16) | (0x81 << 17) | (1 << 25) | (1 << 31);
        entry[12..16].copy_from_slice(&(dw3 as u32).to_le_bytes());
        let completion = Completion::decode(&entry);
        assert_eq!(completion.result, 7);
        assert_eq!((completion.sq_head, completion.sq_id), (5, 3));
        assert_eq!(completion.command_id, 9);
        assert!(completion.phase);
        assert_eq!(completion.status_code(), 0x81);
        assert_eq!(completion.status_code_type(), 1);
        assert_eq!(completion.status >> 14, 1);
    }

    #[test]
    fn capabilities_and_doorbells() {
        let cap = 0x3ff | (20 << 24) | (1u64 << 32) | (1u64 << 37) | (2u64 << 48);
        let caps = Capabilities::decode(cap);
        assert_eq!(caps.max_queue_entries, 1024);
        assert_eq!(caps.timeout_ms(), 10_000);
        assert!(caps.nvm_command_set);
        assert_eq!(caps.page_size_minimum, 2);
        assert_eq!(caps.doorbell(0, false), 0x1000);
        assert_eq!(caps.doorbell(0, true), 0x1008);
        assert_eq!(caps.doorbell(1, false), 0x1010);
    }
}
