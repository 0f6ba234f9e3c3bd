//! A driver domain running netback on the simulated hypervisor, guests with
//! mock netfronts, and frame builders.
#![allow(dead_code)]

use std::time::Duration;

use netback::frame::{fill_checksum, ChecksumState, Frame, MacAddress};
use netback::{Config, MemoryDevice, Netback, Offloads, PollOutcome, VifStatus};
use xenbus::XenbusState;
use xensim::frontend::net::{Netfront, NetfrontConfig};
use xensim::{DeviceNodes, Domain, Hypervisor, VifConfig};

/// The driver domain and everything it runs.
pub struct World {
    pub xen: Hypervisor,
    pub driver: Domain,
    pub netback: Netback<Domain>,
    pub uplink: MemoryDevice,
    pub now: Duration,
    /// The largest TX packet count a single poll reported.
    pub max_tx_per_poll: usize,
}

impl World {
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Self {
        let xen = Hypervisor::new();
        let mut driver = xen.create_domain("rumpnet");
        let mut netback = Netback::new(config);
        netback.start(&mut driver).expect("watch backend/vif");
        let mut world = Self {
            xen,
            driver,
            netback,
            uplink: MemoryDevice::new(Offloads::NONE, 100_000),
            now: Duration::from_secs(1),
            max_tx_per_poll: 0,
        };
        world.pump();
        world
    }

    /// Feeds pending watches and events to the engine and polls once.
    pub fn step(&mut self) -> (bool, PollOutcome) {
        let activity = self.driver.poll_activity();
        for event in &activity.watches {
            if std::env::var_os("NETBACK_TRACE_WATCHES").is_some() {
                eprintln!("watch {} {}", event.path, event.token);
            }
            self.netback
                .on_watch(&mut self.driver, &event.path, &event.token);
        }
        for port in &activity.ports {
            self.netback.on_event(&mut self.driver, *port);
        }
        self.now += Duration::from_millis(1);
        let outcome = self
            .netback
            .poll(&mut self.driver, &mut self.uplink, self.now);
        self.max_tx_per_poll = self.max_tx_per_poll.max(outcome.tx_packets);
        let busy = !activity.ports.is_empty()
            || !activity.watches.is_empty()
            || outcome.more_work
            || outcome.tx_packets > 0
            || outcome.rx_frames > 0;
        if busy && std::env::var_os("NETBACK_TRACE_WATCHES").is_some() {
            eprintln!("busy: ports {:?} outcome {outcome:?}", activity.ports);
        }
        (busy, outcome)
    }

    /// Steps the engine until it has nothing left to do.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            if !self.step().0 {
                return;
            }
        }
        panic!("the engine never settled");
    }

    /// Steps the engine and the frontends until neither makes progress.
    pub fn settle(&mut self, fronts: &mut [&mut Netfront]) {
        for _ in 0..100_000 {
            let (busy, _) = self.step();
            let mut front_progress = 0;
            for front in fronts.iter_mut() {
                front_progress += front.process().expect("frontend process");
            }
            if !busy && front_progress == 0 {
                // One more round to catch responses pushed in the last poll.
                let (busy, _) = self.step();
                let mut late = 0;
                for front in fronts.iter_mut() {
                    late += front.process().expect("frontend process");
                }
                if !busy && late == 0 {
                    return;
                }
            }
        }
        panic!("never settled");
    }

    /// Creates a guest, attaches a vif for it, and connects its netfront.
    /// A new domain `name` with a vif the toolstack attached to netback
    /// and the engine has taken on; no frontend drives it yet.
    pub fn attached_domain(&mut self, name: &str) -> (Domain, DeviceNodes) {
        let guest = self.xen.create_domain(name);
        // The toolstack removes stale device nodes before writing new ones;
        // that needs the parent directories to exist, as they do on a host
        // where libxl has run before.
        let mut dom0 = self.xen.dom0();
        let (backend, frontend) = (self.driver.domid(), guest.domid());
        for parent in [
            format!("/libxl/{frontend}/device/vif"),
            format!("/local/domain/{frontend}/device/vif"),
            format!("/local/domain/{backend}/backend/vif/{frontend}"),
        ] {
            xenbus::platform::Xenstore::mkdir(&mut dom0, xenbus::platform::TxId::NONE, &parent)
                .expect("mkdir");
        }
        let nodes = self
            .xen
            .toolstack()
            .attach_vif(&VifConfig::new(self.driver.domid(), guest.domid()))
            .expect("attach vif");
        self.pump();
        (guest, nodes)
    }

    pub fn guest(&mut self, name: &str, config: NetfrontConfig) -> (Netfront, DeviceNodes) {
        let (guest, nodes) = self.attached_domain(name);
        let mut front = Netfront::new(guest, self.driver.domid(), 0, config);
        front.connect().expect("frontend connects");
        self.pump();
        assert_eq!(front.backend_state(), Some(XenbusState::Connected));
        (front, nodes)
    }

    pub fn vif(&self, front: &Netfront) -> VifStatus {
        let domid = front.domain().domid();
        self.netback
            .vifs()
            .into_iter()
            .find(|vif| vif.address.frontend_id == domid)
            .expect("vif known to the engine")
    }
}

/// The MAC the toolstack gives guest `domid`.
pub fn mac_of(front: &Netfront) -> MacAddress {
    [
        0x00,
        0x16,
        0x3e,
        0,
        0,
        (front.domain().domid() & 0xff) as u8,
    ]
}

pub const BROADCAST: MacAddress = [0xff; 6];

/// A TCP (or UDP) frame with complete checksums and a patterned payload.
pub fn ip_frame(
    destination: MacAddress,
    source: MacAddress,
    ipv6: bool,
    tcp: bool,
    payload_len: usize,
    seed: u8,
) -> Vec<u8> {
    let protocol = if tcp { 6u8 } else { 17u8 };
    let mut data = Vec::new();
    data.extend_from_slice(&destination);
    data.extend_from_slice(&source);
    let l4_header = if tcp { 20 } else { 8 };
    let l4_len = l4_header + payload_len;
    if ipv6 {
        data.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        data.extend_from_slice(&(l4_len as u16).to_be_bytes());
        data.extend_from_slice(&[protocol, 64]);
        data.extend((0..32).map(|i| 0xfe ^ i as u8));
    } else {
        data.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        data.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        data.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let checksum = netback::frame::internet_checksum(&data[14..34]);
        data[24..26].copy_from_slice(&checksum.to_be_bytes());
    }
    data.extend_from_slice(&[0x04, 0xd2, 0x16, 0x2e]);
    if tcp {
        data.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        data.extend_from_slice(&(l4_len as u16).to_be_bytes());
        data.extend_from_slice(&[0, 0]);
    }
    data.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    let mut frame = Frame::new(data);
    fill_checksum(&mut frame).expect("valid frame");
    assert_eq!(frame.checksum, ChecksumState::Complete);
    frame.data
}

/// A plain Ethernet frame of `length` bytes (EtherType 0x88b5, local
/// experimental) with a patterned body.
pub fn raw_frame(destination: MacAddress, source: MacAddress, length: usize, seed: u8) -> Vec<u8> {
    let mut data = Vec::with_capacity(length);
    data.extend_from_slice(&destination);
    data.extend_from_slice(&source);
    data.extend_from_slice(&[0x88, 0xb5]);
    data.extend((14..length).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)));
    data
}

/// Blanks the TCP/UDP checksum field of a frame built by [`ip_frame`].
pub fn blank_checksum(frame: &mut [u8], ipv6: bool, tcp: bool) {
    let l4 = if ipv6 { 14 + 40 } else { 14 + 20 };
    let field = l4 + if tcp { 16 } else { 6 };
    frame[field] = 0;
    frame[field + 1] = 0;
}
