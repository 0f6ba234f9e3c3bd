//! The PCI hypercalls of NetBSD's `librumpdev_pci`: the `rumpcomp_pci_*`
//! functions a rump kernel PCI build links against, with the names and C
//! signatures of NetBSD's `sys/rump/dev/lib/libpci/pci_user.h` (called
//! `rumpcomp_user.h` in later trees).
//!
//! Above this module is `librumpdev_pci` (`rumpdev_pci.c`,
//! `rumpdev_bus_space.c`, `rumpdev_bus_dma.c`), which turns NetBSD's
//! `pci_conf_read`, `bus_space_map`, `pci_intr_establish` and `bus_dma`
//! into these calls. Below it is a [`PciHost`]: on Xen
//! `pv::rump_pci` (pcifront, BAR mappings, pirqs, `XENMEM_exchange`d DMA
//! memory), in the conformance tests a fake.
//!
//! What the layer adds to the host's primitives:
//!
//! * config space reads of a function that is not there answer all ones,
//!   which is what `pci_conf_read` returns to NetBSD's bus scan (it ignores
//!   the error code);
//! * BAR mappings are remembered, so mapping a range again (or part of one)
//!   gives the same addresses;
//! * `rumpcomp_pci_dmalloc` rounds the size up to pages and asks for memory
//!   that does not cross a boundary of its own size rounded up to a power
//!   of two: the header has no boundary argument (`bus_dmamem_alloc` drops
//!   it), so this is the strongest promise that serves every boundary a
//!   driver may ask for that is at least as large as the allocation. What
//!   the host returns is checked against the alignment and boundary before
//!   the rump kernel sees it;
//! * interrupt handlers run on an interrupt thread of this layer, which the
//!   host wakes when a bound interrupt fires; it calls the handlers holding
//!   a rump kernel CPU (`hyp_backend_schedule`) with an lwp of its own,
//!   and lets the interrupt fire again (unmask, EOI) only after they ran.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ffi::{c_int, c_uint, c_ulong, c_void};
use core::ptr;

use super::abi::errno::{EINVAL, EIO, ENOMEM, ENXIO, EOPNOTSUPP};
use super::host::ThreadKey;
use super::state::{backend_schedule, backend_unschedule, bind_new_lwp, host, Exclusive};

/// The page size: DMA memory comes in whole pages.
const PAGE_SIZE: usize = 4096;
/// What a config space read of a missing function returns.
const ALL_ONES: c_uint = 0xffff_ffff;
/// Bytes of config space (PCI Express extended config space).
const CONFIG_SPACE_BYTES: c_int = 4096;

/// A PCI function as the rump kernel names it (bus, device, function; the
/// rump kernel knows only segment 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciFunction {
    /// Bus, 0..=255.
    pub bus: u8,
    /// Device, 0..=31.
    pub device: u8,
    /// Function, 0..=7.
    pub function: u8,
}

impl PciFunction {
    /// The function `bus`/`device`/`function`, if each is in range.
    pub fn new(bus: c_uint, device: c_uint, function: c_uint) -> Option<Self> {
        if device > 31 || function > 7 {
            return None;
        }
        Some(Self {
            bus: u8::try_from(bus).ok()?,
            device: device as u8,
            function: function as u8,
        })
    }
}

/// `bus:device.function`, in hexadecimal as `pcictl` and `lspci` print it.
impl core::fmt::Display for PciFunction {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus, self.device, self.function
        )
    }
}

/// Identifies an interrupt a [`PciHost`] bound, in its own numbering.
pub type InterruptId = usize;

/// Machine-contiguous memory for DMA, as the host hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaMemory {
    /// Where the memory is mapped.
    pub virtual_address: usize,
    /// Its machine (bus) address: what a device is given.
    pub machine_address: u64,
}

/// Why a PCI host could not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciHostError {
    /// no such PCI function is passed to this machine
    NoSuchFunction,
    /// the hypervisor or the device's owner refused the request
    Refused,
    /// no memory or address space is left for the request
    OutOfMemory,
    /// the host cannot do this at all
    Unsupported,
}

impl core::fmt::Display for PciHostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NoSuchFunction => "no such PCI function is passed to this machine",
            Self::Refused => "the hypervisor or the device's owner refused the request",
            Self::OutOfMemory => "no memory or address space is left for the request",
            Self::Unsupported => "the host cannot do this at all",
        })
    }
}

impl PciHostError {
    /// The NetBSD errno the hypercall returns for it.
    pub fn errno(self) -> c_int {
        match self {
            Self::NoSuchFunction => ENXIO,
            Self::Refused => EIO,
            Self::OutOfMemory => ENOMEM,
            Self::Unsupported => EOPNOTSUPP,
        }
    }
}

/// The machine's side of PCI: what the `rumpcomp_pci_*` hypercalls are
/// built from.
///
/// # Safety
///
/// The rump kernel dereferences, and gives to devices, what these methods
/// return, so an implementation promises:
///
/// * [`PciHost::map_bar`] returns the start of a mapping of exactly the
///   machine range asked for, usable for the machine's life;
/// * [`PciHost::dma_allocate`] returns `length` bytes mapped at
///   `virtual_address`, machine-contiguous from `machine_address`, owned by
///   the caller until [`PciHost::dma_free`];
/// * [`PciHost::virt_to_mach`] answers the true machine address.
///
/// Methods are called under the [`super::Host`] model (one thread at a
/// time) and must not park.
pub unsafe trait PciHost: Sync {
    /// The 32-bit config space register at `register` (a multiple of 4
    /// below 4096) of `function`.
    fn config_read(&self, function: PciFunction, register: u16) -> Result<u32, PciHostError>;

    /// Writes the 32-bit config space register at `register`.
    fn config_write(
        &self,
        function: PciFunction,
        register: u16,
        value: u32,
    ) -> Result<(), PciHostError>;

    /// Maps `length` bytes of device memory at `machine_address` (a memory
    /// BAR, or part of one), uncached; returns the virtual address of
    /// `machine_address`.
    fn map_bar(&self, machine_address: u64, length: u64) -> Result<usize, PciHostError>;

    /// Binds the legacy interrupt that `function`'s interrupt line register
    /// names (`line`, as the host's firmware or hypervisor filled it in) and
    /// enables it. Called once per line.
    fn bind_interrupt(&self, function: PciFunction, line: u8) -> Result<InterruptId, PciHostError>;

    /// From now on, when a bound interrupt fires, the host makes `waiter`
    /// return from its [`super::Host::park`].
    fn watch_interrupts(&self, waiter: ThreadKey);

    /// Calls `fired` for each bound interrupt that fired since the last
    /// call. A fired interrupt stays masked until
    /// [`PciHost::unmask_interrupt`].
    fn take_fired(&self, fired: &mut dyn FnMut(InterruptId));

    /// Lets `interrupt` fire again (unmask, end of interrupt).
    fn unmask_interrupt(&self, interrupt: InterruptId);

    /// `length` bytes (a multiple of the page size) of zeroed,
    /// machine-contiguous memory whose machine address is a multiple of
    /// `alignment` and which does not cross a multiple of `boundary` (both
    /// powers of two; a boundary is at least `length`).
    fn dma_allocate(
        &self,
        length: usize,
        alignment: usize,
        boundary: usize,
    ) -> Result<DmaMemory, PciHostError>;

    /// Takes back what [`PciHost::dma_allocate`] gave.
    ///
    /// # Safety
    ///
    /// `memory` and `length` must be what one `dma_allocate` call returned
    /// and was asked for, and nothing (device or code) may use the memory
    /// afterwards.
    unsafe fn dma_free(&self, memory: DmaMemory, length: usize);

    /// The machine address of `virtual_address`, if it is memory of this
    /// machine.
    fn virt_to_mach(&self, virtual_address: usize) -> Option<u64>;

    /// Lets the rump kernel reach the I/O ports of the functions passed to
    /// this machine with x86 `in`/`out` instructions.
    fn enable_io_ports(&self) -> Result<(), PciHostError>;
}

/// `int (*)(void *)`: an interrupt handler; the result (whether it claimed
/// the interrupt) is not needed.
pub type InterruptHandler = Option<unsafe extern "C" fn(*mut c_void) -> c_int>;

/// `struct rumpcomp_pci_dmaseg`: one segment of `bus_dmamem_alloc`'d
/// memory, as `bus_dmamem_map` hands it over.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RumpcompPciDmaseg {
    /// `ds_pa`: the segment's machine address.
    pub ds_pa: c_ulong,
    /// `ds_len`: its length in bytes.
    pub ds_len: c_ulong,
    /// `ds_vacookie`: the virtual address `rumpcomp_pci_dmalloc` gave for
    /// it.
    pub ds_vacookie: c_ulong,
}

/// One `rumpcomp_pci_irq_establish`.
struct Establishment {
    interrupt: InterruptId,
    handler: unsafe extern "C" fn(*mut c_void) -> c_int,
    argument: *mut c_void,
}

/// A live `rumpcomp_pci_dmalloc` allocation.
#[derive(Clone, Copy)]
struct DmaRecord {
    memory: DmaMemory,
    length: usize,
}

/// A live `rumpcomp_pci_map` mapping.
#[derive(Clone, Copy)]
struct BarMapping {
    machine_address: u64,
    length: u64,
    virtual_address: usize,
}

/// What the PCI hypercalls keep.
struct PciState {
    host: Option<&'static dyn PciHost>,
    /// `rumpcomp_pci_irq_map`: cookie -> function and interrupt line.
    routes: BTreeMap<c_uint, (PciFunction, u8)>,
    /// Lines bound so far and the host's interrupt for each (functions
    /// sharing a line share the interrupt).
    bound: BTreeMap<u8, InterruptId>,
    /// Handlers, in the order established.
    #[allow(
        clippy::vec_box,
        reason = "the handle returned to the rump kernel points into the box, which must not move"
    )]
    handlers: Vec<Box<Establishment>>,
    /// The interrupt thread, once started.
    interrupt_thread: Option<ThreadKey>,
    /// Live DMA allocations by virtual address.
    dma: BTreeMap<usize, DmaRecord>,
    bars: Vec<BarMapping>,
}

static PCI: Exclusive<PciState> = Exclusive::new(PciState {
    host: None,
    routes: BTreeMap::new(),
    bound: BTreeMap::new(),
    handlers: Vec::new(),
    interrupt_thread: None,
    dma: BTreeMap::new(),
    bars: Vec::new(),
});

/// Makes `pci` the PCI host and forgets everything the hypercalls kept
/// about an earlier one. On Xen the pcifront host is installed on first
/// use; the conformance tests call this with a fake after
/// [`super::install_host`].
pub fn install_pci_host(pci: &'static dyn PciHost) {
    forget();
    PCI.with(|state| state.host = Some(pci));
}

/// Forgets the PCI host and all PCI state (part of
/// [`super::install_host`]).
pub(crate) fn forget() {
    PCI.with(|state| {
        state.host = None;
        state.routes.clear();
        state.bound.clear();
        state.handlers.clear();
        state.interrupt_thread = None;
        state.dma.clear();
        state.bars.clear();
    });
}

/// The PCI host, if the machine has one.
fn pci_host() -> Option<&'static dyn PciHost> {
    if let Some(pci) = PCI.with(|state| state.host) {
        return Some(pci);
    }
    default_pci_host()
}

#[cfg(target_os = "none")]
fn default_pci_host() -> Option<&'static dyn PciHost> {
    let pci: &'static dyn PciHost = &crate::pv::rump_pci::XEN_PCI;
    PCI.with(|state| state.host = Some(pci));
    Some(pci)
}

#[cfg(not(target_os = "none"))]
fn default_pci_host() -> Option<&'static dyn PciHost> {
    None
}

/// The config space register `reg` names, if it is a 32-bit one inside
/// config space.
fn register(reg: c_int) -> Option<u16> {
    if !(0..CONFIG_SPACE_BYTES).contains(&reg) || reg % 4 != 0 {
        return None;
    }
    Some(reg as u16)
}

/// `rumpcomp_pci_confread`: the 32-bit config space register `reg` of
/// `bus`/`dev`/`fun` into `*value`. For a function that is not there
/// `ENXIO` and all ones (what NetBSD's bus scan looks for); for a register
/// that is not 32-bit aligned inside config space `EINVAL` and all ones.
///
/// # Safety
///
/// `value` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpcomp_pci_confread(
    bus: c_uint,
    dev: c_uint,
    fun: c_uint,
    reg: c_int,
    value: *mut c_uint,
) -> c_int {
    let result = match (PciFunction::new(bus, dev, fun), register(reg)) {
        (_, None) => Err(EINVAL),
        (None, _) => Err(ENXIO),
        (Some(function), Some(register)) => match pci_host() {
            None => Err(ENXIO),
            Some(pci) => pci
                .config_read(function, register)
                .map_err(PciHostError::errno),
        },
    };
    let (read, error) = match result {
        Ok(read) => (read, 0),
        Err(error) => (ALL_ONES, error),
    };
    // SAFETY: the caller passes a writable pointer.
    unsafe { value.write(read) };
    error
}

/// `rumpcomp_pci_confwrite`: writes the 32-bit config space register
/// `reg` of `bus`/`dev`/`fun`. `ENXIO` for a function that is not there,
/// `EINVAL` for a bad register.
#[no_mangle]
pub extern "C" fn rumpcomp_pci_confwrite(
    bus: c_uint,
    dev: c_uint,
    fun: c_uint,
    reg: c_int,
    value: c_uint,
) -> c_int {
    let Some(register) = register(reg) else {
        return EINVAL;
    };
    let (Some(function), Some(pci)) = (PciFunction::new(bus, dev, fun), pci_host()) else {
        return ENXIO;
    };
    match pci.config_write(function, register, value) {
        Ok(()) => 0,
        Err(error) => error.errno(),
    }
}

/// `rumpcomp_pci_map`: maps `len` bytes of device memory at machine
/// address `addr` (from a memory BAR) and returns where; null if it cannot
/// be mapped. A range inside one mapped before gets the same addresses.
#[no_mangle]
pub extern "C" fn rumpcomp_pci_map(addr: c_ulong, len: c_ulong) -> *mut c_void {
    // `unsigned long` is 64 bits on x86_64, the one target.
    let (machine_address, length): (u64, u64) = (addr, len);
    let Some(end) = machine_address.checked_add(length) else {
        return ptr::null_mut();
    };
    if length == 0 {
        return ptr::null_mut();
    }
    let known = PCI.with(|state| {
        state.bars.iter().find_map(|bar| {
            (bar.machine_address <= machine_address && end <= bar.machine_address + bar.length)
                .then(|| bar.virtual_address + (machine_address - bar.machine_address) as usize)
        })
    });
    if let Some(virtual_address) = known {
        return virtual_address as *mut c_void;
    }
    let Some(pci) = pci_host() else {
        return ptr::null_mut();
    };
    match pci.map_bar(machine_address, length) {
        Ok(virtual_address) => {
            PCI.with(|state| {
                state.bars.push(BarMapping {
                    machine_address,
                    length,
                    virtual_address,
                })
            });
            virtual_address as *mut c_void
        }
        Err(error) => {
            host().console_write(
                alloc::format!(
                    "rumpcomp_pci_map: cannot map {length:#x} bytes at {machine_address:#x}: {error}\n"
                )
                .as_bytes(),
            );
            ptr::null_mut()
        }
    }
}

/// `rumpcomp_pci_irq_map`: notes that interrupt handle `cookie` stands for
/// the legacy interrupt of `bus`/`device`/`fun` whose interrupt line
/// register reads `intrline`. `EINVAL` for a line that names no interrupt
/// (0, or 255 and beyond: PCI's "not connected").
#[no_mangle]
pub extern "C" fn rumpcomp_pci_irq_map(
    bus: c_uint,
    device: c_uint,
    fun: c_uint,
    intrline: c_int,
    cookie: c_uint,
) -> c_int {
    let Some(function) = PciFunction::new(bus, device, fun) else {
        return ENXIO;
    };
    let line = match u8::try_from(intrline) {
        Ok(line @ 1..=254) => line,
        _ => return EINVAL,
    };
    PCI.with(|state| state.routes.insert(cookie, (function, line)));
    0
}

/// `rumpcomp_pci_irq_establish`: from now on `handler(data)` runs, on the
/// interrupt thread and holding a rump kernel CPU, whenever the interrupt
/// `cookie` stands for fires. Returns a handle, or null for a cookie
/// `rumpcomp_pci_irq_map` did not accept or an interrupt the host cannot
/// bind.
///
/// # Safety
///
/// `handler` must be callable with `data` for the life of the rump kernel.
#[no_mangle]
pub unsafe extern "C" fn rumpcomp_pci_irq_establish(
    cookie: c_uint,
    handler: InterruptHandler,
    data: *mut c_void,
) -> *mut c_void {
    let Some(handler) = handler else {
        return ptr::null_mut();
    };
    let Some((function, line)) = PCI.with(|state| state.routes.get(&cookie).copied()) else {
        return ptr::null_mut();
    };
    let Some(pci) = pci_host() else {
        return ptr::null_mut();
    };
    let interrupt = match PCI.with(|state| state.bound.get(&line).copied()) {
        Some(interrupt) => interrupt,
        None => match pci.bind_interrupt(function, line) {
            Ok(interrupt) => {
                PCI.with(|state| state.bound.insert(line, interrupt));
                interrupt
            }
            Err(error) => {
                host().console_write(
                    alloc::format!(
                        "rumpcomp_pci_irq_establish: cannot bind line {line} of {function}: {error}\n"
                    )
                    .as_bytes(),
                );
                return ptr::null_mut();
            }
        },
    };
    let establishment = Box::new(Establishment {
        interrupt,
        handler,
        argument: data,
    });
    let handle = &*establishment as *const Establishment as *mut c_void;
    let start_thread = PCI.with(|state| {
        state.handlers.push(establishment);
        state.interrupt_thread.is_none()
    });
    if start_thread {
        match host().spawn("rumpuser-pci-intr", Box::new(move || interrupt_thread(pci))) {
            Ok(thread) => {
                PCI.with(|state| state.interrupt_thread = Some(thread));
                pci.watch_interrupts(thread);
            }
            Err(_) => panic!("rumpuser: cannot start the PCI interrupt thread"),
        }
    }
    handle
}

/// The interrupts that fired, each once, in the order first reported.
fn take_fired(pci: &dyn PciHost) -> Vec<InterruptId> {
    let mut fired = Vec::new();
    pci.take_fired(&mut |interrupt| {
        if !fired.contains(&interrupt) {
            fired.push(interrupt);
        }
    });
    fired
}

/// Waits for interrupts and runs their handlers: with a rump kernel CPU
/// taken for the batch, each handler of a fired interrupt in the order
/// established; then the interrupts are unmasked, once their handlers have
/// quietened the devices (a level-triggered line would fire again at once
/// otherwise). `pci` is the host that was asked to wake this thread.
fn interrupt_thread(pci: &'static dyn PciHost) -> ! {
    let host = host();
    bind_new_lwp("the PCI interrupt thread");
    loop {
        let fired = take_fired(pci);
        if fired.is_empty() {
            host.park(None);
            continue;
        }
        let calls: Vec<(unsafe extern "C" fn(*mut c_void) -> c_int, *mut c_void)> =
            PCI.with(|state| {
                state
                    .handlers
                    .iter()
                    .filter(|establishment| fired.contains(&establishment.interrupt))
                    .map(|establishment| (establishment.handler, establishment.argument))
                    .collect()
            });
        backend_schedule(0, ptr::null_mut());
        for (handler, argument) in calls {
            // SAFETY: a handler and argument given to
            // `rumpcomp_pci_irq_establish`, whose caller keeps them
            // callable; called holding a rump kernel CPU, with no state
            // borrow live.
            unsafe { handler(argument) };
        }
        // The interrupt thread holds no locks of the rump kernel.
        let _nlocks = backend_unschedule(ptr::null_mut());
        for interrupt in fired {
            pci.unmask_interrupt(interrupt);
        }
    }
}

/// Whether `[address, address + length)` stays inside one block of
/// `boundary` bytes (0: no boundary). `length` is not zero.
pub(crate) fn within_boundary(address: u64, length: usize, boundary: usize) -> bool {
    let last = address + length as u64 - 1;
    boundary == 0 || address / boundary as u64 == last / boundary as u64
}

/// `rumpcomp_pci_dmalloc`: `size` bytes (rounded up to pages) of zeroed,
/// machine-contiguous DMA memory whose machine address is a multiple of
/// `align` (a power of two; 0 or less than a page means a page) and which
/// crosses no boundary of its length rounded up to a power of two. The
/// machine address goes to `*pap`, the virtual one to `*vap`. `EINVAL`
/// for a zero size or an alignment that is not a power of two, `ENOMEM`
/// if the host has no such memory.
///
/// # Safety
///
/// `pap` and `vap` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rumpcomp_pci_dmalloc(
    size: usize,
    align: usize,
    pap: *mut c_ulong,
    vap: *mut c_ulong,
) -> c_int {
    if size == 0 || (align != 0 && !align.is_power_of_two()) {
        return EINVAL;
    }
    let Some(length) = size.checked_next_multiple_of(PAGE_SIZE) else {
        return ENOMEM;
    };
    let Some(boundary) = length.checked_next_power_of_two() else {
        return ENOMEM;
    };
    let alignment = align.max(PAGE_SIZE);
    let Some(pci) = pci_host() else {
        return ENOMEM;
    };
    let memory = match pci.dma_allocate(length, alignment, boundary) {
        Ok(memory) => memory,
        Err(error) => return error.errno(),
    };
    let end_fits = memory.machine_address.checked_add(length as u64).is_some();
    if !end_fits
        || !memory.machine_address.is_multiple_of(alignment as u64)
        || !within_boundary(memory.machine_address, length, boundary)
    {
        host().console_write(
            alloc::format!(
                "rumpcomp_pci_dmalloc: the host gave {length:#x} bytes at machine address {:#x}, not aligned to {alignment:#x} within {boundary:#x}\n",
                memory.machine_address
            )
            .as_bytes(),
        );
        // SAFETY: just allocated with this length and never handed out.
        unsafe { pci.dma_free(memory, length) };
        return ENOMEM;
    }
    PCI.with(|state| {
        state
            .dma
            .insert(memory.virtual_address, DmaRecord { memory, length })
    });
    // SAFETY: the caller passes writable pointers.
    unsafe {
        pap.write(memory.machine_address as c_ulong);
        vap.write(memory.virtual_address as c_ulong);
    }
    0
}

/// `rumpcomp_pci_dmafree`: takes back the memory `rumpcomp_pci_dmalloc`
/// gave at virtual address `vaddr` (what `bus_dmamem_free` passes: the
/// segment's `_ds_vacookie` and the size it asked for). Anything else is
/// reported on the console and left alone.
#[no_mangle]
pub extern "C" fn rumpcomp_pci_dmafree(vaddr: c_ulong, size: usize) {
    let virtual_address = vaddr as usize;
    let record = PCI.with(|state| {
        let record = *state.dma.get(&virtual_address)?;
        let matches = size > 0 && size.checked_next_multiple_of(PAGE_SIZE) == Some(record.length);
        matches
            .then(|| state.dma.remove(&virtual_address))
            .flatten()
    });
    let Some(record) = record else {
        host().console_write(
            alloc::format!(
                "rumpcomp_pci_dmafree: {size:#x} bytes at {virtual_address:#x} were not allocated by rumpcomp_pci_dmalloc; not freed\n"
            )
            .as_bytes(),
        );
        return;
    };
    if let Some(pci) = pci_host() {
        // SAFETY: the record of one `dma_allocate` call, removed above so
        // it is freed once; the rump kernel frees DMA memory only once it
        // and its devices are done with it.
        unsafe { pci.dma_free(record.memory, record.length) };
    }
}

/// The live DMA allocation `virtual_address` is in, and the offset.
fn dma_record_of(state: &PciState, virtual_address: usize) -> Option<(DmaRecord, usize)> {
    let (&start, &record) = state.dma.range(..=virtual_address).next_back()?;
    let offset = virtual_address - start;
    (offset < record.length).then_some((record, offset))
}

/// `rumpcomp_pci_dmamem_map`: the virtual address of `nseg` segments of
/// `rumpcomp_pci_dmalloc`'d memory. Memory is mapped already, so this only
/// checks that the segments are consecutive pieces of one allocation (what
/// `bus_dmamem_alloc` makes of it), each at the machine address of its
/// virtual one, covering `totlen` bytes, and returns the first one's
/// virtual address. `EINVAL` otherwise: scattered memory cannot be given
/// one virtual range without remapping it.
///
/// # Safety
///
/// `dss` must point to `nseg` segments and `vap` be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpcomp_pci_dmamem_map(
    dss: *mut RumpcompPciDmaseg,
    nseg: usize,
    totlen: usize,
    vap: *mut *mut c_void,
) -> c_int {
    if dss.is_null() || nseg == 0 {
        return EINVAL;
    }
    // SAFETY: the caller passes `nseg` segments.
    let segments = unsafe { core::slice::from_raw_parts(dss, nseg) };
    let first = segments[0].ds_vacookie as usize;
    let consistent = PCI.with(|state| {
        let Some((record, offset)) = dma_record_of(state, first) else {
            return false;
        };
        let mut expected_virtual = first;
        let mut covered = 0usize;
        for segment in segments {
            let (virtual_address, length) = (segment.ds_vacookie as usize, segment.ds_len as usize);
            let Some(in_record) = virtual_address
                .checked_sub(record.memory.virtual_address)
                .filter(|&in_record| in_record < record.length)
            else {
                return false;
            };
            let machine = record.memory.machine_address + in_record as u64;
            if virtual_address != expected_virtual || segment.ds_pa != machine {
                return false;
            }
            expected_virtual = match virtual_address.checked_add(length) {
                Some(next) => next,
                None => return false,
            };
            covered += length;
        }
        offset.saturating_add(covered) <= record.length && totlen <= covered
    });
    if !consistent {
        return EINVAL;
    }
    // SAFETY: the caller passes a writable pointer.
    unsafe { vap.write(first as *mut c_void) };
    0
}

/// `rumpcomp_pci_virt_to_mach`: the machine address of `virt`, which a
/// device is given for it. Memory from `rumpcomp_pci_dmalloc` is answered
/// from its record, other memory by the host. An address the host cannot
/// translate is a rump kernel bug: giving a device a made-up address would
/// let it write anywhere, so this panics.
#[no_mangle]
pub extern "C" fn rumpcomp_pci_virt_to_mach(virt: *mut c_void) -> c_ulong {
    let virtual_address = virt as usize;
    let known = PCI.with(|state| {
        dma_record_of(state, virtual_address)
            .map(|(record, offset)| record.memory.machine_address + offset as u64)
    });
    if let Some(machine) = known {
        return machine as c_ulong;
    }
    match pci_host().and_then(|pci| pci.virt_to_mach(virtual_address)) {
        Some(machine) => machine as c_ulong,
        None => panic!("rumpcomp_pci_virt_to_mach: {virtual_address:#x} is no memory of ours"),
    }
}

/// `rumpcomp_pci_iospace_init`: lets the rump kernel use `in`/`out` on the
/// I/O ports of the functions passed to this machine; 0, or the host's
/// error (`EOPNOTSUPP` if it has no I/O space, `EIO` if refused).
#[no_mangle]
pub extern "C" fn rumpcomp_pci_iospace_init() -> c_int {
    match pci_host().map(|pci| pci.enable_io_ports()) {
        Some(Ok(())) => 0,
        Some(Err(error)) => error.errno(),
        None => EOPNOTSUPP,
    }
}
