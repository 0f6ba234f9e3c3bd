//! The part of a rump kernel the hypercalls talk back to: the upcalls of
//! `struct rumpuser_hyperup`, one virtual CPU, lwps and thread start-up,
//! done the way NetBSD's `librump` does them, over the exported C symbols.

use alloc::boxed::Box;
use core::ffi::{c_char, c_int, c_long, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};

use rumpuser_xen::rumpuser::abi::{
    Lwp, RumpuserHyperup, RumpuserIovec, RUMPUSER_CLOCK_ABSMONO, RUMPUSER_LWP_CLEAR,
    RUMPUSER_LWP_CREATE, RUMPUSER_LWP_DESTROY, RUMPUSER_LWP_SET, RUMPUSER_MTX_SPIN,
};

/// `struct rumpuser_mtx`: opaque to the rump kernel.
#[repr(C)]
pub struct Mtx {
    _opaque: [u8; 0],
}

/// `struct rumpuser_rw`.
#[repr(C)]
pub struct Rw {
    _opaque: [u8; 0],
}

/// `struct rumpuser_cv`.
#[repr(C)]
pub struct Cv {
    _opaque: [u8; 0],
}

/// The hypercalls, declared as `rumpuser.h` has them.
pub mod c {
    use super::*;

    extern "C" {
        pub fn rumpuser_init(version: c_int, hyperup: *const RumpuserHyperup) -> c_int;
        pub fn rumpuser_malloc(len: usize, alignment: c_int, memp: *mut *mut c_void) -> c_int;
        pub fn rumpuser_free(mem: *mut c_void, len: usize);
        pub fn rumpuser_anonmmap(
            prefaddr: *mut c_void,
            size: usize,
            alignbit: c_int,
            exec: c_int,
            memp: *mut *mut c_void,
        ) -> c_int;
        pub fn rumpuser_unmap(addr: *mut c_void, size: usize);
        pub fn rumpuser_open(name: *const c_char, mode: c_int, fdp: *mut c_int) -> c_int;
        pub fn rumpuser_close(fd: c_int) -> c_int;
        pub fn rumpuser_getfileinfo(
            name: *const c_char,
            size: *mut u64,
            file_type: *mut c_int,
        ) -> c_int;
        pub fn rumpuser_bio(
            fd: c_int,
            op: c_int,
            data: *mut c_void,
            dlen: usize,
            off: i64,
            biodone: Option<unsafe extern "C" fn(*mut c_void, usize, c_int)>,
            donearg: *mut c_void,
        );
        pub fn rumpuser_iovread(
            fd: c_int,
            iov: *mut RumpuserIovec,
            iovlen: usize,
            off: i64,
            retv: *mut usize,
        ) -> c_int;
        pub fn rumpuser_iovwrite(
            fd: c_int,
            iov: *const RumpuserIovec,
            iovlen: usize,
            off: i64,
            retv: *mut usize,
        ) -> c_int;
        pub fn rumpuser_syncfd(fd: c_int, flags: c_int, start: u64, len: u64) -> c_int;
        pub fn rumpuser_clock_gettime(clock: c_int, sec: *mut i64, nsec: *mut c_long) -> c_int;
        pub fn rumpuser_clock_sleep(clock: c_int, sec: i64, nsec: c_long) -> c_int;
        pub fn rumpuser_getparam(name: *const c_char, buf: *mut c_void, buflen: usize) -> c_int;
        pub fn rumpuser_getrandom(
            buf: *mut c_void,
            buflen: usize,
            flags: c_int,
            retp: *mut usize,
        ) -> c_int;
        pub fn rumpuser_thread_create(
            function: Option<unsafe extern "C" fn(*mut c_void) -> *mut c_void>,
            argument: *mut c_void,
            name: *const c_char,
            mustjoin: c_int,
            priority: c_int,
            cpuidx: c_int,
            cookie: *mut *mut c_void,
        ) -> c_int;
        pub fn rumpuser_thread_exit() -> !;
        pub fn rumpuser_thread_join(cookie: *mut c_void) -> c_int;
        pub fn rumpuser_curlwpop(operation: c_int, lwp: *mut Lwp);
        pub fn rumpuser_curlwp() -> *mut Lwp;
        pub fn rumpuser_mutex_init(mtxp: *mut *mut Mtx, flags: c_int);
        pub fn rumpuser_mutex_enter(mtx: *mut Mtx);
        pub fn rumpuser_mutex_enter_nowrap(mtx: *mut Mtx);
        pub fn rumpuser_mutex_tryenter(mtx: *mut Mtx) -> c_int;
        pub fn rumpuser_mutex_exit(mtx: *mut Mtx);
        pub fn rumpuser_mutex_destroy(mtx: *mut Mtx);
        pub fn rumpuser_mutex_owner(mtx: *mut Mtx, lp: *mut *mut Lwp);
        pub fn rumpuser_rw_init(rwp: *mut *mut Rw);
        pub fn rumpuser_rw_enter(lock_type: c_int, rw: *mut Rw);
        pub fn rumpuser_rw_tryenter(lock_type: c_int, rw: *mut Rw) -> c_int;
        pub fn rumpuser_rw_tryupgrade(rw: *mut Rw) -> c_int;
        pub fn rumpuser_rw_downgrade(rw: *mut Rw);
        pub fn rumpuser_rw_exit(rw: *mut Rw);
        pub fn rumpuser_rw_destroy(rw: *mut Rw);
        pub fn rumpuser_rw_held(lock_type: c_int, rw: *mut Rw, heldp: *mut c_int);
        pub fn rumpuser_cv_init(cvp: *mut *mut Cv);
        pub fn rumpuser_cv_destroy(cv: *mut Cv);
        pub fn rumpuser_cv_wait(cv: *mut Cv, mtx: *mut Mtx);
        pub fn rumpuser_cv_wait_nowrap(cv: *mut Cv, mtx: *mut Mtx);
        pub fn rumpuser_cv_timedwait(cv: *mut Cv, mtx: *mut Mtx, sec: i64, nsec: i64) -> c_int;
        pub fn rumpuser_cv_signal(cv: *mut Cv);
        pub fn rumpuser_cv_broadcast(cv: *mut Cv);
        pub fn rumpuser_cv_has_waiters(cv: *mut Cv, waitersp: *mut c_int);
        pub fn rumpuser_exit(value: c_int) -> !;
    }
}

/// The lock and condition variable of the CPU, made by [`boot`].
static CPU_LOCK: AtomicPtr<Mtx> = AtomicPtr::new(ptr::null_mut());
static CPU_CV: AtomicPtr<Cv> = AtomicPtr::new(ptr::null_mut());
/// Free CPUs: 0 or 1. Changed only under `CPU_LOCK`.
static CPUS_FREE: AtomicUsize = AtomicUsize::new(0);
/// Broken rules the upcalls noticed (a second release, a lost lock count).
pub static VIOLATIONS: AtomicUsize = AtomicUsize::new(0);
/// `hyp_backend_unschedule` calls so far: a blocking hypercall gave the
/// CPU up.
pub static BACKEND_UNSCHEDULES: AtomicUsize = AtomicUsize::new(0);
/// The lock count `hyp_backend_unschedule` hands out and
/// `hyp_backend_schedule` must get back.
const NLOCKS_TOKEN: c_int = 5;
/// The last lock count that came back that was neither the token nor 0.
pub static WRONG_NLOCKS: AtomicI32 = AtomicI32::new(0);

fn take_cpu() {
    let lock = CPU_LOCK.load(Ordering::Relaxed);
    let cv = CPU_CV.load(Ordering::Relaxed);
    // SAFETY: the CPU's lock and cv, made in `boot` and never destroyed.
    // The spin mutex is entered with `_nowrap` and waited on with
    // `cv_wait_nowrap`, as NetBSD's scheduler does: neither may call back
    // into the scheduler.
    unsafe {
        c::rumpuser_mutex_enter_nowrap(lock);
        while CPUS_FREE.load(Ordering::Relaxed) == 0 {
            c::rumpuser_cv_wait_nowrap(cv, lock);
        }
        CPUS_FREE.fetch_sub(1, Ordering::Relaxed);
        c::rumpuser_mutex_exit(lock);
    }
}

fn release_cpu() {
    let lock = CPU_LOCK.load(Ordering::Relaxed);
    let cv = CPU_CV.load(Ordering::Relaxed);
    // SAFETY: as in `take_cpu`.
    unsafe {
        c::rumpuser_mutex_enter_nowrap(lock);
        if CPUS_FREE.fetch_add(1, Ordering::Relaxed) != 0 {
            // Released a CPU nobody held.
            VIOLATIONS.fetch_add(1, Ordering::Relaxed);
            CPUS_FREE.store(1, Ordering::Relaxed);
        }
        c::rumpuser_cv_signal(cv);
        c::rumpuser_mutex_exit(lock);
    }
}

/// Whether the one CPU is held by some thread.
pub fn cpu_held() -> bool {
    CPUS_FREE.load(Ordering::Relaxed) == 0
}

unsafe extern "C" fn hyp_schedule() {
    take_cpu();
}

unsafe extern "C" fn hyp_unschedule() {
    release_cpu();
}

unsafe extern "C" fn hyp_backend_unschedule(
    _nlocks: c_int,
    countp: *mut c_int,
    _interlock: *mut c_void,
) {
    BACKEND_UNSCHEDULES.fetch_add(1, Ordering::Relaxed);
    release_cpu();
    // SAFETY: the hypercall layer passes a writable count.
    unsafe { countp.write(NLOCKS_TOKEN) };
}

unsafe extern "C" fn hyp_backend_schedule(nlocks: c_int, _interlock: *mut c_void) {
    // 0 comes from a thread that takes a CPU without having given one up
    // (the I/O thread before each `biodone`); any other count must be the
    // one handed out.
    if nlocks != NLOCKS_TOKEN && nlocks != 0 {
        VIOLATIONS.fetch_add(1, Ordering::Relaxed);
        WRONG_NLOCKS.store(nlocks, Ordering::Relaxed);
    }
    take_cpu();
}

unsafe extern "C" fn hyp_lwproc_newlwp(_pid: i32) -> c_int {
    bind_lwp(new_lwp());
    0
}

/// The upcalls this kernel supplies; the others stay null, which the
/// hypercall layer never calls.
pub const HYPERUP: RumpuserHyperup = RumpuserHyperup {
    hyp_schedule: Some(hyp_schedule),
    hyp_unschedule: Some(hyp_unschedule),
    hyp_backend_unschedule: Some(hyp_backend_unschedule),
    hyp_backend_schedule: Some(hyp_backend_schedule),
    hyp_lwproc_switch: None,
    hyp_lwproc_release: None,
    hyp_lwproc_rfork: None,
    hyp_lwproc_newlwp: Some(hyp_lwproc_newlwp),
    hyp_lwproc_curlwp: None,
    hyp_syscall: None,
    hyp_lwpexit: None,
    hyp_execnotify: None,
    hyp_getpid: None,
    hyp_extra: [ptr::null_mut(); 8],
};

/// A distinct address to stand for a `struct lwp`; never freed (lwps are
/// few and the domain is short-lived).
pub fn new_lwp() -> *mut Lwp {
    Box::into_raw(Box::new(0u64)).cast()
}

/// Announces `lwp` and binds it to the calling thread.
pub fn bind_lwp(lwp: *mut Lwp) {
    // SAFETY: the lwp is only stored and compared by the hypercall layer.
    unsafe {
        c::rumpuser_curlwpop(RUMPUSER_LWP_CREATE, lwp);
        c::rumpuser_curlwpop(RUMPUSER_LWP_SET, lwp);
    }
}

/// The lwp bound to the calling thread.
pub fn curlwp() -> *mut Lwp {
    // SAFETY: no arguments.
    unsafe { c::rumpuser_curlwp() }
}

/// Sets up the CPU, calls `rumpuser_init` with `version` and makes the
/// calling (boot) thread a rump kernel thread holding the CPU, as
/// `rump_init` leaves its caller. Returns `rumpuser_init`'s result.
pub fn boot(version: c_int) -> c_int {
    let (mut lock, mut cv) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: initialisation calls with writable out-pointers.
    unsafe {
        c::rumpuser_mutex_init(&mut lock, RUMPUSER_MTX_SPIN);
        c::rumpuser_cv_init(&mut cv);
    }
    CPU_LOCK.store(lock, Ordering::Relaxed);
    CPU_CV.store(cv, Ordering::Relaxed);
    // The boot thread holds the only CPU from here on.
    CPUS_FREE.store(0, Ordering::Relaxed);
    // SAFETY: a valid upcall table; the layer copies it.
    let result = unsafe { c::rumpuser_init(version, &HYPERUP) };
    if result == 0 {
        bind_lwp(new_lwp());
    }
    result
}

/// Xen system time through the hypercall, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let (mut seconds, mut nanoseconds) = (0i64, 0 as c_long);
    // SAFETY: writable out-pointers.
    unsafe { c::rumpuser_clock_gettime(RUMPUSER_CLOCK_ABSMONO, &mut seconds, &mut nanoseconds) };
    seconds as u64 * 1_000_000_000 + nanoseconds as u64
}

type Body = Box<dyn FnOnce()>;

/// What every thread `spawn` starts runs first, as `librump`'s
/// `threadbouncer`: bind a fresh lwp, take a CPU, run, give both back,
/// exit.
unsafe extern "C" fn thread_bouncer(argument: *mut c_void) -> *mut c_void {
    // SAFETY: `spawn` passes a boxed body, taken once here.
    let body = unsafe { Box::from_raw(argument.cast::<Body>()) };
    let lwp = new_lwp();
    bind_lwp(lwp);
    take_cpu();
    body();
    release_cpu();
    // SAFETY: the lwp bound above.
    unsafe {
        c::rumpuser_curlwpop(RUMPUSER_LWP_CLEAR, lwp);
        c::rumpuser_curlwpop(RUMPUSER_LWP_DESTROY, lwp);
        c::rumpuser_thread_exit()
    }
}

/// Starts a rump kernel thread running `body` through
/// `rumpuser_thread_create`; returns its join cookie, or the error.
pub fn spawn(name: &CStr, body: impl FnOnce() + 'static) -> Result<*mut c_void, c_int> {
    let body: Box<Body> = Box::new(Box::new(body));
    let argument = Box::into_raw(body);
    let mut cookie = ptr::null_mut();
    // SAFETY: a thread function with its boxed argument, a C string name
    // and a writable cookie.
    let error = unsafe {
        c::rumpuser_thread_create(
            Some(thread_bouncer),
            argument.cast(),
            name.as_ptr(),
            1,
            0,
            -1,
            &mut cookie,
        )
    };
    if error != 0 {
        // SAFETY: the thread did not start, so the box is still ours.
        drop(unsafe { Box::from_raw(argument) });
        return Err(error);
    }
    Ok(cookie)
}

/// `rumpuser_thread_join` of a cookie from [`spawn`].
pub fn join(cookie: *mut c_void) -> c_int {
    // SAFETY: a cookie of a joinable thread, joined once.
    unsafe { c::rumpuser_thread_join(cookie) }
}
