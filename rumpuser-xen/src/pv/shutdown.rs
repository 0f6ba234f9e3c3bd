//! Leaving the domain: `SCHEDOP_shutdown` (`xen/include/public/sched.h`).

use super::abi::consts;
use super::hypercall::hypercall;

fn shutdown(reason: u32) -> ! {
    loop {
        let mut argument = reason;
        // SAFETY: `struct sched_shutdown` is one u32, on our stack.
        unsafe {
            hypercall(
                consts::HYPERVISOR_SCHED_OP,
                consts::SCHEDOP_SHUTDOWN,
                &mut argument as *mut u32 as u64,
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
    shutdown(consts::SHUTDOWN_POWEROFF)
}

/// Asks the toolstack to restart the domain (`on_reboot`).
pub fn reboot() -> ! {
    log::info!("rumpuser-xen: rebooting");
    shutdown(consts::SHUTDOWN_REBOOT)
}

/// Reports a crash (`on_crash`), without logging: the caller already
/// wrote the report, and the logger may be what failed.
pub fn crash_now() -> ! {
    shutdown(consts::SHUTDOWN_CRASH)
}
