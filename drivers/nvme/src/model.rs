//! A behavioural NVMe controller over plain memory, implementing the
//! `pcidev` traits, for host tests of the driver here and in the crates
//! that wire it (feature `model`).
//!
//! It follows the specification where the driver depends on it: CC.EN and
//! CSTS.RDY, the admin queue registers, doorbells with their stride,
//! Identify, Set Features (Number of Queues), Create I/O Completion and
//! Submission Queue, Read, Write, Flush and Dataset Management, PRP entries
//! and chained PRP lists, phase tags, and a full completion queue holding
//! back further completions. The namespace has a volatile write cache:
//! [`Model::power_cut`] keeps only what a Flush made durable.
//!
//! It also checks the driver: DMA to memory that is not (or no longer)
//! allocated, a command id reused while in flight, a doorbell past the end
//! of its queue or a malformed PRP are recorded in [`Model::faults`], which
//! every test expects to stay empty.
//!
//! Fetched commands are executed when the test calls [`Model::process`]
//! (in a seeded random order, so completions come back out of order) or,
//! with [`Model::set_auto`], as soon as the doorbell is rung.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use pcidev::{
    check_range, check_register, BusAddress, ConfigSpace, Dma, DmaBuffer, InterruptMode,
    Interrupts, Mmio, PciError,
};

/// The memory page size.
pub const PAGE: usize = 4096;
const BAR_LEN: u64 = 0x2000;
const DMA_BASE: u64 = 0x1_0000_0000;

/// Everything the tests can tune or break.
#[derive(Debug, Clone)]
pub struct Options {
    /// Size of namespace 1 in blocks.
    pub namespace_blocks: u64,
    /// Blocks are `1 << block_shift` bytes.
    pub block_shift: u8,
    /// CAP.MQES + 1.
    pub max_queue_entries: u32,
    /// CAP.TO in 500 ms units.
    pub timeout_units: u8,
    /// CAP.DSTRD.
    pub doorbell_stride: u8,
    /// Identify Controller MDTS.
    pub mdts: u8,
    /// ONCS: Dataset Management is supported.
    pub dataset_management: bool,
    /// VWC: writes sit in a volatile cache until a Flush or a shutdown.
    pub volatile_write_cache: bool,
    /// CSTS reads after an EN change before RDY follows.
    pub ready_after_reads: u32,
    /// RDY never sets after enabling.
    pub stuck_not_ready: bool,
    /// RDY never clears after disabling.
    pub stuck_ready: bool,
    /// A normal shutdown never completes.
    pub stuck_shutdown: bool,
    /// The controller starts enabled (as firmware or a previous driver left it).
    pub start_enabled: bool,
    /// Interrupt modes the platform can provide.
    pub interrupt_modes: Vec<InterruptMode>,
    /// NSZE reported by Identify Namespace instead of the real size.
    pub reported_blocks: Option<u64>,
    /// The platform hands out DMA buffers 8 bytes past a page boundary.
    pub misaligned_dma: bool,
    /// Admin commands with this opcode are fetched and never completed.
    pub swallow_admin: Option<u8>,
    /// Admin commands with this opcode fail with this status.
    pub fail_admin: Option<(u8, u16)>,
    /// Identify data is replaced by bytes from this seed.
    pub garbage_identify: Option<u64>,
    /// Number of namespaces (NN).
    pub namespaces: u32,
    /// Seed of the order in which fetched commands are executed.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace_blocks: 4096,
            block_shift: 9,
            max_queue_entries: 64,
            timeout_units: 2,
            doorbell_stride: 0,
            mdts: 5,
            dataset_management: true,
            volatile_write_cache: true,
            ready_after_reads: 2,
            stuck_not_ready: false,
            stuck_ready: false,
            stuck_shutdown: false,
            start_enabled: false,
            interrupt_modes: vec![InterruptMode::MsiX],
            reported_blocks: None,
            misaligned_dma: false,
            swallow_admin: None,
            fail_admin: None,
            garbage_identify: None,
            namespaces: 1,
            seed: 1,
        }
    }
}

struct SubmissionQueue {
    base: u64,
    entries: u16,
    cqid: u16,
    head: u16,
    tail: u16,
}

struct CompletionQueue {
    base: u64,
    entries: u16,
    head: u16,
    tail: u16,
    phase: bool,
    interrupts: bool,
}

struct Fetched {
    sqid: u16,
    entry: [u8; 64],
}

#[derive(Default)]
struct Stats {
    commands: BTreeMap<u8, u64>,
    most_in_flight: usize,
    interrupts: u64,
    prp_list_pages: u64,
    deallocated_blocks: u64,
}

struct Controller {
    options: Options,
    config: [u8; 256],
    cc: u32,
    csts: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    reads_until_ready_change: u32,
    submission: BTreeMap<u16, SubmissionQueue>,
    completion: BTreeMap<u16, CompletionQueue>,
    fetched: Vec<Fetched>,
    in_flight: BTreeSet<(u16, u16)>,
    dma: BTreeMap<u64, Rc<RefCell<Vec<u8>>>>,
    next_dma: u64,
    media: Vec<u8>,
    durable: Vec<u8>,
    injected: VecDeque<(u8, u16)>,
    swallow: bool,
    gone: bool,
    auto: bool,
    interrupt_mode: Option<InterruptMode>,
    masked: bool,
    fired: VecDeque<u16>,
    faults: Vec<String>,
    rng: u64,
    stats: Stats,
}

/// The model; clones share one controller.
#[derive(Clone)]
pub struct Model(Rc<RefCell<Controller>>);

/// A DMA buffer of the model.
pub struct Buffer {
    memory: Rc<RefCell<Vec<u8>>>,
    bus: u64,
}

impl DmaBuffer for Buffer {
    fn len(&self) -> usize {
        self.memory.borrow().len()
    }
    fn bus_address(&self) -> BusAddress {
        BusAddress(self.bus)
    }
    fn read(&self, offset: usize, destination: &mut [u8]) -> Result<(), PciError> {
        let memory = self.memory.borrow();
        check_range(memory.len() as u64, offset as u64, destination.len() as u64)?;
        destination.copy_from_slice(&memory[offset..offset + destination.len()]);
        Ok(())
    }
    fn write(&self, offset: usize, source: &[u8]) -> Result<(), PciError> {
        let mut memory = self.memory.borrow_mut();
        check_range(memory.len() as u64, offset as u64, source.len() as u64)?;
        memory[offset..offset + source.len()].copy_from_slice(source);
        Ok(())
    }
}

fn le32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
}

fn le64(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().unwrap())
}

impl Model {
    /// A disabled controller (or an enabled one, per the options) with a
    /// zeroed namespace 1.
    pub fn new(options: Options) -> Self {
        let bytes = (options.namespace_blocks << options.block_shift) as usize;
        let mut config = [0u8; 256];
        config[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        config[2..4].copy_from_slice(&0x0010u16.to_le_bytes());
        config[6] = 1 << 4; // capability list
        config[0x09..0x0c].copy_from_slice(&[0x02, 0x08, 0x01]); // NVM Express
        config[0x34] = 0x40;
        config[0x40] = 0x11; // MSI-X
        config[0x41] = 0x50;
        config[0x50] = 0x10; // PCI Express, end of list
        let start_enabled = options.start_enabled;
        let seed = options.seed;
        Model(Rc::new(RefCell::new(Controller {
            cc: if start_enabled { 1 } else { 0 },
            csts: if start_enabled { 1 } else { 0 },
            options,
            config,
            aqa: 0,
            asq: 0,
            acq: 0,
            reads_until_ready_change: 0,
            submission: BTreeMap::new(),
            completion: BTreeMap::new(),
            fetched: Vec::new(),
            in_flight: BTreeSet::new(),
            dma: BTreeMap::new(),
            next_dma: DMA_BASE,
            media: vec![0; bytes],
            durable: vec![0; bytes],
            injected: VecDeque::new(),
            swallow: false,
            gone: false,
            auto: false,
            interrupt_mode: None,
            masked: false,
            fired: VecDeque::new(),
            faults: Vec::new(),
            rng: seed | 1,
            stats: Stats::default(),
        })))
    }

    /// Executes fetched commands as soon as a doorbell is rung.
    pub fn set_auto(&self, auto: bool) {
        self.0.borrow_mut().auto = auto;
    }
    /// Executes every fetched command, in a random order, as far as the
    /// completion queues have room.
    pub fn process(&self) {
        self.0.borrow_mut().process(usize::MAX);
    }
    /// Executes at most `count` fetched commands.
    pub fn process_some(&self, count: usize) {
        self.0.borrow_mut().process(count);
    }
    /// The next I/O command with `opcode` completes with `status` (SCT << 8 | SC).
    pub fn inject(&self, opcode: u8, status: u16) {
        self.0.borrow_mut().injected.push_back((opcode, status));
    }
    /// Commands are fetched but never completed.
    pub fn swallow(&self, swallow: bool) {
        self.0.borrow_mut().swallow = swallow;
    }
    /// Sets CSTS.CFS: the controller stops working.
    pub fn make_fatal(&self) {
        self.0.borrow_mut().csts |= 2;
    }
    /// Every register reads all ones from now on.
    pub fn remove(&self) {
        self.0.borrow_mut().gone = true;
    }
    /// Posts a completion for a command id that is not in flight.
    pub fn post_bogus_completion(&self, command_id: u16) {
        self.0.borrow_mut().post(1, command_id, 0, 0);
    }
    /// Posts an entry of arbitrary contents (with the current phase tag, so
    /// the driver takes it) to I/O completion queue 1, if it has room.
    pub fn post_garbage(&self, words: [u32; 4]) {
        let mut controller = self.0.borrow_mut();
        if !controller.completion.contains_key(&1) || controller.cq_full(1) {
            return;
        }
        let queue = &controller.completion[&1];
        let phase = u32::from(queue.phase) << 16;
        let address = queue.base + u64::from(queue.tail) * 16;
        let mut entry = [0u8; 16];
        let dw3 = (words[3] & !(1 << 16)) | phase;
        for (index, word) in [words[0], words[1], words[2], dw3].iter().enumerate() {
            entry[4 * index..4 * index + 4].copy_from_slice(&word.to_le_bytes());
        }
        let queue = controller.completion.get_mut(&1).unwrap();
        queue.tail += 1;
        if queue.tail == queue.entries {
            queue.tail = 0;
            queue.phase = !queue.phase;
        }
        controller.dma_write(address, &entry);
        controller.raise();
    }
    /// Whether vector 0 is masked (fired and not yet unmasked).
    pub fn masked(&self) -> bool {
        self.0.borrow().masked
    }
    /// What the driver did wrong, in order; empty for a correct driver.
    pub fn faults(&self) -> Vec<String> {
        self.0.borrow().faults.clone()
    }
    /// The namespace's contents, cache included.
    pub fn media(&self) -> Vec<u8> {
        self.0.borrow().media.clone()
    }
    /// Sets the namespace's contents (all of it, durably).
    pub fn fill_media(&self, data: &[u8]) {
        let mut controller = self.0.borrow_mut();
        controller.media.copy_from_slice(data);
        controller.durable.copy_from_slice(data);
    }
    /// What survives losing power: only flushed writes.
    pub fn power_cut(&self) -> Vec<u8> {
        self.0.borrow().durable.clone()
    }
    /// How many I/O commands with `opcode` were executed.
    pub fn commands(&self, opcode: u8) -> u64 {
        self.0
            .borrow()
            .stats
            .commands
            .get(&opcode)
            .copied()
            .unwrap_or(0)
    }
    /// The most commands fetched and not yet completed at once.
    pub fn most_in_flight(&self) -> usize {
        self.0.borrow().stats.most_in_flight
    }
    /// How many PRP list pages were walked.
    pub fn prp_list_pages(&self) -> u64 {
        self.0.borrow().stats.prp_list_pages
    }
    /// How many interrupts were delivered.
    pub fn interrupts_raised(&self) -> u64 {
        self.0.borrow().stats.interrupts
    }
    /// How many blocks Dataset Management deallocated.
    pub fn deallocated_blocks(&self) -> u64 {
        self.0.borrow().stats.deallocated_blocks
    }
    /// DMA buffers currently allocated.
    pub fn dma_buffers(&self) -> usize {
        self.0.borrow().dma.len()
    }
    /// Commands fetched and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.0.borrow().in_flight.len()
    }
    /// CC.EN.
    pub fn enabled(&self) -> bool {
        self.0.borrow().cc & 1 == 1
    }
}

impl Controller {
    fn fault(&mut self, what: String) {
        self.faults.push(what);
    }

    fn random(&mut self) -> u64 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn find_dma(&self, address: u64, len: usize) -> Option<(Rc<RefCell<Vec<u8>>>, usize)> {
        let (&base, memory) = self.dma.range(..=address).next_back()?;
        let offset = (address - base) as usize;
        (offset + len <= memory.borrow().len()).then(|| (memory.clone(), offset))
    }

    fn dma_read(&mut self, address: u64, len: usize) -> Option<Vec<u8>> {
        match self.find_dma(address, len) {
            Some((memory, offset)) => Some(memory.borrow()[offset..offset + len].to_vec()),
            None => {
                self.fault(format!(
                    "DMA read of {len} bytes at unallocated {address:#x}"
                ));
                None
            }
        }
    }

    fn dma_write(&mut self, address: u64, data: &[u8]) -> bool {
        match self.find_dma(address, data.len()) {
            Some((memory, offset)) => {
                memory.borrow_mut()[offset..offset + data.len()].copy_from_slice(data);
                true
            }
            None => {
                let len = data.len();
                self.fault(format!(
                    "DMA write of {len} bytes at unallocated {address:#x}"
                ));
                false
            }
        }
    }

    fn ready(&self) -> bool {
        self.cc & 1 == 1 && self.csts & 1 == 1 && self.csts & 2 == 0
    }

    fn reset(&mut self) {
        self.submission.clear();
        self.completion.clear();
        self.fetched.clear();
        self.in_flight.clear();
        self.fired.clear();
    }

    fn write_cc(&mut self, value: u32) {
        let was = self.cc & 1;
        let shutdown = value & (3 << 14) == 1 << 14 && self.cc & (3 << 14) == 0;
        self.cc = value;
        if shutdown && value & 1 == 1 && !self.options.stuck_shutdown {
            // Normal shutdown: the volatile cache is written back.
            self.durable.copy_from_slice(&self.media);
            self.csts = (self.csts & !(3 << 2)) | (2 << 2);
        }
        if was == 1 && value & 1 == 0 {
            self.reset();
            self.reads_until_ready_change = self.options.ready_after_reads;
        } else if was == 0 && value & 1 == 1 {
            let size = self.aqa & 0xfff;
            let completion_size = (self.aqa >> 16) & 0xfff;
            if value & 0x00ff_0000 != 0x0046_0000 {
                self.fault(format!("CC queue entry sizes {value:#x}"));
            }
            self.submission.insert(
                0,
                SubmissionQueue {
                    base: self.asq,
                    entries: size as u16 + 1,
                    cqid: 0,
                    head: 0,
                    tail: 0,
                },
            );
            self.completion.insert(
                0,
                CompletionQueue {
                    base: self.acq,
                    entries: completion_size as u16 + 1,
                    head: 0,
                    tail: 0,
                    phase: true,
                    interrupts: true,
                },
            );
            self.reads_until_ready_change = self.options.ready_after_reads;
        }
    }

    fn read_csts(&mut self) -> u32 {
        let want = self.cc & 1;
        if self.csts & 1 != want {
            let stuck = if want == 1 {
                self.options.stuck_not_ready
            } else {
                self.options.stuck_ready
            };
            if !stuck {
                if self.reads_until_ready_change == 0 {
                    self.csts = (self.csts & !1) | want;
                } else {
                    self.reads_until_ready_change -= 1;
                }
            }
        }
        self.csts
    }

    fn doorbell(&mut self, offset: u64, value: u32) {
        let stride = 4u64 << self.options.doorbell_stride;
        let index = (offset - 0x1000) / stride;
        if !(offset - 0x1000).is_multiple_of(stride) {
            return self.fault(format!("doorbell write at {offset:#x} off the stride"));
        }
        let qid = (index / 2) as u16;
        let value = value as u16;
        if index.is_multiple_of(2) {
            let Some(queue) = self.submission.get_mut(&qid) else {
                return self.fault(format!("tail doorbell of missing queue {qid}"));
            };
            if value >= queue.entries {
                return self.fault(format!("tail {value} past queue {qid}"));
            }
            queue.tail = value;
            self.fetch(qid);
            if self.auto || qid == 0 {
                self.process(usize::MAX);
            }
        } else {
            let Some(queue) = self.completion.get_mut(&qid) else {
                return self.fault(format!("head doorbell of missing queue {qid}"));
            };
            if value >= queue.entries {
                return self.fault(format!("head {value} past queue {qid}"));
            }
            queue.head = value;
            // Room may have been made for held-back completions.
            if self.auto {
                self.process(usize::MAX);
            }
        }
    }

    fn fetch(&mut self, qid: u16) {
        if !self.ready() {
            return;
        }
        loop {
            let queue = &self.submission[&qid];
            if queue.head == queue.tail {
                break;
            }
            let address = queue.base + u64::from(queue.head) * 64;
            let entries = queue.entries;
            let Some(entry) = self.dma_read(address, 64) else {
                return;
            };
            let queue = self.submission.get_mut(&qid).unwrap();
            queue.head = (queue.head + 1) % entries;
            let command_id = (le32(&entry, 0) >> 16) as u16;
            if !self.in_flight.insert((qid, command_id)) {
                self.fault(format!("command id {command_id} reused on queue {qid}"));
            }
            self.stats.most_in_flight = self.stats.most_in_flight.max(self.in_flight.len());
            self.fetched.push(Fetched {
                sqid: qid,
                entry: entry.try_into().unwrap(),
            });
        }
    }

    fn cq_full(&self, cqid: u16) -> bool {
        let queue = &self.completion[&cqid];
        (queue.tail + 1) % queue.entries == queue.head
    }

    fn process(&mut self, mut budget: usize) {
        while budget > 0 && !self.fetched.is_empty() && self.ready() {
            let pick = if self.fetched.len() > 1 {
                (self.random() % self.fetched.len() as u64) as usize
            } else {
                0
            };
            let sqid = self.fetched[pick].sqid;
            if sqid != 0 && self.swallow {
                return;
            }
            let opcode = self.fetched[pick].entry[0];
            if sqid == 0 && self.options.swallow_admin == Some(opcode) {
                return;
            }
            let cqid = self.submission.get(&sqid).map_or(0, |queue| queue.cqid);
            if !self.completion.contains_key(&cqid) || self.cq_full(cqid) {
                return;
            }
            let fetched = self.fetched.swap_remove(pick);
            let command_id = (le32(&fetched.entry, 0) >> 16) as u16;
            let (status, result) = if sqid == 0 {
                self.admin(&fetched.entry)
            } else {
                self.io(&fetched.entry)
            };
            self.in_flight.remove(&(sqid, command_id));
            let head = self.submission.get(&sqid).map_or(0, |queue| queue.head);
            self.post_to(cqid, sqid, command_id, status, result, head);
            budget -= 1;
        }
    }

    fn post(&mut self, sqid: u16, command_id: u16, status: u16, result: u32) {
        let cqid = self.submission.get(&sqid).map_or(0, |queue| queue.cqid);
        self.post_to(cqid, sqid, command_id, status, result, 0);
    }

    fn post_to(
        &mut self,
        cqid: u16,
        sqid: u16,
        command_id: u16,
        status: u16,
        result: u32,
        head: u16,
    ) {
        let Some(queue) = self.completion.get_mut(&cqid) else {
            return;
        };
        let address = queue.base + u64::from(queue.tail) * 16;
        let mut entry = [0u8; 16];
        entry[0..4].copy_from_slice(&result.to_le_bytes());
        entry[8..12].copy_from_slice(&(u32::from(head) | (u32::from(sqid) << 16)).to_le_bytes());
        let dw3 =
            u32::from(command_id) | (u32::from(queue.phase) << 16) | (u32::from(status) << 17);
        entry[12..16].copy_from_slice(&dw3.to_le_bytes());
        queue.tail += 1;
        if queue.tail == queue.entries {
            queue.tail = 0;
            queue.phase = !queue.phase;
        }
        let interrupts = queue.interrupts;
        self.dma_write(address, &entry);
        if interrupts {
            self.raise();
        }
    }

    fn raise(&mut self) {
        if self.interrupt_mode.is_some() && !self.masked {
            self.masked = true;
            self.fired.push_back(0);
            self.stats.interrupts += 1;
        }
    }

    fn pending_completions(&self) -> bool {
        self.completion
            .values()
            .any(|queue| queue.head != queue.tail)
    }

    /// The data pages a command's PRPs describe, as (address, length).
    fn prp_segments(&mut self, prp1: u64, prp2: u64, len: usize) -> Option<Vec<(u64, usize)>> {
        let page = PAGE as u64;
        let first = len.min(PAGE - (prp1 % page) as usize);
        let mut segments = vec![(prp1, first)];
        let mut left = len - first;
        if left == 0 {
            return Some(segments);
        }
        if left <= PAGE {
            if !prp2.is_multiple_of(page) {
                self.fault(format!("PRP2 {prp2:#x} not page aligned"));
                return None;
            }
            segments.push((prp2, left));
            return Some(segments);
        }
        if !prp2.is_multiple_of(8) {
            self.fault(format!("PRP list {prp2:#x} not 8-byte aligned"));
            return None;
        }
        let mut entry_address = prp2;
        self.stats.prp_list_pages += 1;
        while left > 0 {
            let entry = le64(&self.dma_read(entry_address, 8)?, 0);
            let last_in_page = entry_address % page == page - 8;
            if last_in_page && left > PAGE {
                // Chain to the next list page.
                if !entry.is_multiple_of(page) {
                    self.fault(format!("PRP list chain {entry:#x} not page aligned"));
                    return None;
                }
                self.stats.prp_list_pages += 1;
                entry_address = entry;
                continue;
            }
            if !entry.is_multiple_of(page) {
                self.fault(format!("PRP entry {entry:#x} not page aligned"));
                return None;
            }
            let chunk = left.min(PAGE);
            segments.push((entry, chunk));
            left -= chunk;
            entry_address += 8;
        }
        Some(segments)
    }

    fn admin(&mut self, entry: &[u8]) -> (u16, u32) {
        let opcode = entry[0];
        let nsid = le32(entry, 4);
        let prp1 = le64(entry, 24);
        let cdw10 = le32(entry, 40);
        let cdw11 = le32(entry, 44);
        if let Some((failing, status)) = self.options.fail_admin {
            if failing == opcode {
                return (status, 0);
            }
        }
        match opcode {
            0x06 => {
                let mut data = vec![0u8; PAGE];
                match cdw10 & 0xff {
                    1 => {
                        data[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
                        data[77] = self.options.mdts;
                        data[512] = 0x66;
                        data[513] = 0x44;
                        data[516..520].copy_from_slice(&self.options.namespaces.to_le_bytes());
                        let oncs: u16 = if self.options.dataset_management {
                            1 << 2
                        } else {
                            0
                        };
                        data[520..522].copy_from_slice(&oncs.to_le_bytes());
                        data[525] = u8::from(self.options.volatile_write_cache);
                    }
                    0 => {
                        if nsid == 0 || nsid > self.options.namespaces {
                            return (0x0b, 0); // Invalid Namespace or Format
                        }
                        if nsid == 1 {
                            let blocks = self
                                .options
                                .reported_blocks
                                .unwrap_or(self.options.namespace_blocks);
                            data[0..8].copy_from_slice(&blocks.to_le_bytes());
                            data[8..16].copy_from_slice(&blocks.to_le_bytes());
                            data[25] = 0;
                            data[26] = 0;
                            data[128..132].copy_from_slice(
                                &(u32::from(self.options.block_shift) << 16).to_le_bytes(),
                            );
                        }
                        // Other valid ids are inactive: all zeroes.
                    }
                    _ => return (0x02, 0),
                }
                if let Some(seed) = self.options.garbage_identify {
                    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                    for byte in data.iter_mut() {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        *byte = state as u8;
                    }
                    // For even seeds, keep the namespace's format usable,
                    // so the rest of the random structure gets exercised.
                    if cdw10 & 0xff == 0 && seed % 2 == 0 {
                        data[26] = 0;
                        let shift = 9 + (seed / 2 % 4) as u32;
                        data[128..132].copy_from_slice(&(shift << 16).to_le_bytes());
                    }
                }
                if !self.dma_write(prp1, &data) {
                    return (0x04, 0);
                }
                (0, 0)
            }
            0x09 => {
                if cdw10 & 0xff != 0x07 {
                    return (0x02, 0);
                }
                // One queue of each kind granted, whatever was asked.
                (0, 0)
            }
            0x05 | 0x01 => {
                let qid = cdw10 as u16;
                let entries = (cdw10 >> 16) as u16 + 1;
                if qid == 0 || u32::from(entries) > self.options.max_queue_entries || entries < 2 {
                    return (0x0102, 0); // Invalid Queue Identifier / Size
                }
                if cdw11 & 1 == 0 {
                    return (0x02, 0);
                }
                if opcode == 0x05 {
                    if self.completion.contains_key(&qid) {
                        return (0x0101, 0);
                    }
                    self.completion.insert(
                        qid,
                        CompletionQueue {
                            base: prp1,
                            entries,
                            head: 0,
                            tail: 0,
                            phase: true,
                            interrupts: cdw11 & 2 != 0,
                        },
                    );
                } else {
                    let cqid = (cdw11 >> 16) as u16;
                    if !self.completion.contains_key(&cqid) || cqid == 0 {
                        return (0x0100, 0); // Completion Queue Invalid
                    }
                    if self.submission.contains_key(&qid) {
                        return (0x0101, 0);
                    }
                    self.submission.insert(
                        qid,
                        SubmissionQueue {
                            base: prp1,
                            entries,
                            cqid,
                            head: 0,
                            tail: 0,
                        },
                    );
                }
                (0, 0)
            }
            _ => (0x01, 0),
        }
    }

    fn io(&mut self, entry: &[u8]) -> (u16, u32) {
        let opcode = entry[0];
        *self.stats.commands.entry(opcode).or_default() += 1;
        if let Some(position) = self.injected.iter().position(|(op, _)| *op == opcode) {
            let (_, status) = self.injected.remove(position).unwrap();
            return (status, 0);
        }
        let nsid = le32(entry, 4);
        if nsid != 1 {
            return (0x0b, 0);
        }
        let prp1 = le64(entry, 24);
        let prp2 = le64(entry, 32);
        let slba = le64(entry, 40);
        let shift = self.options.block_shift;
        let blocks = self.options.namespace_blocks;
        match opcode {
            0x00 => {
                self.durable.copy_from_slice(&self.media);
                (0, 0)
            }
            0x01 | 0x02 => {
                let count = u64::from(le32(entry, 48) & 0xffff) + 1;
                if slba.checked_add(count).is_none_or(|end| end > blocks) {
                    return (0x80, 0); // LBA Out of Range
                }
                let len = (count << shift) as usize;
                let Some(segments) = self.prp_segments(prp1, prp2, len) else {
                    return (0x04, 0);
                };
                let mut at = (slba << shift) as usize;
                for (address, chunk) in segments {
                    if opcode == 0x01 {
                        let Some(data) = self.dma_read(address, chunk) else {
                            return (0x04, 0);
                        };
                        self.media[at..at + chunk].copy_from_slice(&data);
                        if !self.options.volatile_write_cache {
                            self.durable[at..at + chunk].copy_from_slice(&data);
                        }
                    } else {
                        let data = self.media[at..at + chunk].to_vec();
                        if !self.dma_write(address, &data) {
                            return (0x04, 0);
                        }
                    }
                    at += chunk;
                }
                (0, 0)
            }
            0x09 if self.options.dataset_management => {
                let ranges = (le32(entry, 40) & 0xff) as usize + 1;
                if le32(entry, 44) & 4 == 0 {
                    return (0, 0);
                }
                let Some(list) = self.dma_read(prp1, ranges * 16) else {
                    return (0x04, 0);
                };
                for range in list.chunks_exact(16) {
                    let count = u64::from(le32(range, 4));
                    let start = le64(range, 8);
                    if start.checked_add(count).is_none_or(|end| end > blocks) {
                        return (0x80, 0);
                    }
                    let (from, to) = (
                        (start << shift) as usize,
                        ((start + count) << shift) as usize,
                    );
                    self.media[from..to].fill(0);
                    self.durable[from..to].fill(0);
                    self.stats.deallocated_blocks += count;
                }
                (0, 0)
            }
            _ => (0x01, 0),
        }
    }
}

impl ConfigSpace for Model {
    fn config_read8(&mut self, offset: u16) -> Result<u8, PciError> {
        check_register(256, u64::from(offset), 1)?;
        Ok(self.0.borrow().config[usize::from(offset)])
    }
    fn config_read16(&mut self, offset: u16) -> Result<u16, PciError> {
        check_register(256, u64::from(offset), 2)?;
        let config = &self.0.borrow().config;
        let at = usize::from(offset);
        Ok(u16::from_le_bytes([config[at], config[at + 1]]))
    }
    fn config_read32(&mut self, offset: u16) -> Result<u32, PciError> {
        check_register(256, u64::from(offset), 4)?;
        Ok(le32(&self.0.borrow().config, usize::from(offset)))
    }
    fn config_write8(&mut self, offset: u16, value: u8) -> Result<(), PciError> {
        check_register(256, u64::from(offset), 1)?;
        self.0.borrow_mut().config[usize::from(offset)] = value;
        Ok(())
    }
    fn config_write16(&mut self, offset: u16, value: u16) -> Result<(), PciError> {
        check_register(256, u64::from(offset), 2)?;
        let at = usize::from(offset);
        self.0.borrow_mut().config[at..at + 2].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }
    fn config_write32(&mut self, offset: u16, value: u32) -> Result<(), PciError> {
        check_register(256, u64::from(offset), 4)?;
        let at = usize::from(offset);
        self.0.borrow_mut().config[at..at + 4].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }
}

impl Mmio for Model {
    fn bar_len(&mut self, bar: u8) -> Result<u64, PciError> {
        if bar == 0 {
            Ok(BAR_LEN)
        } else {
            Err(PciError::NoSuchBar)
        }
    }
    fn read32(&mut self, bar: u8, offset: u64) -> Result<u32, PciError> {
        self.bar_len(bar)?;
        check_register(BAR_LEN, offset, 4)?;
        let mut controller = self.0.borrow_mut();
        if controller.gone {
            return Ok(u32::MAX);
        }
        Ok(match offset {
            0x00 => controller.cap() as u32,
            0x04 => (controller.cap() >> 32) as u32,
            0x08 => 0x0001_0400,
            0x14 => controller.cc,
            0x1c => controller.read_csts(),
            0x24 => controller.aqa,
            _ => 0,
        })
    }
    fn write32(&mut self, bar: u8, offset: u64, value: u32) -> Result<(), PciError> {
        self.bar_len(bar)?;
        check_register(BAR_LEN, offset, 4)?;
        let mut controller = self.0.borrow_mut();
        match offset {
            0x14 => controller.write_cc(value),
            0x24 => controller.aqa = value,
            0x1000.. => controller.doorbell(offset, value),
            _ => {}
        }
        Ok(())
    }
    fn read64(&mut self, bar: u8, offset: u64) -> Result<u64, PciError> {
        self.bar_len(bar)?;
        check_register(BAR_LEN, offset, 8)?;
        let controller = self.0.borrow();
        if controller.gone {
            return Ok(u64::MAX);
        }
        Ok(match offset {
            0x00 => controller.cap(),
            0x28 => controller.asq,
            0x30 => controller.acq,
            _ => 0,
        })
    }
    fn write64(&mut self, bar: u8, offset: u64, value: u64) -> Result<(), PciError> {
        self.bar_len(bar)?;
        check_register(BAR_LEN, offset, 8)?;
        let mut controller = self.0.borrow_mut();
        match offset {
            0x28 => controller.asq = value,
            0x30 => controller.acq = value,
            _ => controller.fault(format!("64-bit write at {offset:#x}")),
        }
        Ok(())
    }
}

impl Controller {
    fn cap(&self) -> u64 {
        u64::from(self.options.max_queue_entries - 1)
            | (1 << 16)
            | (u64::from(self.options.timeout_units) << 24)
            | (u64::from(self.options.doorbell_stride) << 32)
            | (1 << 37)
    }
}

impl Dma for Model {
    type Buffer = Buffer;

    fn allocate(&mut self, len: usize, align: usize) -> Result<Buffer, PciError> {
        let mut controller = self.0.borrow_mut();
        if !align.is_power_of_two() || align > PAGE {
            controller.fault(format!("allocation aligned to {align}"));
            return Err(PciError::OutOfMemory);
        }
        let bus = controller.next_dma
            + if controller.options.misaligned_dma {
                8
            } else {
                0
            };
        // Addresses are never reused, so DMA after free is always caught.
        controller.next_dma += (len.max(1).div_ceil(PAGE) * PAGE) as u64 + PAGE as u64;
        let memory = Rc::new(RefCell::new(vec![0; len]));
        controller.dma.insert(bus, memory.clone());
        Ok(Buffer { memory, bus })
    }

    fn free(&mut self, buffer: Buffer) {
        let mut controller = self.0.borrow_mut();
        if controller.dma.remove(&buffer.bus).is_none() {
            controller.fault(format!("double free of {:#x}", buffer.bus));
        }
        // Freeing what a command in flight still points at is caught when
        // the command runs; freeing a live queue is caught here.
        let queues: Vec<u64> = controller
            .submission
            .values()
            .map(|queue| queue.base)
            .chain(controller.completion.values().map(|queue| queue.base))
            .collect();
        if controller.cc & 1 == 1 && queues.contains(&buffer.bus) {
            controller.fault(format!("freed live queue memory {:#x}", buffer.bus));
        }
    }
}

impl Interrupts for Model {
    fn enable_interrupts(&mut self, mode: InterruptMode, count: u16) -> Result<u16, PciError> {
        let mut controller = self.0.borrow_mut();
        if count == 0 || !controller.options.interrupt_modes.contains(&mode) {
            return Err(PciError::NoSuchVector);
        }
        controller.interrupt_mode = Some(mode);
        controller.masked = false;
        Ok(1)
    }
    fn disable_interrupts(&mut self) {
        let mut controller = self.0.borrow_mut();
        controller.interrupt_mode = None;
        controller.fired.clear();
    }
    fn take_fired(&mut self) -> Option<u16> {
        self.0.borrow_mut().fired.pop_front()
    }
    fn unmask(&mut self, vector: u16) {
        let mut controller = self.0.borrow_mut();
        if vector != 0 || controller.interrupt_mode.is_none() {
            controller.fault(format!("unmask of vector {vector} never enabled"));
            return;
        }
        controller.masked = false;
        // Like a pending bit: completions not yet consumed fire at unmask.
        if controller.pending_completions() {
            controller.raise();
        }
    }
}

/// The model behind a platform that runs out of DMA memory.
pub struct Starved {
    /// The controller.
    pub model: Model,
    /// Allocations that succeed before every further one fails.
    pub allocations_left: usize,
}

impl ConfigSpace for Starved {
    fn config_read8(&mut self, offset: u16) -> Result<u8, PciError> {
        self.model.config_read8(offset)
    }
    fn config_read16(&mut self, offset: u16) -> Result<u16, PciError> {
        self.model.config_read16(offset)
    }
    fn config_read32(&mut self, offset: u16) -> Result<u32, PciError> {
        self.model.config_read32(offset)
    }
    fn config_write8(&mut self, offset: u16, value: u8) -> Result<(), PciError> {
        self.model.config_write8(offset, value)
    }
    fn config_write16(&mut self, offset: u16, value: u16) -> Result<(), PciError> {
        self.model.config_write16(offset, value)
    }
    fn config_write32(&mut self, offset: u16, value: u32) -> Result<(), PciError> {
        self.model.config_write32(offset, value)
    }
}

impl Mmio for Starved {
    fn bar_len(&mut self, bar: u8) -> Result<u64, PciError> {
        self.model.bar_len(bar)
    }
    fn read32(&mut self, bar: u8, offset: u64) -> Result<u32, PciError> {
        self.model.read32(bar, offset)
    }
    fn write32(&mut self, bar: u8, offset: u64, value: u32) -> Result<(), PciError> {
        self.model.write32(bar, offset, value)
    }
    fn read64(&mut self, bar: u8, offset: u64) -> Result<u64, PciError> {
        self.model.read64(bar, offset)
    }
    fn write64(&mut self, bar: u8, offset: u64, value: u64) -> Result<(), PciError> {
        self.model.write64(bar, offset, value)
    }
}

impl Dma for Starved {
    type Buffer = Buffer;
    fn allocate(&mut self, len: usize, align: usize) -> Result<Buffer, PciError> {
        if self.allocations_left == 0 {
            return Err(PciError::OutOfMemory);
        }
        self.allocations_left -= 1;
        self.model.allocate(len, align)
    }
    fn free(&mut self, buffer: Buffer) {
        self.model.free(buffer)
    }
}

impl Interrupts for Starved {
    fn enable_interrupts(&mut self, mode: InterruptMode, count: u16) -> Result<u16, PciError> {
        self.model.enable_interrupts(mode, count)
    }
    fn disable_interrupts(&mut self) {
        self.model.disable_interrupts()
    }
    fn take_fired(&mut self) -> Option<u16> {
        self.model.take_fired()
    }
    fn unmask(&mut self, vector: u16) {
        self.model.unmask(vector)
    }
}
