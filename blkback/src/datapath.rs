//! The data path of one connected virtual disk: its rings, the requests in
//! flight, flush and barrier ordering, and data movement between granted
//! pages and device buffers.
//!
//! Ordering rule. Every write gets a sequence number when it is taken off a
//! ring (any of the disk's rings) and stays in `writes_in_flight` until the
//! device completes it. A flush or barrier taken off a ring gets the next
//! number and is held until no write with a smaller number is in flight;
//! then its own data (if any) is written, then the device is flushed, then
//! it is answered. A barrier additionally stops its ring until it is
//! answered, so later requests on that ring start after it
//! (`BLKIF_OP_WRITE_BARRIER` in blkif.h).

use alloc::collections::BTreeSet;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;

use log::{debug, warn};
use xen_ring::{BackRing, RingError, SharedMemory};
use xenbus::platform::{CopyOp, DomId, EvtchnPort, GrantError, GrantMap, GrantRef, GrantSpan};

use crate::device::{BlockDevice, IoError, IoRequest, IoTag, SubmitError};
use crate::persistent::PersistentGrants;
use crate::proto::{
    encode_response, parse_indirect_segments, parse_request, Abi, Direction, Limits, RejectReason,
    Request, Segment, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, MAX_REQUEST_SIZE,
    MAX_RESPONSE_SIZE, PAGE_SIZE, SEGMENT_SIZE,
};
use crate::Platform;

/// Per-disk facts the data path needs.
pub(crate) struct DiskContext {
    pub frontend: DomId,
    pub devid: u32,
    pub limits: Limits,
    /// The high bits of every [`IoTag`] of this disk (slot index and id).
    pub tag_base: u64,
    pub requests_per_poll: usize,
    pub max_bytes_in_flight_per_ring: usize,
}

/// What one data path call may touch.
pub(crate) struct Io<'a, P, D> {
    pub platform: &'a mut P,
    pub device: &'a mut D,
    pub disk: &'a DiskContext,
    /// Requests of this disk the device holds; outlives the connection.
    pub device_in_flight: &'a mut usize,
}

/// Splits a tag into (ring, slot); the rest is [`DiskContext::tag_base`].
pub(crate) fn tag_ring_slot(tag: IoTag) -> (usize, u16) {
    (((tag.0 >> 16) & 0xff) as usize, tag.0 as u16)
}

enum Stage {
    Read,
    Write {
        seq: u64,
    },
    Discard,
    /// Waiting for every earlier write; `data` is written before the flush.
    FlushWaiting {
        seq: u64,
        barrier: bool,
        data: Option<(u64, Vec<u8>)>,
    },
    FlushWriting {
        seq: u64,
        barrier: bool,
    },
    Flushing {
        barrier: bool,
    },
}

struct InFlight {
    id: u64,
    operation: u8,
    stage: Stage,
    /// Where read data goes on completion.
    segments: Vec<Segment>,
    /// Buffer bytes charged to the ring.
    bytes: usize,
}

/// One shared ring with its event channel.
pub(crate) struct Ring<M> {
    ring: BackRing<Rc<M>>,
    mapping: Rc<M>,
    port: EvtchnPort,
    slots: Vec<Option<InFlight>>,
    free_slots: Vec<u16>,
    /// A barrier is in progress: take nothing more off this ring.
    barrier: bool,
    /// A request the device had no room for, to resubmit first.
    deferred: Option<(u16, IoRequest)>,
    bytes_in_flight: usize,
    unpushed: bool,
}

impl<M: SharedMemory> Ring<M> {
    /// Attaches to a freshly mapped ring of `abi` bound to local `port`.
    pub(crate) fn new(mapping: M, abi: Abi, port: EvtchnPort) -> Result<Self, (RingError, M)> {
        let mapping = Rc::new(mapping);
        let ring = match BackRing::new(mapping.clone(), abi.slot_size()) {
            Ok(ring) => ring,
            Err(error) => {
                let mapping = Rc::try_unwrap(mapping)
                    .unwrap_or_else(|_| unreachable!("the ring was not built"));
                return Err((error, mapping));
            }
        };
        let size = ring.size() as usize;
        Ok(Self {
            ring,
            mapping,
            port,
            slots: (0..size).map(|_| None).collect(),
            free_slots: (0..size as u16).rev().collect(),
            barrier: false,
            deferred: None,
            bytes_in_flight: 0,
            unpushed: false,
        })
    }

    /// The local event channel port.
    pub(crate) fn port(&self) -> EvtchnPort {
        self.port
    }

    /// Number of entries.
    pub(crate) fn size(&self) -> u32 {
        self.ring.size()
    }

    /// Gives back the mapping and port for unmapping and closing.
    fn into_parts(self) -> (Option<M>, EvtchnPort) {
        let Self {
            ring,
            mapping,
            port,
            ..
        } = self;
        drop(ring);
        (Rc::try_unwrap(mapping).ok(), port)
    }
}

/// A connected virtual disk: its rings and shared ordering state.
pub(crate) struct Connection<M> {
    rings: Vec<Ring<M>>,
    abi: Abi,
    persistent: Option<PersistentGrants<M>>,
    next_write_seq: u64,
    writes_in_flight: BTreeSet<u64>,
    waiting_flushes: Vec<(usize, u16)>,
}

fn status_of(result: Result<(), IoError>) -> Result<(), RejectReason> {
    result.map_err(|error| match error {
        IoError::Media => RejectReason::DeviceError,
        IoError::NotSupported => RejectReason::DeviceNotSupported,
    })
}

fn run_copies<P: Platform>(platform: &mut P, ops: &mut [CopyOp<'_>]) -> Result<(), GrantError> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut status = vec![Ok(()); ops.len()];
    platform.copy(ops, &mut status);
    status.into_iter().collect()
}

/// The persistent mapping of `gref`, mapping it now if there is (or can be
/// made) room. `None` means: use grant copy for this segment.
fn persistent_mapping<'t, P: Platform>(
    table: &'t mut Option<PersistentGrants<P::Mapping>>,
    platform: &mut P,
    domid: DomId,
    gref: GrantRef,
) -> Option<&'t P::Mapping> {
    let table = table.as_mut()?;
    if !table.contains(gref) {
        if !table.has_room() {
            for mapping in table.evict_least_recently_used() {
                platform.unmap(mapping);
            }
        }
        match platform.map(domid, &[gref], true) {
            Ok(mapping) => {
                if let Err(mapping) = table.insert(gref, mapping) {
                    platform.unmap(mapping);
                    return None;
                }
            }
            Err(error) => {
                debug!("domain {domid}: gref {gref} not mapped persistently: {error:?}");
                return None;
            }
        }
    }
    table.get(gref)
}

impl<M: SharedMemory> Connection<M> {
    pub(crate) fn new(
        rings: Vec<Ring<M>>,
        abi: Abi,
        persistent: Option<PersistentGrants<M>>,
    ) -> Self {
        Self {
            rings,
            abi,
            persistent,
            next_write_seq: 0,
            writes_in_flight: BTreeSet::new(),
            waiting_flushes: Vec::new(),
        }
    }

    pub(crate) fn rings(&self) -> &[Ring<M>] {
        &self.rings
    }

    pub(crate) fn abi(&self) -> Abi {
        self.abi
    }

    pub(crate) fn persistent_enabled(&self) -> bool {
        self.persistent.is_some()
    }

    pub(crate) fn persistent_grants(&self) -> usize {
        self.persistent.as_ref().map_or(0, PersistentGrants::len)
    }

    /// Unmaps the rings and persistent grants and closes the event channels.
    /// Requests still in the device complete into nothing.
    pub(crate) fn teardown<P: Platform + GrantMap<Mapping = M>>(self, platform: &mut P) {
        for ring in self.rings {
            let (mapping, port) = ring.into_parts();
            platform.close(port);
            if let Some(mapping) = mapping {
                platform.unmap(mapping);
            }
        }
        if let Some(mut table) = self.persistent {
            for mapping in table.drain() {
                platform.unmap(mapping);
            }
        }
    }

    /// Publishes queued responses and notifies where the frontend asked.
    pub(crate) fn push_responses<P: Platform>(&mut self, platform: &mut P) {
        for ring in &mut self.rings {
            if core::mem::take(&mut ring.unpushed) && ring.ring.push_responses_and_check_notify() {
                platform.notify(ring.port);
            }
        }
    }

    /// Takes up to `requests_per_poll` requests off ring `index` and starts
    /// them. Returns whether the ring still has requests this call left, or
    /// the protocol violation that makes the ring unusable.
    pub(crate) fn serve_ring<P, D>(
        &mut self,
        index: usize,
        io: &mut Io<'_, P, D>,
    ) -> Result<bool, RingError>
    where
        P: Platform + GrantMap<Mapping = M>,
        D: BlockDevice,
    {
        if let Some((slot, request)) = self.rings[index].deferred.take() {
            self.submit(index, slot, request, io);
        }
        let mut taken = 0;
        let result = loop {
            let ring = &mut self.rings[index];
            if ring.barrier
                || ring.deferred.is_some()
                || ring.bytes_in_flight >= io.disk.max_bytes_in_flight_per_ring
            {
                break Ok(false);
            }
            if taken == io.disk.requests_per_poll {
                break Ok(true);
            }
            match ring.ring.unconsumed_requests() {
                Err(error) => break Err(error),
                Ok(0) => match ring.ring.final_check_for_requests() {
                    Err(error) => break Err(error),
                    Ok(true) => continue,
                    Ok(false) => break Ok(false),
                },
                Ok(_) => {}
            }
            let Some(slot) = ring.free_slots.pop() else {
                break Ok(false);
            };
            let mut raw = [0u8; MAX_REQUEST_SIZE];
            match ring.ring.next_request(&mut raw[..self.abi.request_size()]) {
                Ok(true) => {}
                Ok(false) => {
                    ring.free_slots.push(slot);
                    break Ok(false);
                }
                Err(error) => {
                    ring.free_slots.push(slot);
                    break Err(error);
                }
            }
            taken += 1;
            self.start(index, slot, &raw, io);
        };
        self.advance_flushes(io);
        result
    }

    fn log_rejection(
        &self,
        io: &Io<'_, impl Platform, impl BlockDevice>,
        id: u64,
        operation: u8,
        reason: RejectReason,
    ) {
        warn!(
            "vbd {}/{}: request id {id} operation {operation}: {reason}",
            io.disk.frontend, io.disk.devid
        );
    }

    fn start<P, D>(&mut self, ring: usize, slot: u16, raw: &[u8], io: &mut Io<'_, P, D>)
    where
        P: Platform + GrantMap<Mapping = M>,
        D: BlockDevice,
    {
        let operation = crate::proto::response_operation(raw);
        let request = match parse_request(raw, self.abi, &io.disk.limits) {
            Ok(request) => request,
            Err(rejection) => {
                self.log_rejection(io, rejection.id, operation, rejection.reason);
                self.respond(
                    ring,
                    slot,
                    rejection.id,
                    operation,
                    rejection.reason.status(),
                    0,
                );
                return;
            }
        };
        let id = request.id();
        match request {
            Request::ReadWrite {
                direction,
                sector,
                segments,
                ..
            } => {
                let segments = segments.as_slice().to_vec();
                self.start_transfer(ring, slot, id, operation, direction, sector, segments, io);
            }
            Request::Indirect {
                direction,
                sector,
                nr_segments,
                indirect_grefs,
                ..
            } => match self.read_indirect(&indirect_grefs, nr_segments, sector, io) {
                Ok(segments) => {
                    self.start_transfer(ring, slot, id, operation, direction, sector, segments, io)
                }
                Err(reason) => self.reject(ring, slot, id, operation, reason, io),
            },
            Request::Flush {
                barrier,
                sector,
                segments,
                ..
            } => {
                let data = if segments.as_slice().is_empty() {
                    None
                } else {
                    match self.gather_new(segments.as_slice(), io) {
                        Ok(buffer) => Some((sector, buffer)),
                        Err(reason) => return self.reject(ring, slot, id, operation, reason, io),
                    }
                };
                let seq = self.next_write_seq;
                self.next_write_seq += 1;
                let bytes = data.as_ref().map_or(0, |(_, buffer)| buffer.len());
                if data.is_some() {
                    self.writes_in_flight.insert(seq);
                }
                let ring_state = &mut self.rings[ring];
                ring_state.barrier |= barrier;
                ring_state.bytes_in_flight += bytes;
                ring_state.slots[usize::from(slot)] = Some(InFlight {
                    id,
                    operation,
                    stage: Stage::FlushWaiting { seq, barrier, data },
                    segments: Vec::new(),
                    bytes,
                });
                self.waiting_flushes.push((ring, slot));
            }
            Request::Discard {
                sector,
                nr_sectors,
                secure,
                ..
            } => {
                self.rings[ring].slots[usize::from(slot)] = Some(InFlight {
                    id,
                    operation,
                    stage: Stage::Discard,
                    segments: Vec::new(),
                    bytes: 0,
                });
                let request = IoRequest::Discard {
                    sector,
                    sectors: nr_sectors,
                    secure,
                };
                self.submit(ring, slot, request, io);
            }
        }
    }

    fn reject<P: Platform, D: BlockDevice>(
        &mut self,
        ring: usize,
        slot: u16,
        id: u64,
        operation: u8,
        reason: RejectReason,
        io: &Io<'_, P, D>,
    ) {
        self.log_rejection(io, id, operation, reason);
        self.respond(ring, slot, id, operation, reason.status(), 0);
    }

    #[allow(clippy::too_many_arguments)]
    fn start_transfer<P, D>(
        &mut self,
        ring: usize,
        slot: u16,
        id: u64,
        operation: u8,
        direction: Direction,
        sector: u64,
        segments: Vec<Segment>,
        io: &mut Io<'_, P, D>,
    ) where
        P: Platform + GrantMap<Mapping = M>,
        D: BlockDevice,
    {
        let (stage, request, segments, bytes) = match direction {
            Direction::Read => {
                let buffer = match zeroed(segments.iter().map(Segment::len).sum()) {
                    Ok(buffer) => buffer,
                    Err(reason) => return self.reject(ring, slot, id, operation, reason, io),
                };
                let bytes = buffer.len();
                (
                    Stage::Read,
                    IoRequest::Read { sector, buffer },
                    segments,
                    bytes,
                )
            }
            Direction::Write => {
                let buffer = match self.gather_new(&segments, io) {
                    Ok(buffer) => buffer,
                    Err(reason) => return self.reject(ring, slot, id, operation, reason, io),
                };
                let seq = self.next_write_seq;
                self.next_write_seq += 1;
                self.writes_in_flight.insert(seq);
                let bytes = buffer.len();
                (
                    Stage::Write { seq },
                    IoRequest::Write { sector, buffer },
                    Vec::new(),
                    bytes,
                )
            }
        };
        let ring_state = &mut self.rings[ring];
        ring_state.bytes_in_flight += bytes;
        ring_state.slots[usize::from(slot)] = Some(InFlight {
            id,
            operation,
            stage,
            segments,
            bytes,
        });
        self.submit(ring, slot, request, io);
    }

    /// Copies an indirect request's segment array out of its pages, once,
    /// and checks it.
    fn read_indirect<P: Platform, D: BlockDevice>(
        &mut self,
        grefs: &[GrantRef],
        nr_segments: u16,
        sector: u64,
        io: &mut Io<'_, P, D>,
    ) -> Result<Vec<Segment>, RejectReason> {
        let mut raw = zeroed(usize::from(nr_segments) * SEGMENT_SIZE)?;
        let domid = io.disk.frontend;
        let mut ops: Vec<CopyOp<'_>> = raw
            .chunks_mut(PAGE_SIZE)
            .zip(grefs)
            .map(|(chunk, &gref)| CopyOp::FromGrant {
                source: GrantSpan {
                    domid,
                    gref,
                    offset: 0,
                },
                destination: chunk,
            })
            .collect();
        if let Err(error) = run_copies(io.platform, &mut ops) {
            debug!("domain {domid}: indirect page copy failed: {error:?}");
            return Err(RejectReason::IndirectPageUnreadable);
        }
        drop(ops);
        parse_indirect_segments(&raw, sector, &io.disk.limits)
    }

    /// Copies the data of `segments` out of the frontend into a new buffer.
    fn gather_new<P, D>(
        &mut self,
        segments: &[Segment],
        io: &mut Io<'_, P, D>,
    ) -> Result<Vec<u8>, RejectReason>
    where
        P: Platform + GrantMap<Mapping = M>,
        D: BlockDevice,
    {
        let mut buffer = zeroed(segments.iter().map(Segment::len).sum())?;
        let domid = io.disk.frontend;
        let mut ops = Vec::new();
        let mut rest: &mut [u8] = &mut buffer;
        for segment in segments {
            let (chunk, tail) = core::mem::take(&mut rest).split_at_mut(segment.len());
            rest = tail;
            match persistent_mapping(&mut self.persistent, io.platform, domid, segment.gref) {
                Some(mapping) => mapping.read(usize::from(segment.offset()), chunk),
                None => ops.push(CopyOp::FromGrant {
                    source: GrantSpan {
                        domid,
                        gref: segment.gref,
                        offset: segment.offset(),
                    },
                    destination: chunk,
                }),
            }
        }
        if let Err(error) = run_copies(io.platform, &mut ops) {
            debug!("domain {domid}: data copy from a grant failed: {error:?}");
            return Err(RejectReason::GrantFailed);
        }
        drop(ops);
        Ok(buffer)
    }

    /// Copies read data into the frontend's segments.
    fn scatter<P, D>(
        &mut self,
        segments: &[Segment],
        buffer: &[u8],
        io: &mut Io<'_, P, D>,
    ) -> Result<(), RejectReason>
    where
        P: Platform + GrantMap<Mapping = M>,
        D: BlockDevice,
    {
        let domid = io.disk.frontend;
        let mut ops = Vec::new();
        let mut rest = buffer;
        for segment in segments {
            if rest.len() < segment.len() {
                // The device returned a shorter buffer than it was lent.
                return Err(RejectReason::DeviceError);
            }
            let (chunk, tail) = rest.split_at(segment.len());
            rest = tail;
            match persistent_mapping(&mut self.persistent, io.platform, domid, segment.gref) {
                Some(mapping) => mapping.write(usize::from(segment.offset()), chunk),
                None => ops.push(CopyOp::ToGrant {
                    source: chunk,
                    destination: GrantSpan {
                        domid,
                        gref: segment.gref,
                        offset: segment.offset(),
                    },
                }),
            }
        }
        if let Err(error) = run_copies(io.platform, &mut ops) {
            debug!("domain {domid}: data copy to a grant failed: {error:?}");
            return Err(RejectReason::GrantFailed);
        }
        Ok(())
    }

    fn submit<P, D>(&mut self, ring: usize, slot: u16, request: IoRequest, io: &mut Io<'_, P, D>)
    where
        P: Platform,
        D: BlockDevice,
    {
        let tag = IoTag(io.disk.tag_base | ((ring as u64) << 16) | u64::from(slot));
        match io.device.submit(tag, request) {
            Ok(()) => *io.device_in_flight += 1,
            Err(SubmitError::QueueFull(request)) => {
                self.rings[ring].deferred = Some((slot, request));
            }
            Err(SubmitError::Refused(_)) => self.fail(ring, slot, RejectReason::DeviceRefused, io),
        }
    }

    /// Ends an in-flight request with an error, releasing what it holds.
    fn fail<P: Platform, D: BlockDevice>(
        &mut self,
        ring: usize,
        slot: u16,
        reason: RejectReason,
        io: &Io<'_, P, D>,
    ) {
        let Some(entry) = self.rings[ring].slots[usize::from(slot)].take() else {
            return;
        };
        match entry.stage {
            Stage::Write { seq } | Stage::FlushWriting { seq, .. } => {
                self.writes_in_flight.remove(&seq);
            }
            Stage::FlushWaiting { seq, .. } => {
                self.writes_in_flight.remove(&seq);
                self.waiting_flushes
                    .retain(|&waiting| waiting != (ring, slot));
            }
            _ => {}
        }
        if matches!(
            entry.stage,
            Stage::FlushWaiting { barrier: true, .. }
                | Stage::FlushWriting { barrier: true, .. }
                | Stage::Flushing { barrier: true }
        ) {
            self.rings[ring].barrier = false;
        }
        self.log_rejection(io, entry.id, entry.operation, reason);
        self.respond(
            ring,
            slot,
            entry.id,
            entry.operation,
            reason.status(),
            entry.bytes,
        );
    }

    /// Starts every waiting flush whose earlier writes have all completed.
    fn advance_flushes<P, D>(&mut self, io: &mut Io<'_, P, D>)
    where
        P: Platform,
        D: BlockDevice,
    {
        loop {
            let oldest_write = self.writes_in_flight.first().copied();
            let ready = self.waiting_flushes.iter().position(|&(ring, slot)| {
                match self.rings[ring].slots[usize::from(slot)].as_ref() {
                    Some(InFlight {
                        stage: Stage::FlushWaiting { seq, .. },
                        ..
                    }) => oldest_write.is_none_or(|oldest| oldest >= *seq),
                    // Not waiting any more: drop it from the list below.
                    _ => true,
                }
            });
            let Some(position) = ready else {
                return;
            };
            let (ring, slot) = self.waiting_flushes.remove(position);
            let Some(entry) = self.rings[ring].slots[usize::from(slot)].as_mut() else {
                continue;
            };
            let Stage::FlushWaiting { seq, barrier, data } =
                core::mem::replace(&mut entry.stage, Stage::Flushing { barrier: false })
            else {
                continue;
            };
            let request = match data {
                Some((sector, buffer)) => {
                    entry.stage = Stage::FlushWriting { seq, barrier };
                    IoRequest::Write { sector, buffer }
                }
                None => {
                    entry.stage = Stage::Flushing { barrier };
                    IoRequest::Flush
                }
            };
            self.submit(ring, slot, request, io);
        }
    }

    /// Handles the device's completion of `(ring, slot)`.
    pub(crate) fn complete<P, D>(
        &mut self,
        ring: usize,
        slot: u16,
        result: Result<(), IoError>,
        buffer: Vec<u8>,
        io: &mut Io<'_, P, D>,
    ) where
        P: Platform + GrantMap<Mapping = M>,
        D: BlockDevice,
    {
        let Some(entry) = self
            .rings
            .get_mut(ring)
            .and_then(|ring| ring.slots.get_mut(usize::from(slot)))
            .and_then(Option::take)
        else {
            warn!(
                "vbd {}/{}: device completed ring {ring} slot {slot}, which holds no request",
                io.disk.frontend, io.disk.devid
            );
            return;
        };
        let outcome = match entry.stage {
            Stage::Read => {
                status_of(result).and_then(|()| self.scatter(&entry.segments, &buffer, io))
            }
            Stage::Write { seq } => {
                self.writes_in_flight.remove(&seq);
                status_of(result)
            }
            Stage::Discard => status_of(result),
            Stage::FlushWriting { seq, barrier } => {
                self.writes_in_flight.remove(&seq);
                match status_of(result) {
                    Ok(()) => {
                        self.rings[ring].slots[usize::from(slot)] = Some(InFlight {
                            stage: Stage::Flushing { barrier },
                            ..entry
                        });
                        self.submit(ring, slot, IoRequest::Flush, io);
                        self.advance_flushes(io);
                        return;
                    }
                    Err(reason) => {
                        self.rings[ring].barrier &= !barrier;
                        Err(reason)
                    }
                }
            }
            Stage::Flushing { barrier } => {
                self.rings[ring].barrier &= !barrier;
                status_of(result)
            }
            Stage::FlushWaiting { .. } => {
                warn!(
                    "vbd {}/{}: device completed a flush it was never given",
                    io.disk.frontend, io.disk.devid
                );
                self.rings[ring].slots[usize::from(slot)] = Some(entry);
                return;
            }
        };
        let status = match outcome {
            Ok(()) => BLKIF_RSP_OKAY,
            Err(reason) => {
                self.log_rejection(io, entry.id, entry.operation, reason);
                reason.status()
            }
        };
        self.respond(ring, slot, entry.id, entry.operation, status, entry.bytes);
        self.advance_flushes(io);
    }

    /// Queues a response and frees the slot.
    fn respond(
        &mut self,
        ring: usize,
        slot: u16,
        id: u64,
        operation: u8,
        status: i16,
        bytes: usize,
    ) {
        debug_assert!(matches!(
            status,
            BLKIF_RSP_OKAY | BLKIF_RSP_ERROR | BLKIF_RSP_EOPNOTSUPP
        ));
        let mut response = [0u8; MAX_RESPONSE_SIZE];
        let length = encode_response(self.abi, id, operation, status, &mut response);
        let ring = &mut self.rings[ring];
        if let Err(error) = ring.ring.push_response(&response[..length]) {
            // Only possible if the slot bookkeeping were wrong; the request
            // is dropped rather than a slot overwritten.
            warn!("response for request id {id} not queued: {error}");
        }
        ring.unpushed = true;
        ring.slots[usize::from(slot)] = None;
        ring.free_slots.push(slot);
        ring.bytes_in_flight = ring.bytes_in_flight.saturating_sub(bytes);
    }
}

/// A zeroed buffer, or [`RejectReason::OutOfMemory`].
fn zeroed(length: usize) -> Result<Vec<u8>, RejectReason> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(length)
        .map_err(|_| RejectReason::OutOfMemory)?;
    buffer.resize(length, 0);
    Ok(buffer)
}
