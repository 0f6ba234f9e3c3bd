//! The driver: bring-up, the two descriptor rings, interrupt causes, link
//! state and statistics.
//!
//! Ring ownership follows the manual (317453, 3.2.6 and 3.4): the device
//! owns the receive descriptors from RDH up to, not including, RDT and the
//! transmit descriptors from TDH up to TDT. The driver never reads RDH or
//! TDH back: it learns what the device finished from the DD bit of the
//! descriptor it expects next, so a device that reports a wild head cannot
//! make it look at a descriptor it does not own. One receive descriptor is
//! always held back, so that RDT == RDH means "no buffers" and never "all
//! buffers".

use alloc::vec::Vec;
use core::fmt;

use netback::{ChecksumState, DeviceError, Frame, MacAddress, NetDevice, Offloads};
use pcidev::register as config_register;
use pcidev::{
    enable_bus_master, BusAddress, DmaBuffer, InterruptMode, PciDevice, PciError,
    COMMAND_INTX_DISABLE,
};

use crate::descriptor::{
    self, rx_fresh, tx_command, tx_legacy, tx_status, tx_status_of, DescriptorBytes, RxJudgement,
    RxWriteBack, DESCRIPTOR_SIZE,
};
use crate::registers::{self as reg, ctrl, eerd, interrupt, rah, rctl, tctl, tipg};

/// Size of every receive and transmit buffer (RCTL.BSIZE = 2048).
pub const BUFFER_SIZE: usize = 2048;
/// Shortest frame the driver sends: an Ethernet header. The device pads
/// anything shorter than 60 bytes (TCTL.PSP).
pub const MIN_FRAME_LEN: usize = 14;
/// Longest frame without long-packet mode, FCS excluded: 1500 bytes of
/// payload, the Ethernet header and one VLAN tag.
pub const MAX_FRAME_LEN: usize = 1518;
/// Longest frame in long-packet mode (RCTL.LPE), FCS excluded: the
/// 8254x family's 16128-byte limit less the 4-byte FCS.
pub const MAX_LONG_FRAME_LEN: usize = 16_124;
/// PCI device IDs of the 82540 parts (vendor 0x8086), all of which have
/// the EERD layout this driver uses. QEMU's `e1000` is 0x100E.
pub const SUPPORTED_DEVICE_IDS: [u16; 5] = [0x100E, 0x1015, 0x1016, 0x1017, 0x101E];

const INTEL_VENDOR_ID: u16 = 0x8086;
/// The register BAR.
const BAR: u8 = 0;
/// DMA buffers are allocated a page at a time, each holding this many
/// packet buffers, so a platform that rounds allocations up to pages
/// wastes nothing.
const BUFFER_PAGE: usize = 4096;
const BUFFERS_PER_PAGE: usize = BUFFER_PAGE / BUFFER_SIZE;
/// The manual requires ring lengths to be multiples of 128 bytes, that is
/// of 8 descriptors; base addresses are 16-byte aligned (128 here).
const RING_ALIGN: usize = 128;
const RING_GRANULE: u16 = 8;
const MAX_RING: u16 = 4096;
/// Fired interrupt vectors taken per [`E1000::poll`].
const MAX_VECTORS_PER_POLL: usize = 8;
/// The interrupt causes the driver acts on.
const INTERRUPT_MASK: u32 =
    interrupt::LSC | interrupt::RXT0 | interrupt::RXO | interrupt::RXDMT0 | interrupt::TXDW;

/// How the driver sets the device up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Receive descriptors (and 2048-byte buffers): a multiple of 8 from 8
    /// to 4096. One is always held back, so one fewer can be filled.
    pub rx_descriptors: u16,
    /// Transmit descriptors (and 2048-byte buffers): a multiple of 8 from
    /// 8 to 4096. At most one fewer can be in flight.
    pub tx_descriptors: u16,
    /// Accept every unicast and multicast frame (RCTL.UPE and MPE). An
    /// uplink of a switch needs this: the guests behind it have addresses
    /// of their own.
    pub promiscuous: bool,
    /// Accept and send frames longer than [`MAX_FRAME_LEN`], up to
    /// [`MAX_LONG_FRAME_LEN`], spread over several descriptors (RCTL.LPE).
    /// Needs a transmit ring of at least 16 descriptors.
    pub long_packets: bool,
    /// Register reads spent waiting for the reset to finish or for one
    /// EEPROM word, before giving up. The driver has no clock; on real
    /// hardware a register read takes about a microsecond, so the default
    /// allows for about a tenth of a second.
    pub register_poll_limit: u32,
    /// Consecutive polls after which a ring is reported stalled (see
    /// [`PollOutcome::stalled`]).
    pub stall_polls: u32,
    /// Shortest gap between two interrupts, in nanoseconds (ITR, in units
    /// of 256 ns; 0 lets every cause interrupt at once). Each interrupt is
    /// an event channel notification and a wake-up of the domain, so the
    /// default caps them at about 20000 a second.
    pub interrupt_interval_ns: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rx_descriptors: 256,
            tx_descriptors: 256,
            promiscuous: true,
            long_packets: false,
            register_poll_limit: 100_000,
            stall_polls: 64,
            interrupt_interval_ns: 50_000,
        }
    }
}

/// Why the driver could not bring the device up or goes on no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A register, config space or DMA access failed.
    Pci(PciError),
    /// The device is not an 82540.
    UnsupportedDevice {
        /// PCI vendor ID read from config space.
        vendor: u16,
        /// PCI device ID read from config space.
        device: u16,
    },
    /// A ring size is not a multiple of 8 from 8 to 4096, or the transmit
    /// ring cannot hold the longest frame.
    InvalidRingSize,
    /// The device did not clear CTRL.RST within the poll limit.
    ResetTimeout,
    /// The EEPROM did not finish a read within the poll limit.
    EepromTimeout,
    /// Neither RAL0/RAH0 nor the EEPROM holds a unicast Ethernet address.
    NoEthernetAddress,
    /// An earlier access failed; the driver no longer touches the device.
    Failed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(error) => write!(f, "a register, config space or DMA access failed: {error}"),
            Self::UnsupportedDevice { vendor, device } => {
                write!(f, "device {vendor:04x}:{device:04x} is not an 82540")
            }
            Self::InvalidRingSize => f.write_str(
                "a ring size is not a multiple of 8 from 8 to 4096, \
                 or the transmit ring cannot hold the longest frame",
            ),
            Self::ResetTimeout => {
                f.write_str("the device did not clear CTRL.RST within the poll limit")
            }
            Self::EepromTimeout => {
                f.write_str("the EEPROM did not finish a read within the poll limit")
            }
            Self::NoEthernetAddress => {
                f.write_str("no unicast Ethernet address in RAL0/RAH0 or the EEPROM")
            }
            Self::Failed => f.write_str("an earlier device access failed"),
        }
    }
}

impl From<PciError> for Error {
    fn from(error: PciError) -> Self {
        Self::Pci(error)
    }
}

/// Why a frame was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The link is down.
    LinkDown,
    /// The transmit ring has no room for the frame.
    RingFull,
    /// The frame is shorter than an Ethernet header.
    TooShort,
    /// The frame is longer than the device sends in this configuration.
    TooLarge,
    /// A device access failed, now or earlier; the driver has stopped.
    Failed,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LinkDown => "the link is down",
            Self::RingFull => "the transmit ring has no room for the frame",
            Self::TooShort => "the frame is shorter than an Ethernet header",
            Self::TooLarge => "the frame is longer than the device sends in this configuration",
            Self::Failed => "a device access failed, now or earlier; the driver has stopped",
        })
    }
}

/// Counters since bring-up. Frames dropped are counted once, under the
/// first reason found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Frames received and handed up.
    pub rx_frames: u64,
    /// Bytes of the frames received and handed up.
    pub rx_bytes: u64,
    /// Frames the device flagged with a receive error (CRC, symbol,
    /// sequence, carrier extension, data error).
    pub rx_frame_errors: u64,
    /// Receive write-backs whose length exceeded the buffer: the device
    /// lied; the frame is dropped.
    pub rx_bogus_write_backs: u64,
    /// Frames dropped for being longer than the configuration allows.
    pub rx_oversize: u64,
    /// Frames dropped for being shorter than an Ethernet header.
    pub rx_runts: u64,
    /// Receiver overrun interrupts (ICR.RXO).
    pub rx_overruns: u64,
    /// Frames the device missed (MPC).
    pub rx_missed: u64,
    /// Times the device found no free receive descriptor (RNBC).
    pub rx_no_buffers: u64,
    /// Frames received with a bad CRC (CRCERRS).
    pub rx_crc_errors: u64,
    /// Frames the device reported sent.
    pub tx_frames: u64,
    /// Bytes of the frames the device reported sent.
    pub tx_bytes: u64,
    /// Frames the device reported lost to collisions (excess or late).
    pub tx_errors: u64,
    /// Frames refused because the transmit ring was full.
    pub tx_ring_full: u64,
    /// Frames refused because the link was down.
    pub tx_link_down: u64,
    /// Frames refused for their length.
    pub tx_bad_length: u64,
    /// Link state changes seen.
    pub link_changes: u64,
    /// Interrupt vectors taken.
    pub interrupts: u64,
    /// Times a ring was found stalled.
    pub stalls: u64,
}

/// What one [`E1000::poll`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// The interrupt causes read from ICR.
    pub causes: u32,
    /// Whether the link is up now.
    pub link_up: bool,
    /// Whether the link went up or down since the last poll.
    pub link_changed: bool,
    /// Transmit descriptors the device finished.
    pub tx_completed: usize,
    /// Whether a received frame waits in the ring: the caller should
    /// receive again before blocking.
    pub rx_pending: bool,
    /// Whether a ring made no progress for [`Config::stall_polls`] polls in
    /// a row although the device's head register says it has moved past
    /// the descriptor the driver waits for: the device took descriptors
    /// without writing them back. Only a reset ([`E1000::shutdown`], then
    /// [`E1000::new`]) gets it going again.
    pub stalled: bool,
}

/// Packet buffers, two to a DMA page; slot `n` is descriptor `n`'s buffer.
struct BufferPool<B> {
    pages: Vec<B>,
}

impl<B: DmaBuffer> BufferPool<B> {
    fn allocate<D: PciDevice<Buffer = B>>(device: &mut D, slots: u16) -> Result<Self, PciError> {
        let pages = usize::from(slots).div_ceil(BUFFERS_PER_PAGE);
        let mut pool = Self {
            pages: Vec::with_capacity(pages),
        };
        for _ in 0..pages {
            match device.allocate(BUFFER_PAGE, BUFFER_PAGE) {
                Ok(page) => pool.pages.push(page),
                Err(error) => {
                    // Nothing has been handed to the device yet.
                    pool.free(device);
                    return Err(error);
                }
            }
        }
        Ok(pool)
    }

    /// The page holding slot `slot` and the slot's offset in it.
    fn locate(&self, slot: u16) -> (&B, usize) {
        let slot = usize::from(slot);
        (
            &self.pages[slot / BUFFERS_PER_PAGE],
            (slot % BUFFERS_PER_PAGE) * BUFFER_SIZE,
        )
    }

    fn bus_address(&self, slot: u16) -> u64 {
        let (page, offset) = self.locate(slot);
        page.bus_address().0 + offset as u64
    }

    fn free<D: PciDevice<Buffer = B>>(&mut self, device: &mut D) {
        for page in self.pages.drain(..) {
            device.free(page);
        }
    }
}

/// The receive ring and the frame being assembled from it.
struct RxRing<B> {
    descriptors: B,
    buffers: BufferPool<B>,
    size: u16,
    /// The next descriptor the device will complete.
    next_to_clean: u16,
    /// The value last written to RDT.
    tail: u16,
    /// Descriptors cleaned and re-armed but not yet given back by RDT.
    unreturned: u16,
    /// A write-back already copied out by [`E1000::rx_pending`].
    peeked: Option<DescriptorBytes>,
    /// The frame assembled so far from descriptors without EOP.
    partial: Vec<u8>,
    /// Whether the rest of the current frame is being thrown away.
    discarding: bool,
}

impl<B: DmaBuffer> RxRing<B> {
    /// Descriptors the device owns.
    fn in_flight(&self) -> u16 {
        (self.tail + self.size - self.next_to_clean) % self.size
    }

    fn descriptor_offset(index: u16) -> usize {
        usize::from(index) * DESCRIPTOR_SIZE
    }
}

/// What the driver remembers of a transmit descriptor it filled.
#[derive(Debug, Clone, Copy, Default)]
struct TxSlot {
    /// The frame's length, on the frame's last descriptor only.
    frame_end: Option<usize>,
}

/// The transmit ring.
struct TxRing<B> {
    descriptors: B,
    buffers: BufferPool<B>,
    slots: Vec<TxSlot>,
    size: u16,
    /// The oldest descriptor not yet seen done.
    next_to_clean: u16,
    /// The value last written to TDT: the next descriptor to fill.
    tail: u16,
}

impl<B> TxRing<B> {
    fn in_flight(&self) -> u16 {
        (self.tail + self.size - self.next_to_clean) % self.size
    }

    fn free_descriptors(&self) -> u16 {
        self.size - 1 - self.in_flight()
    }
}

/// What bring-up leaves behind.
struct BroughtUp<B> {
    mac_address: MacAddress,
    link_up: bool,
    rx: RxRing<B>,
    tx: TxRing<B>,
}

/// The 82540EM driver, owning its device.
///
/// Calls, all bounded:
/// * [`E1000::poll`] on every interrupt event and timer tick: interrupt
///   causes, link state, transmit completions, hardware counters;
/// * [`E1000::send`] and [`E1000::receive`] for frames (or the
///   [`NetDevice`] methods, which wrap them);
/// * [`E1000::shutdown`] to stop the device and get it back.
pub struct E1000<D: PciDevice> {
    device: D,
    config: Config,
    mac_address: MacAddress,
    link_up: bool,
    rx: RxRing<D::Buffer>,
    tx: TxRing<D::Buffer>,
    statistics: Statistics,
    failed: Option<Error>,
    /// Polls in a row that found the receive ring stuck.
    rx_stuck_polls: u32,
    /// Polls in a row that found the transmit ring stuck.
    tx_stuck_polls: u32,
}

impl<D: PciDevice> fmt::Debug for E1000<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("E1000")
            .field("mac_address", &self.mac_address)
            .field("link_up", &self.link_up)
            .field("statistics", &self.statistics)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

fn read(device: &mut impl PciDevice, register: u32) -> Result<u32, PciError> {
    device.read32(BAR, u64::from(register))
}

fn write(device: &mut impl PciDevice, register: u32, value: u32) -> Result<(), PciError> {
    device.write32(BAR, u64::from(register), value)
}

fn valid_unicast(mac: &MacAddress) -> bool {
    mac[0] & 1 == 0 && mac.iter().any(|&byte| byte != 0)
}

/// Resets the device and waits, boundedly, for CTRL.RST to clear. Every
/// interrupt is masked before and after, and pending causes are cleared.
fn reset(device: &mut impl PciDevice, poll_limit: u32) -> Result<(), Error> {
    write(device, reg::IMC, interrupt::ALL)?;
    write(device, reg::RCTL, 0)?;
    write(device, reg::TCTL, 0)?;
    let control = read(device, reg::CTRL)?;
    write(device, reg::CTRL, control | ctrl::RST)?;
    let mut done = false;
    for _ in 0..poll_limit {
        if read(device, reg::CTRL)? & ctrl::RST == 0 {
            done = true;
            break;
        }
    }
    if !done {
        return Err(Error::ResetTimeout);
    }
    write(device, reg::IMC, interrupt::ALL)?;
    read(device, reg::ICR)?;
    Ok(())
}

fn read_eeprom(device: &mut impl PciDevice, word: u8, poll_limit: u32) -> Result<u16, Error> {
    write(
        device,
        reg::EERD,
        (u32::from(word) << eerd::ADDR_SHIFT) | eerd::START,
    )?;
    for _ in 0..poll_limit {
        let value = read(device, reg::EERD)?;
        if value & eerd::DONE != 0 {
            return Ok((value >> eerd::DATA_SHIFT) as u16);
        }
    }
    Err(Error::EepromTimeout)
}

/// The Ethernet address: RAL0/RAH0 if the device loaded a valid one there
/// at reset, otherwise the EEPROM's words 0 to 2.
fn read_mac_address(device: &mut impl PciDevice, poll_limit: u32) -> Result<MacAddress, Error> {
    let low = read(device, reg::RAL0)?;
    let high = read(device, reg::RAH0)?;
    let mut mac = [0u8; 6];
    mac[0..4].copy_from_slice(&low.to_le_bytes());
    mac[4..6].copy_from_slice(&high.to_le_bytes()[0..2]);
    if high & rah::AV != 0 && valid_unicast(&mac) {
        return Ok(mac);
    }
    for word in 0..3u8 {
        let value = read_eeprom(device, reg::eeprom::ETHERNET_ADDRESS + word, poll_limit)?;
        let at = usize::from(word) * 2;
        mac[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }
    if valid_unicast(&mac) {
        Ok(mac)
    } else {
        Err(Error::NoEthernetAddress)
    }
}

fn valid_ring_size(size: u16) -> bool {
    (RING_GRANULE..=MAX_RING).contains(&size) && size.is_multiple_of(RING_GRANULE)
}

impl<D: PciDevice> E1000<D> {
    /// Brings the device up: checks it is an 82540, enables bus mastering,
    /// resets it, reads the Ethernet address, sets the link up, builds both
    /// rings, enables the receiver and transmitter and unmasks the
    /// interrupts the driver handles. On failure the device comes back with
    /// the error; DMA memory the device was never told about is freed, the
    /// rest is leaked rather than reused.
    pub fn new(mut device: D, config: Config) -> Result<Self, (Error, D)> {
        match Self::bring_up(&mut device, &config) {
            Ok(BroughtUp {
                mac_address,
                link_up,
                rx,
                tx,
            }) => Ok(Self {
                device,
                config,
                mac_address,
                link_up,
                rx,
                tx,
                statistics: Statistics::default(),
                failed: None,
                rx_stuck_polls: 0,
                tx_stuck_polls: 0,
            }),
            Err(error) => Err((error, device)),
        }
    }

    fn bring_up(device: &mut D, config: &Config) -> Result<BroughtUp<D::Buffer>, Error> {
        let longest = if config.long_packets {
            MAX_LONG_FRAME_LEN
        } else {
            MAX_FRAME_LEN
        };
        if !valid_ring_size(config.rx_descriptors)
            || !valid_ring_size(config.tx_descriptors)
            || usize::from(config.tx_descriptors) <= longest.div_ceil(BUFFER_SIZE)
        {
            return Err(Error::InvalidRingSize);
        }
        let vendor = device.config_read16(config_register::VENDOR_ID)?;
        let device_id = device.config_read16(config_register::DEVICE_ID)?;
        if vendor != INTEL_VENDOR_ID || !SUPPORTED_DEVICE_IDS.contains(&device_id) {
            return Err(Error::UnsupportedDevice {
                vendor,
                device: device_id,
            });
        }
        enable_bus_master(device)?;
        reset(device, config.register_poll_limit)?;

        let mac_address = read_mac_address(device, config.register_poll_limit)?;
        write(
            device,
            reg::RAL0,
            u32::from_le_bytes([
                mac_address[0],
                mac_address[1],
                mac_address[2],
                mac_address[3],
            ]),
        )?;
        write(
            device,
            reg::RAH0,
            u32::from(u16::from_le_bytes([mac_address[4], mac_address[5]])) | rah::AV,
        )?;
        for entry in 0..reg::MTA_LEN {
            write(device, reg::MTA + entry * 4, 0)?;
        }

        // The internal PHY negotiates on its own; SLU lets the MAC follow it.
        let control = read(device, reg::CTRL)?;
        write(
            device,
            reg::CTRL,
            (control | ctrl::SLU | ctrl::ASDE)
                & !(ctrl::LRST | ctrl::PHY_RST | ctrl::ILOS | ctrl::VME),
        )?;

        let rx = Self::build_rx(device, config)?;
        let tx = Self::build_tx(device, config)?;

        let mut receive_control = rctl::EN | rctl::BAM | rctl::BSIZE_2048 | rctl::SECRC;
        if config.promiscuous {
            receive_control |= rctl::UPE | rctl::MPE;
        }
        if config.long_packets {
            receive_control |= rctl::LPE;
        }
        write(device, reg::RCTL, receive_control)?;
        write(
            device,
            reg::TIPG,
            tipg::IPGT_COPPER | tipg::IPGR1 | tipg::IPGR2,
        )?;
        write(
            device,
            reg::TCTL,
            tctl::EN
                | tctl::PSP
                | (tctl::CT_DEFAULT << tctl::CT_SHIFT)
                | (tctl::COLD_FULL_DUPLEX << tctl::COLD_SHIFT),
        )?;

        // QEMU's 82540EM has no MSI capability; INTx is the usual answer.
        // Without either (the platform routes none) the device is polled:
        // every cause stays masked and the line disabled, and poll() reads
        // ICR all the same.
        let mode = [InterruptMode::Msi, InterruptMode::Intx]
            .into_iter()
            .find(|&mode| device.enable_interrupts(mode, 1).is_ok());
        let command = device.config_read16(config_register::COMMAND)?;
        let command = if mode == Some(InterruptMode::Intx) {
            command & !COMMAND_INTX_DISABLE
        } else {
            command | COMMAND_INTX_DISABLE
        };
        device.config_write16(config_register::COMMAND, command)?;
        if mode.is_some() {
            write(
                device,
                reg::ITR,
                (config.interrupt_interval_ns / 256).min(0xFFFF),
            )?;
            write(device, reg::IMS, INTERRUPT_MASK)?;
        }

        let link_up = read(device, reg::STATUS)? & reg::status::LU != 0;
        log::info!(
            "e1000: {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, link {}, interrupts: {:?} (None: polled)",
            mac_address[0],
            mac_address[1],
            mac_address[2],
            mac_address[3],
            mac_address[4],
            mac_address[5],
            if link_up { "up" } else { "down" },
            mode
        );
        Ok(BroughtUp {
            mac_address,
            link_up,
            rx,
            tx,
        })
    }

    fn build_rx(device: &mut D, config: &Config) -> Result<RxRing<D::Buffer>, Error> {
        let size = config.rx_descriptors;
        let descriptors = device.allocate(usize::from(size) * DESCRIPTOR_SIZE, RING_ALIGN)?;
        let buffers = match BufferPool::allocate(device, size) {
            Ok(buffers) => buffers,
            Err(error) => {
                device.free(descriptors);
                return Err(error.into());
            }
        };
        for index in 0..size {
            descriptors.write(
                RxRing::<D::Buffer>::descriptor_offset(index),
                &rx_fresh(buffers.bus_address(index)),
            )?;
        }
        let BusAddress(base) = descriptors.bus_address();
        write(device, reg::RDBAL, base as u32)?;
        write(device, reg::RDBAH, (base >> 32) as u32)?;
        write(device, reg::RDLEN, u32::from(size) * DESCRIPTOR_SIZE as u32)?;
        write(device, reg::RDH, 0)?;
        write(device, reg::RDTR, 0)?;
        let tail = size - 1;
        write(device, reg::RDT, u32::from(tail))?;
        Ok(RxRing {
            descriptors,
            buffers,
            size,
            next_to_clean: 0,
            tail,
            unreturned: 0,
            peeked: None,
            partial: Vec::new(),
            discarding: false,
        })
    }

    fn build_tx(device: &mut D, config: &Config) -> Result<TxRing<D::Buffer>, Error> {
        let size = config.tx_descriptors;
        let descriptors = device.allocate(usize::from(size) * DESCRIPTOR_SIZE, RING_ALIGN)?;
        let buffers = match BufferPool::allocate(device, size) {
            Ok(buffers) => buffers,
            Err(error) => {
                device.free(descriptors);
                return Err(error.into());
            }
        };
        let BusAddress(base) = descriptors.bus_address();
        write(device, reg::TDBAL, base as u32)?;
        write(device, reg::TDBAH, (base >> 32) as u32)?;
        write(device, reg::TDLEN, u32::from(size) * DESCRIPTOR_SIZE as u32)?;
        write(device, reg::TDH, 0)?;
        write(device, reg::TDT, 0)?;
        write(device, reg::TIDV, 0)?;
        Ok(TxRing {
            descriptors,
            buffers,
            slots: alloc::vec![TxSlot::default(); usize::from(size)],
            size,
            next_to_clean: 0,
            tail: 0,
        })
    }

    /// The Ethernet address in use.
    pub fn mac_address(&self) -> MacAddress {
        self.mac_address
    }

    /// Whether the link was up at the last look.
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Counters since bring-up.
    pub fn statistics(&self) -> Statistics {
        self.statistics
    }

    /// The configuration the device was brought up with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The error that stopped the driver, if one did.
    pub fn failure(&self) -> Option<Error> {
        self.failed
    }

    /// The device, for the platform's own bookkeeping.
    pub fn device(&self) -> &D {
        &self.device
    }

    fn max_frame_len(&self) -> usize {
        if self.config.long_packets {
            MAX_LONG_FRAME_LEN
        } else {
            MAX_FRAME_LEN
        }
    }

    /// Records the first failure; from then on the device is left alone.
    fn fail(&mut self, error: Error) -> Error {
        if self.failed.is_none() {
            log::error!("e1000: stopping: {error}");
            self.failed = Some(error);
        }
        Error::Failed
    }

    fn check(&self) -> Result<(), Error> {
        match self.failed {
            Some(_) => Err(Error::Failed),
            None => Ok(()),
        }
    }

    /// Handles what the device signalled: takes the fired interrupt
    /// vectors (at most 8), reads and so clears ICR, follows the link
    /// state, reaps finished transmit descriptors (at most one ring),
    /// gathers the clear-on-read hardware counters, gives re-armed receive
    /// descriptors back, and unmasks the vectors taken. Call it on every
    /// interrupt event and on a timer tick; it works without interrupts
    /// too. About a dozen register accesses plus one descriptor read per
    /// finished transmit descriptor.
    pub fn poll(&mut self) -> Result<PollOutcome, Error> {
        self.check()?;
        let mut vectors = [0u16; MAX_VECTORS_PER_POLL];
        let mut taken = 0;
        while taken < MAX_VECTORS_PER_POLL {
            match self.device.take_fired() {
                Some(vector) => {
                    vectors[taken] = vector;
                    taken += 1;
                }
                None => break,
            }
        }
        self.statistics.interrupts += taken as u64;
        let result = self.poll_device();
        // Unmasked only after ICR was read: an INTx line is deasserted by
        // then, and a cause raised since fires again at unmask.
        for &vector in &vectors[..taken] {
            self.device.unmask(vector);
        }
        result.map_err(|error| self.fail(error))
    }

    fn poll_device(&mut self) -> Result<PollOutcome, Error> {
        let causes = read(&mut self.device, reg::ICR)?;
        if causes & interrupt::RXO != 0 {
            self.statistics.rx_overruns += 1;
        }
        // STATUS is read on every poll rather than only on LSC, so that a
        // change is seen even when the cause was lost or interrupts are off.
        let link_up = read(&mut self.device, reg::STATUS)? & reg::status::LU != 0;
        let link_changed = link_up != self.link_up;
        if link_changed {
            self.statistics.link_changes += 1;
            self.link_up = link_up;
            log::info!("e1000: link {}", if link_up { "up" } else { "down" });
        }
        let tx_completed = self.reap_tx()?;
        let missed = read(&mut self.device, reg::MPC)?;
        let no_buffers = read(&mut self.device, reg::RNBC)?;
        let crc_errors = read(&mut self.device, reg::CRCERRS)?;
        self.statistics.rx_missed += u64::from(missed);
        self.statistics.rx_no_buffers += u64::from(no_buffers);
        self.statistics.rx_crc_errors += u64::from(crc_errors);
        self.return_rx_descriptors()?;
        let rx_pending = self.peek_rx()?;
        let stalled = self.watch_for_stalls(rx_pending)?;
        Ok(PollOutcome {
            causes,
            link_up,
            link_changed,
            tx_completed,
            rx_pending,
            stalled,
        })
    }

    /// Counts polls in a row in which a ring waits for a descriptor the
    /// device's head has already moved past. RDH and TDH are only hints
    /// here: the device may move its head before it writes a descriptor
    /// back, which is why one look is not enough and it takes
    /// [`Config::stall_polls`] of them.
    fn watch_for_stalls(&mut self, rx_pending: bool) -> Result<bool, Error> {
        let rx_stuck = !rx_pending
            && self.rx.in_flight() > 0
            && read(&mut self.device, reg::RDH)? != u32::from(self.rx.next_to_clean);
        let tx_stuck = self.tx.in_flight() > 0
            && read(&mut self.device, reg::TDH)? != u32::from(self.tx.next_to_clean);
        self.rx_stuck_polls = if rx_stuck { self.rx_stuck_polls + 1 } else { 0 };
        self.tx_stuck_polls = if tx_stuck { self.tx_stuck_polls + 1 } else { 0 };
        let limit = self.config.stall_polls.max(1);
        let stalled = self.rx_stuck_polls >= limit || self.tx_stuck_polls >= limit;
        if self.rx_stuck_polls == limit || self.tx_stuck_polls == limit {
            self.statistics.stalls += 1;
            log::warn!(
                "e1000: {} ring stalled: the device moved past a descriptor without writing it back",
                if self.rx_stuck_polls >= limit { "receive" } else { "transmit" }
            );
        }
        Ok(stalled)
    }

    /// Reaps finished transmit descriptors, oldest first, stopping at the
    /// first not done: at most one ring's worth.
    fn reap_tx(&mut self) -> Result<usize, Error> {
        let mut completed = 0;
        while self.tx.in_flight() > 0 {
            let index = self.tx.next_to_clean;
            let mut bytes = [0u8; DESCRIPTOR_SIZE];
            self.tx
                .descriptors
                .read(usize::from(index) * DESCRIPTOR_SIZE, &mut bytes)?;
            let status = tx_status_of(&bytes);
            if status & tx_status::DD == 0 {
                break;
            }
            // The frame's length comes from the driver's own record, not
            // from the write-back.
            if let Some(length) = self.tx.slots[usize::from(index)].frame_end.take() {
                if status & (tx_status::EC | tx_status::LC) != 0 {
                    self.statistics.tx_errors += 1;
                } else {
                    self.statistics.tx_frames += 1;
                    self.statistics.tx_bytes += length as u64;
                }
            }
            self.tx.next_to_clean = (index + 1) % self.tx.size;
            completed += 1;
        }
        Ok(completed)
    }

    /// Queues one frame (the bytes from the destination MAC on, without
    /// FCS) for transmission: copies it into as many 2048-byte buffers as
    /// it needs, fills their descriptors and writes TDT once. Reaps
    /// finished descriptors first when the ring looks full.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        if self.failed.is_some() {
            return Err(SendError::Failed);
        }
        if !self.link_up {
            self.statistics.tx_link_down += 1;
            return Err(SendError::LinkDown);
        }
        if frame.len() < MIN_FRAME_LEN {
            self.statistics.tx_bad_length += 1;
            return Err(SendError::TooShort);
        }
        if frame.len() > self.max_frame_len() {
            self.statistics.tx_bad_length += 1;
            return Err(SendError::TooLarge);
        }
        let needed = frame.len().div_ceil(BUFFER_SIZE) as u16;
        if self.tx.free_descriptors() < needed {
            if let Err(error) = self.reap_tx() {
                self.fail(error);
                return Err(SendError::Failed);
            }
            if self.tx.free_descriptors() < needed {
                self.statistics.tx_ring_full += 1;
                return Err(SendError::RingFull);
            }
        }
        match self.fill_tx(frame) {
            Ok(()) => Ok(()),
            Err(error) => {
                self.fail(error);
                Err(SendError::Failed)
            }
        }
    }

    fn fill_tx(&mut self, frame: &[u8]) -> Result<(), Error> {
        let chunks = frame.len().div_ceil(BUFFER_SIZE);
        let mut index = self.tx.tail;
        for (number, chunk) in frame.chunks(BUFFER_SIZE).enumerate() {
            let last = number + 1 == chunks;
            let (page, offset) = self.tx.buffers.locate(index);
            page.write(offset, chunk)?;
            let mut command = tx_command::IFCS | tx_command::RS;
            if last {
                command |= tx_command::EOP;
            }
            let descriptor = tx_legacy(
                self.tx.buffers.bus_address(index),
                chunk.len() as u16,
                command,
            );
            self.tx
                .descriptors
                .write(usize::from(index) * DESCRIPTOR_SIZE, &descriptor)?;
            self.tx.slots[usize::from(index)].frame_end = last.then_some(frame.len());
            index = (index + 1) % self.tx.size;
        }
        self.tx.tail = index;
        write(&mut self.device, reg::TDT, u32::from(index))?;
        Ok(())
    }

    /// Whether a finished receive descriptor waits. Copies the descriptor
    /// out at most once: the copy is kept for [`E1000::receive`].
    pub fn rx_pending(&mut self) -> Result<bool, Error> {
        self.check()?;
        self.peek_rx().map_err(|error| self.fail(error))
    }

    fn peek_rx(&mut self) -> Result<bool, Error> {
        if self.rx.peeked.is_some() {
            return Ok(true);
        }
        if self.rx.in_flight() == 0 {
            return Ok(false);
        }
        let bytes = self.read_rx_descriptor(self.rx.next_to_clean)?;
        if RxWriteBack::decode(&bytes).judge(BUFFER_SIZE) == RxJudgement::NotDone {
            return Ok(false);
        }
        self.rx.peeked = Some(bytes);
        Ok(true)
    }

    fn read_rx_descriptor(&mut self, index: u16) -> Result<DescriptorBytes, Error> {
        let mut bytes = [0u8; DESCRIPTOR_SIZE];
        self.rx
            .descriptors
            .read(RxRing::<D::Buffer>::descriptor_offset(index), &mut bytes)?;
        Ok(bytes)
    }

    /// Takes one received frame (without FCS), if a whole one is there.
    ///
    /// Looks at no more descriptors than the ring holds. Frames the device
    /// flagged bad, write-backs whose length exceeds the buffer, frames
    /// longer than the configuration allows and frames shorter than an
    /// Ethernet header are dropped and counted; a frame whose last
    /// descriptor is not done yet stays assembled in the driver until a
    /// later call. Re-armed descriptors go back to the device by RDT in
    /// batches, and always before this returns `None`.
    pub fn receive(&mut self) -> Result<Option<Vec<u8>>, Error> {
        self.check()?;
        self.receive_frame().map_err(|error| self.fail(error))
    }

    fn receive_frame(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let batch = (self.rx.size / 4).min(16);
        for _ in 0..self.rx.size {
            if self.rx.in_flight() == 0 {
                break;
            }
            let index = self.rx.next_to_clean;
            let bytes = match self.rx.peeked.take() {
                Some(bytes) => bytes,
                None => self.read_rx_descriptor(index)?,
            };
            let judgement = RxWriteBack::decode(&bytes).judge(BUFFER_SIZE);
            let end_of_packet = match judgement {
                RxJudgement::NotDone => break,
                RxJudgement::Fragment {
                    length,
                    end_of_packet,
                } => {
                    if !self.rx.discarding {
                        if self.rx.partial.len() + length > self.max_frame_len() {
                            self.statistics.rx_oversize += 1;
                            self.drop_partial();
                        } else {
                            let start = self.rx.partial.len();
                            self.rx.partial.resize(start + length, 0);
                            let (page, offset) = self.rx.buffers.locate(index);
                            page.read(offset, &mut self.rx.partial[start..])?;
                        }
                    }
                    end_of_packet
                }
                RxJudgement::FrameError { end_of_packet } => {
                    if !self.rx.discarding {
                        self.statistics.rx_frame_errors += 1;
                        self.drop_partial();
                    }
                    end_of_packet
                }
                RxJudgement::BogusLength { end_of_packet } => {
                    self.statistics.rx_bogus_write_backs += 1;
                    self.drop_partial();
                    end_of_packet
                }
            };
            self.rearm_rx(index)?;
            if self.rx.unreturned >= batch {
                self.return_rx_descriptors()?;
            }
            if !end_of_packet {
                continue;
            }
            if self.rx.discarding {
                self.rx.discarding = false;
                continue;
            }
            let frame = core::mem::take(&mut self.rx.partial);
            if frame.len() < MIN_FRAME_LEN {
                self.statistics.rx_runts += 1;
                continue;
            }
            self.statistics.rx_frames += 1;
            self.statistics.rx_bytes += frame.len() as u64;
            return Ok(Some(frame));
        }
        self.return_rx_descriptors()?;
        Ok(None)
    }

    /// Throws the frame assembled so far away, and the rest of it up to EOP.
    fn drop_partial(&mut self) {
        self.rx.partial.clear();
        self.rx.discarding = true;
    }

    /// Writes a fresh descriptor (own buffer address, status zero) over a
    /// cleaned one, whatever the device wrote back into it.
    fn rearm_rx(&mut self, index: u16) -> Result<(), Error> {
        let fresh = rx_fresh(self.rx.buffers.bus_address(index));
        self.rx
            .descriptors
            .write(RxRing::<D::Buffer>::descriptor_offset(index), &fresh)?;
        self.rx.next_to_clean = (index + 1) % self.rx.size;
        self.rx.unreturned += 1;
        Ok(())
    }

    /// Gives re-armed receive descriptors back to the device with one RDT
    /// write.
    fn return_rx_descriptors(&mut self) -> Result<(), Error> {
        if self.rx.unreturned == 0 {
            return Ok(());
        }
        self.rx.tail = (self.rx.tail + self.rx.unreturned) % self.rx.size;
        self.rx.unreturned = 0;
        write(&mut self.device, reg::RDT, u32::from(self.rx.tail))?;
        Ok(())
    }

    /// Stops the device and hands it back: masks interrupts, disables the
    /// receiver and transmitter, resets it and stops interrupt delivery.
    /// The rings' DMA memory is freed only if the reset was confirmed;
    /// otherwise the device might still write it, and it is leaked.
    pub fn shutdown(mut self) -> D {
        let stopped = reset(&mut self.device, self.config.register_poll_limit);
        self.device.disable_interrupts();
        match stopped {
            Ok(()) => {
                let Self {
                    mut device, rx, tx, ..
                } = self;
                let RxRing {
                    descriptors,
                    mut buffers,
                    ..
                } = rx;
                device.free(descriptors);
                buffers.free(&mut device);
                let TxRing {
                    descriptors,
                    mut buffers,
                    ..
                } = tx;
                device.free(descriptors);
                buffers.free(&mut device);
                device
            }
            Err(error) => {
                log::error!("e1000: reset at shutdown failed ({error}); ring memory is leaked");
                // Dropping a buffer without `Dma::free` leaks it (pcidev's
                // contract), which is what a device that may still write
                // it calls for.
                self.device
            }
        }
    }
}

/// The uplink port of netback's switch. The device takes no offloads:
/// netback fills in checksums and segments super-packets before
/// [`NetDevice::transmit`].
impl<D: PciDevice> NetDevice for E1000<D> {
    fn offloads(&self) -> Offloads {
        Offloads::NONE
    }

    fn transmit(&mut self, frame: Frame) -> Result<(), DeviceError> {
        self.send(&frame.data).map_err(|error| match error {
            SendError::RingFull => DeviceError::Busy,
            // DeviceError has no variant for a runt; netback never hands
            // one over (it drops frames shorter than an Ethernet header).
            SendError::TooLarge | SendError::TooShort => DeviceError::TooLarge,
            SendError::LinkDown | SendError::Failed => DeviceError::LinkDown,
        })
    }

    fn receive(&mut self) -> Option<Frame> {
        match E1000::receive(self) {
            Ok(Some(data)) => Some(Frame {
                data,
                checksum: ChecksumState::Complete,
                gso: None,
            }),
            Ok(None) | Err(_) => None,
        }
    }
}

// The descriptor module is public for the model and for tests; keep its
// buffer-size assumption tied to the driver's.
const _: () = assert!(BUFFER_SIZE == 2048 && descriptor::DESCRIPTOR_SIZE == 16);
