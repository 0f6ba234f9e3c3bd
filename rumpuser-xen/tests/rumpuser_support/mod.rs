//! Test support for the rumpuser(3) conformance suite: a [`Host`] over std
//! threads that run one at a time on a virtual clock, and a small fake rump
//! kernel whose upcalls keep a log the tests check.
//!
//! Threads are real std threads, but only the one holding the turn runs;
//! the turn passes only when the running thread parks or exits, which is
//! the cooperative model of the Xen platform. Time is virtual: when every
//! thread is parked the clock jumps to the earliest deadline, so sleeps of
//! seconds take no time and every figure is exact. When every thread is
//! parked without a deadline the host reports a deadlock and the test
//! fails (the process aborts with the message, since the panic crosses
//! `extern "C"` frames).

#![allow(dead_code)]

pub mod pci;

/// Ties each declaration in the caller's `c` module (written from NetBSD's
/// headers) to the Rust function that defines the symbol: the `as` cast
/// infers the pointer type from the declaration, and assigning the
/// definition to it compiles only if every argument and the result have
/// the same type, in the same order.
macro_rules! same_signature {
    ($($name:ident = $definition:path, ($($argument:tt),*);)*) => {
        $(
            #[allow(unused_assignments)]
            {
                let mut pointer = c::$name as unsafe extern "C" fn($($argument),*) -> _;
                pointer = $definition;
                let _ = pointer;
            }
        )*
    };
}
pub(crate) use same_signature;

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_int, c_long, c_void, CString};
use std::ptr;
use std::sync::{Condvar, Mutex, MutexGuard};

use rumpuser_xen::rumpuser::abi::{Lwp, RumpuserHyperup, RUMPUSER_LWP_CREATE, RUMPUSER_LWP_SET};
use rumpuser_xen::rumpuser::sync::{RumpuserCv, RumpuserMtx};
use rumpuser_xen::rumpuser::{install_host, Host, SpawnError, ThreadKey};

/// The C entry points, declared as a rump kernel sees them, so the tests
/// go through the exported symbol names.
// The lock types are opaque to C, which only ever holds pointers to them.
#[allow(clashing_extern_declarations, improper_ctypes)]
pub mod c {
    use super::*;
    use rumpuser_xen::rumpuser::abi::RumpuserIovec;
    use rumpuser_xen::rumpuser::sync::RumpuserRw;

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
        pub fn rumpuser_seterrno(error: c_int);
        pub fn rumpuser_kill(pid: i64, sig: c_int) -> c_int;
        pub fn rumpuser_putchar(character: c_int);
        pub fn rumpuser_dprintf(format: *const c_char, ...);
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
        pub fn rumpuser_mutex_init(mtxp: *mut *mut RumpuserMtx, flags: c_int);
        pub fn rumpuser_mutex_enter(mtx: *mut RumpuserMtx);
        pub fn rumpuser_mutex_enter_nowrap(mtx: *mut RumpuserMtx);
        pub fn rumpuser_mutex_tryenter(mtx: *mut RumpuserMtx) -> c_int;
        pub fn rumpuser_mutex_exit(mtx: *mut RumpuserMtx);
        pub fn rumpuser_mutex_destroy(mtx: *mut RumpuserMtx);
        pub fn rumpuser_mutex_owner(mtx: *mut RumpuserMtx, lp: *mut *mut Lwp);
        pub fn rumpuser_rw_init(rwp: *mut *mut RumpuserRw);
        pub fn rumpuser_rw_enter(lock_type: c_int, rw: *mut RumpuserRw);
        pub fn rumpuser_rw_tryenter(lock_type: c_int, rw: *mut RumpuserRw) -> c_int;
        pub fn rumpuser_rw_tryupgrade(rw: *mut RumpuserRw) -> c_int;
        pub fn rumpuser_rw_downgrade(rw: *mut RumpuserRw);
        pub fn rumpuser_rw_exit(rw: *mut RumpuserRw);
        pub fn rumpuser_rw_destroy(rw: *mut RumpuserRw);
        pub fn rumpuser_rw_held(lock_type: c_int, rw: *mut RumpuserRw, heldp: *mut c_int);
        pub fn rumpuser_cv_init(cvp: *mut *mut RumpuserCv);
        pub fn rumpuser_cv_destroy(cv: *mut RumpuserCv);
        pub fn rumpuser_cv_wait(cv: *mut RumpuserCv, mtx: *mut RumpuserMtx);
        pub fn rumpuser_cv_wait_nowrap(cv: *mut RumpuserCv, mtx: *mut RumpuserMtx);
        pub fn rumpuser_cv_timedwait(
            cv: *mut RumpuserCv,
            mtx: *mut RumpuserMtx,
            sec: i64,
            nsec: i64,
        ) -> c_int;
        pub fn rumpuser_cv_signal(cv: *mut RumpuserCv);
        pub fn rumpuser_cv_broadcast(cv: *mut RumpuserCv);
        pub fn rumpuser_cv_has_waiters(cv: *mut RumpuserCv, waitersp: *mut c_int);
        pub fn rumpuser_daemonize_begin() -> c_int;
        pub fn rumpuser_daemonize_done(error: c_int) -> c_int;
        pub fn rumpuser_exit(value: c_int) -> !;
        pub fn rumpuser_dl_bootstrap(
            modinit: rumpuser_xen::rumpuser::abi::RumpModinitFn,
            symload: rumpuser_xen::rumpuser::abi::RumpSymloadFn,
            compload: rumpuser_xen::rumpuser::abi::RumpComploadFn,
        );
    }
}

/// Where the virtual monotonic clock starts.
pub const CLOCK_START_NS: u64 = 1_000_000_000_000;
/// The virtual wall clock at monotonic 0 (2023-11-14).
pub const WALL_BASE_NS: u64 = 1_700_000_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    Runnable,
    Parked(Option<u64>),
    Exited,
}

struct ThreadState {
    name: String,
    state: RunState,
    unparked: bool,
}

struct Scheduler {
    threads: Vec<ThreadState>,
    ids: HashMap<std::thread::ThreadId, ThreadKey>,
    current: ThreadKey,
    run_queue: VecDeque<ThreadKey>,
    now_ns: u64,
    deadlock: Option<String>,
}

/// A [`Host`] over std threads that run one at a time.
pub struct StdHost {
    scheduler: Mutex<Scheduler>,
    turn: Condvar,
    console: Mutex<Vec<u8>>,
    parameters: Mutex<HashMap<String, String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StdHost {
    /// A host whose first thread is the calling one. Leaked: threads of the
    /// host may outlive the test that made it (parked forever).
    pub fn new() -> &'static StdHost {
        let mut ids = HashMap::new();
        ids.insert(std::thread::current().id(), 0);
        Box::leak(Box::new(StdHost {
            scheduler: Mutex::new(Scheduler {
                threads: vec![ThreadState {
                    name: "main".into(),
                    state: RunState::Running,
                    unparked: false,
                }],
                ids,
                current: 0,
                run_queue: VecDeque::new(),
                now_ns: CLOCK_START_NS,
                deadlock: None,
            }),
            turn: Condvar::new(),
            console: Mutex::new(Vec::new()),
            parameters: Mutex::new(HashMap::new()),
        }))
    }

    /// What was written to the console.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.console)).into_owned()
    }

    /// Sets an operator parameter.
    pub fn set_parameter(&self, name: &str, value: &str) {
        lock(&self.parameters).insert(name.into(), value.into());
    }

    /// Passes the turn on; the caller has set its own state already.
    fn switch_away(&self, scheduler: &mut Scheduler) {
        if scheduler.run_queue.is_empty() {
            let earliest = scheduler
                .threads
                .iter()
                .filter_map(|thread| match thread.state {
                    RunState::Parked(deadline) => deadline,
                    _ => None,
                })
                .min();
            match earliest {
                Some(deadline) => {
                    scheduler.now_ns = scheduler.now_ns.max(deadline);
                    let now = scheduler.now_ns;
                    for key in 0..scheduler.threads.len() {
                        if matches!(scheduler.threads[key].state, RunState::Parked(Some(deadline)) if deadline <= now)
                        {
                            scheduler.threads[key].state = RunState::Runnable;
                            scheduler.run_queue.push_back(key);
                        }
                    }
                }
                None => {
                    let parked: Vec<&str> = scheduler
                        .threads
                        .iter()
                        .filter(|thread| matches!(thread.state, RunState::Parked(None)))
                        .map(|thread| thread.name.as_str())
                        .collect();
                    scheduler.deadlock = Some(format!(
                        "deadlock: every thread is parked for good: {parked:?}"
                    ));
                    self.turn.notify_all();
                    return;
                }
            }
        }
        let next = scheduler.run_queue.pop_front().expect("a runnable thread");
        scheduler.threads[next].state = RunState::Running;
        scheduler.current = next;
        self.turn.notify_all();
    }

    fn wait_for_turn<'a>(
        &self,
        mut scheduler: MutexGuard<'a, Scheduler>,
        me: ThreadKey,
    ) -> MutexGuard<'a, Scheduler> {
        loop {
            if let Some(message) = &scheduler.deadlock {
                let message = message.clone();
                drop(scheduler);
                panic!("{message}");
            }
            if scheduler.current == me && scheduler.threads[me].state == RunState::Running {
                return scheduler;
            }
            scheduler = self
                .turn
                .wait(scheduler)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn me(&self, scheduler: &Scheduler) -> ThreadKey {
        *scheduler
            .ids
            .get(&std::thread::current().id())
            .expect("a thread of this host")
    }
}

// SAFETY: only the thread whose key is `current` runs; the turn passes
// only in `park` and `exit_thread`, under the scheduler mutex, which orders
// everything before the switch before everything after it.
unsafe impl Host for StdHost {
    fn spawn(&self, name: &str, entry: Box<dyn FnOnce() + Send>) -> Result<ThreadKey, SpawnError> {
        // SAFETY: `StdHost::new` is the only constructor and leaks the
        // host, so it lives for the rest of the process.
        let host: &'static StdHost = unsafe { &*(self as *const StdHost) };
        let key = {
            let mut scheduler = lock(&self.scheduler);
            scheduler.threads.push(ThreadState {
                name: name.into(),
                state: RunState::Runnable,
                unparked: false,
            });
            let key = scheduler.threads.len() - 1;
            scheduler.run_queue.push_back(key);
            key
        };
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                {
                    let mut scheduler = lock(&host.scheduler);
                    scheduler.ids.insert(std::thread::current().id(), key);
                    drop(host.wait_for_turn(scheduler, key));
                }
                entry();
            })
            .map_err(|_| SpawnError::OutOfMemory)?;
        Ok(key)
    }

    fn current(&self) -> ThreadKey {
        self.me(&lock(&self.scheduler))
    }

    fn park(&self, deadline_ns: Option<u64>) {
        let mut scheduler = lock(&self.scheduler);
        let me = self.me(&scheduler);
        if std::mem::take(&mut scheduler.threads[me].unparked) {
            return;
        }
        if deadline_ns.is_some_and(|deadline| deadline <= scheduler.now_ns) {
            return;
        }
        scheduler.threads[me].state = RunState::Parked(deadline_ns);
        self.switch_away(&mut scheduler);
        let mut scheduler = self.wait_for_turn(scheduler, me);
        scheduler.threads[me].unparked = false;
    }

    fn unpark(&self, thread: ThreadKey) {
        let mut scheduler = lock(&self.scheduler);
        scheduler.threads[thread].unparked = true;
        if matches!(scheduler.threads[thread].state, RunState::Parked(_)) {
            scheduler.threads[thread].state = RunState::Runnable;
            scheduler.run_queue.push_back(thread);
        }
    }

    fn exit_thread(&self) -> ! {
        let mut scheduler = lock(&self.scheduler);
        let me = self.me(&scheduler);
        scheduler.threads[me].state = RunState::Exited;
        self.switch_away(&mut scheduler);
        loop {
            scheduler = self
                .turn
                .wait(scheduler)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn monotonic_ns(&self) -> u64 {
        lock(&self.scheduler).now_ns
    }

    fn wall_clock_ns(&self) -> u64 {
        WALL_BASE_NS + lock(&self.scheduler).now_ns
    }

    fn console_write(&self, bytes: &[u8]) {
        lock(&self.console).extend_from_slice(bytes);
    }

    fn hardware_random(&self) -> Option<u64> {
        None
    }

    fn seed_material(&self, sink: &mut dyn FnMut(&[u8])) {
        sink(b"rumpuser std test host");
        sink(&std::process::id().to_le_bytes());
    }

    fn parameter(&self, name: &str) -> Option<String> {
        lock(&self.parameters).get(name).cloned()
    }

    fn hostname(&self) -> String {
        "rumpuser-test".into()
    }

    fn memory_limit(&self) -> u64 {
        64 << 20
    }

    fn exit(&self, status: i32) -> ! {
        panic!("rumpuser_exit({status})")
    }
}

/// One upcall as the fake rump kernel saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upcall {
    /// `hyp_backend_unschedule` from thread `.0` with interlock `.1`.
    BackendUnschedule(ThreadKey, usize),
    /// `hyp_backend_schedule` from thread `.0` with `nlocks` `.1` and
    /// interlock `.2`; `.3`: whether the interlock mutex was already held
    /// by the caller's lwp when the CPU came back.
    BackendSchedule(ThreadKey, c_int, usize, bool),
    /// `hyp_schedule` / `hyp_unschedule` / `hyp_lwproc_newlwp`.
    Schedule(ThreadKey),
    Unschedule(ThreadKey),
    NewLwp(ThreadKey),
}

/// The fake rump kernel: `cpus` virtual CPUs handed out with a spin mutex
/// and a cv of the layer under test, as NetBSD's rump scheduler does.
pub struct FakeKernel {
    pub cpus: usize,
    pub holders: Vec<ThreadKey>,
    pub log: Vec<Upcall>,
    pub violations: Vec<String>,
    pub cpu_lock: usize,
    pub cpu_cv: usize,
    /// Lock count handed out by `hyp_backend_unschedule`, to check it
    /// comes back to `hyp_backend_schedule`.
    pub nlocks_token: c_int,
}

pub static KERNEL: Mutex<FakeKernel> = Mutex::new(FakeKernel {
    cpus: 1,
    holders: Vec::new(),
    log: Vec::new(),
    violations: Vec::new(),
    cpu_lock: 0,
    cpu_cv: 0,
    nlocks_token: 3,
});

pub fn kernel() -> MutexGuard<'static, FakeKernel> {
    lock(&KERNEL)
}

static HOST: Mutex<Option<&'static StdHost>> = Mutex::new(None);

pub fn host() -> &'static StdHost {
    lock(&HOST).expect("a rig is running")
}

fn me() -> ThreadKey {
    host().current()
}

/// The calling thread's key on the test host.
pub fn host_thread() -> ThreadKey {
    me()
}

fn take_cpu() {
    let (cpu_lock, cpu_cv) = {
        let kernel = kernel();
        (
            kernel.cpu_lock as *mut RumpuserMtx,
            kernel.cpu_cv as *mut RumpuserCv,
        )
    };
    let me = me();
    // SAFETY: the kernel's lock and cv, made by `Rig::start`.
    unsafe {
        c::rumpuser_mutex_enter_nowrap(cpu_lock);
        loop {
            {
                let mut kernel = kernel();
                if kernel.holders.contains(&me) {
                    kernel
                        .violations
                        .push(format!("thread {me} took a second CPU"));
                }
                if kernel.holders.len() < kernel.cpus {
                    kernel.holders.push(me);
                    break;
                }
            }
            c::rumpuser_cv_wait_nowrap(cpu_cv, cpu_lock);
        }
        c::rumpuser_mutex_exit(cpu_lock);
    }
}

fn release_cpu() {
    let me = me();
    let cpu_cv = {
        let mut kernel = kernel();
        match kernel.holders.iter().position(|&holder| holder == me) {
            Some(index) => {
                kernel.holders.remove(index);
            }
            None => kernel
                .violations
                .push(format!("thread {me} released a CPU it does not hold")),
        }
        kernel.cpu_cv as *mut RumpuserCv
    };
    // SAFETY: the kernel's cv, made by `Rig::start`.
    unsafe { c::rumpuser_cv_signal(cpu_cv) };
}

unsafe extern "C" fn hyp_backend_unschedule(
    _nlocks: c_int,
    countp: *mut c_int,
    interlock: *mut c_void,
) {
    let token = {
        let mut kernel = kernel();
        kernel
            .log
            .push(Upcall::BackendUnschedule(me(), interlock as usize));
        kernel.nlocks_token
    };
    release_cpu();
    // SAFETY: the layer passes a writable count.
    unsafe { countp.write(token) };
}

unsafe extern "C" fn hyp_backend_schedule(nlocks: c_int, interlock: *mut c_void) {
    let interlock_held = !interlock.is_null() && {
        let mut owner: *mut Lwp = ptr::null_mut();
        // SAFETY: the layer passes the cv's interlock mutex.
        unsafe { c::rumpuser_mutex_owner(interlock.cast(), &mut owner) };
        // SAFETY: reads this thread's lwp.
        !owner.is_null() && owner == unsafe { c::rumpuser_curlwp() }
    };
    {
        let mut kernel = kernel();
        let token = kernel.nlocks_token;
        if nlocks != token && nlocks != 0 {
            kernel
                .violations
                .push(format!("nlocks {nlocks} came back, {token} was handed out"));
        }
        kernel.log.push(Upcall::BackendSchedule(
            me(),
            nlocks,
            interlock as usize,
            interlock_held,
        ));
    }
    take_cpu();
}

unsafe extern "C" fn hyp_schedule() {
    kernel().log.push(Upcall::Schedule(me()));
    take_cpu();
}

unsafe extern "C" fn hyp_unschedule() {
    kernel().log.push(Upcall::Unschedule(me()));
    release_cpu();
}

unsafe extern "C" fn hyp_lwproc_newlwp(_pid: i32) -> c_int {
    kernel().log.push(Upcall::NewLwp(me()));
    let lwp = new_lwp();
    // SAFETY: a fresh fake lwp.
    unsafe {
        c::rumpuser_curlwpop(RUMPUSER_LWP_CREATE, lwp);
        c::rumpuser_curlwpop(RUMPUSER_LWP_SET, lwp);
    }
    0
}

/// A distinct pointer to stand for a `struct lwp`.
pub fn new_lwp() -> *mut Lwp {
    Box::into_raw(Box::new(0u64)).cast()
}

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

static SERIAL: Mutex<()> = Mutex::new(());

/// One scenario: a fresh host and fake kernel; the calling thread runs as
/// a rump kernel thread (it has an lwp and holds a CPU).
pub struct Rig {
    _serial: MutexGuard<'static, ()>,
    pub host: &'static StdHost,
    pub main_lwp: *mut Lwp,
}

impl Rig {
    pub fn start(cpus: usize) -> Rig {
        let serial = lock(&SERIAL);
        let host = StdHost::new();
        install_host(host);
        *lock(&HOST) = Some(host);
        let (mut cpu_lock, mut cpu_cv) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: plain initialisation calls with valid out-pointers.
        unsafe {
            c::rumpuser_mutex_init(
                &mut cpu_lock,
                rumpuser_xen::rumpuser::abi::RUMPUSER_MTX_SPIN,
            );
            c::rumpuser_cv_init(&mut cpu_cv);
        }
        {
            let mut kernel = kernel();
            kernel.cpus = cpus;
            kernel.holders = vec![0];
            kernel.log.clear();
            kernel.violations.clear();
            kernel.cpu_lock = cpu_lock as usize;
            kernel.cpu_cv = cpu_cv as usize;
        }
        // SAFETY: a valid upcall table that lives for the process.
        assert_eq!(unsafe { c::rumpuser_init(17, &HYPERUP) }, 0);
        let main_lwp = new_lwp();
        // SAFETY: a fresh fake lwp.
        unsafe {
            c::rumpuser_curlwpop(RUMPUSER_LWP_CREATE, main_lwp);
            c::rumpuser_curlwpop(RUMPUSER_LWP_SET, main_lwp);
        }
        Rig {
            _serial: serial,
            host,
            main_lwp,
        }
    }

    /// The upcall log so far, emptied.
    pub fn take_log(&self) -> Vec<Upcall> {
        std::mem::take(&mut kernel().log)
    }

    /// Fails the test if the fake kernel saw a broken rule.
    pub fn assert_no_violations(&self) {
        let violations = kernel().violations.clone();
        assert!(violations.is_empty(), "{violations:?}");
    }

    pub fn now(&self) -> u64 {
        self.host.monotonic_ns()
    }
}

pub fn cstring(text: &str) -> CString {
    CString::new(text).expect("no NUL")
}

type Body = Box<dyn FnOnce() + Send>;

unsafe extern "C" fn rump_thread_main(argument: *mut c_void) -> *mut c_void {
    // SAFETY: `spawn_rump_thread` passes a boxed body, taken once.
    let body = unsafe { Box::from_raw(argument.cast::<Body>()) };
    let lwp = new_lwp();
    // SAFETY: a fresh fake lwp; the kernel's own upcalls.
    unsafe {
        c::rumpuser_curlwpop(RUMPUSER_LWP_CREATE, lwp);
        c::rumpuser_curlwpop(RUMPUSER_LWP_SET, lwp);
        hyp_schedule();
    }
    body();
    // SAFETY: as above: release the CPU, unbind the lwp, end the thread.
    unsafe {
        hyp_unschedule();
        c::rumpuser_curlwpop(rumpuser_xen::rumpuser::abi::RUMPUSER_LWP_CLEAR, lwp);
        c::rumpuser_thread_exit()
    }
}

/// Starts a rump kernel thread the way the rump kernel does: through
/// `rumpuser_thread_create`, then binding an lwp and taking a CPU. Returns
/// the join cookie if `joinable`.
pub fn spawn_rump_thread(
    name: &str,
    joinable: bool,
    body: impl FnOnce() + Send + 'static,
) -> *mut c_void {
    let body: Box<Body> = Box::new(Box::new(body));
    let name = cstring(name);
    let mut cookie = ptr::null_mut();
    // SAFETY: a thread function and its boxed argument; a writable cookie.
    let error = unsafe {
        c::rumpuser_thread_create(
            Some(rump_thread_main),
            Box::into_raw(body).cast(),
            name.as_ptr(),
            c_int::from(joinable),
            0,
            -1,
            &mut cookie,
        )
    };
    assert_eq!(error, 0);
    cookie
}

/// The lwp bound to the calling thread.
pub fn curlwp() -> *mut Lwp {
    // SAFETY: no arguments.
    unsafe { c::rumpuser_curlwp() }
}

/// A raw pointer that may cross into a test thread (the layer's objects
/// are used by one thread at a time under the host's turn).
pub struct Shared<T>(pub *mut T);
impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Shared<T> {}
impl<T> Shared<T> {
    pub fn get(self) -> *mut T {
        self.0
    }
}
// SAFETY: see the type's documentation.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}
