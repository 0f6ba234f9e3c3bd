//! NetBSD drivers in the domain: boots the rump kernel linked into the
//! image (the `librump*.a` archives of `RUMP_LIBDIR`, see
//! `docs/rumpuser.md`) and hands the domain what those drivers attach, as
//! safe handles on the rump kernel's system calls:
//!
//! * [`RawDisk`]: a disk driver's raw partition (`/dev/rld0d` for `ld0`),
//!   read and written by offset;
//! * [`Interface`]: a network interface's Ethernet frames, taken and sent
//!   through `bpf(4)`.
//!
//! Below are the rump kernel's entry points (`rump_init`, and the
//! `rump___sysimpl_*` functions `rump/rump_syscalls.h` names the system
//! calls by); they exist only in an image linked with the archives, which
//! is why this module is behind the `netbsd` feature. The rump kernel runs
//! on this platform's rumpuser(3) hypercalls ([`crate::rumpuser`]) and its
//! PCI drivers on [`super::rump_pci`].
//!
//! Calls block the calling scheduler thread, not the domain: a driver
//! waiting for its device parks through [`super::sched`], so other threads
//! (the rump kernel's interrupt thread among them) run meanwhile.
//!
//! The numbers below (ioctl requests, flags, structure layouts) are
//! NetBSD's ABI for x86_64 (`sys/dkio.h`, `sys/sockio.h`, `net/bpf.h`,
//! `net/if.h`, `sys/fcntl.h`, `sys/socket.h`), which the archives were
//! built for.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ffi::{c_char, c_int, c_ulong, c_void};

use pcidev::DmaBuffer;

use super::pci::{dma, XenDmaBuffer};
use super::{sched, Global};
pub use crate::netbsd::Errno;
use crate::netbsd::{
    split_bpf_buffer, IfReq, AF_ROUTE, BIOCGBLEN, BIOCIMMEDIATE, BIOCPROMISC, BIOCSETIF,
    BIOCSHDRCMPLT, BIOCSSEESENT, BPF_HEADER_BYTES, DIOCCACHESYNC, DIOCGMEDIASIZE, DIOCGSECTORSIZE,
    IFF_UP, O_RDWR, SIOCGIFFLAGS, SIOCSIFFLAGS, SOCK_RAW,
};
use crate::rumpuser::thread_errno;

/// The error the calling thread's last failed system call set.
fn last_error() -> Errno {
    match thread_errno() {
        0 => Errno::EIO,
        error => Errno(error),
    }
}

unsafe extern "C" {
    fn rump_init() -> c_int;
    fn rump___sysimpl_open(path: *const c_char, flags: c_int, mode: u32) -> c_int;
    fn rump___sysimpl_close(fd: c_int) -> c_int;
    fn rump___sysimpl_read(fd: c_int, buffer: *mut c_void, length: usize) -> isize;
    fn rump___sysimpl_write(fd: c_int, buffer: *const c_void, length: usize) -> isize;
    fn rump___sysimpl_pread(fd: c_int, buffer: *mut c_void, length: usize, offset: i64) -> isize;
    fn rump___sysimpl_pwrite(fd: c_int, buffer: *const c_void, length: usize, offset: i64)
        -> isize;
    fn rump___sysimpl_ioctl(fd: c_int, request: c_ulong, argument: *mut c_void) -> c_int;
    fn rump___sysimpl_socket30(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
}

/// How booting the rump kernel went, once it was tried.
static BOOTED: Global<Option<Result<(), Errno>>> = Global::new(None);

/// Boots the rump kernel, once: its autoconfiguration attaches the drivers
/// of the PCI functions passed through to the domain, printing to the
/// console as a NetBSD kernel does. Later calls return the first one's
/// outcome: `rump_init` is not to be tried twice (after a failure it
/// would answer success for a half-booted kernel).
pub fn boot() -> Result<(), Errno> {
    if let Some(outcome) = *BOOTED.borrow() {
        return outcome;
    }
    log::info!("netbsd: booting the rump kernel");
    // SAFETY: `rump_init` takes no arguments; it is called once (BOOTED),
    // from a scheduler thread, as rumpuser(3) expects of its host.
    let error = unsafe { rump_init() };
    let outcome = match error {
        0 => {
            log::info!("netbsd: rump kernel up");
            Ok(())
        }
        error => {
            log::error!("netbsd: the rump kernel did not boot: {}", Errno(error));
            Err(Errno(error))
        }
    };
    *BOOTED.borrow_mut() = Some(outcome);
    outcome
}

/// An open file of the rump kernel; closed when dropped.
struct File(c_int);

impl File {
    fn open(path: &str) -> Result<Self, Errno> {
        let mut path_z: Vec<u8> = path.bytes().collect();
        if path_z.contains(&0) {
            return Err(Errno::EINVAL);
        }
        path_z.push(0);
        // SAFETY: a NUL-terminated path; the mode is used only with
        // O_CREAT.
        let fd = unsafe { rump___sysimpl_open(path_z.as_ptr().cast(), O_RDWR, 0) };
        if fd < 0 {
            Err(last_error())
        } else {
            Ok(Self(fd))
        }
    }

    fn socket(domain: c_int, kind: c_int) -> Result<Self, Errno> {
        // SAFETY: plain integers.
        let fd = unsafe { rump___sysimpl_socket30(domain, kind, 0) };
        if fd < 0 {
            Err(last_error())
        } else {
            Ok(Self(fd))
        }
    }

    /// `ioctl(fd, request, argument)` where `request` encodes the size and
    /// direction of `*argument`.
    ///
    /// # Safety
    ///
    /// `T` must be the type `request` reads or writes (its size is encoded
    /// in the request; a `()` for requests without an argument).
    unsafe fn ioctl<T>(&self, request: c_ulong, argument: &mut T) -> Result<(), Errno> {
        debug_assert_eq!(((request >> 16) & 0x1fff) as usize, size_of::<T>());
        // SAFETY: the caller matches `T` to the request; the kernel copies
        // in or out at most `size_of::<T>()` bytes.
        let result =
            unsafe { rump___sysimpl_ioctl(self.0, request, argument as *mut T as *mut c_void) };
        if result < 0 {
            Err(last_error())
        } else {
            Ok(())
        }
    }

    fn read(&self, buffer: &mut [u8]) -> Result<usize, Errno> {
        // SAFETY: the kernel writes at most `buffer.len()` bytes into it.
        let count =
            unsafe { rump___sysimpl_read(self.0, buffer.as_mut_ptr().cast(), buffer.len()) };
        usize::try_from(count).map_err(|_| last_error())
    }

    fn write(&self, data: &[u8]) -> Result<usize, Errno> {
        // SAFETY: the kernel reads at most `data.len()` bytes from it.
        let count = unsafe { rump___sysimpl_write(self.0, data.as_ptr().cast(), data.len()) };
        usize::try_from(count).map_err(|_| last_error())
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { rump___sysimpl_close(self.0) };
    }
}

/// Which way a [`RawDisk`] transfer goes.
#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

/// Most bytes one read or write of a [`RawDisk`] moves: NetBSD's
/// `MAXPHYS`, what its drivers take in one transfer.
const TRANSFER_BYTES: usize = 64 * 1024;

/// The raw partition of a NetBSD disk driver's unit, read and written
/// through a machine-contiguous buffer.
///
/// NetBSD's `bus_dmamap_load` (`librumpdev_pci`) makes one DMA segment of
/// memory that is virtually contiguous, so memory handed to a disk driver
/// must be contiguous in machine memory too; the domain's heap is not.
/// Data therefore passes through a DMA buffer of the platform's.
pub struct RawDisk {
    file: File,
    bytes: u64,
    sector_size: u32,
    bounce: XenDmaBuffer,
}

impl RawDisk {
    /// Opens unit `device` (`ld0`) through its raw whole-disk partition,
    /// booting the rump kernel first if needed.
    pub fn open(device: &str) -> Result<Self, Errno> {
        boot()?;
        if device.is_empty() || !device.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
            return Err(Errno::EINVAL);
        }
        // `d` is the raw partition on x86 (RAW_PART 3).
        let file = File::open(&alloc::format!("/dev/r{device}d"))?;
        let mut bytes: i64 = 0;
        // SAFETY: DIOCGMEDIASIZE writes an off_t.
        unsafe { file.ioctl(DIOCGMEDIASIZE, &mut bytes)? };
        let mut sector_size: u32 = 0;
        // SAFETY: DIOCGSECTORSIZE writes a u_int.
        unsafe { file.ioctl(DIOCGSECTORSIZE, &mut sector_size)? };
        let bytes = u64::try_from(bytes).map_err(|_| Errno::EIO)?;
        if sector_size == 0
            || !sector_size.is_multiple_of(512)
            || !bytes.is_multiple_of(u64::from(sector_size))
        {
            return Err(Errno::EIO);
        }
        let bounce = dma::allocate(TRANSFER_BYTES, 4096).map_err(|_| Errno::ENOMEM)?;
        Ok(Self {
            file,
            bytes,
            sector_size,
            bounce,
        })
    }

    /// Capacity in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The driver's sector size in bytes (a multiple of 512).
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    fn check(&self, offset: u64, length: usize) -> Result<(), Errno> {
        let sector = u64::from(self.sector_size);
        let end = offset.checked_add(length as u64).ok_or(Errno::EINVAL)?;
        if !offset.is_multiple_of(sector)
            || !(length as u64).is_multiple_of(sector)
            || end > self.bytes
        {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// Fills `buffer` from byte `offset` on (both whole sectors).
    pub fn read(&mut self, offset: u64, buffer: &mut [u8]) -> Result<(), Errno> {
        self.check(offset, buffer.len())?;
        for (index, chunk) in buffer.chunks_mut(TRANSFER_BYTES).enumerate() {
            self.transfer(Direction::Read, chunk.len(), offset, index)?;
            self.bounce.read(0, chunk).map_err(|_| Errno::EIO)?;
        }
        Ok(())
    }

    /// Writes `data` from byte `offset` on (both whole sectors).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.check(offset, data.len())?;
        for (index, chunk) in data.chunks(TRANSFER_BYTES).enumerate() {
            self.bounce.write(0, chunk).map_err(|_| Errno::EIO)?;
            self.transfer(Direction::Write, chunk.len(), offset, index)?;
        }
        Ok(())
    }

    /// Moves `length` bytes (at most [`TRANSFER_BYTES`]) between the
    /// bounce buffer and the disk, at chunk `index` from `offset` on.
    fn transfer(
        &self,
        direction: Direction,
        length: usize,
        offset: u64,
        index: usize,
    ) -> Result<(), Errno> {
        let at = (offset + (index * TRANSFER_BYTES) as u64) as i64;
        let buffer = self.bounce.virtual_address() as *mut c_void;
        // SAFETY: the bounce buffer is ours, mapped and TRANSFER_BYTES
        // long; the kernel reads or writes `length` bytes of it.
        let count = unsafe {
            match direction {
                Direction::Read => rump___sysimpl_pread(self.file.0, buffer, length, at),
                Direction::Write => rump___sysimpl_pwrite(self.file.0, buffer, length, at),
            }
        };
        match usize::try_from(count) {
            Err(_) => Err(last_error()),
            Ok(moved) if moved == length => Ok(()),
            Ok(_) => Err(Errno::EIO),
        }
    }

    /// Makes completed writes durable: `DIOCCACHESYNC`. `Ok(false)` if the
    /// disk driver does not know the request. (`ld(4)` answers it itself,
    /// with success, when its attachment has no flush of its own.)
    pub fn sync_cache(&mut self) -> Result<bool, Errno> {
        let mut force: c_int = 1;
        // SAFETY: DIOCCACHESYNC reads an int.
        match unsafe { self.file.ioctl(DIOCCACHESYNC, &mut force) } {
            Ok(()) => Ok(true),
            Err(Errno::ENODEV | Errno::ENOTTY | Errno::EOPNOTSUPP) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// Frames waiting for the domain, and what happened to the rest.
#[derive(Default)]
struct Received {
    frames: VecDeque<Vec<u8>>,
    dropped: u64,
    failed: Option<Errno>,
}

/// Frames queued for the domain at most; more are dropped (counted), as a
/// NIC drops what its host does not take in time.
const RECEIVE_QUEUE_FRAMES: usize = 512;

/// A network interface of the rump kernel (`wm0`), up and promiscuous,
/// whose frames the domain takes and sends through `bpf(4)`: every frame
/// the interface receives is queued for [`Interface::receive`] by a reader
/// thread, which wakes the domain's main loop ([`super::notify_main_loop`]);
/// [`Interface::send`] transmits a complete Ethernet frame as given,
/// source address included.
pub struct Interface {
    name: String,
    bpf: Rc<File>,
    received: Rc<RefCell<Received>>,
}

impl Interface {
    /// Brings interface `name` up in promiscuous mode and starts reading
    /// its frames, booting the rump kernel first if needed.
    pub fn open(name: &str) -> Result<Self, Errno> {
        boot()?;
        let control = File::socket(AF_ROUTE, SOCK_RAW)?;
        let mut request = IfReq::named(name)?;
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS take a struct ifreq.
        unsafe { control.ioctl(SIOCGIFFLAGS, &mut request)? };
        request.set_flags(request.flags() | IFF_UP);
        // SAFETY: as above.
        unsafe { control.ioctl(SIOCSIFFLAGS, &mut request)? };

        let bpf = File::open("/dev/bpf")?;
        let mut interface = IfReq::named(name)?;
        let mut one: u32 = 1;
        let mut zero: u32 = 0;
        let mut buffer_bytes: u32 = 0;
        // SAFETY: each request takes the type given: BIOCSETIF an ifreq,
        // BIOCIMMEDIATE/BIOCSHDRCMPLT/BIOCSSEESENT a u_int to read,
        // BIOCGBLEN a u_int to write, BIOCPROMISC nothing.
        unsafe {
            bpf.ioctl(BIOCSETIF, &mut interface)?;
            // Hand over each frame as it comes, not when the buffer fills.
            bpf.ioctl(BIOCIMMEDIATE, &mut one)?;
            // Frames are sent with their own source address.
            bpf.ioctl(BIOCSHDRCMPLT, &mut one)?;
            // Frames the interface sends are not read back.
            bpf.ioctl(BIOCSSEESENT, &mut zero)?;
            bpf.ioctl(BIOCPROMISC, &mut ())?;
            bpf.ioctl(BIOCGBLEN, &mut buffer_bytes)?;
        }
        // A read must ask for exactly the buffer size.
        let buffer_bytes = buffer_bytes as usize;
        if buffer_bytes < BPF_HEADER_BYTES {
            return Err(Errno::EIO);
        }
        let bpf = Rc::new(bpf);
        let received = Rc::new(RefCell::new(Received::default()));
        let reader_bpf = Rc::clone(&bpf);
        let reader_received = Rc::clone(&received);
        let reader_name = String::from(name);
        sched::spawn("netbsd-bpf", 64 * 1024, move || {
            let mut buffer = vec![0u8; buffer_bytes];
            loop {
                match reader_bpf.read(&mut buffer) {
                    Ok(0) => {
                        // bpf(4) without a read timeout never returns
                        // empty; treat it as the failure it would be.
                        log::error!("netbsd: reading {reader_name}'s frames returned nothing");
                        reader_received.borrow_mut().failed = Some(Errno::EIO);
                        super::notify_main_loop();
                        return;
                    }
                    Ok(length) => {
                        let mut queue = reader_received.borrow_mut();
                        split_bpf_buffer(&buffer[..length], |frame, whole| {
                            if !whole || queue.frames.len() >= RECEIVE_QUEUE_FRAMES {
                                queue.dropped += 1;
                            } else {
                                queue.frames.push_back(frame.to_vec());
                            }
                        });
                    }
                    Err(error) => {
                        log::error!("netbsd: reading {reader_name}'s frames failed: {error}");
                        reader_received.borrow_mut().failed = Some(error);
                        super::notify_main_loop();
                        return;
                    }
                }
                super::notify_main_loop();
            }
        });
        // The control socket's work is done; the interface stays up.
        drop(control);
        Ok(Self {
            name: String::from(name),
            bpf,
            received,
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes the oldest frame received, if any; an error once reading
    /// frames failed for good.
    pub fn receive(&mut self) -> Result<Option<Vec<u8>>, Errno> {
        let mut received = self.received.borrow_mut();
        match received.frames.pop_front() {
            Some(frame) => Ok(Some(frame)),
            None => received.failed.map_or(Ok(None), Err),
        }
    }

    /// Whether a frame waits for [`Interface::receive`]; an error once
    /// reading frames failed for good and none are left.
    pub fn pending(&self) -> Result<bool, Errno> {
        let received = self.received.borrow();
        match (received.frames.is_empty(), received.failed) {
            (true, Some(error)) => Err(error),
            (empty, _) => Ok(!empty),
        }
    }

    /// Frames dropped so far: the queue was full, or a frame was cut short.
    pub fn dropped(&self) -> u64 {
        self.received.borrow().dropped
    }

    /// Transmits `frame`, a complete Ethernet frame without its FCS.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), Errno> {
        match self.bpf.write(frame)? {
            written if written == frame.len() => Ok(()),
            _ => Err(Errno::EIO),
        }
    }
}
