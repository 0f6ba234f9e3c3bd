//! The rump kernel's PCI host on Xen: [`PciHost`] over the platform's
//! PCI passthrough layer ([`super::pci`]), so the `rumpcomp_pci_*`
//! hypercalls (`crate::rumpuser::pci`) reach the functions dom0 passes to
//! the domain.
//!
//! * Config space: pcifront requests (`xen/io/pciif.h`). The rump kernel
//!   names functions by the addresses pciback shows us (`vdev-N`); one not
//!   in pciback's list is answered "no such function" without asking dom0,
//!   so NetBSD's scan of every bus/device/function costs no round trips.
//! * BARs: mapped uncached by [`super::pci::bar::map_range`], as for the
//!   platform's own drivers (`update_va_mapping`, which Xen allows for the
//!   machine pages the toolstack gave the domain `iomem` permission to).
//! * Interrupts: the pirq pciback shows as the interrupt line register,
//!   bound shared (INTx) with [`super::pci::irq`]. The pirq's port fires
//!   into the platform's event collection; the PCI interrupt thread of
//!   `crate::rumpuser::pci` parks through [`super::rumpuser_host`], whose
//!   park asks `interrupt_arrived`. That takes only the ports
//!   [`super::pci::note_event`] knows as device interrupts and leaves the
//!   rest for the main loop's `pv::wait`; when `pv::wait` takes a device
//!   interrupt first, it records it the same way, and collecting the port
//!   woke the waiting threads, so the interrupt thread sees it either way.
//! * DMA memory: buffers of [`super::pci::dma`] (pages traded for 2 MiB
//!   machine-contiguous extents with `XENMEM_exchange`), placed at the
//!   alignment and boundary asked for by taking a larger buffer when the
//!   first one does not happen to be placed right.
//! * I/O ports: a 64-bit PV kernel runs in ring 3, so `in`/`out` fault into
//!   Xen, which performs them for a domain whose virtual IOPL covers its
//!   kernel (`PHYSDEVOP_set_iopl`, `physdev.h`) and only for ports in the
//!   domain's I/O port permission, which libxl grants for the I/O BARs of
//!   the functions passed through (`xc_domain_ioport_permission`).
//!
//! Only compiled and clippy-checked: the conformance tests drive the
//! portable layer with a fake host, and no rump kernel runs on Xen yet.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use pcidev::{Bdf, DmaBuffer};

use super::hypercall::hypercall_op;
use super::pci::{bar, dma, front, irq, XenDmaBuffer};
use super::{events, mm, Global};
use crate::layout::{virt_to_pfn, PAGE_SIZE};
use crate::pci::{OpTarget, PciOp};
use crate::rumpuser::pci::{
    within_boundary, DmaMemory, InterruptId, PciFunction, PciHost, PciHostError,
};
use crate::rumpuser::ThreadKey;

/// The PCI host; `crate::rumpuser::pci` installs it on first use.
pub struct XenPci;

/// The one instance.
pub static XEN_PCI: XenPci = XenPci;

/// Interrupts bound for the rump kernel. An [`InterruptId`] is an index.
struct Interrupts {
    bound: Vec<irq::BoundPirq>,
    /// Per interrupt: fired and not yet taken.
    fired: Vec<bool>,
    /// The thread to wake when one fires.
    waiter: Option<ThreadKey>,
}

static INTERRUPTS: Global<Interrupts> = Global::new(Interrupts {
    bound: Vec::new(),
    fired: Vec::new(),
    waiter: None,
});

/// DMA buffers handed out, by the virtual address given to the rump
/// kernel (which may lie inside the buffer, past the padding).
static DMA: Global<BTreeMap<usize, XenDmaBuffer>> = Global::new(BTreeMap::new());

/// The request target of `function`, if pciback lends it to us.
fn target(function: PciFunction) -> Result<OpTarget, PciHostError> {
    let address = Bdf {
        segment: 0,
        bus: function.bus,
        device: function.device,
        function: function.function,
    };
    let assigned = front::with_front(|front| {
        front
            .devices()
            .iter()
            .any(|device| device.virtual_address == address)
    })
    .map_err(|_| PciHostError::NoSuchFunction)?;
    if !assigned {
        return Err(PciHostError::NoSuchFunction);
    }
    Ok(OpTarget::from(address))
}

fn perform(op: &PciOp) -> Result<front::Reply, PciHostError> {
    match front::with_front(|front| front.perform(op)) {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(error)) => {
            log::warn!("rump pci: pciback request failed: {error:?}");
            Err(PciHostError::Refused)
        }
        Err(error) => {
            log::warn!("rump pci: pcifront unusable: {error}");
            Err(PciHostError::Refused)
        }
    }
}

/// Moves device interrupts from the platform's event collection into
/// [`Interrupts::fired`].
fn collect_interrupts() {
    // Only device interrupts: other ports stay for the main loop.
    events::take_pending_where(super::pci::note_event);
    let mut interrupts = INTERRUPTS.borrow_mut();
    let Interrupts { bound, fired, .. } = &mut *interrupts;
    for (index, pirq) in bound.iter().enumerate() {
        if pirq.take_fired() {
            fired[index] = true;
        }
    }
}

/// Whether `thread` is the one waiting for rump PCI interrupts and one has
/// fired; called by the rumpuser host's `park`. Collects pending event
/// channel ports when it is that thread.
pub(crate) fn interrupt_arrived(thread: ThreadKey) -> bool {
    if INTERRUPTS.borrow().waiter != Some(thread) {
        return false;
    }
    collect_interrupts();
    INTERRUPTS.borrow().fired.contains(&true)
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

// SAFETY: BAR mappings come from `pv::pci::bar::map_range` (page by page,
// the machine range asked for) and are kept for the domain's life; DMA
// memory comes from `pv::pci::dma` (machine-contiguous, ours until freed),
// at the virtual address that module mapped it at; translations read the
// p2m table.
unsafe impl PciHost for XenPci {
    fn config_read(&self, function: PciFunction, register: u16) -> Result<u32, PciHostError> {
        let target = target(function)?;
        perform(&PciOp::config_read(target, register, 4)).map(|reply| reply.value)
    }

    fn config_write(
        &self,
        function: PciFunction,
        register: u16,
        value: u32,
    ) -> Result<(), PciHostError> {
        let target = target(function)?;
        perform(&PciOp::config_write(target, register, 4, value)).map(|_| ())
    }

    fn map_bar(&self, machine_address: u64, length: u64) -> Result<usize, PciHostError> {
        // The mapping is kept for the domain's life, as `pv::pci`'s own.
        match bar::map_range(machine_address, length) {
            Ok(mapped) => Ok(mapped.address() as usize),
            Err(bar::MapError::OutOfMemory | bar::MapError::BadLength) => {
                Err(PciHostError::OutOfMemory)
            }
            Err(bar::MapError::BadAddress) => Err(PciHostError::Refused),
            Err(bar::MapError::Refused(rc)) => {
                log::warn!(
                    "rump pci: Xen refused to map {machine_address:#x} ({rc}); no iomem permission?"
                );
                Err(PciHostError::Refused)
            }
        }
    }

    fn bind_interrupt(&self, function: PciFunction, line: u8) -> Result<InterruptId, PciHostError> {
        target(function)?;
        // pciback shows the pirq of the legacy line as the interrupt line
        // register; the line may be shared with other functions.
        let pirq = irq::bind(u32::from(line), true).map_err(|rc| {
            log::warn!("rump pci: cannot bind pirq {line}: {rc}");
            PciHostError::Refused
        })?;
        let mut interrupts = INTERRUPTS.borrow_mut();
        interrupts.bound.push(pirq);
        interrupts.fired.push(false);
        Ok(interrupts.bound.len() - 1)
    }

    fn watch_interrupts(&self, waiter: ThreadKey) {
        INTERRUPTS.borrow_mut().waiter = Some(waiter);
    }

    fn take_fired(&self, fired: &mut dyn FnMut(InterruptId)) {
        collect_interrupts();
        let taken: Vec<InterruptId> = {
            let mut interrupts = INTERRUPTS.borrow_mut();
            interrupts
                .fired
                .iter_mut()
                .enumerate()
                .filter_map(|(index, flag)| core::mem::take(flag).then_some(index))
                .collect()
        };
        for interrupt in taken {
            fired(interrupt);
        }
    }

    fn unmask_interrupt(&self, interrupt: InterruptId) {
        if let Some(pirq) = INTERRUPTS.borrow().bound.get(interrupt) {
            pirq.unmask();
        }
    }

    fn dma_allocate(
        &self,
        length: usize,
        alignment: usize,
        boundary: usize,
    ) -> Result<DmaMemory, PciHostError> {
        let page = PAGE_SIZE as usize;
        let placed = |machine: u64| {
            machine.is_multiple_of(alignment as u64) && within_boundary(machine, length, boundary)
        };
        // A buffer of just the length is often placed right already (a
        // fresh extent starts 2 MiB-aligned).
        let exact = dma::allocate(length, page).map_err(|_| PciHostError::OutOfMemory)?;
        let (buffer, start) = if placed(exact.bus_address().0) {
            let start = exact.bus_address().0;
            (exact, start)
        } else {
            dma::free(exact);
            // Aligning the start to the larger of alignment and boundary
            // honours both (the boundary is at least the length).
            let placement = alignment.max(boundary);
            let padded = length
                .checked_add(placement - page)
                .ok_or(PciHostError::OutOfMemory)?;
            let buffer = dma::allocate(padded, page).map_err(|_| PciHostError::OutOfMemory)?;
            let start = buffer.bus_address().0.next_multiple_of(placement as u64);
            (buffer, start)
        };
        // Machine-contiguous and mapped in order: the offset is the same
        // on both sides.
        let virtual_address =
            (buffer.virtual_address() + (start - buffer.bus_address().0)) as usize;
        DMA.borrow_mut().insert(virtual_address, buffer);
        Ok(DmaMemory {
            virtual_address,
            machine_address: start,
        })
    }

    unsafe fn dma_free(&self, memory: DmaMemory, _length: usize) {
        let buffer = DMA.borrow_mut().remove(&memory.virtual_address);
        if let Some(buffer) = buffer {
            dma::free(buffer);
        }
    }

    fn virt_to_mach(&self, virtual_address: usize) -> Option<u64> {
        let pfn = virt_to_pfn(virtual_address as u64)?;
        Some((mm::pfn_to_mfn(pfn) << 12) | (virtual_address as u64 & (PAGE_SIZE - 1)))
    }

    fn enable_io_ports(&self) -> Result<(), PciHostError> {
        // IOPL 1 covers a PV guest kernel (Xen treats it as ring 1 unless
        // the architectural_iopl assist is on); which ports it may use is
        // still Xen's I/O port permission of the domain.
        let mut argument = xen_abi::physdev_set_iopl { iopl: 1 };
        // SAFETY: PHYSDEVOP_set_iopl takes a `struct physdev_set_iopl`.
        let rc = unsafe { physdev_op(xen_abi::PHYSDEVOP_set_iopl, &mut argument) };
        if rc != 0 {
            log::warn!("rump pci: PHYSDEVOP_set_iopl refused: {rc}");
            return Err(PciHostError::Refused);
        }
        Ok(())
    }
}
