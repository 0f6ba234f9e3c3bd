//! Keeping a newly found device visibly in InitWait until the toolstack
//! has looked.
//!
//! `xl create`, `xl block-attach` and `xl network-attach` write a device's
//! backend directory and then wait until they read `state` = 2
//! (InitWait) there (libxl's `libxl__wait_device_connection`). They read
//! it only when their watch fires, which under load can be seconds later.
//! If the frontend is already running (dom0, or a guest getting a
//! hot-plugged device), a backend in a driver domain answers its
//! Initialised/Connected in milliseconds, `state` reads 4 by the time
//! libxl looks, and libxl gives up with "unable to add device" although
//! the device works. Linux's backends are slowed down enough by their
//! hotplug scripts; ours are not.
//!
//! So once a device is found, later watch events are deferred for a while
//! ([`DEFAULT_HOLD_NS`] unless the domain says otherwise) and then handed
//! back in their original order. Event channels, and so the datapath of
//! devices already connected, are not held back.

use alloc::collections::VecDeque;
use alloc::string::String;

use super::{BackendDirectory, DeviceAddress};

/// How long events are deferred after a device is found, by default.
pub const DEFAULT_HOLD_NS: u64 = 2_000_000_000;

/// What to do with a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the engine now.
    Deliver,
    /// It was put aside; [`AttachHold::due`] hands it back.
    Held,
}

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
    /// A hold of `length_ns` after each device found (0: no hold).
    pub fn new(length_ns: u64) -> Self {
        Self {
            length_ns,
            until_ns: 0,
            deferred: VecDeque::new(),
        }
    }

    /// Decides about the watch event (`path`, `token`) arriving at
    /// `now_ns`. An event about a device under `directory` that the engine
    /// does not know yet (`is_known` says no) is a discovery: it goes
    /// through at once, since the engine must see the device to write
    /// InitWait, and starts a hold. Any other event waits while a hold
    /// lasts or older events still wait, so the order is kept.
    pub fn admit(
        &mut self,
        now_ns: u64,
        directory: &BackendDirectory,
        path: &str,
        token: &str,
        is_known: impl Fn(DeviceAddress) -> bool,
    ) -> Verdict {
        if let Ok(Some(address)) = directory.recognise(path) {
            if !is_known(address) {
                self.until_ns = self.until_ns.max(now_ns.saturating_add(self.length_ns));
                return Verdict::Deliver;
            }
        }
        if !self.is_holding(now_ns) {
            return Verdict::Deliver;
        }
        let repeated = self
            .deferred
            .iter()
            .any(|(held_path, held_token)| held_path == path && held_token == token);
        if !repeated {
            self.deferred.push_back((path.into(), token.into()));
        }
        Verdict::Held
    }

    /// Whether an event arriving at `now_ns` would be held: a hold lasts,
    /// or older events still wait.
    pub fn is_holding(&self, now_ns: u64) -> bool {
        now_ns < self.until_ns || !self.deferred.is_empty()
    }

    /// When the deferred events are due, if there are any.
    pub fn deadline_ns(&self) -> Option<u64> {
        (!self.deferred.is_empty()).then_some(self.until_ns)
    }

    /// The oldest deferred event, if the hold is over at `now_ns`. Call it
    /// until it returns `None` after every wait, whatever woke the loop.
    pub fn due(&mut self, now_ns: u64) -> Option<(String, String)> {
        if now_ns < self.until_ns {
            return None;
        }
        self.deferred.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn directory() -> BackendDirectory {
        BackendDirectory::new("vif")
    }

    fn drain(hold: &mut AttachHold, now_ns: u64) -> Vec<(String, String)> {
        core::iter::from_fn(|| hold.due(now_ns)).collect()
    }

    fn known(frontend_id: u16, devid: u32) -> impl Fn(DeviceAddress) -> bool {
        move |address| address == DeviceAddress { frontend_id, devid }
    }

    fn nothing_known(_: DeviceAddress) -> bool {
        false
    }

    #[test]
    fn a_discovery_passes_and_later_events_wait_in_order() {
        let mut hold = AttachHold::new(100);
        let directory = directory();
        assert!(!hold.is_holding(5));
        let token = "netback";
        assert_eq!(
            hold.admit(10, &directory, "backend/vif/3/0", token, nothing_known),
            Verdict::Deliver
        );
        assert!(hold.is_holding(20));
        let events = [
            "backend/vif/3/0/state",
            "/local/domain/3/device/vif/0/state",
            "backend/vif/3/0/state",
        ];
        for (offset, path) in events.iter().enumerate() {
            let now = 20 + offset as u64;
            assert_eq!(
                hold.admit(now, &directory, path, token, known(3, 0)),
                Verdict::Held
            );
        }
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
        assert!(released.iter().all(|(_, held_token)| held_token == token));
        assert_eq!(hold.deadline_ns(), None);
        assert!(!hold.is_holding(120));
        assert_eq!(
            hold.admit(120, &directory, "backend/vif/3/0/state", token, known(3, 0)),
            Verdict::Deliver
        );
    }

    #[test]
    fn a_second_discovery_extends_the_hold_and_later_events_queue_behind() {
        let mut hold = AttachHold::new(100);
        let directory = directory();
        hold.admit(0, &directory, "backend/vif/2/0", "t", nothing_known);
        assert_eq!(
            hold.admit(10, &directory, "a", "t", nothing_known),
            Verdict::Held
        );
        hold.admit(50, &directory, "backend/vif/3/0", "t", nothing_known);
        assert_eq!(hold.deadline_ns(), Some(150));
        assert_eq!(hold.due(120), None);
        // Past the hold, but an older event still waits: a new one queues.
        assert_eq!(
            hold.admit(200, &directory, "b", "t", nothing_known),
            Verdict::Held
        );
        let released = drain(&mut hold, 200);
        assert_eq!(released.len(), 2);
        assert_eq!(released[0].0, "a");
        assert_eq!(released[1].0, "b");
    }

    #[test]
    fn an_earlier_discovery_does_not_shorten_the_hold() {
        let mut hold = AttachHold::new(100);
        let directory = directory();
        hold.admit(500, &directory, "backend/vif/2/0", "t", nothing_known);
        hold.admit(450, &directory, "backend/vif/3/0", "t", nothing_known);
        hold.admit(460, &directory, "x", "t", nothing_known);
        assert_eq!(hold.deadline_ns(), Some(600));
    }

    #[test]
    fn only_device_paths_under_the_directory_are_discoveries() {
        let mut hold = AttachHold::new(100);
        let directory = directory();
        for path in [
            "backend/vif",
            "backend/vif/3",
            "backend/vbd/3/0",
            "backend/vifx/3/0",
            "backend/vif/03/0",
            "backend/vif/70000/0",
            "/local/domain/3/device/vif/0/state",
        ] {
            assert_eq!(
                hold.admit(0, &directory, path, "t", nothing_known),
                Verdict::Deliver,
                "{path}"
            );
            assert!(!hold.is_holding(0), "{path} started a hold");
        }
    }

    #[test]
    fn no_hold_when_its_length_is_zero() {
        let mut hold = AttachHold::new(0);
        let directory = directory();
        hold.admit(10, &directory, "backend/vif/3/0", "t", nothing_known);
        assert_eq!(
            hold.admit(10, &directory, "backend/vif/3/0/state", "t", known(3, 0)),
            Verdict::Deliver
        );
        assert_eq!(hold.deadline_ns(), None);
    }
}
