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

use crate::pv::hypercall::hypercall_op;
use crate::pv::{events, Global};

/// Ports bound to device interrupts, one bit per port.
static DEVICE_PORTS: Global<[u64; 64]> = Global::new([0; 64]);
/// Ports of [`DEVICE_PORTS`] that fired and were not yet taken.
static FIRED: Global<[u64; 64]> = Global::new([0; 64]);

fn bit(port: u32) -> Option<(usize, u64)> {
    (port < 4096).then(|| ((port / 64) as usize, 1u64 << (port % 64)))
}

/// Called for every port that fired: records it if it is a device
/// interrupt, and says whether it was. The main loop still reports the
/// wakeup, so the engines are polled and their drivers take the interrupt.
pub fn note_event(port: u32) -> bool {
    if let Some((word, bit)) = bit(port) {
        if DEVICE_PORTS.borrow()[word] & bit != 0 {
            FIRED.borrow_mut()[word] |= bit;
            return true;
        }
    }
    false
}

/// One bound interrupt.
#[derive(Debug)]
pub struct BoundPirq {
    pirq: u32,
    port: u32,
    needs_eoi: bool,
}

/// Issues `PHYSDEVOP_<command>` with its argument structure.
///
/// # Safety
///
/// `argument` must be the `struct physdev_*` that `command` takes.
unsafe fn physdev_op<T>(command: u32, argument: &mut T) -> i64 {
    // SAFETY: the caller pairs `command` with its structure.
    unsafe { hypercall_op(xen_abi::__HYPERVISOR_physdev_op, command, argument) }
}

/// Binds `pirq` to a fresh port, unmasked. `shared` for a legacy INTx line
/// other devices may also raise.
pub fn bind(pirq: u32, shared: bool) -> Result<BoundPirq, i64> {
    let flags = if shared {
        xen_abi::BIND_PIRQ__WILL_SHARE
    } else {
        0
    };
    let port = events::bind_pirq(pirq, flags)?;
    // A port outside the bitmaps could never report its interrupt.
    let Some((word, bit)) = bit(port) else {
        events::close(port);
        return Err(-28);
    };
    let mut query = xen_abi::physdev_irq_status_query {
        irq: pirq,
        flags: 0,
    };
    // SAFETY: PHYSDEVOP_irq_status_query takes a `struct physdev_irq_status_query`.
    let needs_eoi = unsafe { physdev_op(xen_abi::PHYSDEVOP_irq_status_query, &mut query) } != 0
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
            // SAFETY: PHYSDEVOP_eoi takes a `struct physdev_eoi`.
            let rc = unsafe { physdev_op(xen_abi::PHYSDEVOP_eoi, &mut eoi) };
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
