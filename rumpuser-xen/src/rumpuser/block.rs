//! File and block I/O hypercalls over the block devices the domain
//! registers by name.
//!
//! rumpuser(3) leaves the namespace of `rumpuser_open` to the hypervisor;
//! here it is the registry filled with [`register_block_device`]. Every
//! name is a block device (`RUMPUSER_FT_BLK`); nothing can be created.
//!
//! `rumpuser_bio` only queues the request and returns. One I/O thread,
//! started on the first request, performs requests in order and calls
//! each `biodone` with a rump kernel CPU (taken with
//! `hyp_backend_schedule` and released again), like the POSIX hypervisor's
//! I/O thread. It has an lwp of its own, made with `hyp_lwproc_newlwp`.
//! The synchronous calls (`rumpuser_iovread`, `rumpuser_iovwrite`,
//! `rumpuser_syncfd`) release the CPU while the device works.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr;

use super::abi::errno::{EBADF, EEXIST, EINVAL, EIO, ENOENT, ENOMEM, ENOSPC, ENXIO, EROFS};
use super::abi::{
    RumpBiodoneFn, RumpuserIovec, RUMPUSER_BIO_READ, RUMPUSER_BIO_SYNC, RUMPUSER_BIO_WRITE,
    RUMPUSER_FT_BLK, RUMPUSER_IOV_NOSEEK, RUMPUSER_OPEN_ACCMODE, RUMPUSER_OPEN_CREATE,
    RUMPUSER_OPEN_EXCL, RUMPUSER_OPEN_RDONLY, RUMPUSER_OPEN_RDWR, RUMPUSER_OPEN_WRONLY,
    RUMPUSER_SYNCFD_BARRIER, RUMPUSER_SYNCFD_READ, RUMPUSER_SYNCFD_SYNC, RUMPUSER_SYNCFD_WRITE,
};
use super::host::ThreadKey;
use super::state::{
    backend_schedule, backend_unschedule, bind_new_lwp, host, park_until_woken, WaitQueue, STATE,
};

/// Why a block device could not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The device reported an input/output error.
    Io,
    /// The device is read-only.
    ReadOnly,
}

impl BlockError {
    fn errno(self) -> c_int {
        match self {
            Self::Io => EIO,
            Self::ReadOnly => EROFS,
        }
    }
}

/// A block device as the rumpuser layer uses it. Calls come from the
/// layer's threads without a rump kernel CPU held, so they may park.
/// Requests are always inside `[0, size())`.
pub trait BlockDevice {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// Reads `buffer.len()` bytes at byte `offset`.
    fn read(&self, offset: u64, buffer: &mut [u8]) -> Result<(), BlockError>;
    /// Writes `data` at byte `offset`.
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BlockError>;
    /// Makes completed writes durable.
    fn flush(&self) -> Result<(), BlockError>;
}

/// Why a block device could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// A device with this name is already registered.
    NameTaken,
    /// The name is empty or contains a NUL byte.
    InvalidName,
}

struct OpenFile {
    device: Rc<dyn BlockDevice>,
    readable: bool,
    writable: bool,
    /// The offset `RUMPUSER_IOV_NOSEEK` transfers use and advance.
    position: u64,
}

/// One queued `rumpuser_bio` request. `data` is valid for `length` bytes
/// of reads and writes until `biodone` is called, as `rumpuser_bio`'s
/// caller promised.
struct Bio {
    /// The device, or the error found at submission (bad descriptor,
    /// access mode or operation).
    device: Result<Rc<dyn BlockDevice>, c_int>,
    write: bool,
    sync: bool,
    data: *mut u8,
    length: usize,
    offset: i64,
    biodone: RumpBiodoneFn,
    donearg: *mut c_void,
}

pub(crate) struct BlockState {
    devices: Vec<(String, Rc<dyn BlockDevice>)>,
    files: Vec<Option<OpenFile>>,
    queue: VecDeque<Bio>,
    worker: Option<ThreadKey>,
    /// The I/O thread waits here for requests.
    worker_idle: WaitQueue,
    submitted: u64,
    completed: u64,
    /// `rumpuser_syncfd` waits here for earlier requests to complete.
    drain_waiters: WaitQueue,
}

impl BlockState {
    pub(crate) const fn new() -> Self {
        Self {
            devices: Vec::new(),
            files: Vec::new(),
            queue: VecDeque::new(),
            worker: None,
            worker_idle: WaitQueue::new(),
            submitted: 0,
            completed: 0,
            drain_waiters: WaitQueue::new(),
        }
    }
}

/// Makes `device` available to `rumpuser_open` as `name`.
pub fn register_block_device(
    name: &str,
    device: Box<dyn BlockDevice>,
) -> Result<(), RegisterError> {
    if name.is_empty() || name.contains('\0') {
        return Err(RegisterError::InvalidName);
    }
    STATE.with(|state| {
        let devices = &mut state.block.devices;
        if devices.iter().any(|(known, _)| known == name) {
            return Err(RegisterError::NameTaken);
        }
        devices.push((String::from(name), Rc::from(device)));
        Ok(())
    })
}

/// The registered device called `name`.
///
/// # Safety
///
/// `name` must be a C string.
unsafe fn lookup(name: *const c_char) -> Option<Rc<dyn BlockDevice>> {
    // SAFETY: a C string (this function's contract).
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    STATE.with(|state| {
        state
            .block
            .devices
            .iter()
            .find(|(known, _)| known.as_bytes() == name)
            .map(|(_, device)| device.clone())
    })
}

/// `rumpuser_open`: opens the registered device `name`. `EROFS` for write
/// access to a read-only device, `EEXIST` for `CREATE|EXCL` (it exists),
/// `ENOENT` for an unknown name (devices cannot be created).
///
/// # Safety
///
/// `name` must be a C string, `fdp` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_open(name: *const c_char, mode: c_int, fdp: *mut c_int) -> c_int {
    // SAFETY: the caller passes a C string.
    let Some(device) = (unsafe { lookup(name) }) else {
        return ENOENT;
    };
    let exclusive = RUMPUSER_OPEN_CREATE | RUMPUSER_OPEN_EXCL;
    if mode & exclusive == exclusive {
        return EEXIST;
    }
    let (readable, writable) = match mode & RUMPUSER_OPEN_ACCMODE {
        RUMPUSER_OPEN_RDONLY => (true, false),
        RUMPUSER_OPEN_WRONLY => (false, true),
        RUMPUSER_OPEN_RDWR => (true, true),
        _ => return EINVAL,
    };
    if writable && device.read_only() {
        return EROFS;
    }
    let file = OpenFile {
        device,
        readable,
        writable,
        position: 0,
    };
    let descriptor = STATE.with(|state| {
        let files = &mut state.block.files;
        match files.iter().position(Option::is_none) {
            Some(index) => {
                files[index] = Some(file);
                index
            }
            None => {
                files.push(Some(file));
                files.len() - 1
            }
        }
    });
    let Ok(descriptor) = c_int::try_from(descriptor) else {
        STATE.with(|state| state.block.files[descriptor] = None);
        return ENOMEM;
    };
    // SAFETY: the caller passes a writable pointer.
    unsafe { fdp.write(descriptor) };
    0
}

/// `rumpuser_close`: 0, or `EBADF`.
#[no_mangle]
pub extern "C" fn rumpuser_close(fd: c_int) -> c_int {
    STATE.with(|state| {
        match usize::try_from(fd)
            .ok()
            .and_then(|index| state.block.files.get_mut(index))
        {
            Some(slot @ Some(_)) => {
                *slot = None;
                0
            }
            _ => EBADF,
        }
    })
}

/// `rumpuser_getfileinfo`: size and type (`RUMPUSER_FT_BLK`) of a
/// registered device; `ENOENT` for an unknown name.
///
/// # Safety
///
/// `name` must be a C string; `size` and `file_type` null or valid for a
/// write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_getfileinfo(
    name: *const c_char,
    size: *mut u64,
    file_type: *mut c_int,
) -> c_int {
    // SAFETY: the caller passes a C string.
    let Some(device) = (unsafe { lookup(name) }) else {
        return ENOENT;
    };
    if !size.is_null() {
        // SAFETY: the caller passes null or a writable pointer.
        unsafe { size.write(device.size()) };
    }
    if !file_type.is_null() {
        // SAFETY: as above.
        unsafe { file_type.write(RUMPUSER_FT_BLK) };
    }
    0
}

fn file_access(fd: c_int) -> Option<(Rc<dyn BlockDevice>, bool, bool, u64)> {
    STATE.with(|state| {
        let index = usize::try_from(fd).ok()?;
        let file = state.block.files.get(index)?.as_ref()?;
        Some((
            file.device.clone(),
            file.readable,
            file.writable,
            file.position,
        ))
    })
}

/// `rumpuser_bio`: queues a block transfer and returns; `biodone(donearg,
/// bytes, errno)` is called from the I/O thread when it is done, also for
/// requests refused (bad descriptor, access mode or operation).
///
/// # Safety
///
/// `data` must be valid for `dlen` bytes of reads and writes until
/// `biodone` is called; `biodone` must be safe to call with `donearg`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_bio(
    fd: c_int,
    op: c_int,
    data: *mut c_void,
    dlen: usize,
    off: i64,
    biodone: Option<RumpBiodoneFn>,
    donearg: *mut c_void,
) {
    let Some(biodone) = biodone else {
        // Nobody to tell about the result: nothing to do.
        return;
    };
    let write = op & RUMPUSER_BIO_WRITE != 0;
    let access = file_access(fd);
    let refused = match (&access, op & (RUMPUSER_BIO_READ | RUMPUSER_BIO_WRITE)) {
        (None, _) => Some(EBADF),
        (Some(_), RUMPUSER_BIO_READ | RUMPUSER_BIO_WRITE) => None,
        (Some(_), _) => Some(EINVAL),
    };
    let refused = refused.or(match &access {
        Some((_, readable, writable, _)) if (write && !writable) || (!write && !readable) => {
            Some(EBADF)
        }
        _ => None,
    });
    let device = match (access, refused) {
        (Some((device, ..)), None) => Ok(device),
        (_, error) => Err(error.unwrap_or(EBADF)),
    };
    let bio = Bio {
        device,
        write,
        sync: op & RUMPUSER_BIO_SYNC != 0,
        data: data.cast(),
        length: dlen,
        offset: off,
        biodone,
        donearg,
    };
    let host = host();
    let start_worker = STATE.with(|state| {
        let block = &mut state.block;
        block.queue.push_back(bio);
        block.submitted += 1;
        block.worker_idle.wake_one(host);
        block.worker.is_none()
    });
    if start_worker {
        match host.spawn("rumpuser-bio", Box::new(|| io_thread())) {
            Ok(thread) => STATE.with(|state| state.block.worker = Some(thread)),
            Err(_) => panic!("rumpuser: cannot start the block I/O thread"),
        }
    }
}

/// Performs one request; returns (bytes transferred, errno).
///
/// # Safety
///
/// `bio.data` must be valid for `bio.length` bytes of reads and writes and
/// used by nobody else meanwhile (what `rumpuser_bio`'s caller promised
/// until `biodone`).
unsafe fn perform(bio: &Bio) -> (usize, c_int) {
    let device = match &bio.device {
        Ok(device) => device,
        Err(error) => return (0, *error),
    };
    let size = device.size();
    let Ok(offset) = u64::try_from(bio.offset) else {
        return (0, EINVAL);
    };
    match offset.checked_add(bio.length as u64) {
        Some(end) if end <= size => {}
        _ => return (0, ENXIO),
    }
    if bio.length == 0 {
        // Nothing to move, and `data` may be null.
        return (0, 0);
    }
    let result = if bio.write {
        // SAFETY: valid for `length` (non-zero) bytes and not used by
        // anybody else (this function's contract).
        let data = unsafe { core::slice::from_raw_parts(bio.data, bio.length) };
        device
            .write(offset, data)
            .and_then(|()| if bio.sync { device.flush() } else { Ok(()) })
    } else {
        // SAFETY: as above, for writing into the caller's buffer.
        let buffer = unsafe { core::slice::from_raw_parts_mut(bio.data, bio.length) };
        device.read(offset, buffer)
    };
    match result {
        Ok(()) => (bio.length, 0),
        Err(error) => (0, error.errno()),
    }
}

fn io_thread() -> ! {
    let host = host();
    let me = host.current();
    bind_new_lwp("the I/O thread");
    loop {
        let next = STATE.with(|state| match state.block.queue.pop_front() {
            Some(bio) => Ok(bio),
            None => Err(state.block.worker_idle.push(me)),
        });
        let bio = match next {
            Ok(bio) => bio,
            Err(ticket) => {
                park_until_woken(
                    host,
                    &STATE,
                    |state| &mut state.block.worker_idle,
                    ticket,
                    None,
                );
                continue;
            }
        };
        // SAFETY: a request `rumpuser_bio` queued, whose buffer its caller
        // keeps for us until `biodone` below.
        let (transferred, error) = unsafe { perform(&bio) };
        backend_schedule(0, ptr::null_mut());
        // SAFETY: the biodone and argument `rumpuser_bio` was given, called
        // once, with a rump kernel CPU held as rumpuser(3) expects.
        unsafe { (bio.biodone)(bio.donearg, transferred, error) };
        // The I/O thread holds no locks of the rump kernel: nothing to keep.
        let _nlocks = backend_unschedule(ptr::null_mut());
        STATE.with(|state| {
            state.block.completed += 1;
            state.block.drain_waiters.wake_all(host);
        });
    }
}

/// Waits, without the CPU, until every request queued so far completed.
fn wait_for_queued_requests() {
    let host = host();
    let me = host.current();
    loop {
        let ticket = STATE.with(|state| {
            let block = &mut state.block;
            (block.completed < block.submitted).then(|| block.drain_waiters.push(me))
        });
        let Some(ticket) = ticket else {
            return;
        };
        park_until_woken(
            host,
            &STATE,
            |state| &mut state.block.drain_waiters,
            ticket,
            None,
        );
    }
}

/// The body of `rumpuser_iovread` (`write` false) and `rumpuser_iovwrite`.
///
/// # Safety
///
/// `iov` must point to `iovlen` descriptors, each of a buffer valid for
/// `iov_len` bytes of writes (reads for `write`); `retv` valid for a write.
unsafe fn iov_transfer(
    fd: c_int,
    iov: *const RumpuserIovec,
    iovlen: usize,
    off: i64,
    retv: *mut usize,
    write: bool,
) -> c_int {
    let Some((device, readable, writable, position)) = file_access(fd) else {
        return EBADF;
    };
    if (write && !writable) || (!write && !readable) {
        return EBADF;
    }
    let start = if off == RUMPUSER_IOV_NOSEEK {
        position
    } else {
        match u64::try_from(off) {
            Ok(start) => start,
            Err(_) => return EINVAL,
        }
    };
    let size = device.size();
    let nlocks = backend_unschedule(ptr::null_mut());
    let mut offset = start;
    let mut error = 0;
    for index in 0..iovlen {
        // SAFETY: the caller passes `iovlen` descriptors.
        let vector = unsafe { iov.add(index).read() };
        let room = usize::try_from(size.saturating_sub(offset)).unwrap_or(usize::MAX);
        let length = vector.iov_len.min(room);
        if vector.iov_len == 0 {
            // An empty buffer may have a null base: skip it.
            continue;
        }
        if length == 0 {
            if write && vector.iov_len > 0 && offset == start {
                error = ENOSPC;
            }
            break;
        }
        let result = if write {
            // SAFETY: the caller passes readable buffers of `iov_len` bytes,
            // and `length` is at most that and non-zero.
            let data = unsafe { core::slice::from_raw_parts(vector.iov_base.cast::<u8>(), length) };
            device.write(offset, data)
        } else {
            // SAFETY: the caller passes writable buffers of `iov_len` bytes.
            let buffer =
                unsafe { core::slice::from_raw_parts_mut(vector.iov_base.cast::<u8>(), length) };
            device.read(offset, buffer)
        };
        if let Err(failure) = result {
            error = failure.errno();
            break;
        }
        offset += length as u64;
        if length < vector.iov_len {
            break;
        }
    }
    backend_schedule(nlocks, ptr::null_mut());
    let transferred = offset - start;
    if error != 0 && transferred == 0 {
        return error;
    }
    if off == RUMPUSER_IOV_NOSEEK {
        STATE.with(|state| {
            if let Some(Some(file)) = usize::try_from(fd)
                .ok()
                .and_then(|index| state.block.files.get_mut(index))
            {
                file.position = offset;
            }
        });
    }
    // SAFETY: the caller passes a writable pointer.
    unsafe { retv.write(transferred as usize) };
    0
}

/// `rumpuser_iovread`: reads into the `iovlen` buffers of `iov` from byte
/// `off` (or the descriptor's offset for `RUMPUSER_IOV_NOSEEK`); the count,
/// short at the end of the device, goes to `retv`.
///
/// # Safety
///
/// `iov` must point to `iovlen` descriptors of writable buffers; `retv`
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_iovread(
    fd: c_int,
    iov: *mut RumpuserIovec,
    iovlen: usize,
    off: i64,
    retv: *mut usize,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { iov_transfer(fd, iov, iovlen, off, retv, false) }
}

/// `rumpuser_iovwrite`: like [`rumpuser_iovread`] in the other direction;
/// `ENOSPC` if nothing fits before the end of the device.
///
/// # Safety
///
/// `iov` must point to `iovlen` descriptors of readable buffers; `retv`
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_iovwrite(
    fd: c_int,
    iov: *const RumpuserIovec,
    iovlen: usize,
    off: i64,
    retv: *mut usize,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { iov_transfer(fd, iov, iovlen, off, retv, true) }
}

/// `rumpuser_syncfd`: with `RUMPUSER_SYNCFD_WRITE`, `_BARRIER` or `_SYNC`
/// waits (CPU released) for every block request queued so far and, for
/// `WRITE`, flushes the device. `RUMPUSER_SYNCFD_READ` alone needs nothing:
/// there is no read cache. The range is not narrowed: the whole device is
/// synchronised.
#[no_mangle]
pub extern "C" fn rumpuser_syncfd(fd: c_int, flags: c_int, _start: u64, _len: u64) -> c_int {
    if flags & (RUMPUSER_SYNCFD_READ | RUMPUSER_SYNCFD_WRITE) == 0 {
        return EINVAL;
    }
    let Some((device, ..)) = file_access(fd) else {
        return EBADF;
    };
    let ordered = RUMPUSER_SYNCFD_WRITE | RUMPUSER_SYNCFD_BARRIER | RUMPUSER_SYNCFD_SYNC;
    if flags & ordered == 0 {
        return 0;
    }
    let nlocks = backend_unschedule(ptr::null_mut());
    wait_for_queued_requests();
    let result = if flags & RUMPUSER_SYNCFD_WRITE != 0 {
        device.flush()
    } else {
        Ok(())
    };
    backend_schedule(nlocks, ptr::null_mut());
    match result {
        Ok(()) => 0,
        Err(error) => error.errno(),
    }
}
