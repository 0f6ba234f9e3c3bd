//! A fake PCI host for the `rumpcomp_pci_*` tests: functions with config
//! space in memory, BARs backed by ordinary memory, interrupts the test
//! fires by hand, and a DMA allocator that places every allocation as
//! badly as its arguments allow, so that a wrong alignment or boundary
//! passed down by the layer shows up in the machine addresses.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::HashMap;
use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::sync::{Mutex, MutexGuard};

use rumpuser_xen::rumpuser::pci::{
    DmaMemory, InterruptId, PciFunction, PciHost, PciHostError, RumpcompPciDmaseg,
};
use rumpuser_xen::rumpuser::{Host, ThreadKey};

use super::StdHost;

/// The PCI entry points, declared from NetBSD's
/// `sys/rump/dev/lib/libpci/pci_user.h` as `librumpdev_pci` sees them.
pub mod c {
    use super::*;

    extern "C" {
        pub fn rumpcomp_pci_map(addr: c_ulong, len: c_ulong) -> *mut c_void;
        pub fn rumpcomp_pci_confread(
            bus: c_uint,
            dev: c_uint,
            fun: c_uint,
            reg: c_int,
            value: *mut c_uint,
        ) -> c_int;
        pub fn rumpcomp_pci_confwrite(
            bus: c_uint,
            dev: c_uint,
            fun: c_uint,
            reg: c_int,
            value: c_uint,
        ) -> c_int;
        pub fn rumpcomp_pci_irq_map(
            bus: c_uint,
            device: c_uint,
            fun: c_uint,
            intrline: c_int,
            cookie: c_uint,
        ) -> c_int;
        pub fn rumpcomp_pci_irq_establish(
            cookie: c_uint,
            handler: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
            data: *mut c_void,
        ) -> *mut c_void;
        pub fn rumpcomp_pci_dmalloc(
            size: usize,
            align: usize,
            pap: *mut c_ulong,
            vap: *mut c_ulong,
        ) -> c_int;
        pub fn rumpcomp_pci_dmafree(vaddr: c_ulong, size: usize);
        pub fn rumpcomp_pci_dmamem_map(
            dss: *mut RumpcompPciDmaseg,
            nseg: usize,
            totlen: usize,
            vap: *mut *mut c_void,
        ) -> c_int;
        pub fn rumpcomp_pci_virt_to_mach(virt: *mut c_void) -> c_ulong;
        pub fn rumpcomp_pci_iospace_init() -> c_int;
    }
}

/// Fake DMA memory's machine address is its virtual address plus this
/// (a multiple of every alignment tested, so alignment carries over).
pub const DMA_MACHINE_OFFSET: u64 = 1 << 44;
/// Other memory's machine address is its virtual address plus this.
pub const OTHER_MACHINE_OFFSET: u64 = 1 << 45;
/// Each DMA allocation gets an arena this large (plus its length), aligned
/// to half of it; allocations are placed around the arena's middle.
const ARENA_HALF: usize = 4 << 20;

/// Something the fake saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PciEvent {
    /// `bind_interrupt(function, line)` gave interrupt `.2`.
    Bound(PciFunction, u8, InterruptId),
    /// The test fired the interrupt of `line`.
    Fired(u8),
    /// A handler ran (noted by the test's handler): its tag.
    Handled(usize),
    /// `unmask_interrupt`.
    Unmasked(InterruptId),
}

struct Bar {
    machine_address: u64,
    registers: &'static mut [u8],
}

struct Allocation {
    arena: usize,
    layout: Layout,
    memory: DmaMemory,
    length: usize,
}

#[derive(Default)]
struct FakeState {
    config: HashMap<PciFunction, Vec<u32>>,
    config_writes: Vec<(PciFunction, u16, u32)>,
    bars: Vec<Bar>,
    map_calls: Vec<(u64, u64)>,
    bound: Vec<u8>,
    pending: Vec<InterruptId>,
    masked: Vec<bool>,
    waiter: Option<ThreadKey>,
    events: Vec<PciEvent>,
    dma: Vec<Allocation>,
    dma_requests: Vec<(usize, usize, usize)>,
    freed: Vec<(DmaMemory, usize)>,
    misplace_dma: bool,
    io_ports_refused: bool,
    io_port_calls: usize,
    violations: Vec<String>,
}

/// The fake PCI host.
pub struct FakePci {
    host: &'static StdHost,
    state: Mutex<FakeState>,
}

impl FakePci {
    /// A fake with no functions, for `host` (which it wakes). Leaked, like
    /// the host.
    pub fn new(host: &'static StdHost) -> &'static FakePci {
        Box::leak(Box::new(FakePci {
            host,
            state: Mutex::new(FakeState::default()),
        }))
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds function `bus`/`device`/`function` with vendor and device id;
    /// the rest of its config space reads zero.
    pub fn add_function(&self, bus: u8, device: u8, function: u8, vendor: u16, id: u16) {
        let mut space = vec![0u32; 1024];
        space[0] = u32::from(id) << 16 | u32::from(vendor);
        self.state().config.insert(
            PciFunction {
                bus,
                device,
                function,
            },
            space,
        );
    }

    /// The config space word at `register` of a function, as the fake
    /// holds it.
    pub fn config_word(&self, function: PciFunction, register: u16) -> u32 {
        self.state().config[&function][usize::from(register / 4)]
    }

    /// Config space writes seen.
    pub fn config_writes(&self) -> Vec<(PciFunction, u16, u32)> {
        self.state().config_writes.clone()
    }

    /// Adds device memory of `length` bytes at machine address
    /// `machine_address`; returns where the fake keeps its bytes.
    pub fn add_bar(&self, machine_address: u64, length: usize) -> usize {
        let registers: &'static mut [u8] = Box::leak(vec![0u8; length].into_boxed_slice());
        let address = registers.as_ptr() as usize;
        self.state().bars.push(Bar {
            machine_address,
            registers,
        });
        address
    }

    /// `map_bar` calls seen.
    pub fn map_calls(&self) -> Vec<(u64, u64)> {
        self.state().map_calls.clone()
    }

    /// Fires the interrupt bound for `line`, as a device raising it.
    pub fn fire(&self, line: u8) {
        let waiter = {
            let mut state = self.state();
            state.events.push(PciEvent::Fired(line));
            let Some(interrupt) = state.bound.iter().position(|&bound| bound == line) else {
                state
                    .violations
                    .push(format!("line {line} fired but was never bound"));
                return;
            };
            if !state.pending.contains(&interrupt) {
                state.pending.push(interrupt);
            }
            if state.masked[interrupt] {
                // Delivered when unmasked.
                return;
            }
            state.waiter
        };
        if let Some(waiter) = waiter {
            self.host.unpark(waiter);
        }
    }

    /// Notes an event (for handlers of the tests).
    pub fn note(&self, event: PciEvent) {
        self.state().events.push(event);
    }

    /// Everything seen so far.
    pub fn events(&self) -> Vec<PciEvent> {
        self.state().events.clone()
    }

    /// DMA allocations live now: (virtual address, machine address,
    /// length).
    pub fn live_dma(&self) -> Vec<(usize, u64, usize)> {
        self.state()
            .dma
            .iter()
            .map(|allocation| {
                (
                    allocation.memory.virtual_address,
                    allocation.memory.machine_address,
                    allocation.length,
                )
            })
            .collect()
    }

    /// `dma_allocate` calls seen: (length, alignment, boundary).
    pub fn dma_requests(&self) -> Vec<(usize, usize, usize)> {
        self.state().dma_requests.clone()
    }

    /// `dma_free` calls seen.
    pub fn freed(&self) -> Vec<(DmaMemory, usize)> {
        self.state().freed.clone()
    }

    /// Makes `dma_allocate` break its promise: the memory is placed a page
    /// off the alignment asked for.
    pub fn misplace_dma(&self) {
        self.state().misplace_dma = true;
    }

    /// Makes `enable_io_ports` fail.
    pub fn refuse_io_ports(&self) {
        self.state().io_ports_refused = true;
    }

    /// How often `enable_io_ports` was called.
    pub fn io_port_calls(&self) -> usize {
        self.state().io_port_calls
    }

    /// Broken rules the fake noticed.
    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }
}

fn within_boundary(address: u64, length: usize, boundary: usize) -> bool {
    boundary == 0 || address / boundary as u64 == (address + length as u64 - 1) / boundary as u64
}

// SAFETY: BAR mappings point into leaked buffers that live for the
// process; DMA memory is an arena of its own until `dma_free`; both are
// ordinary memory the tests may dereference.
unsafe impl PciHost for FakePci {
    fn config_read(&self, function: PciFunction, register: u16) -> Result<u32, PciHostError> {
        let state = self.state();
        let space = state
            .config
            .get(&function)
            .ok_or(PciHostError::NoSuchFunction)?;
        Ok(space[usize::from(register / 4)])
    }

    fn config_write(
        &self,
        function: PciFunction,
        register: u16,
        value: u32,
    ) -> Result<(), PciHostError> {
        let mut state = self.state();
        let space = state
            .config
            .get_mut(&function)
            .ok_or(PciHostError::NoSuchFunction)?;
        space[usize::from(register / 4)] = value;
        state.config_writes.push((function, register, value));
        Ok(())
    }

    fn map_bar(&self, machine_address: u64, length: u64) -> Result<usize, PciHostError> {
        let mut state = self.state();
        state.map_calls.push((machine_address, length));
        state
            .bars
            .iter_mut()
            .find_map(|bar| {
                let offset = machine_address.checked_sub(bar.machine_address)?;
                (offset + length <= bar.registers.len() as u64)
                    .then(|| bar.registers.as_mut_ptr() as usize + offset as usize)
            })
            .ok_or(PciHostError::Refused)
    }

    fn bind_interrupt(&self, function: PciFunction, line: u8) -> Result<InterruptId, PciHostError> {
        let mut state = self.state();
        if !state.config.contains_key(&function) {
            return Err(PciHostError::NoSuchFunction);
        }
        if state.bound.contains(&line) {
            state.violations.push(format!("line {line} bound twice"));
        }
        state.bound.push(line);
        state.masked.push(false);
        let interrupt = state.bound.len() - 1;
        state
            .events
            .push(PciEvent::Bound(function, line, interrupt));
        Ok(interrupt)
    }

    fn watch_interrupts(&self, waiter: ThreadKey) {
        self.state().waiter = Some(waiter);
    }

    fn take_fired(&self, fired: &mut dyn FnMut(InterruptId)) {
        let taken: Vec<InterruptId> = {
            let mut state = self.state();
            let pending = std::mem::take(&mut state.pending);
            let (deliver, hold): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|&interrupt| !state.masked[interrupt]);
            state.pending = hold;
            for &interrupt in &deliver {
                state.masked[interrupt] = true;
            }
            deliver
        };
        for interrupt in taken {
            fired(interrupt);
        }
    }

    fn unmask_interrupt(&self, interrupt: InterruptId) {
        let waiter = {
            let mut state = self.state();
            state.events.push(PciEvent::Unmasked(interrupt));
            if !state.masked.get(interrupt).copied().unwrap_or(false) {
                state
                    .violations
                    .push(format!("interrupt {interrupt} unmasked while not masked"));
                return;
            }
            state.masked[interrupt] = false;
            state
                .pending
                .contains(&interrupt)
                .then_some(state.waiter)
                .flatten()
        };
        if let Some(waiter) = waiter {
            self.host.unpark(waiter);
        }
    }

    fn dma_allocate(
        &self,
        length: usize,
        alignment: usize,
        boundary: usize,
    ) -> Result<DmaMemory, PciHostError> {
        let mut state = self.state();
        state.dma_requests.push((length, alignment, boundary));
        if !alignment.is_power_of_two()
            || (boundary != 0 && (!boundary.is_power_of_two() || boundary < length))
            || alignment > ARENA_HALF
            || boundary > ARENA_HALF
        {
            return Err(PciHostError::OutOfMemory);
        }
        let layout = Layout::from_size_align(2 * ARENA_HALF + length, ARENA_HALF)
            .map_err(|_| PciHostError::OutOfMemory)?;
        // SAFETY: a non-zero-sized layout.
        let arena = unsafe { alloc_zeroed(layout) } as usize;
        if arena == 0 {
            return Err(PciHostError::OutOfMemory);
        }
        // The middle of the arena is aligned to ARENA_HALF. Just below it
        // the start is aligned to `alignment` and to nothing larger, and
        // the memory crosses the middle: that is kept unless the boundary
        // forbids it, in which case the memory starts at the middle.
        let middle = arena + ARENA_HALF;
        let mut start = middle - alignment;
        if !within_boundary((start as u64) + DMA_MACHINE_OFFSET, length, boundary) {
            start = middle;
        }
        if state.misplace_dma {
            start = middle - alignment + 4096;
        }
        let memory = DmaMemory {
            virtual_address: start,
            machine_address: start as u64 + DMA_MACHINE_OFFSET,
        };
        state.dma.push(Allocation {
            arena,
            layout,
            memory,
            length,
        });
        Ok(memory)
    }

    unsafe fn dma_free(&self, memory: DmaMemory, length: usize) {
        let mut state = self.state();
        state.freed.push((memory, length));
        let Some(index) = state
            .dma
            .iter()
            .position(|allocation| allocation.memory == memory && allocation.length == length)
        else {
            state.violations.push(format!(
                "dma_free of {memory:?}/{length:#x}, never allocated"
            ));
            return;
        };
        let allocation = state.dma.remove(index);
        // SAFETY: the arena allocated in `dma_allocate` with this layout,
        // freed once (its record is gone).
        unsafe { dealloc(allocation.arena as *mut u8, allocation.layout) };
    }

    fn virt_to_mach(&self, virtual_address: usize) -> Option<u64> {
        let state = self.state();
        for allocation in &state.dma {
            let start = allocation.memory.virtual_address;
            if (start..start + allocation.length).contains(&virtual_address) {
                return Some(virtual_address as u64 + DMA_MACHINE_OFFSET);
            }
        }
        Some(virtual_address as u64 + OTHER_MACHINE_OFFSET)
    }

    fn enable_io_ports(&self) -> Result<(), PciHostError> {
        let mut state = self.state();
        state.io_port_calls += 1;
        if state.io_ports_refused {
            Err(PciHostError::Refused)
        } else {
            Ok(())
        }
    }
}
