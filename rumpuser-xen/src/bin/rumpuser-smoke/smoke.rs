//! The checks, run in order on the boot thread, which holds the rump
//! kernel's one CPU between hypercalls.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::ffi::{c_int, c_long, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use rumpuser_xen::pv::{console, mm, sched};
use rumpuser_xen::rumpuser::abi::errno::{EBADF, EBUSY, EINVAL, ENOENT, ENXIO, ERANGE, ETIMEDOUT};
use rumpuser_xen::rumpuser::abi::{
    Lwp, RumpuserIovec, RUMPUSER_BIO_READ, RUMPUSER_BIO_SYNC, RUMPUSER_BIO_WRITE,
    RUMPUSER_CLOCK_ABSMONO, RUMPUSER_CLOCK_RELWALL, RUMPUSER_FT_BLK, RUMPUSER_LWP_CLEAR,
    RUMPUSER_LWP_SET, RUMPUSER_MTX_KMUTEX, RUMPUSER_MTX_SPIN, RUMPUSER_OPEN_BIO,
    RUMPUSER_OPEN_RDWR, RUMPUSER_RW_READER, RUMPUSER_RW_WRITER, RUMPUSER_SYNCFD_WRITE,
};
use rumpuser_xen::rumpuser::{register_block_device, BlockDevice, BlockError};

use crate::kernel::{self, c, curlwp, join, monotonic_ns, spawn, Cv, Mtx, Rw};

const MILLISECOND: u64 = 1_000_000;

rumpuser_xen::entry!(main);

type Outcome = Result<String, String>;

/// Fails the check with `detail` unless `condition` holds.
fn ensure(condition: bool, detail: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(detail())
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn report(&mut self, name: &str, outcome: Outcome) {
        let line = match outcome {
            Ok(detail) => {
                self.passed += 1;
                format!("RUMPUSER-CHECK {name} PASS {detail}\n")
            }
            Err(detail) => {
                self.failed += 1;
                format!("RUMPUSER-CHECK {name} FAIL {detail}\n")
            }
        };
        console::write_str(&line);
    }
}

fn main(command_line: &str) -> ! {
    console::write_str("rumpuser-smoke: playing a rump kernel on the rumpuser(3) hypercalls\n");
    let expected_hostname = rumpuser_xen::cmdline::values(command_line, "expect_hostname").next();
    let mut tally = Tally::default();
    tally.report("init", check_init());
    tally.report("getparam", check_getparam(expected_hostname));
    tally.report("malloc", check_malloc());
    tally.report("clock-gettime", check_clock_gettime());
    tally.report("clock-sleep-relative", check_clock_sleep_relative());
    tally.report("clock-sleep-absolute", check_clock_sleep_absolute());
    tally.report("getrandom", check_getrandom());
    tally.report("threads", check_threads());
    tally.report("kmutex-contention", check_kmutex_contention());
    tally.report("cv-timedwait-timeout", check_cv_timedwait_timeout());
    tally.report("cv-signal", check_cv_signal());
    tally.report("rwlock", check_rwlock());
    tally.report("curlwp-handover", check_curlwp_handover());
    tally.report("block-io", check_block_io());
    tally.report("thread-exit", check_thread_exit());
    tally.report("cpu-accounting", check_cpu_accounting());
    console::write_str(&format!(
        "RUMPUSER-SMOKE {} passed, {} failed\n",
        tally.passed, tally.failed
    ));
    // SAFETY: ends the domain; nothing runs after it.
    unsafe { c::rumpuser_exit(0) }
}

fn check_init() -> Outcome {
    // SAFETY: a valid upcall table; a wrong version must be refused.
    let refused = unsafe { c::rumpuser_init(16, &kernel::HYPERUP) };
    ensure(refused == EINVAL, || {
        format!("rumpuser_init(16) gave {refused}, not EINVAL")
    })?;
    let result = kernel::boot(17);
    ensure(result == 0, || format!("rumpuser_init(17) gave {result}"))?;
    ensure(!curlwp().is_null(), || "no lwp bound after LWP_SET".into())?;
    Ok("version 16 refused, 17 accepted".into())
}

fn getparam(name: &CStr, buffer_length: usize) -> Result<String, c_int> {
    let mut buffer = alloc::vec![0u8; buffer_length];
    // SAFETY: a C string name and a buffer of `buffer_length` bytes.
    let error =
        unsafe { c::rumpuser_getparam(name.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) };
    if error != 0 {
        return Err(error);
    }
    let value = CStr::from_bytes_until_nul(&buffer).map_err(|_| -1)?;
    Ok(String::from_utf8_lossy(value.to_bytes()).into_owned())
}

fn check_getparam(expected_hostname: Option<&str>) -> Outcome {
    let ncpu = getparam(c"_RUMPUSER_NCPU", 16);
    ensure(ncpu.as_deref() == Ok("1"), || format!("NCPU {ncpu:?}"))?;
    let hostname =
        getparam(c"_RUMPUSER_HOSTNAME", 256).map_err(|error| format!("HOSTNAME: error {error}"))?;
    if let Some(expected) = expected_hostname {
        ensure(hostname == expected, || {
            format!("HOSTNAME {hostname:?}, the domain is {expected:?}")
        })?;
        // The same value through the command-line path of getparam.
        let echoed = getparam(c"expect_hostname", 256);
        ensure(echoed.as_deref() == Ok(expected), || {
            format!("expect_hostname from the command line: {echoed:?}")
        })?;
    }
    let short = getparam(c"_RUMPUSER_HOSTNAME", 1);
    ensure(short == Err(ERANGE), || {
        format!("HOSTNAME into 1 byte: {short:?}, not ERANGE")
    })?;
    let unknown = getparam(c"_RUMPUSER_NO_SUCH", 16);
    ensure(unknown == Err(EINVAL), || {
        format!("unknown mandatory name: {unknown:?}")
    })?;
    let unset = getparam(c"SMOKE_UNSET", 16);
    ensure(unset == Err(ENOENT), || format!("unset name: {unset:?}"))?;
    let limit = getparam(c"RUMP_MEMLIMIT", 32).map_err(|error| format!("MEMLIMIT: {error}"))?;
    let limit_bytes: u64 = limit
        .parse()
        .map_err(|_| format!("MEMLIMIT {limit:?} is not a number"))?;
    let free = mm::heap_free_bytes() as u64;
    ensure(limit_bytes > 0 && limit_bytes <= free, || {
        format!("MEMLIMIT {limit_bytes} with {free} bytes free")
    })?;
    Ok(format!("ncpu=1 hostname={hostname} memlimit={limit_bytes}"))
}

fn check_malloc() -> Outcome {
    let alignments: [c_int; 7] = [0, 8, 16, 64, 4096, 65536, 1 << 20];
    let mut blocks: Vec<(*mut u8, usize, u8)> = Vec::new();
    for (index, &alignment) in alignments.iter().enumerate() {
        let length = 1000 + index * 777;
        let mut memory = ptr::null_mut();
        // SAFETY: a writable out-pointer.
        let error = unsafe { c::rumpuser_malloc(length, alignment, &mut memory) };
        ensure(error == 0 && !memory.is_null(), || {
            format!("malloc({length}, {alignment}) gave {error}")
        })?;
        let address = memory as usize;
        ensure(address.is_multiple_of(alignment.max(1) as usize), || {
            format!("malloc alignment {alignment}: address {address:#x}")
        })?;
        let pattern = index as u8 + 1;
        // SAFETY: `length` bytes just allocated.
        unsafe { ptr::write_bytes(memory.cast::<u8>(), pattern, length) };
        blocks.push((memory.cast(), length, pattern));
    }
    for &(memory, length, pattern) in &blocks {
        // SAFETY: allocated above and not freed yet.
        let bytes = unsafe { core::slice::from_raw_parts(memory, length) };
        ensure(bytes.iter().all(|&byte| byte == pattern), || {
            format!("block {pattern} was overwritten: allocations overlap")
        })?;
    }
    for (memory, length, _) in blocks {
        // SAFETY: from `rumpuser_malloc` with this length, freed once.
        unsafe { c::rumpuser_free(memory.cast(), length) };
    }
    let size = 3 * 4096 + 5;
    let mut mapped = ptr::null_mut();
    // SAFETY: a writable out-pointer; 2^13 alignment.
    let error = unsafe { c::rumpuser_anonmmap(ptr::null_mut(), size, 13, 0, &mut mapped) };
    ensure(error == 0 && !mapped.is_null(), || {
        format!("anonmmap gave {error}")
    })?;
    ensure((mapped as usize).is_multiple_of(8192), || {
        format!("anonmmap 8 KiB alignment: {mapped:p}")
    })?;
    // SAFETY: `size` bytes just mapped.
    let zeroed = unsafe { core::slice::from_raw_parts(mapped.cast::<u8>(), size) }
        .iter()
        .all(|&byte| byte == 0);
    // SAFETY: from `rumpuser_anonmmap` with this size, unmapped once.
    unsafe { c::rumpuser_unmap(mapped, size) };
    ensure(zeroed, || "anonmmap memory is not zeroed".into())?;
    Ok("alignments 0..1 MiB, no overlap, anonmmap zeroed".into())
}

fn clock(clock: c_int) -> Result<(i64, c_long), String> {
    let (mut seconds, mut nanoseconds) = (0i64, 0 as c_long);
    // SAFETY: writable out-pointers.
    let error = unsafe { c::rumpuser_clock_gettime(clock, &mut seconds, &mut nanoseconds) };
    ensure(error == 0, || {
        format!("clock_gettime({clock}) gave {error}")
    })?;
    ensure((0..1_000_000_000).contains(&nanoseconds), || {
        format!("clock {clock}: nanoseconds {nanoseconds} out of range")
    })?;
    Ok((seconds, nanoseconds))
}

fn check_clock_gettime() -> Outcome {
    let (wall_seconds, _) = clock(RUMPUSER_CLOCK_RELWALL)?;
    // 2020-01-01: Xen's wall clock (wc_* of the shared info page) was read.
    ensure(wall_seconds >= 1_577_836_800, || {
        format!("wall clock {wall_seconds} s is before 2020")
    })?;
    let first = monotonic_ns();
    let second = monotonic_ns();
    ensure(second >= first && first > 0, || {
        format!("monotonic clock went from {first} to {second}")
    })?;
    // SAFETY: writable out-pointers; an unknown clock must be refused.
    let unknown = unsafe { c::rumpuser_clock_gettime(7, &mut 0, &mut 0) };
    ensure(unknown == EINVAL, || format!("clock 7 gave {unknown}"))?;
    Ok(format!("wall={wall_seconds}s monotonic={first}ns"))
}

fn check_clock_sleep_relative() -> Outcome {
    let unschedules = kernel::BACKEND_UNSCHEDULES.load(Ordering::Relaxed);
    let wall_before = clock(RUMPUSER_CLOCK_RELWALL)?;
    let before = monotonic_ns();
    // SAFETY: no pointers.
    let error = unsafe { c::rumpuser_clock_sleep(RUMPUSER_CLOCK_RELWALL, 0, 50_000_000) };
    let slept = monotonic_ns() - before;
    let wall_after = clock(RUMPUSER_CLOCK_RELWALL)?;
    ensure(error == 0, || format!("clock_sleep gave {error}"))?;
    ensure(slept >= 50 * MILLISECOND, || {
        format!("a 50 ms sleep returned after {slept} ns")
    })?;
    ensure(
        kernel::BACKEND_UNSCHEDULES.load(Ordering::Relaxed) > unschedules,
        || "the sleep kept the CPU".into(),
    )?;
    let wall_slept =
        (wall_after.0 - wall_before.0) * 1_000_000_000 + (wall_after.1 - wall_before.1);
    Ok(format!(
        "50 ms asked, {} us slept (wall clock {} us)",
        slept / 1000,
        wall_slept / 1000
    ))
}

fn check_clock_sleep_absolute() -> Outcome {
    let deadline = monotonic_ns() + 30 * MILLISECOND;
    // SAFETY: no pointers.
    let error = unsafe {
        c::rumpuser_clock_sleep(
            RUMPUSER_CLOCK_ABSMONO,
            (deadline / 1_000_000_000) as i64,
            (deadline % 1_000_000_000) as c_long,
        )
    };
    let now = monotonic_ns();
    ensure(error == 0, || format!("clock_sleep gave {error}"))?;
    ensure(now >= deadline, || {
        format!("woke {} ns before the deadline", deadline - now)
    })?;
    Ok(format!(
        "woke {} us after the deadline",
        (now - deadline) / 1000
    ))
}

fn random_bytes(length: usize, flags: c_int) -> Result<Vec<u8>, String> {
    let mut buffer = alloc::vec![0u8; length];
    let mut got = 0usize;
    // SAFETY: a buffer of `length` bytes and a writable count.
    let error =
        unsafe { c::rumpuser_getrandom(buffer.as_mut_ptr().cast(), buffer.len(), flags, &mut got) };
    ensure(error == 0 && got == length, || {
        format!("getrandom({length}, {flags}) gave {error}, {got} bytes")
    })?;
    Ok(buffer)
}

fn check_getrandom() -> Outcome {
    let first = random_bytes(64, 0)?;
    let second = random_bytes(64, 1)?;
    ensure(first != second, || {
        "two requests gave the same bytes".into()
    })?;
    ensure(first.iter().any(|&byte| byte != 0), || "all zero".into())?;
    let mut got = 0usize;
    // SAFETY: as above; unknown flags must be refused.
    let refused = unsafe { c::rumpuser_getrandom(ptr::null_mut(), 0, 0x100, &mut got) };
    ensure(refused == EINVAL, || format!("flag 0x100 gave {refused}"))?;
    Ok(format!(
        "64+64 bytes, first {:02x}{:02x}{:02x}{:02x}..",
        first[0], first[1], first[2], first[3]
    ))
}

fn check_threads() -> Outcome {
    let ran: Rc<RefCell<Vec<(usize, usize)>>> = Rc::new(RefCell::new(Vec::new()));
    let mut cookies = Vec::new();
    for index in 0..4usize {
        let ran = ran.clone();
        let cookie = spawn(c"smoke-worker", move || {
            // Sleep (CPU released) so the threads interleave.
            // SAFETY: no pointers.
            unsafe {
                c::rumpuser_clock_sleep(
                    RUMPUSER_CLOCK_RELWALL,
                    0,
                    ((4 - index) * 5_000_000) as c_long,
                )
            };
            ran.borrow_mut().push((index, curlwp() as usize));
        })
        .map_err(|error| format!("thread_create gave {error}"))?;
        cookies.push(cookie);
    }
    for cookie in cookies {
        let error = join(cookie);
        ensure(error == 0, || format!("thread_join gave {error}"))?;
    }
    let ran = ran.borrow();
    ensure(ran.len() == 4, || format!("{} of 4 threads ran", ran.len()))?;
    let mut lwps: Vec<usize> = ran.iter().map(|&(_, lwp)| lwp).collect();
    lwps.sort_unstable();
    lwps.dedup();
    ensure(
        lwps.len() == 4 && !lwps.contains(&(curlwp() as usize)),
        || "the threads did not run with lwps of their own".into(),
    )?;
    let order: Vec<usize> = ran.iter().map(|&(index, _)| index).collect();
    Ok(format!(
        "4 threads ran with their own lwps and were joined; finished in order {order:?}"
    ))
}

fn mutex(flags: c_int) -> *mut Mtx {
    let mut mtx = ptr::null_mut();
    // SAFETY: a writable out-pointer.
    unsafe { c::rumpuser_mutex_init(&mut mtx, flags) };
    mtx
}

fn owner(mtx: *mut Mtx) -> *mut Lwp {
    let mut lwp = ptr::null_mut();
    // SAFETY: a live mutex and a writable out-pointer.
    unsafe { c::rumpuser_mutex_owner(mtx, &mut lwp) };
    lwp
}

fn sleep_ms(milliseconds: u64) {
    // SAFETY: no pointers.
    unsafe {
        c::rumpuser_clock_sleep(
            RUMPUSER_CLOCK_RELWALL,
            0,
            (milliseconds * MILLISECOND) as c_long,
        )
    };
}

fn check_kmutex_contention() -> Outcome {
    let me = curlwp();
    let m = mutex(RUMPUSER_MTX_KMUTEX);
    // SAFETY: a live mutex, free.
    unsafe { c::rumpuser_mutex_enter(m) };
    ensure(owner(m) == me, || {
        "the owner is not the entering lwp".into()
    })?;
    // SAFETY: held: tryenter must fail (not recursive).
    let again = unsafe { c::rumpuser_mutex_tryenter(m) };
    ensure(again == EBUSY, || {
        format!("tryenter of a held mutex: {again}")
    })?;
    let got_in: Rc<Cell<Option<bool>>> = Rc::new(Cell::new(None));
    let seen = got_in.clone();
    // The only CPU is ours; the contender takes it while we sleep and must
    // give it up while it waits, or we never get it back to release `m`.
    let cookie = spawn(c"smoke-contender", move || {
        // SAFETY: a live mutex.
        unsafe { c::rumpuser_mutex_enter(m) };
        seen.set(Some(owner(m) == curlwp()));
        // SAFETY: entered above.
        unsafe { c::rumpuser_mutex_exit(m) };
    })
    .map_err(|error| format!("thread_create gave {error}"))?;
    sleep_ms(20);
    let blocked = got_in.get().is_none();
    let still_ours = owner(m) == me;
    // SAFETY: held by this thread.
    unsafe { c::rumpuser_mutex_exit(m) };
    let joined = join(cookie);
    // SAFETY: free and not used again.
    unsafe { c::rumpuser_mutex_destroy(m) };
    ensure(blocked && still_ours, || {
        "the contender entered a held mutex".into()
    })?;
    ensure(joined == 0, || format!("join gave {joined}"))?;
    ensure(got_in.get() == Some(true), || {
        format!("after the release the contender saw {:?}", got_in.get())
    })?;
    let spin = mutex(RUMPUSER_MTX_SPIN);
    // SAFETY: a live spin mutex: entered without the CPU wrapper, tried
    // while held, released, destroyed.
    let spin_again = unsafe {
        c::rumpuser_mutex_enter_nowrap(spin);
        let again = c::rumpuser_mutex_tryenter(spin);
        c::rumpuser_mutex_exit(spin);
        c::rumpuser_mutex_destroy(spin);
        again
    };
    ensure(spin_again == EBUSY, || {
        format!("tryenter of a held spin mutex: {spin_again}")
    })?;
    Ok("the waiter gave the one CPU up and got in after the release".into())
}

fn condvar() -> *mut Cv {
    let mut cv = ptr::null_mut();
    // SAFETY: a writable out-pointer.
    unsafe { c::rumpuser_cv_init(&mut cv) };
    cv
}

fn check_cv_timedwait_timeout() -> Outcome {
    let m = mutex(RUMPUSER_MTX_KMUTEX);
    let cv = condvar();
    let before = monotonic_ns();
    // SAFETY: a live mutex and cv; the mutex is held across the wait.
    let result = unsafe {
        c::rumpuser_mutex_enter(m);
        c::rumpuser_cv_timedwait(cv, m, 0, 30_000_000)
    };
    let waited = monotonic_ns() - before;
    let held_again = owner(m) == curlwp();
    // SAFETY: held; then both are unused.
    unsafe {
        c::rumpuser_mutex_exit(m);
        c::rumpuser_cv_destroy(cv);
        c::rumpuser_mutex_destroy(m);
    }
    ensure(result == ETIMEDOUT, || {
        format!("cv_timedwait gave {result}, not ETIMEDOUT")
    })?;
    ensure(waited >= 30 * MILLISECOND, || {
        format!("a 30 ms wait timed out after {waited} ns")
    })?;
    ensure(held_again, || {
        "the mutex was not held after the wait".into()
    })?;
    Ok(format!("ETIMEDOUT after {} us of 30 ms", waited / 1000))
}

fn check_cv_signal() -> Outcome {
    let m = mutex(RUMPUSER_MTX_KMUTEX);
    let cv = condvar();
    let flag = Rc::new(Cell::new(false));
    let results: Rc<RefCell<Vec<(&'static str, c_int)>>> = Rc::new(RefCell::new(Vec::new()));
    let (waiter_flag, waiter_results) = (flag.clone(), results.clone());
    let waiter = spawn(c"smoke-cv-wait", move || {
        // SAFETY: a live mutex and cv.
        unsafe {
            c::rumpuser_mutex_enter(m);
            while !waiter_flag.get() {
                c::rumpuser_cv_wait(cv, m);
            }
            c::rumpuser_mutex_exit(m);
        }
        waiter_results.borrow_mut().push(("wait", 0));
    })
    .map_err(|error| format!("thread_create gave {error}"))?;
    let (timed_flag, timed_results) = (flag.clone(), results.clone());
    let timed = spawn(c"smoke-cv-timed", move || {
        let mut result = 0;
        // SAFETY: a live mutex and cv; ten seconds is far beyond the test.
        unsafe {
            c::rumpuser_mutex_enter(m);
            while !timed_flag.get() && result == 0 {
                result = c::rumpuser_cv_timedwait(cv, m, 10, 0);
            }
            c::rumpuser_mutex_exit(m);
        }
        timed_results.borrow_mut().push(("timedwait", result));
    })
    .map_err(|error| format!("thread_create gave {error}"))?;
    sleep_ms(20);
    let mut waiters = 0;
    // SAFETY: a live cv and a writable count.
    unsafe { c::rumpuser_cv_has_waiters(cv, &mut waiters) };
    let woken_early = results.borrow().len();
    let before = monotonic_ns();
    // SAFETY: a live mutex and cv.
    unsafe {
        c::rumpuser_mutex_enter(m);
        flag.set(true);
        c::rumpuser_cv_signal(cv);
        c::rumpuser_cv_signal(cv);
        c::rumpuser_mutex_exit(m);
    }
    let joined = (join(waiter), join(timed));
    let took = monotonic_ns() - before;
    let mut waiters_after = 0;
    // SAFETY: as above; then both are unused.
    unsafe {
        c::rumpuser_cv_has_waiters(cv, &mut waiters_after);
        c::rumpuser_cv_destroy(cv);
        c::rumpuser_mutex_destroy(m);
    }
    ensure(woken_early == 0 && waiters != 0, || {
        format!("before the signal: {woken_early} done, has_waiters {waiters}")
    })?;
    ensure(joined == (0, 0), || format!("joins gave {joined:?}"))?;
    let results = results.borrow();
    ensure(
        results.len() == 2 && results.iter().all(|&(_, result)| result == 0),
        || format!("waiters returned {results:?}"),
    )?;
    ensure(waiters_after == 0, || {
        "has_waiters after the wake-up".into()
    })?;
    Ok(format!(
        "cv_wait and cv_timedwait(10 s) woken by cv_signal, both back in {} us",
        took / 1000
    ))
}

fn held(lock_type: c_int, rw: *mut Rw) -> c_int {
    let mut held = 0;
    // SAFETY: a live rwlock and a writable flag.
    unsafe { c::rumpuser_rw_held(lock_type, rw, &mut held) };
    held
}

fn check_rwlock() -> Outcome {
    let mut rw = ptr::null_mut();
    // SAFETY: a writable out-pointer.
    unsafe { c::rumpuser_rw_init(&mut rw) };
    // SAFETY: a live rwlock.
    let read = unsafe { c::rumpuser_rw_tryenter(RUMPUSER_RW_READER, rw) };
    ensure(read == 0 && held(RUMPUSER_RW_READER, rw) != 0, || {
        format!("tryenter(READER) of a free lock gave {read}")
    })?;
    let shared: Rc<Cell<c_int>> = Rc::new(Cell::new(-1));
    let shared_seen = shared.clone();
    let reader = spawn(c"smoke-reader", move || {
        // SAFETY: a live rwlock.
        let result = unsafe { c::rumpuser_rw_tryenter(RUMPUSER_RW_READER, rw) };
        if result == 0 {
            // SAFETY: entered above.
            unsafe { c::rumpuser_rw_exit(rw) };
        }
        shared_seen.set(result);
    })
    .map_err(|error| format!("thread_create gave {error}"))?;
    let reader_joined = join(reader);
    ensure(reader_joined == 0 && shared.get() == 0, || {
        format!(
            "a second reader got {} (join {reader_joined})",
            shared.get()
        )
    })?;
    // SAFETY: a live rwlock, read-held by us.
    let write = unsafe { c::rumpuser_rw_tryenter(RUMPUSER_RW_WRITER, rw) };
    ensure(write == EBUSY, || {
        format!("tryenter(WRITER) while read-held: {write}")
    })?;
    let writer_state: Rc<Cell<Option<c_int>>> = Rc::new(Cell::new(None));
    let writer_seen = writer_state.clone();
    let writer = spawn(c"smoke-writer", move || {
        // SAFETY: a live rwlock; blocks (CPU released) while read-held.
        unsafe { c::rumpuser_rw_enter(RUMPUSER_RW_WRITER, rw) };
        writer_seen.set(Some(held(RUMPUSER_RW_WRITER, rw)));
        // SAFETY: entered above.
        unsafe { c::rumpuser_rw_exit(rw) };
    })
    .map_err(|error| format!("thread_create gave {error}"))?;
    sleep_ms(20);
    let writer_waited = writer_state.get().is_none();
    // SAFETY: read-held by us.
    unsafe { c::rumpuser_rw_exit(rw) };
    let writer_joined = join(writer);
    ensure(writer_waited, || {
        "the writer entered a read-held lock".into()
    })?;
    ensure(writer_joined == 0 && writer_state.get() == Some(1), || {
        format!("the writer saw {:?}", writer_state.get())
    })?;
    // SAFETY: a live, free rwlock: write, downgrade, upgrade, release.
    let (after_downgrade, upgrade, after_upgrade) = unsafe {
        let entered = c::rumpuser_rw_tryenter(RUMPUSER_RW_WRITER, rw);
        ensure(entered == 0, || {
            format!("tryenter(WRITER) of a free lock: {entered}")
        })?;
        c::rumpuser_rw_downgrade(rw);
        let after_downgrade = held(RUMPUSER_RW_READER, rw);
        let upgrade = c::rumpuser_rw_tryupgrade(rw);
        let after_upgrade = held(RUMPUSER_RW_WRITER, rw);
        c::rumpuser_rw_exit(rw);
        c::rumpuser_rw_destroy(rw);
        (after_downgrade, upgrade, after_upgrade)
    };
    ensure(
        after_downgrade != 0 && upgrade == 0 && after_upgrade != 0,
        || {
            format!("downgrade/upgrade: read {after_downgrade}, upgrade {upgrade}, write {after_upgrade}")
        },
    )?;
    Ok("readers share, a writer waits (CPU released) for them, downgrade and upgrade".into())
}

fn check_curlwp_handover() -> Outcome {
    let mine = curlwp();
    // SAFETY: our bound lwp, released so another thread can take it.
    unsafe { c::rumpuser_curlwpop(RUMPUSER_LWP_CLEAR, mine) };
    ensure(curlwp().is_null(), || "LWP_CLEAR left an lwp bound".into())?;
    let mine_address = mine as usize;
    let seen: Rc<Cell<Option<(bool, bool)>>> = Rc::new(Cell::new(None));
    let seen_in_thread = seen.clone();
    let cookie = spawn(c"smoke-handover", move || {
        let own = curlwp();
        let borrowed = mine_address as *mut Lwp;
        // SAFETY: lwps are only stored and compared: swap ours for the
        // borrowed one and back, as lwproc switching does.
        unsafe {
            c::rumpuser_curlwpop(RUMPUSER_LWP_CLEAR, own);
            c::rumpuser_curlwpop(RUMPUSER_LWP_SET, borrowed);
        }
        let took = curlwp() == borrowed;
        // SAFETY: as above.
        unsafe {
            c::rumpuser_curlwpop(RUMPUSER_LWP_CLEAR, borrowed);
            c::rumpuser_curlwpop(RUMPUSER_LWP_SET, own);
        }
        seen_in_thread.set(Some((took, curlwp() == own)));
    })
    .map_err(|error| format!("thread_create gave {error}"))?;
    let joined = join(cookie);
    // SAFETY: take our lwp back.
    unsafe { c::rumpuser_curlwpop(RUMPUSER_LWP_SET, mine) };
    ensure(joined == 0, || format!("join gave {joined}"))?;
    ensure(seen.get() == Some((true, true)), || {
        format!("in the other thread: {:?}", seen.get())
    })?;
    ensure(curlwp() == mine, || "our lwp did not come back".into())?;
    Ok("an lwp moved to another thread and back".into())
}

/// A RAM block device whose contents and flush count the checks can see.
struct RamBlock {
    bytes: Rc<RefCell<Vec<u8>>>,
    flushes: Rc<Cell<u32>>,
}

impl BlockDevice for RamBlock {
    fn size(&self) -> u64 {
        self.bytes.borrow().len() as u64
    }

    fn read_only(&self) -> bool {
        false
    }

    fn read(&self, offset: u64, buffer: &mut [u8]) -> Result<(), BlockError> {
        let bytes = self.bytes.borrow();
        let start = usize::try_from(offset).map_err(|_| BlockError::Io)?;
        let source = bytes
            .get(start..start + buffer.len())
            .ok_or(BlockError::Io)?;
        buffer.copy_from_slice(source);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        let mut bytes = self.bytes.borrow_mut();
        let start = usize::try_from(offset).map_err(|_| BlockError::Io)?;
        bytes
            .get_mut(start..start + data.len())
            .ok_or(BlockError::Io)?
            .copy_from_slice(data);
        Ok(())
    }

    fn flush(&self) -> Result<(), BlockError> {
        self.flushes.set(self.flushes.get() + 1);
        Ok(())
    }
}

/// One `rumpuser_bio` request's completion, filled by [`biodone`].
struct Completion {
    done: Cell<bool>,
    bytes: Cell<usize>,
    error: Cell<c_int>,
    on_io_thread_with_cpu: Cell<bool>,
}

/// The lock and cv `biodone` signals, as a rump kernel's `biodone`
/// wakes the `biowait`er.
static BIO_LOCK: AtomicPtr<Mtx> = AtomicPtr::new(ptr::null_mut());
static BIO_CV: AtomicPtr<Cv> = AtomicPtr::new(ptr::null_mut());
static BIO_COMPLETED: AtomicUsize = AtomicUsize::new(0);
/// The lwp of the thread that submitted the requests.
static SUBMITTER: AtomicPtr<Lwp> = AtomicPtr::new(ptr::null_mut());

unsafe extern "C" fn biodone(argument: *mut c_void, bytes: usize, error: c_int) {
    // SAFETY: `argument` is a `Completion` the check keeps alive until it
    // has seen it done.
    let completion = unsafe { &*argument.cast::<Completion>() };
    // The I/O thread has an lwp of its own, not the submitter's.
    let lwp = curlwp();
    let elsewhere = !lwp.is_null() && lwp != SUBMITTER.load(Ordering::Relaxed);
    completion
        .on_io_thread_with_cpu
        .set(elsewhere && kernel::cpu_held());
    completion.bytes.set(bytes);
    completion.error.set(error);
    let (lock, cv) = (
        BIO_LOCK.load(Ordering::Relaxed),
        BIO_CV.load(Ordering::Relaxed),
    );
    // SAFETY: the check's live mutex and cv.
    unsafe {
        c::rumpuser_mutex_enter(lock);
        completion.done.set(true);
        BIO_COMPLETED.fetch_add(1, Ordering::Relaxed);
        c::rumpuser_cv_broadcast(cv);
        c::rumpuser_mutex_exit(lock);
    }
}

/// Submits one request and returns its completion record.
fn submit(fd: c_int, op: c_int, buffer: &mut [u8], offset: i64) -> Box<Completion> {
    let completion = Box::new(Completion {
        done: Cell::new(false),
        bytes: Cell::new(0),
        error: Cell::new(-1),
        on_io_thread_with_cpu: Cell::new(false),
    });
    // SAFETY: the buffer and the completion outlive the request: the check
    // waits for every completion before dropping either.
    unsafe {
        c::rumpuser_bio(
            fd,
            op,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            offset,
            Some(biodone),
            ptr::from_ref::<Completion>(&completion).cast_mut().cast(),
        )
    };
    completion
}

/// Waits (CPU released in `cv_wait`) until `count` requests completed.
fn wait_completed(count: usize) {
    let (lock, cv) = (
        BIO_LOCK.load(Ordering::Relaxed),
        BIO_CV.load(Ordering::Relaxed),
    );
    // SAFETY: the check's live mutex and cv.
    unsafe {
        c::rumpuser_mutex_enter(lock);
        while BIO_COMPLETED.load(Ordering::Relaxed) < count {
            c::rumpuser_cv_wait(cv, lock);
        }
        c::rumpuser_mutex_exit(lock);
    }
}

fn pattern(seed: u8, length: usize) -> Vec<u8> {
    (0..length)
        .map(|index| seed.wrapping_mul(31).wrapping_add(index as u8))
        .collect()
}

const DEVICE_BYTES: usize = 1 << 20;
const BLOCK: usize = 4096;

fn check_block_io() -> Outcome {
    let bytes = Rc::new(RefCell::new(alloc::vec![0u8; DEVICE_BYTES]));
    let flushes = Rc::new(Cell::new(0));
    register_block_device(
        "smoke0",
        Box::new(RamBlock {
            bytes: bytes.clone(),
            flushes: flushes.clone(),
        }),
    )
    .map_err(|error| format!("register_block_device: {error:?}"))?;
    BIO_LOCK.store(mutex(RUMPUSER_MTX_KMUTEX), Ordering::Relaxed);
    BIO_CV.store(condvar(), Ordering::Relaxed);
    SUBMITTER.store(curlwp(), Ordering::Relaxed);

    let (mut size, mut file_type) = (0u64, -1);
    // SAFETY: C string name, writable out-pointers.
    let info = unsafe { c::rumpuser_getfileinfo(c"smoke0".as_ptr(), &mut size, &mut file_type) };
    ensure(
        info == 0 && size == DEVICE_BYTES as u64 && file_type == RUMPUSER_FT_BLK,
        || format!("getfileinfo: {info}, size {size}, type {file_type}"),
    )?;
    let mut fd = -1;
    // SAFETY: C string names, writable out-pointers.
    let (missing, opened) = unsafe {
        (
            c::rumpuser_open(c"smoke-none".as_ptr(), RUMPUSER_OPEN_RDWR, &mut fd),
            c::rumpuser_open(
                c"smoke0".as_ptr(),
                RUMPUSER_OPEN_RDWR | RUMPUSER_OPEN_BIO,
                &mut fd,
            ),
        )
    };
    ensure(missing == ENOENT, || {
        format!("open of an unknown name: {missing}")
    })?;
    ensure(opened == 0 && fd >= 0, || format!("open smoke0: {opened}"))?;

    // Writes, one of them synchronous, then a sync of the descriptor.
    let offsets = [0usize, 10 * BLOCK, 100 * BLOCK, DEVICE_BYTES - BLOCK];
    let mut writes: Vec<Vec<u8>> = (0..offsets.len())
        .map(|index| pattern(index as u8 + 1, BLOCK))
        .collect();
    let mut completions = Vec::new();
    for (index, (buffer, &offset)) in writes.iter_mut().zip(&offsets).enumerate() {
        let op = if index == 1 {
            RUMPUSER_BIO_WRITE | RUMPUSER_BIO_SYNC
        } else {
            RUMPUSER_BIO_WRITE
        };
        completions.push(submit(fd, op, buffer, offset as i64));
    }
    let synced = {
        // SAFETY: a descriptor number; no pointers.
        unsafe { c::rumpuser_syncfd(fd, RUMPUSER_SYNCFD_WRITE, 0, 0) }
    };
    wait_completed(completions.len());
    ensure(synced == 0, || format!("syncfd gave {synced}"))?;
    for (index, completion) in completions.iter().enumerate() {
        ensure(
            completion.done.get() && completion.error.get() == 0 && completion.bytes.get() == BLOCK,
            || {
                format!(
                    "write {index}: errno {}, {} bytes",
                    completion.error.get(),
                    completion.bytes.get()
                )
            },
        )?;
        ensure(completion.on_io_thread_with_cpu.get(), || {
            format!("write {index}: biodone not on the I/O thread with a CPU and an lwp")
        })?;
    }
    ensure(flushes.get() >= 2, || {
        format!("{} flushes for a sync write and a syncfd", flushes.get())
    })?;
    for (buffer, &offset) in writes.iter().zip(&offsets) {
        ensure(
            &bytes.borrow()[offset..offset + BLOCK] == buffer.as_slice(),
            || format!("the device does not hold the write at {offset}"),
        )?;
    }

    // Reads of the same blocks, and one beyond the end.
    let mut reads: Vec<Vec<u8>> = offsets.iter().map(|_| alloc::vec![0u8; BLOCK]).collect();
    let mut read_completions = Vec::new();
    for (buffer, &offset) in reads.iter_mut().zip(&offsets) {
        read_completions.push(submit(fd, RUMPUSER_BIO_READ, buffer, offset as i64));
    }
    let mut beyond = alloc::vec![0u8; BLOCK];
    let beyond_completion = submit(fd, RUMPUSER_BIO_READ, &mut beyond, DEVICE_BYTES as i64);
    wait_completed(completions.len() + read_completions.len() + 1);
    for (index, (completion, buffer)) in read_completions.iter().zip(&reads).enumerate() {
        ensure(
            completion.error.get() == 0 && completion.bytes.get() == BLOCK,
            || format!("read {index}: errno {}", completion.error.get()),
        )?;
        ensure(buffer == &writes[index], || {
            format!("read {index} does not match what was written")
        })?;
    }
    ensure(beyond_completion.error.get() == ENXIO, || {
        format!(
            "a read beyond the end: errno {}",
            beyond_completion.error.get()
        )
    })?;

    // Vectored synchronous I/O.
    let mut first = pattern(77, 512);
    let mut second = pattern(78, 1536);
    let out = [
        RumpuserIovec {
            iov_base: first.as_mut_ptr().cast(),
            iov_len: first.len(),
        },
        RumpuserIovec {
            iov_base: second.as_mut_ptr().cast(),
            iov_len: second.len(),
        },
    ];
    let mut written = 0usize;
    // SAFETY: two iovecs over live buffers, a writable count.
    let wrote =
        unsafe { c::rumpuser_iovwrite(fd, out.as_ptr(), 2, 3 * BLOCK as i64, &mut written) };
    let mut back = alloc::vec![0u8; 2048];
    let mut into = [RumpuserIovec {
        iov_base: back.as_mut_ptr().cast(),
        iov_len: back.len(),
    }];
    let mut read = 0usize;
    // SAFETY: one iovec over a live buffer, a writable count.
    let readback =
        unsafe { c::rumpuser_iovread(fd, into.as_mut_ptr(), 1, 3 * BLOCK as i64, &mut read) };
    ensure(
        wrote == 0 && written == 2048 && readback == 0 && read == 2048,
        || format!("iovwrite {wrote} ({written} bytes), iovread {readback} ({read} bytes)"),
    )?;
    ensure(
        back[..512] == first[..] && back[512..] == second[..],
        || "iovread does not return what iovwrite wrote".into(),
    )?;
    // SAFETY: descriptor numbers only; the second close must be refused.
    let (closed, closed_again) = unsafe { (c::rumpuser_close(fd), c::rumpuser_close(fd)) };
    ensure(closed == 0 && closed_again == EBADF, || {
        format!("close gave {closed}, again {closed_again}")
    })?;
    Ok(format!(
        "4 bio writes (1 sync) + syncfd, 4 reads match, beyond the end ENXIO, iov 2 KiB, {} flushes",
        flushes.get()
    ))
}

fn check_thread_exit() -> Outcome {
    // Threads that exit through `rumpuser_thread_exit` must end in the
    // scheduler and give their stacks (64 KiB each) back.
    let free_before = mm::heap_free_bytes();
    for _ in 0..2 {
        let mut cookies = Vec::new();
        for _ in 0..4 {
            cookies.push(
                spawn(c"smoke-exit", || sleep_ms(1))
                    .map_err(|error| format!("thread_create gave {error}"))?,
            );
        }
        for cookie in cookies {
            let joined = join(cookie);
            ensure(joined == 0, || format!("join gave {joined}"))?;
        }
        // Finished threads are reaped at the next switch.
        sched::yield_now();
    }
    let free_after = mm::heap_free_bytes();
    let lost = free_before.saturating_sub(free_after);
    // Eight stacks are 512 KiB; what may stay behind is small bookkeeping.
    ensure(lost < 64 * 1024, || {
        format!("{lost} bytes of heap not returned after 8 threads exited")
    })?;
    Ok(format!(
        "8 threads exited, {lost} bytes of heap not returned"
    ))
}

fn check_cpu_accounting() -> Outcome {
    let violations = kernel::VIOLATIONS.load(Ordering::Relaxed);
    ensure(violations == 0, || {
        format!(
            "{violations} broken rules (last lock count back: {})",
            kernel::WRONG_NLOCKS.load(Ordering::Relaxed)
        )
    })?;
    ensure(kernel::cpu_held(), || "the boot thread lost its CPU".into())?;
    Ok(format!(
        "{} backend unschedules, every CPU release and lock count matched",
        kernel::BACKEND_UNSCHEDULES.load(Ordering::Relaxed)
    ))
}
