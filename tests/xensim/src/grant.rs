//! Grant tables, version 1 (`xen/include/public/grant_table.h`).
//!
//! Each domain has a table of shared entries it writes itself (flags,
//! the domid the page is granted to, the frame) and, inside the
//! hypervisor, an active entry per gref that counts how often the grant is
//! pinned by maps and in-flight copies. The checks and their status codes
//! follow `xen/common/grant_table.c`:
//!
//! | check (in Xen's order)                                  | status              |
//! |---------------------------------------------------------|---------------------|
//! | copy of length 0                                        | okay, nothing done  |
//! | domain of a grant side does not exist                   | `GNTST_bad_domain`  |
//! | `gref >= ` table size                                   | `GNTST_bad_gntref`  |
//! | grant pinned by another domain, or pin counter full     | `GNTST_general_error` |
//! | entry not `GTF_permit_access`, or granted to another domid | `GNTST_general_error` |
//! | write access to a `GTF_readonly` grant                   | `GNTST_general_error` |
//! | granted frame does not exist                            | `GNTST_bad_page`    |
//! | `offset + length` beyond the page (copy)                | `GNTST_bad_copy_arg` |
//! | maptrack handles exhausted (map)                        | `GNTST_no_space`    |
//! | unknown or already unmapped handle (unmap)              | `GNTST_bad_handle`  |
//!
//! Note that Xen reports a grant given to another domain, and a write to a
//! read-only grant, as `GNTST_general_error` (`_set_status_v1`), not as
//! `GNTST_permission_denied`; `permission_denied` only comes from XSM and
//! from naming a frame of a foreign domain, which the platform traits
//! cannot express.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use xen_ring::SharedMemory;
use xenbus::platform::{CopyOp, DomId, GrantCopy, GrantError, GrantMap, GrantRef, GrantSpan};

use crate::memory::{self, Frame, FrameRange, Gfn, Page, PAGE_SIZE};
use crate::rng::SplitMix64;
use crate::{Domain, State};

/// `GTF_permit_access`: the entry grants access to a frame.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_readonly`: the grantee may only read.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`: set by the hypervisor while the grant is pinned (mapped
/// or being copied).
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`: set by the hypervisor while the grant is pinned for
/// writing.
pub const GTF_WRITING: u16 = 1 << 4;
/// `GTF_type_mask`.
const GTF_TYPE_MASK: u16 = 3;

/// `GNTTAB_NR_RESERVED_ENTRIES`: grefs the toolstack keeps (console,
/// xenstore); [`Domain::grant_access`] never hands them out.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;

/// v1 entries per grant table frame (4096 / 8).
const ENTRIES_PER_FRAME: u32 = 512;

/// Xen's pin counters are 8-bit fields (`GNTPIN_hstr_mask`,
/// `GNTPIN_hstw_mask`); a pin that would overflow one fails.
const MAX_PINS: u32 = 0xff;

/// A shared grant entry (`grant_entry_v1_t`), as the granting domain wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GrantEntry {
    /// `GTF_*` flags.
    pub flags: u16,
    /// The domain allowed to use the grant.
    pub domid: DomId,
    /// The granted frame of the granting domain.
    pub frame: Gfn,
}

/// A grant map handle (`grant_handle_t`), from the mapping domain's
/// maptrack table.
pub type GrantHandle = u32;

/// Why [`Domain::end_access`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndAccessError {
    /// The gref is outside the grant table or one of the reserved entries.
    BadGntref,
    /// The entry does not grant access.
    NotGranted,
    /// The grant is mapped or a copy is in progress (`GTF_reading` or `GTF_writing` is set).
    InUse,
}

/// The hypervisor's bookkeeping for one gref.
#[derive(Debug, Default)]
struct Active {
    read_pins: u32,
    write_pins: u32,
    /// The domain holding the pins.
    domid: DomId,
    /// The frame, looked up when the first pin was taken.
    frame: Option<Arc<Frame>>,
}

impl Active {
    fn pinned(&self) -> bool {
        self.read_pins + self.write_pins > 0
    }
}

/// One domain's grant table.
pub(crate) struct GrantTable {
    shared: Vec<GrantEntry>,
    active: Vec<Active>,
    /// Whether the guest-side allocator handed the gref out.
    allocated: Vec<bool>,
    free: VecDeque<GrantRef>,
}

impl GrantTable {
    pub(crate) fn new(frames: u32, shuffle: bool, rng: &mut SplitMix64) -> Self {
        let size = frames.saturating_mul(ENTRIES_PER_FRAME);
        let mut free: Vec<GrantRef> = (GNTTAB_NR_RESERVED_ENTRIES..size).collect();
        if shuffle {
            rng.shuffle(&mut free);
        }
        GrantTable {
            shared: vec![GrantEntry::default(); size as usize],
            active: (0..size).map(|_| Active::default()).collect(),
            allocated: vec![false; size as usize],
            free: free.into(),
        }
    }

    fn size(&self) -> u32 {
        self.shared.len() as u32
    }

    /// Pins `gref` for `caller`, as `acquire_grant_for_copy` and
    /// `map_grant_ref` do, and returns the frame.
    fn acquire(
        &mut self,
        pages: &BTreeMap<Gfn, Page>,
        caller: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<Arc<Frame>, GrantError> {
        if gref >= self.size() {
            return Err(GrantError::BadGntref);
        }
        let index = gref as usize;
        let active = &mut self.active[index];
        let pinned = active.pinned();
        if pinned && active.domid != caller {
            log::warn!("gref {gref} is pinned by d{}, not d{caller}", active.domid);
            return Err(GrantError::GeneralError);
        }
        let counter = if readonly {
            active.read_pins
        } else {
            active.write_pins
        };
        if counter >= MAX_PINS {
            return Err(GrantError::GeneralError);
        }
        if !pinned || (!readonly && active.write_pins == 0) {
            let entry = &mut self.shared[index];
            if !pinned
                && ((entry.flags & GTF_TYPE_MASK) != GTF_PERMIT_ACCESS || entry.domid != caller)
            {
                log::warn!(
                    "bad flags {:#x} or domid {} for gref {gref}; expected d{caller}",
                    entry.flags,
                    entry.domid
                );
                return Err(GrantError::GeneralError);
            }
            if !readonly && entry.flags & GTF_READONLY != 0 {
                log::warn!("attempt to write-pin read-only gref {gref}");
                return Err(GrantError::GeneralError);
            }
            if !pinned {
                let Some(page) = pages.get(&entry.frame) else {
                    return Err(GrantError::BadPage);
                };
                active.frame = Some(page.frame.clone());
                active.domid = caller;
            }
            entry.flags |= GTF_READING;
            if !readonly {
                entry.flags |= GTF_WRITING;
            }
        }
        if readonly {
            active.read_pins += 1;
        } else {
            active.write_pins += 1;
        }
        Ok(active.frame.clone().expect("a pinned grant has its frame"))
    }

    /// Drops one pin taken by [`GrantTable::acquire`].
    fn release(&mut self, gref: GrantRef, readonly: bool) {
        let index = gref as usize;
        let active = &mut self.active[index];
        if readonly {
            active.read_pins -= 1;
        } else {
            active.write_pins -= 1;
        }
        if active.write_pins == 0 {
            self.shared[index].flags &= !GTF_WRITING;
        }
        if !active.pinned() {
            self.shared[index].flags &= !GTF_READING;
            active.frame = None;
        }
    }
}

/// Failures injected into a domain's own grant operations, for testing
/// how an engine copes with a hypervisor that says no (paging `EAGAIN`,
/// a peer that revoked a grant under it, exhausted maptrack space).
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    remaining: u32,
    error: Option<GrantError>,
}

impl FaultPlan {
    /// The error the next operation must fail with, if any.
    fn take(&mut self) -> Option<GrantError> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        self.error
    }
}

/// One grant map held by a domain.
#[derive(Debug, Clone, Copy)]
struct MapEntry {
    domid: DomId,
    gref: GrantRef,
    readonly: bool,
}

/// A domain's maptrack table: the grant maps it holds.
#[derive(Debug, Default)]
pub(crate) struct MapTrack {
    entries: BTreeMap<GrantHandle, MapEntry>,
    free: Vec<GrantHandle>,
    next: GrantHandle,
}

impl MapTrack {
    fn allocate(&mut self, limit: u32) -> Option<GrantHandle> {
        if let Some(handle) = self.free.pop() {
            return Some(handle);
        }
        if self.next >= limit {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }
}

/// Pages of another domain mapped into this one through grants, as one
/// contiguous range (a multi-page ring, for instance).
///
/// Reads and writes go straight to the granting domain's frames. Writing
/// through a read-only mapping is a bug in the caller (on real Xen the
/// domain would take a page fault) and panics.
#[derive(Debug)]
pub struct Mapping {
    range: FrameRange,
    writable: bool,
    domid: DomId,
    grefs: Vec<GrantRef>,
    handles: Vec<GrantHandle>,
}

impl Mapping {
    /// The granting domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The mapped grefs, in mapping order.
    pub fn grefs(&self) -> &[GrantRef] {
        &self.grefs
    }

    /// The map handles, one per gref.
    pub fn handles(&self) -> &[GrantHandle] {
        &self.handles
    }

    /// Whether the mapping may be written.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    fn check_writable(&self) {
        assert!(
            self.writable,
            "write through a read-only grant mapping of d{} grefs {:?}",
            self.domid, self.grefs
        );
    }
}

impl SharedMemory for Mapping {
    fn len(&self) -> usize {
        self.range.len()
    }

    fn load_u32(&self, offset: usize) -> u32 {
        self.range.load_u32(offset)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        self.check_writable();
        self.range.store_u32(offset, value);
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        self.range.read(offset, destination);
    }

    fn write(&self, offset: usize, source: &[u8]) {
        self.check_writable();
        self.range.write(offset, source);
    }
}

/// A pinned side of a copy: which grant to release afterwards.
struct Claim {
    domid: DomId,
    gref: GrantRef,
    readonly: bool,
    frame: Arc<Frame>,
}

impl State {
    /// The `gnttab_copy_lock_domain` step: the domain must exist.
    fn copy_domain(&self, caller: DomId, domid: DomId) -> Result<DomId, GrantError> {
        let domid = State::resolve(caller, domid);
        if self.domains.contains_key(&domid) {
            Ok(domid)
        } else {
            Err(GrantError::BadDomain)
        }
    }

    fn claim(
        &mut self,
        caller: DomId,
        domid: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<Claim, GrantError> {
        let domain = self.domains.get_mut(&domid).ok_or(GrantError::BadDomain)?;
        let frame = domain
            .grants
            .acquire(&domain.pages, caller, gref, readonly)?;
        Ok(Claim {
            domid,
            gref,
            readonly,
            frame,
        })
    }

    fn unclaim(&mut self, claim: &Claim) {
        // The granting domain may have been destroyed meanwhile; its table
        // went with it.
        if let Some(domain) = self.domains.get_mut(&claim.domid) {
            domain.grants.release(claim.gref, claim.readonly);
        }
    }

    /// Releases every grant map `domid` holds (domain destruction).
    pub(crate) fn release_all_maps(&mut self, domid: DomId) {
        let Some(domain) = self.domains.get_mut(&domid) else {
            return;
        };
        let entries: Vec<MapEntry> = std::mem::take(&mut domain.maptrack.entries)
            .into_values()
            .collect();
        for entry in entries {
            if let Some(granter) = self.domains.get_mut(&entry.domid) {
                granter.grants.release(entry.gref, entry.readonly);
            }
        }
    }

    fn map_one(
        &mut self,
        caller: DomId,
        domid: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<(GrantHandle, Arc<Frame>), GrantError> {
        if let Some(error) = self
            .domains
            .get_mut(&caller)
            .and_then(|domain| domain.grant_faults.take())
        {
            return Err(error);
        }
        // map_grant_ref takes the domain by id: DOMID_SELF is not resolved.
        if !self.domains.contains_key(&domid) {
            return Err(GrantError::BadDomain);
        }
        let limit = self.config.max_maptrack_handles;
        let handle = self
            .domains
            .get_mut(&caller)
            .ok_or(GrantError::GeneralError)?
            .maptrack
            .allocate(limit)
            .ok_or(GrantError::NoSpace)?;
        let granter = self.domains.get_mut(&domid).expect("checked above");
        match granter
            .grants
            .acquire(&granter.pages, caller, gref, readonly)
        {
            Ok(frame) => {
                let mapper = self.domains.get_mut(&caller).expect("checked");
                mapper.stats.grant_maps += 1;
                let maptrack = &mut mapper.maptrack;
                maptrack.entries.insert(
                    handle,
                    MapEntry {
                        domid,
                        gref,
                        readonly,
                    },
                );
                Ok((handle, frame))
            }
            Err(error) => {
                let maptrack = &mut self.domains.get_mut(&caller).expect("checked").maptrack;
                maptrack.free.push(handle);
                Err(error)
            }
        }
    }

    fn unmap_one(&mut self, caller: DomId, handle: GrantHandle) -> Result<(), GrantError> {
        let mapper = self
            .domains
            .get_mut(&caller)
            .ok_or(GrantError::GeneralError)?;
        let entry = mapper
            .maptrack
            .entries
            .remove(&handle)
            .ok_or(GrantError::BadHandle)?;
        mapper.maptrack.free.push(handle);
        mapper.stats.grant_unmaps += 1;
        if let Some(granter) = self.domains.get_mut(&entry.domid) {
            granter.grants.release(entry.gref, entry.readonly);
        }
        Ok(())
    }
}

/// The length of a copy operation and its two offsets (`None` for a local
/// buffer, which starts at offset 0 of its own frame).
fn copy_geometry(op: &CopyOp<'_>) -> (usize, usize, usize) {
    match op {
        CopyOp::FromGrant {
            source,
            destination,
        } => (destination.len(), usize::from(source.offset), 0),
        CopyOp::ToGrant {
            source,
            destination,
        } => (source.len(), 0, usize::from(destination.offset)),
        CopyOp::GrantToGrant {
            source,
            destination,
            length,
        } => (
            usize::from(*length),
            usize::from(source.offset),
            usize::from(destination.offset),
        ),
    }
}

impl Domain {
    /// Grants `to_domid` access to this domain's page `gfn`, read-only if
    /// `readonly`, and returns the gref (what a frontend writes into a ring
    /// request or xenstore). The frame is not checked here, as Xen does not
    /// either: a grant of a missing frame fails when used.
    ///
    /// Fails with [`GrantError::NoSpace`] when every gref is in use.
    pub fn grant_access(
        &self,
        to_domid: DomId,
        gfn: Gfn,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let mut state = self.hypervisor.lock();
        let table = &mut state
            .domains
            .get_mut(&self.domid)
            .ok_or(GrantError::GeneralError)?
            .grants;
        let gref = table.free.pop_front().ok_or(GrantError::NoSpace)?;
        table.allocated[gref as usize] = true;
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        table.shared[gref as usize] = GrantEntry {
            flags,
            domid: to_domid,
            frame: gfn,
        };
        Ok(gref)
    }

    /// Revokes a grant made by [`Domain::grant_access`] and frees the gref,
    /// unless it is in use: like Linux's `gnttab_end_foreign_access_ref`,
    /// this fails while `GTF_reading` or `GTF_writing` is set, that is while
    /// another domain maps the page or copies to or from it.
    pub fn end_access(&self, gref: GrantRef) -> Result<(), EndAccessError> {
        let mut state = self.hypervisor.lock();
        let Some(domain) = state.domains.get_mut(&self.domid) else {
            return Err(EndAccessError::BadGntref);
        };
        let table = &mut domain.grants;
        if gref >= table.size() || gref < GNTTAB_NR_RESERVED_ENTRIES {
            return Err(EndAccessError::BadGntref);
        }
        let entry = &mut table.shared[gref as usize];
        if entry.flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS {
            return Err(EndAccessError::NotGranted);
        }
        if entry.flags & (GTF_READING | GTF_WRITING) != 0 {
            return Err(EndAccessError::InUse);
        }
        *entry = GrantEntry::default();
        if std::mem::replace(&mut table.allocated[gref as usize], false) {
            table.free.push_back(gref);
        }
        Ok(())
    }

    /// Reads a shared grant entry of this domain's table, including the
    /// `GTF_reading`/`GTF_writing` bits the hypervisor maintains.
    pub fn grant_entry(&self, gref: GrantRef) -> Option<GrantEntry> {
        let state = self.hypervisor.lock();
        state
            .domains
            .get(&self.domid)?
            .grants
            .shared
            .get(gref as usize)
            .copied()
    }

    /// Overwrites a shared grant entry directly, as a guest may write its
    /// own table at any time. For hostile-frontend tests: the hypervisor
    /// keeps honouring pins it already holds, exactly as Xen does.
    /// Returns false if `gref` is outside the table.
    pub fn set_grant_entry(&self, gref: GrantRef, entry: GrantEntry) -> bool {
        let mut state = self.hypervisor.lock();
        let Some(domain) = state.domains.get_mut(&self.domid) else {
            return false;
        };
        match domain.grants.shared.get_mut(gref as usize) {
            Some(slot) => {
                *slot = entry;
                true
            }
            None => false,
        }
    }

    /// Number of entries in this domain's grant table; grefs at or above it
    /// are `GNTST_bad_gntref`.
    pub fn grant_table_size(&self) -> u32 {
        let state = self.hypervisor.lock();
        state
            .domains
            .get(&self.domid)
            .map_or(0, |domain| domain.grants.size())
    }

    /// Number of grefs the guest-side allocator can still hand out.
    pub fn free_grefs(&self) -> usize {
        let state = self.hypervisor.lock();
        state
            .domains
            .get(&self.domid)
            .map_or(0, |domain| domain.grants.free.len())
    }

    /// One `GNTTABOP_copy` operation, with Xen's checks in Xen's order.
    pub fn copy_one(&self, op: &mut CopyOp<'_>) -> Result<(), GrantError> {
        let length = copy_geometry(op).0;
        let result = self.copy_unrecorded(op);
        if length > 0 {
            let mut state = self.hypervisor.lock();
            if let Some(domain) = state.domains.get_mut(&self.domid) {
                match result {
                    Ok(()) => {
                        domain.stats.grant_copies += 1;
                        domain.stats.grant_copy_bytes += length as u64;
                    }
                    Err(_) => domain.stats.grant_copy_errors += 1,
                }
            }
        }
        result
    }

    fn copy_unrecorded(&self, op: &mut CopyOp<'_>) -> Result<(), GrantError> {
        let caller = self.domid;
        let (length, source_offset, destination_offset) = copy_geometry(op);
        if length == 0 {
            return Ok(());
        }
        let (source, destination) = {
            let mut state = self.hypervisor.lock();
            let Some(domain) = state.domains.get_mut(&caller) else {
                return Err(GrantError::GeneralError);
            };
            if let Some(error) = domain.grant_faults.take() {
                return Err(error);
            }
            let (source_span, destination_span): (Option<GrantSpan>, Option<GrantSpan>) = match op {
                CopyOp::FromGrant { source, .. } => (Some(*source), None),
                CopyOp::ToGrant { destination, .. } => (None, Some(*destination)),
                CopyOp::GrantToGrant {
                    source,
                    destination,
                    ..
                } => (Some(*source), Some(*destination)),
            };
            let source_domid = source_span
                .map(|span| state.copy_domain(caller, span.domid))
                .transpose()?;
            let destination_domid = destination_span
                .map(|span| state.copy_domain(caller, span.domid))
                .transpose()?;
            let source = match (source_span, source_domid) {
                (Some(span), Some(domid)) => Some(state.claim(caller, domid, span.gref, true)?),
                _ => None,
            };
            let destination = match (destination_span, destination_domid) {
                (Some(span), Some(domid)) => match state.claim(caller, domid, span.gref, false) {
                    Ok(claim) => Some(claim),
                    Err(error) => {
                        if let Some(claim) = &source {
                            state.unclaim(claim);
                        }
                        return Err(error);
                    }
                },
                _ => None,
            };
            if source_offset + length > PAGE_SIZE || destination_offset + length > PAGE_SIZE {
                log::warn!("copy beyond page area");
                for claim in source.iter().chain(destination.iter()) {
                    state.unclaim(claim);
                }
                return Err(GrantError::BadCopyArg);
            }
            (source, destination)
        };
        // The data moves without the machine lock, while the grants are
        // pinned: this is when the granting domain sees GTF_reading and
        // GTF_writing set.
        match op {
            CopyOp::FromGrant {
                destination: buffer,
                ..
            } => {
                let claim = source.as_ref().expect("source claimed");
                memory::frame_read(&claim.frame, source_offset, buffer);
            }
            CopyOp::ToGrant { source: buffer, .. } => {
                let claim = destination.as_ref().expect("destination claimed");
                memory::frame_write(&claim.frame, destination_offset, buffer);
            }
            CopyOp::GrantToGrant { .. } => {
                let from = source.as_ref().expect("source claimed");
                let to = destination.as_ref().expect("destination claimed");
                memory::copy_between(
                    &from.frame,
                    source_offset,
                    &to.frame,
                    destination_offset,
                    length,
                );
            }
        }
        let mut state = self.hypervisor.lock();
        for claim in source.iter().chain(destination.iter()) {
            state.unclaim(claim);
        }
        Ok(())
    }

    /// Makes this domain's next `count` grant operations (each copy
    /// operation, each gref of a map) fail with `error` without touching
    /// any grant, as a fault injector. A copy of length 0 is not counted,
    /// since Xen does nothing for it. `count = 0` cancels the plan.
    pub fn inject_grant_faults(&self, count: u32, error: GrantError) {
        let mut state = self.hypervisor.lock();
        if let Some(domain) = state.domains.get_mut(&self.domid) {
            domain.grant_faults = FaultPlan {
                remaining: count,
                error: Some(error),
            };
        }
    }

    /// Maps one grant of `domid` (`GNTTABOP_map_grant_ref`); returns the
    /// handle and the page. Prefer [`GrantMap::map`], which builds a
    /// [`Mapping`]; this is for tests of the single-grant rules.
    pub fn map_grant(
        &self,
        domid: DomId,
        gref: GrantRef,
        writable: bool,
    ) -> Result<GrantHandle, GrantError> {
        let mut state = self.hypervisor.lock();
        state
            .map_one(self.domid, domid, gref, !writable)
            .map(|(handle, _)| handle)
    }

    /// Unmaps one grant map handle (`GNTTABOP_unmap_grant_ref`); an unknown
    /// or already unmapped handle is [`GrantError::BadHandle`].
    pub fn unmap_grant(&self, handle: GrantHandle) -> Result<(), GrantError> {
        self.hypervisor.lock().unmap_one(self.domid, handle)
    }

    /// Number of grant maps this domain currently holds.
    pub fn active_maps(&self) -> usize {
        let state = self.hypervisor.lock();
        state
            .domains
            .get(&self.domid)
            .map_or(0, |domain| domain.maptrack.entries.len())
    }

    /// Maps `grefs` of `domid` as one contiguous [`Mapping`]. If any gref
    /// fails, the ones already mapped are unmapped again and its error is
    /// returned (as Linux's `xenbus_map_ring_valloc` does). An empty list
    /// is [`GrantError::GeneralError`].
    pub fn map_grants(
        &self,
        domid: DomId,
        grefs: &[GrantRef],
        writable: bool,
    ) -> Result<Mapping, GrantError> {
        if grefs.is_empty() {
            return Err(GrantError::GeneralError);
        }
        let mut state = self.hypervisor.lock();
        let mut handles = Vec::with_capacity(grefs.len());
        let mut frames = Vec::with_capacity(grefs.len());
        for &gref in grefs {
            match state.map_one(self.domid, domid, gref, !writable) {
                Ok((handle, frame)) => {
                    handles.push(handle);
                    frames.push(frame);
                }
                Err(error) => {
                    for handle in handles {
                        let _ = state.unmap_one(self.domid, handle);
                    }
                    return Err(error);
                }
            }
        }
        Ok(Mapping {
            range: FrameRange::new(frames),
            writable,
            domid,
            grefs: grefs.to_vec(),
            handles,
        })
    }

    /// Unmaps every page of `mapping`; returns the first error (a handle
    /// already unmapped with [`Domain::unmap_grant`] is
    /// [`GrantError::BadHandle`]).
    pub fn unmap_grants(&self, mapping: Mapping) -> Result<(), GrantError> {
        let mut state = self.hypervisor.lock();
        let mut result = Ok(());
        for &handle in &mapping.handles {
            if let Err(error) = state.unmap_one(self.domid, handle) {
                result = result.and(Err(error));
            }
        }
        result
    }
}

impl GrantCopy for Domain {
    /// # Panics
    ///
    /// If `status.len() != ops.len()`, which the trait forbids.
    fn copy(&mut self, ops: &mut [CopyOp<'_>], status: &mut [Result<(), GrantError>]) {
        assert_eq!(ops.len(), status.len(), "one status per copy operation");
        for (op, status) in ops.iter_mut().zip(status.iter_mut()) {
            *status = self.copy_one(op);
        }
    }
}

impl GrantMap for Domain {
    type Mapping = Mapping;

    fn map(
        &mut self,
        domid: DomId,
        grefs: &[GrantRef],
        writable: bool,
    ) -> Result<Mapping, GrantError> {
        self.map_grants(domid, grefs, writable)
    }

    fn unmap(&mut self, mapping: Mapping) {
        if let Err(error) = self.unmap_grants(mapping) {
            log::warn!("d{}: unmap failed: {error:?}", self.domid);
        }
    }
}
