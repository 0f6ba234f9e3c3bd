//! Removing the backend directory of a vif the toolstack has finished with.
//!
//! When the backend lives in a driver domain, dom0's libxl removes only the
//! frontend's directory on `xl network-detach` or `xl destroy`; it writes
//! `online=0`, waits for the backend's `state` to reach Closed (6), and then
//! waits for the *driver domain* to remove `backend/vif/<fe>/<handle>`
//! (libxl's `device_destroy_be_watch_cb`; `xl devd` does the removal there).
//! rumpnet runs no `xl devd`, so it removes the directory itself, under the
//! same condition: the toolstack took the vif offline and the backend has
//! closed. A directory left behind would make libxl report the detach as
//! failed after 10 s and keep the vif's entry in the toolstack's view.

use alloc::format;
use alloc::string::String;

use netback::DeviceAddress;
use xenbus::platform::{TxId, Xenstore, XsError};

/// Whether a vif whose backend directory holds `online` and `state` (None
/// when missing) is finished: offline and Closed.
pub fn finished(online: Option<&str>, state: Option<&str>) -> bool {
    // Linux's backends read a missing `online` as 0, and so does xenbus.
    let offline = online.is_none_or(|online| online.trim() != "1");
    offline && state.map(str::trim) == Some("6")
}

/// The backend directory of `vif`, relative to this domain's home.
pub fn backend_path(vif: DeviceAddress) -> String {
    format!("backend/vif/{}/{}", vif.frontend_id, vif.devid)
}

/// What [`remove_if_finished`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The directory was removed now.
    Removed,
    /// The directory was gone already.
    Gone,
    /// The vif is still in use, or not yet closed; left alone.
    InUse,
}

fn read_optional<X: Xenstore + ?Sized>(xs: &mut X, path: &str) -> Result<Option<String>, XsError> {
    match xs.read(TxId::NONE, path) {
        Ok(value) => Ok(Some(value)),
        Err(XsError::Enoent) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Removes `vif`'s backend directory if the toolstack is done with it.
/// The frontend domain's now empty directory above it is removed too
/// when possible (it belongs to dom0; failing to remove it is harmless).
pub fn remove_if_finished<X: Xenstore + ?Sized>(
    xs: &mut X,
    vif: DeviceAddress,
) -> Result<Outcome, XsError> {
    let path = backend_path(vif);
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
    let parent = format!("backend/vif/{}", vif.frontend_id);
    if xs
        .directory(TxId::NONE, &parent)
        .is_ok_and(|children| children.is_empty())
    {
        let _ = xs.rm(TxId::NONE, &parent);
    }
    Ok(Outcome::Removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_offline_closed_vif_is_finished() {
        assert!(finished(Some("0"), Some("6")));
        assert!(finished(None, Some("6")));
        assert!(finished(Some("garbage"), Some("6")));
        assert!(
            !finished(Some("1"), Some("6")),
            "a refused vif stays until detached"
        );
        assert!(!finished(Some("0"), Some("5")));
        assert!(!finished(Some("0"), Some("4")));
        assert!(!finished(Some("0"), None));
        assert!(!finished(None, None));
        assert!(!finished(Some("0"), Some("16")));
    }

    #[test]
    fn paths_are_relative_to_the_domain() {
        let vif = DeviceAddress {
            frontend_id: 7,
            devid: 2,
        };
        assert_eq!(backend_path(vif), "backend/vif/7/2");
    }

    /// Against the simulator's xenstore, with its permissions: the driver
    /// domain may remove its own backend directory once the toolstack has
    /// taken the vif offline and the backend has closed, and not before.
    #[test]
    fn removes_only_what_the_toolstack_finished_with() {
        use xensim::toolstack::VifConfig;
        use xensim::Hypervisor;

        let hypervisor = Hypervisor::new();
        let mut rumpnet = hypervisor.create_domain("rumpnet");
        let guest = hypervisor.create_domain("guest");
        let toolstack = hypervisor.toolstack();
        let nodes = toolstack
            .attach_vif(&VifConfig::new(rumpnet.domid(), guest.domid()))
            .expect("attach");
        let vif = DeviceAddress {
            frontend_id: guest.domid(),
            devid: 0,
        };
        let state = alloc::format!("{}/state", backend_path(vif));

        // Refused (Closed) but still online: the toolstack has not let go.
        rumpnet.write(TxId::NONE, &state, "6").expect("write state");
        assert_eq!(remove_if_finished(&mut rumpnet, vif), Ok(Outcome::InUse));

        // Connected, then detach begun (online=0, Closing): not closed yet.
        rumpnet.write(TxId::NONE, &state, "4").expect("write state");
        toolstack.begin_detach(&nodes).expect("begin detach");
        assert_eq!(remove_if_finished(&mut rumpnet, vif), Ok(Outcome::InUse));

        rumpnet.write(TxId::NONE, &state, "6").expect("write state");
        assert_eq!(remove_if_finished(&mut rumpnet, vif), Ok(Outcome::Removed));
        assert_eq!(
            rumpnet.directory(TxId::NONE, &backend_path(vif)),
            Err(XsError::Enoent)
        );
        assert_eq!(remove_if_finished(&mut rumpnet, vif), Ok(Outcome::Gone));
    }

    /// The driver domain's loop in miniature: watch events and ports to
    /// netback, a poll, then removal of finished vifs' directories.
    struct DriverDomain {
        domain: xensim::Domain,
        netback: netback::Netback<xensim::Domain>,
        removed: alloc::vec::Vec<DeviceAddress>,
    }

    impl DriverDomain {
        fn step(&mut self) -> bool {
            let activity = self.domain.poll_activity();
            let mut touched = alloc::vec::Vec::new();
            for event in &activity.watches {
                if let Some(vif) = crate::hold::vif_of(&event.path) {
                    touched.push(vif);
                }
                self.netback
                    .on_watch(&mut self.domain, &event.path, &event.token);
            }
            for port in &activity.ports {
                self.netback.on_event(*port);
            }
            let outcome = self.netback.poll(
                &mut self.domain,
                &mut netback::NoUplink,
                core::time::Duration::from_secs(1),
            );
            for vif in touched {
                if remove_if_finished(&mut self.domain, vif) == Ok(Outcome::Removed) {
                    self.removed.push(vif);
                }
            }
            !activity.watches.is_empty() || !activity.ports.is_empty() || outcome.more_work
        }

        fn settle(&mut self, fronts: &mut [&mut xensim::frontend::net::Netfront]) {
            for _ in 0..10_000 {
                let mut progress = usize::from(self.step());
                for front in fronts.iter_mut() {
                    progress += front.process().expect("frontend");
                }
                if progress == 0 {
                    return;
                }
            }
            panic!("never settled");
        }
    }

    /// `xl network-detach` of a connected vif against netback: the backend
    /// closes, its directory is removed (which libxl waits for), the
    /// engine forgets the vif, and the same handle can be attached again.
    #[test]
    fn a_detached_vif_disappears_and_can_come_back() {
        use xensim::frontend::net::{Netfront, NetfrontConfig};
        use xensim::toolstack::VifConfig;
        use xensim::Hypervisor;

        let hypervisor = Hypervisor::new();
        let mut domain = hypervisor.create_domain("rumpnet");
        let mut netback = netback::Netback::new(netback::Config {
            uplink: false,
            ..netback::Config::default()
        });
        netback.start(&mut domain).expect("watch backend/vif");
        let mut driver = DriverDomain {
            domain,
            netback,
            removed: alloc::vec::Vec::new(),
        };
        let driver_id = driver.domain.domid();
        let guest = hypervisor.create_domain("guest");
        let guest_id = guest.domid();
        let toolstack = hypervisor.toolstack();
        let attach = || {
            toolstack
                .attach_vif(&VifConfig::new(driver_id, guest_id))
                .expect("attach")
        };
        let nodes = attach();
        driver.settle(&mut []);
        let mut front = Netfront::new(guest.clone(), driver_id, 0, NetfrontConfig::linux());
        front.connect().expect("connect");
        driver.settle(&mut [&mut front]);
        assert!(driver.netback.vifs()[0].connected);

        toolstack.begin_detach(&nodes).expect("detach");
        driver.settle(&mut [&mut front]);
        assert!(driver.removed.is_empty(), "not before the backend closed");
        // Linux's netfront answers the backend's Closing by closing.
        front.close().expect("close");
        driver.settle(&mut [&mut front]);
        let vif = DeviceAddress {
            frontend_id: guest_id,
            devid: 0,
        };
        assert_eq!(driver.removed, [vif]);
        assert_eq!(
            hypervisor.dom0().read(TxId::NONE, &nodes.backend),
            Err(XsError::Enoent),
            "libxl waits for this directory to go"
        );
        assert!(
            driver.netback.vifs().is_empty(),
            "the engine forgot the vif"
        );

        // libxl removes the frontend's directory; a new attach follows.
        toolstack.finish_detach(&nodes).expect("finish");
        driver.settle(&mut []);
        attach();
        driver.settle(&mut []);
        let mut again = Netfront::new(guest, driver_id, 0, NetfrontConfig::linux());
        again.connect().expect("connect again");
        driver.settle(&mut [&mut again]);
        let vifs = driver.netback.vifs();
        assert_eq!(vifs.len(), 1);
        assert!(vifs[0].connected, "{:?}", vifs[0].last_error);
    }
}
