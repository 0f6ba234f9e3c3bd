//! rumpuser(3) conformance: drives the exported C functions the way a
//! NetBSD rump kernel does, on a host of std threads that run one at a
//! time on a virtual clock (see `rumpuser_support`), and checks the upcalls
//! a fake rump kernel receives.

mod rumpuser_support;

use std::ffi::{c_int, c_long, c_void};
use std::ptr;
use std::sync::{Arc, Mutex};

use rumpuser_support::{
    c, cstring, curlwp, kernel, spawn_rump_thread, Rig, Shared, Upcall, HYPERUP,
};
use rumpuser_xen::rumpuser::abi::errno::{
    EBADF, EBUSY, EEXIST, EINVAL, ENOENT, ENXIO, ERANGE, EROFS, ETIMEDOUT,
};
use rumpuser_xen::rumpuser::abi::*;
use rumpuser_xen::rumpuser::sync::{RumpuserCv, RumpuserMtx, RumpuserRw};
use rumpuser_xen::rumpuser::{register_block_device, BlockDevice, BlockError, RegisterError};

const SECOND: u64 = 1_000_000_000;

fn mutex(flags: c_int) -> Shared<RumpuserMtx> {
    let mut mtx = ptr::null_mut();
    // SAFETY: a writable out-pointer.
    unsafe { c::rumpuser_mutex_init(&mut mtx, flags) };
    Shared(mtx)
}

fn condvar() -> Shared<RumpuserCv> {
    let mut cv = ptr::null_mut();
    // SAFETY: a writable out-pointer.
    unsafe { c::rumpuser_cv_init(&mut cv) };
    Shared(cv)
}

fn owner(mtx: Shared<RumpuserMtx>) -> *mut Lwp {
    let mut lwp = ptr::null_mut();
    // SAFETY: a live mutex, a writable out-pointer.
    unsafe { c::rumpuser_mutex_owner(mtx.get(), &mut lwp) };
    lwp
}

fn sleep_seconds(seconds: i64) {
    // SAFETY: no pointers.
    let result = unsafe { c::rumpuser_clock_sleep(RUMPUSER_CLOCK_RELWALL, seconds, 0) };
    assert_eq!(result, 0);
}

fn backend_pairs(log: &[Upcall], thread: usize) -> (usize, usize) {
    let unschedules = log
        .iter()
        .filter(|upcall| matches!(upcall, Upcall::BackendUnschedule(who, _) if *who == thread))
        .count();
    let schedules = log
        .iter()
        .filter(|upcall| matches!(upcall, Upcall::BackendSchedule(who, ..) if *who == thread))
        .count();
    (unschedules, schedules)
}

#[test]
fn init_accepts_only_version_17() {
    let rig = Rig::start(1);
    // SAFETY: a valid upcall table.
    unsafe {
        assert_eq!(c::rumpuser_init(16, &HYPERUP), EINVAL);
        assert_eq!(c::rumpuser_init(18, &HYPERUP), EINVAL);
        assert_eq!(c::rumpuser_init(17, &HYPERUP), 0);
    }
    assert!(rig.host.console_text().contains("version 16"));
}

#[test]
fn a_contended_kernel_mutex_releases_the_cpu_while_it_waits() {
    let rig = Rig::start(1);
    let m = mutex(RUMPUSER_MTX_KMUTEX);
    // SAFETY: a live mutex.
    unsafe { c::rumpuser_mutex_enter(m.get()) };
    assert_eq!(owner(m), rig.main_lwp);
    assert!(
        rig.take_log().is_empty(),
        "a free mutex is taken without touching the CPU"
    );

    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_in_thread = seen.clone();
    let cookie = spawn_rump_thread("contender", true, move || {
        // Only one CPU exists: this thread has it, and must give it up
        // while it waits, or the holder can never come back to release.
        // SAFETY: a live mutex.
        unsafe { c::rumpuser_mutex_enter(m.get()) };
        seen_in_thread
            .lock()
            .unwrap()
            .push((owner(m) as usize, curlwp() as usize));
        // SAFETY: held by this thread.
        unsafe { c::rumpuser_mutex_exit(m.get()) };
    });
    // The holder sleeps (CPU released), the contender runs and blocks, the
    // holder wakes and needs the CPU back.
    sleep_seconds(1);
    assert_eq!(owner(m), rig.main_lwp, "the contender did not get in");
    // SAFETY: held by this thread.
    unsafe { c::rumpuser_mutex_exit(m.get()) };
    assert!(owner(m).is_null());
    // SAFETY: the joinable thread's cookie.
    assert_eq!(unsafe { c::rumpuser_thread_join(cookie) }, 0);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (owner_in_thread, contender_lwp) = seen[0];
    assert_eq!(
        owner_in_thread, contender_lwp,
        "the owner is the lwp that entered"
    );
    assert_ne!(contender_lwp, rig.main_lwp as usize);
    let log = rig.take_log();
    // Contender (thread 1): one unschedule/schedule pair for the mutex.
    assert_eq!(backend_pairs(&log, 1), (1, 1), "{log:?}");
    // Main: one pair for the sleep and one for the join.
    assert_eq!(backend_pairs(&log, 0), (2, 2), "{log:?}");
    assert!(
        log.contains(&Upcall::BackendSchedule(1, 3, 0, false)),
        "nlocks comes back: {log:?}"
    );
    rig.assert_no_violations();
    // SAFETY: free and unused.
    unsafe { c::rumpuser_mutex_destroy(m.get()) };
}

/// The same contention on a spin mutex: the waiter keeps its CPU.
fn contend(flags: c_int) -> (Vec<Upcall>, Vec<usize>) {
    let rig = Rig::start(2);
    let m = mutex(flags);
    let holders_when_released = Arc::new(Mutex::new(Vec::new()));
    let record = holders_when_released.clone();
    let cookie = spawn_rump_thread("holder", true, move || {
        // SAFETY: a live mutex.
        unsafe { c::rumpuser_mutex_enter(m.get()) };
        // Hold it across a sleep so the other thread finds it taken.
        sleep_seconds(2);
        record
            .lock()
            .unwrap()
            .extend(kernel().holders.iter().copied());
        // SAFETY: held by this thread.
        unsafe { c::rumpuser_mutex_exit(m.get()) };
    });
    sleep_seconds(1);
    rig.take_log();
    // SAFETY: a live mutex.
    unsafe { c::rumpuser_mutex_enter(m.get()) };
    let log = rig.take_log();
    // SAFETY: held by this thread.
    unsafe { c::rumpuser_mutex_exit(m.get()) };
    // SAFETY: the joinable thread's cookie.
    unsafe { c::rumpuser_thread_join(cookie) };
    rig.assert_no_violations();
    let holders = holders_when_released.lock().unwrap().clone();
    (log, holders)
}

#[test]
fn a_spin_mutex_is_waited_for_holding_the_cpu() {
    let (log, holders) = contend(RUMPUSER_MTX_SPIN);
    assert_eq!(
        backend_pairs(&log, 0),
        (0, 0),
        "spin waits never unschedule: {log:?}"
    );
    assert!(
        holders.contains(&0),
        "the spinning thread kept its CPU: {holders:?}"
    );
    let (log, holders) = contend(RUMPUSER_MTX_KMUTEX);
    assert_eq!(backend_pairs(&log, 0), (1, 1), "{log:?}");
    assert!(
        !holders.contains(&0),
        "the blocked thread gave its CPU up: {holders:?}"
    );
}

#[test]
fn mutex_owner_tryenter_and_nowrap() {
    let rig = Rig::start(1);
    let kernel_mutex = mutex(RUMPUSER_MTX_KMUTEX);
    let spin = mutex(RUMPUSER_MTX_SPIN);
    // SAFETY: live mutexes.
    unsafe {
        assert_eq!(c::rumpuser_mutex_tryenter(kernel_mutex.get()), 0);
        assert_eq!(owner(kernel_mutex), rig.main_lwp);
        // Not recursive, even for the holder.
        assert_eq!(c::rumpuser_mutex_tryenter(kernel_mutex.get()), EBUSY);
        c::rumpuser_mutex_exit(kernel_mutex.get());
        assert!(owner(kernel_mutex).is_null());
        c::rumpuser_mutex_enter_nowrap(spin.get());
        // Without KMUTEX no owner is tracked.
        assert!(owner(spin).is_null());
        assert_eq!(c::rumpuser_mutex_tryenter(spin.get()), EBUSY);
        c::rumpuser_mutex_exit(spin.get());
    }
    let busy = Arc::new(Mutex::new(None));
    let busy_seen = busy.clone();
    // SAFETY: a live mutex.
    unsafe { c::rumpuser_mutex_enter(kernel_mutex.get()) };
    let cookie = spawn_rump_thread("trier", true, move || {
        // SAFETY: a live mutex.
        let result = unsafe { c::rumpuser_mutex_tryenter(kernel_mutex.get()) };
        *busy_seen.lock().unwrap() = Some((result, owner(kernel_mutex) as usize));
    });
    // SAFETY: the cookie of a joinable thread; then the held mutex.
    unsafe {
        c::rumpuser_thread_join(cookie);
        c::rumpuser_mutex_exit(kernel_mutex.get());
    }
    assert_eq!(*busy.lock().unwrap(), Some((EBUSY, rig.main_lwp as usize)));
    assert!(
        rig.take_log()
            .iter()
            .all(|upcall| !matches!(upcall, Upcall::BackendUnschedule(1, _))),
        "tryenter never blocks"
    );
    rig.assert_no_violations();
}

#[test]
fn cv_timedwait_times_out_with_the_cpu_released_and_the_interlock_back() {
    let rig = Rig::start(1);
    for flags in [RUMPUSER_MTX_KMUTEX, RUMPUSER_MTX_KMUTEX | RUMPUSER_MTX_SPIN] {
        let m = mutex(flags);
        let cv = condvar();
        // SAFETY: a live mutex.
        unsafe { c::rumpuser_mutex_enter(m.get()) };
        rig.take_log();
        let before = rig.now();
        // SAFETY: live cv and mutex, the mutex held.
        let result = unsafe { c::rumpuser_cv_timedwait(cv.get(), m.get(), 2, 500) };
        assert_eq!(result, ETIMEDOUT);
        assert_eq!(ETIMEDOUT, 60, "NetBSD's ETIMEDOUT");
        assert_eq!(rig.now() - before, 2 * SECOND + 500);
        assert_eq!(owner(m), rig.main_lwp, "the interlock is held again");
        let log = rig.take_log();
        let interlock = m.get() as usize;
        // rumpuser(3): for a SPIN|KMUTEX interlock the CPU comes back
        // before the mutex; for a plain KMUTEX the mutex comes first.
        let mutex_first = flags == RUMPUSER_MTX_KMUTEX;
        assert_eq!(
            log,
            vec![
                Upcall::BackendUnschedule(0, interlock),
                Upcall::BackendSchedule(0, 3, interlock, mutex_first),
            ]
        );
        // SAFETY: held; then unused objects.
        unsafe {
            c::rumpuser_mutex_exit(m.get());
            c::rumpuser_cv_destroy(cv.get());
            c::rumpuser_mutex_destroy(m.get());
        }
    }
    rig.assert_no_violations();
}

#[test]
fn cv_timedwait_at_the_ends_of_the_time_range() {
    let rig = Rig::start(1);
    let m = mutex(RUMPUSER_MTX_KMUTEX);
    let cv = condvar();
    let timedwait = |sec, nsec| {
        // SAFETY: live cv and mutex; the calling thread holds the mutex.
        unsafe { c::rumpuser_cv_timedwait(cv.get(), m.get(), sec, nsec) }
    };
    // SAFETY: a live mutex.
    unsafe { c::rumpuser_mutex_enter(m.get()) };
    let before = rig.now();
    // A time already over times out at once, interlock held again.
    assert_eq!(timedwait(-1, 0), ETIMEDOUT);
    assert_eq!(timedwait(0, -5), ETIMEDOUT);
    assert_eq!(timedwait(0, 0), ETIMEDOUT);
    assert_eq!(rig.now(), before);
    assert_eq!(owner(m), rig.main_lwp);
    // The longest time there is: a deadline that wrapped round into the
    // past would time out at once instead of waiting for the signal.
    let cookie = spawn_rump_thread("signaller", true, move || {
        sleep_seconds(3);
        // SAFETY: live cv and mutex.
        unsafe {
            c::rumpuser_mutex_enter(m.get());
            c::rumpuser_cv_signal(cv.get());
            c::rumpuser_mutex_exit(m.get());
        }
    });
    assert_eq!(timedwait(i64::MAX, i64::MAX), 0);
    assert_eq!(rig.now() - before, 3 * SECOND);
    assert_eq!(owner(m), rig.main_lwp);
    let mut waiters: c_int = -1;
    // SAFETY: held by this thread; a joinable cookie; a live cv.
    unsafe {
        c::rumpuser_mutex_exit(m.get());
        assert_eq!(c::rumpuser_thread_join(cookie), 0);
        c::rumpuser_cv_has_waiters(cv.get(), &mut waiters);
    }
    assert_eq!(waiters, 0);
    rig.assert_no_violations();
}

#[test]
fn another_thread_gets_the_only_cpu_while_one_sleeps() {
    let rig = Rig::start(1);
    let seen = Arc::new(Mutex::new(None));
    let seen_in_thread = seen.clone();
    let cookie = spawn_rump_thread("runner", true, move || {
        let now = rumpuser_xen::rumpuser::Host::monotonic_ns(rumpuser_support::host());
        *seen_in_thread.lock().unwrap() = Some((now, kernel().holders.clone()));
    });
    let start = rig.now();
    sleep_seconds(2);
    let (ran_at, holders) = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the thread ran while the main thread slept");
    // Had the sleeper kept its CPU, the thread would have got it only
    // when the sleep was over.
    assert_eq!(ran_at, start);
    assert_eq!(holders, vec![1], "the runner held the one CPU");
    // SAFETY: a joinable cookie.
    assert_eq!(unsafe { c::rumpuser_thread_join(cookie) }, 0);
    rig.assert_no_violations();
}

#[test]
fn cv_signal_broadcast_and_waiter_counts() {
    let rig = Rig::start(1);
    let m = mutex(RUMPUSER_MTX_KMUTEX);
    let cv = condvar();
    let woken = Arc::new(Mutex::new(Vec::new()));
    let mut cookies = Vec::new();
    for index in 0..3 {
        let woken = woken.clone();
        cookies.push(spawn_rump_thread("waiter", true, move || {
            // SAFETY: live cv and mutex.
            unsafe {
                c::rumpuser_mutex_enter(m.get());
                let result = if index == 0 {
                    c::rumpuser_cv_timedwait(cv.get(), m.get(), 100, 0)
                } else {
                    c::rumpuser_cv_wait(cv.get(), m.get());
                    0
                };
                woken.lock().unwrap().push((index, result));
                c::rumpuser_mutex_exit(m.get());
            }
        }));
    }
    sleep_seconds(1);
    let mut waiters: c_int = 0;
    // SAFETY: a live cv.
    unsafe { c::rumpuser_cv_has_waiters(cv.get(), &mut waiters) };
    assert_eq!(waiters, 3);
    let before = rig.now();
    // SAFETY: a live cv.
    unsafe { c::rumpuser_cv_signal(cv.get()) };
    sleep_seconds(1);
    // The longest waiter (the timed one) went first, well before its timeout.
    assert_eq!(*woken.lock().unwrap(), vec![(0, 0)]);
    assert!(rig.now() - before < 100 * SECOND);
    // SAFETY: a live cv.
    unsafe { c::rumpuser_cv_broadcast(cv.get()) };
    for cookie in cookies {
        // SAFETY: joinable cookies.
        unsafe { c::rumpuser_thread_join(cookie) };
    }
    let mut woken = woken.lock().unwrap().clone();
    woken.sort();
    assert_eq!(woken, vec![(0, 0), (1, 0), (2, 0)]);
    // SAFETY: a live cv.
    unsafe { c::rumpuser_cv_has_waiters(cv.get(), &mut waiters) };
    assert_eq!(waiters, 0);
    rig.assert_no_violations();
}

#[test]
fn cv_wait_nowrap_keeps_the_cpu() {
    let rig = Rig::start(2);
    let m = mutex(RUMPUSER_MTX_SPIN);
    let cv = condvar();
    let cookie = spawn_rump_thread("signaller", true, move || {
        sleep_seconds(1);
        // SAFETY: live cv and mutex.
        unsafe {
            c::rumpuser_mutex_enter_nowrap(m.get());
            c::rumpuser_cv_signal(cv.get());
            c::rumpuser_mutex_exit(m.get());
        }
    });
    rig.take_log();
    // SAFETY: live cv and mutex.
    unsafe {
        c::rumpuser_mutex_enter_nowrap(m.get());
        c::rumpuser_cv_wait_nowrap(cv.get(), m.get());
        c::rumpuser_mutex_exit(m.get());
    }
    let log = rig.take_log();
    assert_eq!(backend_pairs(&log, 0), (0, 0), "{log:?}");
    // SAFETY: a joinable cookie.
    unsafe { c::rumpuser_thread_join(cookie) };
    rig.assert_no_violations();
}

#[test]
fn clocks_and_sleeping_with_the_cpu_released() {
    let rig = Rig::start(1);
    let (mut sec, mut nsec): (i64, c_long) = (0, 0);
    // SAFETY: writable out-pointers.
    unsafe {
        assert_eq!(
            c::rumpuser_clock_gettime(RUMPUSER_CLOCK_ABSMONO, &mut sec, &mut nsec),
            0
        );
        assert_eq!(sec as u64 * SECOND + nsec as u64, rig.now());
        assert_eq!(
            c::rumpuser_clock_gettime(RUMPUSER_CLOCK_RELWALL, &mut sec, &mut nsec),
            0
        );
        assert_eq!(
            sec as u64 * SECOND + nsec as u64,
            rumpuser_support::WALL_BASE_NS + rig.now()
        );
        assert_eq!(c::rumpuser_clock_gettime(7, &mut sec, &mut nsec), EINVAL);
        assert_eq!(c::rumpuser_clock_sleep(7, 1, 0), EINVAL);
    }
    rig.take_log();
    let start = rig.now();
    sleep_seconds(3);
    assert_eq!(rig.now() - start, 3 * SECOND);
    let target = rig.now() + SECOND / 2;
    let (seconds, nanoseconds) = ((target / SECOND) as i64, (target % SECOND) as c_long);
    // SAFETY: no pointers.
    let result = unsafe { c::rumpuser_clock_sleep(RUMPUSER_CLOCK_ABSMONO, seconds, nanoseconds) };
    assert_eq!(result, 0);
    assert_eq!(rig.now(), target);
    // An absolute time already past returns at once.
    // SAFETY: no pointers.
    let result = unsafe { c::rumpuser_clock_sleep(RUMPUSER_CLOCK_ABSMONO, 0, 0) };
    assert_eq!(result, 0);
    assert_eq!(rig.now(), target);
    assert_eq!(
        rig.take_log(),
        vec![
            Upcall::BackendUnschedule(0, 0),
            Upcall::BackendSchedule(0, 3, 0, false),
            Upcall::BackendUnschedule(0, 0),
            Upcall::BackendSchedule(0, 3, 0, false),
            Upcall::BackendUnschedule(0, 0),
            Upcall::BackendSchedule(0, 3, 0, false),
        ]
    );
    rig.assert_no_violations();
}

#[test]
fn lwp_handover_between_threads() {
    let rig = Rig::start(1);
    assert_eq!(curlwp(), rig.main_lwp);
    let handed = Arc::new(Mutex::new(None));
    let handed_out = handed.clone();
    let cookie = spawn_rump_thread("lender", true, move || {
        let own = curlwp();
        assert!(!own.is_null());
        let lent = rumpuser_support::new_lwp();
        // SAFETY: fake lwps; clear the own one, bind the lent one, then
        // give it up for the main thread to take.
        unsafe {
            c::rumpuser_curlwpop(RUMPUSER_LWP_CLEAR, own);
            c::rumpuser_curlwpop(RUMPUSER_LWP_SET, lent);
            assert_eq!(c::rumpuser_curlwp(), lent);
            c::rumpuser_curlwpop(RUMPUSER_LWP_CLEAR, lent);
            assert!(c::rumpuser_curlwp().is_null());
            c::rumpuser_curlwpop(RUMPUSER_LWP_SET, own);
        }
        *handed_out.lock().unwrap() = Some(Shared(lent));
    });
    // SAFETY: a joinable cookie.
    unsafe { c::rumpuser_thread_join(cookie) };
    let lent = handed.lock().unwrap().expect("the thread ran").get();
    // The main thread's binding was not disturbed; now it takes the lwp.
    assert_eq!(curlwp(), rig.main_lwp);
    // SAFETY: fake lwps.
    unsafe {
        c::rumpuser_curlwpop(RUMPUSER_LWP_CLEAR, rig.main_lwp);
        c::rumpuser_curlwpop(RUMPUSER_LWP_SET, lent);
    }
    assert_eq!(curlwp(), lent);
    // errno is per thread.
    // SAFETY: no pointers.
    unsafe { c::rumpuser_seterrno(EBUSY) };
    assert_eq!(rumpuser_xen::rumpuser::thread_errno(), EBUSY);
    rig.assert_no_violations();
}

#[test]
fn join_waits_for_exit_with_the_cpu_released() {
    let rig = Rig::start(1);
    let cookie = spawn_rump_thread("sleeper", true, || sleep_seconds(5));
    let start = rig.now();
    rig.take_log();
    // SAFETY: a joinable cookie.
    assert_eq!(unsafe { c::rumpuser_thread_join(cookie) }, 0);
    assert_eq!(
        rig.now() - start,
        5 * SECOND,
        "join returned when the thread exited"
    );
    let log = rig.take_log();
    assert_eq!(backend_pairs(&log, 0), (1, 1), "{log:?}");
    // A detached thread runs too.
    let ran = Arc::new(Mutex::new(false));
    let ran_in_thread = ran.clone();
    spawn_rump_thread("detached", false, move || {
        *ran_in_thread.lock().unwrap() = true
    });
    sleep_seconds(1);
    assert!(*ran.lock().unwrap());
    rig.assert_no_violations();
}

#[test]
fn rwlocks_share_readers_and_exclude_writers() {
    let rig = Rig::start(1);
    let mut raw = ptr::null_mut();
    // SAFETY: a writable out-pointer.
    unsafe { c::rumpuser_rw_init(&mut raw) };
    let rw: Shared<RumpuserRw> = Shared(raw);
    let held = |lock_type| {
        let mut value = -1;
        // SAFETY: a live lock, a writable out-pointer.
        unsafe { c::rumpuser_rw_held(lock_type, rw.get(), &mut value) };
        value
    };
    // SAFETY: a live lock throughout.
    unsafe {
        c::rumpuser_rw_enter(RUMPUSER_RW_READER, rw.get());
        assert_eq!(c::rumpuser_rw_tryenter(RUMPUSER_RW_READER, rw.get()), 0);
        assert_eq!(c::rumpuser_rw_tryenter(RUMPUSER_RW_WRITER, rw.get()), EBUSY);
        assert_eq!(held(RUMPUSER_RW_READER), 1);
        assert_eq!(held(RUMPUSER_RW_WRITER), 0);
        // Two readers: no upgrade.
        assert_eq!(c::rumpuser_rw_tryupgrade(rw.get()), EBUSY);
        c::rumpuser_rw_exit(rw.get());
        assert_eq!(c::rumpuser_rw_tryupgrade(rw.get()), 0);
        assert_eq!(held(RUMPUSER_RW_WRITER), 1);
        assert_eq!(held(RUMPUSER_RW_READER), 0);
        // The write hold belongs to the lwp, not the host thread: with
        // another lwp bound, this thread does not hold it.
        let other = rumpuser_support::new_lwp();
        c::rumpuser_curlwpop(RUMPUSER_LWP_CLEAR, rig.main_lwp);
        c::rumpuser_curlwpop(RUMPUSER_LWP_SET, other);
        assert_eq!(held(RUMPUSER_RW_WRITER), 0);
        c::rumpuser_curlwpop(RUMPUSER_LWP_CLEAR, other);
        c::rumpuser_curlwpop(RUMPUSER_LWP_SET, rig.main_lwp);
        assert_eq!(held(RUMPUSER_RW_WRITER), 1);
        assert_eq!(c::rumpuser_rw_tryenter(RUMPUSER_RW_READER, rw.get()), EBUSY);
        assert_eq!(c::rumpuser_rw_tryenter(9, rw.get()), EINVAL);
    }
    assert!(rig.take_log().is_empty());
    // A reader blocked by our write hold gets in once we downgrade, and
    // gave the CPU up meanwhile.
    let got_in = Arc::new(Mutex::new(None));
    let got_in_thread = got_in.clone();
    let cookie = spawn_rump_thread("reader", true, move || {
        // SAFETY: a live lock.
        unsafe { c::rumpuser_rw_enter(RUMPUSER_RW_READER, rw.get()) };
        *got_in_thread.lock().unwrap() = Some(kernel().holders.clone());
        // SAFETY: held as reader.
        unsafe { c::rumpuser_rw_exit(rw.get()) };
    });
    sleep_seconds(1);
    assert!(
        got_in.lock().unwrap().is_none(),
        "a reader got past a writer"
    );
    // SAFETY: write-held by this thread.
    unsafe { c::rumpuser_rw_downgrade(rw.get()) };
    assert_eq!(held(RUMPUSER_RW_WRITER), 0);
    assert_eq!(held(RUMPUSER_RW_READER), 1);
    // SAFETY: a joinable cookie; then the read hold.
    unsafe {
        c::rumpuser_thread_join(cookie);
        c::rumpuser_rw_exit(rw.get());
    }
    assert!(got_in.lock().unwrap().is_some());
    let log = rig.take_log();
    assert_eq!(
        backend_pairs(&log, 1),
        (1, 1),
        "the blocked reader released its CPU: {log:?}"
    );
    // A waiting writer keeps new readers out.
    // SAFETY: a live lock.
    unsafe { c::rumpuser_rw_enter(RUMPUSER_RW_READER, rw.get()) };
    let writer = spawn_rump_thread("writer", true, move || {
        // SAFETY: a live lock.
        unsafe {
            c::rumpuser_rw_enter(RUMPUSER_RW_WRITER, rw.get());
            c::rumpuser_rw_exit(rw.get());
        }
    });
    sleep_seconds(1);
    // SAFETY: a live lock.
    unsafe {
        assert_eq!(c::rumpuser_rw_tryenter(RUMPUSER_RW_READER, rw.get()), EBUSY);
        c::rumpuser_rw_exit(rw.get());
        c::rumpuser_thread_join(writer);
        c::rumpuser_rw_destroy(rw.get());
    }
    rig.assert_no_violations();
}

/// A RAM disk that counts flushes.
struct RamDisk {
    bytes: Mutex<Vec<u8>>,
    read_only: bool,
    flushes: Arc<Mutex<usize>>,
}

impl BlockDevice for RamDisk {
    fn size(&self) -> u64 {
        self.bytes.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&self, offset: u64, buffer: &mut [u8]) -> Result<(), BlockError> {
        let bytes = self.bytes.lock().unwrap();
        buffer.copy_from_slice(&bytes[offset as usize..offset as usize + buffer.len()]);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        self.bytes.lock().unwrap()[offset as usize..offset as usize + data.len()]
            .copy_from_slice(data);
        Ok(())
    }
    fn flush(&self) -> Result<(), BlockError> {
        *self.flushes.lock().unwrap() += 1;
        Ok(())
    }
}

/// What a biodone call reported, and what the calling thread had.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Completion {
    tag: usize,
    bytes: usize,
    error: c_int,
    had_cpu: bool,
    had_lwp: bool,
}

static COMPLETIONS: Mutex<Vec<Completion>> = Mutex::new(Vec::new());

unsafe extern "C" fn biodone(argument: *mut c_void, bytes: usize, error: c_int) {
    let me = rumpuser_support::host_thread();
    let had_cpu = kernel().holders.contains(&me);
    COMPLETIONS.lock().unwrap().push(Completion {
        tag: argument as usize,
        bytes,
        error,
        had_cpu,
        had_lwp: !curlwp().is_null(),
    });
}

fn bio(fd: c_int, op: c_int, buffer: &mut [u8], offset: i64, tag: usize) {
    // SAFETY: the buffer outlives the request (the tests wait for it).
    unsafe {
        c::rumpuser_bio(
            fd,
            op,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            offset,
            Some(biodone),
            tag as *mut c_void,
        )
    };
}

/// Waits (CPU released) until `count` completions arrived.
fn wait_for_completions(count: usize) -> Vec<Completion> {
    for _ in 0..100 {
        if COMPLETIONS.lock().unwrap().len() >= count {
            break;
        }
        sleep_seconds(1);
    }
    std::mem::take(&mut *COMPLETIONS.lock().unwrap())
}

#[test]
fn block_io_through_the_registry_completes_by_callback() {
    let rig = Rig::start(1);
    COMPLETIONS.lock().unwrap().clear();
    let flushes = Arc::new(Mutex::new(0));
    let disk = RamDisk {
        bytes: Mutex::new(vec![0; 1 << 20]),
        read_only: false,
        flushes: flushes.clone(),
    };
    register_block_device("disk0", Box::new(disk)).unwrap();
    assert_eq!(
        register_block_device(
            "disk0",
            Box::new(RamDisk {
                bytes: Mutex::new(vec![]),
                read_only: true,
                flushes: flushes.clone()
            })
        ),
        Err(RegisterError::NameTaken)
    );
    register_block_device(
        "cdrom",
        Box::new(RamDisk {
            bytes: Mutex::new(vec![7; 4096]),
            read_only: true,
            flushes: flushes.clone(),
        }),
    )
    .unwrap();

    let name = cstring("disk0");
    let (mut size, mut file_type) = (0u64, -1);
    let mut fd: c_int = -1;
    // SAFETY: C strings and writable out-pointers.
    unsafe {
        assert_eq!(
            c::rumpuser_getfileinfo(name.as_ptr(), &mut size, &mut file_type),
            0
        );
        assert_eq!((size, file_type), (1 << 20, RUMPUSER_FT_BLK));
        assert_eq!(
            c::rumpuser_getfileinfo(cstring("nothing").as_ptr(), &mut size, &mut file_type),
            ENOENT
        );
        assert_eq!(
            c::rumpuser_open(cstring("nothing").as_ptr(), RUMPUSER_OPEN_RDWR, &mut fd),
            ENOENT
        );
        assert_eq!(
            c::rumpuser_open(cstring("cdrom").as_ptr(), RUMPUSER_OPEN_RDWR, &mut fd),
            EROFS
        );
        assert_eq!(
            c::rumpuser_open(
                name.as_ptr(),
                RUMPUSER_OPEN_RDWR | RUMPUSER_OPEN_CREATE | RUMPUSER_OPEN_EXCL,
                &mut fd
            ),
            EEXIST
        );
        assert_eq!(
            c::rumpuser_open(
                name.as_ptr(),
                RUMPUSER_OPEN_RDWR | RUMPUSER_OPEN_BIO,
                &mut fd
            ),
            0
        );
    }
    rig.take_log();

    let mut written = vec![0u8; 4096];
    for (index, byte) in written.iter_mut().enumerate() {
        *byte = (index * 7 % 251) as u8;
    }
    let mut read_back = vec![0u8; 4096];
    let mut beyond = vec![0u8; 512];
    bio(
        fd,
        RUMPUSER_BIO_WRITE | RUMPUSER_BIO_SYNC,
        &mut written,
        8192,
        1,
    );
    bio(fd, RUMPUSER_BIO_READ, &mut read_back, 8192, 2);
    bio(fd, RUMPUSER_BIO_READ, &mut beyond, 1 << 20, 3);
    bio(fd + 40, RUMPUSER_BIO_READ, &mut beyond, 0, 4);
    // Nothing completes inside rumpuser_bio: the I/O thread has not run.
    assert!(COMPLETIONS.lock().unwrap().is_empty());
    let completions = wait_for_completions(4);
    let done = |tag, bytes, error| Completion {
        tag,
        bytes,
        error,
        had_cpu: true,
        had_lwp: true,
    };
    assert_eq!(
        completions,
        vec![
            done(1, 4096, 0),
            done(2, 4096, 0),
            done(3, 0, ENXIO),
            done(4, 0, EBADF)
        ]
    );
    assert_eq!(read_back, written);
    assert_eq!(*flushes.lock().unwrap(), 1, "BIO_SYNC flushed");
    let log = rig.take_log();
    // The I/O thread made itself an lwp, and called each biodone with a CPU.
    assert!(
        log.iter().any(|upcall| matches!(upcall, Upcall::NewLwp(_))),
        "{log:?}"
    );

    // Scatter-gather I/O at the descriptor's own offset.
    let mut first = [1u8; 100];
    let mut second = [2u8; 28];
    let vectors = [
        RumpuserIovec {
            iov_base: first.as_mut_ptr().cast(),
            iov_len: first.len(),
        },
        RumpuserIovec {
            iov_base: second.as_mut_ptr().cast(),
            iov_len: second.len(),
        },
    ];
    let mut moved = 0usize;
    // SAFETY: valid vectors and out-pointers.
    unsafe {
        assert_eq!(
            c::rumpuser_iovwrite(fd, vectors.as_ptr(), 2, RUMPUSER_IOV_NOSEEK, &mut moved),
            0
        );
        assert_eq!(moved, 128);
        assert_eq!(
            c::rumpuser_iovwrite(fd, vectors.as_ptr(), 1, RUMPUSER_IOV_NOSEEK, &mut moved),
            0
        );
    }
    let mut back = [0u8; 228];
    let mut vector = [RumpuserIovec {
        iov_base: back.as_mut_ptr().cast(),
        iov_len: back.len(),
    }];
    // SAFETY: a valid vector and out-pointer.
    unsafe {
        assert_eq!(
            c::rumpuser_iovread(fd, vector.as_mut_ptr(), 1, 0, &mut moved),
            0
        )
    };
    assert_eq!(moved, 228);
    assert_eq!(&back[..100], &[1; 100]);
    assert_eq!(&back[100..128], &[2; 28]);
    assert_eq!(&back[128..], &[1; 100]);
    // A read running past the end is short.
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            c::rumpuser_iovread(fd, vector.as_mut_ptr(), 1, (1 << 20) - 28, &mut moved),
            0
        )
    };
    assert_eq!(moved, 28);
    let log = rig.take_log();
    assert_eq!(
        backend_pairs(&log, 0),
        (4, 4),
        "iov calls release the CPU: {log:?}"
    );

    // syncfd waits for queued requests, then flushes.
    bio(fd, RUMPUSER_BIO_WRITE, &mut written, 0, 5);
    // SAFETY: no pointers.
    unsafe {
        assert_eq!(
            c::rumpuser_syncfd(fd, RUMPUSER_SYNCFD_WRITE | RUMPUSER_SYNCFD_SYNC, 0, 0),
            0
        );
        assert_eq!(c::rumpuser_syncfd(fd, 0, 0, 0), EINVAL);
        assert_eq!(
            c::rumpuser_syncfd(fd + 40, RUMPUSER_SYNCFD_WRITE, 0, 0),
            EBADF
        );
    }
    assert_eq!(
        COMPLETIONS.lock().unwrap().len(),
        1,
        "the queued write completed before syncfd returned"
    );
    assert_eq!(*flushes.lock().unwrap(), 2);
    COMPLETIONS.lock().unwrap().clear();

    // Empty transfers may come with null buffers; nothing is touched.
    let empty = [RumpuserIovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }];
    moved = 99;
    // SAFETY: a null buffer of length 0; a descriptor of an empty buffer;
    // a writable out-pointer.
    unsafe {
        c::rumpuser_bio(
            fd,
            RUMPUSER_BIO_READ,
            ptr::null_mut(),
            0,
            0,
            Some(biodone),
            6 as *mut c_void,
        );
        assert_eq!(
            c::rumpuser_iovwrite(fd, empty.as_ptr(), 1, 0, &mut moved),
            0
        );
    }
    assert_eq!(moved, 0);
    assert_eq!(wait_for_completions(1), vec![done(6, 0, 0)]);
    // SAFETY: open descriptors.
    unsafe {
        assert_eq!(c::rumpuser_close(fd), 0);
        assert_eq!(c::rumpuser_close(fd), EBADF);
    }
    rig.assert_no_violations();
}

#[test]
fn memory_allocations_are_aligned_and_zeroed_where_promised() {
    let _rig = Rig::start(1);
    for alignment in [0, 8, 64, 4096, 65536] {
        let mut pointer = ptr::null_mut();
        // SAFETY: a writable out-pointer; the allocation is used and freed.
        unsafe {
            assert_eq!(c::rumpuser_malloc(1000, alignment, &mut pointer), 0);
            assert_eq!(pointer as usize % (alignment.max(1) as usize), 0);
            ptr::write_bytes(pointer.cast::<u8>(), 0xa5, 1000);
            c::rumpuser_free(pointer, 1000);
        }
    }
    let mut pointer = ptr::null_mut();
    // SAFETY: as above.
    unsafe {
        assert_eq!(c::rumpuser_malloc(10, 3, &mut pointer), EINVAL);
        assert_eq!(c::rumpuser_malloc(10, -4096, &mut pointer), EINVAL);
        assert_eq!(
            c::rumpuser_anonmmap(ptr::null_mut(), 3 * 4096, 13, 0, &mut pointer),
            0
        );
        assert_eq!(pointer as usize % 8192, 0);
        let bytes = std::slice::from_raw_parts(pointer.cast::<u8>(), 3 * 4096);
        assert!(bytes.iter().all(|&byte| byte == 0));
        c::rumpuser_unmap(pointer, 3 * 4096);
    }
}

fn getparam(name: &str, length: usize) -> Result<String, c_int> {
    let mut buffer = vec![0xffu8; length];
    let name = cstring(name);
    // SAFETY: a C string and a buffer of `length` bytes.
    let error = unsafe { c::rumpuser_getparam(name.as_ptr(), buffer.as_mut_ptr().cast(), length) };
    if error != 0 {
        return Err(error);
    }
    let end = buffer
        .iter()
        .position(|&byte| byte == 0)
        .expect("NUL-terminated");
    Ok(String::from_utf8(buffer[..end].to_vec()).unwrap())
}

#[test]
fn parameters() {
    let rig = Rig::start(1);
    assert_eq!(getparam(RUMPUSER_PARAM_NCPU, 16), Ok("1".into()));
    assert_eq!(
        getparam(RUMPUSER_PARAM_HOSTNAME, 64),
        Ok("rumpuser-test".into())
    );
    assert_eq!(getparam(RUMPUSER_PARAM_HOSTNAME, 5), Err(ERANGE));
    assert_eq!(getparam(RUMP_MEMLIMIT, 32), Ok((64u64 << 20).to_string()));
    rig.host.set_parameter(RUMP_MEMLIMIT, "1048576");
    rig.host.set_parameter("RUMP_VERBOSE", "1");
    assert_eq!(getparam(RUMP_MEMLIMIT, 32), Ok("1048576".into()));
    assert_eq!(getparam("RUMP_VERBOSE", 32), Ok("1".into()));
    assert_eq!(getparam("RUMP_THREADS", 32), Err(ENOENT));
    assert_eq!(getparam("_RUMPUSER_SOMETHING_NEW", 32), Err(EINVAL));
}

#[test]
fn console_output() {
    let rig = Rig::start(1);
    for byte in b"half a line" {
        // SAFETY: no pointers.
        unsafe { c::rumpuser_putchar(c_int::from(*byte)) };
    }
    assert_eq!(rig.host.console_text(), "", "held until the line ends");
    // SAFETY: no pointers.
    unsafe { c::rumpuser_putchar(c_int::from(b'\n')) };
    assert_eq!(rig.host.console_text(), "half a line\n");
    let format = cstring("%s=%d %u %x %ld %c %5s|%lx %d\n");
    let text = cstring("name");
    let short = cstring("ab");
    // Nine arguments: the last four travel on the stack.
    // SAFETY: the arguments match the format.
    unsafe {
        c::rumpuser_dprintf(
            format.as_ptr(),
            text.as_ptr(),
            -17 as c_int,
            4_000_000_000u32,
            0xbeef as c_int,
            -1234567890123i64,
            b'z' as c_int,
            short.as_ptr(),
            0xfeed_face_cafe_u64,
            99 as c_int,
        )
    };
    assert_eq!(
        rig.host.console_text(),
        "half a line\nname=-17 4000000000 beef -1234567890123 z    ab|feedfacecafe 99\n"
    );
    // SAFETY: no pointers.
    unsafe { c::rumpuser_kill(RUMPUSER_PID_SELF, 9) };
    assert!(rig.host.console_text().contains("signal 9"));
}

#[test]
fn random_bytes() {
    let _rig = Rig::start(1);
    let mut first = [0u8; 100];
    let mut second = [0u8; 100];
    let mut count = 0usize;
    // SAFETY: writable buffers and out-pointer.
    unsafe {
        assert_eq!(
            c::rumpuser_getrandom(
                first.as_mut_ptr().cast(),
                100,
                RUMPUSER_RANDOM_HARD,
                &mut count
            ),
            0
        );
        assert_eq!(count, 100);
        assert_eq!(
            c::rumpuser_getrandom(
                second.as_mut_ptr().cast(),
                100,
                RUMPUSER_RANDOM_NOWAIT,
                &mut count
            ),
            0
        );
        assert_eq!(
            c::rumpuser_getrandom(second.as_mut_ptr().cast(), 100, 0x10, &mut count),
            EINVAL
        );
    }
    // An empty request may come with a null buffer.
    // SAFETY: a null buffer of length 0; a writable out-pointer.
    let result = unsafe { c::rumpuser_getrandom(ptr::null_mut(), 0, 0, &mut count) };
    assert_eq!((result, count), (0, 0));
    assert_ne!(first, second);
    assert_ne!(first, [0; 100]);
    // Not the all-zero key's stream: the generator was seeded.
    let mut unseeded = rumpuser_xen::rumpuser::random::Generator::unseeded();
    let mut stream = [0u8; 100];
    unseeded.fill(&mut stream);
    assert_ne!(first, stream);
}

#[test]
fn daemonize_is_a_no_op() {
    let _rig = Rig::start(1);
    // SAFETY: no pointers.
    unsafe {
        assert_eq!(c::rumpuser_daemonize_begin(), 0);
        assert_eq!(c::rumpuser_daemonize_done(0), 0);
    }
}

#[test]
fn mutual_exclusion_and_no_lost_wakeups_under_many_threads() {
    let rig = Rig::start(2);
    let m = mutex(RUMPUSER_MTX_KMUTEX);
    let not_empty = condvar();
    // Shared state, only touched with `m` held: (threads inside, queue).
    let state = Arc::new(Mutex::new((
        0usize,
        Vec::<u32>::new(),
        Vec::<String>::new(),
    )));
    let mut cookies = Vec::new();
    for producer in 0..3u32 {
        let state = state.clone();
        cookies.push(spawn_rump_thread("producer", true, move || {
            for item in 0..20u32 {
                // SAFETY: live mutex and cv throughout.
                unsafe {
                    c::rumpuser_mutex_enter(m.get());
                    {
                        let mut state = state.lock().unwrap();
                        if state.0 != 0 {
                            state
                                .2
                                .push(format!("producer {producer} entered beside another"));
                        }
                        state.0 += 1;
                    }
                    // Give the CPU away inside the critical section: the
                    // mutex alone must keep the others out.
                    let pause = c_long::from((producer * 7 + item * 3) as i32 % 5) * 100_000;
                    c::rumpuser_clock_sleep(RUMPUSER_CLOCK_RELWALL, 0, pause);
                    {
                        let mut state = state.lock().unwrap();
                        state.0 -= 1;
                        state.1.push(producer * 100 + item);
                    }
                    c::rumpuser_cv_signal(not_empty.get());
                    c::rumpuser_mutex_exit(m.get());
                }
            }
        }));
    }
    let consumed = Arc::new(Mutex::new(Vec::new()));
    for consumer in 0..2 {
        let state = state.clone();
        let consumed = consumed.clone();
        cookies.push(spawn_rump_thread("consumer", true, move || {
            for _ in 0..30 {
                // SAFETY: live mutex and cv throughout.
                unsafe {
                    c::rumpuser_mutex_enter(m.get());
                    loop {
                        let item = state.lock().unwrap().1.pop();
                        if let Some(item) = item {
                            consumed.lock().unwrap().push(item);
                            break;
                        }
                        // Alternate the two kinds of wait; a lost wakeup
                        // shows as a deadlock or a timed-out wait loop
                        // that never ends.
                        if consumer == 0 {
                            c::rumpuser_cv_wait(not_empty.get(), m.get());
                        } else {
                            c::rumpuser_cv_timedwait(not_empty.get(), m.get(), 1000, 0);
                        }
                    }
                    c::rumpuser_mutex_exit(m.get());
                }
            }
        }));
    }
    let start = rig.now();
    for cookie in cookies {
        // SAFETY: joinable cookies.
        unsafe { c::rumpuser_thread_join(cookie) };
    }
    let state = state.lock().unwrap();
    assert!(state.2.is_empty(), "{:?}", state.2);
    assert!(state.1.is_empty());
    let mut consumed = consumed.lock().unwrap().clone();
    consumed.sort();
    let mut expected: Vec<u32> = (0..3)
        .flat_map(|p| (0..20).map(move |i| p * 100 + i))
        .collect();
    expected.sort();
    assert_eq!(consumed, expected);
    // Nobody needed a timed wait's timeout to make progress.
    assert!(rig.now() - start < 1000 * SECOND);
    let log = rig.take_log();
    let unschedules = log
        .iter()
        .filter(|u| matches!(u, Upcall::BackendUnschedule(..)))
        .count();
    let schedules = log
        .iter()
        .filter(|u| matches!(u, Upcall::BackendSchedule(..)))
        .count();
    assert_eq!(unschedules, schedules);
    rig.assert_no_violations();
}

#[test]
fn every_version_17_hypercall_is_exported() {
    // Each address comes from the linker resolving the C name, so a
    // missing or misspelt `#[no_mangle]` fails to link this test.
    let symbols: &[(&str, usize)] = &[
        ("rumpuser_init", c::rumpuser_init as *const () as usize),
        ("rumpuser_malloc", c::rumpuser_malloc as *const () as usize),
        ("rumpuser_free", c::rumpuser_free as *const () as usize),
        (
            "rumpuser_anonmmap",
            c::rumpuser_anonmmap as *const () as usize,
        ),
        ("rumpuser_unmap", c::rumpuser_unmap as *const () as usize),
        ("rumpuser_open", c::rumpuser_open as *const () as usize),
        ("rumpuser_close", c::rumpuser_close as *const () as usize),
        (
            "rumpuser_getfileinfo",
            c::rumpuser_getfileinfo as *const () as usize,
        ),
        ("rumpuser_bio", c::rumpuser_bio as *const () as usize),
        (
            "rumpuser_iovread",
            c::rumpuser_iovread as *const () as usize,
        ),
        (
            "rumpuser_iovwrite",
            c::rumpuser_iovwrite as *const () as usize,
        ),
        ("rumpuser_syncfd", c::rumpuser_syncfd as *const () as usize),
        (
            "rumpuser_clock_gettime",
            c::rumpuser_clock_gettime as *const () as usize,
        ),
        (
            "rumpuser_clock_sleep",
            c::rumpuser_clock_sleep as *const () as usize,
        ),
        (
            "rumpuser_getparam",
            c::rumpuser_getparam as *const () as usize,
        ),
        (
            "rumpuser_seterrno",
            c::rumpuser_seterrno as *const () as usize,
        ),
        ("rumpuser_kill", c::rumpuser_kill as *const () as usize),
        ("rumpuser_exit", c::rumpuser_exit as *const () as usize),
        (
            "rumpuser_putchar",
            c::rumpuser_putchar as *const () as usize,
        ),
        (
            "rumpuser_dprintf",
            c::rumpuser_dprintf as *const () as usize,
        ),
        (
            "rumpuser_getrandom",
            c::rumpuser_getrandom as *const () as usize,
        ),
        (
            "rumpuser_thread_create",
            c::rumpuser_thread_create as *const () as usize,
        ),
        (
            "rumpuser_thread_exit",
            c::rumpuser_thread_exit as *const () as usize,
        ),
        (
            "rumpuser_thread_join",
            c::rumpuser_thread_join as *const () as usize,
        ),
        (
            "rumpuser_curlwpop",
            c::rumpuser_curlwpop as *const () as usize,
        ),
        ("rumpuser_curlwp", c::rumpuser_curlwp as *const () as usize),
        (
            "rumpuser_mutex_init",
            c::rumpuser_mutex_init as *const () as usize,
        ),
        (
            "rumpuser_mutex_enter",
            c::rumpuser_mutex_enter as *const () as usize,
        ),
        (
            "rumpuser_mutex_enter_nowrap",
            c::rumpuser_mutex_enter_nowrap as *const () as usize,
        ),
        (
            "rumpuser_mutex_tryenter",
            c::rumpuser_mutex_tryenter as *const () as usize,
        ),
        (
            "rumpuser_mutex_exit",
            c::rumpuser_mutex_exit as *const () as usize,
        ),
        (
            "rumpuser_mutex_destroy",
            c::rumpuser_mutex_destroy as *const () as usize,
        ),
        (
            "rumpuser_mutex_owner",
            c::rumpuser_mutex_owner as *const () as usize,
        ),
        (
            "rumpuser_rw_init",
            c::rumpuser_rw_init as *const () as usize,
        ),
        (
            "rumpuser_rw_enter",
            c::rumpuser_rw_enter as *const () as usize,
        ),
        (
            "rumpuser_rw_tryenter",
            c::rumpuser_rw_tryenter as *const () as usize,
        ),
        (
            "rumpuser_rw_tryupgrade",
            c::rumpuser_rw_tryupgrade as *const () as usize,
        ),
        (
            "rumpuser_rw_downgrade",
            c::rumpuser_rw_downgrade as *const () as usize,
        ),
        (
            "rumpuser_rw_exit",
            c::rumpuser_rw_exit as *const () as usize,
        ),
        (
            "rumpuser_rw_destroy",
            c::rumpuser_rw_destroy as *const () as usize,
        ),
        (
            "rumpuser_rw_held",
            c::rumpuser_rw_held as *const () as usize,
        ),
        (
            "rumpuser_cv_init",
            c::rumpuser_cv_init as *const () as usize,
        ),
        (
            "rumpuser_cv_destroy",
            c::rumpuser_cv_destroy as *const () as usize,
        ),
        (
            "rumpuser_cv_wait",
            c::rumpuser_cv_wait as *const () as usize,
        ),
        (
            "rumpuser_cv_wait_nowrap",
            c::rumpuser_cv_wait_nowrap as *const () as usize,
        ),
        (
            "rumpuser_cv_timedwait",
            c::rumpuser_cv_timedwait as *const () as usize,
        ),
        (
            "rumpuser_cv_signal",
            c::rumpuser_cv_signal as *const () as usize,
        ),
        (
            "rumpuser_cv_broadcast",
            c::rumpuser_cv_broadcast as *const () as usize,
        ),
        (
            "rumpuser_cv_has_waiters",
            c::rumpuser_cv_has_waiters as *const () as usize,
        ),
        (
            "rumpuser_dl_bootstrap",
            c::rumpuser_dl_bootstrap as *const () as usize,
        ),
        (
            "rumpuser_daemonize_begin",
            c::rumpuser_daemonize_begin as *const () as usize,
        ),
        (
            "rumpuser_daemonize_done",
            c::rumpuser_daemonize_done as *const () as usize,
        ),
    ];
    // The header's hypercalls, less the syscall proxy (rumpuser_sp_*).
    assert_eq!(symbols.len(), 52);
    let mut addresses: Vec<usize> = symbols.iter().map(|&(_, address)| address).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(
        addresses.len(),
        symbols.len(),
        "each symbol is its own function"
    );
    // SAFETY: the loader hook is a no-op for a static image.
    unsafe { c::rumpuser_dl_bootstrap(None, None, None) };
}

/// Ties each declaration of `rumpuser_support::c`, written from NetBSD's
/// `rumpuser.h`, to the Rust function that defines the symbol.
#[test]
fn every_definition_has_the_signature_of_rumpuser_h() {
    use rumpuser_xen::rumpuser as r;
    rumpuser_support::same_signature! {
        rumpuser_init = r::rumpuser_init, (_, _);
        rumpuser_malloc = r::rumpuser_malloc, (_, _, _);
        rumpuser_free = r::rumpuser_free, (_, _);
        rumpuser_anonmmap = r::rumpuser_anonmmap, (_, _, _, _, _);
        rumpuser_unmap = r::rumpuser_unmap, (_, _);
        rumpuser_open = r::block::rumpuser_open, (_, _, _);
        rumpuser_close = r::block::rumpuser_close, (_);
        rumpuser_getfileinfo = r::block::rumpuser_getfileinfo, (_, _, _);
        rumpuser_bio = r::block::rumpuser_bio, (_, _, _, _, _, _, _);
        rumpuser_iovread = r::block::rumpuser_iovread, (_, _, _, _, _);
        rumpuser_iovwrite = r::block::rumpuser_iovwrite, (_, _, _, _, _);
        rumpuser_syncfd = r::block::rumpuser_syncfd, (_, _, _, _);
        rumpuser_clock_gettime = r::rumpuser_clock_gettime, (_, _, _);
        rumpuser_clock_sleep = r::rumpuser_clock_sleep, (_, _, _);
        rumpuser_getparam = r::rumpuser_getparam, (_, _, _);
        rumpuser_seterrno = r::thread::rumpuser_seterrno, (_);
        rumpuser_kill = r::rumpuser_kill, (_, _);
        rumpuser_exit = r::rumpuser_exit, (_);
        rumpuser_putchar = r::rumpuser_putchar, (_);
        rumpuser_getrandom = r::random::rumpuser_getrandom, (_, _, _, _);
        rumpuser_thread_create = r::thread::rumpuser_thread_create, (_, _, _, _, _, _, _);
        rumpuser_thread_exit = r::thread::rumpuser_thread_exit, ();
        rumpuser_thread_join = r::thread::rumpuser_thread_join, (_);
        rumpuser_curlwpop = r::thread::rumpuser_curlwpop, (_, _);
        rumpuser_curlwp = r::thread::rumpuser_curlwp, ();
        rumpuser_mutex_init = r::sync::rumpuser_mutex_init, (_, _);
        rumpuser_mutex_enter = r::sync::rumpuser_mutex_enter, (_);
        rumpuser_mutex_enter_nowrap = r::sync::rumpuser_mutex_enter_nowrap, (_);
        rumpuser_mutex_tryenter = r::sync::rumpuser_mutex_tryenter, (_);
        rumpuser_mutex_exit = r::sync::rumpuser_mutex_exit, (_);
        rumpuser_mutex_destroy = r::sync::rumpuser_mutex_destroy, (_);
        rumpuser_mutex_owner = r::sync::rumpuser_mutex_owner, (_, _);
        rumpuser_rw_init = r::sync::rumpuser_rw_init, (_);
        rumpuser_rw_enter = r::sync::rumpuser_rw_enter, (_, _);
        rumpuser_rw_tryenter = r::sync::rumpuser_rw_tryenter, (_, _);
        rumpuser_rw_tryupgrade = r::sync::rumpuser_rw_tryupgrade, (_);
        rumpuser_rw_downgrade = r::sync::rumpuser_rw_downgrade, (_);
        rumpuser_rw_exit = r::sync::rumpuser_rw_exit, (_);
        rumpuser_rw_destroy = r::sync::rumpuser_rw_destroy, (_);
        rumpuser_rw_held = r::sync::rumpuser_rw_held, (_, _, _);
        rumpuser_cv_init = r::sync::rumpuser_cv_init, (_);
        rumpuser_cv_destroy = r::sync::rumpuser_cv_destroy, (_);
        rumpuser_cv_wait = r::sync::rumpuser_cv_wait, (_, _);
        rumpuser_cv_wait_nowrap = r::sync::rumpuser_cv_wait_nowrap, (_, _);
        rumpuser_cv_timedwait = r::sync::rumpuser_cv_timedwait, (_, _, _, _);
        rumpuser_cv_signal = r::sync::rumpuser_cv_signal, (_);
        rumpuser_cv_broadcast = r::sync::rumpuser_cv_broadcast, (_);
        rumpuser_cv_has_waiters = r::sync::rumpuser_cv_has_waiters, (_, _);
        rumpuser_dl_bootstrap = r::rumpuser_dl_bootstrap, (_, _, _);
        rumpuser_daemonize_begin = r::rumpuser_daemonize_begin, ();
        rumpuser_daemonize_done = r::rumpuser_daemonize_done, (_);
    }
}
