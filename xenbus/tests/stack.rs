//! The whole client stack as a driver domain runs it: the backend handshake
//! over `BlockingXenstore`, over the ring page, against a small xenstored
//! that speaks the wire protocol on the other side of a `LocalMemory` page.

use std::collections::{BTreeMap, VecDeque};

use xen_ring::{LocalMemory, SharedMemory};
use xenbus::backend::{Action, BackendDevice, BackendDirectory, Phase};
use xenbus::platform::{Access, Permission, TxId, Xenstore, XsError};
use xenbus::ring::{self, BlockingXenstore, Notifier, XenstoreRing};
use xenbus::value;
use xenbus::wire::{Message, Reply, Request, StreamDecoder, WatchEvent};

const OWN_DOMID: u16 = 4;

/// xenstored for one client domain: relative paths, transactions that
/// conflict when the store changed underneath, watches with events.
struct Daemon {
    memory: LocalMemory,
    decoder: StreamDecoder,
    output: VecDeque<u8>,
    nodes: BTreeMap<String, String>,
    transactions: BTreeMap<u32, (BTreeMap<String, String>, u64)>,
    generation: u64,
    next_tx: u32,
    watches: Vec<(String, String)>,
    notified: bool,
}

impl Daemon {
    fn new(memory: LocalMemory) -> Self {
        Self {
            memory,
            decoder: StreamDecoder::new(),
            output: VecDeque::new(),
            nodes: BTreeMap::new(),
            transactions: BTreeMap::new(),
            generation: 0,
            next_tx: 0,
            watches: Vec::new(),
            notified: false,
        }
    }

    fn absolute(path: &str) -> String {
        if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/local/domain/{OWN_DOMID}/{path}")
        }
    }

    /// A change made by another domain (the toolstack, the frontend).
    fn set(&mut self, path: &str, value: &str) {
        self.write_node(0, path, value);
    }

    fn get(&self, path: &str) -> Option<&str> {
        self.nodes.get(path).map(String::as_str)
    }

    fn write_node(&mut self, tx: u32, path: &str, value: &str) {
        let absolute = Self::absolute(path);
        let nodes = match self.transactions.get_mut(&tx) {
            Some((nodes, _)) => nodes,
            None => &mut self.nodes,
        };
        let mut parent = absolute.as_str();
        while let Some(end) = parent.rfind('/') {
            parent = &parent[..end];
            if !parent.is_empty() {
                nodes.entry(parent.to_string()).or_default();
            }
        }
        nodes.insert(absolute.clone(), value.to_string());
        if tx == 0 {
            self.changed(&absolute);
        }
    }

    fn changed(&mut self, absolute: &str) {
        self.generation += 1;
        let events: Vec<(String, String)> = self
            .watches
            .iter()
            .filter(|(watched, _)| {
                let watched = Self::absolute(watched);
                absolute == watched || absolute.starts_with(&format!("{watched}/"))
            })
            .map(|(watched, token)| {
                // Relative watches get relative event paths.
                let path = if watched.starts_with('/') {
                    absolute.to_string()
                } else {
                    absolute
                        .strip_prefix(&format!("/local/domain/{OWN_DOMID}/"))
                        .unwrap()
                        .to_string()
                };
                (path, token.clone())
            })
            .collect();
        for (path, token) in events {
            self.queue_event(&path, &token);
        }
    }

    fn queue_event(&mut self, path: &str, token: &str) {
        let mut bytes = Vec::new();
        WatchEvent {
            path: path.into(),
            token: token.into(),
        }
        .encode(&mut bytes)
        .unwrap();
        self.output.extend(bytes);
    }

    fn handle(&mut self, message: Message) {
        let header = message.header;
        let tx = header.tx_id;
        let request = Request::decode(header.kind, &message.payload).unwrap();
        let view = |daemon: &Self| match daemon.transactions.get(&tx) {
            Some((nodes, _)) => nodes.clone(),
            None => daemon.nodes.clone(),
        };
        let reply = match request {
            Request::Read { path } => match view(self).get(&Self::absolute(path)) {
                Some(value) => Reply::Value(value.clone().into_bytes()),
                None => Reply::Error(XsError::Enoent),
            },
            Request::Write { path, value } => {
                let value = String::from_utf8(value.to_vec()).unwrap();
                self.write_node(tx, path, &value);
                Reply::Ok
            }
            Request::Directory { path } => {
                let below = format!("{}/", Self::absolute(path));
                Reply::Directory(
                    view(self)
                        .keys()
                        .filter_map(|key| key.strip_prefix(&below))
                        .filter(|rest| !rest.contains('/'))
                        .map(str::to_string)
                        .collect(),
                )
            }
            Request::Watch { path, token } => {
                self.watches.push((path.to_string(), token.to_string()));
                let (path, token) = (path.to_string(), token.to_string());
                self.reply(&message, Reply::Ok);
                self.queue_event(&path, &token);
                return;
            }
            Request::Unwatch { path, token } => {
                self.watches.retain(|(p, t)| !(p == path && t == token));
                Reply::Ok
            }
            Request::TransactionStart => {
                self.next_tx += 1;
                self.transactions
                    .insert(self.next_tx, (self.nodes.clone(), self.generation));
                Reply::TransactionStarted(TxId(self.next_tx))
            }
            Request::TransactionEnd { commit } => match self.transactions.remove(&tx) {
                None => Reply::Error(XsError::Enoent),
                Some(_) if !commit => Reply::Ok,
                Some((_, generation)) if generation != self.generation => {
                    Reply::Error(XsError::Eagain)
                }
                Some((nodes, _)) => {
                    let changed: Vec<String> = nodes
                        .iter()
                        .filter(|(key, value)| self.nodes.get(*key) != Some(value))
                        .map(|(key, _)| key.clone())
                        .collect();
                    self.nodes = nodes;
                    for path in changed {
                        self.changed(&path);
                    }
                    Reply::Ok
                }
            },
            Request::GetPerms { .. } => Reply::Perms(vec![Permission {
                domid: OWN_DOMID,
                access: Access::None,
            }]),
            Request::Mkdir { .. } | Request::Rm { .. } | Request::SetPerms { .. } => {
                Reply::Error(XsError::Enosys)
            }
        };
        self.reply(&message, reply);
    }

    fn reply(&mut self, request: &Message, reply: Reply) {
        let mut bytes = Vec::new();
        reply
            .encode(
                request.header.kind,
                request.header.req_id,
                request.header.tx_id,
                &mut bytes,
            )
            .unwrap();
        self.output.extend(bytes);
    }

    /// Everything xenstored does when woken: read all requests, write as
    /// much output as fits.
    fn run(&mut self) {
        let memory = self.memory.clone();
        let cons = memory.load_u32(ring::REQ_CONS_OFFSET);
        let prod = memory.load_u32(ring::REQ_PROD_OFFSET);
        let count = prod.wrapping_sub(cons) as usize;
        let mut bytes = vec![0; count];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let mut one = [0];
            let offset = cons.wrapping_add(i as u32) as usize % ring::XENSTORE_RING_SIZE;
            memory.read(ring::REQ_OFFSET + offset, &mut one);
            *byte = one[0];
        }
        memory.store_u32(ring::REQ_CONS_OFFSET, prod);
        let mut input = bytes.as_slice();
        while !input.is_empty() {
            if let Some(message) = self.decoder.feed(&mut input).unwrap() {
                self.handle(message);
            }
        }
        let prod = memory.load_u32(ring::RSP_PROD_OFFSET);
        let cons = memory.load_u32(ring::RSP_CONS_OFFSET);
        let free = ring::XENSTORE_RING_SIZE - prod.wrapping_sub(cons) as usize;
        let count = free.min(self.output.len());
        for i in 0..count {
            let byte = self.output.pop_front().unwrap();
            let offset = prod.wrapping_add(i as u32) as usize % ring::XENSTORE_RING_SIZE;
            memory.write(ring::RSP_OFFSET + offset, &[byte]);
        }
        memory.store_u32(ring::RSP_PROD_OFFSET, prod.wrapping_add(count as u32));
    }
}

impl Notifier for Daemon {
    fn notify(&mut self) {
        self.notified = true;
    }

    fn wait(&mut self) -> bool {
        if !std::mem::take(&mut self.notified) {
            // xenstored is asleep and nobody woke it.
            return false;
        }
        self.run();
        true
    }
}

type Client = BlockingXenstore<LocalMemory, Daemon>;

const BACKEND: &str = "/local/domain/4/backend/vbd/5/51728";
const FRONTEND: &str = "/local/domain/5/device/vbd/51728";

fn client() -> Client {
    let memory = LocalMemory::pages(1);
    let ring = XenstoreRing::new(memory.clone()).unwrap();
    let mut client = BlockingXenstore::new(ring, Daemon::new(memory));
    let daemon = client.notifier_mut();
    for (key, value) in [
        ("frontend", FRONTEND),
        ("frontend-id", "5"),
        ("online", "1"),
        ("state", "1"),
        ("params", "/srv/disk.img"),
    ] {
        daemon.set(&format!("{BACKEND}/{key}"), value);
    }
    daemon.set(&format!("{FRONTEND}/state"), "1");
    client
}

/// Delivers pending watch events to the device as an engine would, with a
/// datapath that is just a flag.
fn pump(xs: &mut Client, device: &mut BackendDevice, datapath: &mut bool) -> Vec<Action> {
    let mut seen = Vec::new();
    loop {
        // xenstored flushes what it has queued (the ring may need several
        // rounds), the client collects it.
        xs.notifier_mut().run();
        xs.poll_watch_events().unwrap();
        let Some(event) = xs.take_watch_event() else {
            if xs.notifier_mut().output.is_empty() {
                return seen;
            }
            continue;
        };
        let mut action = device.on_watch(xs, &event.path);
        loop {
            seen.push(action);
            action = match action {
                Action::None | Action::Remove => break,
                Action::Connect => {
                    let ring_ref = device.read_frontend(xs, "ring-ref", value::parse_grant_ref);
                    match ring_ref {
                        Ok(_) => {
                            *datapath = true;
                            device.connected(xs)
                        }
                        Err(error) => device.fail(xs, &format!("{error}")),
                    }
                }
                Action::Disconnect => {
                    *datapath = false;
                    device.disconnected(xs)
                }
            };
        }
    }
}

#[test]
fn handshake_over_the_ring() {
    let mut xs = client();
    let directory = BackendDirectory::new("vbd");
    directory.watch(&mut xs, "dir").unwrap();
    xs.poll_watch_events().unwrap();
    let event = xs.take_watch_event().unwrap();
    assert_eq!(
        (event.path.as_str(), event.token.as_str()),
        ("backend/vbd", "dir")
    );
    assert_eq!(directory.list(&mut xs, 16).unwrap().len(), 1);

    let address = directory
        .recognise("backend/vbd/5/51728/state")
        .unwrap()
        .unwrap();
    let mut device = BackendDevice::new(&directory, address);
    device.probe(&mut xs).unwrap();
    let params = device
        .read_backend(&mut xs, "params", |v| {
            value::parse_text(v, 256).map(String::from)
        })
        .unwrap();
    assert_eq!(params, "/srv/disk.img");
    device
        .start(
            &mut xs,
            &[("sectors", "32768"), ("feature-flush-cache", "1")],
            "vbd-5-51728",
        )
        .unwrap();
    let daemon = xs.notifier_mut();
    assert_eq!(daemon.get(&format!("{BACKEND}/state")), Some("2"));
    assert_eq!(daemon.get(&format!("{BACKEND}/sectors")), Some("32768"));
    assert_eq!(
        daemon.get(&format!("{BACKEND}/hotplug-status")),
        Some("connected")
    );

    let mut datapath = false;
    pump(&mut xs, &mut device, &mut datapath);
    assert_eq!(device.phase(), Phase::Idle(xenbus::XenbusState::InitWait));

    // The frontend publishes its ring and moves on.
    let daemon = xs.notifier_mut();
    daemon.set(&format!("{FRONTEND}/ring-ref"), "8");
    daemon.set(&format!("{FRONTEND}/event-channel"), "9");
    daemon.set(&format!("{FRONTEND}/state"), "3");
    let actions = pump(&mut xs, &mut device, &mut datapath);
    assert!(actions.contains(&Action::Connect), "{actions:?}");
    assert!(datapath);
    assert_eq!(
        xs.notifier_mut().get(&format!("{BACKEND}/state")),
        Some("4")
    );

    // block-detach.
    let daemon = xs.notifier_mut();
    daemon.set(&format!("{BACKEND}/online"), "0");
    daemon.set(&format!("{BACKEND}/state"), "5");
    pump(&mut xs, &mut device, &mut datapath);
    assert!(!datapath);
    assert_eq!(
        xs.notifier_mut().get(&format!("{BACKEND}/state")),
        Some("5")
    );
    xs.notifier_mut().set(&format!("{FRONTEND}/state"), "6");
    let actions = pump(&mut xs, &mut device, &mut datapath);
    // Events queued before the unwatch still arrive; the device keeps
    // answering Remove to the relevant ones.
    assert!(actions.contains(&Action::Remove), "{actions:?}");
    assert_eq!(device.phase(), Phase::Removed);
    assert_eq!(
        xs.notifier_mut().get(&format!("{BACKEND}/state")),
        Some("6")
    );
    // Only the directory watch is left.
    assert_eq!(
        xs.notifier_mut().watches,
        [("backend/vbd".to_string(), "dir".to_string())]
    );
}

#[test]
fn transactions_conflict_and_retry_over_the_ring() {
    let mut xs = client();
    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "backend/vbd/5/51728/x", "1").unwrap();
    // Another domain changes the store meanwhile.
    xs.notifier_mut().set("/elsewhere", "1");
    assert_eq!(xs.transaction_end(tx, true), Err(XsError::Eagain));
    assert_eq!(
        xs.read(TxId::NONE, "backend/vbd/5/51728/x"),
        Err(XsError::Enoent)
    );

    let mut attempts = 0;
    let result = xenbus::backend::with_transaction(&mut xs, |xs, tx| {
        attempts += 1;
        if attempts < 3 {
            xs.notifier_mut().set("/elsewhere", &attempts.to_string());
        }
        xs.write(tx, "backend/vbd/5/51728/x", "2")?;
        Ok(())
    });
    assert_eq!(result, Ok(()));
    assert_eq!(attempts, 3);
    assert_eq!(xs.read(TxId::NONE, "backend/vbd/5/51728/x").unwrap(), "2");
}
