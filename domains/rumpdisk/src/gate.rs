//! Holding a new virtual disk in InitWait long enough for the toolstack to
//! see it there.
//!
//! `xl block-attach` (libxl's `device_backend_callback`) writes the backend
//! directory, then waits for the backend's `state` node to read exactly
//! InitWait (2). It reads the node when its watch fires; if the backend has
//! already gone on to Connected (4) by then, libxl keeps waiting and gives
//! up after 10 s with "unable to add device", although the disk works.
//! Linux's blkback is slowed down by its hotplug script; this backend
//! answers in milliseconds while the toolstack in dom0 may take seconds.
//! So after a vbd is discovered (and goes to InitWait), every later watch
//! event is held back for a short while, then delivered in order.

use alloc::string::String;
use alloc::vec::Vec;

/// How long a newly discovered vbd stays in InitWait, by default.
pub const DEFAULT_HOLD_NS: u64 = 2_000_000_000;

/// The gate between the xenstore watch events and the engine.
#[derive(Debug)]
pub struct AttachGate {
    hold_ns: u64,
    /// Events are held until this system time (ns).
    hold_until: u64,
    /// Held events, oldest first, without duplicates.
    held: Vec<(String, String)>,
}

/// What to do with a watch event.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the engine now.
    Deliver,
    /// It was held; it comes back from [`AttachGate::release`].
    Held,
}

impl AttachGate {
    /// A gate that holds events for `hold_ns` after each discovery.
    pub fn new(hold_ns: u64) -> Self {
        Self {
            hold_ns,
            hold_until: 0,
            held: Vec::new(),
        }
    }

    /// Decides about the event (`path`, `token`) arriving at `now`.
    /// `backend_root` is the engine's watched directory; `is_known(frontend,
    /// devid)` says whether the engine already has that vbd.
    pub fn admit(
        &mut self,
        now: u64,
        path: &str,
        token: &str,
        backend_root: &str,
        is_known: impl Fn(u16, u32) -> bool,
    ) -> Verdict {
        if let Some((frontend, devid)) = vbd_of(path, backend_root) {
            if !is_known(frontend, devid) {
                // A discovery: the engine probes the vbd and writes InitWait.
                self.hold_until = self.hold_until.max(now.saturating_add(self.hold_ns));
                return Verdict::Deliver;
            }
        }
        if now < self.hold_until {
            let event = (String::from(path), String::from(token));
            if !self.held.contains(&event) {
                self.held.push(event);
            }
            return Verdict::Held;
        }
        Verdict::Deliver
    }

    /// When held events are due, if any are held.
    pub fn deadline(&self) -> Option<u64> {
        (!self.held.is_empty()).then_some(self.hold_until)
    }

    /// The held events, if their time has come at `now`.
    pub fn release(&mut self, now: u64) -> Vec<(String, String)> {
        if now < self.hold_until {
            return Vec::new();
        }
        core::mem::take(&mut self.held)
    }
}

/// The (frontend domid, devid) of a path inside `backend_root/<fe>/<devid>`.
fn vbd_of(path: &str, backend_root: &str) -> Option<(u16, u32)> {
    let rest = path.strip_prefix(backend_root)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let frontend = parts.next()?.parse().ok()?;
    let devid = parts.next()?.parse().ok()?;
    Some((frontend, devid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "/local/domain/1/backend/vbd";

    #[test]
    fn discovery_passes_and_later_events_wait_for_the_hold() {
        let mut gate = AttachGate::new(100);
        let known = |_, _| false;
        let path = "/local/domain/1/backend/vbd/2/51728/frontend";
        assert_eq!(
            gate.admit(10, path, "blkback", ROOT, known),
            Verdict::Deliver
        );
        let known = |frontend, devid| (frontend, devid) == (2, 51728);
        let state = "/local/domain/1/backend/vbd/2/51728/state";
        assert_eq!(gate.admit(20, state, "blkback", ROOT, known), Verdict::Held);
        assert_eq!(
            gate.admit(
                30,
                "/local/domain/2/device/vbd/51728/state",
                "fe",
                ROOT,
                known
            ),
            Verdict::Held
        );
        assert_eq!(gate.admit(40, state, "blkback", ROOT, known), Verdict::Held);
        assert_eq!(gate.deadline(), Some(110));
        assert!(gate.release(109).is_empty());
        let released = gate.release(110);
        assert_eq!(released.len(), 2, "duplicates are folded: {released:?}");
        assert_eq!(released[0].0, state);
        assert_eq!(gate.deadline(), None);
        assert_eq!(
            gate.admit(120, state, "blkback", ROOT, known),
            Verdict::Deliver
        );
    }

    #[test]
    fn a_second_discovery_extends_the_hold() {
        let mut gate = AttachGate::new(100);
        let unknown = |_, _| false;
        gate.admit(
            0,
            "/local/domain/1/backend/vbd/2/1",
            "blkback",
            ROOT,
            unknown,
        );
        gate.admit(
            50,
            "/local/domain/1/backend/vbd/3/1",
            "blkback",
            ROOT,
            unknown,
        );
        assert_eq!(
            gate.admit(60, ROOT, "blkback", ROOT, unknown),
            Verdict::Held
        );
        assert_eq!(gate.deadline(), Some(150));
    }

    #[test]
    fn paths_outside_the_backend_root_are_not_discoveries() {
        assert_eq!(
            vbd_of("/local/domain/1/backend/vbd/2/51728/state", ROOT),
            Some((2, 51728))
        );
        assert_eq!(vbd_of("/local/domain/1/backend/vbd/2", ROOT), None);
        assert_eq!(vbd_of("/local/domain/1/backend/vbdx/2/3", ROOT), None);
        assert_eq!(vbd_of("/local/domain/1/backend/vbd/x/3", ROOT), None);
        assert_eq!(vbd_of("/local/domain/1/backend/vbd/70000/3", ROOT), None);
        let mut gate = AttachGate::new(100);
        assert_eq!(
            gate.admit(0, ROOT, "blkback", ROOT, |_, _| false),
            Verdict::Deliver
        );
        assert_eq!(gate.deadline(), None);
    }
}
