//! A behavioural model of the 82540EM, implementing the [`pcidev`] traits
//! over plain memory, for host tests of the driver and of what wires it.
//!
//! What it models: config space (IDs and the command register), the
//! registers the driver uses with their side effects (CTRL.RST resetting
//! everything and reloading RAL0/RAH0 from the EEPROM, EERD reads, ICR
//! cleared on read, ICS/IMS/IMC, clear-on-read counters), link up when the
//! cable is in and CTRL.SLU is set, the legacy transmit ring (TDH chases
//! TDT when TDT is written; frames gathered up to EOP go on the wire; DD
//! written back when RS asks for it), the receive ring (address filter,
//! frames split over as many buffers as RCTL.BSIZE requires, write-back of
//! length, DD and EOP, RXO and MPC when no descriptor is free), and a
//! level-triggered INTx line behind the platform's mask-on-fire.
//!
//! DMA memory is a set of regions at bus addresses above 4 GiB (so the high
//! halves of the ring base registers matter). Device DMA outside a live
//! region — a stray descriptor address, a freed buffer — is recorded as a
//! [`DmaFault`], as an IOMMU would, and stops the ring that made it.
//!
//! What it does not model: the PHY and MDIC, flow control, VLAN filtering,
//! the multicast hash, checksum and segmentation offloads, context
//! descriptors, interrupt delays and throttling, MSI, and timing: the
//! device does its work inside the register write that starts it, or when
//! a test hands it a frame.
//!
//! Hostile behaviour is driven from the test: [`Model::receive_raw`]
//! writes back any length, status and errors; [`Model::set_tx_write_back`]
//! withholds or falsifies transmit status; [`Model::set_gone`] makes every
//! access fail.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use pcidev::{
    check_range, check_register, BusAddress, ConfigSpace, Dma, DmaBuffer, InterruptMode,
    Interrupts, Mmio, PciError,
};

use crate::descriptor::{rx_status, tx_command, tx_status, DESCRIPTOR_SIZE};
use crate::registers::{self as reg, ctrl, eerd, interrupt, rah, rctl, tctl};

/// Length of BAR 0 on the 82540EM.
pub const BAR0_LEN: u64 = 0x2_0000;
/// Where the model's DMA memory starts on the bus.
pub const DMA_BASE: u64 = 0x1_0000_0000;
/// Words in the model's EEPROM.
pub const EEPROM_WORDS: usize = 64;
const CONFIG_SPACE_LEN: usize = 256;
/// Shortest frame on the wire without FCS; TCTL.PSP pads up to it.
const MIN_WIRE_FRAME: usize = 60;
/// Longest frame accepted without RCTL.LPE, FCS excluded.
const MAX_FRAME: usize = 1518;
/// Longest frame accepted with RCTL.LPE, FCS excluded.
const MAX_LONG_FRAME: usize = 16_124;

/// A DMA the device attempted outside live DMA memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaFault {
    /// Bus address of the access.
    pub address: u64,
    /// Bytes accessed.
    pub len: usize,
    /// Whether it was a write.
    pub write: bool,
}

/// What became of a frame offered to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written into receive buffers, in this many descriptors.
    Delivered(usize),
    /// The receiver is disabled, the ring is empty, or the link is down.
    NotReceiving,
    /// The address filter did not accept the destination.
    Filtered,
    /// Longer than the device accepts in its configuration.
    TooLong,
    /// Not enough free receive descriptors: counted in MPC, RXO raised.
    Overrun,
    /// A DMA fault stopped the delivery.
    Fault,
}

/// How the model answers transmit descriptors with RS set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxWriteBack {
    /// Writes DD, as the hardware does.
    Done,
    /// Writes nothing back: the ring looks stuck.
    Withhold,
    /// Writes this status byte back instead.
    Status(u8),
}

/// Counts of what the model did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelCounters {
    /// Frames put on the wire.
    pub tx_frames: u64,
    /// Transmit descriptors consumed.
    pub tx_descriptors: u64,
    /// Frames transmitted while the link was down, and so lost.
    pub tx_lost_link_down: u64,
    /// Transmit descriptors the model does not implement (DEXT set).
    pub tx_unsupported_descriptors: u64,
    /// Frames delivered into receive buffers.
    pub rx_delivered: u64,
    /// Frames refused by the address filter.
    pub rx_filtered: u64,
    /// Frames refused for lack of receive descriptors.
    pub rx_overruns: u64,
    /// Ring register writes that pointed outside the ring (TDT, RDT).
    pub bad_tail_writes: u64,
}

struct Region {
    bytes: Vec<u8>,
    live: bool,
}

/// DMA memory, by bus address.
#[derive(Default)]
struct Memory {
    regions: BTreeMap<u64, Region>,
    next: u64,
    faults: Vec<DmaFault>,
    allocated_bytes: usize,
    limit: Option<usize>,
}

impl Memory {
    /// The live region holding `[address, address + len)`, and the offset.
    fn locate(&mut self, address: u64, len: usize) -> Option<(&mut Region, usize)> {
        let (&start, region) = self.regions.range_mut(..=address).next_back()?;
        let offset = usize::try_from(address - start).ok()?;
        let end = offset.checked_add(len)?;
        if !region.live || end > region.bytes.len() {
            return None;
        }
        Some((region, offset))
    }

    fn device_read(&mut self, address: u64, destination: &mut [u8]) -> bool {
        match self.locate(address, destination.len()) {
            Some((region, offset)) => {
                destination.copy_from_slice(&region.bytes[offset..offset + destination.len()]);
                true
            }
            None => {
                self.faults.push(DmaFault {
                    address,
                    len: destination.len(),
                    write: false,
                });
                false
            }
        }
    }

    fn device_write(&mut self, address: u64, source: &[u8]) -> bool {
        match self.locate(address, source.len()) {
            Some((region, offset)) => {
                region.bytes[offset..offset + source.len()].copy_from_slice(source);
                true
            }
            None => {
                self.faults.push(DmaFault {
                    address,
                    len: source.len(),
                    write: true,
                });
                false
            }
        }
    }
}

/// A DMA buffer of the model.
#[derive(Debug)]
pub struct ModelBuffer {
    memory: Rc<RefCell<Memory>>,
    address: u64,
    len: usize,
}

impl core::fmt::Debug for Memory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Memory")
            .field("regions", &self.regions.len())
            .finish_non_exhaustive()
    }
}

impl DmaBuffer for ModelBuffer {
    fn len(&self) -> usize {
        self.len
    }

    fn bus_address(&self) -> BusAddress {
        BusAddress(self.address)
    }

    fn read(&self, offset: usize, destination: &mut [u8]) -> Result<(), PciError> {
        check_range(self.len as u64, offset as u64, destination.len() as u64)?;
        let memory = self.memory.borrow();
        let region = memory
            .regions
            .get(&self.address)
            .ok_or(PciError::OutOfBounds)?;
        destination.copy_from_slice(&region.bytes[offset..offset + destination.len()]);
        Ok(())
    }

    fn write(&self, offset: usize, source: &[u8]) -> Result<(), PciError> {
        check_range(self.len as u64, offset as u64, source.len() as u64)?;
        let mut memory = self.memory.borrow_mut();
        let region = memory
            .regions
            .get_mut(&self.address)
            .ok_or(PciError::OutOfBounds)?;
        region.bytes[offset..offset + source.len()].copy_from_slice(source);
        Ok(())
    }
}

struct State {
    config_space: [u8; CONFIG_SPACE_LEN],
    registers: BTreeMap<u32, u32>,
    eeprom: [u16; EEPROM_WORDS],
    eeprom_answers: bool,
    load_address_at_reset: bool,
    /// CTRL reads that still show RST after a reset.
    reset_reads: u32,
    reset_pending: u32,
    cable: bool,
    link_was_up: bool,
    gone: bool,
    tx_write_back: TxWriteBack,
    tx_partial: Vec<u8>,
    wire: VecDeque<Vec<u8>>,
    interrupt_mode: Option<InterruptMode>,
    /// Whether the platform routes the INTx line at all.
    line_routed: bool,
    line_masked: bool,
    fired: bool,
    counters: ModelCounters,
}

impl State {
    fn get(&self, register: u32) -> u32 {
        self.registers.get(&register).copied().unwrap_or(0)
    }

    fn set(&mut self, register: u32, value: u32) {
        self.registers.insert(register, value);
    }

    fn link_up(&self) -> bool {
        self.cable && self.get(reg::CTRL) & ctrl::SLU != 0
    }

    /// Raises LSC if the link changed since last looked at.
    fn follow_link(&mut self) {
        let up = self.link_up();
        if up != self.link_was_up {
            self.link_was_up = up;
            self.raise(interrupt::LSC);
        }
    }

    fn raise(&mut self, causes: u32) {
        let icr = self.get(reg::ICR) | causes;
        self.set(reg::ICR, icr);
        self.update_line();
    }

    /// The INTx line is asserted while a cause is pending and unmasked in
    /// IMS; the platform turns an asserted, unmasked line into one event
    /// and masks it until the driver unmasks.
    fn update_line(&mut self) {
        let asserted = self.get(reg::ICR) & self.get(reg::IMS) != 0;
        if asserted && self.interrupt_mode.is_some() && !self.line_masked {
            self.fired = true;
            self.line_masked = true;
        }
    }

    fn reset(&mut self) {
        self.registers.clear();
        self.tx_partial.clear();
        if self.load_address_at_reset {
            let words = self.eeprom;
            let low = u32::from(words[0]) | (u32::from(words[1]) << 16);
            self.set(reg::RAL0, low);
            self.set(reg::RAH0, u32::from(words[2]) | rah::AV);
        }
        self.link_was_up = self.link_up();
        self.reset_pending = self.reset_reads;
    }

    fn ring_len(&self, length_register: u32) -> u32 {
        self.get(length_register) / DESCRIPTOR_SIZE as u32
    }

    fn ring_base(&self, low: u32, high: u32) -> u64 {
        u64::from(self.get(low)) | (u64::from(self.get(high)) << 32)
    }

    fn receive_buffer_size(&self) -> usize {
        let control = self.get(reg::RCTL);
        let size = match (control & rctl::BSIZE_MASK) >> 16 {
            0 => 2048,
            1 => 1024,
            2 => 512,
            _ => 256,
        };
        if control & rctl::BSEX != 0 && size != 2048 {
            size * 16
        } else {
            size
        }
    }
}

/// The model: a handle shared by the driver (which owns one clone as its
/// device) and the test (which keeps another to act as the wire and the
/// hardware's other side).
#[derive(Clone)]
pub struct Model {
    state: Rc<RefCell<State>>,
    memory: Rc<RefCell<Memory>>,
}

impl core::fmt::Debug for Model {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Model").finish_non_exhaustive()
    }
}

impl Model {
    /// An 82540EM (device 0x100E) whose EEPROM holds `mac`, cable in.
    pub fn new(mac: [u8; 6]) -> Self {
        let mut config_space = [0u8; CONFIG_SPACE_LEN];
        config_space[0..2].copy_from_slice(&0x8086u16.to_le_bytes());
        config_space[2..4].copy_from_slice(&0x100Eu16.to_le_bytes());
        config_space[0x08..0x0C].copy_from_slice(&0x0200_0003u32.to_le_bytes());
        config_space[0x10..0x14].copy_from_slice(&0xFEB8_0000u32.to_le_bytes());
        config_space[0x3D] = 1;
        let mut eeprom = [0xFFFFu16; EEPROM_WORDS];
        for word in 0..3 {
            eeprom[word] = u16::from_le_bytes([mac[word * 2], mac[word * 2 + 1]]);
        }
        let mut state = State {
            config_space,
            registers: BTreeMap::new(),
            eeprom,
            eeprom_answers: true,
            load_address_at_reset: true,
            reset_reads: 3,
            reset_pending: 0,
            cable: true,
            link_was_up: false,
            gone: false,
            tx_write_back: TxWriteBack::Done,
            tx_partial: Vec::new(),
            wire: VecDeque::new(),
            interrupt_mode: None,
            line_routed: true,
            line_masked: false,
            fired: false,
            counters: ModelCounters::default(),
        };
        state.reset();
        state.reset_pending = 0;
        Self {
            state: Rc::new(RefCell::new(state)),
            memory: Rc::new(RefCell::new(Memory {
                next: DMA_BASE,
                ..Memory::default()
            })),
        }
    }

    /// Sets the PCI device ID in config space.
    pub fn set_device_id(&self, device: u16) {
        self.state.borrow_mut().config_space[2..4].copy_from_slice(&device.to_le_bytes());
    }

    /// Whether a reset loads RAL0/RAH0 from the EEPROM (the hardware does).
    pub fn set_load_address_at_reset(&self, load: bool) {
        self.state.borrow_mut().load_address_at_reset = load;
    }

    /// Whether EERD reads complete.
    pub fn set_eeprom_answers(&self, answers: bool) {
        self.state.borrow_mut().eeprom_answers = answers;
    }

    /// Overwrites an EEPROM word.
    pub fn set_eeprom_word(&self, word: usize, value: u16) {
        if let Some(slot) = self.state.borrow_mut().eeprom.get_mut(word) {
            *slot = value;
        }
    }

    /// CTRL reads after a reset that still show RST (`u32::MAX`: forever).
    pub fn set_reset_reads(&self, reads: u32) {
        self.state.borrow_mut().reset_reads = reads;
    }

    /// Plugs the cable in or pulls it; a link change raises LSC.
    pub fn set_cable(&self, plugged: bool) {
        let mut state = self.state.borrow_mut();
        state.cable = plugged;
        state.follow_link();
    }

    /// Whether the link is up as the device sees it.
    pub fn link_up(&self) -> bool {
        self.state.borrow().link_up()
    }

    /// Makes every register and config space access fail (a surprise
    /// removal, or a platform that has cut the device off).
    pub fn set_gone(&self, gone: bool) {
        self.state.borrow_mut().gone = gone;
    }

    /// How transmit descriptors are written back.
    pub fn set_tx_write_back(&self, mode: TxWriteBack) {
        self.state.borrow_mut().tx_write_back = mode;
    }

    /// Whether the platform can route the INTx line (`false`: every
    /// interrupt mode is refused, as with `pci-interrupts=none`).
    pub fn set_line_routed(&self, routed: bool) {
        self.state.borrow_mut().line_routed = routed;
    }

    /// Caps the DMA memory the platform hands out.
    pub fn set_dma_limit(&self, bytes: Option<usize>) {
        self.memory.borrow_mut().limit = bytes;
    }

    /// A register's value, without the side effects a read by the driver
    /// would have.
    pub fn register(&self, register: u32) -> u32 {
        self.state.borrow().get(register)
    }

    /// Config space command register.
    pub fn command(&self) -> u16 {
        let state = self.state.borrow();
        u16::from_le_bytes([state.config_space[4], state.config_space[5]])
    }

    /// The interrupt mode the driver enabled, if any.
    pub fn interrupt_mode(&self) -> Option<InterruptMode> {
        self.state.borrow().interrupt_mode
    }

    /// Takes the frames the device put on the wire, oldest first.
    pub fn take_transmitted(&self) -> Vec<Vec<u8>> {
        self.state.borrow_mut().wire.drain(..).collect()
    }

    /// What the model did so far.
    pub fn counters(&self) -> ModelCounters {
        self.state.borrow().counters
    }

    /// DMA faults the device caused so far.
    pub fn dma_faults(&self) -> Vec<DmaFault> {
        self.memory.borrow().faults.clone()
    }

    /// Bytes of DMA memory allocated and not freed.
    pub fn allocated_bytes(&self) -> usize {
        self.memory.borrow().allocated_bytes
    }

    /// Free receive descriptors the device holds (RDT - RDH in the ring).
    pub fn rx_descriptors_free(&self) -> u32 {
        let state = self.state.borrow();
        let len = state.ring_len(reg::RDLEN);
        if len == 0 {
            return 0;
        }
        (state.get(reg::RDT) + len - state.get(reg::RDH)) % len
    }

    /// Raises interrupt causes as ICS would.
    pub fn raise(&self, causes: u32) {
        self.state.borrow_mut().raise(causes);
    }

    /// Offers a frame (without FCS) from the wire to the receiver.
    pub fn receive(&self, frame: &[u8]) -> Delivery {
        let mut state = self.state.borrow_mut();
        let mut memory = self.memory.borrow_mut();
        let control = state.get(reg::RCTL);
        if control & rctl::EN == 0 || !state.link_up() {
            return Delivery::NotReceiving;
        }
        let Some(destination) = frame.get(0..6) else {
            state.counters.rx_filtered += 1;
            return Delivery::Filtered;
        };
        let own = u32::from_le_bytes([
            destination[0],
            destination[1],
            destination[2],
            destination[3],
        ]) == state.get(reg::RAL0)
            && u32::from(u16::from_le_bytes([destination[4], destination[5]]))
                == state.get(reg::RAH0) & 0xFFFF
            && state.get(reg::RAH0) & rah::AV != 0;
        let broadcast = destination.iter().all(|&byte| byte == 0xFF);
        let multicast = destination[0] & 1 != 0 && !broadcast;
        let accepted = control & rctl::UPE != 0
            || own
            || (broadcast && control & rctl::BAM != 0)
            || (multicast && control & rctl::MPE != 0);
        if !accepted {
            state.counters.rx_filtered += 1;
            return Delivery::Filtered;
        }
        let max = if control & rctl::LPE != 0 {
            MAX_LONG_FRAME
        } else {
            MAX_FRAME
        };
        if frame.len() > max {
            return Delivery::TooLong;
        }
        let buffer_size = state.receive_buffer_size();
        let chunks: Vec<&[u8]> = if frame.is_empty() {
            vec![frame]
        } else {
            frame.chunks(buffer_size).collect()
        };
        let count = chunks.len();
        let Some(free) = Self::free_rx(&mut state) else {
            return Delivery::NotReceiving;
        };
        if count > free as usize {
            state.counters.rx_overruns += 1;
            let missed = state.get(reg::MPC) + 1;
            state.set(reg::MPC, missed);
            let no_buffers = state.get(reg::RNBC) + 1;
            state.set(reg::RNBC, no_buffers);
            state.raise(interrupt::RXO);
            return Delivery::Overrun;
        }
        for (number, chunk) in chunks.iter().enumerate() {
            let mut status = rx_status::DD;
            if number + 1 == count {
                status |= rx_status::EOP;
            }
            if !Self::write_rx(
                &mut state,
                &mut memory,
                chunk,
                chunk.len() as u16,
                status,
                0,
            ) {
                return Delivery::Fault;
            }
        }
        state.counters.rx_delivered += 1;
        Self::after_rx(&mut state);
        Delivery::Delivered(count)
    }

    /// Fills the next receive descriptor with `data` (cut to the buffer
    /// size) and writes back whatever `length`, `status` and `errors` the
    /// test chooses, as a faulty or hostile device might. Returns whether
    /// a descriptor was free and the DMA succeeded.
    pub fn receive_raw(&self, data: &[u8], length: u16, status: u8, errors: u8) -> bool {
        let mut state = self.state.borrow_mut();
        let mut memory = self.memory.borrow_mut();
        if !matches!(Self::free_rx(&mut state), Some(free) if free > 0) {
            return false;
        }
        let data = &data[..data.len().min(state.receive_buffer_size())];
        let written = Self::write_rx(&mut state, &mut memory, data, length, status, errors);
        Self::after_rx(&mut state);
        written
    }

    /// Free receive descriptors, or `None` if the ring is not set up or
    /// its registers point outside it.
    fn free_rx(state: &mut State) -> Option<u32> {
        let len = state.ring_len(reg::RDLEN);
        let (head, tail) = (state.get(reg::RDH), state.get(reg::RDT));
        if len == 0 || head >= len || tail >= len {
            return None;
        }
        Some((tail + len - head) % len)
    }

    fn write_rx(
        state: &mut State,
        memory: &mut Memory,
        data: &[u8],
        length: u16,
        status: u8,
        errors: u8,
    ) -> bool {
        let len = state.ring_len(reg::RDLEN);
        let head = state.get(reg::RDH);
        let at = state.ring_base(reg::RDBAL, reg::RDBAH) + u64::from(head) * DESCRIPTOR_SIZE as u64;
        let mut descriptor = [0u8; DESCRIPTOR_SIZE];
        if !memory.device_read(at, &mut descriptor) {
            return false;
        }
        let buffer = u64::from_le_bytes(descriptor[0..8].try_into().unwrap_or([0; 8]));
        if !memory.device_write(buffer, data) {
            return false;
        }
        let mut write_back = [0u8; 8];
        write_back[0..2].copy_from_slice(&length.to_le_bytes());
        write_back[4] = status;
        write_back[5] = errors;
        if !memory.device_write(at + 8, &write_back) {
            return false;
        }
        state.set(reg::RDH, (head + 1) % len);
        true
    }

    fn after_rx(state: &mut State) {
        let mut causes = interrupt::RXT0;
        let len = state.ring_len(reg::RDLEN);
        if let Some(free) = Self::free_rx(state) {
            // RCTL.RDMTS = 00: half the ring.
            if free <= len / 2 {
                causes |= interrupt::RXDMT0;
            }
        }
        state.raise(causes);
    }

    /// Consumes transmit descriptors from TDH up to TDT.
    fn transmit(state: &mut State, memory: &mut Memory) {
        if state.get(reg::TCTL) & tctl::EN == 0 {
            return;
        }
        let len = state.ring_len(reg::TDLEN);
        let base = state.ring_base(reg::TDBAL, reg::TDBAH);
        let tail = state.get(reg::TDT);
        if len == 0 || tail >= len || state.get(reg::TDH) >= len {
            return;
        }
        let mut consumed = false;
        while state.get(reg::TDH) != tail {
            let head = state.get(reg::TDH);
            let at = base + u64::from(head) * DESCRIPTOR_SIZE as u64;
            let mut descriptor = [0u8; DESCRIPTOR_SIZE];
            if !memory.device_read(at, &mut descriptor) {
                return;
            }
            let command = descriptor[11];
            if command & tx_command::DEXT != 0 {
                state.counters.tx_unsupported_descriptors += 1;
            } else {
                let address = u64::from_le_bytes(descriptor[0..8].try_into().unwrap_or([0; 8]));
                let length = usize::from(u16::from_le_bytes([descriptor[8], descriptor[9]]));
                let mut data = vec![0u8; length];
                if !memory.device_read(address, &mut data) {
                    return;
                }
                state.tx_partial.extend_from_slice(&data);
                if command & tx_command::EOP != 0 {
                    let mut frame = core::mem::take(&mut state.tx_partial);
                    if state.get(reg::TCTL) & tctl::PSP != 0 && frame.len() < MIN_WIRE_FRAME {
                        frame.resize(MIN_WIRE_FRAME, 0);
                    }
                    if state.link_up() {
                        state.counters.tx_frames += 1;
                        state.wire.push_back(frame);
                    } else {
                        state.counters.tx_lost_link_down += 1;
                    }
                }
            }
            if command & tx_command::RS != 0 {
                let status = match state.tx_write_back {
                    TxWriteBack::Done => Some(tx_status::DD),
                    TxWriteBack::Withhold => None,
                    TxWriteBack::Status(status) => Some(status),
                };
                if let Some(status) = status {
                    if !memory.device_write(at + 12, &[status]) {
                        return;
                    }
                }
            }
            state.counters.tx_descriptors += 1;
            state.set(reg::TDH, (head + 1) % len);
            consumed = true;
        }
        if consumed {
            state.raise(interrupt::TXDW | interrupt::TXQE);
        }
    }
}

impl ConfigSpace for Model {
    fn config_read8(&mut self, offset: u16) -> Result<u8, PciError> {
        let mut bytes = [0u8; 1];
        self.config_read(offset, &mut bytes)?;
        Ok(bytes[0])
    }

    fn config_read16(&mut self, offset: u16) -> Result<u16, PciError> {
        let mut bytes = [0u8; 2];
        self.config_read(offset, &mut bytes)?;
        Ok(u16::from_le_bytes(bytes))
    }

    fn config_read32(&mut self, offset: u16) -> Result<u32, PciError> {
        let mut bytes = [0u8; 4];
        self.config_read(offset, &mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn config_write8(&mut self, offset: u16, value: u8) -> Result<(), PciError> {
        self.config_write(offset, &[value])
    }

    fn config_write16(&mut self, offset: u16, value: u16) -> Result<(), PciError> {
        self.config_write(offset, &value.to_le_bytes())
    }

    fn config_write32(&mut self, offset: u16, value: u32) -> Result<(), PciError> {
        self.config_write(offset, &value.to_le_bytes())
    }
}

impl Model {
    fn config_read(&self, offset: u16, destination: &mut [u8]) -> Result<(), PciError> {
        let state = self.state.borrow();
        if state.gone {
            return Err(PciError::DeviceGone);
        }
        check_register(
            CONFIG_SPACE_LEN as u64,
            u64::from(offset),
            destination.len() as u64,
        )?;
        let at = usize::from(offset);
        destination.copy_from_slice(&state.config_space[at..at + destination.len()]);
        Ok(())
    }

    /// Only the command register (offset 4) is writable in the model.
    fn config_write(&self, offset: u16, source: &[u8]) -> Result<(), PciError> {
        let mut state = self.state.borrow_mut();
        if state.gone {
            return Err(PciError::DeviceGone);
        }
        check_register(
            CONFIG_SPACE_LEN as u64,
            u64::from(offset),
            source.len() as u64,
        )?;
        for (number, &byte) in source.iter().enumerate() {
            let at = usize::from(offset) + number;
            if at == 4 || at == 5 {
                state.config_space[at] = byte;
            }
        }
        Ok(())
    }

    fn check_mmio(&self, bar: u8, offset: u64, width: u64) -> Result<(), PciError> {
        if self.state.borrow().gone {
            return Err(PciError::DeviceGone);
        }
        if bar != 0 {
            return Err(PciError::NoSuchBar);
        }
        check_register(BAR0_LEN, offset, width)
    }
}

impl Mmio for Model {
    fn bar_len(&mut self, bar: u8) -> Result<u64, PciError> {
        self.check_mmio(bar, 0, 4)?;
        Ok(BAR0_LEN)
    }

    fn read32(&mut self, bar: u8, offset: u64) -> Result<u32, PciError> {
        self.check_mmio(bar, offset, 4)?;
        let register = offset as u32;
        let mut state = self.state.borrow_mut();
        let value = match register {
            reg::CTRL => {
                let mut value = state.get(reg::CTRL);
                if state.reset_pending > 0 {
                    if state.reset_pending != u32::MAX {
                        state.reset_pending -= 1;
                    }
                    value |= ctrl::RST;
                }
                value
            }
            reg::STATUS => {
                if state.link_up() {
                    reg::status::LU | reg::status::FD | (2 << reg::status::SPEED_SHIFT)
                } else {
                    0
                }
            }
            reg::ICR => {
                let value = state.get(reg::ICR);
                state.set(reg::ICR, 0);
                value
            }
            reg::MPC | reg::RNBC | reg::CRCERRS => {
                let value = state.get(register);
                state.set(register, 0);
                value
            }
            _ => state.get(register),
        };
        Ok(value)
    }

    fn write32(&mut self, bar: u8, offset: u64, value: u32) -> Result<(), PciError> {
        self.check_mmio(bar, offset, 4)?;
        let register = offset as u32;
        let mut state = self.state.borrow_mut();
        match register {
            reg::CTRL => {
                if value & ctrl::RST != 0 {
                    state.reset();
                } else {
                    state.set(reg::CTRL, value);
                    state.follow_link();
                }
            }
            reg::STATUS | reg::ICR | reg::MPC | reg::RNBC | reg::CRCERRS => {}
            reg::EERD => {
                if value & eerd::START != 0 && state.eeprom_answers {
                    let word = (value >> eerd::ADDR_SHIFT) & 0xFF;
                    let data = state.eeprom.get(word as usize).copied().unwrap_or(0xFFFF);
                    state.set(
                        reg::EERD,
                        (u32::from(data) << eerd::DATA_SHIFT)
                            | (word << eerd::ADDR_SHIFT)
                            | eerd::DONE,
                    );
                } else {
                    state.set(reg::EERD, value & !eerd::DONE);
                }
            }
            reg::ICS => state.raise(value),
            reg::IMS => {
                let mask = state.get(reg::IMS) | value;
                state.set(reg::IMS, mask);
                state.update_line();
            }
            reg::IMC => {
                let mask = state.get(reg::IMS) & !value;
                state.set(reg::IMS, mask);
            }
            reg::RDLEN | reg::TDLEN => state.set(register, value & 0x000F_FF80),
            reg::RDH | reg::RDT | reg::TDH => state.set(register, value & 0xFFFF),
            reg::TDT => {
                let value = value & 0xFFFF;
                state.set(reg::TDT, value);
                if value >= state.ring_len(reg::TDLEN) {
                    state.counters.bad_tail_writes += 1;
                }
                let mut memory = self.memory.borrow_mut();
                Self::transmit(&mut state, &mut memory);
            }
            _ => state.set(register, value),
        }
        if register == reg::RDT && value & 0xFFFF >= state.ring_len(reg::RDLEN) {
            state.counters.bad_tail_writes += 1;
        }
        Ok(())
    }

    /// The 82540EM's registers are 32 bits wide; the model refuses wider
    /// accesses so that a driver relying on them is caught.
    fn read64(&mut self, bar: u8, offset: u64) -> Result<u64, PciError> {
        self.check_mmio(bar, offset, 8)?;
        Err(PciError::Denied)
    }

    fn write64(&mut self, bar: u8, offset: u64, _value: u64) -> Result<(), PciError> {
        self.check_mmio(bar, offset, 8)?;
        Err(PciError::Denied)
    }
}

impl Dma for Model {
    type Buffer = ModelBuffer;

    fn allocate(&mut self, len: usize, align: usize) -> Result<ModelBuffer, PciError> {
        if !align.is_power_of_two() || align > 4096 {
            return Err(PciError::OutOfMemory);
        }
        let mut memory = self.memory.borrow_mut();
        if let Some(limit) = memory.limit {
            if memory.allocated_bytes + len > limit {
                return Err(PciError::OutOfMemory);
            }
        }
        let address = memory.next.next_multiple_of(align as u64);
        // Addresses are never reused, so a late DMA into a freed buffer is
        // caught rather than landing in a new one.
        memory.next = address + (len as u64).max(1);
        memory.regions.insert(
            address,
            Region {
                bytes: vec![0; len],
                live: true,
            },
        );
        memory.allocated_bytes += len;
        Ok(ModelBuffer {
            memory: Rc::clone(&self.memory),
            address,
            len,
        })
    }

    fn free(&mut self, buffer: ModelBuffer) {
        let mut memory = self.memory.borrow_mut();
        if let Some(region) = memory.regions.get_mut(&buffer.address) {
            if region.live {
                region.live = false;
                region.bytes = Vec::new();
                memory.allocated_bytes -= buffer.len;
            }
        }
    }
}

impl Interrupts for Model {
    fn enable_interrupts(&mut self, mode: InterruptMode, count: u16) -> Result<u16, PciError> {
        // QEMU's 82540EM has neither MSI nor MSI-X.
        let mut state = self.state.borrow_mut();
        if mode != InterruptMode::Intx || count == 0 || !state.line_routed {
            return Err(PciError::NoSuchVector);
        }
        state.interrupt_mode = Some(mode);
        state.line_masked = false;
        state.update_line();
        Ok(1)
    }

    fn disable_interrupts(&mut self) {
        let mut state = self.state.borrow_mut();
        state.interrupt_mode = None;
        state.fired = false;
    }

    fn take_fired(&mut self) -> Option<u16> {
        let mut state = self.state.borrow_mut();
        if state.fired {
            state.fired = false;
            Some(0)
        } else {
            None
        }
    }

    fn unmask(&mut self, vector: u16) {
        let mut state = self.state.borrow_mut();
        if vector == 0 {
            state.line_masked = false;
            state.update_line();
        }
    }
}
