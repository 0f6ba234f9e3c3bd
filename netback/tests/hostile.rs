//! One test per attack from a hostile netfront. Each checks the verdict
//! (packet dropped and answered, or ring disconnected with a reason), and
//! that a bystander vif keeps working.

mod common;

use common::*;
use xenbus::XenbusState;
use xensim::frontend::net::{
    encode_extra, encode_gso_extra, encode_tx, tx_flags, Netfront, NetfrontConfig, TxOptions,
    NETIF_RSP_ERROR,
};

struct Scene {
    world: World,
    attacker: Netfront,
    bystander: Netfront,
    other: Netfront,
}

fn scene() -> Scene {
    let mut world = World::new();
    let (attacker, _) = world.guest("attacker", NetfrontConfig::linux());
    let (bystander, _) = world.guest("bystander", NetfrontConfig::linux());
    let (other, _) = world.guest("other", NetfrontConfig::gnu_mach());
    Scene {
        world,
        attacker,
        bystander,
        other,
    }
}

impl Scene {
    fn settle(&mut self) {
        self.world
            .settle(&mut [&mut self.attacker, &mut self.bystander, &mut self.other]);
    }

    /// The bystander and the other guest still exchange frames.
    fn bystanders_unaffected(&mut self) {
        let to_other = raw_frame(mac_of(&self.other), mac_of(&self.bystander), 1200, 42);
        let to_bystander = raw_frame(mac_of(&self.bystander), mac_of(&self.other), 900, 43);
        self.bystander
            .send(0, &to_other, TxOptions::default())
            .unwrap();
        self.other
            .send(0, &to_bystander, TxOptions::default())
            .unwrap();
        self.settle();
        let got: Vec<_> = self
            .other
            .take_received()
            .into_iter()
            .map(|f| f.data)
            .collect();
        assert!(got.contains(&to_other));
        let got: Vec<_> = self
            .bystander
            .take_received()
            .into_iter()
            .map(|f| f.data)
            .collect();
        assert!(got.contains(&to_bystander));
        assert!(self.world.vif(&self.bystander).connected);
        assert!(self.world.vif(&self.other).connected);
    }

    /// The attacker's packet was dropped: its data slots were answered
    /// with errors, it is counted, and the ring still works.
    fn dropped(&mut self, slots: &[[u8; 12]], data_slots: usize) {
        let before = self.world.vif(&self.attacker).counters.tx_invalid
            + self.world.vif(&self.attacker).counters.tx_grant_errors;
        self.attacker.push_raw_tx(0, slots).unwrap();
        self.settle();
        let vif = self.world.vif(&self.attacker);
        assert!(vif.connected, "{:?}", vif.last_error);
        assert_eq!(
            vif.counters.tx_invalid + vif.counters.tx_grant_errors,
            before + 1
        );
        let errors = self
            .attacker
            .tx_statuses
            .iter()
            .filter(|(_, status)| *status == NETIF_RSP_ERROR)
            .count();
        assert_eq!(errors, data_slots);
        // The ring goes on.
        let frame = raw_frame(mac_of(&self.bystander), mac_of(&self.attacker), 500, 1);
        self.attacker.send(1, &frame, TxOptions::default()).unwrap();
        self.settle();
        let got: Vec<_> = self
            .bystander
            .take_received()
            .into_iter()
            .map(|f| f.data)
            .collect();
        assert!(got.contains(&frame));
        self.bystanders_unaffected();
    }

    /// The attacker's vif was disconnected with a logged reason containing
    /// `reason`, and published Closed.
    fn disconnected(&mut self, reason: &str) {
        self.settle();
        let vif = self.world.vif(&self.attacker);
        assert!(!vif.connected);
        let error = vif.last_error.clone().expect("a reason");
        assert!(error.contains(reason), "{error}");
        assert_eq!(vif.counters.protocol_errors, 1);
        assert_eq!(self.attacker.backend_state(), Some(XenbusState::Closed));
        self.bystanders_unaffected();
    }

    fn gref(&mut self, bytes: usize) -> u32 {
        let frame = raw_frame(
            mac_of(&self.bystander),
            mac_of(&self.attacker),
            bytes.max(14),
            0,
        );
        self.attacker.grant_data(0, &frame[..bytes]).unwrap()
    }
}

#[test]
fn packet_larger_than_64k_is_dropped() {
    let mut scene = scene();
    let gref = scene.gref(4096);
    let mut slots = vec![encode_tx(gref, 0, tx_flags::MORE_DATA, 1, 65_535)];
    for id in 2..18u16 {
        let flags = if id == 17 { 0 } else { tx_flags::MORE_DATA };
        slots.push(encode_tx(gref, 0, flags, id, 4096));
    }
    // 16 slots of 4096 after the first: 65 536 > 65 535.
    scene.dropped(&slots, 17);
}

#[test]
fn zero_length_packet_is_dropped() {
    let mut scene = scene();
    let gref = scene.gref(64);
    scene.dropped(&[encode_tx(gref, 0, 0, 1, 0)], 1);
}

#[test]
fn runt_packet_is_dropped() {
    let mut scene = scene();
    let gref = scene.gref(64);
    scene.dropped(&[encode_tx(gref, 0, 0, 1, 13)], 1);
}

#[test]
fn more_slots_than_allowed_is_dropped() {
    let mut scene = scene();
    let gref = scene.gref(100);
    let mut slots = vec![encode_tx(gref, 0, tx_flags::MORE_DATA, 0, 19 * 100)];
    for id in 1..19u16 {
        let flags = if id == 18 { 0 } else { tx_flags::MORE_DATA };
        slots.push(encode_tx(gref, 0, flags, id, 100));
    }
    scene.dropped(&slots, 19);
}

#[test]
fn endless_slot_chain_disconnects() {
    let mut scene = scene();
    let gref = scene.gref(100);
    let slots: Vec<_> = (0..100u16)
        .map(|id| encode_tx(gref, 0, tx_flags::MORE_DATA, id, 100))
        .collect();
    scene.attacker.push_raw_tx(0, &slots).unwrap();
    scene.disconnected("packet chain longer");
}

#[test]
fn first_slot_smaller_than_the_rest_is_dropped() {
    let mut scene = scene();
    let gref = scene.gref(1000);
    let slots = [
        encode_tx(gref, 0, tx_flags::MORE_DATA, 1, 500),
        encode_tx(gref, 0, 0, 2, 1000),
    ];
    scene.dropped(&slots, 2);
}

#[test]
fn slot_crossing_a_page_is_dropped() {
    let mut scene = scene();
    let gref = scene.gref(1000);
    scene.dropped(&[encode_tx(gref, 3500, 0, 1, 1000)], 1);
}

#[test]
fn bad_gref_is_dropped_with_an_error_response() {
    let mut scene = scene();
    // A gref the attacker never granted, and one past its table.
    scene.dropped(&[encode_tx(4000, 0, 0, 1, 100)], 1);
    scene.attacker.tx_statuses.clear();
    scene.dropped(&[encode_tx(u32::MAX, 0, 0, 2, 100)], 1);
}

#[test]
fn extra_info_of_invalid_type_disconnects() {
    let mut scene = scene();
    let gref = scene.gref(100);
    let slots = [
        encode_tx(gref, 0, tx_flags::EXTRA_INFO, 1, 100),
        encode_extra(0, 0, [0; 6]),
    ];
    scene.attacker.push_raw_tx(0, &slots).unwrap();
    scene.disconnected("extra-info slot of invalid type");
}

#[test]
fn extra_info_chain_past_the_producer_disconnects() {
    let mut scene = scene();
    let gref = scene.gref(100);
    let slots = [
        encode_tx(gref, 0, tx_flags::EXTRA_INFO, 1, 100),
        encode_gso_extra(1, 1448, tx_flags::EXTRA_MORE),
    ];
    scene.attacker.push_raw_tx(0, &slots).unwrap();
    scene.disconnected("runs past the producer");
}

#[test]
fn repeated_extra_info_type_disconnects() {
    let mut scene = scene();
    let gref = scene.gref(100);
    let slots = [
        encode_tx(gref, 0, tx_flags::EXTRA_INFO, 1, 100),
        encode_gso_extra(1, 1448, tx_flags::EXTRA_MORE),
        encode_gso_extra(1, 1448, 0),
    ];
    scene.attacker.push_raw_tx(0, &slots).unwrap();
    scene.disconnected("repeated");
}

#[test]
fn bad_gso_metadata_is_dropped() {
    let mut scene = scene();
    let gref = scene.gref(100);
    let slots = [
        encode_tx(gref, 0, tx_flags::EXTRA_INFO, 1, 100),
        encode_gso_extra(9, 1448, 0),
    ];
    scene.dropped(&slots, 1);
}

#[test]
fn gso_packet_with_garbage_headers_is_dropped_for_receivers_without_gso() {
    let mut scene = scene();
    // Claims TCPv4 GSO but carries no IP header; the Hurd cannot take GSO,
    // so segmentation is attempted and refused.
    let frame = raw_frame(mac_of(&scene.other), mac_of(&scene.attacker), 3000, 5);
    let options = TxOptions {
        checksum_blank: true,
        gso: Some((1, 1000)),
        ..TxOptions::default()
    };
    scene.attacker.send(0, &frame, options).unwrap();
    scene.settle();
    assert!(scene.other.take_received().is_empty());
    assert_eq!(scene.world.vif(&scene.other).counters.rx_undeliverable, 1);
    scene.bystanders_unaffected();
}

#[test]
fn producer_index_far_ahead_disconnects() {
    let mut scene = scene();
    scene.attacker.set_tx_req_prod(0, 100_000).unwrap();
    scene.disconnected("more requests than the ring holds");
}

#[test]
fn rx_producer_index_far_ahead_disconnects() {
    let mut scene = scene();
    // Wedge a frame into the attacker's backlog, then corrupt its RX ring.
    let frame = raw_frame(mac_of(&scene.attacker), mac_of(&scene.bystander), 100, 1);
    scene
        .bystander
        .send(0, &frame, TxOptions::default())
        .unwrap();
    scene.settle();
    assert_eq!(scene.attacker.take_received().len(), 1);
    scene.attacker.set_rx_req_prod(0, 0x8000_0000).unwrap();
    scene
        .bystander
        .send(0, &frame, TxOptions::default())
        .unwrap();
    scene.disconnected("ring");
}

fn garbage_key(key: &str, value: &str, reason: &str) {
    let mut world = World::new();
    let (mut bystander, _) = world.guest("bystander", NetfrontConfig::linux());
    let (mut other, _) = world.guest("other", NetfrontConfig::gnu_mach());
    let (guest, _) = world.attached_domain("attacker");
    let mut attacker = Netfront::new(guest, world.driver.domid(), 0, NetfrontConfig::linux());
    // Publish everything, then overwrite one key before the backend looks.
    attacker.set_state(XenbusState::Initialising).unwrap();
    attacker.connect().unwrap();
    attacker.write_key(key, value).unwrap();
    world.pump();
    let vif = world.vif(&attacker);
    assert!(!vif.connected);
    let error = vif.last_error.expect("a reason");
    assert!(error.contains(reason), "{error}");
    assert_eq!(attacker.backend_state(), Some(XenbusState::Closed));
    let frame = raw_frame(mac_of(&other), mac_of(&bystander), 300, 3);
    bystander.send(0, &frame, TxOptions::default()).unwrap();
    world.settle(&mut [&mut bystander, &mut other]);
    assert_eq!(other.take_received()[0].data, frame);
}

#[test]
fn garbage_ring_ref_is_refused() {
    garbage_key("queue-0/tx-ring-ref", "12abc", "tx-ring-ref");
}

#[test]
fn ring_ref_not_granted_is_refused() {
    garbage_key("queue-1/rx-ring-ref", "3000", "cannot map");
}

#[test]
fn event_channel_zero_is_refused() {
    garbage_key("queue-0/event-channel-tx", "0", "event-channel-tx");
}

#[test]
fn too_many_queues_is_refused() {
    garbage_key("multi-queue-num-queues", "99", "multi-queue-num-queues");
}

#[test]
fn missing_rx_copy_is_refused() {
    garbage_key("request-rx-copy", "0", "rx-copy");
}

#[test]
fn garbage_feature_flag_is_refused() {
    garbage_key("feature-sg", "yes", "feature-sg");
}

#[test]
fn bad_gref_in_a_receive_buffer_fails_that_frame_only() {
    let mut world = World::new();
    let mut config = NetfrontConfig::gnu_mach();
    // No buffers of its own: the only receive request is the bad one.
    config.rx_buffers = 0;
    let (mut attacker, _) = world.guest("attacker", config);
    let (mut sender, _) = world.guest("sender", NetfrontConfig::linux());
    attacker.push_raw_rx(0, 5000).unwrap();
    let frame = raw_frame(mac_of(&attacker), mac_of(&sender), 500, 1);
    sender.send(0, &frame, TxOptions::default()).unwrap();
    world.settle(&mut [&mut attacker, &mut sender]);
    assert!(attacker.take_received().is_empty());
    assert_eq!(attacker.counters().rx_errors, 1);
    let vif = world.vif(&attacker);
    assert_eq!(vif.counters.rx_grant_errors, 1);
    assert!(vif.connected);
    // A good buffer afterwards gets the next frame.
    let gref = attacker.grant_writable_page().unwrap();
    attacker.push_raw_rx(0, gref).unwrap();
    sender.send(0, &frame, TxOptions::default()).unwrap();
    world.settle(&mut [&mut attacker, &mut sender]);
    assert_eq!(attacker.take_received()[0].data, frame);
}

#[test]
fn crashed_frontend_domain_is_cleaned_up_without_harm() {
    let mut scene = scene();
    let frame = raw_frame(BROADCAST, mac_of(&scene.attacker), 300, 1);
    scene
        .attacker
        .send(0, &frame, TxOptions::default())
        .unwrap();
    // The guest dies with requests on its ring and buffers posted.
    let domid = scene.attacker.domain().domid();
    scene.world.xen.toolstack().destroy_domain(domid).unwrap();
    scene.world.pump();
    assert!(scene
        .world
        .netback
        .vifs()
        .iter()
        .all(|vif| vif.address.frontend_id != domid));
    scene.bystanders_unaffected();
}

#[test]
fn spoofed_source_mac_is_dropped_and_cannot_steal_frames() {
    let mut scene = scene();
    // The attacker claims the bystander's address...
    let spoof = raw_frame(BROADCAST, mac_of(&scene.bystander), 100, 1);
    scene
        .attacker
        .send(0, &spoof, TxOptions::default())
        .unwrap();
    scene.settle();
    assert_eq!(scene.world.vif(&scene.attacker).counters.tx_spoofed, 1);
    assert!(scene.other.take_received().is_empty());
    // ...and frames for the bystander still reach the bystander only.
    let to_bystander = raw_frame(mac_of(&scene.bystander), mac_of(&scene.other), 100, 2);
    scene
        .other
        .send(0, &to_bystander, TxOptions::default())
        .unwrap();
    scene.settle();
    assert!(scene.attacker.take_received().is_empty());
    assert_eq!(scene.bystander.take_received()[0].data, to_bystander);
    scene.bystanders_unaffected();
}

#[test]
fn control_ring_producer_far_ahead_disconnects() {
    let mut scene = scene();
    assert!(scene.attacker.has_control_ring());
    scene.attacker.set_control_req_prod(5000).unwrap();
    scene.disconnected("control ring");
}

#[test]
fn garbage_control_ring_ref_is_refused() {
    garbage_key("ctrl-ring-ref", "-1", "ctrl-ring-ref");
}

#[test]
fn control_ring_flood_is_answered_a_budget_at_a_time() {
    let mut scene = scene();
    for _ in 0..64 {
        scene.attacker.control_request(1234, [0; 3]).unwrap();
    }
    scene.world.step();
    let first = scene.attacker.control_responses().unwrap();
    assert_eq!(first.len(), 16);
    scene.settle();
    let rest = scene.attacker.control_responses().unwrap();
    assert_eq!(rest.len(), 48);
    assert!(first
        .iter()
        .chain(&rest)
        .all(|(_, _, status, _)| *status == 1));
    scene.bystanders_unaffected();
}

#[test]
fn tx_and_rx_rings_on_one_page_harm_nobody_else() {
    let mut world = World::new();
    let (mut bystander, _) = world.guest("bystander", NetfrontConfig::linux());
    let (mut other, _) = world.guest("other", NetfrontConfig::gnu_mach());
    let (guest, _) = world.attached_domain("attacker");
    let config = NetfrontConfig {
        queues: 1,
        ..NetfrontConfig::linux()
    };
    let mut attacker = Netfront::new(guest.clone(), world.driver.domid(), 0, config);
    attacker.connect().unwrap();
    // Point the RX ring at the TX ring's page before the backend looks.
    let mut guest_store = guest.clone();
    let tx_ref = xenbus::platform::Xenstore::read(
        &mut guest_store,
        xenbus::platform::TxId::NONE,
        &format!("{}/tx-ring-ref", attacker.path()),
    )
    .unwrap();
    attacker.write_key("rx-ring-ref", &tx_ref).unwrap();
    world.pump();
    // Whatever the backend makes of the shared page, the traffic it sees
    // is bounded and the others are untouched.
    for seed in 0..20u8 {
        let _ = attacker.send(
            0,
            &raw_frame(BROADCAST, mac_of(&attacker), 200, seed),
            TxOptions::default(),
        );
        let frame = raw_frame(mac_of(&attacker), mac_of(&bystander), 300, seed);
        bystander.send(0, &frame, TxOptions::default()).unwrap();
        for _ in 0..5 {
            world.step();
            let _ = attacker.process();
            bystander.process().unwrap();
            other.process().unwrap();
        }
    }
    world.settle(&mut [&mut bystander, &mut other]);
    bystander.take_received();
    other.take_received();
    // The confusion shows up in the attacker's own counters.
    let vif = world.vif(&attacker);
    assert!(
        !vif.connected
            || vif.counters.rx_grant_errors
                + vif.counters.tx_invalid
                + vif.counters.protocol_errors
                > 0,
        "{vif:?}"
    );
    let frame = raw_frame(mac_of(&other), mac_of(&bystander), 700, 1);
    bystander.send(0, &frame, TxOptions::default()).unwrap();
    world.settle(&mut [&mut bystander, &mut other]);
    assert_eq!(other.take_received().last().unwrap().data, frame);
}
