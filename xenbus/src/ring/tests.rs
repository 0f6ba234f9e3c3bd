//! Ring client tests against a small xenstored over `LocalMemory`.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;
use xen_ring::{LocalMemory, SharedMemory};

use super::*;
use crate::platform::{Access, Permission, TxId, Xenstore, XsError};
use crate::wire::{Header, Message, MessageType, Reply, Request, StreamDecoder, WatchEvent};

/// The xenstored end of the page: consumes `req`, produces `rsp`, at most
/// `chunk` bytes per direction per step, so messages arrive in pieces.
struct FakeDaemon {
    memory: LocalMemory,
    chunk: usize,
    decoder: StreamDecoder,
    nodes: BTreeMap<String, Vec<u8>>,
    replies: VecDeque<u8>,
    next_tx: u32,
    steps: usize,
    notified: usize,
    /// `wait` gives up after this many steps.
    patience: usize,
    /// The client notified since the daemon last looked.
    notify_pending: bool,
    /// The daemon is running rather than asleep on its event channel.
    awake: bool,
}

impl FakeDaemon {
    fn new(memory: LocalMemory, chunk: usize) -> Self {
        Self {
            memory,
            chunk,
            decoder: StreamDecoder::new(),
            nodes: BTreeMap::new(),
            replies: VecDeque::new(),
            next_tx: 0,
            steps: 0,
            notified: 0,
            patience: 10_000,
            notify_pending: false,
            awake: false,
        }
    }

    /// One pass over both rings; returns how many bytes it moved.
    fn step(&mut self) -> usize {
        self.steps += 1;
        // Consume requests.
        let cons = self.memory.load_u32(REQ_CONS_OFFSET);
        let prod = self.memory.load_u32(REQ_PROD_OFFSET);
        let count = (prod.wrapping_sub(cons) as usize).min(self.chunk);
        let moved = count;
        let mut bytes = vec![0; count];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let mut one = [0];
            self.memory
                .read(REQ_OFFSET + mask(cons.wrapping_add(i as u32)), &mut one);
            *byte = one[0];
        }
        self.memory
            .store_u32(REQ_CONS_OFFSET, cons.wrapping_add(count as u32));
        let mut input = bytes.as_slice();
        while !input.is_empty() {
            if let Some(message) = self.decoder.feed(&mut input).unwrap() {
                self.handle(message);
            }
        }
        // Produce replies.
        let prod = self.memory.load_u32(RSP_PROD_OFFSET);
        let cons = self.memory.load_u32(RSP_CONS_OFFSET);
        let free = XENSTORE_RING_SIZE - prod.wrapping_sub(cons) as usize;
        let count = free.min(self.chunk).min(self.replies.len());
        for i in 0..count {
            let byte = self.replies.pop_front().unwrap();
            self.memory
                .write(RSP_OFFSET + mask(prod.wrapping_add(i as u32)), &[byte]);
        }
        self.memory
            .store_u32(RSP_PROD_OFFSET, prod.wrapping_add(count as u32));
        moved + count
    }

    fn reply(&mut self, request: MessageType, header: &Header, reply: Reply) {
        let mut bytes = Vec::new();
        reply
            .encode(request, header.req_id, header.tx_id, &mut bytes)
            .unwrap();
        self.replies.extend(bytes);
    }

    fn event(&mut self, path: &str, token: &str) {
        let mut bytes = Vec::new();
        WatchEvent {
            path: path.into(),
            token: token.into(),
        }
        .encode(&mut bytes)
        .unwrap();
        self.replies.extend(bytes);
    }

    fn handle(&mut self, message: Message) {
        let header = message.header;
        let request = Request::decode(header.kind, &message.payload).unwrap();
        let reply = match request {
            Request::Read { path } => match self.nodes.get(path) {
                Some(value) => Reply::Value(value.clone()),
                None => Reply::Error(XsError::Enoent),
            },
            Request::Write { path, value } => {
                self.nodes.insert(path.into(), value.to_vec());
                Reply::Ok
            }
            Request::Mkdir { path } => {
                self.nodes.entry(path.into()).or_default();
                Reply::Ok
            }
            Request::Rm { path } => {
                self.nodes.remove(path);
                Reply::Ok
            }
            Request::Directory { path } => {
                let below = alloc::format!("{path}/");
                Reply::Directory(
                    self.nodes
                        .keys()
                        .filter_map(|key| key.strip_prefix(&below))
                        .map(ToString::to_string)
                        .collect(),
                )
            }
            Request::GetPerms { .. } => Reply::Perms(vec![
                Permission {
                    domid: 4,
                    access: Access::None,
                },
                Permission {
                    domid: 5,
                    access: Access::Read,
                },
            ]),
            Request::SetPerms { .. } | Request::Unwatch { .. } => Reply::Ok,
            Request::Watch { path, token } => {
                let (path, token) = (path.to_string(), token.to_string());
                self.reply(header.kind, &header, Reply::Ok);
                // A new watch fires once at once.
                self.event(&path, &token);
                return;
            }
            Request::TransactionStart => {
                self.next_tx += 1;
                Reply::TransactionStarted(TxId(self.next_tx))
            }
            Request::TransactionEnd { commit } => {
                if commit && header.tx_id == 0 {
                    Reply::Error(XsError::Einval)
                } else {
                    Reply::Ok
                }
            }
        };
        self.reply(header.kind, &header, reply);
    }
}

/// Behaves like xenstored on its event channel: it wakes only when
/// notified, works while it can make progress, then sleeps again. A client
/// that forgets a notification therefore waits forever, which `wait`
/// reports as giving up.
impl Notifier for FakeDaemon {
    fn notify(&mut self) {
        self.notified += 1;
        self.notify_pending = true;
    }

    fn wait(&mut self) -> bool {
        if core::mem::take(&mut self.notify_pending) {
            self.awake = true;
        }
        if !self.awake || self.steps >= self.patience {
            return false;
        }
        self.step();
        // Like xenstored, keep going while there is input to read or output
        // with room to write it; a full `rsp` ring or an idle one puts the
        // daemon to sleep until the client notifies.
        let unread = self
            .memory
            .load_u32(REQ_PROD_OFFSET)
            .wrapping_sub(self.memory.load_u32(REQ_CONS_OFFSET));
        let unwritten = !self.replies.is_empty()
            && self
                .memory
                .load_u32(RSP_PROD_OFFSET)
                .wrapping_sub(self.memory.load_u32(RSP_CONS_OFFSET))
                < XENSTORE_RING_SIZE as u32;
        self.awake = unread != 0 || unwritten;
        true
    }
}

fn page() -> LocalMemory {
    LocalMemory::pages(1)
}

fn client(chunk: usize) -> BlockingXenstore<LocalMemory, FakeDaemon> {
    let memory = page();
    let ring = XenstoreRing::new(memory.clone()).unwrap();
    BlockingXenstore::new(ring, FakeDaemon::new(memory, chunk))
}

#[test]
fn layout_matches_xenstore_domain_interface() {
    assert_eq!(REQ_CONS_OFFSET, 2048);
    assert_eq!(REQ_PROD_OFFSET, 2052);
    assert_eq!(RSP_CONS_OFFSET, 2056);
    assert_eq!(RSP_PROD_OFFSET, 2060);
    assert_eq!(SERVER_FEATURES_OFFSET, 2064);
    assert_eq!(CONNECTION_OFFSET, 2068);
    assert_eq!(ERROR_OFFSET, 2072);
    assert_eq!(INTERFACE_LEN, 2076);
}

#[test]
fn every_operation_through_the_ring() {
    for chunk in [1, 7, 16, 1024] {
        let mut xs = client(chunk);
        xs.write(TxId::NONE, "/a/b", "hello").unwrap();
        assert_eq!(xs.read(TxId::NONE, "/a/b").unwrap(), "hello");
        assert_eq!(xs.read(TxId::NONE, "/nope"), Err(XsError::Enoent));
        xs.mkdir(TxId::NONE, "/a/c").unwrap();
        let mut names = xs.directory(TxId::NONE, "/a").unwrap();
        names.sort();
        assert_eq!(names, ["b", "c"]);
        xs.rm(TxId::NONE, "/a/c").unwrap();
        assert_eq!(xs.read(TxId::NONE, "/a/c"), Err(XsError::Enoent));
        assert_eq!(xs.get_perms(TxId::NONE, "/a").unwrap().len(), 2);
        xs.set_perms(
            TxId::NONE,
            "/a",
            &[Permission {
                domid: 0,
                access: Access::Both,
            }],
        )
        .unwrap();
        let tx = xs.transaction_start().unwrap();
        assert_ne!(tx, TxId::NONE);
        xs.write(tx, "/t", "1").unwrap();
        xs.transaction_end(tx, true).unwrap();
        assert_eq!(xs.transaction_end(TxId::NONE, true), Err(XsError::Einval));
        xs.watch("backend/vbd", "tok").unwrap();
        xs.unwatch("backend/vbd", "tok").unwrap();
        assert_eq!(
            xs.take_watch_event(),
            Some(WatchEvent {
                path: "backend/vbd".into(),
                token: "tok".into()
            })
        );
        assert_eq!(xs.take_watch_event(), None);
        assert_eq!(xs.ring().in_flight(), 0);
        assert!(xs.notifier_mut().notified > 0);
    }
}

#[test]
fn values_larger_than_the_ring_cross_it_in_pieces() {
    for chunk in [1, 100, 1000, 1024] {
        let mut xs = client(chunk);
        let value: String = (0..4000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        xs.write(TxId::NONE, "/big", &value).unwrap();
        assert_eq!(xs.read(TxId::NONE, "/big").unwrap(), value);
    }
}

#[test]
fn indices_wrap_around_u32() {
    let memory = page();
    let start = u32::MAX - 20;
    for offset in [
        REQ_CONS_OFFSET,
        REQ_PROD_OFFSET,
        RSP_CONS_OFFSET,
        RSP_PROD_OFFSET,
    ] {
        memory.store_u32(offset, start);
    }
    let ring = XenstoreRing::new(memory.clone()).unwrap();
    let mut xs = BlockingXenstore::new(ring, FakeDaemon::new(memory.clone(), 64));
    for round in 0..10 {
        let value = alloc::format!("value-{round}");
        xs.write(TxId::NONE, "/k", &value).unwrap();
        assert_eq!(xs.read(TxId::NONE, "/k").unwrap(), value);
    }
    assert!(
        memory.load_u32(REQ_PROD_OFFSET) < start,
        "the index wrapped"
    );
}

#[test]
fn notify_is_requested_after_producing_and_after_consuming() {
    let memory = page();
    let mut ring = XenstoreRing::new(memory.clone()).unwrap();
    let mut daemon = FakeDaemon::new(memory, 1024);
    assert!(!ring.take_notify());
    let id = ring
        .send(&Request::Read { path: "/x" }, TxId::NONE)
        .unwrap();
    assert!(ring.take_notify());
    assert!(!ring.take_notify());
    assert_eq!(ring.poll(), Ok(None));
    assert!(!ring.take_notify(), "nothing moved");
    daemon.step();
    assert_eq!(
        ring.poll(),
        Ok(Some(Event::Reply {
            req_id: id,
            result: Err(XsError::Enoent)
        }))
    );
    assert!(ring.take_notify());
}

#[test]
fn requests_larger_than_free_space_are_queued_until_xenstored_consumes() {
    let memory = page();
    let mut ring = XenstoreRing::new(memory.clone()).unwrap();
    let mut daemon = FakeDaemon::new(memory.clone(), 10_000);
    let value = vec![b'x'; 3000];
    let id = ring
        .send(
            &Request::Write {
                path: "/v",
                value: &value,
            },
            TxId::NONE,
        )
        .unwrap();
    assert_eq!(memory.load_u32(REQ_PROD_OFFSET), XENSTORE_RING_SIZE as u32);
    let mut result = None;
    for _ in 0..10 {
        daemon.step();
        if let Some(event) = ring.poll().unwrap() {
            result = Some(event);
            break;
        }
    }
    assert_eq!(
        result,
        Some(Event::Reply {
            req_id: id,
            result: Ok(Reply::Ok)
        })
    );
    assert_eq!(daemon.nodes.get("/v"), Some(&value));
}

#[test]
fn pipelined_requests_get_their_own_replies() {
    let memory = page();
    let mut ring = XenstoreRing::new(memory.clone()).unwrap();
    let mut daemon = FakeDaemon::new(memory, 1024);
    daemon.nodes.insert("/a".into(), b"1".to_vec());
    daemon.nodes.insert("/b".into(), b"2".to_vec());
    let a = ring
        .send(&Request::Read { path: "/a" }, TxId::NONE)
        .unwrap();
    let b = ring
        .send(&Request::Read { path: "/b" }, TxId::NONE)
        .unwrap();
    assert_ne!(a, b);
    daemon.step();
    let mut replies = Vec::new();
    while let Some(event) = ring.poll().unwrap() {
        replies.push(event);
    }
    assert_eq!(
        replies,
        [
            Event::Reply {
                req_id: a,
                result: Ok(Reply::Value(b"1".to_vec()))
            },
            Event::Reply {
                req_id: b,
                result: Ok(Reply::Value(b"2".to_vec()))
            },
        ]
    );
}

#[test]
fn in_flight_requests_are_bounded() {
    let mut ring = XenstoreRing::new(page()).unwrap();
    for _ in 0..MAX_IN_FLIGHT {
        ring.send(&Request::Read { path: "/x" }, TxId::NONE)
            .unwrap();
    }
    assert_eq!(
        ring.send(&Request::Read { path: "/x" }, TxId::NONE),
        Err(SendError::TooManyInFlight)
    );
    assert_eq!(
        ring.send(&Request::Read { path: "" }, TxId::NONE),
        Err(SendError::TooManyInFlight)
    );
    ring.forget(ReqId(1));
    assert_eq!(
        ring.send(&Request::Read { path: "" }, TxId::NONE),
        Err(SendError::Encode(EncodeError::EmptyString))
    );
    assert!(ring.send(&Request::Read { path: "/x" }, TxId::NONE).is_ok());
}

#[test]
fn short_mapping_is_refused() {
    assert_eq!(
        XenstoreRing::new(LocalMemory::new(INTERFACE_LEN - 1)).unwrap_err(),
        RingError::MappingTooSmall
    );
}

/// Writes raw bytes into `rsp` as a hostile xenstored would.
fn produce(memory: &LocalMemory, bytes: &[u8]) {
    let prod = memory.load_u32(RSP_PROD_OFFSET);
    for (i, byte) in bytes.iter().enumerate() {
        memory.write(RSP_OFFSET + mask(prod.wrapping_add(i as u32)), &[*byte]);
    }
    memory.store_u32(RSP_PROD_OFFSET, prod.wrapping_add(bytes.len() as u32));
}

fn raw_message(kind: MessageType, req_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Header {
        kind,
        req_id,
        tx_id: 0,
        len: payload.len() as u32,
    }
    .to_bytes()
    .to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn impossible_response_producer_breaks_the_ring() {
    for rsp_prod in [XENSTORE_RING_SIZE as u32 + 1, u32::MAX, 0x8000_0000] {
        let memory = page();
        let mut ring = XenstoreRing::new(memory.clone()).unwrap();
        memory.store_u32(RSP_PROD_OFFSET, rsp_prod);
        let error = RingError::BadResponseProducer {
            rsp_prod,
            rsp_cons: 0,
        };
        assert_eq!(ring.poll(), Err(error));
        assert_eq!(ring.broken(), Some(error));
        // It stays broken even if the peer repairs the index.
        memory.store_u32(RSP_PROD_OFFSET, 0);
        assert_eq!(ring.poll(), Err(error));
        assert_eq!(
            ring.send(&Request::Read { path: "/x" }, TxId::NONE),
            Err(SendError::Broken(error))
        );
    }
    // The same is refused when found at start-up.
    let memory = page();
    memory.store_u32(RSP_PROD_OFFSET, 5000);
    assert!(matches!(
        XenstoreRing::new(memory),
        Err(RingError::BadResponseProducer { .. })
    ));
}

#[test]
fn impossible_request_consumer_breaks_the_ring() {
    for req_cons in [1, 0x8000_0000, u32::MAX - XENSTORE_RING_SIZE as u32] {
        let memory = page();
        let mut ring = XenstoreRing::new(memory.clone()).unwrap();
        memory.store_u32(REQ_CONS_OFFSET, req_cons);
        assert_eq!(
            ring.send(&Request::Read { path: "/x" }, TxId::NONE),
            Err(SendError::Broken(RingError::BadRequestConsumer {
                req_cons,
                req_prod: 0
            }))
        );
    }
}

#[test]
fn oversized_or_unknown_headers_break_the_ring() {
    for (bytes, error) in [
        (
            raw_message(MessageType::Read, 1, &[]),
            None, // a fine, if unexpected, message
        ),
        (
            {
                let mut bytes = raw_message(MessageType::Read, 1, &[]);
                bytes[12..16].copy_from_slice(&5000u32.to_le_bytes());
                bytes
            },
            Some(DecodeError::PayloadTooLarge(5000)),
        ),
        (
            {
                let mut bytes = raw_message(MessageType::Read, 1, &[]);
                bytes[0..4].copy_from_slice(&99u32.to_le_bytes());
                bytes
            },
            Some(DecodeError::UnknownType(99)),
        ),
    ] {
        let memory = page();
        let mut ring = XenstoreRing::new(memory.clone()).unwrap();
        produce(&memory, &bytes);
        match error {
            None => assert_eq!(ring.poll(), Ok(None)),
            Some(error) => assert_eq!(ring.poll(), Err(RingError::Stream(error))),
        }
    }
}

#[test]
fn stray_wrong_and_malformed_replies() {
    let memory = page();
    let mut ring = XenstoreRing::new(memory.clone()).unwrap();
    let read = ring
        .send(&Request::Read { path: "/x" }, TxId::NONE)
        .unwrap();
    let write = ring
        .send(
            &Request::Write {
                path: "/x",
                value: b"1",
            },
            TxId::NONE,
        )
        .unwrap();
    let start = ring.send(&Request::TransactionStart, TxId::NONE).unwrap();
    // A reply nobody asked for is dropped.
    produce(&memory, &raw_message(MessageType::Read, 999, b"zzz"));
    // A reply of the wrong type fails its request.
    produce(&memory, &raw_message(MessageType::Directory, read.0, b""));
    // A malformed body fails its request, and the stream goes on.
    produce(&memory, &raw_message(MessageType::Write, write.0, b"NO\0"));
    produce(
        &memory,
        &raw_message(MessageType::WatchEvent, 0, b"only-path\0"),
    );
    produce(
        &memory,
        &raw_message(MessageType::Error, start.0, b"EWHAT\0"),
    );
    produce(&memory, &raw_message(MessageType::WatchEvent, 0, b"p\0t\0"));
    let mut events = Vec::new();
    while let Some(event) = ring.poll().unwrap() {
        events.push(event);
    }
    assert_eq!(
        events,
        [
            Event::Reply {
                req_id: read,
                result: Err(XsError::Protocol)
            },
            Event::Reply {
                req_id: write,
                result: Err(XsError::Protocol)
            },
            Event::Reply {
                req_id: start,
                result: Err(XsError::Protocol)
            },
            Event::Watch(WatchEvent {
                path: "p".into(),
                token: "t".into()
            }),
        ]
    );
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn server_error_field_breaks_the_ring_when_advertised() {
    let memory = page();
    let mut ring = XenstoreRing::new(memory.clone()).unwrap();
    memory.store_u32(ERROR_OFFSET, 3);
    assert_eq!(
        ring.poll(),
        Ok(None),
        "the field means nothing unless advertised"
    );
    memory.store_u32(SERVER_FEATURES_OFFSET, XENSTORE_SERVER_FEATURE_ERROR);
    assert_eq!(ring.server_features(), XENSTORE_SERVER_FEATURE_ERROR);
    assert_eq!(ring.connection(), XENSTORE_CONNECTED);
    assert_eq!(ring.poll(), Err(RingError::ServerError(3)));
}

#[test]
fn a_silent_xenstored_times_out_and_the_late_reply_is_dropped() {
    let mut xs = client(1024);
    xs.notifier_mut().patience = 0;
    assert_eq!(xs.read(TxId::NONE, "/x"), Err(XsError::Eio));
    assert_eq!(xs.ring().in_flight(), 0);
    xs.notifier_mut().patience = usize::MAX;
    xs.notifier_mut().step();
    xs.write(TxId::NONE, "/y", "1").unwrap();
    assert_eq!(xs.read(TxId::NONE, "/y").unwrap(), "1");
}

#[test]
fn watch_events_queue_is_bounded() {
    let memory = page();
    let ring = XenstoreRing::new(memory.clone()).unwrap();
    let mut xs = BlockingXenstore::new(ring, FakeDaemon::new(memory, 1024));
    for round in 0..(MAX_QUEUED_WATCH_EVENTS / 40 + 2) {
        for i in 0..40 {
            xs.notifier_mut()
                .event(&alloc::format!("/p{round}-{i}"), "t");
        }
        while !xs.notifier_mut().replies.is_empty() {
            xs.notifier_mut().step();
            xs.poll_watch_events().unwrap();
        }
    }
    let mut count = 0;
    let mut last = None;
    while let Some(event) = xs.take_watch_event() {
        count += 1;
        last = Some(event.path);
    }
    assert_eq!(count, MAX_QUEUED_WATCH_EVENTS);
    assert_eq!(
        last.as_deref(),
        Some(alloc::format!("/p{}-39", MAX_QUEUED_WATCH_EVENTS / 40 + 1).as_str())
    );
}

#[test]
fn a_maximal_reply_is_assembled_across_ring_fills() {
    let memory = page();
    let mut ring = XenstoreRing::new(memory.clone()).unwrap();
    let id = ring
        .send(&Request::Read { path: "/x" }, TxId::NONE)
        .unwrap();
    let value: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let bytes = raw_message(MessageType::Read, id.0, &value);
    let mut pieces = bytes.chunks(XENSTORE_RING_SIZE);
    produce(&memory, pieces.next().unwrap());
    assert_eq!(ring.poll(), Ok(None));
    assert_eq!(memory.load_u32(RSP_CONS_OFFSET), XENSTORE_RING_SIZE as u32);
    let mut result = None;
    for piece in pieces {
        assert_eq!(result, None);
        produce(&memory, piece);
        result = ring.poll().unwrap();
    }
    assert_eq!(
        result,
        Some(Event::Reply {
            req_id: id,
            result: Ok(Reply::Value(value))
        })
    );
}

proptest! {
    #[test]
    fn random_response_bytes_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1024), 1..8),
        start in any::<u32>(),
        sends in 0usize..4,
    ) {
        let memory = page();
        for offset in [REQ_CONS_OFFSET, REQ_PROD_OFFSET, RSP_CONS_OFFSET, RSP_PROD_OFFSET] {
            memory.store_u32(offset, start);
        }
        let mut ring = XenstoreRing::new(memory.clone()).unwrap();
        for _ in 0..sends {
            let _ = ring.send(&Request::Read { path: "/x" }, TxId::NONE);
        }
        for chunk in chunks {
            let prod = memory.load_u32(RSP_PROD_OFFSET);
            let cons = memory.load_u32(RSP_CONS_OFFSET);
            let free = XENSTORE_RING_SIZE - prod.wrapping_sub(cons) as usize;
            produce(&memory, &chunk[..chunk.len().min(free)]);
            for _ in 0..4 {
                match ring.poll() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn random_peer_indices_never_panic(
        req_cons in any::<u32>(),
        rsp_prod in any::<u32>(),
        start in any::<u32>(),
    ) {
        let memory = page();
        for offset in [REQ_CONS_OFFSET, REQ_PROD_OFFSET, RSP_CONS_OFFSET, RSP_PROD_OFFSET] {
            memory.store_u32(offset, start);
        }
        let mut ring = XenstoreRing::new(memory.clone()).unwrap();
        memory.store_u32(REQ_CONS_OFFSET, req_cons);
        memory.store_u32(RSP_PROD_OFFSET, rsp_prod);
        let sent = ring.send(&Request::Read { path: "/x" }, TxId::NONE);
        let polled = ring.poll();
        let consumer_ok = start.wrapping_sub(req_cons) as usize <= XENSTORE_RING_SIZE;
        let producer_ok = rsp_prod.wrapping_sub(start) as usize <= XENSTORE_RING_SIZE;
        prop_assert_eq!(sent.is_ok(), consumer_ok);
        if !(consumer_ok && producer_ok) {
            prop_assert!(polled.is_err());
        }
    }

    #[test]
    fn writes_read_back_through_any_chunking(
        values in proptest::collection::vec(proptest::collection::vec(b'!'..=b'~', 0..3000), 1..4),
        chunk in 1usize..1100,
        start in any::<u32>(),
    ) {
        let memory = page();
        for offset in [REQ_CONS_OFFSET, REQ_PROD_OFFSET, RSP_CONS_OFFSET, RSP_PROD_OFFSET] {
            memory.store_u32(offset, start);
        }
        let ring = XenstoreRing::new(memory.clone()).unwrap();
        let mut xs = BlockingXenstore::new(ring, FakeDaemon::new(memory, chunk));
        // The daemon's default patience (its steps in all) is for one
        // exchange; here up to 9 KB go each way, a byte a step at worst.
        // A lost notification still fails at once: an idle daemon does
        // not wait.
        xs.notifier_mut().patience = 100_000;
        for (i, value) in values.iter().enumerate() {
            let value = core::str::from_utf8(value).unwrap();
            let path = alloc::format!("/v{i}");
            xs.write(TxId::NONE, &path, value).unwrap();
            prop_assert_eq!(xs.read(TxId::NONE, &path).unwrap(), value);
        }
    }
}
