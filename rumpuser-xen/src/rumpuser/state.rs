//! The layer's shared state and the two primitives everything else is
//! built from: [`Exclusive`] (state reached by one thread at a time) and
//! [`WaitQueue`] (threads parked until another wakes them).

use alloc::collections::{BTreeMap, VecDeque};
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, Ordering};

use super::abi::{Lwp, RumpuserHyperup};
use super::block::BlockState;
use super::console::ConsoleLine;
use super::host::{Host, ThreadKey};
use super::random::Generator;

/// A value reached by one thread at a time.
///
/// Under the [`Host`] contract only one thread runs rumpuser code at a
/// time and no thread parks inside [`Exclusive::with`], so the busy flag is
/// never found set except by a re-entrant call, which is a bug in this
/// layer; it panics instead of aliasing.
pub(crate) struct Exclusive<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access goes through `with`, whose acquire/release flag gives one
// caller at a time exclusive access; the values are only ever touched by
// the one thread the `Host` contract lets run, so `T` need not be `Send`.
unsafe impl<T> Sync for Exclusive<T> {}

impl<T> Exclusive<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with exclusive access to the value.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            panic!("rumpuser: state re-entered (a hypercall ran inside another)");
        }
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _release = Release(&self.busy);
        // SAFETY: the busy flag, set above and cleared when `_release`
        // drops, makes this the only live reference.
        f(unsafe { &mut *self.value.get() })
    }
}

/// Identifies one wait in a [`WaitQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// Threads waiting for something, in arrival order. Being taken off the
/// queue is what wakes a waiter; the unpark only gets it running.
#[derive(Default)]
pub(crate) struct WaitQueue {
    waiters: VecDeque<(Ticket, ThreadKey)>,
    next_ticket: u64,
}

impl WaitQueue {
    pub(crate) const fn new() -> Self {
        Self {
            waiters: VecDeque::new(),
            next_ticket: 0,
        }
    }

    pub(crate) fn push(&mut self, thread: ThreadKey) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.waiters.push_back((ticket, thread));
        ticket
    }

    pub(crate) fn contains(&self, ticket: Ticket) -> bool {
        self.waiters.iter().any(|&(queued, _)| queued == ticket)
    }

    pub(crate) fn remove(&mut self, ticket: Ticket) {
        self.waiters.retain(|&(queued, _)| queued != ticket);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    pub(crate) fn wake_one(&mut self, host: &dyn Host) {
        if let Some((_, thread)) = self.waiters.pop_front() {
            host.unpark(thread);
        }
    }

    pub(crate) fn wake_all(&mut self, host: &dyn Host) {
        while let Some((_, thread)) = self.waiters.pop_front() {
            host.unpark(thread);
        }
    }
}

/// Parks the calling thread until `ticket` is taken off the queue that
/// `queue` picks out of `cell` (returns true), or until the monotonic
/// clock reaches `deadline_ns` (takes the ticket off itself, returns false).
pub(crate) fn park_until_woken<T>(
    host: &dyn Host,
    cell: &Exclusive<T>,
    queue: impl Fn(&mut T) -> &mut WaitQueue,
    ticket: Ticket,
    deadline_ns: Option<u64>,
) -> bool {
    loop {
        let queued = cell.with(|value| queue(value).contains(ticket));
        if !queued {
            return true;
        }
        if deadline_ns.is_some_and(|deadline| host.monotonic_ns() >= deadline) {
            cell.with(|value| queue(value).remove(ticket));
            return false;
        }
        host.park(deadline_ns);
    }
}

/// What the layer keeps about each host thread.
pub(crate) struct ThreadRecord {
    /// The rump kernel context set with `RUMPUSER_LWP_SET`.
    pub(crate) curlwp: *mut Lwp,
    /// The last value given to `rumpuser_seterrno`.
    pub(crate) errno: c_int,
    /// The join record of a joinable thread started by
    /// `rumpuser_thread_create`, null otherwise.
    pub(crate) join: *const super::thread::JoinRecord,
}

impl Default for ThreadRecord {
    fn default() -> Self {
        Self {
            curlwp: core::ptr::null_mut(),
            errno: 0,
            join: core::ptr::null(),
        }
    }
}

/// Everything the layer keeps between hypercalls.
pub(crate) struct State {
    pub(crate) host: Option<&'static dyn Host>,
    pub(crate) hyperup: Option<RumpuserHyperup>,
    pub(crate) threads: BTreeMap<ThreadKey, ThreadRecord>,
    /// Alignment of each live `rumpuser_malloc`/`anonmmap` allocation
    /// aligned beyond the default (`rumpuser_free` is not told).
    pub(crate) alignments: BTreeMap<usize, usize>,
    pub(crate) random: Option<Generator>,
    pub(crate) console: ConsoleLine,
    pub(crate) block: BlockState,
}

pub(crate) static STATE: Exclusive<State> = Exclusive::new(State {
    host: None,
    hyperup: None,
    threads: BTreeMap::new(),
    alignments: BTreeMap::new(),
    random: None,
    console: ConsoleLine::new(),
    block: BlockState::new(),
});

/// The host the layer runs on.
pub(crate) fn host() -> &'static dyn Host {
    if let Some(host) = STATE.with(|state| state.host) {
        return host;
    }
    default_host()
}

#[cfg(target_os = "none")]
fn default_host() -> &'static dyn Host {
    let host: &'static dyn Host = &crate::pv::rumpuser_host::XEN_HOST;
    STATE.with(|state| state.host = Some(host));
    host
}

#[cfg(not(target_os = "none"))]
fn default_host() -> &'static dyn Host {
    panic!("rumpuser: no host installed (call rumpuser::install_host first)")
}

/// The rump kernel context of the calling thread.
pub(crate) fn current_lwp() -> *mut Lwp {
    let me = host().current();
    STATE.with(|state| {
        state
            .threads
            .get(&me)
            .map_or(core::ptr::null_mut(), |record| record.curlwp)
    })
}

/// Releases the calling thread's rump kernel CPU before it blocks
/// (`hyp_backend_unschedule`); returns the lock count to hand back to
/// [`backend_schedule`]. Without a rump kernel (`rumpuser_init` not yet
/// called) there is no context to release.
pub(crate) fn backend_unschedule(interlock: *mut c_void) -> c_int {
    let upcall = STATE.with(|state| state.hyperup.and_then(|hyp| hyp.hyp_backend_unschedule));
    let mut nlocks: c_int = 0;
    if let Some(upcall) = upcall {
        // SAFETY: the upcall comes from the rump kernel's `rumpuser_init`
        // and is called as rumpuser(3) specifies: from a thread holding a
        // CPU, with a valid out-pointer; no state borrow is live.
        unsafe { upcall(0, &mut nlocks, interlock) };
    }
    nlocks
}

/// Takes a rump kernel CPU back after blocking (`hyp_backend_schedule`).
pub(crate) fn backend_schedule(nlocks: c_int, interlock: *mut c_void) {
    let upcall = STATE.with(|state| state.hyperup.and_then(|hyp| hyp.hyp_backend_schedule));
    if let Some(upcall) = upcall {
        // SAFETY: as in `backend_unschedule`, from a thread without a CPU.
        unsafe { upcall(nlocks, interlock) };
    }
}

/// Gives the calling thread, one the layer started for itself (the block
/// I/O thread, the PCI interrupt thread), an lwp of its own, as the rump
/// kernel's own service threads get theirs: take a context, make an lwp of
/// process 0 for this thread, release the context. Without a rump kernel
/// (`rumpuser_init` not called) there is nothing to bind.
pub(crate) fn bind_new_lwp(thread: &str) {
    let Some(hyperup) = STATE.with(|state| state.hyperup) else {
        return;
    };
    if let (Some(schedule), Some(newlwp), Some(unschedule)) = (
        hyperup.hyp_schedule,
        hyperup.hyp_lwproc_newlwp,
        hyperup.hyp_unschedule,
    ) {
        // SAFETY: the rump kernel's upcalls, called in the order its own
        // service threads use them, from a thread holding no CPU; no state
        // borrow is live.
        unsafe {
            schedule();
            let error = newlwp(0);
            assert!(error == 0, "rumpuser: no lwp for {thread} ({error})");
            unschedule();
        }
    }
}
