//! pcifront: the frontend of `device/pci/0`, the xenbus device through
//! which dom0's pciback lends this domain the functions named in its xl
//! config's `pci=[...]` (`xen/io/pciif.h`).
//!
//! Handshake: we grant pciback one page holding `struct
//! xen_pci_sharedinfo`, offer an event channel, write `pci-op-ref`,
//! `event-channel` and `magic` and move to Initialised; pciback maps the
//! page and moves to Connected, after which its `num_devs`, `dev-N` (host
//! address) and `vdev-N` (the address we name the device by) list the
//! functions. Each request is one `xen_pci_op` in the page: we set
//! `XEN_PCIF_active` and notify, pciback answers in place, clears the bit
//! and notifies back. One request at a time.
//!
//! pciback runs in dom0 and is trusted with the device, but what it writes
//! into xenstore and the page is still parsed and bounded.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::fmt;
use core::sync::atomic::{fence, AtomicU32, Ordering};

use pcidev::Bdf;
use xenbus::platform::{TxId, Xenstore};

use super::grant_access::{grant_access, GrantAccessError};
use crate::layout::PAGE_SIZE;
use crate::pci::{self, PciOp, PciOpError};
use crate::pv::{events, mm, time, xenstore::XenStore, Global};

/// Our end of the device in xenstore.
const FRONTEND: &str = "device/pci/0";
/// How long pciback may take to appear, to connect, or to answer.
const CONNECT_TIMEOUT_NS: u64 = 30_000_000_000;
const OP_TIMEOUT_NS: u64 = 10_000_000_000;
/// Most functions we accept from `num_devs`.
const MAX_DEVICES: u32 = 32;

/// Why pcifront could not connect or a request could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontError {
    /// the domain has no device/pci/0 (no pci=[...] in its config)
    NoPciDevice,
    /// a xenstore node of the handshake could not be read or written
    Xenstore(String),
    /// the backend-id node is not a domid
    BadBackendId,
    /// our page could not be granted to pciback
    Grant(GrantAccessError),
    /// no event channel could be allocated for pciback
    EventChannel(i64),
    /// pciback did not reach Connected in time
    ConnectTimeout,
    /// pciback closed the device instead of connecting
    BackendClosed,
    /// num_devs or a dev-N/vdev-N node is malformed
    BadDeviceList(String),
    /// pciback did not answer a request in time; pcifront is unusable
    OpTimeout,
    /// an earlier failure left pcifront unusable
    Broken,
}

impl fmt::Display for FrontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPciDevice => {
                f.write_str("the domain has no device/pci/0 (no pci=[...] in its config)")
            }
            Self::Xenstore(path) => write!(f, "xenstore node {path} could not be read or written"),
            Self::BadBackendId => f.write_str("the backend-id node is not a domid"),
            Self::Grant(error) => write!(f, "our page could not be granted to pciback: {error:?}"),
            Self::EventChannel(code) => {
                write!(
                    f,
                    "no event channel could be allocated for pciback ({code})"
                )
            }
            Self::ConnectTimeout => f.write_str("pciback did not reach Connected in time"),
            Self::BackendClosed => f.write_str("pciback closed the device instead of connecting"),
            Self::BadDeviceList(what) => write!(f, "the device list is malformed: {what}"),
            Self::OpTimeout => {
                f.write_str("pciback did not answer a request in time; pcifront is unusable")
            }
            Self::Broken => f.write_str("an earlier failure left pcifront unusable"),
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// pcifront itself failed.
    Front(FrontError),
    /// pciback refused the request.
    Refused(PciOpError),
}

/// A function pciback lends us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignedDevice {
    /// Its address on the host (`dev-N`, what the xl config names).
    pub host: Bdf,
    /// The address requests name it by (`vdev-N`).
    pub virtual_address: Bdf,
}

/// pciback's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `op.value`.
    pub value: u32,
    /// The pirqs of the MSI-X entries asked for (`enable_msix` only).
    pub msix_pirqs: Vec<u16>,
}

/// The connected frontend.
pub struct Front {
    /// Virtual address of the shared page.
    page: u64,
    port: u32,
    devices: Vec<AssignedDevice>,
    broken: bool,
}

enum State {
    Untried,
    Connected(Front),
    Failed(FrontError),
}

static FRONT: Global<State> = Global::new(State::Untried);

fn word(page: u64, offset: usize) -> &'static AtomicU32 {
    assert!(offset.is_multiple_of(4) && offset + 4 <= PAGE_SIZE as usize);
    // SAFETY: inside the shared page (checked), aligned; the page is never
    // freed, and pciback writes it concurrently, hence the atomic.
    unsafe { AtomicU32::from_ptr((page as usize + offset) as *mut u32) }
}

fn read(path: &str) -> Result<String, FrontError> {
    XenStore
        .read(TxId::NONE, path)
        .map_err(|_| FrontError::Xenstore(path.into()))
}

fn write(path: &str, value: &str) -> Result<(), FrontError> {
    XenStore
        .write(TxId::NONE, path, value)
        .map_err(|_| FrontError::Xenstore(path.into()))
}

fn connect() -> Result<Front, FrontError> {
    // libxl writes the device before the domain runs; allow for a slow dom0 anyway.
    let start = time::monotonic_ns();
    let backend = loop {
        match XenStore.read(TxId::NONE, &format!("{FRONTEND}/backend")) {
            Ok(path) if path.starts_with('/') && path.len() < 256 => break path,
            Ok(_) => return Err(FrontError::Xenstore(format!("{FRONTEND}/backend"))),
            Err(_) if time::monotonic_ns() - start < 2_000_000_000 => {
                crate::pv::sleep_ns(50_000_000)
            }
            Err(_) => return Err(FrontError::NoPciDevice),
        }
    };
    let backend_id: u16 = read(&format!("{FRONTEND}/backend-id"))?
        .parse()
        .map_err(|_| FrontError::BadBackendId)?;

    let layout = Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize)
        .map_err(|_| FrontError::Broken)?;
    // SAFETY: a non-zero-sized layout. The page is never freed: pciback
    // keeps it mapped for as long as the domain lives.
    let page = unsafe { alloc::alloc::alloc_zeroed(layout) } as u64;
    if page == 0 {
        return Err(FrontError::Broken);
    }
    let gref = grant_access(backend_id, mm::virt_to_mfn(page), false).map_err(FrontError::Grant)?;
    let port = events::alloc_unbound(backend_id).map_err(FrontError::EventChannel)?;
    // Answers are awaited by polling the page; the port only wakes us, so
    // it is never masked on delivery.
    events::keep_unmasked(port);

    write(&format!("{FRONTEND}/pci-op-ref"), &format!("{gref}"))?;
    write(&format!("{FRONTEND}/event-channel"), &format!("{port}"))?;
    write(&format!("{FRONTEND}/magic"), "7")?;
    write(&format!("{FRONTEND}/state"), "3")?;
    log::info!("pcifront: offered gref {gref}, port {port} to {backend} (domain {backend_id})");

    let start = time::monotonic_ns();
    loop {
        match XenStore
            .read(TxId::NONE, &format!("{backend}/state"))
            .as_deref()
        {
            Ok("4") => break,
            Ok("5" | "6") => return Err(FrontError::BackendClosed),
            _ if time::monotonic_ns() - start > CONNECT_TIMEOUT_NS => {
                return Err(FrontError::ConnectTimeout)
            }
            _ => crate::pv::sleep_ns(20_000_000),
        }
    }

    let count: u32 = read(&format!("{backend}/num_devs"))?
        .parse()
        .map_err(|_| FrontError::BadDeviceList("num_devs".into()))?;
    if count > MAX_DEVICES {
        return Err(FrontError::BadDeviceList(format!("num_devs {count}")));
    }
    let mut devices = Vec::new();
    for index in 0..count {
        let host = read(&format!("{backend}/dev-{index}"))?;
        let virtual_address = read(&format!("{backend}/vdev-{index}"))?;
        match (
            pci::parse_xenstore_address(&host),
            pci::parse_xenstore_address(&virtual_address),
        ) {
            (Some(host), Some(virtual_address)) => devices.push(AssignedDevice {
                host,
                virtual_address,
            }),
            _ => {
                return Err(FrontError::BadDeviceList(format!(
                    "dev-{index} {host:?} / vdev-{index} {virtual_address:?}"
                )))
            }
        }
    }
    write(&format!("{FRONTEND}/state"), "4")?;
    Ok(Front {
        page,
        port,
        devices,
        broken: false,
    })
}

/// Runs `action` on the connected frontend, connecting on first use.
pub fn with_front<R>(action: impl FnOnce(&mut Front) -> R) -> Result<R, FrontError> {
    let mut state = FRONT.borrow_mut();
    if let State::Untried = *state {
        *state = match connect() {
            Ok(front) => {
                for device in &front.devices {
                    log::info!(
                        "pcifront: assigned {} (requests name it {})",
                        device.host,
                        device.virtual_address
                    );
                }
                State::Connected(front)
            }
            Err(error) => {
                log::error!("pcifront: {error}");
                State::Failed(error)
            }
        };
    }
    match &mut *state {
        State::Connected(front) => Ok(action(front)),
        State::Failed(error) => Err(error.clone()),
        State::Untried => Err(FrontError::Broken),
    }
}

impl Front {
    /// The functions pciback lends us.
    pub fn devices(&self) -> &[AssignedDevice] {
        &self.devices
    }

    /// Sends `op` to pciback and waits for its answer.
    pub fn perform(&mut self, op: &PciOp) -> Result<Reply, OpError> {
        if self.broken {
            return Err(OpError::Front(FrontError::Broken));
        }
        let active = xen_abi::XEN_PCIF_active;
        for (offset, value) in op.words() {
            word(self.page, offset).store(value, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
        word(self.page, pci::SHARED_FLAGS).fetch_or(active, Ordering::SeqCst);
        events::notify_port(self.port);
        let deadline = time::monotonic_ns() + OP_TIMEOUT_NS;
        while word(self.page, pci::SHARED_FLAGS).load(Ordering::SeqCst) & active != 0 {
            let now = time::monotonic_ns();
            if now >= deadline {
                // pciback may still answer later into the page: never
                // reuse it.
                self.broken = true;
                log::error!("pcifront: pciback did not answer command {}", op.cmd);
                return Err(OpError::Front(FrontError::OpTimeout));
            }
            // The answer's event may be collected between our check and
            // the block; a short timer bounds what such a race costs.
            time::set_timer(now + 1_000_000);
            events::wait_for_any_event();
        }
        fence(Ordering::SeqCst);
        let err = word(self.page, pci::REPLY_ERR).load(Ordering::Relaxed) as i32;
        PciOpError::from_err(err).map_err(OpError::Refused)?;
        let value = word(self.page, pci::REPLY_VALUE).load(Ordering::Relaxed);
        let msix_pirqs = (0..op.msix_entries.len())
            .map(|index| {
                pci::msix_entry_pirq(
                    word(self.page, pci::msix_entry_offset(index)).load(Ordering::Relaxed),
                )
            })
            .collect();
        Ok(Reply { value, msix_pirqs })
    }
}
