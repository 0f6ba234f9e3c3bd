//! NetBSD's ABI as the domain meets it through a rump kernel's system
//! calls (`pv::netbsd`): error numbers, the ioctl requests used and their
//! structures, and the records `bpf(4)` reads return. NetBSD for x86_64
//! (`sys/errno.h`, `sys/ioccom.h`, `sys/dkio.h`, `sys/sockio.h`,
//! `net/bpf.h`, `net/if.h`, `sys/fcntl.h`, `sys/socket.h`), which is what
//! the rump kernel archives are built for. Portable, so that it is tested
//! on the host.

use core::ffi::{c_int, c_ulong};
use core::fmt;

/// An error number of the rump kernel (NetBSD's `errno.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// No such file or directory.
    pub const ENOENT: Self = Self(2);
    /// I/O error.
    pub const EIO: Self = Self(5);
    /// Cannot allocate memory.
    pub const ENOMEM: Self = Self(12);
    /// Operation not supported by device.
    pub const ENODEV: Self = Self(19);
    /// Invalid argument.
    pub const EINVAL: Self = Self(22);
    /// Inappropriate ioctl for device.
    pub const ENOTTY: Self = Self(25);
    /// Operation not supported.
    pub const EOPNOTSUPP: Self = Self(45);
}

impl fmt::Display for Errno {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            5 => "EIO",
            6 => "ENXIO",
            12 => "ENOMEM",
            16 => "EBUSY",
            19 => "ENODEV",
            22 => "EINVAL",
            25 => "ENOTTY",
            35 => "EAGAIN",
            45 => "EOPNOTSUPP",
            55 => "ENOBUFS",
            _ => "",
        };
        write!(formatter, "NetBSD errno {}", self.0)?;
        if !name.is_empty() {
            write!(formatter, " ({name})")?;
        }
        Ok(())
    }
}

/// `_IOC` of NetBSD's `sys/ioccom.h`.
const fn ioctl_request(direction: c_ulong, group: u8, number: u8, length: usize) -> c_ulong {
    direction
        | (((length as c_ulong) & 0x1fff) << 16)
        | ((group as c_ulong) << 8)
        | number as c_ulong
}
const IOC_VOID: c_ulong = 0x2000_0000;
const IOC_OUT: c_ulong = 0x4000_0000;
const IOC_IN: c_ulong = 0x8000_0000;

/// `DIOCGMEDIASIZE`: the disk's size in bytes (an `off_t`).
pub const DIOCGMEDIASIZE: c_ulong = ioctl_request(IOC_OUT, b'd', 132, 8);
/// `DIOCGSECTORSIZE`: the disk's sector size (a `u_int`).
pub const DIOCGSECTORSIZE: c_ulong = ioctl_request(IOC_OUT, b'd', 133, 4);
/// `DIOCCACHESYNC`: flush the disk's write cache (an `int`, force).
pub const DIOCCACHESYNC: c_ulong = ioctl_request(IOC_IN, b'd', 118, 4);
/// `SIOCSIFFLAGS`: set an interface's flags (a `struct ifreq`).
pub const SIOCSIFFLAGS: c_ulong = ioctl_request(IOC_IN, b'i', 16, IFREQ_BYTES);
/// `SIOCGIFFLAGS`: read an interface's flags (a `struct ifreq`).
pub const SIOCGIFFLAGS: c_ulong = ioctl_request(IOC_IN | IOC_OUT, b'i', 17, IFREQ_BYTES);
/// `BIOCGBLEN`: the size a `bpf(4)` read must ask for (a `u_int`).
pub const BIOCGBLEN: c_ulong = ioctl_request(IOC_OUT, b'B', 102, 4);
/// `BIOCPROMISC`: put the interface in promiscuous mode.
pub const BIOCPROMISC: c_ulong = ioctl_request(IOC_VOID, b'B', 105, 0);
/// `BIOCSETIF`: attach to an interface (a `struct ifreq`).
pub const BIOCSETIF: c_ulong = ioctl_request(IOC_IN, b'B', 108, IFREQ_BYTES);
/// `BIOCIMMEDIATE`: reads return as soon as a frame is there (a `u_int`).
pub const BIOCIMMEDIATE: c_ulong = ioctl_request(IOC_IN, b'B', 112, 4);
/// `BIOCSHDRCMPLT`: written frames keep their source address (a `u_int`).
pub const BIOCSHDRCMPLT: c_ulong = ioctl_request(IOC_IN, b'B', 117, 4);
/// `BIOCSSEESENT`: whether frames the interface sends are read too (a `u_int`).
pub const BIOCSSEESENT: c_ulong = ioctl_request(IOC_IN, b'B', 121, 4);

/// `O_RDWR` of `open(2)`.
pub const O_RDWR: c_int = 2;
/// `AF_ROUTE`: a routing socket, the cheapest to carry interface ioctls.
pub const AF_ROUTE: c_int = 34;
/// `SOCK_RAW`.
pub const SOCK_RAW: c_int = 3;
/// `IFF_UP`: the interface is up.
pub const IFF_UP: i16 = 0x1;

/// `struct ifreq`: a 16-byte name and a union as large as
/// `struct sockaddr_storage` (128 bytes, 8-aligned).
const IFREQ_BYTES: usize = 144;
const IFNAMSIZ: usize = 16;

/// `struct ifreq`: an interface name and a union of request arguments.
#[repr(C, align(8))]
pub struct IfReq([u8; IFREQ_BYTES]);

impl IfReq {
    /// A request for interface `name`, or `EINVAL` if the name does not fit.
    pub fn named(name: &str) -> Result<Self, Errno> {
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(Errno::EINVAL);
        }
        let mut request = Self([0; IFREQ_BYTES]);
        request.0[..name.len()].copy_from_slice(name.as_bytes());
        Ok(request)
    }

    /// `ifr_flags`, the union's first member as a `short`.
    pub fn flags(&self) -> i16 {
        i16::from_ne_bytes([self.0[IFNAMSIZ], self.0[IFNAMSIZ + 1]])
    }

    /// Sets `ifr_flags`.
    pub fn set_flags(&mut self, flags: i16) {
        self.0[IFNAMSIZ..IFNAMSIZ + 2].copy_from_slice(&flags.to_ne_bytes());
    }
}

/// The header `bpf(4)` puts before each frame it reads.
struct BpfHeader {
    captured: usize,
    original: usize,
    header: usize,
}

/// `struct bpf_hdr` on LP64: a timeval of two longs, `bh_caplen`,
/// `bh_datalen` (u32 each), `bh_hdrlen` (u16).
pub const BPF_HEADER_BYTES: usize = 26;
/// `BPF_WORDALIGN`: records start at multiples of `sizeof(long)`.
const BPF_ALIGNMENT: usize = 8;

fn bpf_header(record: &[u8]) -> Option<BpfHeader> {
    let field = record.get(..BPF_HEADER_BYTES)?;
    let u32_at =
        |at: usize| u32::from_ne_bytes([field[at], field[at + 1], field[at + 2], field[at + 3]]);
    Some(BpfHeader {
        captured: u32_at(16) as usize,
        original: u32_at(20) as usize,
        header: usize::from(u16::from_ne_bytes([field[24], field[25]])),
    })
}

/// Calls `frame` for each frame of a buffer `bpf(4)` returned, with
/// whether it is whole (not cut to the capture length); stops at the first
/// record that does not fit.
pub fn split_bpf_buffer(buffer: &[u8], mut frame: impl FnMut(&[u8], bool)) {
    let mut at = 0;
    while let Some(header) = buffer.get(at..).and_then(bpf_header) {
        if header.header < BPF_HEADER_BYTES {
            break;
        }
        let start = at + header.header;
        let Some(data) = start
            .checked_add(header.captured)
            .and_then(|end| buffer.get(start..end))
        else {
            break;
        };
        frame(data, header.captured == header.original);
        at = (start + header.captured).next_multiple_of(BPF_ALIGNMENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn record(frame: &[u8], original: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; 16];
        bytes.extend_from_slice(&(frame.len() as u32).to_ne_bytes());
        bytes.extend_from_slice(&(original as u32).to_ne_bytes());
        bytes.extend_from_slice(&26u16.to_ne_bytes());
        bytes.extend_from_slice(frame);
        while !bytes.len().is_multiple_of(BPF_ALIGNMENT) {
            bytes.push(0);
        }
        bytes
    }

    #[test]
    fn bpf_records_split_into_frames() {
        let mut buffer = record(&[1; 60], 60);
        buffer.extend(record(&[2; 61], 100));
        buffer.extend(record(&[3; 64], 64));
        let mut frames = Vec::new();
        split_bpf_buffer(&buffer, |frame, whole| frames.push((frame.to_vec(), whole)));
        assert_eq!(
            frames,
            [
                (vec![1; 60], true),
                (vec![2; 61], false),
                (vec![3; 64], true)
            ]
        );
        // A record whose length runs past the buffer ends the walk.
        let mut frames = 0;
        split_bpf_buffer(&buffer[..buffer.len() - 8], |_, _| frames += 1);
        assert_eq!(frames, 2);
        // So does a header shorter than itself (no endless walk).
        let mut broken = record(&[4; 60], 60);
        broken[24..26].copy_from_slice(&0u16.to_ne_bytes());
        let mut frames = 0;
        split_bpf_buffer(&broken, |_, _| frames += 1);
        assert_eq!(frames, 0);
    }

    #[test]
    fn ioctl_requests_match_netbsd() {
        assert_eq!(SIOCSIFFLAGS, 0x8090_6910);
        assert_eq!(SIOCGIFFLAGS, 0xc090_6911);
        assert_eq!(DIOCGMEDIASIZE, 0x4008_6484);
        assert_eq!(BIOCPROMISC, 0x2000_4269);
        assert_eq!(BIOCSETIF, 0x8090_426c);
        assert_eq!(DIOCGSECTORSIZE, 0x4004_6485);
        assert_eq!(DIOCCACHESYNC, 0x8004_6476);
        assert_eq!(BIOCGBLEN, 0x4004_4266);
        assert_eq!(BIOCIMMEDIATE, 0x8004_4270);
        assert_eq!(BIOCSHDRCMPLT, 0x8004_4275);
        assert_eq!(BIOCSSEESENT, 0x8004_4279);
    }
}
