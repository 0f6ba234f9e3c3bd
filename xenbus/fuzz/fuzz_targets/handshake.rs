//! The backend handshake against a frontend and a toolstack that write
//! anything into xenstore in any order, and a xenstore that sometimes
//! fails. A well-behaved engine follows the helper's actions; the helper
//! must never panic, never ask for endless work, never publish `Connected`
//! without a datapath, and never write into a removed backend directory.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use xenbus::backend::{Action, BackendDevice, BackendDirectory, DeviceAddress, Phase};
use xenbus::platform::{Permission, TxId, Xenstore, XsError};
use xenbus::value;

const HOME: &str = "/local/domain/4";
const BACKEND: &str = "/local/domain/4/backend/vbd/5/51728";
const FRONTEND: &str = "/local/domain/5/device/vbd/51728";

#[derive(Default)]
struct Store {
    nodes: BTreeMap<String, String>,
    transaction: Option<BTreeMap<String, String>>,
    conflicts: u8,
    failures: u8,
    backend_removed: bool,
}

impl Store {
    fn absolute(path: &str) -> String {
        if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{HOME}/{path}")
        }
    }

    fn nodes(&mut self, tx: TxId) -> &mut BTreeMap<String, String> {
        match (tx, &mut self.transaction) {
            (TxId::NONE, _) | (_, None) => &mut self.nodes,
            (_, Some(nodes)) => nodes,
        }
    }

    fn fail(&mut self) -> Result<(), XsError> {
        if self.failures > 0 {
            self.failures -= 1;
            return Err(XsError::Enomem);
        }
        Ok(())
    }
}

impl Xenstore for Store {
    fn read(&mut self, tx: TxId, path: &str) -> Result<String, XsError> {
        self.fail()?;
        self.nodes(tx)
            .get(&Self::absolute(path))
            .cloned()
            .ok_or(XsError::Enoent)
    }
    fn write(&mut self, tx: TxId, path: &str, value: &str) -> Result<(), XsError> {
        self.fail()?;
        let path = Self::absolute(path);
        if self.backend_removed && path.starts_with(BACKEND) {
            panic!("write into the removed backend directory: {path}");
        }
        self.nodes(tx).insert(path, value.to_string());
        Ok(())
    }
    fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.write(tx, path, "")
    }
    fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        let path = Self::absolute(path);
        self.nodes(tx).retain(|key, _| !key.starts_with(&path));
        Ok(())
    }
    fn directory(&mut self, _tx: TxId, _path: &str) -> Result<Vec<String>, XsError> {
        Err(XsError::Enosys)
    }
    fn get_perms(&mut self, _tx: TxId, _path: &str) -> Result<Vec<Permission>, XsError> {
        Err(XsError::Enosys)
    }
    fn set_perms(&mut self, _tx: TxId, _path: &str, _perms: &[Permission]) -> Result<(), XsError> {
        Err(XsError::Enosys)
    }
    fn watch(&mut self, _path: &str, _token: &str) -> Result<(), XsError> {
        self.fail()
    }
    fn unwatch(&mut self, _path: &str, _token: &str) -> Result<(), XsError> {
        Ok(())
    }
    fn transaction_start(&mut self) -> Result<TxId, XsError> {
        self.fail()?;
        self.transaction = Some(self.nodes.clone());
        Ok(TxId(1))
    }
    fn transaction_end(&mut self, _tx: TxId, commit: bool) -> Result<(), XsError> {
        let nodes = self.transaction.take().ok_or(XsError::Einval)?;
        if commit {
            if self.conflicts > 0 {
                self.conflicts -= 1;
                return Err(XsError::Eagain);
            }
            self.nodes = nodes;
        }
        Ok(())
    }
}

fn text(bytes: &mut impl Iterator<Item = u8>) -> String {
    let len = bytes.next().unwrap_or(0) % 8;
    let raw: Vec<u8> = bytes.take(len as usize).collect();
    // Small digits are the interesting states; anything else is garbage.
    if raw.len() == 1 && raw[0] < 10 {
        return raw[0].to_string();
    }
    String::from_utf8_lossy(&raw).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let mut store = Store::default();
    for (key, value) in [
        ("frontend", FRONTEND),
        ("frontend-id", "5"),
        ("online", "1"),
        ("state", "1"),
    ] {
        store.nodes.insert(format!("{BACKEND}/{key}"), value.into());
    }
    store.nodes.insert(BACKEND.into(), String::new());
    store.nodes.insert(FRONTEND.into(), String::new());
    store.nodes.insert(format!("{FRONTEND}/state"), "1".into());
    store
        .nodes
        .insert(format!("{FRONTEND}/ring-ref"), "8".into());

    let directory = BackendDirectory::new("vbd");
    let mut device = BackendDevice::new(
        &directory,
        DeviceAddress {
            frontend_id: 5,
            devid: 51728,
        },
    );
    let mut bytes = data.iter().copied();
    store.conflicts = bytes.next().unwrap_or(0) % 10;
    if device.probe(&mut store).is_err()
        || device.start(&mut store, &[("sectors", "8")], "t").is_err()
    {
        return;
    }
    let mut datapath = false;
    while let Some(op) = bytes.next() {
        // The engine's timer tick: a device that could not finish its last
        // look gets another one.
        let tick = device.needs_refresh() && op & 0x80 != 0;
        let path = match op % 8 {
            0..=2 => {
                let state = text(&mut bytes);
                store.nodes.insert(format!("{FRONTEND}/state"), state);
                format!("{FRONTEND}/state")
            }
            3 => {
                let online = text(&mut bytes);
                store.nodes.insert(format!("{BACKEND}/online"), online);
                "backend/vbd/5/51728/online".to_string()
            }
            4 => {
                let ring_ref = text(&mut bytes);
                store.nodes.insert(format!("{FRONTEND}/ring-ref"), ring_ref);
                format!("{FRONTEND}/ring-ref")
            }
            5 => {
                store.nodes.retain(|key, _| !key.starts_with(FRONTEND));
                format!("{FRONTEND}/state")
            }
            6 => {
                store.nodes.retain(|key, _| !key.starts_with(BACKEND));
                store.backend_removed = true;
                "backend/vbd/5/51728".to_string()
            }
            _ => {
                store.failures = bytes.next().unwrap_or(0) % 4;
                store.conflicts = bytes.next().unwrap_or(0) % 10;
                format!("{FRONTEND}/state")
            }
        };
        let mut action = if tick {
            device.refresh(&mut store)
        } else {
            device.on_watch(&mut store, &path)
        };
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 16, "the helper keeps asking for work");
            action = match action {
                Action::None | Action::Remove => break,
                Action::Connect => {
                    assert!(!datapath);
                    match device.read_frontend(&mut store, "ring-ref", value::parse_grant_ref) {
                        Ok(_) => {
                            datapath = true;
                            device.connected(&mut store)
                        }
                        Err(error) => device.fail(&mut store, &format!("{error}")),
                    }
                }
                Action::Disconnect => {
                    assert!(datapath);
                    datapath = false;
                    device.disconnected(&mut store)
                }
            };
        }
        if action == Action::Remove {
            assert!(!datapath);
            assert_eq!(device.phase(), Phase::Removed);
            return;
        }
        assert_eq!(datapath, device.phase() == Phase::Connected);
        // While the helper knows it is behind, the published state may lag.
        let published = store
            .nodes
            .get(&format!("{BACKEND}/state"))
            .map(String::as_str);
        if published == Some("4") && !device.needs_refresh() {
            assert!(datapath, "Connected published without a datapath");
        }
    }
});
