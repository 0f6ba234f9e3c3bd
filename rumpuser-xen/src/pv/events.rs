//! Event channels (`xen/include/public/event_channel.h`) over the 2-level
//! pending/mask bitmaps of the shared info page (`xen.h`).
//!
//! Ports follow the delivery discipline of Linux's evtchn device: a port
//! the domain binds starts unmasked; when an event on it is collected, the
//! platform masks it, and whoever handles it unmasks it when ready for more
//! ([`unmask`], `EventChannels::unmask`). The platform's own ports (xenstore,
//! timer), registered with [`keep_unmasked`], are never masked.
//!
//! Upcalls stay masked while the domain runs. The only place they are
//! enabled is `SCHEDOP_block`, which unmasks atomically and blocks until an
//! event is pending; the upcall Xen then delivers runs no Rust code (it just
//! returns into the hypercall stub, see `hypervisor_callback`), and the
//! main loop collects pending ports with [`take_pending`] and runs their
//! handlers in ordinary context.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use super::abi::{
    SHARED_INFO_EVTCHN_MASK, SHARED_INFO_EVTCHN_PENDING, VCPU_INFO_CR2, VCPU_INFO_PENDING_SEL,
    VCPU_INFO_UPCALL_MASK, VCPU_INFO_UPCALL_PENDING,
};
use super::hypercall::{hypercall, hypercall_op};
use super::Global;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The page whose virtual address we remap onto the shared info frame.
static mut SHARED_INFO_PAGE: Page = Page([0; 4096]);

global_asm!(
    r#"
    .section .text.events, "ax"
    .global hypervisor_callback
hypervisor_callback:
    // Xen's bounce frame: rcx, r11, rip, cs, rflags, rsp, ss. Xen has set
    // evtchn_upcall_mask again; the main loop keeps it set. Restore rcx and
    // r11 and return in place (ring 3 to ring 3, so no iret hypercall).
    pop rcx
    pop r11
    or byte ptr [rsp + 8], 3
    or byte ptr [rsp + 32], 3
    iretq
"#
);

unsafe extern "C" {
    fn hypervisor_callback();
}

fn shared_info() -> usize {
    core::ptr::addr_of!(SHARED_INFO_PAGE) as usize
}

fn byte_at(offset: usize) -> &'static AtomicU8 {
    // SAFETY: `offset` is inside the shared info page, mapped for the
    // domain's life; Xen writes it concurrently, so access is atomic only.
    unsafe { AtomicU8::from_ptr((shared_info() + offset) as *mut u8) }
}

fn word_at(offset: usize) -> &'static AtomicU64 {
    // SAFETY: as for `byte_at`; every offset used is 8-byte aligned.
    unsafe { AtomicU64::from_ptr((shared_info() + offset) as *mut u64) }
}

/// Virtual address of the shared info page (vcpu 0's `vcpu_info` is first).
pub fn shared_info_address() -> usize {
    shared_info()
}

/// `vcpu_info[0].arch.cr2`: the faulting address of the last page fault.
pub fn vcpu_cr2() -> u64 {
    word_at(VCPU_INFO_CR2).load(Ordering::Relaxed)
}

/// Maps the shared info page and registers the upcall.
pub fn init_shared_info(shared_info_machine_address: u64) {
    // SAFETY: the static page is never accessed through its original
    // mapping; from here on it aliases the shared info frame, accessed only
    // through atomics.
    let rc = unsafe {
        super::mm::update_va_mapping(shared_info() as u64, shared_info_machine_address | 0x67)
    };
    assert!(rc == 0, "cannot map shared info: {rc}");
}

/// Registers the upcall and the failsafe callback and masks every port.
pub fn init() {
    byte_at(VCPU_INFO_UPCALL_MASK).store(1, Ordering::SeqCst);
    // SAFETY: both addresses are code in the image that follows the PV
    // callback conventions (see the assembly above and `traps`).
    let rc = unsafe {
        hypercall(
            xen_abi::__HYPERVISOR_set_callbacks,
            hypervisor_callback as *const () as u64,
            super::traps::failsafe_address(),
            0,
            0,
            0,
        )
    };
    assert!(rc == 0, "set_callbacks failed: {rc}");
}

/// Issues `EVTCHNOP_<command>` with its argument structure.
///
/// # Safety
///
/// `argument` must be the `struct evtchn_*` (from `xen-abi`) that
/// `command` takes.
unsafe fn event_channel_op<T>(command: u32, argument: &mut T) -> i64 {
    // SAFETY: the caller pairs `command` with its structure.
    unsafe { hypercall_op(xen_abi::__HYPERVISOR_event_channel_op, command, argument) }
}

/// Sends an event on `port`.
pub fn notify_port(port: u32) {
    // SAFETY: EVTCHNOP_send takes a `struct evtchn_send`.
    unsafe { event_channel_op(xen_abi::EVTCHNOP_send, &mut xen_abi::evtchn_send { port }) };
}

/// `EVTCHNOP_bind_interdomain`; returns the local port (unmasked) or Xen's
/// error code.
pub fn bind_interdomain(remote_domid: u16, remote_port: u32) -> Result<u32, i64> {
    let mut argument = xen_abi::evtchn_bind_interdomain {
        remote_dom: remote_domid,
        remote_port,
        local_port: 0,
    };
    // SAFETY: EVTCHNOP_bind_interdomain takes a `struct evtchn_bind_interdomain`.
    let rc = unsafe { event_channel_op(xen_abi::EVTCHNOP_bind_interdomain, &mut argument) };
    if rc != 0 {
        return Err(rc);
    }
    // A recycled port may still carry the mask bit of its previous life.
    unmask(argument.local_port);
    Ok(argument.local_port)
}

/// `EVTCHNOP_alloc_unbound`: a port (unmasked) `remote_domid` may bind to.
pub fn alloc_unbound(remote_domid: u16) -> Result<u32, i64> {
    let mut argument = xen_abi::evtchn_alloc_unbound {
        dom: xen_abi::DOMID_SELF,
        remote_dom: remote_domid,
        port: 0,
    };
    // SAFETY: EVTCHNOP_alloc_unbound takes a `struct evtchn_alloc_unbound`.
    let rc = unsafe { event_channel_op(xen_abi::EVTCHNOP_alloc_unbound, &mut argument) };
    if rc != 0 {
        return Err(rc);
    }
    unmask(argument.port);
    Ok(argument.port)
}

/// `EVTCHNOP_bind_pirq`: binds physical irq `pirq` to a fresh port, which
/// may be shared with other domains when `flags` says so. Returns the port
/// or Xen's error code.
pub fn bind_pirq(pirq: u32, flags: u32) -> Result<u32, i64> {
    let mut argument = xen_abi::evtchn_bind_pirq {
        pirq,
        flags,
        port: 0,
    };
    // SAFETY: EVTCHNOP_bind_pirq takes a `struct evtchn_bind_pirq`.
    let rc = unsafe { event_channel_op(xen_abi::EVTCHNOP_bind_pirq, &mut argument) };
    if rc != 0 {
        return Err(rc);
    }
    Ok(argument.port)
}

/// `EVTCHNOP_bind_virq` on vcpu 0.
pub fn bind_virq(virq: u32) -> Result<u32, i64> {
    let mut argument = xen_abi::evtchn_bind_virq {
        virq,
        vcpu: 0,
        port: 0,
    };
    // SAFETY: EVTCHNOP_bind_virq takes a `struct evtchn_bind_virq`.
    let rc = unsafe { event_channel_op(xen_abi::EVTCHNOP_bind_virq, &mut argument) };
    if rc != 0 {
        return Err(rc);
    }
    Ok(argument.port)
}

/// `EVTCHNOP_close`.
pub fn close(port: u32) {
    // SAFETY: EVTCHNOP_close takes a `struct evtchn_close`.
    unsafe { event_channel_op(xen_abi::EVTCHNOP_close, &mut xen_abi::evtchn_close { port }) };
}

fn bit(port: u32) -> (usize, u64) {
    ((port / 64) as usize * 8, 1u64 << (port % 64))
}

/// Sets the mask bit of `port`.
pub fn mask(port: u32) {
    if port >= 4096 {
        return;
    }
    let (offset, bit) = bit(port);
    word_at(SHARED_INFO_EVTCHN_MASK + offset).fetch_or(bit, Ordering::SeqCst);
}

/// Clears the mask bit of `port`; an event that arrived while it was
/// masked is then seen by the next [`take_pending`].
///
/// Xen clears the bit itself: its `EVTCHNOP_unmask` (`evtchn_2l_unmask`)
/// sets the port's selector bit and raises the upcall only if *it* found
/// the mask bit set and the port pending. Clearing the bit here first
/// would strand such an event: pending, but with no selector bit, so it is
/// never scanned, and every later event on the port is swallowed because
/// the port is already pending.
pub fn unmask(port: u32) {
    if port >= 4096 {
        return;
    }
    // SAFETY: EVTCHNOP_unmask takes a `struct evtchn_unmask`.
    unsafe {
        event_channel_op(
            xen_abi::EVTCHNOP_unmask,
            &mut xen_abi::evtchn_unmask { port },
        )
    };
}

/// Ports collected from the shared info page but not yet handled.
static COLLECTED: Global<[u64; 64]> = Global::new([0; 64]);
/// The platform's own ports, never masked on delivery.
static PLATFORM_PORTS: Global<[u64; 64]> = Global::new([0; 64]);

/// Exempts `port` from masking on delivery (xenstore, timer).
pub fn keep_unmasked(port: u32) {
    if port < 4096 {
        PLATFORM_PORTS.borrow_mut()[(port / 64) as usize] |= 1 << (port % 64);
    }
}

/// Moves every pending, unmasked port from the shared info page into
/// [`COLLECTED`], clearing its pending bit there and masking it unless it
/// is one of the platform's own. Returns whether any port had fired.
///
/// Whoever collects (the main loop, the rump kernel's PCI interrupt
/// thread, a thread waiting for a pcifront or xenstore reply) may collect
/// a port another thread waits for, so every waiting scheduler thread is
/// made to look again: otherwise the port could sit in `COLLECTED` while
/// its consumer stays counted as waiting and the vCPU blocks.
fn collect() -> bool {
    let mut collected = COLLECTED.borrow_mut();
    let platform_ports = PLATFORM_PORTS.borrow();
    let mut any = false;
    scan(|port| {
        let (word, bit) = ((port / 64) as usize, 1u64 << (port % 64));
        collected[word] |= bit;
        any = true;
        if platform_ports[word] & bit == 0 {
            mask(port);
        }
    });
    drop((collected, platform_ports));
    if any {
        super::sched::wake_all();
    }
    any
}

/// Calls `handle` for every port that fired since the last call.
pub fn take_pending(mut handle: impl FnMut(u32)) {
    collect();
    let ports = core::mem::replace(&mut *COLLECTED.borrow_mut(), [0; 64]);
    for (word, &bits) in ports.iter().enumerate() {
        let mut bits = bits;
        while bits != 0 {
            handle(word as u32 * 64 + bits.trailing_zeros());
            bits &= bits - 1;
        }
    }
}

/// Takes the ports that fired since the last look for which `claim`
/// returns true, leaving the others for the next [`take_pending`]: how a
/// second consumer (the rump kernel's PCI interrupt thread) takes its own
/// ports without stealing the main loop's.
pub fn take_pending_where(mut claim: impl FnMut(u32) -> bool) {
    collect();
    let mut collected = COLLECTED.borrow_mut();
    for (word, bits) in collected.iter_mut().enumerate() {
        let mut remaining = *bits;
        while remaining != 0 {
            let bit = remaining & remaining.wrapping_neg();
            remaining &= remaining - 1;
            if claim(word as u32 * 64 + bit.trailing_zeros()) {
                *bits &= !bit;
            }
        }
    }
}

/// Whether a port fired that nobody has taken yet (collecting what is
/// pending first).
pub fn any_pending() -> bool {
    collect();
    COLLECTED.borrow().iter().any(|&bits| bits != 0)
}

/// Blocks until some event arrives, keeping what fired for the next
/// [`take_pending`]. For code that waits on shared memory (the xenstore
/// and console rings) and re-checks it after every wakeup.
///
/// Returns at once if an event fired since the last look: collecting it
/// clears its pending bit and the vCPU's upcall flag, so `SCHEDOP_block`
/// would no longer see it, and the memory the caller waits on may already
/// hold what the event announced (a xenstore reply that came in between
/// the caller's check and this call).
pub fn wait_for_any_event() {
    if !collect() {
        block();
    }
}

fn scan(mut handle: impl FnMut(u32)) {
    byte_at(VCPU_INFO_UPCALL_PENDING).store(0, Ordering::SeqCst);
    let selector = word_at(VCPU_INFO_PENDING_SEL).swap(0, Ordering::SeqCst);
    let mut words = selector;
    while words != 0 {
        let word = words.trailing_zeros() as usize;
        words &= words - 1;
        let pending = word_at(SHARED_INFO_EVTCHN_PENDING + word * 8);
        let masked = word_at(SHARED_INFO_EVTCHN_MASK + word * 8).load(Ordering::SeqCst);
        let ready = pending.load(Ordering::SeqCst) & !masked;
        if ready == 0 {
            continue;
        }
        pending.fetch_and(!ready, Ordering::SeqCst);
        let mut bits = ready;
        while bits != 0 {
            let port = word as u32 * 64 + bits.trailing_zeros();
            bits &= bits - 1;
            handle(port);
        }
    }
}

/// Blocks the vCPU until an event arrives (or returns at once if one is
/// already pending). Upcalls are masked again on return.
pub fn block() {
    // SAFETY: SCHEDOP_block takes no argument; with upcalls masked it
    // unmasks them and checks for pending events atomically with blocking.
    unsafe {
        hypercall(
            xen_abi::__HYPERVISOR_sched_op,
            u64::from(xen_abi::SCHEDOP_block),
            0,
            0,
            0,
            0,
        );
    }
    byte_at(VCPU_INFO_UPCALL_MASK).store(1, Ordering::SeqCst);
}
