//! The xenstore client on the domain's store ring
//! (`xen/include/public/io/xs_wire.h`): one request outstanding at a time,
//! replies matched by `req_id`, watch events queued for the main loop.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicU32, Ordering};

use xenbus::platform::{Permission, TxId, Xenstore, XsError};

use super::abi::StartInfo;
use super::Global;

const RING_SIZE: u32 = 1024;
const REQUEST_OFFSET: usize = 0;
const RESPONSE_OFFSET: usize = 1024;
const REQ_CONS: usize = 2048;
const REQ_PROD: usize = 2052;
const RSP_CONS: usize = 2056;
const RSP_PROD: usize = 2060;
/// `XENSTORE_PAYLOAD_MAX`.
const PAYLOAD_MAX: usize = 4096;

const XS_DIRECTORY: u32 = 1;
const XS_READ: u32 = 2;
const XS_GET_PERMS: u32 = 3;
const XS_WATCH: u32 = 4;
const XS_UNWATCH: u32 = 5;
const XS_TRANSACTION_START: u32 = 6;
const XS_TRANSACTION_END: u32 = 7;
const XS_WRITE: u32 = 11;
const XS_MKDIR: u32 = 12;
const XS_RM: u32 = 13;
const XS_SET_PERMS: u32 = 14;
const XS_WATCH_EVENT: u32 = 15;
const XS_ERROR: u32 = 16;

/// A watch that fired: the node that changed and the watch's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The path that changed (or the watched path, on registration).
    pub path: String,
    /// The token given to [`Xenstore::watch`].
    pub token: String,
}

struct Store {
    ring: u64,
    evtchn: u32,
    next_request_id: u32,
    watch_events: VecDeque<WatchEvent>,
}

static STORE: Global<Store> = Global::new(Store {
    ring: 0,
    evtchn: 0,
    next_request_id: 1,
    watch_events: VecDeque::new(),
});

/// Maps the store ring and unmasks its port.
pub fn init(start_info: &StartInfo) {
    let mut store = STORE.borrow_mut();
    store.ring = super::mm::mfn_to_virt(start_info.store_mfn);
    store.evtchn = start_info.store_evtchn;
    super::events::unmask(store.evtchn);
}

/// The store ring's event channel.
pub fn store_port() -> u32 {
    STORE.borrow().evtchn
}

fn index(ring: u64, offset: usize) -> &'static AtomicU32 {
    // SAFETY: `offset` is one of the aligned ring indices of the mapped
    // store page; xenstored updates them concurrently, so access is atomic.
    unsafe { AtomicU32::from_ptr((ring as usize + offset) as *mut u32) }
}

impl Store {
    fn send(&self, bytes: &[u8]) {
        let consumer = index(self.ring, REQ_CONS);
        let producer = index(self.ring, REQ_PROD);
        let mut sent = 0;
        while sent < bytes.len() {
            let produced = producer.load(Ordering::Relaxed);
            let in_flight = produced.wrapping_sub(consumer.load(Ordering::Acquire));
            if in_flight >= RING_SIZE {
                super::events::notify_port(self.evtchn);
                super::events::wait_for_any_event();
                continue;
            }
            let room = (RING_SIZE - in_flight) as usize;
            let start = (produced % RING_SIZE) as usize;
            let chunk = room.min(bytes.len() - sent).min(RING_SIZE as usize - start);
            for (step, &byte) in bytes[sent..sent + chunk].iter().enumerate() {
                // SAFETY: inside the request array of the mapped store page.
                unsafe {
                    ((self.ring as usize + REQUEST_OFFSET + start + step) as *mut u8).write_volatile(byte)
                };
            }
            fence(Ordering::Release);
            producer.store(produced.wrapping_add(chunk as u32), Ordering::Release);
            super::events::notify_port(self.evtchn);
            sent += chunk;
        }
    }

    /// Bytes of response waiting in the ring.
    fn available(&self) -> u32 {
        let produced = index(self.ring, RSP_PROD).load(Ordering::Acquire);
        let consumed = index(self.ring, RSP_CONS).load(Ordering::Relaxed);
        produced.wrapping_sub(consumed)
    }

    /// Copies `destination.len()` response bytes out, waiting as needed.
    fn receive(&self, destination: &mut [u8]) {
        let consumer = index(self.ring, RSP_CONS);
        let mut received = 0;
        while received < destination.len() {
            let available = self.available().min(RING_SIZE) as usize;
            if available == 0 {
                super::events::wait_for_any_event();
                continue;
            }
            let consumed = consumer.load(Ordering::Relaxed);
            let start = (consumed % RING_SIZE) as usize;
            let chunk = available
                .min(destination.len() - received)
                .min(RING_SIZE as usize - start);
            fence(Ordering::Acquire);
            for step in 0..chunk {
                // SAFETY: inside the response array of the mapped store page.
                destination[received + step] = unsafe {
                    ((self.ring as usize + RESPONSE_OFFSET + start + step) as *const u8).read_volatile()
                };
            }
            fence(Ordering::Release);
            consumer.store(consumed.wrapping_add(chunk as u32), Ordering::Release);
            super::events::notify_port(self.evtchn);
            received += chunk;
        }
    }

    /// Reads one whole message: (type, request id, body).
    fn receive_message(&self) -> Result<(u32, u32, Vec<u8>), XsError> {
        let mut header = [0u8; 16];
        self.receive(&mut header);
        let word = |index: usize| u32::from_le_bytes(header[index * 4..index * 4 + 4].try_into().unwrap_or_default());
        let length = word(3) as usize;
        if length > PAYLOAD_MAX {
            // xenstored never sends this; the stream is out of sync.
            log::error!("xenstore: reply of {length} bytes exceeds XENSTORE_PAYLOAD_MAX");
            return Err(XsError::Protocol);
        }
        let mut body = alloc::vec![0u8; length];
        self.receive(&mut body);
        Ok((word(0), word(1), body))
    }

    fn queue_watch_event(&mut self, body: &[u8]) {
        let mut parts = body.split(|&byte| byte == 0);
        let path = parts.next().map(String::from_utf8_lossy);
        let token = parts.next().map(String::from_utf8_lossy);
        if let (Some(path), Some(token)) = (path, token) {
            self.watch_events.push_back(WatchEvent {
                path: path.into_owned(),
                token: token.into_owned(),
            });
        }
    }

    fn request(&mut self, kind: u32, tx: TxId, parts: &[&[u8]]) -> Result<Vec<u8>, XsError> {
        let length: usize = parts.iter().map(|part| part.len()).sum();
        if length > PAYLOAD_MAX {
            return Err(XsError::E2big);
        }
        let request_id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        let mut message = Vec::with_capacity(16 + length);
        for word in [kind, request_id, tx.0, length as u32] {
            message.extend_from_slice(&word.to_le_bytes());
        }
        for part in parts {
            message.extend_from_slice(part);
        }
        self.send(&message);
        loop {
            let (reply_kind, reply_id, body) = self.receive_message()?;
            if reply_kind == XS_WATCH_EVENT {
                self.queue_watch_event(&body);
                continue;
            }
            if reply_id != request_id {
                log::warn!("xenstore: dropping reply {reply_id} while waiting for {request_id}");
                continue;
            }
            if reply_kind == XS_ERROR {
                return Err(crate::xenstore::error_from_name(&body));
            }
            if reply_kind != kind {
                return Err(XsError::Protocol);
            }
            return Ok(body);
        }
    }
}

/// Collects watch events already sitting in the ring, without waiting.
pub fn poll_watch_events() -> Option<WatchEvent> {
    let mut store = STORE.borrow_mut();
    while store.available() >= 16 {
        // A header is there; xenstored writes whole messages, so the body
        // follows promptly.
        match store.receive_message() {
            Ok((XS_WATCH_EVENT, _, body)) => store.queue_watch_event(&body),
            Ok((kind, id, _)) => log::warn!("xenstore: unexpected reply type {kind} id {id}"),
            Err(_) => break,
        }
    }
    store.watch_events.pop_front()
}

fn string_reply(body: Vec<u8>) -> Result<String, XsError> {
    String::from_utf8(body).map_err(|_| XsError::Protocol)
}

fn with_nul(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    bytes
}

/// The xenstore connection as the [`Xenstore`] trait.
#[derive(Default)]
pub struct XenStore;

impl Xenstore for XenStore {
    fn read(&mut self, tx: TxId, path: &str) -> Result<String, XsError> {
        string_reply(STORE.borrow_mut().request(XS_READ, tx, &[&with_nul(path)])?)
    }

    fn write(&mut self, tx: TxId, path: &str, value: &str) -> Result<(), XsError> {
        STORE
            .borrow_mut()
            .request(XS_WRITE, tx, &[&with_nul(path), value.as_bytes()])
            .map(drop)
    }

    fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        STORE.borrow_mut().request(XS_MKDIR, tx, &[&with_nul(path)]).map(drop)
    }

    fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        STORE.borrow_mut().request(XS_RM, tx, &[&with_nul(path)]).map(drop)
    }

    fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        let body = STORE.borrow_mut().request(XS_DIRECTORY, tx, &[&with_nul(path)])?;
        crate::xenstore::split_nul_list(&body)
    }

    fn get_perms(&mut self, tx: TxId, path: &str) -> Result<Vec<Permission>, XsError> {
        let body = STORE.borrow_mut().request(XS_GET_PERMS, tx, &[&with_nul(path)])?;
        crate::xenstore::split_nul_list(&body)?
            .iter()
            .map(|entry| crate::xenstore::parse_permission(entry))
            .collect()
    }

    fn set_perms(&mut self, tx: TxId, path: &str, perms: &[Permission]) -> Result<(), XsError> {
        let mut payload = with_nul(path);
        for permission in perms {
            payload.extend_from_slice(crate::xenstore::format_permission(*permission).as_bytes());
            payload.push(0);
        }
        STORE.borrow_mut().request(XS_SET_PERMS, tx, &[&payload]).map(drop)
    }

    fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        STORE
            .borrow_mut()
            .request(XS_WATCH, TxId::NONE, &[&with_nul(path), &with_nul(token)])
            .map(drop)
    }

    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        STORE
            .borrow_mut()
            .request(XS_UNWATCH, TxId::NONE, &[&with_nul(path), &with_nul(token)])
            .map(drop)
    }

    fn transaction_start(&mut self) -> Result<TxId, XsError> {
        let body = STORE
            .borrow_mut()
            .request(XS_TRANSACTION_START, TxId::NONE, &[b"\0"])?;
        let text = string_reply(body)?;
        text.trim_end_matches('\0')
            .parse::<u32>()
            .map(TxId)
            .map_err(|_| XsError::Protocol)
    }

    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsError> {
        let flag: &[u8] = if commit { b"T\0" } else { b"F\0" };
        STORE
            .borrow_mut()
            .request(XS_TRANSACTION_END, tx, &[flag])
            .map(drop)
    }
}

