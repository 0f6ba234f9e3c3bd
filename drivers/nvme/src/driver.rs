//! The controller state machine and the block device it serves.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use blkback::{
    BlockDevice, DeviceInfo, DiscardInfo, IoCompletion, IoError, IoRequest, IoTag, SubmitError,
};
use pcidev::{enable_bus_master, BusAddress, DmaBuffer, InterruptMode, PciDevice, PciError};

use crate::spec::{
    admin, nvm, Capabilities, Command, Completion, IdentifyController, IdentifyNamespace,
    CC_CONFIGURATION, CC_EN, CC_SHN_MASK, CC_SHN_NORMAL, CQ_ENTRY_SIZE, CSTS_CFS, CSTS_RDY,
    CSTS_SHST_COMPLETE, CSTS_SHST_MASK, PAGE_SIZE, REG_ACQ, REG_AQA, REG_ASQ, REG_CAP, REG_CC,
    REG_CSTS, SQ_ENTRY_SIZE, STATUS_INVALID_FIELD, STATUS_INVALID_OPCODE,
};

/// The BAR holding the NVMe registers.
const REGISTERS_BAR: u8 = 0;
/// blkif's sector size: the unit of every [`IoRequest`].
const SECTOR_SIZE: u64 = 512;
/// Entries of the admin queues; bring-up has one admin command in flight.
const ADMIN_QUEUE_ENTRIES: u16 = 16;
/// The I/O queue pair's id.
const IO_QID: u16 = 1;
/// PRP entries in one list page.
const PRP_ENTRIES_PER_PAGE: usize = PAGE_SIZE / 8;

/// Driver settings. [`Config::new`] gives the values documented per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The namespace to serve.
    pub nsid: u32,
    /// Entries of the I/O submission and completion queues (default 64;
    /// lowered to what CAP.MQES allows). One entry always stays empty, so
    /// this many minus one commands can be in flight.
    pub io_queue_entries: u16,
    /// Largest transfer of one command in bytes (default 128 KiB; lowered
    /// to MDTS). Larger requests are split into several commands.
    pub max_transfer_bytes: usize,
    /// How long one admin command may take (default 5 s).
    pub admin_timeout_ms: u64,
    /// How long one I/O command may take before the controller is declared
    /// broken (default 30 s, Linux's default).
    pub io_timeout_ms: u64,
    /// How long a normal shutdown may take (default 5 s, Linux's default).
    pub shutdown_timeout_ms: u64,
}

impl Config {
    /// The defaults, for namespace `nsid`.
    pub fn new(nsid: u32) -> Self {
        Self {
            nsid,
            io_queue_entries: 64,
            max_transfer_bytes: 128 << 10,
            admin_timeout_ms: 5_000,
            io_timeout_ms: 30_000,
            shutdown_timeout_ms: 5_000,
        }
    }
}

/// Why the driver stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvmeError {
    /// A device access failed.
    Pci(PciError),
    /// The controller's registers read all ones: it is gone.
    DeviceGone,
    /// The controller does not support the NVM command set.
    NoNvmCommandSet,
    /// The controller does not support 4 KiB memory pages.
    PageSizeUnsupported,
    /// BAR 0 is too small to hold the registers and doorbells.
    BarTooSmall,
    /// The controller allows fewer than two queue entries.
    QueueTooSmall,
    /// CSTS.RDY did not clear within CAP.TO after disabling the controller.
    ResetTimeout,
    /// CSTS.RDY did not set within CAP.TO after enabling the controller.
    ReadyTimeout,
    /// The controller reported a fatal status (CSTS.CFS).
    ControllerFatal,
    /// An admin command did not complete in time.
    AdminTimeout,
    /// An admin command failed with this opcode and status field.
    AdminFailed {
        /// The admin opcode.
        opcode: u8,
        /// The completion's status field (phase tag removed).
        status: u16,
    },
    /// The namespace id is 0, above the controller's NN, or inactive.
    NoSuchNamespace,
    /// The namespace's format has metadata or a block size outside 512..=4096.
    UnsupportedFormat,
    /// The controller completed a command that was not in flight.
    BadCompletion,
    /// An I/O command did not complete in time.
    IoTimeout,
    /// The controller did not finish a normal shutdown in time.
    ShutdownTimeout,
}

impl fmt::Display for NvmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(error) => write!(f, "a device access failed: {error}"),
            Self::DeviceGone => f.write_str("the controller's registers read all ones: it is gone"),
            Self::NoNvmCommandSet => {
                f.write_str("the controller does not support the NVM command set")
            }
            Self::PageSizeUnsupported => {
                f.write_str("the controller does not support 4 KiB memory pages")
            }
            Self::BarTooSmall => f.write_str("BAR 0 is too small to hold the registers and doorbells"),
            Self::QueueTooSmall => f.write_str("the controller allows fewer than two queue entries"),
            Self::ResetTimeout => f.write_str(
                "CSTS.RDY did not clear within CAP.TO after disabling the controller",
            ),
            Self::ReadyTimeout => {
                f.write_str("CSTS.RDY did not set within CAP.TO after enabling the controller")
            }
            Self::ControllerFatal => {
                f.write_str("the controller reported a fatal status (CSTS.CFS)")
            }
            Self::AdminTimeout => f.write_str("an admin command did not complete in time"),
            Self::AdminFailed { opcode, status } => write!(
                f,
                "an admin command failed with this opcode and status field: {opcode:#04x}, {status:#06x}"
            ),
            Self::NoSuchNamespace => {
                f.write_str("the namespace id is 0, above the controller's NN, or inactive")
            }
            Self::UnsupportedFormat => f.write_str(
                "the namespace's format has metadata or a block size outside 512..=4096",
            ),
            Self::BadCompletion => {
                f.write_str("the controller completed a command that was not in flight")
            }
            Self::IoTimeout => f.write_str("an I/O command did not complete in time"),
            Self::ShutdownTimeout => {
                f.write_str("the controller did not finish a normal shutdown in time")
            }
        }
    }
}

impl From<PciError> for NvmeError {
    fn from(error: PciError) -> Self {
        Self::Pci(error)
    }
}

/// Where bring-up stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Still starting; call [`Nvme::poll_bring_up`] again later.
    Starting,
    /// Serving I/O.
    Ready,
    /// Shutting down; call [`Nvme::shutdown`] again later.
    ShuttingDown,
    /// Shut down: its volatile cache is written back; it serves no more I/O.
    ShutDown,
    /// Stopped for good, for this reason.
    Failed(NvmeError),
}

/// The admin commands of bring-up, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdminStep {
    IdentifyController,
    NumberOfQueues,
    CreateCompletionQueue,
    CreateSubmissionQueue,
    IdentifyNamespace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Disabling { deadline: u64 },
    Enabling { deadline: u64 },
    Admin { step: AdminStep, deadline: u64 },
    Ready,
    ShuttingDown { deadline: u64 },
    ShutDown,
    Failed(NvmeError),
}

/// A submission/completion queue pair in DMA memory.
struct Queue<B> {
    qid: u16,
    entries: u16,
    submission: B,
    completion: B,
    sq_tail: u16,
    cq_head: u16,
    phase: bool,
}

/// One request from blkback, possibly split over several commands.
struct Pending<B> {
    tag: IoTag,
    read: bool,
    buffer: Vec<u8>,
    /// Data bounce buffer, or the Dataset Management range list.
    dma: Option<B>,
    commands_left: usize,
    error: Option<IoError>,
}

/// One command in flight, indexed by its command id.
struct Slot<B> {
    request: usize,
    prp_list: Option<B>,
    /// The time of the first [`Nvme::tick`] after submission.
    first_seen: Option<u64>,
}

/// An NVMe controller serving one namespace. Create it with [`Nvme::new`],
/// call [`Nvme::poll_bring_up`] until [`Status::Ready`], then hand it to
/// blkback and call [`Nvme::tick`] now and then so stuck commands are noticed.
pub struct Nvme<D: PciDevice> {
    device: D,
    config: Config,
    state: State,
    now: u64,
    capabilities: Capabilities,
    admin: Option<Queue<D::Buffer>>,
    io: Option<Queue<D::Buffer>>,
    identify: Option<D::Buffer>,
    controller: Option<IdentifyController>,
    namespace: Option<IdentifyNamespace>,
    interrupts: bool,
    max_transfer: usize,
    slots: Vec<Option<Slot<D::Buffer>>>,
    free_command_ids: Vec<u16>,
    requests: Vec<Option<Pending<D::Buffer>>>,
    free_requests: Vec<usize>,
    finished: VecDeque<IoCompletion>,
    /// Buffers a broken controller might still write: never freed.
    quarantine: Vec<D::Buffer>,
    /// [`Nvme::shutdown`] was called: no new requests.
    shutting_down: bool,
}

impl<D: PciDevice> Nvme<D> {
    /// A driver for `device`; nothing is touched until [`Nvme::poll_bring_up`].
    pub fn new(device: D, config: Config) -> Self {
        Self {
            device,
            config,
            state: State::Start,
            now: 0,
            capabilities: Capabilities::decode(0),
            admin: None,
            io: None,
            identify: None,
            controller: None,
            namespace: None,
            interrupts: false,
            max_transfer: PAGE_SIZE,
            slots: Vec::new(),
            free_command_ids: Vec::new(),
            requests: Vec::new(),
            free_requests: Vec::new(),
            finished: VecDeque::new(),
            quarantine: Vec::new(),
            shutting_down: false,
        }
    }

    /// Where bring-up stands.
    pub fn status(&self) -> Status {
        match self.state {
            State::Ready => Status::Ready,
            State::ShuttingDown { .. } => Status::ShuttingDown,
            State::ShutDown => Status::ShutDown,
            State::Failed(error) => Status::Failed(error),
            _ => Status::Starting,
        }
    }

    /// The device, for the platform's own bookkeeping.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably (tests use it to reach the controller model).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The Identify Controller fields in use, once read.
    pub fn identify_controller(&self) -> Option<IdentifyController> {
        self.controller
    }

    /// The Identify Namespace fields in use, once read.
    pub fn identify_namespace(&self) -> Option<IdentifyNamespace> {
        self.namespace
    }

    /// Advances bring-up: reset, enable, then the admin commands. `now` is
    /// the time in milliseconds on any monotonic clock; CAP.TO and the admin
    /// timeout are measured on it. Each call does at most one wait-free step
    /// per stage, so it returns quickly; call it again while it says
    /// [`Status::Starting`].
    pub fn poll_bring_up(&mut self, now: u64) -> Status {
        self.now = now;
        // Bring-up passes through eight states before Ready; each turn
        // either advances one or stops.
        for _ in 0..8 {
            let before = self.state;
            if let Err(error) = self.step_bring_up() {
                self.fail(error);
            }
            if self.state == before {
                break;
            }
        }
        self.status()
    }

    /// Notes the time and checks the controller's health: a fatal status,
    /// a vanished device, or a command in flight longer than
    /// [`Config::io_timeout_ms`] stops the driver. A command's age counts
    /// from the first tick that sees it, so it is never declared stuck
    /// early, and at most one tick interval late: call this every second or
    /// so.
    pub fn tick(&mut self, now: u64) -> Status {
        self.now = now;
        if self.state != State::Ready {
            return self.status();
        }
        if let Err(error) = self.check_health() {
            self.fail(error);
            return self.status();
        }
        let timeout = self.config.io_timeout_ms;
        let mut stuck = false;
        for slot in self.slots.iter_mut().flatten() {
            let first_seen = *slot.first_seen.get_or_insert(now);
            stuck |= now.saturating_sub(first_seen) > timeout;
        }
        if stuck {
            self.fail(NvmeError::IoTimeout);
        }
        self.status()
    }

    fn check_health(&mut self) -> Result<(), NvmeError> {
        let csts = self.device.read32(REGISTERS_BAR, REG_CSTS)?;
        if csts == u32::MAX {
            return Err(NvmeError::DeviceGone);
        }
        if csts & CSTS_CFS != 0 {
            return Err(NvmeError::ControllerFatal);
        }
        Ok(())
    }

    fn step_bring_up(&mut self) -> Result<(), NvmeError> {
        match self.state {
            State::Start => self.start(),
            State::Disabling { deadline } => {
                let csts = self.device.read32(REGISTERS_BAR, REG_CSTS)?;
                if csts == u32::MAX {
                    return Err(NvmeError::DeviceGone);
                }
                if csts & CSTS_RDY == 0 {
                    self.enable()
                } else if self.now >= deadline {
                    Err(NvmeError::ResetTimeout)
                } else {
                    Ok(())
                }
            }
            State::Enabling { deadline } => {
                let csts = self.device.read32(REGISTERS_BAR, REG_CSTS)?;
                if csts == u32::MAX {
                    return Err(NvmeError::DeviceGone);
                }
                if csts & CSTS_CFS != 0 {
                    Err(NvmeError::ControllerFatal)
                } else if csts & CSTS_RDY != 0 {
                    self.issue_admin(AdminStep::IdentifyController)
                } else if self.now >= deadline {
                    Err(NvmeError::ReadyTimeout)
                } else {
                    Ok(())
                }
            }
            State::Admin { step, deadline } => self.poll_admin(step, deadline),
            State::Ready | State::ShuttingDown { .. } | State::ShutDown | State::Failed(_) => {
                Ok(())
            }
        }
    }

    /// Shuts the controller down normally (CC.SHN), so it writes back its
    /// volatile cache, before the domain stops or hands the device on.
    /// While commands are in flight it only reaps completions and reports
    /// [`Status::Ready`]; call it again (with completions taken through
    /// [`BlockDevice::poll_completion`]) until it reports
    /// [`Status::ShutDown`] or fails with [`NvmeError::ShutdownTimeout`].
    /// New requests fail at once from the first call on.
    pub fn shutdown(&mut self, now: u64) -> Status {
        self.now = now;
        match self.state {
            State::Ready => {
                self.shutting_down = true;
                if self.free_command_ids.len() < self.slots.len() {
                    self.reap();
                    return self.status();
                }
                let result = self.device.read32(REGISTERS_BAR, REG_CC).and_then(|cc| {
                    let cc = (cc & !CC_SHN_MASK) | CC_SHN_NORMAL;
                    self.device.write32(REGISTERS_BAR, REG_CC, cc)
                });
                match result {
                    Ok(()) => {
                        self.state = State::ShuttingDown {
                            deadline: now.saturating_add(self.config.shutdown_timeout_ms),
                        }
                    }
                    Err(error) => self.fail(error.into()),
                }
            }
            State::ShuttingDown { deadline } => match self.device.read32(REGISTERS_BAR, REG_CSTS) {
                Ok(u32::MAX) => self.fail(NvmeError::DeviceGone),
                Ok(csts) if csts & CSTS_SHST_MASK == CSTS_SHST_COMPLETE => {
                    self.device.disable_interrupts();
                    self.state = State::ShutDown;
                }
                Ok(_) if now >= deadline => self.fail(NvmeError::ShutdownTimeout),
                Ok(_) => {}
                Err(error) => self.fail(error.into()),
            },
            _ => {}
        }
        self.status()
    }

    /// Time allowed for CSTS.RDY to change: CAP.TO, at least 500 ms.
    fn ready_deadline(&self) -> u64 {
        self.now
            .saturating_add(self.capabilities.timeout_ms().max(500))
    }

    fn start(&mut self) -> Result<(), NvmeError> {
        let previous = enable_bus_master(&mut self.device)?;
        log::debug!("nvme: command register was {previous:#06x}");
        let cap = self.device.read64(REGISTERS_BAR, REG_CAP)?;
        if cap == u64::MAX {
            return Err(NvmeError::DeviceGone);
        }
        self.capabilities = Capabilities::decode(cap);
        if !self.capabilities.nvm_command_set {
            return Err(NvmeError::NoNvmCommandSet);
        }
        if self.capabilities.page_size_minimum != 0 {
            return Err(NvmeError::PageSizeUnsupported);
        }
        if self.capabilities.max_queue_entries < 2 {
            return Err(NvmeError::QueueTooSmall);
        }
        if self.device.bar_len(REGISTERS_BAR)? < self.capabilities.doorbell(IO_QID, true) + 4 {
            return Err(NvmeError::BarTooSmall);
        }
        // Interrupts only wake the domain; every queue is also polled, so a
        // platform without any interrupt mode still works.
        self.interrupts = [InterruptMode::MsiX, InterruptMode::Msi, InterruptMode::Intx]
            .into_iter()
            .any(|mode| self.device.enable_interrupts(mode, 1).is_ok());
        let cc = self.device.read32(REGISTERS_BAR, REG_CC)?;
        if cc & CC_EN != 0 {
            self.device.write32(REGISTERS_BAR, REG_CC, cc & !CC_EN)?;
        }
        self.state = State::Disabling {
            deadline: self.ready_deadline(),
        };
        Ok(())
    }

    fn allocate_queue(&mut self, qid: u16, entries: u16) -> Result<Queue<D::Buffer>, NvmeError> {
        let submission = allocate(&mut self.device, usize::from(entries) * SQ_ENTRY_SIZE)?;
        let completion = match allocate(&mut self.device, usize::from(entries) * CQ_ENTRY_SIZE) {
            Ok(buffer) => buffer,
            Err(error) => {
                self.device.free(submission);
                return Err(error.into());
            }
        };
        Ok(Queue {
            qid,
            entries,
            submission,
            completion,
            sq_tail: 0,
            cq_head: 0,
            phase: true,
        })
    }

    fn enable(&mut self) -> Result<(), NvmeError> {
        // The controller is disabled, so it no longer reaches old queues.
        if let Some(queue) = self.admin.take() {
            self.device.free(queue.submission);
            self.device.free(queue.completion);
        }
        let entries = clamp_entries(ADMIN_QUEUE_ENTRIES, &self.capabilities);
        let queue = self.allocate_queue(0, entries)?;
        let size = u32::from(entries - 1);
        self.device
            .write32(REGISTERS_BAR, REG_AQA, (size << 16) | size)?;
        self.device
            .write64(REGISTERS_BAR, REG_ASQ, queue.submission.bus_address().0)?;
        self.device
            .write64(REGISTERS_BAR, REG_ACQ, queue.completion.bus_address().0)?;
        self.admin = Some(queue);
        self.device
            .write32(REGISTERS_BAR, REG_CC, CC_CONFIGURATION | CC_EN)?;
        self.state = State::Enabling {
            deadline: self.ready_deadline(),
        };
        Ok(())
    }

    fn issue_admin(&mut self, step: AdminStep) -> Result<(), NvmeError> {
        let identify = match self.identify.take() {
            Some(buffer) => buffer,
            None => allocate(&mut self.device, PAGE_SIZE)?,
        };
        let identify_address = identify.bus_address().0;
        self.identify = Some(identify);
        let io_entries = clamp_entries(self.config.io_queue_entries, &self.capabilities);
        let queue_size = u32::from(io_entries - 1);
        let mut command = Command {
            command_id: step as u16,
            ..Command::default()
        };
        match step {
            AdminStep::IdentifyController => {
                command.opcode = admin::IDENTIFY;
                command.prp1 = identify_address;
                command.cdw[0] = admin::CNS_CONTROLLER;
            }
            AdminStep::NumberOfQueues => {
                command.opcode = admin::SET_FEATURES;
                command.cdw[0] = admin::FEATURE_NUMBER_OF_QUEUES;
                // One submission and one completion queue, 0's based.
                command.cdw[1] = 0;
            }
            AdminStep::CreateCompletionQueue => {
                let queue = self.allocate_queue(IO_QID, io_entries)?;
                command.opcode = admin::CREATE_IO_CQ;
                command.prp1 = queue.completion.bus_address().0;
                command.cdw[0] = (queue_size << 16) | u32::from(IO_QID);
                // Physically contiguous; interrupts on vector 0 if we have one.
                command.cdw[1] = 1 | (u32::from(self.interrupts) << 1);
                if let Some(old) = self.io.replace(queue) {
                    self.quarantine.push(old.submission);
                    self.quarantine.push(old.completion);
                }
            }
            AdminStep::CreateSubmissionQueue => {
                let queue = self.io.as_ref().ok_or(NvmeError::BadCompletion)?;
                command.opcode = admin::CREATE_IO_SQ;
                command.prp1 = queue.submission.bus_address().0;
                command.cdw[0] = (queue_size << 16) | u32::from(IO_QID);
                command.cdw[1] = (u32::from(IO_QID) << 16) | 1;
            }
            AdminStep::IdentifyNamespace => {
                command.opcode = admin::IDENTIFY;
                command.nsid = self.config.nsid;
                command.prp1 = identify_address;
                command.cdw[0] = admin::CNS_NAMESPACE;
            }
        }
        let queue = self.admin.as_mut().ok_or(NvmeError::BadCompletion)?;
        push_command(&mut self.device, &self.capabilities, queue, &command)?;
        self.state = State::Admin {
            step,
            deadline: self.now.saturating_add(self.config.admin_timeout_ms),
        };
        Ok(())
    }

    fn poll_admin(&mut self, step: AdminStep, deadline: u64) -> Result<(), NvmeError> {
        self.take_interrupts();
        let queue = self.admin.as_mut().ok_or(NvmeError::BadCompletion)?;
        let completion = next_completion(queue)?;
        if completion.is_some() {
            ring_completion_doorbell(&mut self.device, &self.capabilities, queue)?;
        }
        self.unmask_interrupts();
        let Some(completion) = completion else {
            self.check_health()?;
            if self.now >= deadline {
                return Err(NvmeError::AdminTimeout);
            }
            return Ok(());
        };
        if completion.command_id != step as u16 {
            return Err(NvmeError::BadCompletion);
        }
        if completion.status != 0 {
            let opcode = match step {
                AdminStep::IdentifyController | AdminStep::IdentifyNamespace => admin::IDENTIFY,
                AdminStep::NumberOfQueues => admin::SET_FEATURES,
                AdminStep::CreateCompletionQueue => admin::CREATE_IO_CQ,
                AdminStep::CreateSubmissionQueue => admin::CREATE_IO_SQ,
            };
            if step == AdminStep::IdentifyNamespace {
                return Err(NvmeError::NoSuchNamespace);
            }
            return Err(NvmeError::AdminFailed {
                opcode,
                status: completion.status,
            });
        }
        match step {
            AdminStep::IdentifyController => {
                let controller = IdentifyController::decode(&self.read_identify()?);
                log::info!(
                    "nvme: vendor {:#06x}, {} namespaces, mdts {}, dsm {}, volatile cache {}",
                    controller.vendor_id,
                    controller.namespaces,
                    controller.mdts,
                    controller.dataset_management,
                    controller.volatile_write_cache
                );
                if self.config.nsid == 0 || self.config.nsid > controller.namespaces {
                    return Err(NvmeError::NoSuchNamespace);
                }
                self.controller = Some(controller);
                self.issue_admin(AdminStep::NumberOfQueues)
            }
            AdminStep::NumberOfQueues => self.issue_admin(AdminStep::CreateCompletionQueue),
            AdminStep::CreateCompletionQueue => self.issue_admin(AdminStep::CreateSubmissionQueue),
            AdminStep::CreateSubmissionQueue => self.issue_admin(AdminStep::IdentifyNamespace),
            AdminStep::IdentifyNamespace => {
                let namespace = IdentifyNamespace::decode(&self.read_identify()?);
                // An inactive namespace identifies as all zeroes.
                if namespace.size_blocks == 0 {
                    return Err(NvmeError::NoSuchNamespace);
                }
                if namespace.metadata_size != 0 || !(9..=12).contains(&namespace.block_shift) {
                    return Err(NvmeError::UnsupportedFormat);
                }
                self.namespace = Some(namespace);
                self.become_ready();
                Ok(())
            }
        }
    }

    fn read_identify(&mut self) -> Result<[u8; PAGE_SIZE], NvmeError> {
        let mut data = [0u8; PAGE_SIZE];
        self.identify
            .as_ref()
            .ok_or(NvmeError::BadCompletion)?
            .read(0, &mut data)?;
        Ok(data)
    }

    fn become_ready(&mut self) {
        // No admin command is in flight any more.
        if let Some(buffer) = self.identify.take() {
            self.device.free(buffer);
        }
        let mdts = self.controller.map_or(0, |controller| controller.mdts);
        let block_shift = self.namespace.map_or(9, |namespace| namespace.block_shift);
        let mut max_transfer = self.config.max_transfer_bytes / PAGE_SIZE * PAGE_SIZE;
        if mdts != 0 {
            max_transfer = max_transfer.min(PAGE_SIZE << u32::from(mdts).min(16));
        }
        // NLB is a 16-bit 0's based count of blocks.
        max_transfer = max_transfer.min(65536 << block_shift).max(PAGE_SIZE);
        self.max_transfer = max_transfer;
        let commands = self.io.as_ref().map_or(1, |queue| queue.entries) - 1;
        self.slots = (0..commands).map(|_| None).collect();
        self.free_command_ids = (0..commands).rev().collect();
        self.state = State::Ready;
        log::info!(
            "nvme: namespace {} ready: {} blocks of {} bytes, {} commands in flight, {} bytes per command",
            self.config.nsid,
            self.namespace.map_or(0, |namespace| namespace.size_blocks),
            1u32 << block_shift,
            commands,
            max_transfer
        );
    }

    /// Stops the driver: fails every request in flight, keeps every buffer
    /// the controller might still write, and disables the controller.
    fn fail(&mut self, error: NvmeError) {
        log::error!("nvme: controller stopped: {error}");
        self.state = State::Failed(error);
        for slot in self.slots.iter_mut().filter_map(Option::take) {
            self.quarantine.extend(slot.prp_list);
        }
        self.free_command_ids.clear();
        for mut pending in self.requests.iter_mut().filter_map(Option::take) {
            self.quarantine.extend(pending.dma.take());
            self.finished.push_back(IoCompletion {
                tag: pending.tag,
                result: Err(IoError::Media),
                buffer: pending.buffer,
            });
        }
        self.free_requests.clear();
        self.requests.clear();
        // Best effort: a controller that is gone cannot be disabled anyway.
        let _ = self.device.write32(REGISTERS_BAR, REG_CC, 0);
        self.device.disable_interrupts();
    }

    fn take_interrupts(&mut self) {
        // Taking the events before draining the queue, and unmasking after,
        // means a completion posted meanwhile raises a fresh interrupt.
        while self.device.take_fired().is_some() {}
    }

    fn unmask_interrupts(&mut self) {
        if self.interrupts {
            self.device.unmask(0);
        }
    }

    fn block_shift(&self) -> u32 {
        self.namespace
            .map_or(9, |namespace| u32::from(namespace.block_shift))
    }

    fn capacity_bytes(&self) -> u64 {
        self.namespace.map_or(0, |namespace| {
            namespace
                .size_blocks
                .checked_shl(u32::from(namespace.block_shift))
                .filter(|bytes| bytes >> namespace.block_shift == namespace.size_blocks)
                // A size that does not fit is cut to whole blocks that do;
                // the controller refuses what lies beyond its real end.
                .unwrap_or(u64::MAX >> namespace.block_shift << namespace.block_shift)
        })
    }

    /// The block range of `bytes` bytes from 512-byte `sector`, if it is
    /// inside the namespace and aligned to its blocks.
    fn blocks(&self, sector: u64, bytes: u64) -> Option<(u64, u64)> {
        let block_size = 1u64 << self.block_shift();
        let start = sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(bytes)?;
        let aligned =
            start.is_multiple_of(block_size) && bytes.is_multiple_of(block_size) && bytes != 0;
        (aligned && end <= self.capacity_bytes())
            .then(|| (start >> self.block_shift(), bytes >> self.block_shift()))
    }

    /// Completes a request at once with `result` (no command needed).
    fn complete_now(&mut self, tag: IoTag, result: Result<(), IoError>, buffer: Vec<u8>) {
        self.finished.push_back(IoCompletion {
            tag,
            result,
            buffer,
        });
    }

    /// Reacts to DMA memory running out: ask for a retry while commands
    /// are in flight (their completion frees memory), fail the request
    /// otherwise, so the caller never waits for a completion that cannot come.
    fn out_of_memory(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        if self.free_command_ids.len() < self.slots.len() {
            return Err(SubmitError::QueueFull(request));
        }
        log::warn!("nvme: no DMA memory for a request with nothing in flight");
        let buffer = match request {
            IoRequest::Read { buffer, .. } | IoRequest::Write { buffer, .. } => buffer,
            IoRequest::Flush | IoRequest::Discard { .. } => Vec::new(),
        };
        self.complete_now(tag, Err(IoError::Media), buffer);
        Ok(())
    }

    fn submit_transfer(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        let (sector, read, buffer) = match &request {
            IoRequest::Read { sector, buffer } => (*sector, true, buffer),
            IoRequest::Write { sector, buffer } => (*sector, false, buffer),
            _ => return Err(SubmitError::Refused(request)),
        };
        let writable = !self
            .namespace
            .is_some_and(|namespace| namespace.write_protected);
        let Some((first_block, _)) = self.blocks(sector, buffer.len() as u64) else {
            return Err(SubmitError::Refused(request));
        };
        if !read && !writable {
            return Err(SubmitError::Refused(request));
        }
        let commands = buffer.len().div_ceil(self.max_transfer);
        if commands > self.slots.len() {
            return Err(SubmitError::Refused(request));
        }
        if commands > self.free_command_ids.len() {
            return Err(SubmitError::QueueFull(request));
        }
        let length = buffer.len();
        let Ok(dma) = allocate(&mut self.device, length.next_multiple_of(PAGE_SIZE)) else {
            return self.out_of_memory(tag, request);
        };
        if !read && dma.write(0, buffer).is_err() {
            self.device.free(dma);
            return self.out_of_memory(tag, request);
        }
        // Every command's PRPs (and list pages) are built before any entry
        // is queued, so running out of memory leaves nothing half-submitted.
        let mut prepared = Vec::with_capacity(commands);
        for index in 0..commands {
            let offset = index * self.max_transfer;
            let bytes = (length - offset).min(self.max_transfer);
            let address = BusAddress(dma.bus_address().0 + offset as u64);
            match build_prps(&mut self.device, address, bytes) {
                Ok(prps) => prepared.push((offset, bytes, prps)),
                Err(_) => {
                    for (_, _, (_, _, list)) in prepared {
                        if let Some(list) = list {
                            self.device.free(list);
                        }
                    }
                    self.device.free(dma);
                    return self.out_of_memory(tag, request);
                }
            }
        }
        let (IoRequest::Read { buffer, .. } | IoRequest::Write { buffer, .. }) = request else {
            return Ok(());
        };
        let index = self.new_request(Pending {
            tag,
            read,
            buffer,
            dma: Some(dma),
            commands_left: commands,
            error: None,
        });
        let block_shift = self.block_shift();
        for (offset, bytes, (prp1, prp2, list)) in prepared {
            let block = first_block + (offset as u64 >> block_shift);
            let blocks = (bytes >> block_shift) as u32;
            let command = Command {
                opcode: if read { nvm::READ } else { nvm::WRITE },
                nsid: self.config.nsid,
                prp1,
                prp2,
                cdw: [block as u32, (block >> 32) as u32, blocks - 1, 0, 0, 0],
                ..Command::default()
            };
            self.queue_command(index, command, list);
        }
        self.ring_submission_doorbell();
        Ok(())
    }

    fn submit_discard(
        &mut self,
        tag: IoTag,
        sector: u64,
        sectors: u64,
        secure: bool,
    ) -> Result<(), SubmitError> {
        let request = IoRequest::Discard {
            sector,
            sectors,
            secure,
        };
        let supported = self
            .controller
            .is_some_and(|controller| controller.dataset_management);
        let range = sectors
            .checked_mul(SECTOR_SIZE)
            .and_then(|bytes| self.blocks(sector, bytes));
        let Some((first_block, blocks)) = range else {
            return Err(SubmitError::Refused(request));
        };
        if self
            .namespace
            .is_some_and(|namespace| namespace.write_protected)
        {
            return Err(SubmitError::Refused(request));
        }
        if !supported || secure {
            // Deallocated blocks may still be readable: not a secure erase.
            self.complete_now(tag, Err(IoError::NotSupported), Vec::new());
            return Ok(());
        }
        let ranges = blocks.div_ceil(u64::from(u32::MAX));
        if ranges > nvm::DSM_MAX_RANGES as u64 {
            return Err(SubmitError::Refused(request));
        }
        if self.free_command_ids.is_empty() {
            return Err(SubmitError::QueueFull(request));
        }
        let mut list = vec![0u8; ranges as usize * nvm::DSM_RANGE_SIZE];
        let (mut block, mut left) = (first_block, blocks);
        for range in list.chunks_exact_mut(nvm::DSM_RANGE_SIZE) {
            let count = left.min(u64::from(u32::MAX));
            range[4..8].copy_from_slice(&(count as u32).to_le_bytes());
            range[8..16].copy_from_slice(&block.to_le_bytes());
            block += count;
            left -= count;
        }
        let Ok(dma) = allocate(&mut self.device, PAGE_SIZE) else {
            return self.out_of_memory(tag, request);
        };
        if dma.write(0, &list).is_err() {
            self.device.free(dma);
            return self.out_of_memory(tag, request);
        }
        let command = Command {
            opcode: nvm::DATASET_MANAGEMENT,
            nsid: self.config.nsid,
            prp1: dma.bus_address().0,
            cdw: [(ranges - 1) as u32, nvm::DSM_DEALLOCATE, 0, 0, 0, 0],
            ..Command::default()
        };
        let index = self.new_request(Pending {
            tag,
            read: false,
            buffer: Vec::new(),
            dma: Some(dma),
            commands_left: 1,
            error: None,
        });
        self.queue_command(index, command, None);
        self.ring_submission_doorbell();
        Ok(())
    }

    fn submit_flush(&mut self, tag: IoTag) -> Result<(), SubmitError> {
        let cached = self
            .controller
            .is_some_and(|controller| controller.volatile_write_cache);
        if !cached {
            // Every completed write is already on stable media.
            self.complete_now(tag, Ok(()), Vec::new());
            return Ok(());
        }
        if self.free_command_ids.is_empty() {
            return Err(SubmitError::QueueFull(IoRequest::Flush));
        }
        let index = self.new_request(Pending {
            tag,
            read: false,
            buffer: Vec::new(),
            dma: None,
            commands_left: 1,
            error: None,
        });
        let command = Command {
            opcode: nvm::FLUSH,
            nsid: self.config.nsid,
            ..Command::default()
        };
        self.queue_command(index, command, None);
        self.ring_submission_doorbell();
        Ok(())
    }

    fn new_request(&mut self, pending: Pending<D::Buffer>) -> usize {
        match self.free_requests.pop() {
            Some(index) => {
                self.requests[index] = Some(pending);
                index
            }
            None => {
                self.requests.push(Some(pending));
                self.requests.len() - 1
            }
        }
    }

    /// Writes one entry to the I/O submission queue (the doorbell is rung
    /// once per request). The caller checked that a command id is free.
    fn queue_command(&mut self, request: usize, mut command: Command, prp_list: Option<D::Buffer>) {
        let Some(command_id) = self.free_command_ids.pop() else {
            // Unreachable by the callers' checks; fail rather than panic.
            self.quarantine.extend(prp_list);
            return self.fail(NvmeError::BadCompletion);
        };
        command.command_id = command_id;
        self.slots[usize::from(command_id)] = Some(Slot {
            request,
            prp_list,
            first_seen: None,
        });
        let result = match self.io.as_mut() {
            Some(queue) => write_entry(queue, &command),
            None => Err(PciError::NoSuchBar),
        };
        if let Err(error) = result {
            self.fail(error.into());
        }
    }

    fn ring_submission_doorbell(&mut self) {
        if self.state != State::Ready {
            return;
        }
        let Some(queue) = self.io.as_ref() else {
            return;
        };
        let doorbell = self.capabilities.doorbell(queue.qid, false);
        if let Err(error) = self
            .device
            .write32(REGISTERS_BAR, doorbell, u32::from(queue.sq_tail))
        {
            self.fail(error.into());
        }
    }

    /// Takes up to one queue's worth of completions off the I/O completion
    /// queue and finishes the requests whose commands are all done.
    fn reap(&mut self) {
        self.take_interrupts();
        let entries = self.io.as_ref().map_or(0, |queue| queue.entries);
        let mut taken = 0;
        for _ in 0..entries {
            let Some(queue) = self.io.as_mut() else {
                return;
            };
            match next_completion(queue) {
                Ok(Some(completion)) => {
                    taken += 1;
                    if let Err(error) = self.complete_command(completion) {
                        return self.fail(error);
                    }
                }
                Ok(None) => break,
                Err(error) => return self.fail(error.into()),
            }
        }
        if taken > 0 {
            if let Some(queue) = self.io.as_mut() {
                if let Err(error) =
                    ring_completion_doorbell(&mut self.device, &self.capabilities, queue)
                {
                    return self.fail(error.into());
                }
            }
        }
        self.unmask_interrupts();
    }

    fn complete_command(&mut self, completion: Completion) -> Result<(), NvmeError> {
        if completion.sq_id != IO_QID {
            return Err(NvmeError::BadCompletion);
        }
        let slot = self
            .slots
            .get_mut(usize::from(completion.command_id))
            .and_then(Option::take)
            .ok_or(NvmeError::BadCompletion)?;
        self.free_command_ids.push(completion.command_id);
        if let Some(list) = slot.prp_list {
            self.device.free(list);
        }
        let pending = self
            .requests
            .get_mut(slot.request)
            .and_then(Option::as_mut)
            .ok_or(NvmeError::BadCompletion)?;
        if completion.status != 0 {
            log::warn!(
                "nvme: command {} failed: status type {}, code {:#04x}",
                completion.command_id,
                completion.status_code_type(),
                completion.status_code()
            );
            let unsupported = completion.status_code_type() == 0
                && matches!(
                    completion.status_code(),
                    STATUS_INVALID_OPCODE | STATUS_INVALID_FIELD
                );
            pending.error = Some(if unsupported {
                IoError::NotSupported
            } else {
                IoError::Media
            });
        }
        pending.commands_left -= 1;
        if pending.commands_left > 0 {
            return Ok(());
        }
        let Some(mut pending) = self.requests[slot.request].take() else {
            return Err(NvmeError::BadCompletion);
        };
        self.free_requests.push(slot.request);
        let mut result = pending.error.map_or(Ok(()), Err);
        if let Some(dma) = pending.dma.take() {
            if pending.read && result.is_ok() && dma.read(0, &mut pending.buffer).is_err() {
                result = Err(IoError::Media);
            }
            self.device.free(dma);
        }
        self.complete_now(pending.tag, result, pending.buffer);
        Ok(())
    }
}

impl<D: PciDevice> BlockDevice for Nvme<D> {
    fn info(&self) -> DeviceInfo {
        let block_size = 1u32 << self.block_shift();
        let discard = self
            .controller
            .is_some_and(|controller| controller.dataset_management);
        DeviceInfo {
            sectors: self.capacity_bytes() / SECTOR_SIZE,
            physical_sector_size: block_size,
            read_only: self
                .namespace
                .is_some_and(|namespace| namespace.write_protected),
            flush: true,
            discard: discard.then_some(DiscardInfo {
                granularity: block_size,
                alignment: 0,
                secure: false,
            }),
            removable: false,
            queue_depth: self.slots.len().max(1),
        }
    }

    fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        match self.state {
            State::Ready if !self.shutting_down => {}
            State::Ready | State::ShuttingDown { .. } | State::ShutDown | State::Failed(_) => {
                return self.fail_request(tag, request);
            }
            _ => return Err(SubmitError::Refused(request)),
        }
        match request {
            IoRequest::Read { .. } | IoRequest::Write { .. } => self.submit_transfer(tag, request),
            IoRequest::Flush => self.submit_flush(tag),
            IoRequest::Discard {
                sector,
                sectors,
                secure,
            } => self.submit_discard(tag, sector, sectors, secure),
        }
    }

    fn poll_completion(&mut self) -> Option<IoCompletion> {
        if self.finished.is_empty() && self.state == State::Ready {
            self.reap();
        }
        self.finished.pop_front()
    }
}

impl<D: PciDevice> Nvme<D> {
    /// A stopped or stopping driver fails every request at once.
    fn fail_request(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        let buffer = match request {
            IoRequest::Read { buffer, .. } | IoRequest::Write { buffer, .. } => buffer,
            IoRequest::Flush | IoRequest::Discard { .. } => Vec::new(),
        };
        self.complete_now(tag, Err(IoError::Media), buffer);
        Ok(())
    }
}

/// Allocates `len` bytes of page-aligned DMA memory, and checks that the
/// platform gave what was asked: a buffer the driver would describe wrongly
/// to the controller (misaligned, short, or wrapping the bus address space)
/// is returned and reported as no memory.
fn allocate<D: PciDevice>(device: &mut D, len: usize) -> Result<D::Buffer, PciError> {
    let buffer = device.allocate(len, PAGE_SIZE)?;
    let start = buffer.bus_address().0;
    let sound = start.is_multiple_of(PAGE_SIZE as u64)
        && buffer.len() >= len
        && start.checked_add(len as u64).is_some();
    if !sound {
        log::error!("nvme: the platform returned an unusable DMA buffer at {start:#x}");
        device.free(buffer);
        return Err(PciError::OutOfMemory);
    }
    Ok(buffer)
}

/// A queue size no larger than CAP.MQES allows, and at least 2.
fn clamp_entries(wanted: u16, capabilities: &Capabilities) -> u16 {
    let allowed = capabilities.max_queue_entries.min(u32::from(u16::MAX)) as u16;
    wanted.min(allowed).max(2)
}

/// Writes `command` at the submission queue tail and advances it.
fn write_entry<B: DmaBuffer>(queue: &mut Queue<B>, command: &Command) -> Result<(), PciError> {
    let offset = usize::from(queue.sq_tail) * SQ_ENTRY_SIZE;
    queue.submission.write(offset, &command.encode())?;
    queue.sq_tail = (queue.sq_tail + 1) % queue.entries;
    Ok(())
}

fn push_command<D: PciDevice>(
    device: &mut D,
    capabilities: &Capabilities,
    queue: &mut Queue<D::Buffer>,
    command: &Command,
) -> Result<(), PciError> {
    write_entry(queue, command)?;
    device.write32(
        REGISTERS_BAR,
        capabilities.doorbell(queue.qid, false),
        u32::from(queue.sq_tail),
    )
}

/// Takes the completion at the head if its phase tag says it is new.
fn next_completion<B: DmaBuffer>(queue: &mut Queue<B>) -> Result<Option<Completion>, PciError> {
    let offset = usize::from(queue.cq_head) * CQ_ENTRY_SIZE;
    let mut entry = [0u8; CQ_ENTRY_SIZE];
    // The phase tag is checked on the dword that holds it before the whole
    // entry is copied, so the copy is of an entry the controller finished.
    queue.completion.read(offset + 12, &mut entry[12..16])?;
    if (entry[14] & 1 == 1) != queue.phase {
        return Ok(None);
    }
    queue.completion.read(offset, &mut entry)?;
    let completion = Completion::decode(&entry);
    queue.cq_head += 1;
    if queue.cq_head == queue.entries {
        queue.cq_head = 0;
        queue.phase = !queue.phase;
    }
    Ok(Some(completion))
}

fn ring_completion_doorbell<D: PciDevice>(
    device: &mut D,
    capabilities: &Capabilities,
    queue: &Queue<D::Buffer>,
) -> Result<(), PciError> {
    device.write32(
        REGISTERS_BAR,
        capabilities.doorbell(queue.qid, true),
        u32::from(queue.cq_head),
    )
}

/// PRP1, PRP2 and the PRP list (if one is needed) describing `bytes` bytes
/// of physically contiguous memory from the page-aligned `start`.
fn build_prps<D: PciDevice>(
    device: &mut D,
    start: BusAddress,
    bytes: usize,
) -> Result<(u64, u64, Option<D::Buffer>), PciError> {
    let pages = bytes.div_ceil(PAGE_SIZE);
    let page = |index: usize| start.0 + (index * PAGE_SIZE) as u64;
    match pages {
        0 | 1 => return Ok((start.0, 0, None)),
        2 => return Ok((start.0, page(1), None)),
        _ => {}
    }
    // Pages after the first go in the list. A list page holds 512 entries;
    // when more follow, its last entry points to the next list page instead.
    let entries = pages - 1;
    let list_pages = if entries <= PRP_ENTRIES_PER_PAGE {
        1
    } else {
        (entries - 1).div_ceil(PRP_ENTRIES_PER_PAGE - 1)
    };
    let list = allocate(device, list_pages * PAGE_SIZE)?;
    let mut words = vec![0u8; list_pages * PAGE_SIZE];
    let mut next_page = 1;
    for list_page in 0..list_pages {
        let remaining = pages - next_page;
        let last = list_page + 1 == list_pages;
        let data_entries = if last {
            remaining
        } else {
            PRP_ENTRIES_PER_PAGE - 1
        };
        for slot in 0..data_entries {
            let at = list_page * PAGE_SIZE + slot * 8;
            words[at..at + 8].copy_from_slice(&page(next_page).to_le_bytes());
            next_page += 1;
        }
        if !last {
            let at = list_page * PAGE_SIZE + (PRP_ENTRIES_PER_PAGE - 1) * 8;
            let chain = list.bus_address().0 + ((list_page + 1) * PAGE_SIZE) as u64;
            words[at..at + 8].copy_from_slice(&chain.to_le_bytes());
        }
    }
    if let Err(error) = list.write(0, &words) {
        device.free(list);
        return Err(error);
    }
    Ok((start.0, list.bus_address().0, Some(list)))
}
