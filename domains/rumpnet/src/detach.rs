//! The detach of a vif, end to end on the simulator: netback closes it and
//! the shared retirement rules (`xenbus::backend::retire`, what `xl devd`
//! does in a Linux driver domain) remove its backend directory, as the
//! domain's event loop in `main.rs` wires them.

mod tests {
    use netback::DeviceAddress;
    use xenbus::backend::retire::{Outcome, Retirements};
    use xenbus::platform::{TxId, Xenstore, XsError};

    /// The quiet period of the simulated loop, in its own clock's ticks.
    const QUIET: u64 = 3;

    /// The driver domain's loop in miniature: watch events and ports to
    /// netback, a poll, then removal of finished vifs' directories.
    struct DriverDomain {
        domain: xensim::Domain,
        netback: netback::Netback<xensim::Domain>,
        retirements: Retirements,
        /// The loop's clock: one tick a step.
        now: u64,
        removed: alloc::vec::Vec<DeviceAddress>,
        /// When each removed vif's directory was removed.
        removed_at: alloc::vec::Vec<u64>,
        /// When a backend `state` node first read Closed, by path.
        closed_at: alloc::collections::BTreeMap<alloc::string::String, u64>,
    }

    impl DriverDomain {
        fn step(&mut self) -> bool {
            self.now += 1;
            let activity = self.domain.poll_activity();
            for event in &activity.watches {
                self.retirements
                    .touch(self.netback.directory(), &event.path, self.now);
                self.netback
                    .on_watch(&mut self.domain, &event.path, &event.token);
            }
            for port in &activity.ports {
                self.netback.on_event(&mut self.domain, *port);
            }
            let outcome = self.netback.poll(
                &mut self.domain,
                &mut netback::NoUplink,
                core::time::Duration::from_secs(1),
            );
            let directory = self.netback.directory().clone();
            let mut removed = false;
            for (vif, outcome) in self
                .retirements
                .retire(&mut self.domain, &directory, self.now)
            {
                if outcome == Ok(Outcome::Removed) {
                    self.removed.push(vif);
                    self.removed_at.push(self.now);
                    removed = true;
                }
            }
            for vif in self.netback.vifs() {
                let state = alloc::format!("{}/state", directory.device_path(vif.address));
                if self.domain.read(TxId::NONE, &state).as_deref() == Ok("6") {
                    self.closed_at.entry(state).or_insert(self.now);
                }
            }
            // A removal's own watch event comes in the next step.
            removed
                || !activity.watches.is_empty()
                || !activity.ports.is_empty()
                || outcome.more_work
                || self.retirements.deadline().is_some()
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
            retirements: Retirements::new(QUIET),
            now: 0,
            removed: alloc::vec::Vec::new(),
            removed_at: alloc::vec::Vec::new(),
            closed_at: alloc::collections::BTreeMap::new(),
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
        let closed_at = driver.closed_at[&alloc::format!("backend/vif/{guest_id}/0/state")];
        assert!(
            driver.removed_at[0] >= closed_at + QUIET,
            "Closed stays readable for the quiet period: closed at {closed_at}, removed at {}",
            driver.removed_at[0]
        );
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
