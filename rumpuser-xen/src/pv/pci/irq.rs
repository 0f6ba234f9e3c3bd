//! Device interrupts as event channels: a pirq (what pciback returns for
//! an MSI-X entry or MSI, or the INTx line) bound with
//! `EVTCHNOP_bind_pirq` (`event_channel.h`), acknowledged with
//! `PHYSDEVOP_eoi` (`physdev.h`).
//!
//! Delivery follows the platform's port discipline (`pv::events`): when
//! the port fires, the main loop's collection masks it and
//! [`note_event`] records it here; the device's `take_fired` takes the
//! record, and its `unmask` unmasks the port and, if Xen says the pirq
//! needs it (`XENIRQSTAT_needs_eoi`, which Xen reports for every pirq of a
//! guest that has not registered a pirq EOI map), issues the EOI that lets
//! Xen unmask the interrupt at its source.

use crate::pv::hypercall::hypercall;
use crate::pv::{events, Global};

/// Ports bound to device interrupts, one bit per port.
static DEVICE_PORTS: Global<[u64; 64]> = Global::new([0; 64]);
/// Ports of [`DEVICE_PORTS`] that fired and were not yet taken.
static FIRED: Global<[u64; 64]> = Global::new([0; 64]);

fn bit(port: u32) -> Option<(usize, u64)> {
    (port < 4096).then(|| ((port / 64) as usize, 1u64 << (port % 64)))
}

/// Called by the main loop for every port that fired: records it if it is
/// a device interrupt. The loop still reports the wakeup, so the engines
/// are polled and their drivers take the interrupt.
pub fn note_event(port: u32) {
    if let Some((word, bit)) = bit(port) {
        if DEVICE_PORTS.borrow()[word] & bit != 0 {
            FIRED.borrow_mut()[word] |= bit;
        }
    }
}

/// One bound interrupt.
#[derive(Debug)]
pub struct BoundPirq {
    pirq: u32,
    port: u32,
    needs_eoi: bool,
}

fn physdev_op<T>(command: u32, argument: &mut T) -> i64 {
    // SAFETY: every caller pairs `command` with its `struct physdev_*`,
    // living on the caller's stack for the call.
    unsafe {
        hypercall(
            xen_abi::__HYPERVISOR_physdev_op,
            u64::from(command),
            argument as *mut T as u64,
            0,
            0,
            0,
        )
    }
}

/// Binds `pirq` to a fresh port, unmasked. `shared` for a legacy INTx line
/// other devices may also raise.
pub fn bind(pirq: u32, shared: bool) -> Result<BoundPirq, i64> {
    let mut argument = xen_abi::evtchn_bind_pirq {
        pirq,
        flags: if shared {
            xen_abi::BIND_PIRQ__WILL_SHARE
        } else {
            0
        },
        port: 0,
    };
    // SAFETY: EVTCHNOP_bind_pirq with its structure on our stack.
    let rc = unsafe {
        hypercall(
            xen_abi::__HYPERVISOR_event_channel_op,
            u64::from(xen_abi::EVTCHNOP_bind_pirq),
            &mut argument as *mut _ as u64,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(rc);
    }
    let port = argument.port;
    // A port outside the bitmaps could never report its interrupt.
    let Some((word, bit)) = bit(port) else {
        events::close(port);
        return Err(-28);
    };
    let mut query = xen_abi::physdev_irq_status_query {
        irq: pirq,
        flags: 0,
    };
    let needs_eoi = physdev_op(xen_abi::PHYSDEVOP_irq_status_query, &mut query) != 0
        || query.flags & xen_abi::XENIRQSTAT_needs_eoi != 0;
    DEVICE_PORTS.borrow_mut()[word] |= bit;
    FIRED.borrow_mut()[word] &= !bit;
    events::unmask(port);
    log::debug!("pci: pirq {pirq} bound to port {port} (needs EOI: {needs_eoi})");
    Ok(BoundPirq {
        pirq,
        port,
        needs_eoi,
    })
}

impl BoundPirq {
    /// Takes the record that the interrupt fired, if any.
    pub fn take_fired(&self) -> bool {
        let Some((word, bit)) = bit(self.port) else {
            return false;
        };
        let mut fired = FIRED.borrow_mut();
        let was = fired[word] & bit != 0;
        fired[word] &= !bit;
        was
    }

    /// Lets the interrupt fire again.
    pub fn unmask(&self) {
        events::unmask(self.port);
        if self.needs_eoi {
            let mut eoi = xen_abi::physdev_eoi { irq: self.pirq };
            let rc = physdev_op(xen_abi::PHYSDEVOP_eoi, &mut eoi);
            if rc != 0 {
                log::warn!("pci: EOI of pirq {} failed: {rc}", self.pirq);
            }
        }
    }

    /// Closes the port; no more events come from it.
    pub fn unbind(self) {
        if let Some((word, bit)) = bit(self.port) {
            DEVICE_PORTS.borrow_mut()[word] &= !bit;
            FIRED.borrow_mut()[word] &= !bit;
        }
        events::close(self.port);
    }
}
