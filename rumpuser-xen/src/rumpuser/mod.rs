//! The rumpuser(3) hypercall interface, version 17, exported as a C ABI.
//!
//! A NetBSD rump kernel (its `librump*.a` archives) runs on these
//! functions: every `#[no_mangle] extern "C"` item below has the exact
//! name, signature and constants of NetBSD's
//! [`sys/rump/include/rump/rumpuser.h`](https://github.com/NetBSD/src/blob/trunk/sys/rump/include/rump/rumpuser.h),
//! with the semantics of the rumpuser(3) manual page. Above this layer is
//! the rump kernel; below it a [`Host`]: on Xen the PV platform
//! (`pv::rumpuser_host`, installed on first use), in the conformance tests
//! (`tests/rumpuser_*.rs`) std threads run one at a time.
//!
//! The PCI hypercalls NetBSD's `librumpdev_pci` links against
//! (`rumpcomp_pci_*`) are in [`pci`], over a [`PciHost`] of their own.
//!
//! The one rule every blocking hypercall follows (rumpuser(3), "Upcalls
//! and rump kernel context"): a thread about to block gives its rump
//! kernel CPU back with `hyp_backend_unschedule` and takes one again with
//! `hyp_backend_schedule` before it returns, except where the interface
//! says not to (spin mutexes, the `_nowrap` calls).
//!
//! Errors are NetBSD errno values ([`abi::errno`]). Calls that return no
//! integer cannot fail; a broken contract by the caller (exiting a mutex
//! nobody holds, an unknown lwp operation) is a rump kernel bug and
//! panics, which on Xen crashes the domain with a report. No panic unwinds
//! into C: the bare-metal target aborts on panic, and on a hosted build
//! (the tests) a panic reaching an `extern "C"` function aborts the
//! process.

pub mod abi;
pub mod block;
mod console;
pub mod host;
mod memory;
pub mod pci;
pub mod random;
mod state;
pub mod sync;
pub mod thread;

use alloc::string::{String, ToString};
use core::ffi::{c_char, c_int, c_long, c_void, CStr};
use core::ptr;

use abi::errno::{EINVAL, ENOENT, ERANGE};
use abi::{
    RumpComploadFn, RumpModinitFn, RumpSymloadFn, RumpuserHyperup, RUMPUSER_CLOCK_ABSMONO,
    RUMPUSER_CLOCK_RELWALL, RUMPUSER_PANIC, RUMPUSER_PARAM_HOSTNAME, RUMPUSER_PARAM_NCPU,
    RUMPUSER_VERSION, RUMP_MEMLIMIT,
};
pub use block::{register_block_device, BlockDevice, BlockError, RegisterError};
pub use host::{Host, SpawnError, ThreadKey};
use state::{backend_schedule, backend_unschedule, host, STATE};
pub use thread::thread_errno;

pub use console::rumpuser_putchar;
pub use memory::{rumpuser_anonmmap, rumpuser_free, rumpuser_malloc, rumpuser_unmap};
pub use pci::{install_pci_host, PciHost};

unsafe extern "C" {
    /// `rumpuser_dprintf(format, ...)`: printf to the console. Defined in
    /// assembly (C-variadic functions cannot be written in stable Rust);
    /// see the `console` module.
    pub fn rumpuser_dprintf(format: *const c_char, ...);
}

/// Makes `host` the machine the layer runs on and forgets all state of an
/// earlier host (upcalls, threads, open files, registered devices, the PCI
/// host and what the PCI hypercalls kept). On Xen
/// the PV host is installed on first use; the conformance tests call this
/// for each scenario.
pub fn install_host(host: &'static dyn Host) {
    STATE.with(|state| {
        state.host = Some(host);
        state.hyperup = None;
        state.threads.clear();
        state.random = None;
        state.block = block::BlockState::new();
    });
    pci::forget();
}

/// `rumpuser_init`: checks that the rump kernel expects interface version
/// 17 (else `EINVAL`), keeps its upcalls and seeds the random pool.
///
/// # Safety
///
/// `hyperup` must point to a valid `struct rumpuser_hyperup` whose upcalls
/// stay callable for the life of the domain.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_init(version: c_int, hyperup: *const RumpuserHyperup) -> c_int {
    if version != RUMPUSER_VERSION {
        let message = alloc::format!(
            "rumpuser: the rump kernel wants interface version {version}, this is version {RUMPUSER_VERSION}\n"
        );
        host().console_write(message.as_bytes());
        return EINVAL;
    }
    if hyperup.is_null() {
        return EINVAL;
    }
    // SAFETY: the caller passes a valid upcall table; it is copied.
    let hyperup = unsafe { hyperup.read() };
    let host = host();
    random::seed(host);
    STATE.with(|state| state.hyperup = Some(hyperup));
    0
}

/// `rumpuser_clock_gettime`: `RUMPUSER_CLOCK_RELWALL` is the wall clock,
/// `RUMPUSER_CLOCK_ABSMONO` the monotonic one; `EINVAL` for others.
///
/// # Safety
///
/// `sec` and `nsec` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_clock_gettime(
    clock: c_int,
    sec: *mut i64,
    nsec: *mut c_long,
) -> c_int {
    let now = match clock {
        RUMPUSER_CLOCK_RELWALL => host().wall_clock_ns(),
        RUMPUSER_CLOCK_ABSMONO => host().monotonic_ns(),
        _ => return EINVAL,
    };
    // SAFETY: the caller passes writable pointers.
    unsafe {
        sec.write((now / 1_000_000_000) as i64);
        nsec.write((now % 1_000_000_000) as c_long);
    }
    0
}

/// `rumpuser_clock_sleep`: sleeps, with the rump kernel CPU released, for
/// at least `sec`/`nsec` (`RUMPUSER_CLOCK_RELWALL`) or until the monotonic
/// clock reads `sec`/`nsec` (`RUMPUSER_CLOCK_ABSMONO`). `EINVAL` for other
/// clocks.
#[no_mangle]
pub extern "C" fn rumpuser_clock_sleep(clock: c_int, sec: i64, nsec: c_long) -> c_int {
    let host = host();
    let amount = sync::relative_ns(sec, nsec);
    let deadline = match clock {
        RUMPUSER_CLOCK_RELWALL => host.monotonic_ns().saturating_add(amount),
        RUMPUSER_CLOCK_ABSMONO => amount,
        _ => return EINVAL,
    };
    let nlocks = backend_unschedule(ptr::null_mut());
    while host.monotonic_ns() < deadline {
        host.park(Some(deadline));
    }
    backend_schedule(nlocks, ptr::null_mut());
    0
}

/// The value of parameter `name`, if the domain has one.
fn parameter(name: &str) -> Result<String, c_int> {
    let host = host();
    match name {
        // One vCPU: the rump kernel gets one virtual CPU.
        RUMPUSER_PARAM_NCPU => Ok(String::from("1")),
        RUMPUSER_PARAM_HOSTNAME => Ok(host.hostname()),
        // Other names with a leading underscore would be mandatory
        // parameters this version does not know.
        _ if name.starts_with('_') => Err(EINVAL),
        RUMP_MEMLIMIT => Ok(host
            .parameter(name)
            .unwrap_or_else(|| host.memory_limit().to_string())),
        _ => host.parameter(name).ok_or(ENOENT),
    }
}

/// `rumpuser_getparam`: copies the value of `name` into `buf` as a C
/// string. Known: `_RUMPUSER_NCPU`, `_RUMPUSER_HOSTNAME`, `RUMP_MEMLIMIT`
/// (the host's figure unless the operator set one), and any `NAME` the
/// operator set. `ENOENT` for an unset name, `ERANGE` if `buf` is too
/// small.
///
/// # Safety
///
/// `name` must be a C string and `buf` valid for `buflen` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_getparam(
    name: *const c_char,
    buf: *mut c_void,
    buflen: usize,
) -> c_int {
    // SAFETY: the caller passes a C string.
    let Ok(name) = unsafe { CStr::from_ptr(name) }.to_str() else {
        return ENOENT;
    };
    let value = match parameter(name) {
        Ok(value) => value,
        Err(error) => return error,
    };
    let bytes = value.as_bytes();
    if bytes.len() >= buflen {
        return ERANGE;
    }
    // SAFETY: the caller passes `buflen` writable bytes, and the value and
    // its NUL fit (checked above).
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        buf.cast::<u8>().add(bytes.len()).write(0);
    }
    0
}

/// `rumpuser_kill`: the domain has no host process to signal, so the
/// signal is reported on the console and otherwise dropped; rumpuser(3)
/// allows this (the rump kernel ignores the result).
#[no_mangle]
pub extern "C" fn rumpuser_kill(pid: i64, sig: c_int) -> c_int {
    let message =
        alloc::format!("rumpuser: signal {sig} for pid {pid} dropped (no host process)\n");
    host().console_write(message.as_bytes());
    0
}

/// `rumpuser_exit`: stops the domain; `RUMPUSER_PANIC` makes it a crash.
#[no_mangle]
pub extern "C" fn rumpuser_exit(value: c_int) -> ! {
    let host = host();
    if value == RUMPUSER_PANIC {
        host.console_write(b"rumpuser: the rump kernel panicked\n");
    }
    host.exit(value)
}

/// `rumpuser_dl_bootstrap`: the image is linked statically, so there are
/// no shared objects to scan; the rump kernel finds its components through
/// the linker sets of the static image. Nothing to do, as for NetBSD's own
/// hypervisor without a dynamic linker.
#[no_mangle]
pub extern "C" fn rumpuser_dl_bootstrap(
    _modinit: RumpModinitFn,
    _symload: RumpSymloadFn,
    _compload: RumpComploadFn,
) {
}

/// `rumpuser_daemonize_begin`: there is no parent process to detach from.
#[no_mangle]
pub extern "C" fn rumpuser_daemonize_begin() -> c_int {
    0
}

/// `rumpuser_daemonize_done`: as above; the status has nobody to go to.
#[no_mangle]
pub extern "C" fn rumpuser_daemonize_done(_error: c_int) -> c_int {
    0
}
