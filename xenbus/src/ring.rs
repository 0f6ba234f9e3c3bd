//! A xenstore client over the shared ring page
//! (`struct xenstore_domain_interface` in
//! [`xen/io/xs_wire.h`](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/io/xs_wire.h)).
//!
//! The page holds two byte rings of [`XENSTORE_RING_SIZE`] bytes: `req`,
//! which this domain produces and xenstored consumes, and `rsp`, the other
//! way round, each with free-running `u32` producer and consumer indices.
//! Messages are a byte stream (see [`crate::wire`]) that may wrap and may
//! arrive in several pieces.
//!
//! [`XenstoreRing`] is a non-blocking state machine: [`send`](XenstoreRing::send)
//! queues a request and copies what fits into `req`; [`poll`](XenstoreRing::poll)
//! copies what xenstored produced out of `rsp` and returns replies and watch
//! events one by one; [`take_notify`](XenstoreRing::take_notify) says when the
//! event channel must be kicked. The platform drives it from its event loop
//! (real hypercalls in `rumpuser-xen`); [`BlockingXenstore`] turns it into a
//! blocking [`Xenstore`] given a way to wait for the event channel.
//!
//! The peer's indices are read once per pass, checked (a producer more than
//! a ring ahead of the consumer is an error, not a length) and never
//! trusted for memory offsets beyond a mask. Our own indices are kept
//! privately and only published to the page.
//!
//! Not supported: the ring reconnection protocol
//! (`XENSTORE_SERVER_FEATURE_RECONNECTION`, used when a guest kexecs), and
//! `DIRECTORY_PART` for directories whose listing exceeds
//! `XENSTORE_PAYLOAD_MAX` (xenstored answers `E2BIG` to `DIRECTORY` then).

use alloc::borrow::Cow;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{fence, Ordering};

use xen_ring::SharedMemory;

use crate::platform::{Permission, TxId, Xenstore, XsError};
use crate::wire::{
    DecodeError, EncodeError, Incoming, MessageType, Reply, Request, StreamDecoder, WatchEvent,
};

/// Size of each of the two byte rings (`XENSTORE_RING_SIZE`).
pub const XENSTORE_RING_SIZE: usize = 1024;
/// `server_features` bit: xenstored supports ring reconnection.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `server_features` bit: xenstored reports problems in the `error` field.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `connection`: the steady state.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `connection`: a reconnection is in progress.
pub const XENSTORE_RECONNECT: u32 = 1;

/// Byte offset of `req[]` in the interface page.
pub const REQ_OFFSET: usize = 0;
/// Byte offset of `rsp[]`.
pub const RSP_OFFSET: usize = XENSTORE_RING_SIZE;
/// Byte offset of `req_cons`.
pub const REQ_CONS_OFFSET: usize = 2 * XENSTORE_RING_SIZE;
/// Byte offset of `req_prod`.
pub const REQ_PROD_OFFSET: usize = REQ_CONS_OFFSET + 4;
/// Byte offset of `rsp_cons`.
pub const RSP_CONS_OFFSET: usize = REQ_CONS_OFFSET + 8;
/// Byte offset of `rsp_prod`.
pub const RSP_PROD_OFFSET: usize = REQ_CONS_OFFSET + 12;
/// Byte offset of `server_features`.
pub const SERVER_FEATURES_OFFSET: usize = REQ_CONS_OFFSET + 16;
/// Byte offset of `connection`.
pub const CONNECTION_OFFSET: usize = REQ_CONS_OFFSET + 20;
/// Byte offset of `error`.
pub const ERROR_OFFSET: usize = REQ_CONS_OFFSET + 24;
/// `sizeof(struct xenstore_domain_interface)`.
pub const INTERFACE_LEN: usize = REQ_CONS_OFFSET + 28;

/// Requests that may await replies at once; [`XenstoreRing::send`] refuses
/// more, which bounds the bookkeeping and the queued bytes.
pub const MAX_IN_FLIGHT: usize = 32;

/// Ring passes one [`XenstoreRing::poll`] makes at most, so a peer that
/// keeps producing cannot keep the caller busy.
pub const MAX_READS_PER_POLL: usize = 8;

/// Why the ring cannot be used any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The mapping is smaller than `struct xenstore_domain_interface`.
    MappingTooSmall,
    /// xenstored's `req_cons` is ahead of `req_prod` or more than a ring behind it.
    BadRequestConsumer {
        /// The `req_cons` read from the page.
        req_cons: u32,
        /// Our `req_prod`.
        req_prod: u32,
    },
    /// xenstored's `rsp_prod` is behind `rsp_cons` or more than a ring ahead of it.
    BadResponseProducer {
        /// The `rsp_prod` read from the page.
        rsp_prod: u32,
        /// Our `rsp_cons`.
        rsp_cons: u32,
    },
    /// xenstored's bytes are not a valid message stream.
    Stream(DecodeError),
    /// xenstored set the `error` field (`XENSTORE_ERROR_*`).
    ServerError(u32),
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MappingTooSmall => f.write_str("the mapping is smaller than the interface"),
            Self::BadRequestConsumer { req_cons, req_prod } => {
                write!(
                    f,
                    "req_cons {req_cons} is impossible for req_prod {req_prod}"
                )
            }
            Self::BadResponseProducer { rsp_prod, rsp_cons } => {
                write!(
                    f,
                    "rsp_prod {rsp_prod} is impossible for rsp_cons {rsp_cons}"
                )
            }
            Self::Stream(error) => write!(f, "bad message from xenstored: {error}"),
            Self::ServerError(code) => write!(f, "xenstored reports error {code}"),
        }
    }
}

/// Why a request was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The request could not be encoded.
    Encode(EncodeError),
    /// `MAX_IN_FLIGHT` requests already await replies; poll first.
    TooManyInFlight,
    /// The ring is broken.
    Broken(RingError),
}

/// Names one request, to match its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReqId(pub u32);

/// What [`XenstoreRing::poll`] delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The reply to a request; an `ERROR` reply, or one that does not fit
    /// the request, is an `Err`.
    Reply {
        /// The request answered.
        req_id: ReqId,
        /// Its outcome.
        result: Result<Reply, XsError>,
    },
    /// A watch fired.
    Watch(WatchEvent),
}

/// The client end of a xenstore ring page. See the [module docs](self).
#[derive(Debug)]
pub struct XenstoreRing<M> {
    memory: M,
    /// Our producer index of `req`, published to the page.
    req_prod: u32,
    /// Our consumer index of `rsp`, published to the page.
    rsp_cons: u32,
    /// Encoded requests not yet copied into `req`.
    outgoing: VecDeque<u8>,
    /// Bytes copied out of `rsp` and not yet decoded.
    incoming: Vec<u8>,
    incoming_pos: usize,
    decoder: StreamDecoder,
    in_flight: Vec<(u32, MessageType)>,
    next_req_id: u32,
    notify: bool,
    broken: Option<RingError>,
}

fn mask(index: u32) -> usize {
    index as usize & (XENSTORE_RING_SIZE - 1)
}

impl<M: SharedMemory> XenstoreRing<M> {
    /// Takes over the ring page. Starts from the indices found on it (zero
    /// for a fresh domain), after checking they are consistent.
    pub fn new(memory: M) -> Result<Self, RingError> {
        if memory.len() < INTERFACE_LEN {
            return Err(RingError::MappingTooSmall);
        }
        let mut ring = Self {
            req_prod: memory.load_u32(REQ_PROD_OFFSET),
            rsp_cons: memory.load_u32(RSP_CONS_OFFSET),
            memory,
            outgoing: VecDeque::new(),
            incoming: Vec::new(),
            incoming_pos: 0,
            decoder: StreamDecoder::new(),
            in_flight: Vec::new(),
            next_req_id: 1,
            notify: false,
            broken: None,
        };
        ring.request_space()?;
        ring.response_bytes()?;
        Ok(ring)
    }

    /// The shared memory.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// xenstored's `server_features` bits.
    pub fn server_features(&self) -> u32 {
        self.memory.load_u32(SERVER_FEATURES_OFFSET)
    }

    /// The `connection` field (`XENSTORE_CONNECTED`, `XENSTORE_RECONNECT`).
    pub fn connection(&self) -> u32 {
        self.memory.load_u32(CONNECTION_OFFSET)
    }

    /// Requests awaiting replies.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the ring failed; it stays failed.
    pub fn broken(&self) -> Option<RingError> {
        self.broken
    }

    /// Whether xenstored must be notified on the event channel (because
    /// requests were produced or responses consumed); clears the flag.
    pub fn take_notify(&mut self) -> bool {
        core::mem::take(&mut self.notify)
    }

    fn fail(&mut self, error: RingError) -> RingError {
        log::error!("xenstore ring: {error}");
        self.broken = Some(error);
        error
    }

    /// Free bytes in `req`, after checking xenstored's `req_cons`.
    fn request_space(&mut self) -> Result<usize, RingError> {
        let req_cons = self.memory.load_u32(REQ_CONS_OFFSET);
        // Order the check of req_cons before our writes into req[] (the
        // `mb()` after reading the indices in xs_wire.h's users).
        fence(Ordering::SeqCst);
        let used = self.req_prod.wrapping_sub(req_cons) as usize;
        if used > XENSTORE_RING_SIZE {
            return Err(self.fail(RingError::BadRequestConsumer {
                req_cons,
                req_prod: self.req_prod,
            }));
        }
        Ok(XENSTORE_RING_SIZE - used)
    }

    /// Bytes waiting in `rsp`, after checking xenstored's `rsp_prod`.
    fn response_bytes(&mut self) -> Result<usize, RingError> {
        let rsp_prod = self.memory.load_u32(RSP_PROD_OFFSET);
        // Read rsp[] only after rsp_prod.
        fence(Ordering::Acquire);
        let available = rsp_prod.wrapping_sub(self.rsp_cons) as usize;
        if available > XENSTORE_RING_SIZE {
            return Err(self.fail(RingError::BadResponseProducer {
                rsp_prod,
                rsp_cons: self.rsp_cons,
            }));
        }
        Ok(available)
    }

    fn check_server_error(&mut self) -> Result<(), RingError> {
        if self.server_features() & XENSTORE_SERVER_FEATURE_ERROR != 0 {
            let code = self.memory.load_u32(ERROR_OFFSET);
            if code != 0 {
                return Err(self.fail(RingError::ServerError(code)));
            }
        }
        Ok(())
    }

    /// Copies as much of the queued requests into `req` as fits.
    fn flush(&mut self) -> Result<(), RingError> {
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let space = self.request_space()?;
        let count = space.min(self.outgoing.len());
        let mut written = 0;
        while written < count {
            let offset = mask(self.req_prod.wrapping_add(written as u32));
            let chunk = (count - written).min(XENSTORE_RING_SIZE - offset);
            let bytes: Vec<u8> = self.outgoing.drain(..chunk).collect();
            self.memory.write(REQ_OFFSET + offset, &bytes);
            written += chunk;
        }
        if written > 0 {
            // The bytes must be visible before the index that covers them.
            fence(Ordering::Release);
            self.req_prod = self.req_prod.wrapping_add(written as u32);
            self.memory.store_u32(REQ_PROD_OFFSET, self.req_prod);
            self.notify = true;
        }
        Ok(())
    }

    /// Copies everything xenstored produced out of `rsp` into `incoming`;
    /// returns how many bytes that was.
    fn fill(&mut self) -> Result<usize, RingError> {
        let available = self.response_bytes()?;
        if available == 0 {
            return Ok(0);
        }
        self.incoming.drain(..self.incoming_pos);
        self.incoming_pos = 0;
        let mut copied = 0;
        while copied < available {
            let offset = mask(self.rsp_cons.wrapping_add(copied as u32));
            let chunk = (available - copied).min(XENSTORE_RING_SIZE - offset);
            let start = self.incoming.len();
            self.incoming.resize(start + chunk, 0);
            self.memory
                .read(RSP_OFFSET + offset, &mut self.incoming[start..]);
            copied += chunk;
        }
        // Our reads of rsp[] must be done before xenstored sees the space.
        fence(Ordering::SeqCst);
        self.rsp_cons = self.rsp_cons.wrapping_add(available as u32);
        self.memory.store_u32(RSP_CONS_OFFSET, self.rsp_cons);
        self.notify = true;
        Ok(available)
    }

    /// Queues `request` (in transaction `tx`) and copies what fits into the
    /// ring. The reply arrives through [`poll`](Self::poll) with the
    /// returned id.
    pub fn send(&mut self, request: &Request<'_>, tx: TxId) -> Result<ReqId, SendError> {
        if let Some(error) = self.broken {
            return Err(SendError::Broken(error));
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            return Err(SendError::TooManyInFlight);
        }
        let mut req_id = self.next_req_id;
        while self.in_flight.iter().any(|(id, _)| *id == req_id) {
            req_id = req_id.wrapping_add(1);
        }
        self.next_req_id = req_id.wrapping_add(1);
        let mut bytes = Vec::new();
        request
            .encode(req_id, tx, &mut bytes)
            .map_err(SendError::Encode)?;
        self.outgoing.extend(bytes);
        self.in_flight.push((req_id, request.kind()));
        self.flush().map_err(SendError::Broken)?;
        Ok(ReqId(req_id))
    }

    /// Moves queued requests into the ring and returns the next reply or
    /// watch event, if one is complete. Does at most
    /// [`MAX_READS_PER_POLL`] ring passes.
    ///
    /// One pass can bring several messages, and the later ones wait in
    /// this client, not in the ring: call `poll` until it returns
    /// `Ok(None)` before waiting for the next event, and kick the event
    /// channel when [`take_notify`](Self::take_notify) says so.
    pub fn poll(&mut self) -> Result<Option<Event>, RingError> {
        if let Some(error) = self.broken {
            return Err(error);
        }
        self.check_server_error()?;
        self.flush()?;
        let mut reads = 0;
        loop {
            while self.incoming_pos < self.incoming.len() {
                let mut input = &self.incoming[self.incoming_pos..];
                let before = input.len();
                let decoded = self.decoder.feed(&mut input);
                self.incoming_pos += before - input.len();
                match decoded {
                    Ok(Some(message)) => {
                        if let Some(event) = self.dispatch(
                            message.header.req_id,
                            message.decode_incoming(),
                            message.header.kind,
                        ) {
                            return Ok(Some(event));
                        }
                    }
                    Ok(None) => {}
                    Err(error) => return Err(self.fail(RingError::Stream(error))),
                }
            }
            if reads == MAX_READS_PER_POLL {
                return Ok(None);
            }
            reads += 1;
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// Stops waiting for the reply to `req_id` (a caller that gave up on
    /// it); a late reply is then dropped.
    pub fn forget(&mut self, req_id: ReqId) {
        self.in_flight.retain(|(id, _)| *id != req_id.0);
    }

    /// Turns a decoded message into an event, or `None` when it must be
    /// dropped (a reply nobody asked for, a malformed watch event).
    fn dispatch(
        &mut self,
        req_id: u32,
        decoded: Result<Incoming, DecodeError>,
        kind: MessageType,
    ) -> Option<Event> {
        if kind == MessageType::WatchEvent {
            return match decoded {
                Ok(Incoming::WatchEvent(event)) => Some(Event::Watch(event)),
                Ok(Incoming::Reply { .. }) => None,
                Err(error) => {
                    log::warn!("xenstore ring: dropping malformed watch event: {error}");
                    None
                }
            };
        }
        let Some(index) = self.in_flight.iter().position(|(id, _)| *id == req_id) else {
            log::warn!("xenstore ring: dropping reply to unknown request {req_id}");
            return None;
        };
        let (_, expected) = self.in_flight.swap_remove(index);
        let result = match decoded {
            Ok(Incoming::Reply {
                reply: Reply::Error(error),
                ..
            }) => Err(error),
            Ok(Incoming::Reply { kind, reply, .. }) if kind == expected => Ok(reply),
            Ok(_) => {
                log::warn!("xenstore ring: reply of type {kind:?} to a {expected:?} request");
                Err(XsError::Protocol)
            }
            Err(error) => {
                log::warn!("xenstore ring: malformed reply to {expected:?}: {error}");
                Err(XsError::Protocol)
            }
        };
        Some(Event::Reply {
            req_id: ReqId(req_id),
            result,
        })
    }
}

/// How [`BlockingXenstore`] talks to the event channel.
pub trait Notifier {
    /// Sends an event to xenstored.
    fn notify(&mut self);
    /// Blocks until xenstored may have produced something (the event
    /// channel fired). Returns `false` to give up: the request in progress
    /// then fails with `XsError::Eio`.
    fn wait(&mut self) -> bool;
}

/// The most watch events [`BlockingXenstore`] holds for the caller; older
/// ones are dropped (and logged) beyond it.
pub const MAX_QUEUED_WATCH_EVENTS: usize = 1024;

/// A blocking [`Xenstore`] over a [`XenstoreRing`]: each call sends one
/// request and waits for its reply, keeping watch events that arrive
/// meanwhile for [`take_watch_event`](Self::take_watch_event).
#[derive(Debug)]
pub struct BlockingXenstore<M, N> {
    ring: XenstoreRing<M>,
    notifier: N,
    watch_events: VecDeque<WatchEvent>,
}

impl<M: SharedMemory, N: Notifier> BlockingXenstore<M, N> {
    /// Wraps a ring and the event channel it signals.
    pub fn new(ring: XenstoreRing<M>, notifier: N) -> Self {
        Self {
            ring,
            notifier,
            watch_events: VecDeque::new(),
        }
    }

    /// The ring.
    pub fn ring(&self) -> &XenstoreRing<M> {
        &self.ring
    }

    /// The notifier.
    pub fn notifier_mut(&mut self) -> &mut N {
        &mut self.notifier
    }

    /// The oldest watch event received, if any.
    pub fn take_watch_event(&mut self) -> Option<WatchEvent> {
        self.watch_events.pop_front()
    }

    /// Collects watch events waiting in the ring without blocking.
    pub fn poll_watch_events(&mut self) -> Result<(), XsError> {
        loop {
            match self.ring.poll() {
                Ok(Some(Event::Watch(event))) => self.queue_watch_event(event),
                Ok(Some(Event::Reply { req_id, .. })) => {
                    log::warn!("xenstore: dropping stale reply {}", req_id.0);
                }
                Ok(None) => break,
                Err(_) => return Err(XsError::Protocol),
            }
        }
        self.kick();
        Ok(())
    }

    fn queue_watch_event(&mut self, event: WatchEvent) {
        if self.watch_events.len() == MAX_QUEUED_WATCH_EVENTS {
            log::warn!("xenstore: too many watch events queued, dropping the oldest");
            self.watch_events.pop_front();
        }
        self.watch_events.push_back(event);
    }

    fn kick(&mut self) {
        if self.ring.take_notify() {
            self.notifier.notify();
        }
    }

    fn request(&mut self, request: Request<'_>, tx: TxId) -> Result<Reply, XsError> {
        let req_id = match self.ring.send(&request, tx) {
            Ok(req_id) => req_id,
            Err(SendError::Encode(EncodeError::PathTooLong | EncodeError::PayloadTooLarge)) => {
                return Err(XsError::E2big)
            }
            Err(SendError::Encode(_)) => return Err(XsError::Einval),
            // Requests are sent one at a time here, so this means stale
            // requests whose replies never came: the ring is unusable.
            Err(SendError::TooManyInFlight | SendError::Broken(_)) => {
                return Err(XsError::Protocol)
            }
        };
        loop {
            let polled = self.ring.poll();
            // Whatever the poll moved (requests flushed into `req`, space
            // freed in `rsp`) must be signalled before waiting, or both
            // ends sleep.
            self.kick();
            match polled {
                Ok(Some(Event::Reply { req_id: id, result })) if id == req_id => {
                    return result;
                }
                Ok(Some(Event::Reply { req_id: id, .. })) => {
                    log::warn!("xenstore: dropping stale reply {}", id.0);
                }
                Ok(Some(Event::Watch(event))) => self.queue_watch_event(event),
                Ok(None) => {
                    if !self.notifier.wait() {
                        self.ring.forget(req_id);
                        return Err(XsError::Eio);
                    }
                }
                Err(_) => return Err(XsError::Protocol),
            }
        }
    }

    fn expect_ok(&mut self, request: Request<'_>, tx: TxId) -> Result<(), XsError> {
        match self.request(request, tx)? {
            Reply::Ok => Ok(()),
            _ => Err(XsError::Protocol),
        }
    }
}

impl<M: SharedMemory, N: Notifier> Xenstore for BlockingXenstore<M, N> {
    fn read(&mut self, tx: TxId, path: &str) -> Result<String, XsError> {
        match self.request(Request::Read { path }, tx)? {
            Reply::Value(bytes) => String::from_utf8(bytes).map_err(|_| XsError::Protocol),
            _ => Err(XsError::Protocol),
        }
    }

    fn write(&mut self, tx: TxId, path: &str, value: &str) -> Result<(), XsError> {
        self.expect_ok(
            Request::Write {
                path,
                value: value.as_bytes(),
            },
            tx,
        )
    }

    fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.expect_ok(Request::Mkdir { path }, tx)
    }

    fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.expect_ok(Request::Rm { path }, tx)
    }

    fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        match self.request(Request::Directory { path }, tx)? {
            Reply::Directory(names) => Ok(names),
            _ => Err(XsError::Protocol),
        }
    }

    fn get_perms(&mut self, tx: TxId, path: &str) -> Result<Vec<Permission>, XsError> {
        match self.request(Request::GetPerms { path }, tx)? {
            Reply::Perms(perms) => Ok(perms),
            _ => Err(XsError::Protocol),
        }
    }

    fn set_perms(&mut self, tx: TxId, path: &str, perms: &[Permission]) -> Result<(), XsError> {
        self.expect_ok(
            Request::SetPerms {
                path,
                perms: Cow::Borrowed(perms),
            },
            tx,
        )
    }

    fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.expect_ok(Request::Watch { path, token }, TxId::NONE)
    }

    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.expect_ok(Request::Unwatch { path, token }, TxId::NONE)
    }

    fn transaction_start(&mut self) -> Result<TxId, XsError> {
        match self.request(Request::TransactionStart, TxId::NONE)? {
            Reply::TransactionStarted(tx) => Ok(tx),
            _ => Err(XsError::Protocol),
        }
    }

    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsError> {
        self.expect_ok(Request::TransactionEnd { commit }, tx)
    }
}

#[cfg(test)]
mod tests;
