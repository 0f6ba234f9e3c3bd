//! The x86_64 PV platform: everything that runs only as a Xen domain.

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Ref, RefCell, RefMut};
use core::fmt::Write;

use xenbus::platform::{
    CopyOp, DomId, EventChannels, EvtchnError, EvtchnPort, GrantCopy, GrantError, GrantMap,
    GrantRef, Permission, TxId, Xenstore, XsError,
};

mod abi;
pub mod boot;
pub mod console;
pub mod events;
pub mod grant;
mod hypercall;
pub mod memory;
pub mod mm;
#[cfg(feature = "netbsd")]
pub mod netbsd;
pub mod pci;
pub mod rump_pci;
pub mod rumpuser_host;
pub mod sched;
pub mod shutdown;
pub mod time;
mod traps;
pub mod xenstore;

pub use grant::{GrantMapping, XenGrantCopy, XenGrantMap};
pub use xenstore::{WatchEvent, XenStore};

/// State owned by the platform and reached from anywhere in it.
///
/// The domain runs on one vCPU, the event upcall runs no Rust code, and the
/// platform's threads ([`sched`]) switch only at explicit calls, never while
/// a `Global` is borrowed; so accesses never overlap. The `RefCell` turns an
/// accidental re-entrant use (say, logging from inside the allocator) into
/// a clean panic instead of aliasing.
pub struct Global<T>(RefCell<T>);

// SAFETY: see the type's documentation: a single thread of execution.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    /// A cell holding `value`.
    pub const fn new(value: T) -> Self {
        Self(RefCell::new(value))
    }

    /// Shared access; panics if mutably borrowed.
    pub fn borrow(&self) -> Ref<'_, T> {
        self.0.borrow()
    }

    /// Exclusive access; panics if borrowed.
    pub fn borrow_mut(&self) -> RefMut<'_, T> {
        self.0.borrow_mut()
    }

    /// Shared access, or `Err` if mutably borrowed.
    pub fn try_borrow(&self) -> Result<Ref<'_, T>, core::cell::BorrowError> {
        self.0.try_borrow()
    }

    /// Raw pointer to the value, for the crash path only.
    pub fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }
}

/// The command line, copied out of the start info page at boot.
pub struct CommandLine(Global<[u8; 1024]>);

impl CommandLine {
    /// The command line as text (see [`crate::cmdline::from_start_info`]).
    pub fn get(&self) -> &'static str {
        // SAFETY: written once in `boot` before anything reads it and never
        // again, so a shared `'static` view is sound.
        let raw: &'static [u8; 1024] = unsafe { &*self.0.as_ptr() };
        crate::cmdline::from_start_info(raw)
    }
}

/// The guest command line (`extra=`).
pub static COMMAND_LINE: CommandLine = CommandLine(Global::new([0; 1024]));

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
}

/// Bounds of the image's code, for backtraces.
fn text_bounds() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__text_end) as u64,
    )
}

/// Gives the CPU to other domains for a moment (`SCHEDOP_yield`).
pub fn sched_yield() {
    // SAFETY: SCHEDOP_yield takes no argument.
    unsafe {
        hypercall::hypercall(
            xen_abi::__HYPERVISOR_sched_op,
            u64::from(xen_abi::SCHEDOP_yield),
            0,
            0,
            0,
            0,
        );
    }
}

/// How the toolstack asked the domain to stop (`control/shutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// `poweroff` or `halt`.
    Poweroff,
    /// `reboot`.
    Reboot,
}

/// Something the main loop must handle.
#[derive(Debug)]
pub enum Wakeup {
    /// An event arrived on a port the domain bound.
    Port(EvtchnPort),
    /// A xenstore watch fired.
    Watch(WatchEvent),
    /// The deadline given to [`wait`] passed.
    Timer,
    /// The toolstack asked the domain to shut down.
    Shutdown(ShutdownRequest),
}

const SHUTDOWN_TOKEN: &str = "rumpuser-xen:control/shutdown";

/// Starts watching `control/shutdown`; called once by the boot code.
fn watch_shutdown() {
    if let Err(error) = XenStore.watch("control/shutdown", SHUTDOWN_TOKEN) {
        log::warn!("rumpuser-xen: cannot watch control/shutdown: {error:?}");
    }
}

fn shutdown_request() -> Option<ShutdownRequest> {
    let value = XenStore.read(TxId::NONE, "control/shutdown").ok()?;
    let request = match value.as_str() {
        "" => return None,
        "poweroff" | "halt" => ShutdownRequest::Poweroff,
        "reboot" => ShutdownRequest::Reboot,
        other => {
            log::warn!("rumpuser-xen: unsupported shutdown request {other:?} ignored");
            let _ = XenStore.write(TxId::NONE, "control/shutdown", "");
            return None;
        }
    };
    // Acknowledge, as the toolstack expects from a PV guest.
    let _ = XenStore.write(TxId::NONE, "control/shutdown", "");
    Some(request)
}

/// Waits until something happens or `deadline_ns` (Xen system time) passes,
/// and appends what happened to `wakeups`. Handlers run in the caller's
/// ordinary context.
///
/// While a passed-through PCI device is open, it may also return with
/// nothing appended: a device without interrupts must be polled every
/// millisecond, and every device's driver is given a chance to check its
/// health each second (`pci::poll_interval_ns`). The caller polls its
/// engines after every return anyway.
pub fn wait(deadline_ns: Option<u64>, wakeups: &mut Vec<Wakeup>) {
    wait_for(deadline_ns, wakeups);
    *MAIN_LOOP_NOTIFIED.borrow_mut() = false;
}

/// Whether another thread asked the main loop to look at its work.
static MAIN_LOOP_NOTIFIED: Global<bool> = Global::new(false);

/// Makes the main loop's [`wait`] return (with nothing appended, so it
/// polls its engines): how a thread of the domain's own, such as the one
/// reading a NetBSD interface's frames, hands work to the loop.
pub fn notify_main_loop() {
    *MAIN_LOOP_NOTIFIED.borrow_mut() = true;
    sched::wake_all();
}

fn wait_for(deadline_ns: Option<u64>, wakeups: &mut Vec<Wakeup>) {
    // Other threads (a rump kernel's: its interrupt thread, its soft
    // interrupts) get the CPU at least once per call, also when the loop
    // is so busy that it never has to wait.
    sched::yield_now();
    let store_port = xenstore::store_port();
    let timer_port = time::timer_port();
    let console_port = console::port();
    let pci_deadline = pci::poll_interval_ns().map(|interval| time::monotonic_ns() + interval);
    loop {
        events::take_pending(|port| {
            // The store and timer ports only wake us; their work is below.
            if port != store_port && port != timer_port && port != console_port {
                log::trace!("event on port {port}");
                // A device interrupt is recorded for its driver's
                // `take_fired` (a rump kernel's interrupt thread, woken
                // when the port was collected, finds it there too); the
                // wakeup still makes the loop poll.
                pci::note_event(port);
                wakeups.push(Wakeup::Port(port));
            }
        });
        while let Some(event) = xenstore::poll_watch_events() {
            if event.token == SHUTDOWN_TOKEN {
                if let Some(request) = shutdown_request() {
                    wakeups.push(Wakeup::Shutdown(request));
                }
            } else {
                wakeups.push(Wakeup::Watch(event));
            }
        }
        if let Some(deadline) = deadline_ns {
            if time::monotonic_ns() >= deadline {
                wakeups.push(Wakeup::Timer);
            } else if wakeups.is_empty() {
                time::set_timer(deadline);
            }
        }
        if !wakeups.is_empty() || *MAIN_LOOP_NOTIFIED.borrow() {
            return;
        }
        if pci_deadline.is_some_and(|pci_deadline| time::monotonic_ns() >= pci_deadline) {
            return;
        }
        // Other threads (a rump kernel's) run while we wait; the vCPU
        // blocks once all of them wait too.
        let until = match (deadline_ns, pci_deadline) {
            (Some(deadline), Some(pci_deadline)) => Some(deadline.min(pci_deadline)),
            (deadline, pci_deadline) => deadline.or(pci_deadline),
        };
        sched::wait_until(until, || {
            *MAIN_LOOP_NOTIFIED.borrow() || events::any_pending()
        });
    }
}

/// Sleeps for `nanoseconds`, handling nothing else.
pub fn sleep_ns(nanoseconds: u64) {
    let deadline = time::monotonic_ns().saturating_add(nanoseconds);
    while time::monotonic_ns() < deadline {
        time::set_timer(deadline);
        events::wait_for_any_event();
    }
}

/// This domain's id, from xenstore's `domid` node.
pub fn own_domid() -> Option<DomId> {
    XenStore.read(TxId::NONE, "domid").ok()?.parse().ok()
}

/// Event channels on real Xen.
#[derive(Default)]
pub struct XenEventChannels;

impl EventChannels for XenEventChannels {
    fn bind_interdomain(
        &mut self,
        remote: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, EvtchnError> {
        events::bind_interdomain(remote, remote_port).map_err(|code| match code {
            // -ESRCH: no such domain; -EINVAL: no such port.
            -3 | -22 => EvtchnError::NoSuchPort,
            // -EINVAL is also returned for a port not offered to us; -EPERM too.
            -1 => EvtchnError::NotBindable,
            // -ENOSPC
            -28 => EvtchnError::NoFreePort,
            _ => EvtchnError::Other,
        })
    }

    fn notify(&mut self, port: EvtchnPort) {
        events::notify_port(port);
    }

    fn unmask(&mut self, port: EvtchnPort) {
        events::unmask(port);
    }

    fn close(&mut self, port: EvtchnPort) {
        events::close(port);
    }
}

/// Every platform service an engine needs, in one value.
#[derive(Default)]
pub struct Platform {
    /// Grant copy.
    pub grant_copy: XenGrantCopy,
    /// Grant map.
    pub grant_map: XenGrantMap,
    /// Event channels.
    pub event_channels: XenEventChannels,
    /// Xenstore.
    pub xenstore: XenStore,
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut out = console::CrashWriter;
    let _ = write!(out, "\r\n*** panic: {info}\r\n");
    let (rbp, rsp): (u64, u64);
    // SAFETY: reads two registers.
    unsafe {
        core::arch::asm!("mov {}, rbp", "mov {}, rsp", out(reg) rbp, out(reg) rsp, options(nomem, nostack));
    }
    traps::backtrace(&mut out, rbp, rsp);
    shutdown::crash_now()
}

/// Formats a short memory summary for the boot log.
pub fn memory_summary() -> String {
    alloc::format!("{} KiB heap free", mm::heap_free_bytes() / 1024)
}

impl GrantCopy for Platform {
    fn copy(&mut self, ops: &mut [CopyOp<'_>], status: &mut [Result<(), GrantError>]) {
        self.grant_copy.copy(ops, status)
    }
}

impl GrantMap for Platform {
    type Mapping = GrantMapping;

    fn map(
        &mut self,
        domid: DomId,
        grefs: &[GrantRef],
        writable: bool,
    ) -> Result<GrantMapping, GrantError> {
        self.grant_map.map(domid, grefs, writable)
    }

    fn unmap(&mut self, mapping: GrantMapping) {
        self.grant_map.unmap(mapping)
    }
}

impl EventChannels for Platform {
    fn bind_interdomain(
        &mut self,
        remote: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, EvtchnError> {
        self.event_channels.bind_interdomain(remote, remote_port)
    }

    fn notify(&mut self, port: EvtchnPort) {
        log::trace!("notify port {port}");
        self.event_channels.notify(port)
    }

    fn unmask(&mut self, port: EvtchnPort) {
        log::trace!("unmask port {port}");
        self.event_channels.unmask(port)
    }

    fn close(&mut self, port: EvtchnPort) {
        self.event_channels.close(port)
    }
}

impl Xenstore for Platform {
    fn read(&mut self, tx: TxId, path: &str) -> Result<String, XsError> {
        self.xenstore.read(tx, path)
    }
    fn write(&mut self, tx: TxId, path: &str, value: &str) -> Result<(), XsError> {
        log::trace!("xenstore write {path} = {value:?}");
        self.xenstore.write(tx, path, value)
    }
    fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.xenstore.mkdir(tx, path)
    }
    fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.xenstore.rm(tx, path)
    }
    fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        self.xenstore.directory(tx, path)
    }
    fn get_perms(&mut self, tx: TxId, path: &str) -> Result<Vec<Permission>, XsError> {
        self.xenstore.get_perms(tx, path)
    }
    fn set_perms(&mut self, tx: TxId, path: &str, perms: &[Permission]) -> Result<(), XsError> {
        self.xenstore.set_perms(tx, path, perms)
    }
    fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.xenstore.watch(path, token)
    }
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.xenstore.unwatch(path, token)
    }
    fn transaction_start(&mut self) -> Result<TxId, XsError> {
        self.xenstore.transaction_start()
    }
    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsError> {
        self.xenstore.transaction_end(tx, commit)
    }
}
