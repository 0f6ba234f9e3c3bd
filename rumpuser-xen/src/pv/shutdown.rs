//! Leaving the domain: `SCHEDOP_shutdown` (`xen/include/public/sched.h`).

use super::hypercall::hypercall;

fn shutdown(reason: u32) -> ! {
    loop {
        let mut argument = xen_abi::sched_shutdown { reason };
        // SAFETY: the argument is a `struct sched_shutdown` on our stack.
        unsafe {
            hypercall(
                xen_abi::__HYPERVISOR_sched_op,
                u64::from(xen_abi::SCHEDOP_shutdown),
                &mut argument as *mut xen_abi::sched_shutdown as u64,
                0,
                0,
                0,
            );
        }
    }
}

/// Stops the domain: Xen tears it down (`on_poweroff`).
pub fn poweroff() -> ! {
    log::info!("rumpuser-xen: powering off");
    shutdown(xen_abi::SHUTDOWN_poweroff)
}

/// Asks the toolstack to restart the domain (`on_reboot`).
pub fn reboot() -> ! {
    log::info!("rumpuser-xen: rebooting");
    shutdown(xen_abi::SHUTDOWN_reboot)
}

/// Reports a crash (`on_crash`), without logging: the caller already
/// wrote the report, and the logger may be what failed.
pub fn crash_now() -> ! {
    shutdown(xen_abi::SHUTDOWN_crash)
}
