//! Cooperative threads, each on its own stack.
//!
//! A thread runs until it calls [`yield_now`] or [`wait_until`]; there is no
//! preemption (the domain has one vCPU and event upcalls run no Rust code),
//! so no locking is needed between threads beyond the platform's
//! [`Global`](super::Global) cells, which are never held across a switch.
//! The boot thread (the one running the domain's main function) is thread 0
//! and runs on the boot stack. When no thread can run, [`wait_until`]
//! blocks the vCPU until an event arrives or another thread [`wake`]s a
//! waiting one. A thread ends when its entry function returns or it calls
//! [`exit`].

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::arch::global_asm;

use super::Global;

global_asm!(
    r#"
    .section .text.sched, "ax"
    // switch_stack(save_rsp_to: *mut u64 [rdi], new_rsp: u64 [rsi]):
    // saves the callee-saved registers on the current stack, stores rsp,
    // and resumes the thread whose stack pointer is `new_rsp`.
    .global rumpuser_switch_stack
rumpuser_switch_stack:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp
    mov rsp, rsi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    // First code of a new thread, reached by the `ret` above. Global
    // because `spawn` takes its address from Rust: in a build with several
    // codegen units (the debug profile) `spawn` and this assembly land in
    // different object files, and a local label would not link.
    .global rumpuser_thread_start
rumpuser_thread_start:
    xor ebp, ebp
    call {thread_main}
    ud2
"#,
    thread_main = sym thread_main,
);

unsafe extern "C" {
    fn rumpuser_switch_stack(save_rsp_to: *mut u64, new_rsp: u64);
    fn rumpuser_thread_start();
}

/// Identifies a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadId(usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Can run.
    Runnable,
    /// Inside [`wait_until`], found its condition false, and waits for an
    /// event or until the given system time, if any.
    Waiting(Option<u64>),
    Finished,
}

struct Thread {
    name: &'static str,
    /// None for the boot thread, which runs on the boot stack.
    stack: Option<Box<[u8]>>,
    saved_rsp: u64,
    state: State,
    entry: Option<Box<dyn FnOnce()>>,
}

struct Scheduler {
    threads: Vec<Option<Thread>>,
    current: usize,
}

static SCHEDULER: Global<Scheduler> = Global::new(Scheduler {
    threads: Vec::new(),
    current: 0,
});

fn ensure_boot_thread(scheduler: &mut Scheduler) {
    if scheduler.threads.is_empty() {
        scheduler.threads.push(Some(Thread {
            name: "main",
            stack: None,
            saved_rsp: 0,
            state: State::Runnable,
            entry: None,
        }));
    }
}

/// Starts `entry` as a new thread with a stack of `stack_size` bytes; it
/// first runs when the current thread yields.
pub fn spawn(name: &'static str, stack_size: usize, entry: impl FnOnce() + 'static) -> ThreadId {
    let stack_size = stack_size.max(16 * 1024) & !15;
    let mut stack = alloc::vec![0u8; stack_size].into_boxed_slice();
    let top = (stack.as_mut_ptr() as u64 + stack_size as u64) & !15;
    // Initial frame popped by `rumpuser_switch_stack`: six callee-saved
    // registers (zero), then the return address. It sits so that rsp is
    // 16-byte aligned after the `ret`, as the ABI wants before a `call`.
    let frame = [0, 0, 0, 0, 0, 0, rumpuser_thread_start as *const () as u64];
    // frame_base + 56 (all popped) = top - 16.
    let frame_base = top - 8 * (frame.len() as u64 + 2);
    for (index, word) in frame.iter().enumerate() {
        let offset = (frame_base - stack.as_ptr() as u64) as usize + index * 8;
        stack[offset..offset + 8].copy_from_slice(&word.to_le_bytes());
    }
    let mut scheduler = SCHEDULER.borrow_mut();
    ensure_boot_thread(&mut scheduler);
    let thread = Thread {
        name,
        stack: Some(stack),
        saved_rsp: frame_base,
        state: State::Runnable,
        entry: Some(Box::new(entry)),
    };
    let index = match scheduler.threads.iter().position(Option::is_none) {
        Some(index) => {
            scheduler.threads[index] = Some(thread);
            index
        }
        None => {
            scheduler.threads.push(Some(thread));
            scheduler.threads.len() - 1
        }
    };
    ThreadId(index)
}

/// The running thread.
pub fn current() -> ThreadId {
    ThreadId(SCHEDULER.borrow().current)
}

/// The running thread's name.
pub fn current_name() -> &'static str {
    let scheduler = SCHEDULER.borrow();
    scheduler
        .threads
        .get(scheduler.current)
        .and_then(Option::as_ref)
        .map_or("main", |thread| thread.name)
}

/// Whether `thread` has finished.
pub fn is_finished(thread: ThreadId) -> bool {
    let scheduler = SCHEDULER.borrow();
    !matches!(
        scheduler.threads.get(thread.0),
        Some(Some(thread)) if thread.state != State::Finished
    )
}

/// Lets the next runnable thread run; returns when this thread is picked
/// again. Returns at once if no other thread can run. Returns whether
/// another thread ran.
pub fn yield_now() -> bool {
    let (save_to, next_rsp) = {
        let mut scheduler = SCHEDULER.borrow_mut();
        ensure_boot_thread(&mut scheduler);
        let count = scheduler.threads.len();
        let current = scheduler.current;
        // Free the stacks of finished threads other than ourselves.
        for index in 0..count {
            if index != current
                && matches!(&scheduler.threads[index], Some(thread) if thread.state == State::Finished)
            {
                scheduler.threads[index] = None;
            }
        }
        let next = (1..=count)
            .map(|step| (current + step) % count)
            .find(|&index| {
                index != current
                    && matches!(&scheduler.threads[index], Some(thread) if thread.state != State::Finished)
            });
        let Some(next) = next else {
            return false;
        };
        scheduler.current = next;
        let next_rsp = scheduler.threads[next]
            .as_ref()
            .map_or(0, |thread| thread.saved_rsp);
        let save_to = scheduler.threads[current]
            .as_mut()
            .map(|thread| &mut thread.saved_rsp as *mut u64);
        (save_to, next_rsp)
    };
    let Some(save_to) = save_to else {
        return false;
    };
    // SAFETY: `save_to` points into the current thread's entry, which stays
    // in place (entries are only freed when finished, and never the current
    // one; the vector is not resized during the switch since no borrow is
    // live and nothing runs in between). `next_rsp` is a stack pointer
    // saved by this same routine or built by `spawn` in the same layout.
    unsafe { rumpuser_switch_stack(save_to, next_rsp) };
    true
}

/// Runs other threads, and waits for events, until `ready()` holds or
/// system time reaches `deadline_ns`. The vCPU blocks only when every
/// thread is waiting; it then sleeps until an event arrives or the
/// earliest deadline of the waiting threads passes. Returns whether
/// `ready()` held.
pub fn wait_until(deadline_ns: Option<u64>, mut ready: impl FnMut() -> bool) -> bool {
    loop {
        if ready() {
            set_state(State::Runnable);
            return true;
        }
        if deadline_ns.is_some_and(|deadline| super::time::monotonic_ns() >= deadline) {
            set_state(State::Runnable);
            return false;
        }
        set_state(State::Waiting(deadline_ns));
        match everyone_waiting() {
            Some(earliest) => {
                if let Some(deadline) = earliest {
                    super::time::set_timer(deadline);
                }
                super::events::wait_for_any_event();
                wake_all();
            }
            None => {
                yield_now();
            }
        }
    }
}

/// Makes `thread` runnable if it waits in [`wait_until`], so that it
/// checks its condition again even if no event arrives: the way to wake a
/// thread whose condition another thread made true. Without it the thread
/// stays counted as waiting, and once every thread waits the vCPU blocks
/// until an outside event that may never come.
pub fn wake(thread: ThreadId) {
    let mut scheduler = SCHEDULER.borrow_mut();
    if let Some(Some(waiting)) = scheduler.threads.get_mut(thread.0) {
        if matches!(waiting.state, State::Waiting(_)) {
            waiting.state = State::Runnable;
        }
    }
}

/// Ends the calling thread now, from however deep in its entry function:
/// it never runs again and its stack is freed by the next switch of
/// another thread. Nothing on its stack is dropped (what the entry
/// function owned leaks). The boot thread cannot end: it waits forever.
pub fn exit() -> ! {
    let ended = {
        let mut scheduler = SCHEDULER.borrow_mut();
        let current = scheduler.current;
        match scheduler.threads.get_mut(current) {
            Some(Some(thread)) if thread.stack.is_some() => {
                thread.state = State::Finished;
                true
            }
            _ => false,
        }
    };
    if !ended {
        loop {
            wait_until(None, || false);
        }
    }
    // The boot thread never finishes, so someone is always runnable or
    // waiting for events; keep yielding until the scheduler reaps us.
    loop {
        if !yield_now() {
            super::events::wait_for_any_event();
        }
    }
}

/// Sleeps for `nanoseconds`, letting other threads run.
pub fn sleep_ns(nanoseconds: u64) {
    let deadline = super::time::monotonic_ns().saturating_add(nanoseconds);
    wait_until(Some(deadline), || false);
}

fn set_state(state: State) {
    let mut scheduler = SCHEDULER.borrow_mut();
    // Before the first spawn the boot thread has no entry yet; without one
    // its deadline would not be counted and, every (no) thread waiting,
    // the vCPU would block with no timer set.
    ensure_boot_thread(&mut scheduler);
    let current = scheduler.current;
    if let Some(Some(thread)) = scheduler.threads.get_mut(current) {
        thread.state = state;
    }
}

/// If every live thread is waiting: the earliest of their deadlines.
fn everyone_waiting() -> Option<Option<u64>> {
    let scheduler = SCHEDULER.borrow();
    let mut earliest: Option<u64> = None;
    for thread in scheduler.threads.iter().flatten() {
        match thread.state {
            State::Runnable => return None,
            State::Waiting(Some(deadline)) => {
                earliest = Some(earliest.map_or(deadline, |known| known.min(deadline)));
            }
            State::Waiting(None) | State::Finished => {}
        }
    }
    Some(earliest)
}

/// Makes every waiting thread re-check its condition: after an event, or
/// when one thread took an event another one may be waiting for.
pub fn wake_all() {
    let mut scheduler = SCHEDULER.borrow_mut();
    for thread in scheduler.threads.iter_mut().flatten() {
        if matches!(thread.state, State::Waiting(_)) {
            thread.state = State::Runnable;
        }
    }
}

extern "C" fn thread_main() -> ! {
    let entry = {
        let mut scheduler = SCHEDULER.borrow_mut();
        let current = scheduler.current;
        scheduler.threads[current]
            .as_mut()
            .and_then(|thread| thread.entry.take())
    };
    if let Some(entry) = entry {
        entry();
    }
    exit()
}

/// Bounds of the running thread's stack, if it is not the boot thread.
pub fn current_stack_bounds() -> Option<(u64, u64)> {
    let scheduler = SCHEDULER.try_borrow().ok()?;
    let thread = scheduler.threads.get(scheduler.current)?.as_ref()?;
    let stack = thread.stack.as_ref()?;
    let low = stack.as_ptr() as u64;
    Some((low, low + stack.len() as u64))
}
