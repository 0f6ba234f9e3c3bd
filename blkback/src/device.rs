//! The block device the engine serves, and a RAM disk.
//!
//! The interface is split-phase, as a queue-based controller (NVMe, virtio)
//! works: [`BlockDevice::submit`] hands over a request with an [`IoTag`] and,
//! for data transfers, the buffer; the device keeps the buffer until it
//! reports the request done through [`BlockDevice::poll_completion`], in any
//! order. Nothing blocks. A driver backed by interrupts raises its event and
//! the platform's loop calls [`crate::Blkback::poll`], which drains
//! completions.
//!
//! All sector numbers are in 512-byte units, the unit of blkif.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use crate::proto::SECTOR_SIZE;

/// Opaque tag the engine gives each submitted request; the device returns it
/// unchanged with the completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoTag(pub u64);

/// Discard capabilities, published as `discard-*` nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscardInfo {
    /// `discard-granularity` in bytes.
    pub granularity: u32,
    /// `discard-alignment` in bytes.
    pub alignment: u32,
    /// Discarded data is made unrecoverable (`discard-secure`).
    pub secure: bool,
}

/// What a device is and can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// `physical-sector-size` in bytes (a multiple of 512).
    pub physical_sector_size: u32,
    /// Writes are impossible.
    pub read_only: bool,
    /// [`IoRequest::Flush`] is accepted (a device without a volatile cache
    /// accepts it and completes it at once).
    pub flush: bool,
    /// [`IoRequest::Discard`] is accepted, with these properties.
    pub discard: Option<DiscardInfo>,
    /// The medium is removable (published as `VDISK_REMOVABLE`).
    pub removable: bool,
    /// Requests the device accepts before [`SubmitError::QueueFull`].
    pub queue_depth: usize,
}

/// One request for the device.
#[derive(Debug, PartialEq, Eq)]
pub enum IoRequest {
    /// Fill `buffer` (a multiple of 512 bytes) from `sector` on.
    Read {
        /// First sector.
        sector: u64,
        /// The buffer to fill, lent to the device until completion.
        buffer: Vec<u8>,
    },
    /// Write `buffer` (a multiple of 512 bytes) from `sector` on.
    Write {
        /// First sector.
        sector: u64,
        /// The data, lent to the device until completion.
        buffer: Vec<u8>,
    },
    /// Make every write completed before this request durable.
    Flush,
    /// Forget `sectors` sectors from `sector` on.
    Discard {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        sectors: u64,
        /// Make the old contents unrecoverable.
        secure: bool,
    },
}

/// Why a device could not take a request; the request comes back with it.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full; resubmit after a completion.
    QueueFull(IoRequest),
    /// The device will never accept this request (out of range, read-only,
    /// unsupported).
    Refused(IoRequest),
}

/// Why a device request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// The medium or controller reported an error.
    Media,
    /// The device does not support the operation.
    NotSupported,
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Media => "the medium or controller reported an error",
            Self::NotSupported => "the device does not support the operation",
        })
    }
}

/// A finished request.
#[derive(Debug, PartialEq, Eq)]
pub struct IoCompletion {
    /// The tag given at submission.
    pub tag: IoTag,
    /// The outcome.
    pub result: Result<(), IoError>,
    /// The buffer lent at submission (empty for flush and discard).
    pub buffer: Vec<u8>,
}

/// A block device with split-phase submission and completion.
pub trait BlockDevice {
    /// Geometry and capabilities. Must not change while a frontend is connected.
    fn info(&self) -> DeviceInfo;

    /// Starts a request. The device owns the buffer until it returns it in
    /// an [`IoCompletion`] with the same tag.
    fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError>;

    /// Takes one finished request, if any.
    fn poll_completion(&mut self) -> Option<IoCompletion>;
}

impl<D: BlockDevice + ?Sized> BlockDevice for alloc::boxed::Box<D> {
    fn info(&self) -> DeviceInfo {
        (**self).info()
    }
    fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        (**self).submit(tag, request)
    }
    fn poll_completion(&mut self) -> Option<IoCompletion> {
        (**self).poll_completion()
    }
}

/// Why a RAM disk could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RamDiskError {
    /// The size in bytes does not fit the address space.
    TooLarge,
    /// The memory could not be allocated.
    OutOfMemory,
    /// The queue depth is zero.
    ZeroQueueDepth,
}

impl fmt::Display for RamDiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLarge => "the size in bytes does not fit the address space",
            Self::OutOfMemory => "the memory could not be allocated",
            Self::ZeroQueueDepth => "the queue depth is zero",
        })
    }
}

/// A disk in memory. Requests complete in submission order, at the next
/// [`BlockDevice::poll_completion`]; flush has nothing to do; discard zeroes,
/// so it is also secure (no other copy of the data exists).
#[derive(Debug)]
pub struct RamDisk {
    data: Vec<u8>,
    read_only: bool,
    discard: bool,
    secure_discard: bool,
    queue_depth: usize,
    completions: VecDeque<IoCompletion>,
}

impl RamDisk {
    /// A zero-filled writable disk of `sectors` 512-byte sectors, queue depth
    /// 64, with discard (not secure).
    pub fn new(sectors: u64) -> Result<Self, RamDiskError> {
        let bytes = sectors
            .checked_mul(SECTOR_SIZE as u64)
            .and_then(|bytes| usize::try_from(bytes).ok())
            .ok_or(RamDiskError::TooLarge)?;
        let mut data = Vec::new();
        data.try_reserve_exact(bytes)
            .map_err(|_| RamDiskError::OutOfMemory)?;
        data.resize(bytes, 0);
        Ok(Self {
            data,
            read_only: false,
            discard: true,
            secure_discard: false,
            queue_depth: 64,
            completions: VecDeque::new(),
        })
    }

    /// Makes the disk read-only (or writable again).
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// Offers discard, and secure discard.
    pub fn set_discard(&mut self, discard: bool, secure: bool) {
        self.discard = discard;
        self.secure_discard = discard && secure;
    }

    /// Sets how many requests may be outstanding.
    pub fn set_queue_depth(&mut self, depth: usize) -> Result<(), RamDiskError> {
        if depth == 0 {
            return Err(RamDiskError::ZeroQueueDepth);
        }
        self.queue_depth = depth;
        Ok(())
    }

    /// The disk's contents.
    pub fn contents(&self) -> &[u8] {
        &self.data
    }

    /// The disk's contents, for filling it before use.
    pub fn contents_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    fn byte_range(&self, sector: u64, bytes: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(sector.checked_mul(SECTOR_SIZE as u64)?).ok()?;
        let end = start.checked_add(bytes)?;
        (end <= self.data.len() && bytes.is_multiple_of(SECTOR_SIZE)).then_some(start..end)
    }

    fn execute(&mut self, request: IoRequest) -> Result<(Result<(), IoError>, Vec<u8>), IoRequest> {
        match request {
            IoRequest::Read { sector, mut buffer } => {
                let Some(range) = self.byte_range(sector, buffer.len()) else {
                    return Err(IoRequest::Read { sector, buffer });
                };
                buffer.copy_from_slice(&self.data[range]);
                Ok((Ok(()), buffer))
            }
            IoRequest::Write { sector, buffer } => {
                let range = match self.byte_range(sector, buffer.len()) {
                    Some(range) if !self.read_only => range,
                    _ => return Err(IoRequest::Write { sector, buffer }),
                };
                self.data[range].copy_from_slice(&buffer);
                Ok((Ok(()), buffer))
            }
            IoRequest::Flush => Ok((Ok(()), Vec::new())),
            IoRequest::Discard {
                sector,
                sectors,
                secure,
            } => {
                let range = sectors
                    .checked_mul(SECTOR_SIZE as u64)
                    .and_then(|bytes| usize::try_from(bytes).ok())
                    .and_then(|bytes| self.byte_range(sector, bytes));
                let range = match range {
                    Some(range) if !self.read_only => range,
                    _ => {
                        return Err(IoRequest::Discard {
                            sector,
                            sectors,
                            secure,
                        })
                    }
                };
                if !self.discard || (secure && !self.secure_discard) {
                    return Ok((Err(IoError::NotSupported), Vec::new()));
                }
                self.data[range].fill(0);
                Ok((Ok(()), Vec::new()))
            }
        }
    }
}

impl BlockDevice for RamDisk {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            sectors: (self.data.len() / SECTOR_SIZE) as u64,
            physical_sector_size: SECTOR_SIZE as u32,
            read_only: self.read_only,
            flush: true,
            discard: self.discard.then_some(DiscardInfo {
                granularity: SECTOR_SIZE as u32,
                alignment: 0,
                secure: self.secure_discard,
            }),
            removable: false,
            queue_depth: self.queue_depth,
        }
    }

    fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        if self.completions.len() >= self.queue_depth {
            return Err(SubmitError::QueueFull(request));
        }
        let (result, buffer) = self.execute(request).map_err(SubmitError::Refused)?;
        self.completions.push_back(IoCompletion {
            tag,
            result,
            buffer,
        });
        Ok(())
    }

    fn poll_completion(&mut self) -> Option<IoCompletion> {
        self.completions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn write_then_read_round_trips() {
        let mut disk = RamDisk::new(16).unwrap();
        disk.submit(
            IoTag(1),
            IoRequest::Write {
                sector: 3,
                buffer: vec![0xab; 1024],
            },
        )
        .unwrap();
        disk.submit(
            IoTag(2),
            IoRequest::Read {
                sector: 2,
                buffer: vec![0; 2048],
            },
        )
        .unwrap();
        assert_eq!(disk.poll_completion().unwrap().tag, IoTag(1));
        let read = disk.poll_completion().unwrap();
        assert_eq!(read.result, Ok(()));
        assert_eq!(&read.buffer[..512], &[0; 512][..]);
        assert_eq!(&read.buffer[512..1536], &[0xab; 1024][..]);
        assert_eq!(&read.buffer[1536..], &[0; 512][..]);
        assert!(disk.poll_completion().is_none());
    }

    #[test]
    fn out_of_range_and_read_only_are_refused() {
        let mut disk = RamDisk::new(4).unwrap();
        let request = IoRequest::Read {
            sector: 4,
            buffer: vec![0; 512],
        };
        assert!(matches!(
            disk.submit(IoTag(0), request),
            Err(SubmitError::Refused(_))
        ));
        disk.set_read_only(true);
        let request = IoRequest::Write {
            sector: 0,
            buffer: vec![0; 512],
        };
        assert!(matches!(
            disk.submit(IoTag(0), request),
            Err(SubmitError::Refused(_))
        ));
    }

    #[test]
    fn queue_depth_is_enforced() {
        let mut disk = RamDisk::new(4).unwrap();
        disk.set_queue_depth(1).unwrap();
        disk.submit(IoTag(0), IoRequest::Flush).unwrap();
        assert!(matches!(
            disk.submit(IoTag(1), IoRequest::Flush),
            Err(SubmitError::QueueFull(IoRequest::Flush))
        ));
        disk.poll_completion().unwrap();
        disk.submit(IoTag(1), IoRequest::Flush).unwrap();
    }
}
