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
                "rumpdisk: NetBSD disk {} ({}) not served: {error}",
                spec.name,
                spec.unit
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

    use blkback::{DeviceInfo, IoCompletion, IoError, IoRequest, IoTag, SubmitError};
    use rumpuser_xen::pv::netbsd::{Errno, RawDisk};

    use crate::disks::SECTOR_SIZE;

    /// A NetBSD driver's disk. Requests are carried out as they are
    /// submitted: the calling thread waits in the rump kernel while the
    /// driver works (other threads, the rump kernel's among them, run).
    pub struct NetbsdDisk {
        unit: alloc::string::String,
        disk: RawDisk,
        done: VecDeque<IoCompletion>,
        /// Whether a cache flush was found to be a request the driver
        /// does not have (said once in the log).
        no_cache_sync_logged: bool,
    }

    impl NetbsdDisk {
        pub fn open(unit: &str) -> Result<Self, Errno> {
            Ok(Self {
                unit: unit.into(),
                disk: RawDisk::open(unit)?,
                done: VecDeque::new(),
                no_cache_sync_logged: false,
            })
        }

        pub fn info(&self) -> DeviceInfo {
            DeviceInfo {
                sectors: self.disk.bytes() / SECTOR_SIZE,
                physical_sector_size: self.disk.sector_size(),
                read_only: false,
                flush: true,
                discard: None,
                removable: false,
                queue_depth: 32,
            }
        }

        fn failed(&self, what: &str, sector: u64, error: Errno) -> Result<(), IoError> {
            log::warn!(
                "rumpdisk: {}: {what} at sector {sector}: {error}",
                self.unit
            );
            Err(IoError::Media)
        }

        pub fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
            let (result, buffer) = match request {
                IoRequest::Read { sector, mut buffer } => {
                    let result = match self.disk.read(sector * SECTOR_SIZE, &mut buffer) {
                        Ok(()) => Ok(()),
                        Err(error) => self.failed("read", sector, error),
                    };
                    (result, buffer)
                }
                IoRequest::Write { sector, buffer } => {
                    let result = match self.disk.write(sector * SECTOR_SIZE, &buffer) {
                        Ok(()) => Ok(()),
                        Err(error) => self.failed("write", sector, error),
                    };
                    (result, buffer)
                }
                IoRequest::Flush => {
                    let result = match self.disk.sync_cache() {
                        Ok(true) => Ok(()),
                        Ok(false) => {
                            if !core::mem::replace(&mut self.no_cache_sync_logged, true) {
                                log::info!(
                                    "rumpdisk: {}: the driver has no cache flush; its writes \
                                     complete when the device has them",
                                    self.unit
                                );
                            }
                            Ok(())
                        }
                        Err(error) => self.failed("cache flush", 0, error),
                    };
                    (result, alloc::vec::Vec::new())
                }
                discard @ IoRequest::Discard { .. } => return Err(SubmitError::Refused(discard)),
            };
            self.done.push_back(IoCompletion {
                tag,
                result,
                buffer,
            });
            Ok(())
        }

        pub fn poll_completion(&mut self) -> Option<IoCompletion> {
            self.done.pop_front()
        }
    }
}
