//! Handshake tests against a small in-memory xenstore.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::platform::{Permission, TxId, Xenstore, XsError};

const HOME: &str = "/local/domain/4";
const BACKEND: &str = "/local/domain/4/backend/vbd/5/51728";
const FRONTEND: &str = "/local/domain/5/device/vbd/51728";

/// A xenstore with real transactions (snapshot, conflict on demand),
/// relative paths resolved against the driver domain's home, and a count of
/// requests so tests can check how much work a call did.
#[derive(Default)]
struct FakeStore {
    nodes: BTreeMap<String, String>,
    transaction: Option<(u32, BTreeMap<String, String>)>,
    next_tx: u32,
    /// Commits that will fail with EAGAIN before one succeeds.
    conflicts: u32,
    watches: Vec<(String, String)>,
    requests: usize,
    /// Reads of this absolute path fail with the error.
    failing_read: Option<(String, XsError)>,
}

impl FakeStore {
    fn absolute(path: &str) -> String {
        if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{HOME}/{path}")
        }
    }

    fn view(&mut self, tx: TxId) -> Result<&mut BTreeMap<String, String>, XsError> {
        match (&mut self.transaction, tx) {
            (_, TxId::NONE) => Ok(&mut self.nodes),
            (Some((id, nodes)), TxId(want)) if *id == want => Ok(nodes),
            _ => Err(XsError::Einval),
        }
    }

    fn set(&mut self, path: &str, value: &str) {
        self.write(TxId::NONE, path, value).unwrap();
    }

    fn get(&self, path: &str) -> Option<&str> {
        self.nodes.get(&Self::absolute(path)).map(String::as_str)
    }

    /// The nodes libxl writes when attaching a disk of domain 5 to the
    /// driver domain 4 (see the lab's xenstore reference).
    fn with_toolstack_nodes() -> Self {
        let mut store = Self::default();
        for (key, value) in [
            ("frontend", FRONTEND),
            ("frontend-id", "5"),
            ("online", "1"),
            ("state", "1"),
            ("params", "/srv/disk.img"),
            ("mode", "w"),
        ] {
            store.set(&format!("{BACKEND}/{key}"), value);
        }
        for (key, value) in [
            ("backend", BACKEND),
            ("backend-id", "4"),
            ("state", "1"),
            ("virtual-device", "51728"),
        ] {
            store.set(&format!("{FRONTEND}/{key}"), value);
        }
        store
    }
}

impl Xenstore for FakeStore {
    fn read(&mut self, tx: TxId, path: &str) -> Result<String, XsError> {
        self.requests += 1;
        let path = Self::absolute(path);
        if let Some((failing, error)) = &self.failing_read {
            if *failing == path {
                return Err(*error);
            }
        }
        self.view(tx)?.get(&path).cloned().ok_or(XsError::Enoent)
    }

    fn write(&mut self, tx: TxId, path: &str, value: &str) -> Result<(), XsError> {
        self.requests += 1;
        let path = Self::absolute(path);
        let nodes = self.view(tx)?;
        let mut parent = path.as_str();
        while let Some(end) = parent.rfind('/') {
            parent = &parent[..end];
            if parent.is_empty() {
                break;
            }
            nodes.entry(parent.to_string()).or_default();
        }
        nodes.insert(path, value.to_string());
        Ok(())
    }

    fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.requests += 1;
        let path = Self::absolute(path);
        self.view(tx)?.entry(path).or_default();
        Ok(())
    }

    fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.requests += 1;
        let path = Self::absolute(path);
        let below = format!("{path}/");
        self.view(tx)?
            .retain(|key, _| *key != path && !key.starts_with(&below));
        Ok(())
    }

    fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        self.requests += 1;
        let path = Self::absolute(path);
        let nodes = self.view(tx)?;
        if !nodes.contains_key(&path) {
            return Err(XsError::Enoent);
        }
        let below = format!("{path}/");
        Ok(nodes
            .keys()
            .filter_map(|key| key.strip_prefix(&below))
            .filter(|rest| !rest.contains('/'))
            .map(ToString::to_string)
            .collect())
    }

    fn get_perms(&mut self, _tx: TxId, _path: &str) -> Result<Vec<Permission>, XsError> {
        Err(XsError::Enosys)
    }

    fn set_perms(&mut self, _tx: TxId, _path: &str, _perms: &[Permission]) -> Result<(), XsError> {
        Err(XsError::Enosys)
    }

    fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.requests += 1;
        self.watches.push((path.to_string(), token.to_string()));
        Ok(())
    }

    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.requests += 1;
        let before = self.watches.len();
        self.watches
            .retain(|(p, t)| !(p.as_str() == path && t.as_str() == token));
        if self.watches.len() == before {
            Err(XsError::Enoent)
        } else {
            Ok(())
        }
    }

    fn transaction_start(&mut self) -> Result<TxId, XsError> {
        self.requests += 1;
        if self.transaction.is_some() {
            // The helper never nests transactions.
            return Err(XsError::Ebusy);
        }
        self.next_tx += 1;
        self.transaction = Some((self.next_tx, self.nodes.clone()));
        Ok(TxId(self.next_tx))
    }

    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsError> {
        self.requests += 1;
        let Some((id, nodes)) = self.transaction.take() else {
            return Err(XsError::Enoent);
        };
        if id != tx.0 {
            return Err(XsError::Enoent);
        }
        if !commit {
            return Ok(());
        }
        if self.conflicts > 0 {
            self.conflicts -= 1;
            return Err(XsError::Eagain);
        }
        self.nodes = nodes;
        Ok(())
    }
}

fn directory() -> BackendDirectory {
    BackendDirectory::new("vbd")
}

fn address() -> DeviceAddress {
    DeviceAddress {
        frontend_id: 5,
        devid: 51728,
    }
}

/// A probed and started device, waiting in InitWait.
fn started(store: &mut FakeStore) -> BackendDevice {
    let mut device = BackendDevice::new(&directory(), address());
    device.probe(store).unwrap();
    device
        .start(
            store,
            &[("feature-flush-cache", "1"), ("sectors", "32768")],
            "tok",
        )
        .unwrap();
    device
}

fn frontend_state(store: &mut FakeStore, device: &mut BackendDevice, state: &str) -> Action {
    store.set(&format!("{FRONTEND}/state"), state);
    device.on_watch(store, &format!("{FRONTEND}/state"))
}

fn backend_state(store: &FakeStore) -> Option<&str> {
    store.get(&format!("{BACKEND}/state"))
}

/// Brings a started device to Connected, as an engine would.
fn connect(store: &mut FakeStore, device: &mut BackendDevice) {
    store.set(&format!("{FRONTEND}/ring-ref"), "8");
    store.set(&format!("{FRONTEND}/event-channel"), "9");
    assert_eq!(frontend_state(store, device, "3"), Action::Connect);
    assert_eq!(
        device.read_frontend(store, "ring-ref", value::parse_grant_ref),
        Ok(8)
    );
    assert_eq!(
        device.read_frontend(store, "event-channel", value::parse_evtchn_port),
        Ok(9)
    );
    assert_eq!(device.connected(store), Action::None);
    assert_eq!(device.phase(), Phase::Connected);
    assert_eq!(backend_state(store), Some("4"));
}

#[test]
fn start_publishes_features_hotplug_and_initwait_and_watches() {
    let mut store = FakeStore::with_toolstack_nodes();
    let device = started(&mut store);
    assert_eq!(device.frontend_path(), FRONTEND);
    assert_eq!(device.backend_path(), "backend/vbd/5/51728");
    assert_eq!(
        store.get(&format!("{BACKEND}/feature-flush-cache")),
        Some("1")
    );
    assert_eq!(store.get(&format!("{BACKEND}/sectors")), Some("32768"));
    assert_eq!(
        store.get(&format!("{BACKEND}/hotplug-status")),
        Some("connected")
    );
    assert_eq!(backend_state(&store), Some("2"));
    assert_eq!(device.phase(), Phase::Idle(XenbusState::InitWait));
    assert_eq!(
        store.watches,
        vec![
            ("backend/vbd/5/51728".to_string(), "tok".to_string()),
            (format!("{FRONTEND}/state"), "tok".to_string()),
        ]
    );
}

#[test]
fn full_lifecycle_with_frontend_close_and_reconnect() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    // The initial watch firing: the frontend is still Initialising.
    assert_eq!(
        device.on_watch(&mut store, &format!("{FRONTEND}/state")),
        Action::None
    );
    connect(&mut store, &mut device);

    assert_eq!(
        frontend_state(&mut store, &mut device, "5"),
        Action::Disconnect
    );
    assert_eq!(
        backend_state(&store),
        Some("4"),
        "no state change before the engine is done"
    );
    assert_eq!(device.disconnected(&mut store), Action::None);
    assert_eq!(backend_state(&store), Some("5"));

    assert_eq!(frontend_state(&mut store, &mut device, "6"), Action::None);
    assert_eq!(backend_state(&store), Some("6"));

    // The guest reboots: the frontend starts over.
    assert_eq!(frontend_state(&mut store, &mut device, "1"), Action::None);
    assert_eq!(backend_state(&store), Some("2"));
    connect(&mut store, &mut device);
}

#[test]
fn frontend_may_skip_initialised() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    assert_eq!(
        frontend_state(&mut store, &mut device, "4"),
        Action::Connect
    );
}

#[test]
fn detach_while_connected_waits_for_the_frontend_then_removes() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    connect(&mut store, &mut device);

    // What libxl does for block-detach.
    store.set(&format!("{BACKEND}/online"), "0");
    store.set(&format!("{BACKEND}/state"), "5");
    let action = device.on_watch(&mut store, "backend/vbd/5/51728/online");
    assert_eq!(action, Action::Disconnect);
    assert_eq!(device.disconnected(&mut store), Action::None);
    assert_eq!(backend_state(&store), Some("5"));

    assert_eq!(frontend_state(&mut store, &mut device, "5"), Action::None);
    assert_eq!(frontend_state(&mut store, &mut device, "6"), Action::Remove);
    assert_eq!(backend_state(&store), Some("6"));
    assert_eq!(device.phase(), Phase::Removed);
    assert!(
        store.watches.is_empty(),
        "watches left: {:?}",
        store.watches
    );
}

#[test]
fn detach_of_an_unconnected_device_closes_at_once() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    store.set(&format!("{BACKEND}/online"), "0");
    let action = device.on_watch(&mut store, "backend/vbd/5/51728/online");
    assert_eq!(action, Action::Remove);
    assert_eq!(backend_state(&store), Some("6"));
    assert!(store.watches.is_empty());
}

#[test]
fn removed_backend_directory_is_not_recreated() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    connect(&mut store, &mut device);
    store.rm(TxId::NONE, BACKEND).unwrap();
    let action = device.on_watch(&mut store, "backend/vbd/5/51728");
    assert_eq!(action, Action::Disconnect);
    assert_eq!(device.disconnected(&mut store), Action::Remove);
    assert!(
        !store.nodes.keys().any(|key| key.starts_with(BACKEND)),
        "stray nodes: {:?}",
        store
            .nodes
            .keys()
            .filter(|k| k.starts_with(BACKEND))
            .collect::<Vec<_>>()
    );
}

#[test]
fn vanished_frontend_disconnects_and_closes() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    connect(&mut store, &mut device);
    store.rm(TxId::NONE, FRONTEND).unwrap();
    let action = device.on_watch(&mut store, &format!("{FRONTEND}/state"));
    assert_eq!(action, Action::Disconnect);
    assert_eq!(device.last_frontend(), FrontendView::Gone);
    assert_eq!(device.disconnected(&mut store), Action::None);
    assert_eq!(backend_state(&store), Some("6"));
}

#[test]
fn unreadable_frontend_state_counts_as_gone() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    connect(&mut store, &mut device);
    store.failing_read = Some((format!("{FRONTEND}/state"), XsError::Eacces));
    let action = device.on_watch(&mut store, &format!("{FRONTEND}/state"));
    assert_eq!(action, Action::Disconnect);
}

#[test]
fn transient_xenstore_error_changes_nothing() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    connect(&mut store, &mut device);
    store.failing_read = Some((format!("{FRONTEND}/state"), XsError::Enomem));
    let action = frontend_state(&mut store, &mut device, "5");
    assert_eq!(action, Action::None);
    assert_eq!(device.phase(), Phase::Connected);
    store.failing_read = None;
    assert_eq!(
        device.on_watch(&mut store, &format!("{FRONTEND}/state")),
        Action::Disconnect
    );
}

#[test]
fn garbage_frontend_states_are_ignored() {
    let garbage = [
        "",
        "9",
        "42",
        "-1",
        "4 ",
        " 4",
        "04",
        "4\n",
        "Connected",
        "\u{0}",
        "99999999999",
    ];
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    for value in garbage {
        assert_eq!(frontend_state(&mut store, &mut device, value), Action::None);
        assert_eq!(device.last_frontend(), FrontendView::Garbage, "{value:?}");
        assert_eq!(backend_state(&store), Some("2"));
    }
    connect(&mut store, &mut device);
    for value in garbage {
        assert_eq!(frontend_state(&mut store, &mut device, value), Action::None);
        assert_eq!(device.phase(), Phase::Connected);
        assert_eq!(backend_state(&store), Some("4"));
    }
}

#[test]
fn garbage_online_is_taken_as_offline() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    connect(&mut store, &mut device);
    store.set(&format!("{BACKEND}/online"), "yes");
    let action = device.on_watch(&mut store, "backend/vbd/5/51728/online");
    assert_eq!(action, Action::Disconnect);
}

#[test]
fn frontend_closing_during_connect_is_noticed() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    assert_eq!(
        frontend_state(&mut store, &mut device, "3"),
        Action::Connect
    );
    // While the engine maps the rings the frontend gives up.
    store.set(&format!("{FRONTEND}/state"), "5");
    assert_eq!(device.connected(&mut store), Action::Disconnect);
    assert_eq!(device.disconnected(&mut store), Action::None);
    assert_eq!(backend_state(&store), Some("5"));
}

#[test]
fn events_while_the_engine_works_change_nothing() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    assert_eq!(
        frontend_state(&mut store, &mut device, "3"),
        Action::Connect
    );
    assert_eq!(frontend_state(&mut store, &mut device, "4"), Action::None);
    assert_eq!(
        frontend_state(&mut store, &mut device, "6"),
        Action::Disconnect
    );
    assert_eq!(frontend_state(&mut store, &mut device, "1"), Action::None);
    assert_eq!(device.phase(), Phase::Disconnecting);
    // Out-of-order calls from a confused engine are refused, not obeyed.
    assert_eq!(device.connected(&mut store), Action::None);
    assert_eq!(device.disconnected(&mut store), Action::None);
    // The frontend restarted meanwhile: straight back to InitWait.
    assert_eq!(backend_state(&store), Some("2"));
}

#[test]
fn frontend_restart_while_connected_goes_back_to_initwait() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    connect(&mut store, &mut device);
    assert_eq!(
        frontend_state(&mut store, &mut device, "1"),
        Action::Disconnect
    );
    assert_eq!(device.disconnected(&mut store), Action::None);
    assert_eq!(backend_state(&store), Some("2"));
    connect(&mut store, &mut device);
}

#[test]
fn an_engine_disconnect_asks_the_frontend_to_close_and_allows_a_restart() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    assert_eq!(device.disconnect(), Action::None, "no datapath to drop yet");
    assert_eq!(device.phase(), Phase::Idle(XenbusState::InitWait));
    connect(&mut store, &mut device);
    assert_eq!(device.published_state(), XenbusState::Connected);
    assert_eq!(device.disconnect(), Action::Disconnect);
    assert_eq!(
        backend_state(&store),
        Some("4"),
        "no state change before the engine is done"
    );
    assert_eq!(
        device.on_watch(&mut store, &format!("{FRONTEND}/state")),
        Action::None,
        "events wait for the engine"
    );
    assert_eq!(device.disconnected(&mut store), Action::None);
    assert_eq!(backend_state(&store), Some("5"));
    assert_eq!(device.published_state(), XenbusState::Closing);
    // The frontend has not reacted yet: it is not connected again.
    assert_eq!(
        device.on_watch(&mut store, &format!("{FRONTEND}/state")),
        Action::None
    );
    assert_eq!(frontend_state(&mut store, &mut device, "5"), Action::None);
    assert_eq!(frontend_state(&mut store, &mut device, "6"), Action::None);
    assert_eq!(backend_state(&store), Some("6"));
    assert_eq!(frontend_state(&mut store, &mut device, "1"), Action::None);
    assert_eq!(backend_state(&store), Some("2"));
    connect(&mut store, &mut device);
}

#[test]
fn reconnect_race_after_disconnect_closes_first() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    connect(&mut store, &mut device);
    assert_eq!(
        frontend_state(&mut store, &mut device, "5"),
        Action::Disconnect
    );
    // Before the engine finishes, the frontend has closed and reconnected.
    store.set(&format!("{FRONTEND}/state"), "3");
    assert_eq!(device.disconnected(&mut store), Action::None);
    // `Connected` without a datapath must not stand.
    assert_eq!(backend_state(&store), Some("5"));
    assert_eq!(frontend_state(&mut store, &mut device, "6"), Action::None);
    assert_eq!(backend_state(&store), Some("6"));
}

#[test]
fn irrelevant_events_do_no_reads() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    let before = store.requests;
    for path in [
        "backend/vbd/5/51728/sectors",
        "backend/vbd/5/51728/hotplug-status",
        "backend/vbd/5/517280",
        "backend/vbd/5/5172",
        "/local/domain/5/device/vbd/51728/ring-ref",
        "/local/domain/5/device/vbd/51728/statex",
        "",
    ] {
        assert_eq!(device.on_watch(&mut store, path), Action::None, "{path}");
    }
    assert_eq!(store.requests, before);
    assert!(device.is_relevant("backend/vbd/5/51728/sectors"));
    assert!(!device.is_relevant("backend/vbd/5/517280"));
}

#[test]
fn probe_refuses_a_frontend_path_of_another_domain() {
    let mut store = FakeStore::with_toolstack_nodes();
    store.set(
        &format!("{BACKEND}/frontend"),
        "/local/domain/6/device/vbd/51728",
    );
    let mut device = BackendDevice::new(&directory(), address());
    let error = device.probe(&mut store).unwrap_err();
    assert_eq!(
        error,
        HandshakeError::Field(FieldError {
            key: "frontend".into(),
            reason: FieldReason::Invalid(ValueError::FrontendPathDomid),
        })
    );
    assert_eq!(device.phase(), Phase::Failed);
    assert_eq!(backend_state(&store), Some("6"));
    assert_eq!(
        store.get(&format!("{BACKEND}/hotplug-status")),
        Some("error")
    );
    assert_eq!(
        store.get(&format!("{BACKEND}/hotplug-error")),
        Some("frontend: the frontend path names a domain other than frontend-id")
    );
    assert!(store.get(&format!("{BACKEND}/error")).is_some());
    assert_eq!(
        device.start(&mut store, &[], "tok"),
        Err(HandshakeError::WrongPhase)
    );
    // A failed device waits for the toolstack to take it away.
    assert_eq!(device.refresh(&mut store), Action::None);
    store.set(&format!("{BACKEND}/online"), "0");
    assert_eq!(device.refresh(&mut store), Action::Remove);
}

#[test]
fn probe_refuses_mismatched_or_malformed_frontend_id() {
    for (value, reason) in [
        ("6", FieldReason::Invalid(ValueError::FrontendPathDomid)),
        ("05", FieldReason::Invalid(ValueError::LeadingZero)),
        ("32752", FieldReason::Invalid(ValueError::ReservedDomid)),
        ("", FieldReason::Invalid(ValueError::Empty)),
    ] {
        let mut store = FakeStore::with_toolstack_nodes();
        store.set(&format!("{BACKEND}/frontend-id"), value);
        let mut device = BackendDevice::new(&directory(), address());
        assert_eq!(
            device.probe(&mut store),
            Err(HandshakeError::Field(FieldError {
                key: "frontend-id".into(),
                reason
            })),
            "{value:?}"
        );
        assert_eq!(backend_state(&store), Some("6"));
    }
}

#[test]
fn probe_of_a_vanished_device_writes_nothing() {
    let mut store = FakeStore::with_toolstack_nodes();
    store.rm(TxId::NONE, BACKEND).unwrap();
    let mut device = BackendDevice::new(&directory(), address());
    assert_eq!(device.probe(&mut store), Err(HandshakeError::Gone));
    assert!(!store.nodes.keys().any(|key| key.starts_with(BACKEND)));
    assert_eq!(device.phase(), Phase::Removed);
}

#[test]
fn start_retries_conflicting_transactions() {
    let mut store = FakeStore::with_toolstack_nodes();
    store.conflicts = MAX_TRANSACTION_ATTEMPTS - 1;
    let device = started(&mut store);
    assert_eq!(device.phase(), Phase::Idle(XenbusState::InitWait));
    assert_eq!(backend_state(&store), Some("2"));
}

#[test]
fn start_gives_up_after_bounded_conflicts_and_writes_nothing() {
    let mut store = FakeStore::with_toolstack_nodes();
    store.conflicts = MAX_TRANSACTION_ATTEMPTS;
    let mut device = BackendDevice::new(&directory(), address());
    device.probe(&mut store).unwrap();
    assert_eq!(
        device.start(&mut store, &[("sectors", "1")], "tok"),
        Err(HandshakeError::TransactionConflicts)
    );
    assert_eq!(backend_state(&store), Some("1"));
    assert_eq!(store.get(&format!("{BACKEND}/sectors")), None);
    assert!(store.transaction.is_none());
    assert!(store.watches.is_empty());
}

#[test]
fn start_refuses_malformed_keys() {
    for key in ["", "a/b", "../x", "state x", &"k".repeat(MAX_KEY_LEN + 1)] {
        let mut store = FakeStore::with_toolstack_nodes();
        let mut device = BackendDevice::new(&directory(), address());
        device.probe(&mut store).unwrap();
        assert_eq!(
            device.start(&mut store, &[(key, "1")], "tok"),
            Err(HandshakeError::BadKey)
        );
        assert_eq!(backend_state(&store), Some("1"));
    }
}

#[test]
fn failure_after_start_allows_a_frontend_restart() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    assert_eq!(
        frontend_state(&mut store, &mut device, "3"),
        Action::Connect
    );
    // No ring-ref: the engine cannot connect.
    let error = device
        .read_frontend(&mut store, "ring-ref", value::parse_grant_ref)
        .unwrap_err();
    assert_eq!(error.reason, FieldReason::Missing);
    assert_eq!(device.fail(&mut store, &format!("{error}")), Action::None);
    assert_eq!(backend_state(&store), Some("6"));
    assert_eq!(
        store.get(&format!("{BACKEND}/error")),
        Some("ring-ref: missing")
    );
    // hotplug-status was already reported connected and stays so.
    assert_eq!(
        store.get(&format!("{BACKEND}/hotplug-status")),
        Some("connected")
    );
    assert_eq!(frontend_state(&mut store, &mut device, "6"), Action::None);
    assert_eq!(frontend_state(&mut store, &mut device, "1"), Action::None);
    assert_eq!(backend_state(&store), Some("2"));
    connect(&mut store, &mut device);
}

#[test]
fn long_failure_messages_are_truncated_on_a_character_boundary() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    let message = "é".repeat(MAX_ERROR_MESSAGE_LEN);
    let _ = device.fail(&mut store, &message);
    let written = store.get(&format!("{BACKEND}/error")).unwrap();
    assert!(written.len() <= MAX_ERROR_MESSAGE_LEN);
    assert!(written.len() >= MAX_ERROR_MESSAGE_LEN - 1);
}

#[test]
fn optional_frontend_keys() {
    let mut store = FakeStore::with_toolstack_nodes();
    let device = started(&mut store);
    let protocol =
        device.read_frontend_optional(&mut store, "protocol", |v| value::parse_protocol(Some(v)));
    assert_eq!(protocol, Ok(None));
    store.set(&format!("{FRONTEND}/protocol"), "x86_32-abi");
    let protocol =
        device.read_frontend_optional(&mut store, "protocol", |v| value::parse_protocol(Some(v)));
    assert_eq!(protocol, Ok(Some(value::Protocol::X86_32)));
    store.set(&format!("{FRONTEND}/protocol"), "sparc");
    let protocol =
        device.read_frontend_optional(&mut store, "protocol", |v| value::parse_protocol(Some(v)));
    assert_eq!(
        protocol,
        Err(FieldError {
            key: "protocol".into(),
            reason: FieldReason::Invalid(ValueError::UnknownProtocol)
        })
    );
}

#[test]
fn recognise_device_paths() {
    let relative = BackendDirectory::new("vbd");
    let absolute = BackendDirectory::absolute(4, "vif");
    assert_eq!(relative.root(), "backend/vbd");
    assert_eq!(absolute.root(), "/local/domain/4/backend/vif");
    assert_eq!(relative.recognise("backend/vbd"), Ok(None));
    assert_eq!(relative.recognise("backend/vbd/5"), Ok(None));
    assert_eq!(
        relative.recognise("backend/vbd/5/51728"),
        Ok(Some(address()))
    );
    assert_eq!(
        relative.recognise("backend/vbd/5/51728/state"),
        Ok(Some(address()))
    );
    assert_eq!(
        absolute.recognise("/local/domain/4/backend/vif/6/0/mac"),
        Ok(Some(DeviceAddress {
            frontend_id: 6,
            devid: 0
        }))
    );
    assert_eq!(
        relative.recognise("backend/vbdx/5/1"),
        Err(PathError::Foreign)
    );
    assert_eq!(
        relative.recognise("backend/vif/5/1"),
        Err(PathError::Foreign)
    );
    assert_eq!(
        relative.recognise("/backend/vbd/5/1"),
        Err(PathError::Foreign)
    );
    assert_eq!(
        relative.recognise("backend/vbd/05/1"),
        Err(PathError::FrontendId(ValueError::LeadingZero))
    );
    assert_eq!(
        relative.recognise("backend/vbd/32767/1"),
        Err(PathError::FrontendId(ValueError::ReservedDomid))
    );
    assert_eq!(
        relative.recognise("backend/vbd/5/x"),
        Err(PathError::Devid(ValueError::NotDecimal))
    );
    assert_eq!(
        relative.recognise("backend/vbd//1"),
        Err(PathError::FrontendId(ValueError::Empty))
    );
    assert_eq!(
        relative.recognise("backend/vbd/5/"),
        Err(PathError::Devid(ValueError::Empty))
    );
    assert_eq!(relative.device_path(address()), "backend/vbd/5/51728");
}

#[test]
fn list_skips_garbage_and_is_bounded() {
    let mut store = FakeStore::default();
    for path in [
        "backend/vbd/5/51728/state",
        "backend/vbd/5/51712/state",
        "backend/vbd/6/768/state",
        "backend/vbd/junk/1/state",
        "backend/vbd/7/0x1/state",
        "backend/vbd/40000/1/state",
    ] {
        store.set(path, "1");
    }
    let directory = BackendDirectory::new("vbd");
    let mut devices = directory.list(&mut store, 100).unwrap();
    devices.sort_by_key(|d| (d.frontend_id, d.devid));
    let expected: Vec<DeviceAddress> = [(5, 51712), (5, 51728), (6, 768)]
        .into_iter()
        .map(|(frontend_id, devid)| DeviceAddress { frontend_id, devid })
        .collect();
    assert_eq!(devices, expected);
    assert_eq!(directory.list(&mut store, 2).unwrap().len(), 2);
    assert_eq!(directory.list(&mut store, 0).unwrap().len(), 0);
    assert_eq!(
        BackendDirectory::new("vif").list(&mut store, 10).unwrap(),
        Vec::new()
    );
}

#[test]
fn with_transaction_aborts_on_errors_and_retries_eagain_inside() {
    let mut store = FakeStore::default();
    let mut calls = 0;
    let result: Result<(), _> = with_transaction(&mut store, |_, _| {
        calls += 1;
        Err(HandshakeError::Xenstore(XsError::Eacces))
    });
    assert_eq!(result, Err(HandshakeError::Xenstore(XsError::Eacces)));
    assert_eq!(calls, 1);
    assert!(store.transaction.is_none());

    let mut calls = 0;
    let result = with_transaction(&mut store, |xs, tx| {
        calls += 1;
        if calls < 3 {
            return Err(HandshakeError::Xenstore(XsError::Eagain));
        }
        xs.write(tx, "/a", "b")?;
        Ok(calls)
    });
    assert_eq!(result, Ok(3));
    assert_eq!(store.get("/a"), Some("b"));
}

/// Every combination of phase, frontend and backend against rules stated
/// independently of `decide`'s structure.
#[test]
fn decide_obeys_the_handshake_invariants() {
    let states = (0..=8).filter_map(XenbusState::from_u32);
    let mut phases = vec![
        Phase::Created,
        Phase::Probed,
        Phase::Connecting,
        Phase::Connected,
        Phase::Disconnecting,
        Phase::Failed,
        Phase::Removed,
    ];
    phases.extend(states.clone().map(Phase::Idle));
    let mut frontends = vec![FrontendView::Gone, FrontendView::Garbage];
    frontends.extend(states.map(FrontendView::State));
    let backends = [BackendView::Online, BackendView::Offline, BackendView::Gone];

    for &phase in &phases {
        for &frontend in &frontends {
            for &backend in &backends {
                let step = decide(phase, frontend, backend);
                let case = format!("{phase:?} {frontend:?} {backend:?} -> {step:?}");
                let has_datapath = matches!(phase, Phase::Connecting | Phase::Connected);
                // Connect only from InitWait, online, frontend ready.
                if step == Step::Connect {
                    assert_eq!(phase, Phase::Idle(XenbusState::InitWait), "{case}");
                    assert_eq!(backend, BackendView::Online, "{case}");
                    assert!(
                        matches!(
                            frontend,
                            FrontendView::State(XenbusState::Initialised | XenbusState::Connected)
                        ),
                        "{case}"
                    );
                }
                // Only a datapath is ever disconnected, and while one exists
                // nothing is published or removed behind the engine's back.
                assert_eq!(
                    step == Step::Disconnect,
                    has_datapath && step != Step::Nothing,
                    "{case}"
                );
                // A gone backend is never written to.
                if backend == BackendView::Gone {
                    assert!(
                        !matches!(step, Step::Publish(_) | Step::PublishThenRemove(_)),
                        "{case}"
                    );
                }
                // A datapath is torn down whenever the toolstack or the
                // frontend is leaving.
                if has_datapath
                    && (backend != BackendView::Online
                        || matches!(
                            frontend,
                            FrontendView::Gone
                                | FrontendView::State(XenbusState::Closing | XenbusState::Closed)
                        ))
                {
                    assert_eq!(step, Step::Disconnect, "{case}");
                }
                // Never Connected without a datapath, never re-publish the
                // same state.
                if let Step::Publish(state) | Step::PublishThenRemove(state) = step {
                    assert_ne!(state, XenbusState::Connected, "{case}");
                    if let Phase::Idle(published) = phase {
                        assert_ne!(state, published, "{case}");
                    }
                }
                // Garbage from the frontend never moves an online device.
                if frontend == FrontendView::Garbage && backend == BackendView::Online {
                    let idle_connected = phase == Phase::Idle(XenbusState::Connected);
                    assert!(step == Step::Nothing || idle_connected, "{case}");
                }
                // Engines' work in progress is never interrupted.
                if matches!(
                    phase,
                    Phase::Disconnecting | Phase::Created | Phase::Probed | Phase::Removed
                ) {
                    assert_eq!(step, Step::Nothing, "{case}");
                }
            }
        }
    }
}

/// A well-behaved engine whose datapath is a flag: does what `action`
/// asks until the helper has nothing more, and returns the last action.
fn drive(
    store: &mut FakeStore,
    device: &mut BackendDevice,
    datapath: &mut bool,
    mut action: Action,
) -> Action {
    for _ in 0..10 {
        action = match action {
            Action::None | Action::Remove => {
                if action == Action::Remove {
                    assert!(!*datapath);
                }
                return action;
            }
            Action::Connect => {
                assert!(!*datapath);
                match device.read_frontend(store, "ring-ref", value::parse_grant_ref) {
                    Ok(_) => {
                        *datapath = true;
                        device.connected(store)
                    }
                    Err(error) => device.fail(store, &format!("{error}")),
                }
            }
            Action::Disconnect => {
                assert!(*datapath);
                *datapath = false;
                device.disconnected(store)
            }
        };
    }
    panic!("the helper keeps asking for work");
}

/// Drives a device through a long pseudo-random sequence of frontend and
/// toolstack changes with a well-behaved engine, and checks that it never
/// claims `Connected` without a datapath nor leaves a datapath behind.
#[test]
fn random_walk_keeps_state_and_datapath_consistent() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut connects = 0;
    for _ in 0..50 {
        let mut store = FakeStore::with_toolstack_nodes();
        store.set(&format!("{FRONTEND}/ring-ref"), "8");
        store.set(&format!("{FRONTEND}/event-channel"), "9");
        let mut device = started(&mut store);
        let mut datapath = false;
        for _ in 0..200 {
            let mut tick = false;
            let path = match next() % 100 {
                0..=69 => {
                    let state =
                        ["0", "1", "2", "3", "4", "5", "6", "7", "x"][(next() % 9) as usize];
                    store.set(&format!("{FRONTEND}/state"), state);
                    format!("{FRONTEND}/state")
                }
                70..=79 => {
                    // xenstore under load: transactions conflict for a while.
                    store.conflicts = (next() % (2 * MAX_TRANSACTION_ATTEMPTS as u64)) as u32;
                    format!("{FRONTEND}/state")
                }
                80..=94 => {
                    // The engine's timer tick.
                    tick = true;
                    String::new()
                }
                95..=96 => {
                    store.set(&format!("{BACKEND}/online"), "0");
                    "backend/vbd/5/51728/online".to_string()
                }
                97..=98 => {
                    store.rm(TxId::NONE, FRONTEND).unwrap();
                    format!("{FRONTEND}/state")
                }
                _ => {
                    store.rm(TxId::NONE, BACKEND).unwrap();
                    "backend/vbd/5/51728".to_string()
                }
            };
            let action = if tick {
                if !device.needs_refresh() {
                    continue;
                }
                device.refresh(&mut store)
            } else {
                device.on_watch(&mut store, &path)
            };
            let was_connected = datapath;
            let action = drive(&mut store, &mut device, &mut datapath, action);
            connects += usize::from(!was_connected && datapath);
            if action == Action::Remove {
                assert!(!datapath);
                assert!(store.watches.is_empty());
                break;
            }
            let published = backend_state(&store);
            if published == Some("4") && !device.needs_refresh() {
                assert!(datapath, "Connected published without a datapath");
            }
            assert_eq!(datapath, device.phase() == Phase::Connected);
            // Once xenstore behaves again, one refresh catches up.
            if device.needs_refresh() && next() % 4 == 0 {
                store.conflicts = 0;
                let action = device.refresh(&mut store);
                if drive(&mut store, &mut device, &mut datapath, action) == Action::Remove {
                    break;
                }
                assert!(!device.needs_refresh());
                assert_eq!(datapath, device.phase() == Phase::Connected);
            }
        }
    }
    // The walk must actually exercise the connected state.
    assert!(connects > 20, "only {connects} connects");
}

#[test]
fn probe_leaves_an_offline_device_untouched() {
    for online in [Some("0"), None, Some("garbage")] {
        let mut store = FakeStore::with_toolstack_nodes();
        match online {
            Some(value) => store.set(&format!("{BACKEND}/online"), value),
            None => store.rm(TxId::NONE, &format!("{BACKEND}/online")).unwrap(),
        }
        let before = store.nodes.clone();
        let mut device = BackendDevice::new(&directory(), address());
        assert_eq!(device.probe(&mut store), Err(HandshakeError::Offline));
        assert_eq!(device.phase(), Phase::Removed);
        assert_eq!(store.nodes, before, "{online:?}");
        // An engine that keeps the device is told to drop it.
        assert_eq!(
            device.on_watch(&mut store, "backend/vbd/5/51728/online"),
            Action::Remove
        );
        assert_eq!(store.nodes, before);
    }
}

#[test]
fn probe_reports_a_xenstore_failure_without_writing() {
    let mut store = FakeStore::with_toolstack_nodes();
    store.failing_read = Some((format!("{BACKEND}/online"), XsError::Enomem));
    let before = store.nodes.clone();
    let mut device = BackendDevice::new(&directory(), address());
    assert_eq!(
        device.probe(&mut store),
        Err(HandshakeError::Xenstore(XsError::Enomem))
    );
    assert_eq!(device.phase(), Phase::Created, "may be probed again");
    assert_eq!(store.nodes, before);
    store.failing_read = None;
    assert_eq!(device.probe(&mut store), Ok(()));
}

/// After a detach the helper has removed the device, but the toolstack has
/// not yet deleted its directory, and the directory watch still reports
/// paths under it. Treating those as a new device must not attach it again.
#[test]
fn a_detached_device_is_not_attached_again_by_late_events() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    connect(&mut store, &mut device);
    store.set(&format!("{BACKEND}/online"), "0");
    assert_eq!(
        device.on_watch(&mut store, "backend/vbd/5/51728/online"),
        Action::Disconnect
    );
    assert_eq!(device.disconnected(&mut store), Action::None);
    assert_eq!(frontend_state(&mut store, &mut device, "6"), Action::Remove);

    let address = directory()
        .recognise("backend/vbd/5/51728/state")
        .unwrap()
        .unwrap();
    let mut again = BackendDevice::new(&directory(), address);
    assert_eq!(again.probe(&mut store), Err(HandshakeError::Offline));
    assert_eq!(backend_state(&store), Some("6"));
}

#[test]
fn directory_watch_and_device_tokens() {
    let mut store = FakeStore::with_toolstack_nodes();
    directory().watch(&mut store, "vbd").unwrap();
    let device = started(&mut store);
    assert_eq!(device.watch_token(), Some("tok"));
    assert_eq!(
        store.watches[0],
        ("backend/vbd".to_string(), "vbd".to_string())
    );
    assert_eq!(store.watches.len(), 3);
}

#[test]
fn an_unprobed_device_ignores_every_event() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = BackendDevice::new(&directory(), address());
    assert!(!device.is_relevant(""));
    assert!(device.is_relevant("backend/vbd/5/51728/online"));
    let before = store.requests;
    assert_eq!(device.on_watch(&mut store, ""), Action::None);
    assert_eq!(store.requests, before);
    // Before `start` there is nothing to do, and nothing is read.
    assert_eq!(
        device.on_watch(&mut store, "backend/vbd/5/51728/online"),
        Action::None
    );
    assert_eq!(store.requests, before);
    assert_eq!(backend_state(&store), Some("1"));
}

/// Found by the handshake fuzz target: after a disconnect the backend
/// could not publish its new state (xenstore kept conflicting), so the
/// frontend still saw `Connected` with no datapath behind it. The helper
/// now says it is out of date, and a later refresh repairs the state.
#[test]
fn a_failed_publication_is_retried_by_refresh() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    connect(&mut store, &mut device);
    assert!(!device.needs_refresh());
    store.conflicts = MAX_TRANSACTION_ATTEMPTS + 1;
    assert_eq!(
        frontend_state(&mut store, &mut device, "1"),
        Action::Disconnect
    );
    assert_eq!(device.disconnected(&mut store), Action::None);
    assert_eq!(backend_state(&store), Some("4"));
    assert!(device.needs_refresh());
    // Still conflicting on the next tick.
    store.conflicts = MAX_TRANSACTION_ATTEMPTS;
    assert_eq!(device.refresh(&mut store), Action::None);
    assert!(device.needs_refresh());
    store.conflicts = 0;
    assert_eq!(device.refresh(&mut store), Action::None);
    assert!(!device.needs_refresh());
    assert_eq!(backend_state(&store), Some("2"));
}

#[test]
fn a_failed_read_asks_for_a_refresh() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    store.failing_read = Some((format!("{BACKEND}/online"), XsError::Enomem));
    assert_eq!(frontend_state(&mut store, &mut device, "3"), Action::None);
    assert!(device.needs_refresh());
    store.failing_read = None;
    assert_eq!(device.refresh(&mut store), Action::Connect);
    assert!(!device.needs_refresh());
}

#[test]
fn a_detach_that_cannot_publish_closed_waits_instead_of_vanishing() {
    let mut store = FakeStore::with_toolstack_nodes();
    let mut device = started(&mut store);
    store.set(&format!("{BACKEND}/online"), "0");
    store.conflicts = MAX_TRANSACTION_ATTEMPTS;
    assert_eq!(
        device.on_watch(&mut store, "backend/vbd/5/51728/online"),
        Action::None
    );
    assert!(device.needs_refresh());
    assert_eq!(device.phase(), Phase::Idle(XenbusState::InitWait));
    assert_eq!(device.refresh(&mut store), Action::Remove);
    assert_eq!(backend_state(&store), Some("6"));
}

mod retirement {
    use super::*;
    use crate::backend::retire::{finished, remove_if_finished, Outcome, Retirements};

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn only_an_offline_closed_device_is_finished() {
        assert!(finished(Some("0"), Some("6")));
        assert!(finished(None, Some("6")));
        assert!(finished(Some("garbage"), Some("6")));
        assert!(
            !finished(Some("1"), Some("6")),
            "a refused device stays until detached"
        );
        assert!(!finished(Some("0"), Some("5")));
        assert!(!finished(Some("0"), Some("4")));
        assert!(!finished(Some("0"), None));
        assert!(!finished(None, None));
        assert!(!finished(Some("0"), Some("16")));
    }

    #[test]
    fn removes_only_what_the_toolstack_finished_with() {
        let mut store = FakeStore::with_toolstack_nodes();
        let directory = directory();
        store.set(&format!("{BACKEND}/state"), "6");
        assert_eq!(
            remove_if_finished(&mut store, &directory, address()),
            Ok(Outcome::InUse),
            "closed but still online: the toolstack has not let go"
        );
        store.set(&format!("{BACKEND}/online"), "0");
        store.set(&format!("{BACKEND}/state"), "5");
        assert_eq!(
            remove_if_finished(&mut store, &directory, address()),
            Ok(Outcome::InUse)
        );
        store.set(&format!("{BACKEND}/state"), "6");
        assert_eq!(
            remove_if_finished(&mut store, &directory, address()),
            Ok(Outcome::Removed)
        );
        assert_eq!(store.get(BACKEND), None);
        assert_eq!(
            store.get("/local/domain/4/backend/vbd/5"),
            None,
            "the emptied frontend directory goes too"
        );
        assert_eq!(store.get(FRONTEND), Some(""), "the frontend is dom0's");
        assert_eq!(
            remove_if_finished(&mut store, &directory, address()),
            Ok(Outcome::Gone)
        );
    }

    #[test]
    fn a_sibling_keeps_the_frontend_directory() {
        let mut store = FakeStore::with_toolstack_nodes();
        store.set("/local/domain/4/backend/vbd/5/51744/state", "4");
        store.set(&format!("{BACKEND}/online"), "0");
        store.set(&format!("{BACKEND}/state"), "6");
        assert_eq!(
            remove_if_finished(&mut store, &directory(), address()),
            Ok(Outcome::Removed)
        );
        assert_eq!(
            store.get("/local/domain/4/backend/vbd/5/51744/state"),
            Some("4")
        );
    }

    #[test]
    fn xenstore_errors_are_reported_and_nothing_is_removed() {
        let mut store = FakeStore::with_toolstack_nodes();
        store.set(&format!("{BACKEND}/online"), "0");
        store.set(&format!("{BACKEND}/state"), "6");
        store.failing_read = Some((format!("{BACKEND}/online"), XsError::Eio));
        assert_eq!(
            remove_if_finished(&mut store, &directory(), address()),
            Err(XsError::Eio)
        );
        assert_eq!(store.get(&format!("{BACKEND}/state")), Some("6"));
    }

    #[test]
    fn a_device_is_looked_at_only_after_a_quiet_period() {
        let directory = BackendDirectory::absolute(4, "vbd");
        let mut retirements = Retirements::new(SECOND);
        assert_eq!(retirements.deadline(), None);
        retirements.touch(&directory, &format!("{BACKEND}/state"), 10 * SECOND);
        assert_eq!(retirements.deadline(), Some(11 * SECOND));
        // Every later event under the device pushes the deadline back.
        retirements.touch(&directory, BACKEND, 10 * SECOND + SECOND / 2);
        assert!(retirements.due(11 * SECOND).is_empty());
        assert_eq!(retirements.due(11 * SECOND + SECOND / 2), [address()]);
        assert_eq!(retirements.deadline(), None, "handed out once");
        assert!(retirements.due(100 * SECOND).is_empty());
    }

    #[test]
    fn paths_naming_no_device_are_ignored() {
        let directory = BackendDirectory::absolute(4, "vbd");
        let mut retirements = Retirements::new(SECOND);
        for path in [
            "/local/domain/4/backend/vbd",
            "/local/domain/4/backend/vbd/5",
            "/local/domain/4/backend/vif/5/0/state",
            "/local/domain/4/backend/vbd/05/51728",
            "/local/domain/4/backend/vbd/5/x",
            "device/vbd/51728",
        ] {
            retirements.touch(&directory, path, 0);
        }
        assert_eq!(retirements.deadline(), None);
    }

    #[test]
    fn the_pending_list_is_bounded() {
        let mut retirements = Retirements::new(SECOND);
        for devid in 0..2 * crate::backend::retire::MAX_PENDING as u32 {
            retirements.touch_device(
                DeviceAddress {
                    frontend_id: 1,
                    devid,
                },
                0,
            );
        }
        assert_eq!(
            retirements.due(SECOND).len(),
            crate::backend::retire::MAX_PENDING
        );
    }

    /// The whole detach against the handshake: the device closes, the
    /// engine forgets it, and its directory goes only after the quiet
    /// period the toolstack needs to read Closed.
    #[test]
    fn detach_then_retire() {
        let mut store = FakeStore::with_toolstack_nodes();
        let directory = directory();
        let mut device = started(&mut store);
        let mut retirements = Retirements::new(SECOND);
        store.set(&format!("{BACKEND}/online"), "0");
        let action = device.on_watch(&mut store, "backend/vbd/5/51728/online");
        assert_eq!(action, Action::Remove);
        assert_eq!(store.get(&format!("{BACKEND}/state")), Some("6"));
        retirements.touch(&directory, "backend/vbd/5/51728/state", 0);
        assert_eq!(
            retirements.retire(&mut store, &directory, SECOND / 2),
            [],
            "looked at too early"
        );
        assert_eq!(store.get(&format!("{BACKEND}/state")), Some("6"));
        assert_eq!(
            retirements.retire(&mut store, &directory, SECOND),
            [(address(), Ok(Outcome::Removed))]
        );
        assert_eq!(store.get(BACKEND), None);
    }
}
