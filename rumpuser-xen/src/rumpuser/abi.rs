//! The C types and constants of the rumpuser(3) interface, version 17
//! (NetBSD `sys/rump/include/rump/rumpuser.h`), and the NetBSD errno values
//! its functions return.
//!
//! Enums travel as `int`, `off_t` as `int64_t`, as the header specifies.

use core::ffi::{c_char, c_int, c_long, c_void};

/// `RUMPUSER_VERSION`: the interface version this layer implements.
pub const RUMPUSER_VERSION: c_int = 17;

/// NetBSD's `pid_t`.
pub type PidT = i32;

/// The rump kernel's `struct lwp`; opaque to the hypervisor.
#[repr(C)]
pub struct Lwp {
    _opaque: [u8; 0],
}

/// `struct rumpuser_hyperup`: the upcalls the rump kernel hands to
/// `rumpuser_init`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RumpuserHyperup {
    /// `hyp_schedule`: gives the calling thread a rump kernel context.
    pub hyp_schedule: Option<unsafe extern "C" fn()>,
    /// `hyp_unschedule`: releases what `hyp_schedule` gave.
    pub hyp_unschedule: Option<unsafe extern "C" fn()>,
    /// `hyp_backend_unschedule(nlocks, &countp, interlock)`: releases the
    /// rump kernel CPU before the hypervisor blocks.
    pub hyp_backend_unschedule: Option<unsafe extern "C" fn(c_int, *mut c_int, *mut c_void)>,
    /// `hyp_backend_schedule(nlocks, interlock)`: takes a CPU back.
    pub hyp_backend_schedule: Option<unsafe extern "C" fn(c_int, *mut c_void)>,
    /// `hyp_lwproc_switch`.
    pub hyp_lwproc_switch: Option<unsafe extern "C" fn(*mut Lwp)>,
    /// `hyp_lwproc_release`.
    pub hyp_lwproc_release: Option<unsafe extern "C" fn()>,
    /// `hyp_lwproc_rfork`.
    pub hyp_lwproc_rfork: Option<unsafe extern "C" fn(*mut c_void, c_int, *const c_char) -> c_int>,
    /// `hyp_lwproc_newlwp(pid)`: binds a new lwp of process `pid` to the
    /// calling thread.
    pub hyp_lwproc_newlwp: Option<unsafe extern "C" fn(PidT) -> c_int>,
    /// `hyp_lwproc_curlwp`.
    pub hyp_lwproc_curlwp: Option<unsafe extern "C" fn() -> *mut Lwp>,
    /// `hyp_syscall`.
    pub hyp_syscall: Option<unsafe extern "C" fn(c_int, *mut c_void, *mut c_long) -> c_int>,
    /// `hyp_lwpexit`.
    pub hyp_lwpexit: Option<unsafe extern "C" fn()>,
    /// `hyp_execnotify`.
    pub hyp_execnotify: Option<unsafe extern "C" fn(*const c_char)>,
    /// `hyp_getpid`.
    pub hyp_getpid: Option<unsafe extern "C" fn() -> PidT>,
    /// `hyp__extra[8]`: reserved.
    pub hyp_extra: [*mut c_void; 8],
}

/// `RUMPUSER_OPEN_*` (the access mode is the low two bits).
pub const RUMPUSER_OPEN_RDONLY: c_int = 0x0000;
pub const RUMPUSER_OPEN_WRONLY: c_int = 0x0001;
pub const RUMPUSER_OPEN_RDWR: c_int = 0x0002;
pub const RUMPUSER_OPEN_ACCMODE: c_int = 0x0003;
pub const RUMPUSER_OPEN_CREATE: c_int = 0x0004;
pub const RUMPUSER_OPEN_EXCL: c_int = 0x0008;
pub const RUMPUSER_OPEN_BIO: c_int = 0x0010;

/// `RUMPUSER_FT_*`: file types of `rumpuser_getfileinfo`.
pub const RUMPUSER_FT_OTHER: c_int = 0;
pub const RUMPUSER_FT_DIR: c_int = 1;
pub const RUMPUSER_FT_REG: c_int = 2;
pub const RUMPUSER_FT_BLK: c_int = 3;
pub const RUMPUSER_FT_CHR: c_int = 4;

/// `RUMPUSER_BIO_*`: operations of `rumpuser_bio`.
pub const RUMPUSER_BIO_READ: c_int = 0x01;
pub const RUMPUSER_BIO_WRITE: c_int = 0x02;
pub const RUMPUSER_BIO_SYNC: c_int = 0x04;

/// `rump_biodone_fn`: `biodone(donearg, bytes transferred, errno)`.
pub type RumpBiodoneFn = unsafe extern "C" fn(*mut c_void, usize, c_int);

/// `struct rumpuser_iovec`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RumpuserIovec {
    /// `iov_base`.
    pub iov_base: *mut c_void,
    /// `iov_len`.
    pub iov_len: usize,
}

/// `RUMPUSER_IOV_NOSEEK`: use (and advance) the descriptor's own offset.
pub const RUMPUSER_IOV_NOSEEK: i64 = -1;

/// `RUMPUSER_SYNCFD_*`.
pub const RUMPUSER_SYNCFD_READ: c_int = 0x01;
pub const RUMPUSER_SYNCFD_WRITE: c_int = 0x02;
pub const RUMPUSER_SYNCFD_BOTH: c_int = RUMPUSER_SYNCFD_READ | RUMPUSER_SYNCFD_WRITE;
pub const RUMPUSER_SYNCFD_BARRIER: c_int = 0x04;
pub const RUMPUSER_SYNCFD_SYNC: c_int = 0x08;

/// `enum rumpclock`.
pub const RUMPUSER_CLOCK_RELWALL: c_int = 0;
pub const RUMPUSER_CLOCK_ABSMONO: c_int = 1;

/// Mandatory parameter names of `rumpuser_getparam`.
pub const RUMPUSER_PARAM_NCPU: &str = "_RUMPUSER_NCPU";
pub const RUMPUSER_PARAM_HOSTNAME: &str = "_RUMPUSER_HOSTNAME";
/// The memory limit the rump kernel asks for (not in the header: the rump
/// kernel's own `rump.c` reads it).
pub const RUMP_MEMLIMIT: &str = "RUMP_MEMLIMIT";

/// `RUMPUSER_PID_SELF`.
pub const RUMPUSER_PID_SELF: i64 = -1;
/// `RUMPUSER_PANIC`: the exit status of a panicking rump kernel.
pub const RUMPUSER_PANIC: c_int = -1;

/// `RUMPUSER_RANDOM_*`.
pub const RUMPUSER_RANDOM_HARD: c_int = 0x01;
pub const RUMPUSER_RANDOM_NOWAIT: c_int = 0x02;

/// `enum rumplwpop`.
pub const RUMPUSER_LWP_CREATE: c_int = 0;
pub const RUMPUSER_LWP_DESTROY: c_int = 1;
pub const RUMPUSER_LWP_SET: c_int = 2;
pub const RUMPUSER_LWP_CLEAR: c_int = 3;

/// Mutex flags.
pub const RUMPUSER_MTX_SPIN: c_int = 0x01;
pub const RUMPUSER_MTX_KMUTEX: c_int = 0x02;

/// `enum rumprwlock`.
pub const RUMPUSER_RW_READER: c_int = 0;
pub const RUMPUSER_RW_WRITER: c_int = 1;

/// `rump_modinit_fn`, `rump_symload_fn`, `rump_compload_fn` of
/// `rumpuser_dl_bootstrap`; the structures they take are the rump
/// kernel's and never looked into here.
pub type RumpModinitFn = Option<unsafe extern "C" fn(*const *const c_void, usize)>;
pub type RumpSymloadFn = Option<unsafe extern "C" fn(*mut c_void, u64, *mut c_char, u64) -> c_int>;
pub type RumpComploadFn = Option<unsafe extern "C" fn(*const c_void)>;

/// NetBSD errno values (`sys/errno.h`): the rump kernel is NetBSD, so
/// hypercalls answer in its numbering, not the build host's.
pub mod errno {
    use core::ffi::c_int;

    pub const EPERM: c_int = 1;
    pub const ENOENT: c_int = 2;
    pub const EIO: c_int = 5;
    pub const ENXIO: c_int = 6;
    pub const EBADF: c_int = 9;
    pub const ENOMEM: c_int = 12;
    pub const EBUSY: c_int = 16;
    pub const EEXIST: c_int = 17;
    pub const ENODEV: c_int = 19;
    pub const EINVAL: c_int = 22;
    pub const ENOSPC: c_int = 28;
    pub const EROFS: c_int = 30;
    pub const ERANGE: c_int = 34;
    pub const EAGAIN: c_int = 35;
    pub const EOPNOTSUPP: c_int = 45;
    pub const ETIMEDOUT: c_int = 60;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn hyperup_has_the_c_layout() {
        // Thirteen function pointers, then `void *hyp__extra[8]`.
        assert_eq!(offset_of!(RumpuserHyperup, hyp_backend_unschedule), 16);
        assert_eq!(offset_of!(RumpuserHyperup, hyp_getpid), 12 * 8);
        assert_eq!(offset_of!(RumpuserHyperup, hyp_extra), 13 * 8);
        assert_eq!(size_of::<RumpuserHyperup>(), 21 * 8);
    }

    #[test]
    fn iovec_matches_the_kernel_layout() {
        assert_eq!(size_of::<RumpuserIovec>(), 16);
        assert_eq!(offset_of!(RumpuserIovec, iov_len), 8);
    }
}
