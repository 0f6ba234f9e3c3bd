//! The rumpuser(3) host on Xen: [`crate::rumpuser::Host`] over the
//! platform's cooperative threads ([`super::sched`]), Xen system time and
//! the shared-info wall clock, the console ring, RDRAND, the command line
//! and xenstore. `crate::rumpuser` installs it on first use.
//!
//! The domain has one vCPU and [`super::sched`] switches threads only in
//! `wait_until`/`exit`, which this host calls only from [`XenHost::park`]
//! and [`XenHost::exit_thread`]: that is the one-thread-at-a-time contract
//! the `Host` trait asks for. [`XenHost::unpark`] sets the thread's flag
//! and makes it runnable in the scheduler ([`sched::wake`]), so the woken
//! thread runs even when every other thread waits.
//!
//! A parked thread returns when it is unparked or, for the rump PCI
//! interrupt thread, when a device interrupt fired: nothing unparks that
//! one, so `park` asks [`super::rump_pci`] whether an interrupt is there.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, Ordering};

use xenbus::platform::{TxId, Xenstore};

use super::abi::shared_info;
use super::sched::{self, ThreadId};
use super::xenstore::XenStore;
use super::{console, mm, shutdown, time, Global};
use crate::rumpuser::abi::RUMPUSER_PANIC;
use crate::rumpuser::{Host, SpawnError, ThreadKey};

/// Stack of each thread the rump kernel starts (NetBSD's kernel stacks are
/// 16 KiB on amd64; the rest is headroom for the hypercall layer).
const THREAD_STACK_BYTES: usize = 64 * 1024;

/// The host; `crate::rumpuser` installs it on first use.
pub struct XenHost;

/// The one instance.
pub static XEN_HOST: XenHost = XenHost;

/// A scheduler thread the rumpuser layer has seen, and whether an unpark
/// is pending for it. The index is the thread's [`ThreadKey`]; `thread` is
/// `None` once the scheduler gave the thread's id to a new thread, so keys
/// are never reused.
struct Slot {
    thread: Option<ThreadId>,
    unparked: bool,
}

static SLOTS: Global<Vec<Slot>> = Global::new(Vec::new());

fn key_of(thread: ThreadId) -> ThreadKey {
    let mut slots = SLOTS.borrow_mut();
    match slots.iter().position(|slot| slot.thread == Some(thread)) {
        Some(key) => key,
        None => {
            slots.push(Slot {
                thread: Some(thread),
                unparked: false,
            });
            slots.len() - 1
        }
    }
}

fn take_unpark(key: ThreadKey) -> bool {
    let mut slots = SLOTS.borrow_mut();
    match slots.get_mut(key) {
        Some(slot) => core::mem::take(&mut slot.unparked),
        None => false,
    }
}

/// Whether `key` should return from `park`: it was unparked, or it is the
/// rump PCI interrupt thread and a device interrupt fired (nobody unparks
/// that thread: an interrupt is an event on a port, seen only by looking).
fn woken(key: ThreadKey) -> bool {
    take_unpark(key) || super::rump_pci::interrupt_arrived(key)
}

fn shared_info_word(offset: usize) -> u32 {
    let address = super::events::shared_info_address() + offset;
    // SAFETY: an aligned 32-bit field of the shared info page, which is
    // mapped for the domain's life; Xen updates it concurrently, hence the
    // atomic load.
    unsafe { AtomicU32::from_ptr(address as *mut u32) }.load(Ordering::Acquire)
}

/// Wall-clock time at Xen system time 0 (`wc_*` in `struct shared_info`,
/// `xen/include/public/xen.h`), in nanoseconds since the epoch.
fn wall_clock_base_ns() -> u64 {
    loop {
        // Odd: Xen is updating; changed: we raced an update.
        let version = shared_info_word(offset_of!(shared_info, wc_version));
        if version & 1 != 0 {
            continue;
        }
        let seconds_low = shared_info_word(offset_of!(shared_info, wc_sec));
        let nanoseconds = shared_info_word(offset_of!(shared_info, wc_nsec));
        let seconds_high = shared_info_word(offset_of!(shared_info, wc_sec_hi));
        if shared_info_word(offset_of!(shared_info, wc_version)) != version {
            continue;
        }
        let seconds = (u64::from(seconds_high) << 32) | u64::from(seconds_low);
        return seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(nanoseconds));
    }
}

fn has_rdrand() -> bool {
    // CPUID leaf 1, ECX bit 30 (Intel SDM vol. 2, CPUID).
    let ecx: u32;
    // SAFETY: cpuid only reads identification registers; rbx, which LLVM
    // reserves, is saved and restored around it.
    unsafe {
        core::arch::asm!(
            "mov {saved}, rbx",
            "cpuid",
            "mov rbx, {saved}",
            saved = out(reg) _,
            inout("eax") 1u32 => _,
            inout("ecx") 0u32 => ecx,
            out("edx") _,
            options(nomem, nostack, preserves_flags),
        );
    }
    ecx & (1 << 30) != 0
}

fn rdrand() -> Option<u64> {
    // The SDM recommends retrying a few times: the carry flag is clear when
    // the generator had no value ready.
    for _ in 0..10 {
        let value: u64;
        let ready: u8;
        // SAFETY: rdrand writes a register and the carry flag; only called
        // after CPUID said the instruction exists.
        unsafe {
            core::arch::asm!("rdrand {value}", "setc {ready}", value = out(reg) value, ready = out(reg_byte) ready, options(nomem, nostack));
        }
        if ready != 0 {
            return Some(value);
        }
    }
    None
}

/// Whether RDRAND exists: asked once.
static RDRAND: Global<Option<bool>> = Global::new(None);

// SAFETY: see the module documentation: one vCPU, and switches happen only
// inside `park` and `exit_thread`.
unsafe impl Host for XenHost {
    fn spawn(&self, _name: &str, entry: Box<dyn FnOnce() + Send>) -> Result<ThreadKey, SpawnError> {
        // The platform's allocator stops the domain rather than return
        // null, so a thread that could not be allocated never gets here.
        let thread = sched::spawn("rump", THREAD_STACK_BYTES, entry);
        // The scheduler reuses the ids of finished threads: whatever was
        // known under this id belonged to a thread that is gone.
        for slot in SLOTS.borrow_mut().iter_mut() {
            if slot.thread == Some(thread) {
                slot.thread = None;
                slot.unparked = false;
            }
        }
        Ok(key_of(thread))
    }

    fn current(&self) -> ThreadKey {
        key_of(sched::current())
    }

    fn park(&self, deadline_ns: Option<u64>) {
        let me = self.current();
        // An unpark that came while this thread ran is seen here at once.
        sched::wait_until(deadline_ns, || self::woken(me));
    }

    fn unpark(&self, thread: ThreadKey) {
        let target = match SLOTS.borrow_mut().get_mut(thread) {
            Some(slot) => {
                slot.unparked = true;
                slot.thread
            }
            None => None,
        };
        if let Some(target) = target {
            sched::wake(target);
        }
    }

    fn exit_thread(&self) -> ! {
        // Ends the scheduler thread where it stands (its stack is freed by
        // the next switch); the thread it woke on its way out (its joiner)
        // was made runnable by `unpark`.
        sched::exit()
    }

    fn monotonic_ns(&self) -> u64 {
        time::monotonic_ns()
    }

    fn wall_clock_ns(&self) -> u64 {
        wall_clock_base_ns().saturating_add(time::monotonic_ns())
    }

    fn console_write(&self, bytes: &[u8]) {
        console::write_str(&String::from_utf8_lossy(bytes));
    }

    fn hardware_random(&self) -> Option<u64> {
        let available = *RDRAND.borrow_mut().get_or_insert_with(has_rdrand);
        if available {
            rdrand()
        } else {
            None
        }
    }

    fn seed_material(&self, sink: &mut dyn FnMut(&[u8])) {
        // Timing jitter: how long round trips into Xen take varies with
        // what the host is doing; the TSC's low bits of many trips are the
        // unpredictable part.
        let mut jitter = [0u8; 256];
        for byte in jitter.iter_mut() {
            let before = super::time::rdtsc();
            super::sched_yield();
            *byte = (super::time::rdtsc().wrapping_sub(before)) as u8;
        }
        sink(&jitter);
        // Values that differ between instances and boots: the domain's
        // UUID (in its `vm` path), name and id, the wall clock and the TSC.
        for node in ["vm", "name", "domid"] {
            if let Ok(value) = XenStore.read(TxId::NONE, node) {
                sink(value.as_bytes());
            }
        }
        sink(&self.wall_clock_ns().to_le_bytes());
        sink(&super::time::rdtsc().to_le_bytes());
        sink(super::COMMAND_LINE.get().as_bytes());
    }

    fn parameter(&self, name: &str) -> Option<String> {
        crate::cmdline::values(super::COMMAND_LINE.get(), name)
            .next()
            .map(String::from)
    }

    fn hostname(&self) -> String {
        if let Ok(name) = XenStore.read(TxId::NONE, "name") {
            if !name.is_empty() {
                return name;
            }
        }
        let domid =
            super::own_domid().map_or_else(|| "unknown".to_string(), |domid| domid.to_string());
        alloc::format!("rump-{domid}")
    }

    fn memory_limit(&self) -> u64 {
        // Three quarters of what the heap has free: the rest stays for the
        // platform (grant mappings, rings, the backends' buffers).
        (mm::heap_free_bytes() as u64 / 4) * 3
    }

    fn exit(&self, status: i32) -> ! {
        if status == RUMPUSER_PANIC {
            shutdown::crash_now()
        }
        shutdown::poweroff()
    }
}
