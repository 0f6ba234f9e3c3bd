//! Mutexes, rwlocks and condition variables of rumpuser(3), on the host's
//! cooperative threads.
//!
//! The rule throughout: a thread that is about to block while holding a
//! rump kernel CPU first releases it (`hyp_backend_unschedule`) and takes
//! one back (`hyp_backend_schedule`) before returning, so other rump
//! threads, including the clock interrupt, keep running. The exceptions are
//! spin mutexes and the `_nowrap` calls, which the rump kernel uses exactly
//! where it must not give the CPU away; they park without releasing it.
//! A lock that is free is taken without touching the CPU.

use alloc::boxed::Box;
use core::ffi::{c_int, c_void};
use core::ptr;

use super::abi::errno::{EBUSY, EINVAL, ETIMEDOUT};
use super::abi::{
    Lwp, RUMPUSER_MTX_KMUTEX, RUMPUSER_MTX_SPIN, RUMPUSER_RW_READER, RUMPUSER_RW_WRITER,
};
use super::host::ThreadKey;
use super::state::{
    backend_schedule, backend_unschedule, current_lwp, host, park_until_woken, Exclusive, WaitQueue,
};

/// `struct rumpuser_mtx`.
pub struct RumpuserMtx {
    flags: c_int,
    inner: Exclusive<MutexInner>,
}

struct MutexInner {
    /// The host thread holding the mutex.
    holder: Option<ThreadKey>,
    /// Its rump kernel context when it entered (tracked for KMUTEX).
    owner: *mut Lwp,
    waiters: WaitQueue,
}

impl RumpuserMtx {
    fn try_acquire(&self, me: ThreadKey) -> bool {
        let owner = if self.flags & RUMPUSER_MTX_KMUTEX != 0 {
            current_lwp()
        } else {
            ptr::null_mut()
        };
        self.inner.with(|inner| {
            if inner.holder.is_some() {
                return false;
            }
            inner.holder = Some(me);
            inner.owner = owner;
            true
        })
    }

    /// Waits for the mutex without touching the rump kernel CPU.
    fn acquire_parking(&self) {
        let host = host();
        let me = host.current();
        loop {
            if self.try_acquire(me) {
                return;
            }
            let ticket = self.inner.with(|inner| inner.waiters.push(me));
            park_until_woken(host, &self.inner, |inner| &mut inner.waiters, ticket, None);
        }
    }

    fn release(&self) {
        let host = host();
        self.inner.with(|inner| {
            assert!(
                inner.holder.is_some(),
                "rumpuser: exit of a mutex nobody holds"
            );
            inner.holder = None;
            inner.owner = ptr::null_mut();
            inner.waiters.wake_one(host);
        });
    }

    fn is_spin(&self) -> bool {
        self.flags & RUMPUSER_MTX_SPIN != 0
    }
}

/// `rumpuser_mutex_init`: a new mutex with `RUMPUSER_MTX_*` `flags`.
///
/// # Safety
///
/// `mtxp` must be valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_init(mtxp: *mut *mut RumpuserMtx, flags: c_int) {
    let mutex = Box::new(RumpuserMtx {
        flags,
        inner: Exclusive::new(MutexInner {
            holder: None,
            owner: ptr::null_mut(),
            waiters: WaitQueue::new(),
        }),
    });
    // SAFETY: the caller passes a writable pointer.
    unsafe { mtxp.write(Box::into_raw(mutex)) };
}

/// `rumpuser_mutex_enter`: a spin mutex is waited for holding the CPU; a
/// kernel mutex that is taken releases the CPU while it waits.
///
/// # Safety
///
/// `mtx` must come from `rumpuser_mutex_init` and not be destroyed.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_enter(mtx: *mut RumpuserMtx) {
    // SAFETY: the caller passes a live mutex.
    let mutex = unsafe { &*mtx };
    if mutex.is_spin() {
        mutex.acquire_parking();
        return;
    }
    if mutex.try_acquire(host().current()) {
        return;
    }
    let nlocks = backend_unschedule(ptr::null_mut());
    mutex.acquire_parking();
    backend_schedule(nlocks, ptr::null_mut());
}

/// `rumpuser_mutex_enter_nowrap`: waits, if it must, keeping the CPU.
///
/// # Safety
///
/// As for [`rumpuser_mutex_enter`].
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_enter_nowrap(mtx: *mut RumpuserMtx) {
    // SAFETY: the caller passes a live mutex.
    unsafe { &*mtx }.acquire_parking();
}

/// `rumpuser_mutex_tryenter`: 0, or `EBUSY` if the mutex is held.
///
/// # Safety
///
/// As for [`rumpuser_mutex_enter`].
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_tryenter(mtx: *mut RumpuserMtx) -> c_int {
    // SAFETY: the caller passes a live mutex.
    let mutex = unsafe { &*mtx };
    if mutex.try_acquire(host().current()) {
        0
    } else {
        EBUSY
    }
}

/// `rumpuser_mutex_exit`: releases the mutex and wakes one waiter.
///
/// # Safety
///
/// As for [`rumpuser_mutex_enter`]; the mutex must be held.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_exit(mtx: *mut RumpuserMtx) {
    // SAFETY: the caller passes a live mutex.
    unsafe { &*mtx }.release();
}

/// `rumpuser_mutex_destroy`.
///
/// # Safety
///
/// As for [`rumpuser_mutex_enter`]; nothing may use the mutex afterwards.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_destroy(mtx: *mut RumpuserMtx) {
    // SAFETY: the caller gives up a mutex made by `rumpuser_mutex_init`.
    let mutex = unsafe { Box::from_raw(mtx) };
    mutex.inner.with(|inner| {
        assert!(
            inner.holder.is_none() && inner.waiters.is_empty(),
            "rumpuser: destroying a mutex that is held or waited for"
        );
    });
}

/// `rumpuser_mutex_owner`: the rump kernel context (lwp) that entered the
/// mutex, or null if it is free. Only `RUMPUSER_MTX_KMUTEX` mutexes track
/// it; others always answer null.
///
/// # Safety
///
/// As for [`rumpuser_mutex_enter`]; `lp` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_mutex_owner(mtx: *mut RumpuserMtx, lp: *mut *mut Lwp) {
    // SAFETY: the caller passes a live mutex.
    let owner = unsafe { &*mtx }.inner.with(|inner| inner.owner);
    // SAFETY: the caller passes a writable pointer.
    unsafe { lp.write(owner) };
}

/// `struct rumpuser_rw`.
pub struct RumpuserRw {
    inner: Exclusive<RwInner>,
}

struct RwInner {
    readers: u32,
    /// The rump kernel context (lwp) holding the write lock. Ownership
    /// is the lwp's, as in the NetBSD kernel: a host thread that switches
    /// lwps does not take the lock along.
    writer: Option<*mut Lwp>,
    read_waiters: WaitQueue,
    write_waiters: WaitQueue,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RwMode {
    Reader,
    Writer,
}

fn rw_mode(lock_type: c_int) -> Option<RwMode> {
    match lock_type {
        RUMPUSER_RW_READER => Some(RwMode::Reader),
        RUMPUSER_RW_WRITER => Some(RwMode::Writer),
        _ => None,
    }
}

impl RwInner {
    /// Takes the lock if it can. Readers do not overtake waiting writers,
    /// so a stream of readers cannot starve a writer.
    fn try_take(&mut self, mode: RwMode, lwp: *mut Lwp) -> bool {
        match mode {
            RwMode::Writer if self.writer.is_none() && self.readers == 0 => {
                self.writer = Some(lwp);
                true
            }
            RwMode::Reader if self.writer.is_none() && self.write_waiters.is_empty() => {
                self.readers += 1;
                true
            }
            _ => false,
        }
    }

    /// Wakes whoever can go now: one writer if the lock is free, else all
    /// readers if no writer holds or waits.
    fn wake(&mut self) {
        let host = host();
        if self.writer.is_some() {
            return;
        }
        if !self.write_waiters.is_empty() {
            if self.readers == 0 {
                self.write_waiters.wake_one(host);
            }
        } else {
            self.read_waiters.wake_all(host);
        }
    }
}

impl RumpuserRw {
    fn acquire_parking(&self, mode: RwMode) {
        let host = host();
        let me = host.current();
        let lwp = current_lwp();
        loop {
            let ticket = self.inner.with(|inner| {
                if inner.try_take(mode, lwp) {
                    None
                } else if mode == RwMode::Writer {
                    Some(inner.write_waiters.push(me))
                } else {
                    Some(inner.read_waiters.push(me))
                }
            });
            let Some(ticket) = ticket else {
                return;
            };
            let woken = park_until_woken(
                host,
                &self.inner,
                |inner| match mode {
                    RwMode::Writer => &mut inner.write_waiters,
                    RwMode::Reader => &mut inner.read_waiters,
                },
                ticket,
                None,
            );
            debug_assert!(woken);
        }
    }
}

/// `rumpuser_rw_init`.
///
/// # Safety
///
/// `rwp` must be valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_init(rwp: *mut *mut RumpuserRw) {
    let lock = Box::new(RumpuserRw {
        inner: Exclusive::new(RwInner {
            readers: 0,
            writer: None,
            read_waiters: WaitQueue::new(),
            write_waiters: WaitQueue::new(),
        }),
    });
    // SAFETY: the caller passes a writable pointer.
    unsafe { rwp.write(Box::into_raw(lock)) };
}

/// `rumpuser_rw_enter`: takes the lock as `RUMPUSER_RW_READER` or
/// `RUMPUSER_RW_WRITER`, releasing the CPU if it has to wait.
///
/// # Safety
///
/// `rw` must come from `rumpuser_rw_init` and not be destroyed.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_enter(lock_type: c_int, rw: *mut RumpuserRw) {
    // SAFETY: the caller passes a live lock.
    let lock = unsafe { &*rw };
    let Some(mode) = rw_mode(lock_type) else {
        panic!("rumpuser: rw_enter with lock type {lock_type}");
    };
    let lwp = current_lwp();
    if lock.inner.with(|inner| inner.try_take(mode, lwp)) {
        return;
    }
    let nlocks = backend_unschedule(ptr::null_mut());
    lock.acquire_parking(mode);
    backend_schedule(nlocks, ptr::null_mut());
}

/// `rumpuser_rw_tryenter`: 0, `EBUSY`, or `EINVAL` for an unknown type.
///
/// # Safety
///
/// As for [`rumpuser_rw_enter`].
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_tryenter(lock_type: c_int, rw: *mut RumpuserRw) -> c_int {
    // SAFETY: the caller passes a live lock.
    let lock = unsafe { &*rw };
    let Some(mode) = rw_mode(lock_type) else {
        return EINVAL;
    };
    let lwp = current_lwp();
    if lock.inner.with(|inner| inner.try_take(mode, lwp)) {
        0
    } else {
        EBUSY
    }
}

/// `rumpuser_rw_tryupgrade`: turns the caller's read hold into a write
/// hold if it is the only reader; `EBUSY` otherwise.
///
/// # Safety
///
/// As for [`rumpuser_rw_enter`]; the caller must hold the lock as reader.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_tryupgrade(rw: *mut RumpuserRw) -> c_int {
    // SAFETY: the caller passes a live lock.
    let lock = unsafe { &*rw };
    let lwp = current_lwp();
    lock.inner.with(|inner| {
        if inner.writer.is_none() && inner.readers == 1 {
            inner.readers = 0;
            inner.writer = Some(lwp);
            0
        } else {
            EBUSY
        }
    })
}

/// `rumpuser_rw_downgrade`: turns the caller's write hold into a read
/// hold; no writer can get in between.
///
/// # Safety
///
/// As for [`rumpuser_rw_enter`]; the caller must hold the lock as writer.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_downgrade(rw: *mut RumpuserRw) {
    // SAFETY: the caller passes a live lock.
    let lock = unsafe { &*rw };
    let lwp = current_lwp();
    lock.inner.with(|inner| {
        assert!(
            inner.writer == Some(lwp),
            "rumpuser: downgrade of an rwlock not write-held by the caller"
        );
        inner.writer = None;
        inner.readers = 1;
        inner.wake();
    });
}

/// `rumpuser_rw_exit`: releases a read or write hold.
///
/// # Safety
///
/// As for [`rumpuser_rw_enter`]; the caller must hold the lock.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_exit(rw: *mut RumpuserRw) {
    // SAFETY: the caller passes a live lock.
    let lock = unsafe { &*rw };
    lock.inner.with(|inner| {
        if inner.writer.is_some() {
            inner.writer = None;
        } else {
            assert!(
                inner.readers > 0,
                "rumpuser: exit of an rwlock nobody holds"
            );
            inner.readers -= 1;
        }
        inner.wake();
    });
}

/// `rumpuser_rw_destroy`.
///
/// # Safety
///
/// As for [`rumpuser_rw_enter`]; nothing may use the lock afterwards.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_destroy(rw: *mut RumpuserRw) {
    // SAFETY: the caller gives up a lock made by `rumpuser_rw_init`.
    let lock = unsafe { Box::from_raw(rw) };
    lock.inner.with(|inner| {
        assert!(
            inner.writer.is_none() && inner.readers == 0,
            "rumpuser: destroying a held rwlock"
        );
    });
}

/// `rumpuser_rw_held`: for `RUMPUSER_RW_WRITER`, whether the calling
/// thread's lwp holds the write lock; for `RUMPUSER_RW_READER`, whether anyone
/// holds a read lock (readers are counted, not named).
///
/// # Safety
///
/// As for [`rumpuser_rw_enter`]; `heldp` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_rw_held(
    lock_type: c_int,
    rw: *mut RumpuserRw,
    heldp: *mut c_int,
) {
    // SAFETY: the caller passes a live lock.
    let lock = unsafe { &*rw };
    let lwp = current_lwp();
    let held = lock.inner.with(|inner| match rw_mode(lock_type) {
        Some(RwMode::Writer) => inner.writer == Some(lwp),
        Some(RwMode::Reader) => inner.readers > 0,
        None => false,
    });
    // SAFETY: the caller passes a writable pointer.
    unsafe { heldp.write(c_int::from(held)) };
}

/// `struct rumpuser_cv`.
pub struct RumpuserCv {
    inner: Exclusive<CvInner>,
}

struct CvInner {
    waiters: WaitQueue,
    /// Threads between entering and leaving a wait, including those woken
    /// but not yet back (what `rumpuser_cv_has_waiters` reports).
    nwaiters: c_int,
}

/// `rumpuser_cv_init`.
///
/// # Safety
///
/// `cvp` must be valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_init(cvp: *mut *mut RumpuserCv) {
    let cv = Box::new(RumpuserCv {
        inner: Exclusive::new(CvInner {
            waiters: WaitQueue::new(),
            nwaiters: 0,
        }),
    });
    // SAFETY: the caller passes a writable pointer.
    unsafe { cvp.write(Box::into_raw(cv)) };
}

/// `rumpuser_cv_destroy`.
///
/// # Safety
///
/// `cv` must come from `rumpuser_cv_init`; nothing may use it afterwards.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_destroy(cv: *mut RumpuserCv) {
    // SAFETY: the caller gives up a cv made by `rumpuser_cv_init`.
    let cv = unsafe { Box::from_raw(cv) };
    cv.inner.with(|inner| {
        assert!(
            inner.nwaiters == 0,
            "rumpuser: destroying a cv with waiters"
        );
    });
}

/// Whether to give the CPU away while waiting.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrap {
    ReleaseCpu,
    KeepCpu,
}

/// The common part of the waits: releases `mtx` and waits on `cv`, then
/// takes `mtx` (and, if released, the CPU) back. Returns whether a signal
/// (rather than the deadline) ended the wait.
///
/// # Safety
///
/// `mtx` must come from `rumpuser_mutex_init`, not be destroyed, and be
/// held by the calling thread.
unsafe fn cv_wait(
    cv: &RumpuserCv,
    mtx: *mut RumpuserMtx,
    deadline_ns: Option<u64>,
    wrap: Wrap,
) -> bool {
    let host = host();
    let me = host.current();
    // SAFETY: a live mutex (this function's contract).
    let mutex = unsafe { &*mtx };
    cv.inner.with(|inner| inner.nwaiters += 1);
    let nlocks = match wrap {
        Wrap::ReleaseCpu => backend_unschedule(mtx.cast::<c_void>()),
        Wrap::KeepCpu => 0,
    };
    // Releasing the interlock and queueing happen with no switch in
    // between, so a signal sent once the mutex is free finds us queued.
    mutex.release();
    let ticket = cv.inner.with(|inner| inner.waiters.push(me));
    let woken = park_until_woken(
        host,
        &cv.inner,
        |inner| &mut inner.waiters,
        ticket,
        deadline_ns,
    );
    // rumpuser(3): for a mutex that is both SPIN and KMUTEX the CPU comes
    // back before the mutex, for a pure SPIN one the mutex first. For
    // KMUTEX alone the order is ours to pick: the mutex first, as NetBSD's
    // own hypervisor does.
    let both = RUMPUSER_MTX_SPIN | RUMPUSER_MTX_KMUTEX;
    match wrap {
        Wrap::ReleaseCpu if mutex.flags & both == both => {
            backend_schedule(nlocks, mtx.cast::<c_void>());
            mutex.acquire_parking();
        }
        Wrap::ReleaseCpu => {
            mutex.acquire_parking();
            backend_schedule(nlocks, mtx.cast::<c_void>());
        }
        Wrap::KeepCpu => mutex.acquire_parking(),
    }
    cv.inner.with(|inner| inner.nwaiters -= 1);
    woken
}

/// `rumpuser_cv_wait`: releases `mtx` and the CPU until signalled.
///
/// # Safety
///
/// `cv` and `mtx` must be live; the caller must hold `mtx`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_wait(cv: *mut RumpuserCv, mtx: *mut RumpuserMtx) {
    // SAFETY: the caller passes a live cv and a live mutex it holds.
    unsafe { cv_wait(&*cv, mtx, None, Wrap::ReleaseCpu) };
}

/// `rumpuser_cv_wait_nowrap`: like [`rumpuser_cv_wait`] but keeps the CPU.
///
/// # Safety
///
/// As for [`rumpuser_cv_wait`].
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_wait_nowrap(cv: *mut RumpuserCv, mtx: *mut RumpuserMtx) {
    // SAFETY: the caller passes a live cv and a live mutex it holds.
    unsafe { cv_wait(&*cv, mtx, None, Wrap::KeepCpu) };
}

/// `rumpuser_cv_timedwait`: like [`rumpuser_cv_wait`] for at most
/// `sec` seconds and `nsec` nanoseconds (relative); 0 if signalled,
/// `ETIMEDOUT` if the time ran out.
///
/// # Safety
///
/// As for [`rumpuser_cv_wait`].
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_timedwait(
    cv: *mut RumpuserCv,
    mtx: *mut RumpuserMtx,
    sec: i64,
    nsec: i64,
) -> c_int {
    // The deadline is fixed before the CPU is released: getting it back
    // may take a while, and that time counts.
    let deadline = host().monotonic_ns().saturating_add(relative_ns(sec, nsec));
    // SAFETY: the caller passes a live cv and a live mutex it holds.
    if unsafe { cv_wait(&*cv, mtx, Some(deadline), Wrap::ReleaseCpu) } {
        0
    } else {
        ETIMEDOUT
    }
}

/// A relative time as nanoseconds; negative counts as zero, too large as
/// forever (saturating).
pub(crate) fn relative_ns(sec: i64, nsec: i64) -> u64 {
    let total = i128::from(sec) * 1_000_000_000 + i128::from(nsec);
    u64::try_from(total.max(0)).unwrap_or(u64::MAX)
}

/// `rumpuser_cv_signal`: wakes the longest waiter, if any.
///
/// # Safety
///
/// `cv` must be live.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_signal(cv: *mut RumpuserCv) {
    let host = host();
    // SAFETY: the caller passes a live cv.
    unsafe { &*cv }
        .inner
        .with(|inner| inner.waiters.wake_one(host));
}

/// `rumpuser_cv_broadcast`: wakes every waiter.
///
/// # Safety
///
/// `cv` must be live.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_broadcast(cv: *mut RumpuserCv) {
    let host = host();
    // SAFETY: the caller passes a live cv.
    unsafe { &*cv }
        .inner
        .with(|inner| inner.waiters.wake_all(host));
}

/// `rumpuser_cv_has_waiters`: the number of threads inside a wait on `cv`.
///
/// # Safety
///
/// `cv` must be live; `waitersp` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_cv_has_waiters(cv: *mut RumpuserCv, waitersp: *mut c_int) {
    // SAFETY: the caller passes a live cv.
    let count = unsafe { &*cv }.inner.with(|inner| inner.nwaiters);
    // SAFETY: the caller passes a writable pointer.
    unsafe { waitersp.write(count) };
}

#[cfg(test)]
mod tests {
    use super::relative_ns;

    #[test]
    fn relative_times_saturate() {
        assert_eq!(relative_ns(1, 500), 1_000_000_500);
        assert_eq!(relative_ns(-1, 0), 0);
        assert_eq!(relative_ns(0, -5), 0);
        assert_eq!(relative_ns(i64::MAX, i64::MAX), u64::MAX);
    }
}
