//! Keeping a newly found vif visibly in InitWait until the toolstack has
//! looked.
//!
//! `xl network-attach` and `xl create` write the vif's backend directory and
//! then wait until they read `state` = 2 (InitWait) there (libxl's
//! `libxl__wait_device_connection`). They read it only when their watch
//! fires, which under load can be seconds later. If the frontend is already
//! running (dom0, or a guest getting a hot-plugged vif), this backend would
//! have answered its Initialised/Connected long before, `state` would read
//! 4, and libxl would time out with "unable to add device" although the
//! vif works. So once a vif is found, later watch events are deferred for a
//! while and then replayed in their original order. Ring events and the
//! datapath of connected vifs are not held back.

use alloc::collections::VecDeque;
use alloc::string::String;

use netback::DeviceAddress;

/// How long events are deferred after a vif is found, by default.
pub const DEFAULT_HOLD_NS: u64 = 2_000_000_000;

/// Watch events waiting for the end of a hold.
#[derive(Debug)]
pub struct AttachHold {
    length_ns: u64,
    /// Deferred events are due at this system time (ns).
    until_ns: u64,
    /// (path, token), oldest first; a repeated event is kept once.
    deferred: VecDeque<(String, String)>,
}

impl AttachHold {
    /// A hold of `length_ns` per found vif.
    pub fn new(length_ns: u64) -> Self {
        Self {
            length_ns,
            until_ns: 0,
            deferred: VecDeque::new(),
        }
    }

    /// A vif was found at `now_ns`: defer what follows.
    pub fn found(&mut self, now_ns: u64) {
        self.until_ns = self.until_ns.max(now_ns.saturating_add(self.length_ns));
    }

    /// Whether an event arriving at `now_ns` has to wait. An event must
    /// also wait while older ones wait, so the order is kept.
    pub fn must_defer(&self, now_ns: u64) -> bool {
        now_ns < self.until_ns || !self.deferred.is_empty()
    }

    /// Puts an event aside until [`due`](Self::due) hands it back.
    pub fn defer(&mut self, path: &str, token: &str) {
        let repeated = self
            .deferred
            .iter()
            .any(|(held_path, held_token)| held_path == path && held_token == token);
        if !repeated {
            self.deferred.push_back((path.into(), token.into()));
        }
    }

    /// When the deferred events are due, if there are any.
    pub fn deadline_ns(&self) -> Option<u64> {
        (!self.deferred.is_empty()).then_some(self.until_ns)
    }

    /// The oldest deferred event, if the hold is over at `now_ns`.
    pub fn due(&mut self, now_ns: u64) -> Option<(String, String)> {
        if now_ns < self.until_ns {
            return None;
        }
        self.deferred.pop_front()
    }
}

/// The vif a path inside `backend/vif/<frontend-id>/<handle>` belongs to.
/// Watch events name the path as it was watched: relative
/// (`backend/vif/3/0/state`) or under this domain's home
/// (`/local/domain/1/backend/vif/3/0/state`). Anything else is `None`.
pub fn vif_of(path: &str) -> Option<DeviceAddress> {
    let relative = match path.strip_prefix("/local/domain/") {
        Some(rest) => {
            let (domid, rest) = rest.split_once('/')?;
            if domid.is_empty() || !domid.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            rest
        }
        None => path,
    };
    let mut parts = relative.strip_prefix("backend/vif/")?.split('/');
    let frontend_id = canonical_decimal(parts.next()?)?;
    let devid = canonical_decimal(parts.next()?)?;
    Some(DeviceAddress {
        frontend_id: u16::try_from(frontend_id).ok()?,
        devid: u32::try_from(devid).ok()?,
    })
}

/// A decimal number without sign or leading zeros, as xenstore paths
/// written by the toolstack have them.
fn canonical_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= 10
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn drain(hold: &mut AttachHold, now_ns: u64) -> Vec<(String, String)> {
        core::iter::from_fn(|| hold.due(now_ns)).collect()
    }

    #[test]
    fn events_after_a_discovery_wait_and_keep_their_order() {
        let mut hold = AttachHold::new(100);
        assert!(!hold.must_defer(5));
        hold.found(10);
        assert!(hold.must_defer(20));
        hold.defer("backend/vif/3/0/state", "netback/3/0");
        hold.defer("/local/domain/3/device/vif/0/state", "netback/3/0");
        hold.defer("backend/vif/3/0/state", "netback/3/0");
        assert_eq!(hold.deadline_ns(), Some(110));
        assert_eq!(hold.due(109), None);
        let released = drain(&mut hold, 110);
        let paths: Vec<&str> = released.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "backend/vif/3/0/state",
                "/local/domain/3/device/vif/0/state"
            ],
            "repeats are folded, order is kept"
        );
        assert_eq!(hold.deadline_ns(), None);
        assert!(!hold.must_defer(120));
    }

    #[test]
    fn a_second_discovery_extends_the_hold_and_later_events_queue_behind() {
        let mut hold = AttachHold::new(100);
        hold.found(0);
        hold.defer("a", "t");
        hold.found(50);
        assert_eq!(hold.deadline_ns(), Some(150));
        assert_eq!(hold.due(120), None);
        // Past the hold, but older events still wait: a new one queues.
        assert!(hold.must_defer(200));
        hold.defer("b", "t");
        let released = drain(&mut hold, 200);
        assert_eq!(released.len(), 2);
        assert_eq!(released[0].0, "a");
        assert_eq!(released[1].0, "b");
    }

    #[test]
    fn an_earlier_discovery_does_not_shorten_the_hold() {
        let mut hold = AttachHold::new(100);
        hold.found(500);
        hold.found(450);
        hold.defer("x", "t");
        assert_eq!(hold.deadline_ns(), Some(600));
    }

    #[test]
    fn vif_paths_are_recognised_relative_and_absolute() {
        let vif = |frontend_id, devid| Some(DeviceAddress { frontend_id, devid });
        assert_eq!(vif_of("backend/vif/3/0"), vif(3, 0));
        assert_eq!(vif_of("backend/vif/3/0/state"), vif(3, 0));
        assert_eq!(vif_of("/local/domain/1/backend/vif/0/7/mac"), vif(0, 7));
        assert_eq!(vif_of("backend/vif/3"), None);
        assert_eq!(vif_of("backend/vif"), None);
        assert_eq!(vif_of("backend/vbd/3/0"), None);
        assert_eq!(vif_of("backend/vifx/3/0"), None);
        assert_eq!(vif_of("/local/domain/3/device/vif/0/state"), None);
        assert_eq!(vif_of("/local/domain//backend/vif/3/0"), None);
        assert_eq!(vif_of("/local/domain/x/backend/vif/3/0"), None);
        assert_eq!(vif_of("backend/vif/03/0"), None);
        assert_eq!(vif_of("backend/vif/-3/0"), None);
        assert_eq!(vif_of("backend/vif/70000/0"), None);
        assert_eq!(vif_of("backend/vif/3/99999999999"), None);
        assert_eq!(vif_of("backend/vif/3/"), None);
    }
}
