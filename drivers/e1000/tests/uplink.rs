//! The driver as netback's uplink: a guest with a mock Linux netfront on
//! the simulated hypervisor talks through netback's switch and the driver
//! to a station on the model's wire.

mod common;

use std::time::Duration;

use common::{assert_no_dma_faults, frame, MAC, PEER};
use e1000::model::{Delivery, Model};
use e1000::{Config, E1000};
use netback::Netback;
use xenbus::platform::{TxId, Xenstore};
use xenbus::XenbusState;
use xensim::frontend::net::{Netfront, NetfrontConfig, TxOptions};
use xensim::{Domain, Hypervisor, VifConfig};

struct Rig {
    xen: Hypervisor,
    domain: Domain,
    netback: Netback<Domain>,
    uplink: E1000<Model>,
    wire: Model,
    now: Duration,
}

impl Rig {
    fn new() -> Self {
        let xen = Hypervisor::new();
        let mut domain = xen.create_domain("rumpnet");
        let mut netback = Netback::new(netback::Config::default());
        netback.start(&mut domain).expect("watch backend/vif");
        let wire = Model::new(MAC);
        let uplink = match E1000::new(wire.clone(), Config::default()) {
            Ok(driver) => driver,
            Err((error, _)) => panic!("bring-up failed: {error}"),
        };
        let mut rig = Self {
            xen,
            domain,
            netback,
            uplink,
            wire,
            now: Duration::from_secs(1),
        };
        rig.run(&mut []);
        rig
    }

    /// One turn of the domain's loop, as `docs/e1000.md` describes it.
    /// Returns whether anything happened.
    fn turn(&mut self) -> bool {
        let activity = self.domain.poll_activity();
        for event in &activity.watches {
            self.netback
                .on_watch(&mut self.domain, &event.path, &event.token);
        }
        for port in &activity.ports {
            self.netback.on_event(&mut self.domain, *port);
        }
        let device = self.uplink.poll().expect("uplink poll");
        self.now += Duration::from_millis(1);
        let outcome = self
            .netback
            .poll(&mut self.domain, &mut self.uplink, self.now);
        !activity.ports.is_empty()
            || !activity.watches.is_empty()
            || outcome.more_work
            || outcome.tx_packets > 0
            || outcome.rx_frames > 0
            || device.rx_pending
            || device.tx_completed > 0
    }

    fn run(&mut self, fronts: &mut [&mut Netfront]) {
        for _ in 0..10_000 {
            let mut busy = self.turn();
            for front in fronts.iter_mut() {
                busy |= front.process().expect("frontend") > 0;
            }
            if !busy {
                return;
            }
        }
        panic!("the domain never settled");
    }

    fn guest(&mut self, name: &str) -> Netfront {
        let guest = self.xen.create_domain(name);
        let mut dom0 = self.xen.dom0();
        let (backend, frontend) = (self.domain.domid(), guest.domid());
        for parent in [
            format!("/libxl/{frontend}/device/vif"),
            format!("/local/domain/{frontend}/device/vif"),
            format!("/local/domain/{backend}/backend/vif/{frontend}"),
        ] {
            Xenstore::mkdir(&mut dom0, TxId::NONE, &parent).expect("mkdir");
        }
        self.xen
            .toolstack()
            .attach_vif(&VifConfig::new(backend, frontend))
            .expect("attach vif");
        self.run(&mut []);
        let mut front = Netfront::new(guest, backend, 0, NetfrontConfig::linux());
        front.connect().expect("frontend connects");
        self.run(&mut []);
        assert_eq!(front.backend_state(), Some(XenbusState::Connected));
        front
    }
}

fn mac_of(front: &Netfront) -> [u8; 6] {
    [
        0x00,
        0x16,
        0x3e,
        0,
        0,
        (front.domain().domid() & 0xff) as u8,
    ]
}

#[test]
fn a_guest_reaches_the_wire_and_the_wire_reaches_the_guest() {
    let mut rig = Rig::new();
    let mut guest = rig.guest("guest");
    let guest_mac = mac_of(&guest);

    // Out: the guest's frames leave by the NIC byte for byte.
    let mut sent = Vec::new();
    for (number, len) in [60, 61, 500, 1000, 1514].into_iter().enumerate() {
        let outgoing = frame(PEER, guest_mac, len, number as u32);
        guest
            .send(0, &outgoing, TxOptions::default())
            .expect("guest sends");
        sent.push(outgoing);
    }
    rig.run(&mut [&mut guest]);
    assert_eq!(rig.wire.take_transmitted(), sent);

    // In: frames for the guest's address (learnt from what it sent)
    // arrive at the guest; the NIC is promiscuous so it takes them.
    let mut expected = Vec::new();
    for (number, len) in [60, 333, 1514].into_iter().enumerate() {
        let incoming = frame(guest_mac, PEER, len, 100 + number as u32);
        assert_eq!(rig.wire.receive(&incoming), Delivery::Delivered(1));
        expected.push(incoming);
    }
    rig.run(&mut [&mut guest]);
    let received: Vec<Vec<u8>> = guest
        .take_received()
        .into_iter()
        .map(|frame| frame.data)
        .collect();
    assert_eq!(received, expected);

    let counters = rig.netback.uplink_counters().expect("uplink port");
    assert_eq!(counters.received_packets, 3);
    assert_eq!(rig.uplink.statistics().rx_frames, 3);
    assert_eq!(rig.uplink.statistics().tx_frames, 5);
    assert_no_dma_faults(&rig.wire);
}

#[test]
fn more_frames_than_one_poll_takes_all_arrive() {
    let mut rig = Rig::new();
    let mut guest = rig.guest("guest");
    let guest_mac = mac_of(&guest);
    // Teach the switch where the guest is.
    guest
        .send(0, &frame(PEER, guest_mac, 60, 1), TxOptions::default())
        .expect("guest sends");
    rig.run(&mut [&mut guest]);
    rig.wire.take_transmitted();

    // More than netback's uplink budget (64) in one burst: the driver's
    // `rx_pending` keeps the loop going until the ring is empty.
    let burst: Vec<Vec<u8>> = (0..200)
        .map(|number| frame(guest_mac, PEER, 100, number))
        .collect();
    for incoming in &burst {
        assert_eq!(rig.wire.receive(incoming), Delivery::Delivered(1));
    }
    rig.run(&mut [&mut guest]);
    let received: Vec<Vec<u8>> = guest
        .take_received()
        .into_iter()
        .map(|frame| frame.data)
        .collect();
    assert_eq!(received.len(), burst.len());
    assert_eq!(received, burst);
}
