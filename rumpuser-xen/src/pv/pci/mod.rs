//! PCI passthrough on Xen PV: the platform side of the `pcidev` contract
//! (see `docs/nvme.md`).
//!
//! A function dom0 passes through (`pci=[...]` in the xl config) reaches
//! us in four pieces, each in its own module:
//!
//! * [`front`]: pcifront, config space and MSI/MSI-X set-up through
//!   dom0's pciback (`xen/io/pciif.h`), with [`grant_access`] to share its
//!   page;
//! * [`bar`]: memory BARs mapped uncached from `DOMID_IO`;
//! * [`irq`]: pirqs bound to event channels;
//! * [`dma`]: buffers whose bus address is their machine address.
//!
//! [`PciDevice`] puts them together behind the `pcidev` traits, so a
//! driver (`drivers/nvme`) drives a real function with no `unsafe` of its
//! own. The arithmetic (request encoding, BAR decoding, xenstore
//! addresses) is in [`crate::pci`], tested on the host.

pub mod bar;
pub mod dma;
pub mod front;
mod grant_access;
pub mod irq;

use alloc::vec::Vec;
use core::fmt;

use pcidev::{check_register, ConfigSpace, Dma, InterruptMode, Interrupts, Mmio, PciError};

use crate::pci::{self, OpTarget, PciOp};
pub use dma::XenDmaBuffer;
pub use front::{AssignedDevice, FrontError};
pub use irq::note_event;

use crate::pv::Global;

/// How often a device without interrupts is polled.
const POLL_INTERVAL_NS: u64 = 1_000_000;
/// How often every device's driver gets a chance to check its health.
const HEALTH_INTERVAL_NS: u64 = 1_000_000_000;

/// Devices open (by host address), and how many of them have no
/// interrupt routed.
struct OpenDevices {
    open: Vec<pcidev::Bdf>,
    without_interrupts: usize,
}

static OPEN_DEVICES: Global<OpenDevices> = Global::new(OpenDevices {
    open: Vec::new(),
    without_interrupts: 0,
});

/// How long the main loop may sleep without an event before it must poll
/// its engines again for the devices' sake (see `pv::wait`): `None` when
/// no device is open.
pub fn poll_interval_ns() -> Option<u64> {
    let devices = OPEN_DEVICES.borrow();
    if devices.without_interrupts > 0 {
        Some(POLL_INTERVAL_NS)
    } else if !devices.open.is_empty() {
        Some(HEALTH_INTERVAL_NS)
    } else {
        None
    }
}

/// Whether the domain's command line lets a driver use `mode`:
/// `pci-interrupts=msix|msi|intx|none` allows only that mode (or none, so
/// drivers poll); without the word every mode is allowed.
fn mode_allowed(mode: InterruptMode) -> bool {
    let command_line = crate::pv::COMMAND_LINE.get();
    let Some(allowed) = crate::cmdline::values(command_line, "pci-interrupts").last() else {
        return true;
    };
    matches!(
        (allowed, mode),
        ("msix", InterruptMode::MsiX) | ("msi", InterruptMode::Msi) | ("intx", InterruptMode::Intx)
    )
}

/// Why a function could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// pcifront is not connected
    Front(FrontError),
    /// the function is not among those passed to this domain
    NotAssigned,
    /// the function does not answer config space reads
    DeviceGone,
    /// the function is open already (two drivers must not share it)
    AlreadyOpen,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Front(error) => write!(f, "pcifront is not connected: {error}"),
            Self::NotAssigned => {
                f.write_str("the function is not among those passed to this domain")
            }
            Self::DeviceGone => f.write_str("the function does not answer config space reads"),
            Self::AlreadyOpen => f.write_str("the function is open already"),
        }
    }
}

/// The functions passed to this domain (connects pcifront on first use).
pub fn assigned_devices() -> Result<Vec<AssignedDevice>, FrontError> {
    front::with_front(|front| front.devices().to_vec())
}

fn perform(op: &PciOp) -> Result<front::Reply, PciError> {
    match front::with_front(|front| front.perform(op)) {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(front::OpError::Refused(error))) => Err(error.to_pci_error()),
        Ok(Err(front::OpError::Front(_))) | Err(_) => Err(PciError::DeviceGone),
    }
}

/// The vectors bound for the current interrupt mode.
struct Vectors {
    mode: InterruptMode,
    bound: Vec<irq::BoundPirq>,
}

/// One passed-through function, driven through the `pcidev` traits.
pub struct PciDevice {
    host: pcidev::Bdf,
    target: OpTarget,
    bars: [Option<bar::MappedBar>; 6],
    vectors: Option<Vectors>,
    /// Interrupts reported by `take_fired` so far.
    interrupts_taken: u64,
}

impl fmt::Debug for PciDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PciDevice({})", self.host)
    }
}

/// Opens the function at host address `host` (as the xl config names it;
/// its virtual address as pciback shows it is accepted too): maps its
/// memory BARs. Interrupts are routed only when the driver asks.
pub fn open(host: pcidev::Bdf) -> Result<PciDevice, OpenError> {
    let devices = assigned_devices().map_err(OpenError::Front)?;
    let device = devices
        .iter()
        .find(|device| device.host == host)
        .or_else(|| devices.iter().find(|device| device.virtual_address == host))
        .ok_or(OpenError::NotAssigned)?;
    // By host address, whichever address the caller named it by.
    if OPEN_DEVICES.borrow().open.contains(&device.host) {
        return Err(OpenError::AlreadyOpen);
    }
    let mut device = PciDevice {
        host: device.host,
        target: OpTarget::from(device.virtual_address),
        bars: [None; 6],
        vectors: None,
        interrupts_taken: 0,
    };
    {
        let mut devices = OPEN_DEVICES.borrow_mut();
        devices.open.push(device.host);
        devices.without_interrupts += 1;
    }
    let ids = device
        .config_read32(pcidev::register::VENDOR_ID)
        .map_err(|_| OpenError::DeviceGone)?;
    if ids & 0xffff == 0xffff {
        return Err(OpenError::DeviceGone);
    }
    log::info!(
        "pci: {} is {:04x}:{:04x}",
        device.host,
        ids & 0xffff,
        ids >> 16
    );
    device.map_bars();
    Ok(device)
}

impl PciDevice {
    /// The function's host address.
    pub fn host_address(&self) -> pcidev::Bdf {
        self.host
    }

    /// Interrupts the driver has taken so far (evidence that they arrive).
    pub fn interrupts_taken(&self) -> u64 {
        self.interrupts_taken
    }

    /// How interrupts are delivered now, if they are.
    pub fn interrupt_mode(&self) -> Option<InterruptMode> {
        self.vectors.as_ref().map(|vectors| vectors.mode)
    }

    /// Sizes every BAR and maps the memory ones. A BAR that cannot be
    /// mapped stays `NoSuchBar`. Memory decode stays on while sizing:
    /// pciback answers the all-ones write from its own copy of the BAR and
    /// never writes it to the device, so the device never decodes at a
    /// bogus address (turning decode off would make pciback disable the
    /// device in dom0).
    fn map_bars(&mut self) {
        let mut index = 0u8;
        while index < 6 {
            let register = pcidev::register::BAR0 + 4 * u16::from(index);
            let Ok(low) = self.config_read32(register) else {
                return;
            };
            let kind = pci::bar_kind(low);
            if kind == pci::BarKind::Memory64 && index == 5 {
                // Its upper half would be past the last BAR register.
                log::warn!("pci: {} BAR 5 says it is 64 bits wide; ignored", self.host);
                return;
            }
            let wide = kind == pci::BarKind::Memory64;
            let sized = |device: &mut Self, register: u16, value: u32| -> Option<u32> {
                device.config_write32(register, u32::MAX).ok()?;
                let sized = device.config_read32(register).ok();
                let _ = device.config_write32(register, value);
                sized
            };
            let (high, sized_high) = if wide {
                let high = self.config_read32(register + 4).unwrap_or(0);
                (high, sized(self, register + 4, high).unwrap_or(0))
            } else {
                (0, 0)
            };
            let sized_low = if matches!(kind, pci::BarKind::Memory32 | pci::BarKind::Memory64) {
                sized(self, register, low).unwrap_or(0)
            } else {
                0
            };
            if let Some(memory) = pci::decode_memory_bar(low, high, sized_low, sized_high) {
                match bar::map(&memory) {
                    Ok(mapped) => {
                        log::info!(
                            "pci: {} BAR {index}: {:#x}, {} KiB{}, mapped {} KiB",
                            self.host,
                            memory.address,
                            memory.length >> 10,
                            if memory.prefetchable {
                                " prefetchable"
                            } else {
                                ""
                            },
                            mapped.mapped_bytes() >> 10
                        );
                        self.bars[usize::from(index)] = Some(mapped);
                    }
                    Err(error) => log::error!(
                        "pci: {} BAR {index} at {:#x} cannot be mapped: {error:?}",
                        self.host,
                        memory.address
                    ),
                }
            }
            index += if wide { 2 } else { 1 };
        }
    }

    fn config_read(&mut self, offset: u16, width: u8) -> Result<u32, PciError> {
        check_register(4096, u64::from(offset), u64::from(width))?;
        let reply = perform(&PciOp::config_read(self.target, offset, width))?;
        Ok(match width {
            1 => reply.value & 0xff,
            2 => reply.value & 0xffff,
            _ => reply.value,
        })
    }

    fn config_write(&mut self, offset: u16, width: u8, value: u32) -> Result<(), PciError> {
        check_register(4096, u64::from(offset), u64::from(width))?;
        perform(&PciOp::config_write(self.target, offset, width, value)).map(|_| ())
    }

    fn bar(&self, bar: u8) -> Result<&bar::MappedBar, PciError> {
        self.bars
            .get(usize::from(bar))
            .and_then(Option::as_ref)
            .ok_or(PciError::NoSuchBar)
    }

    fn bind_all(
        &mut self,
        mode: InterruptMode,
        pirqs: &[u32],
        shared: bool,
    ) -> Result<u16, PciError> {
        let mut bound = Vec::new();
        for &pirq in pirqs {
            match irq::bind(pirq, shared) {
                Ok(vector) => bound.push(vector),
                Err(rc) => {
                    log::warn!("pci: cannot bind pirq {pirq}: {rc}");
                    for vector in bound {
                        vector.unbind();
                    }
                    return Err(PciError::NoSuchVector);
                }
            }
        }
        let count = bound.len() as u16;
        self.vectors = Some(Vectors { mode, bound });
        OPEN_DEVICES.borrow_mut().without_interrupts -= 1;
        Ok(count)
    }
}

/// Closing a device stops its interrupts; its BARs stay mapped (the
/// virtual range is simply not reused).
impl Drop for PciDevice {
    fn drop(&mut self) {
        self.disable_interrupts();
        let mut devices = OPEN_DEVICES.borrow_mut();
        devices.open.retain(|open| *open != self.host);
        devices.without_interrupts -= 1;
    }
}

impl ConfigSpace for PciDevice {
    fn config_read8(&mut self, offset: u16) -> Result<u8, PciError> {
        self.config_read(offset, 1).map(|value| value as u8)
    }
    fn config_read16(&mut self, offset: u16) -> Result<u16, PciError> {
        self.config_read(offset, 2).map(|value| value as u16)
    }
    fn config_read32(&mut self, offset: u16) -> Result<u32, PciError> {
        self.config_read(offset, 4)
    }
    fn config_write8(&mut self, offset: u16, value: u8) -> Result<(), PciError> {
        self.config_write(offset, 1, u32::from(value))
    }
    fn config_write16(&mut self, offset: u16, value: u16) -> Result<(), PciError> {
        self.config_write(offset, 2, u32::from(value))
    }
    fn config_write32(&mut self, offset: u16, value: u32) -> Result<(), PciError> {
        self.config_write(offset, 4, value)
    }
}

impl Mmio for PciDevice {
    fn bar_len(&mut self, bar: u8) -> Result<u64, PciError> {
        Ok(self.bar(bar)?.mapped_bytes())
    }
    fn read32(&mut self, bar: u8, offset: u64) -> Result<u32, PciError> {
        self.bar(bar)?.read32(offset)
    }
    fn write32(&mut self, bar: u8, offset: u64, value: u32) -> Result<(), PciError> {
        self.bar(bar)?.write32(offset, value)
    }
    fn read64(&mut self, bar: u8, offset: u64) -> Result<u64, PciError> {
        self.bar(bar)?.read64(offset)
    }
    fn write64(&mut self, bar: u8, offset: u64, value: u64) -> Result<(), PciError> {
        self.bar(bar)?.write64(offset, value)
    }
}

impl Dma for PciDevice {
    type Buffer = XenDmaBuffer;

    fn allocate(&mut self, len: usize, align: usize) -> Result<XenDmaBuffer, PciError> {
        dma::allocate(len, align)
    }

    fn free(&mut self, buffer: XenDmaBuffer) {
        dma::free(buffer)
    }
}

impl Interrupts for PciDevice {
    fn enable_interrupts(&mut self, mode: InterruptMode, count: u16) -> Result<u16, PciError> {
        if self.vectors.is_some() {
            self.disable_interrupts();
        }
        if count == 0 || !mode_allowed(mode) {
            return Err(PciError::NoSuchVector);
        }
        let granted = match mode {
            InterruptMode::MsiX => {
                let reply = perform(&PciOp::enable_msix(self.target, count))?;
                // pciback also reports pci_enable_msix's own failure in `value`.
                if reply.value != 0 {
                    log::warn!("pci: MSI-X refused by dom0 ({})", reply.value as i32);
                    return Err(PciError::NoSuchVector);
                }
                let pirqs: Vec<u32> = reply
                    .msix_pirqs
                    .iter()
                    .map(|&pirq| u32::from(pirq))
                    .collect();
                if pirqs.contains(&0) {
                    let _ = perform(&PciOp::plain(xen_abi::XEN_PCI_OP_disable_msix, self.target));
                    return Err(PciError::NoSuchVector);
                }
                let granted = self.bind_all(mode, &pirqs, false);
                if granted.is_err() {
                    let _ = perform(&PciOp::plain(xen_abi::XEN_PCI_OP_disable_msix, self.target));
                }
                granted
            }
            InterruptMode::Msi => {
                let reply = perform(&PciOp::plain(xen_abi::XEN_PCI_OP_enable_msi, self.target))?;
                if reply.value == 0 {
                    return Err(PciError::NoSuchVector);
                }
                let granted = self.bind_all(mode, &[reply.value], false);
                if granted.is_err() {
                    let _ = perform(&PciOp::plain(xen_abi::XEN_PCI_OP_disable_msi, self.target));
                }
                granted
            }
            InterruptMode::Intx => {
                // pciback shows the pirq of the legacy line as the
                // interrupt line register, as Linux's pcifront reads it.
                let line = self.config_read8(0x3c)?;
                let pin = self.config_read8(0x3d)?;
                if pin == 0 || line == 0 || line == 0xff {
                    return Err(PciError::NoSuchVector);
                }
                self.bind_all(mode, &[u32::from(line)], true)
            }
        }?;
        log::info!(
            "pci: {} interrupts: {mode:?}, {granted} vector(s)",
            self.host
        );
        Ok(granted)
    }

    fn disable_interrupts(&mut self) {
        let Some(vectors) = self.vectors.take() else {
            return;
        };
        OPEN_DEVICES.borrow_mut().without_interrupts += 1;
        for vector in vectors.bound {
            vector.unbind();
        }
        let command = match vectors.mode {
            InterruptMode::MsiX => Some(xen_abi::XEN_PCI_OP_disable_msix),
            InterruptMode::Msi => Some(xen_abi::XEN_PCI_OP_disable_msi),
            InterruptMode::Intx => None,
        };
        if let Some(command) = command {
            if let Err(error) = perform(&PciOp::plain(command, self.target)) {
                log::warn!("pci: disabling {:?} failed: {error}", vectors.mode);
            }
        }
    }

    fn take_fired(&mut self) -> Option<u16> {
        let vectors = self.vectors.as_ref()?;
        let fired = vectors
            .bound
            .iter()
            .position(|vector| vector.take_fired())
            .map(|index| index as u16);
        if fired.is_some() {
            self.interrupts_taken += 1;
        }
        fired
    }

    fn unmask(&mut self, vector: u16) {
        if let Some(bound) = self
            .vectors
            .as_ref()
            .and_then(|vectors| vectors.bound.get(usize::from(vector)))
        {
            bound.unmask();
        }
    }
}
