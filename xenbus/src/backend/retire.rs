//! Removing the backend directory of a device the toolstack has finished
//! with: the part of `xl devd`'s work that a driver domain must do itself.
//!
//! When the backend lives in a driver domain, dom0's libxl detaches a
//! device (`xl block-detach`, `xl network-detach`, `xl destroy`) like this:
//! it writes `online=0` and Closing into the backend directory, waits for
//! the backend's `state` to read Closed (6), and then waits for the
//! *driver domain* to remove `backend/<type>/<frontend_id>/<devid>`. In a
//! Linux driver domain `xl devd` removes it. If the directory stays, libxl
//! gives up after 10 s and reports the detach as failed.
//!
//! The removal must not come too early either: libxl reads `state` when its
//! watch on the node fires, some time after the backend wrote Closed. If the
//! node has gone by then, libxl reads "removed" instead of Closed and fails
//! the detach (its `devstate_callback`). Nothing in xenstore says that libxl
//! has read the node, so a device is retired only after it has been quiet
//! for a while: [`Retirements`] keeps one deadline per device, pushed back
//! by every watch event under its directory, and hands the device out for
//! [`remove_if_finished`] once the deadline passes.

use alloc::format;
use alloc::vec::Vec;

use super::{BackendDirectory, DeviceAddress};
use crate::platform::{TxId, Xenstore, XsError};

/// How long a device's directory must be quiet before it is removed, by
/// default: ample for libxl in dom0 to read the Closed state, well inside
/// libxl's 10 s wait for the removal.
pub const DEFAULT_QUIET_NS: u64 = 1_000_000_000;

/// The most devices waiting for their quiet period at once. Every backend
/// directory holds at most [`super::MAX_LISTED_DEVICES`] devices the engine
/// takes; watch events for more are about devices it ignores anyway.
pub const MAX_PENDING: usize = super::MAX_LISTED_DEVICES;

/// Whether a device whose backend directory holds `online` and `state`
/// (None when missing) is finished: taken offline and Closed.
pub fn finished(online: Option<&str>, state: Option<&str>) -> bool {
    // Linux's backends read a missing `online` as 0, and so does this crate.
    let offline = online.is_none_or(|online| online.trim() != "1");
    offline && state.map(str::trim) == Some("6")
}

/// What [`remove_if_finished`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The directory was removed now.
    Removed,
    /// The directory was gone already.
    Gone,
    /// The device is still in use, or not yet closed; left alone.
    InUse,
}

fn read_optional<X: Xenstore + ?Sized>(
    xs: &mut X,
    path: &str,
) -> Result<Option<alloc::string::String>, XsError> {
    match xs.read(TxId::NONE, path) {
        Ok(value) => Ok(Some(value)),
        Err(XsError::Enoent) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Removes the backend directory of the device at `address` if the
/// toolstack is done with it (see [`finished`]). The frontend domain's
/// directory above it goes too once empty; it belongs to dom0 in a real
/// toolstack, so failing to remove it is harmless and not reported.
pub fn remove_if_finished<X: Xenstore + ?Sized>(
    xs: &mut X,
    directory: &BackendDirectory,
    address: DeviceAddress,
) -> Result<Outcome, XsError> {
    let path = directory.device_path(address);
    let state = read_optional(xs, &format!("{path}/state"))?;
    let online = read_optional(xs, &format!("{path}/online"))?;
    if state.is_none() && online.is_none() {
        // Gone already, or never ours to judge: leave the rest alone.
        return Ok(match xs.directory(TxId::NONE, &path) {
            Err(XsError::Enoent) => Outcome::Gone,
            _ => Outcome::InUse,
        });
    }
    if !finished(online.as_deref(), state.as_deref()) {
        return Ok(Outcome::InUse);
    }
    match xs.rm(TxId::NONE, &path) {
        Ok(()) | Err(XsError::Enoent) => {}
        Err(error) => return Err(error),
    }
    let parent = format!("{}/{}", directory.root(), address.frontend_id);
    if xs
        .directory(TxId::NONE, &parent)
        .is_ok_and(|children| children.is_empty())
    {
        let _ = xs.rm(TxId::NONE, &parent);
    }
    Ok(Outcome::Removed)
}

/// Devices waiting for a quiet period before [`remove_if_finished`] looks
/// at them. Times are the platform's monotonic nanoseconds, passed in.
#[derive(Debug, Clone)]
pub struct Retirements {
    quiet_ns: u64,
    /// Each device once, with the time it may be looked at.
    pending: Vec<(DeviceAddress, u64)>,
}

impl Retirements {
    /// Devices are looked at once their directory has been quiet for
    /// `quiet_ns`.
    pub fn new(quiet_ns: u64) -> Self {
        Self {
            quiet_ns,
            pending: Vec::new(),
        }
    }

    /// Notes a watch event under `directory` at `now`: the device it names
    /// (if any) is looked at once quiet. Paths that name no device of the
    /// directory are ignored.
    pub fn touch(&mut self, directory: &BackendDirectory, path: &str, now: u64) {
        if let Ok(Some(address)) = directory.recognise(path) {
            self.touch_device(address, now);
        }
    }

    /// Notes activity on the device at `address` at `now`.
    pub fn touch_device(&mut self, address: DeviceAddress, now: u64) {
        let due = now.saturating_add(self.quiet_ns);
        if let Some(entry) = self.pending.iter_mut().find(|(known, _)| *known == address) {
            entry.1 = due;
        } else if self.pending.len() < MAX_PENDING {
            self.pending.push((address, due));
        } else {
            log::warn!(
                "backend/{}/{}: too many devices pending removal; not tracked",
                address.frontend_id,
                address.devid
            );
        }
    }

    /// The earliest time a device becomes due, for the event loop's wait.
    pub fn deadline(&self) -> Option<u64> {
        self.pending.iter().map(|(_, due)| *due).min()
    }

    /// Takes out the devices that have been quiet long enough by `now`.
    pub fn due(&mut self, now: u64) -> Vec<DeviceAddress> {
        let mut due = Vec::new();
        self.pending.retain(|(address, at)| {
            let ready = *at <= now;
            if ready {
                due.push(*address);
            }
            !ready
        });
        due
    }

    /// Removes, through [`remove_if_finished`], the directory of every
    /// device that has been quiet long enough by `now` and is finished.
    /// Returns each device looked at with what happened to it.
    pub fn retire<X: Xenstore + ?Sized>(
        &mut self,
        xs: &mut X,
        directory: &BackendDirectory,
        now: u64,
    ) -> Vec<(DeviceAddress, Result<Outcome, XsError>)> {
        self.due(now)
            .into_iter()
            .map(|address| (address, remove_if_finished(xs, directory, address)))
            .collect()
    }
}

impl Default for Retirements {
    fn default() -> Self {
        Self::new(DEFAULT_QUIET_NS)
    }
}
