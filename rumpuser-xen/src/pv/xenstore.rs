//! The xenstore connection on the domain's store ring
//! (`xen/include/public/io/xs_wire.h`): `xenbus::ring`'s client over the
//! ring page, with the store event channel to notify and wait on.

use alloc::string::String;
use alloc::vec::Vec;

use xenbus::platform::{Permission, TxId, Xenstore, XsError};
use xenbus::ring::{BlockingXenstore, Notifier, XenstoreRing};
pub use xenbus::wire::WatchEvent;

use super::abi::start_info;
use super::memory::OwnPage;
use super::Global;

/// Signals xenstored and waits for it on the store event channel.
pub struct StoreNotifier {
    port: u32,
}

impl Notifier for StoreNotifier {
    fn notify(&mut self) {
        super::events::notify_port(self.port);
    }

    fn wait(&mut self) -> bool {
        // Any event wakes us; the ring client re-checks the ring, and the
        // ports that fired stay collected for the main loop.
        super::events::wait_for_any_event();
        true
    }
}

type Client = BlockingXenstore<OwnPage, StoreNotifier>;

static STORE: Global<Option<Client>> = Global::new(None);
static STORE_PORT: Global<u32> = Global::new(u32::MAX);

/// Takes over the store ring and unmasks its port.
pub fn init(start_info: &start_info) {
    // SAFETY: the store page is ours (the domain builder allocated it in
    // our memory) and nothing else in the domain uses it.
    let page = unsafe { OwnPage::new(super::mm::mfn_to_virt(start_info.store_mfn)) };
    let ring = XenstoreRing::new(page).expect("the xenstore ring page is inconsistent");
    let notifier = StoreNotifier {
        port: start_info.store_evtchn,
    };
    *STORE.borrow_mut() = Some(BlockingXenstore::new(ring, notifier));
    *STORE_PORT.borrow_mut() = start_info.store_evtchn;
    super::events::keep_unmasked(start_info.store_evtchn);
    super::events::unmask(start_info.store_evtchn);
}

/// The store ring's event channel.
pub fn store_port() -> u32 {
    *STORE_PORT.borrow()
}

fn with_client<T>(operation: impl FnOnce(&mut Client) -> Result<T, XsError>) -> Result<T, XsError> {
    let mut store = STORE.borrow_mut();
    let client = store.as_mut().ok_or(XsError::Eio)?;
    operation(client)
}

/// The oldest watch event that arrived, collecting new ones from the ring
/// without waiting.
pub fn poll_watch_events() -> Option<WatchEvent> {
    let mut store = STORE.borrow_mut();
    let client = store.as_mut()?;
    if let Some(event) = client.take_watch_event() {
        return Some(event);
    }
    if let Err(error) = client.poll_watch_events() {
        log::error!("xenstore: ring broken while polling watch events: {error:?}");
    }
    client.take_watch_event()
}

/// The xenstore connection as the [`Xenstore`] trait.
#[derive(Default)]
pub struct XenStore;

impl Xenstore for XenStore {
    fn read(&mut self, tx: TxId, path: &str) -> Result<String, XsError> {
        with_client(|client| client.read(tx, path))
    }
    fn write(&mut self, tx: TxId, path: &str, value: &str) -> Result<(), XsError> {
        with_client(|client| client.write(tx, path, value))
    }
    fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        with_client(|client| client.mkdir(tx, path))
    }
    fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        with_client(|client| client.rm(tx, path))
    }
    fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        with_client(|client| client.directory(tx, path))
    }
    fn get_perms(&mut self, tx: TxId, path: &str) -> Result<Vec<Permission>, XsError> {
        with_client(|client| client.get_perms(tx, path))
    }
    fn set_perms(&mut self, tx: TxId, path: &str, perms: &[Permission]) -> Result<(), XsError> {
        with_client(|client| client.set_perms(tx, path, perms))
    }
    fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        with_client(|client| client.watch(path, token))
    }
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        with_client(|client| client.unwatch(path, token))
    }
    fn transaction_start(&mut self) -> Result<TxId, XsError> {
        with_client(|client| client.transaction_start())
    }
    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsError> {
        with_client(|client| client.transaction_end(tx, commit))
    }
}
