//! Threads and the rump kernel context of each (`rumpuser_thread_*`,
//! `rumpuser_curlwpop`, `rumpuser_curlwp`, `rumpuser_seterrno`).

use alloc::boxed::Box;
use alloc::string::String;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr;

use super::abi::errno::{EINVAL, ENOMEM};
use super::abi::{
    Lwp, RUMPUSER_LWP_CLEAR, RUMPUSER_LWP_CREATE, RUMPUSER_LWP_DESTROY, RUMPUSER_LWP_SET,
};
use super::host::SpawnError;
use super::state::{
    backend_schedule, backend_unschedule, host, park_until_woken, Exclusive, WaitQueue, STATE,
};

/// The thread function of `rumpuser_thread_create`.
pub type ThreadFunction = unsafe extern "C" fn(*mut c_void) -> *mut c_void;

/// What a joinable thread and its joiner share; the cookie of
/// `rumpuser_thread_create`. Freed by `rumpuser_thread_join`.
pub struct JoinRecord {
    inner: Exclusive<JoinInner>,
}

struct JoinInner {
    exited: bool,
    joiners: WaitQueue,
}

/// A thread's start: the C function, its argument and the join record.
struct Start {
    function: ThreadFunction,
    argument: *mut c_void,
    join: *const JoinRecord,
}

// SAFETY: the pointers are handed to the new thread untouched; rumpuser(3)
// lets the rump kernel's thread function and argument run on any host
// thread, and the join record is reached only through `Exclusive`.
unsafe impl Send for Start {}

fn thread_main(start: Start) -> ! {
    let me = host().current();
    STATE.with(|state| state.threads.entry(me).or_default().join = start.join);
    // SAFETY: `rumpuser_thread_create`'s caller gave a thread function and
    // its argument; the function is documented never to return, but if it
    // does the thread exits as if it had called `rumpuser_thread_exit`.
    unsafe { (start.function)(start.argument) };
    exit_current_thread()
}

fn exit_current_thread() -> ! {
    let host = host();
    let me = host.current();
    let record = STATE.with(|state| state.threads.remove(&me));
    if let Some(join) = record.map(|record| record.join) {
        if !join.is_null() {
            // SAFETY: the record lives until the joiner has seen `exited`,
            // which is set here; the joiner only runs once we stop.
            let join = unsafe { &*join };
            join.inner.with(|inner| {
                inner.exited = true;
                inner.joiners.wake_all(host);
            });
        }
    }
    host.exit_thread()
}

/// `rumpuser_thread_create`: starts `function(argument)` on a new host
/// thread. `priority` and `cpuidx` are hints this single-vCPU platform
/// does not need. For a joinable thread (`mustjoin`) the cookie for
/// `rumpuser_thread_join` is stored in `cookie`.
///
/// # Safety
///
/// `function` must be safe to call with `argument` on another thread;
/// `name` null or a C string; `cookie` valid for a write if `mustjoin`.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_thread_create(
    function: Option<ThreadFunction>,
    argument: *mut c_void,
    name: *const c_char,
    mustjoin: c_int,
    _priority: c_int,
    _cpuidx: c_int,
    cookie: *mut *mut c_void,
) -> c_int {
    let Some(function) = function else {
        return EINVAL;
    };
    if mustjoin != 0 && cookie.is_null() {
        // A joinable thread nobody could join.
        return EINVAL;
    }
    let name = if name.is_null() {
        String::from("rump")
    } else {
        // SAFETY: the caller passes a C string.
        String::from_utf8_lossy(unsafe { CStr::from_ptr(name) }.to_bytes()).into_owned()
    };
    let join = if mustjoin != 0 {
        Box::into_raw(Box::new(JoinRecord {
            inner: Exclusive::new(JoinInner {
                exited: false,
                joiners: WaitQueue::new(),
            }),
        })) as *const JoinRecord
    } else {
        ptr::null()
    };
    let start = Start {
        function,
        argument,
        join,
    };
    match host().spawn(&name, Box::new(move || thread_main(start))) {
        Ok(_) => {
            if mustjoin != 0 {
                // SAFETY: the caller passes a writable cookie pointer for a
                // joinable thread.
                unsafe { cookie.write(join as *mut c_void) };
            }
            0
        }
        Err(SpawnError::OutOfMemory) => {
            if !join.is_null() {
                // SAFETY: made above and never shared: the thread did not start.
                drop(unsafe { Box::from_raw(join as *mut JoinRecord) });
            }
            ENOMEM
        }
    }
}

/// `rumpuser_thread_exit`: ends the calling thread, waking its joiner.
#[no_mangle]
pub extern "C" fn rumpuser_thread_exit() -> ! {
    exit_current_thread()
}

/// `rumpuser_thread_join`: waits, with the CPU released, until the thread
/// whose cookie this is has exited, then frees the cookie.
///
/// # Safety
///
/// `cookie` must come from `rumpuser_thread_create` with `mustjoin` and
/// not have been joined.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_thread_join(cookie: *mut c_void) -> c_int {
    if cookie.is_null() {
        return EINVAL;
    }
    let host = host();
    let me = host.current();
    // SAFETY: the caller passes an unjoined cookie, which stays allocated
    // until freed below.
    let join = unsafe { &*(cookie as *const JoinRecord) };
    let ticket = join
        .inner
        .with(|inner| (!inner.exited).then(|| inner.joiners.push(me)));
    if let Some(ticket) = ticket {
        let nlocks = backend_unschedule(ptr::null_mut());
        park_until_woken(host, &join.inner, |inner| &mut inner.joiners, ticket, None);
        backend_schedule(nlocks, ptr::null_mut());
    }
    // SAFETY: the thread has exited and touches the record no more; the
    // cookie is not used again.
    drop(unsafe { Box::from_raw(cookie as *mut JoinRecord) });
    0
}

/// `rumpuser_curlwpop`: `RUMPUSER_LWP_SET` binds `lwp` to the calling
/// thread (none may be bound), `RUMPUSER_LWP_CLEAR` unbinds it (it must be
/// the bound one); CREATE and DESTROY are informational.
///
/// # Safety
///
/// `lwp` is only stored and compared, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_curlwpop(operation: c_int, lwp: *mut Lwp) {
    let me = host().current();
    match operation {
        RUMPUSER_LWP_CREATE | RUMPUSER_LWP_DESTROY => {}
        RUMPUSER_LWP_SET => STATE.with(|state| {
            let record = state.threads.entry(me).or_default();
            assert!(
                record.curlwp.is_null(),
                "rumpuser: LWP_SET on a thread that already has an lwp"
            );
            record.curlwp = lwp;
        }),
        RUMPUSER_LWP_CLEAR => STATE.with(|state| {
            let record = state.threads.entry(me).or_default();
            assert!(
                record.curlwp == lwp,
                "rumpuser: LWP_CLEAR of an lwp that is not the thread's"
            );
            record.curlwp = ptr::null_mut();
        }),
        other => panic!("rumpuser: unknown curlwp operation {other}"),
    }
}

/// `rumpuser_curlwp`: the lwp bound to the calling thread, or null.
#[no_mangle]
pub extern "C" fn rumpuser_curlwp() -> *mut Lwp {
    super::state::current_lwp()
}

/// `rumpuser_seterrno`: records `error` for the calling thread; read back
/// with [`thread_errno`].
#[no_mangle]
pub extern "C" fn rumpuser_seterrno(error: c_int) {
    let me = host().current();
    STATE.with(|state| state.threads.entry(me).or_default().errno = error);
}

/// The last errno the calling thread got through `rumpuser_seterrno`.
pub fn thread_errno() -> c_int {
    let me = host().current();
    STATE.with(|state| state.threads.get(&me).map_or(0, |record| record.errno))
}
