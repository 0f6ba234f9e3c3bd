//! The block devices the domain serves: RAM disks, NVMe namespaces on
//! controllers passed through to it (`pci=[...]` in its xl config), driven
//! by `drivers/nvme` over the platform's PCI layer (`rumpuser_xen::pv::pci`),
//! and, in an image built with NetBSD's drivers (feature `netbsd`), the
//! disks those drivers attach (`rumpuser_xen::pv::netbsd`).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use blkback::{
    Blkback, BlockDevice, DeviceInfo, IoCompletion, IoRequest, IoTag, RamDisk, SubmitError,
};
use nvme::{Config, Nvme, Status};
use rumpuser_xen::pv::{self, pci, Platform};

use crate::disks::{self, NvmeSpec};

/// How often a controller's health and command ages are checked.
const TICK_MS: u64 = 1_000;
/// How often, at most, the count of interrupts taken is logged.
const INTERRUPT_REPORT_MS: u64 = 10_000;
/// Longest bring-up we wait for, beyond the driver's own CAP.TO and admin
/// timeouts (a guard against a controller that keeps it busy forever).
const BRING_UP_LIMIT_MS: u64 = 120_000;

fn now_ms() -> u64 {
    pv::time::monotonic_ns() / 1_000_000
}

/// One NVMe namespace, ticked from its own completion polls.
pub struct NvmeDisk {
    name: String,
    driver: Nvme<pci::PciDevice>,
    last_tick_ms: u64,
    /// Interrupts taken at the last report, and when it was made.
    reported_interrupts: u64,
    last_report_ms: u64,
}

impl NvmeDisk {
    fn tick_if_due(&mut self) {
        let now = now_ms();
        if now.saturating_sub(self.last_tick_ms) >= TICK_MS {
            self.last_tick_ms = now;
            if let Status::Failed(error) = self.driver.tick(now) {
                log::error!("rumpdisk: NVMe controller failed: {error}");
            }
        }
        let taken = self.driver.device().interrupts_taken();
        if taken != self.reported_interrupts
            && now.saturating_sub(self.last_report_ms) >= INTERRUPT_REPORT_MS
        {
            log::info!("rumpdisk: {}: {taken} interrupts taken", self.name);
            self.reported_interrupts = taken;
            self.last_report_ms = now;
        }
    }
}

/// A disk of either kind.
pub enum Disk {
    /// A RAM disk.
    Ram(RamDisk),
    /// An NVMe namespace (boxed: the driver's state is large).
    Nvme(Box<NvmeDisk>),
    /// A NetBSD driver's disk.
    #[cfg(feature = "netbsd")]
    Netbsd(netbsd::NetbsdDisk),
}

impl From<RamDisk> for Disk {
    fn from(disk: RamDisk) -> Self {
        Self::Ram(disk)
    }
}

impl BlockDevice for Disk {
    fn info(&self) -> DeviceInfo {
        match self {
            Self::Ram(disk) => disk.info(),
            Self::Nvme(disk) => disk.driver.info(),
            #[cfg(feature = "netbsd")]
            Self::Netbsd(disk) => disk.info(),
        }
    }

    fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        match self {
            Self::Ram(disk) => disk.submit(tag, request),
            Self::Nvme(disk) => disk.driver.submit(tag, request),
            #[cfg(feature = "netbsd")]
            Self::Netbsd(disk) => disk.submit(tag, request),
        }
    }

    fn poll_completion(&mut self) -> Option<IoCompletion> {
        match self {
            Self::Ram(disk) => disk.poll_completion(),
            Self::Nvme(disk) => {
                // Blkback polls after every wakeup; with a PCI device open
                // the platform wakes the loop at least once a second.
                disk.tick_if_due();
                disk.driver.poll_completion()
            }
            #[cfg(feature = "netbsd")]
            Self::Netbsd(disk) => disk.poll_completion(),
        }
    }
}

/// Opens the controller of `spec` and brings it up (blocking, bounded by
/// the driver's timeouts).
fn bring_up(spec: &NvmeSpec) -> Result<NvmeDisk, String> {
    let device = pci::open(spec.address).map_err(|error| format!("{error}"))?;
    let mut driver = Nvme::new(device, Config::new(spec.nsid));
    let start = now_ms();
    loop {
        match driver.poll_bring_up(now_ms()) {
            Status::Ready => break,
            Status::Failed(error) => return Err(format!("bring-up failed: {error}")),
            _ if now_ms() - start > BRING_UP_LIMIT_MS => {
                return Err("bring-up did not finish in 120 s".into())
            }
            _ => pv::sleep_ns(1_000_000),
        }
    }
    match driver.device().interrupt_mode() {
        Some(mode) => log::info!("rumpdisk: NVMe controller interrupts by {mode:?}"),
        // The platform wakes the main loop every millisecond for it.
        None => log::warn!("rumpdisk: NVMe controller has no interrupt; polling it"),
    }
    if let Some(namespace) = driver.identify_namespace() {
        log::info!("rumpdisk: NVMe namespace {}: {namespace:?}", spec.nsid);
    }
    Ok(NvmeDisk {
        name: spec.name.clone(),
        driver,
        last_tick_ms: now_ms(),
        reported_interrupts: 0,
        last_report_ms: 0,
    })
}

/// Brings up every NVMe disk the command line names and registers it with
/// `backend`; refusals and failures are logged, and the domain carries on
/// with the disks that work. Returns the names of the disks added.
pub fn add_nvme_disks(backend: &mut Blkback<Platform, Disk>, command_line: &str) -> Vec<String> {
    let mut added = Vec::new();
    let (ram_disks, _) = disks::parse_command_line(command_line);
    let (specs, refused) = disks::parse_nvme_command_line(command_line, &ram_disks);
    for (word, reason) in &refused {
        log::error!("rumpdisk: ignoring disk={word}: {reason}");
    }
    for spec in specs {
        match bring_up(&spec) {
            Ok(disk) => {
                let info = disk.driver.info();
                match backend.add_device(&spec.name, Disk::Nvme(Box::new(disk))) {
                    Ok(()) => {
                        log::info!(
                            "rumpdisk: NVMe disk {} ready, {} sectors ({} MiB)",
                            spec.name,
                            info.sectors,
                            info.sectors.saturating_mul(disks::SECTOR_SIZE) >> 20
                        );
                        added.push(spec.name.clone());
                    }
                    Err(error) => log::error!("rumpdisk: cannot add {}: {error:?}", spec.name),
                }
            }
            Err(error) => log::error!(
                "rumpdisk: NVMe disk {} ({}/{}) not served: {error}",
                spec.name,
                spec.address,
                spec.nsid
            ),
        }
    }
    added
}

/// Longest wait for the controllers' normal shutdown, beyond the driver's
/// own timeout (a guard against a controller that never finishes).
const SHUTDOWN_LIMIT_MS: u64 = 30_000;
/// Most completions taken between two shutdown steps.
const SHUTDOWN_COMPLETIONS_PER_PASS: usize = 1_024;

/// Shuts the NVMe controllers of the disks `names` down normally (CC.SHN)
/// before the domain stops, so that their volatile write caches reach the
/// medium. Requests still in flight complete first; their answers are
/// dropped, as their guests' rings go with the domain.
pub fn shut_down_nvme_disks(backend: &mut Blkback<Platform, Disk>, names: &[String]) {
    for name in names {
        let Some(Disk::Nvme(disk)) = backend.device_mut(name) else {
            continue;
        };
        let start = now_ms();
        loop {
            match disk.driver.shutdown(now_ms()) {
                Status::ShutDown => {
                    log::info!("rumpdisk: {name}: NVMe controller shut down");
                    break;
                }
                Status::Failed(error) => {
                    log::warn!("rumpdisk: {name}: NVMe shutdown failed: {error}");
                    break;
                }
                _ if now_ms().saturating_sub(start) > SHUTDOWN_LIMIT_MS => {
                    log::warn!("rumpdisk: {name}: NVMe shutdown unfinished after 30 s");
                    break;
                }
                _ => {
                    // Bounded per pass: a controller that keeps posting
                    // completions cannot hold the loop past its deadline.
                    for _ in 0..SHUTDOWN_COMPLETIONS_PER_PASS {
                        if disk.driver.poll_completion().is_none() {
                            break;
                        }
                    }
                    pv::sleep_ns(1_000_000);
                }
            }
        }
    }
}

/// Serves every NetBSD disk the command line names (`disk=NAME:netbsd:UNIT`)
/// from the NetBSD drivers linked into the image, booting the rump kernel
/// (whose autoconfiguration attaches them to the PCI functions passed
/// through). Refusals and failures are logged; the domain carries on with
/// the disks that work. Without NetBSD's drivers in the image, each such
/// word is refused with that reason.
pub fn add_netbsd_disks(backend: &mut Blkback<Platform, Disk>, command_line: &str) {
    let (ram_disks, _) = disks::parse_command_line(command_line);
    let (nvme_disks, _) = disks::parse_nvme_command_line(command_line, &ram_disks);
    let taken: Vec<&str> = ram_disks
        .iter()
        .map(|disk| disk.name.as_str())
        .chain(nvme_disks.iter().map(|disk| disk.name.as_str()))
        .collect();
    let (specs, refused) = disks::parse_netbsd_command_line(command_line, &taken);
    for (word, reason) in &refused {
        log::error!("rumpdisk: ignoring disk={word}: {reason}");
    }
    for spec in specs {
        #[cfg(feature = "netbsd")]
        match netbsd::NetbsdDisk::open(&spec.unit) {
            Ok(disk) => {
                let info = disk.info();
                match backend.add_device(&spec.name, Disk::Netbsd(disk)) {
                    Ok(()) => log::info!(
                        "rumpdisk: NetBSD {} ready, {} sectors ({} MiB), served as {}",
                        spec.unit,
                        info.sectors,
                        info.sectors.saturating_mul(disks::SECTOR_SIZE) >> 20,
                        spec.name
                    ),
                    Err(error) => log::error!("rumpdisk: cannot add {}: {error:?}", spec.name),
                }
            }
            Err(error) => log::error!(
                "rumpdisk: NetBSD disk {} ({}) not served: {error}{}",
                spec.name,
                spec.unit,
                if error == rumpuser_xen::pv::netbsd::Errno::ENOENT {
                    ": no such unit; is its device in pci=[...], and of a kind the image's \
                     NetBSD drivers know?"
                } else {
                    ""
                }
            ),
        }
        #[cfg(not(feature = "netbsd"))]
        {
            let _ = &backend;
            log::error!(
                "rumpdisk: NetBSD disk {} ({}) not served: this image holds no NetBSD drivers \
                 (built without RUMP_LIBDIR; see docs/rumpuser.md)",
                spec.name,
                spec.unit
            );
        }
    }
}

/// Disks of NetBSD's drivers, through the rump kernel's raw disk devices.
#[cfg(feature = "netbsd")]
mod netbsd {
    use alloc::collections::VecDeque;
    use alloc::rc::Rc;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    use blkback::{DeviceInfo, IoCompletion, IoError, IoRequest, IoTag, SubmitError};
    use rumpuser_xen::pv::netbsd::{Errno, RawDisk};
    use rumpuser_xen::pv::{self, sched};

    use crate::disks::SECTOR_SIZE;

    /// Requests handed to the driver at once: one per worker thread, each
    /// with its own descriptor and DMA buffer.
    const WORKERS: usize = 4;
    /// Requests accepted before the engine is told the queue is full.
    const QUEUE_DEPTH: usize = 32;
    /// A worker's stack: a system call goes through the rump kernel's
    /// file system, disk and driver layers on it.
    const WORKER_STACK_BYTES: usize = 64 * 1024;

    /// What the main loop and the workers share (one vCPU, cooperative
    /// threads: a borrow is never held across a switch).
    #[derive(Default)]
    struct Queues {
        waiting: VecDeque<(IoTag, IoRequest)>,
        in_flight: usize,
        done: VecDeque<IoCompletion>,
        /// Whether a cache flush was found to be a request the driver
        /// does not have (said once in the log).
        no_cache_sync_logged: bool,
    }

    /// A NetBSD driver's disk. Worker threads carry the requests out
    /// through the rump kernel, each waiting there while the driver works,
    /// and wake the main loop when one is done; the main loop never waits
    /// for the disk.
    pub struct NetbsdDisk {
        info: DeviceInfo,
        queues: Rc<RefCell<Queues>>,
    }

    impl NetbsdDisk {
        pub fn open(unit: &str) -> Result<Self, Errno> {
            let first = RawDisk::open(unit)?;
            let info = DeviceInfo {
                sectors: first.bytes() / SECTOR_SIZE,
                physical_sector_size: first.sector_size(),
                read_only: false,
                flush: true,
                discard: None,
                removable: false,
                queue_depth: QUEUE_DEPTH,
            };
            let mut disks = Vec::from([first]);
            while disks.len() < WORKERS {
                match RawDisk::open(unit) {
                    Ok(disk) => disks.push(disk),
                    Err(error) => {
                        log::warn!(
                            "rumpdisk: {unit}: opening it again failed ({error}); {} worker(s)",
                            disks.len()
                        );
                        break;
                    }
                }
            }
            let queues = Rc::new(RefCell::new(Queues::default()));
            let unit: Rc<str> = unit.into();
            for disk in disks {
                let queues = Rc::clone(&queues);
                let unit = Rc::clone(&unit);
                sched::spawn("netbsd-disk", WORKER_STACK_BYTES, move || {
                    work(&unit, disk, &queues)
                });
            }
            Ok(Self { info, queues })
        }

        pub fn info(&self) -> DeviceInfo {
            self.info
        }

        pub fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
            if let discard @ IoRequest::Discard { .. } = request {
                return Err(SubmitError::Refused(discard));
            }
            {
                let mut queues = self.queues.borrow_mut();
                if queues.waiting.len() + queues.in_flight >= QUEUE_DEPTH {
                    return Err(SubmitError::QueueFull(request));
                }
                queues.waiting.push_back((tag, request));
            }
            // An idle worker looks at the queue again.
            sched::wake_all();
            Ok(())
        }

        pub fn poll_completion(&mut self) -> Option<IoCompletion> {
            self.queues.borrow_mut().done.pop_front()
        }
    }

    /// A worker: takes requests off the queue and carries them out, for
    /// the domain's life.
    fn work(unit: &str, mut disk: RawDisk, queues: &RefCell<Queues>) {
        loop {
            sched::wait_until(None, || !queues.borrow().waiting.is_empty());
            let taken = {
                let mut queues = queues.borrow_mut();
                let taken = queues.waiting.pop_front();
                queues.in_flight += usize::from(taken.is_some());
                taken
            };
            let Some((tag, request)) = taken else {
                continue;
            };
            let completion = perform(unit, &mut disk, tag, request, queues);
            {
                let mut queues = queues.borrow_mut();
                queues.in_flight -= 1;
                queues.done.push_back(completion);
            }
            pv::notify_main_loop();
        }
    }

    fn failed(unit: &str, what: &str, sector: u64, error: Errno) -> Result<(), IoError> {
        log::warn!("rumpdisk: {unit}: {what} at sector {sector}: {error}");
        Err(IoError::Media)
    }

    fn perform(
        unit: &str,
        disk: &mut RawDisk,
        tag: IoTag,
        request: IoRequest,
        queues: &RefCell<Queues>,
    ) -> IoCompletion {
        // The engine checked the range against the size; the offset
        // cannot overflow for a sector inside the disk.
        let (result, buffer) = match request {
            IoRequest::Read { sector, mut buffer } => {
                let result = match disk.read(sector.saturating_mul(SECTOR_SIZE), &mut buffer) {
                    Ok(()) => Ok(()),
                    Err(error) => failed(unit, "read", sector, error),
                };
                (result, buffer)
            }
            IoRequest::Write { sector, buffer } => {
                let result = match disk.write(sector.saturating_mul(SECTOR_SIZE), &buffer) {
                    Ok(()) => Ok(()),
                    Err(error) => failed(unit, "write", sector, error),
                };
                (result, buffer)
            }
            IoRequest::Flush => {
                let result = match disk.sync_cache() {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        let logged =
                            core::mem::replace(&mut queues.borrow_mut().no_cache_sync_logged, true);
                        if !logged {
                            log::info!(
                                "rumpdisk: {unit}: the driver has no cache flush; its writes \
                                 complete when the device has them"
                            );
                        }
                        Ok(())
                    }
                    Err(error) => failed(unit, "cache flush", 0, error),
                };
                (result, Vec::new())
            }
            IoRequest::Discard { .. } => (Err(IoError::NotSupported), Vec::new()),
        };
        IoCompletion {
            tag,
            result,
            buffer,
        }
    }
}
