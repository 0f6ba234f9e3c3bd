//! Time from `vcpu_time_info` (`xen/include/public/xen.h`): Xen publishes a
//! system time stamp and the TSC scale; the guest extrapolates with `rdtsc`.
//! Timeouts use `HYPERVISOR_set_timer_op`, whose expiry raises `VIRQ_TIMER`.

use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use super::abi::{
    TIME_SYSTEM_TIME, TIME_TSC_SHIFT, TIME_TSC_TIMESTAMP, TIME_TSC_TO_SYSTEM_MUL, TIME_VERSION,
    VCPU_INFO_TIME,
};
use super::hypercall::hypercall;
use super::Global;

/// The port `VIRQ_TIMER` is bound to.
static TIMER_PORT: Global<u32> = Global::new(u32::MAX);

fn field32(offset: usize) -> &'static AtomicU32 {
    let address = super::events::shared_info_address() + VCPU_INFO_TIME + offset;
    // SAFETY: inside vcpu_info[0].time of the mapped shared info page,
    // aligned; Xen updates it concurrently, so access is atomic.
    unsafe { AtomicU32::from_ptr(address as *mut u32) }
}

fn field64(offset: usize) -> &'static AtomicU64 {
    let address = super::events::shared_info_address() + VCPU_INFO_TIME + offset;
    // SAFETY: as for `field32`.
    unsafe { AtomicU64::from_ptr(address as *mut u64) }
}

/// The time stamp counter.
pub(crate) fn rdtsc() -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: rdtsc only reads the time stamp counter.
    unsafe {
        core::arch::asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack));
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// Nanoseconds of Xen system time (since the host booted).
pub fn monotonic_ns() -> u64 {
    loop {
        // An odd version means Xen is updating the record; a changed
        // version means we raced an update. Retry in both cases.
        let version = field32(TIME_VERSION).load(Ordering::Acquire);
        if version & 1 != 0 {
            continue;
        }
        let tsc_timestamp = field64(TIME_TSC_TIMESTAMP).load(Ordering::Relaxed);
        let system_time = field64(TIME_SYSTEM_TIME).load(Ordering::Relaxed);
        let multiplier = field32(TIME_TSC_TO_SYSTEM_MUL).load(Ordering::Relaxed);
        let shift_and_flags = field32(TIME_TSC_SHIFT).load(Ordering::Relaxed);
        let tsc = rdtsc();
        fence(Ordering::Acquire);
        if field32(TIME_VERSION).load(Ordering::Acquire) != version {
            continue;
        }
        let shift = shift_and_flags as u8 as i8;
        return system_time.wrapping_add(crate::time::scale_delta(
            tsc.wrapping_sub(tsc_timestamp),
            multiplier,
            shift,
        ));
    }
}

/// Binds the timer VIRQ and stops Xen's default periodic tick (we arm
/// one-shot timeouts only when something waits).
pub fn init() {
    let port = super::events::bind_virq(xen_abi::VIRQ_TIMER).expect("cannot bind VIRQ_TIMER");
    *TIMER_PORT.borrow_mut() = port;
    super::events::keep_unmasked(port);
    super::events::unmask(port);
    // SAFETY: VCPUOP_stop_periodic_timer on vcpu 0 takes no argument.
    unsafe {
        hypercall(
            xen_abi::__HYPERVISOR_vcpu_op,
            u64::from(xen_abi::VCPUOP_stop_periodic_timer),
            0,
            0,
            0,
            0,
        );
    }
}

/// The timer's event channel port.
pub fn timer_port() -> u32 {
    *TIMER_PORT.borrow()
}

/// Arms the one-shot timer for absolute system time `deadline_ns`.
pub fn set_timer(deadline_ns: u64) {
    // SAFETY: set_timer_op takes the deadline by value.
    unsafe {
        hypercall(xen_abi::__HYPERVISOR_set_timer_op, deadline_ns, 0, 0, 0, 0);
    }
}
