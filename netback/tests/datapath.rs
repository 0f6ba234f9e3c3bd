//! Frames between mock Linux and GNU Mach netfronts through netback's
//! switch, on the simulated hypervisor.

mod common;

use common::*;
use netback::frame::verify_checksum;
use xenbus::XenbusState;
use xensim::frontend::net::{NetfrontConfig, ReceivedFrame, TxOptions};

const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 2;

fn only_frame(received: Vec<ReceivedFrame>) -> ReceivedFrame {
    assert_eq!(received.len(), 1, "expected exactly one frame");
    received.into_iter().next().unwrap()
}

#[test]
fn linux_guests_exchange_frames_of_every_size_both_ways() {
    let mut world = World::new();
    let (mut a, _) = world.guest("a", NetfrontConfig::linux());
    let (mut b, _) = world.guest("b", NetfrontConfig::linux());
    assert_eq!(a.queue_count(), 2);
    assert!(a.uses_split_event_channels());
    let features = world.vif(&a).features.expect("connected");
    assert!(features.sg && features.gso_tcpv4 && features.split_event_channels);
    assert_eq!(features.queues, 2);

    for (round, size) in [60usize, 61, 1514, 4030, 4096, 9000, 20_000, 65_535]
        .into_iter()
        .enumerate()
    {
        for direction in 0..2 {
            let (from, to) = if direction == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let seed = (round * 2 + direction) as u8;
            let frame = raw_frame(mac_of(to), mac_of(from), size, seed);
            from.send(round % 2, &frame, TxOptions::default()).unwrap();
            world.settle(&mut [&mut *from, &mut *to]);
            let got = only_frame(to.take_received());
            assert_eq!(got.data, frame, "size {size}");
            assert!(!got.checksum_blank);
            assert!(from.take_received().is_empty(), "no reflection");
        }
    }
    assert_eq!(a.counters().tx_errors, 0);
    assert_eq!(b.counters().tx_errors, 0);
}

#[test]
fn gso_super_packets_pass_to_a_gso_frontend_untouched() {
    let mut world = World::new();
    let (mut a, _) = world.guest("a", NetfrontConfig::linux());
    let (mut b, _) = world.guest("b", NetfrontConfig::linux());
    for (ipv6, kind) in [(false, GSO_TCPV4), (true, GSO_TCPV6)] {
        let header = if ipv6 { 14 + 40 + 20 } else { 14 + 20 + 20 };
        let mut frame = ip_frame(mac_of(&b), mac_of(&a), ipv6, true, 65_535 - header, 9);
        blank_checksum(&mut frame, ipv6, true);
        let options = TxOptions {
            checksum_blank: true,
            gso: Some((kind, 1448)),
            ..TxOptions::default()
        };
        a.send(0, &frame, options).unwrap();
        world.settle(&mut [&mut a, &mut b]);
        let got = only_frame(b.take_received());
        assert_eq!(got.data, frame);
        assert_eq!(got.gso, Some((kind, 1448)));
        assert!(got.checksum_blank);
        assert!(got.slots >= 16);
    }
}

#[test]
fn gnu_mach_gets_segments_with_complete_checksums() {
    let mut world = World::new();
    let (mut linux, _) = world.guest("linux", NetfrontConfig::linux());
    let (mut hurd, _) = world.guest("hurd", NetfrontConfig::gnu_mach());
    let features = world.vif(&hurd).features.expect("connected");
    assert!(!features.sg && !features.checksum_ipv4 && !features.split_event_channels);
    assert_eq!(features.queues, 1);

    // A 64 KiB TCPv4 super-packet with a blank checksum.
    let payload = 65_535 - 54;
    let mut frame = ip_frame(mac_of(&hurd), mac_of(&linux), false, true, payload, 3);
    let original = frame.clone();
    blank_checksum(&mut frame, false, true);
    let options = TxOptions {
        checksum_blank: true,
        gso: Some((GSO_TCPV4, 1448)),
        ..TxOptions::default()
    };
    linux.send(1, &frame, options).unwrap();
    world.settle(&mut [&mut linux, &mut hurd]);
    let segments = hurd.take_received();
    assert_eq!(segments.len(), payload.div_ceil(1448));
    let mut stream = Vec::new();
    for segment in &segments {
        assert_eq!(segment.slots, 1);
        assert!(segment.data.len() <= 1514);
        assert!(!segment.checksum_blank);
        assert_eq!(segment.gso, None);
        assert_eq!(verify_checksum(&segment.data), Ok(true));
        stream.extend_from_slice(&segment.data[54..]);
    }
    assert_eq!(stream, original[54..]);

    // A small UDP frame with a blank checksum is filled in for the Hurd.
    for ipv6 in [false, true] {
        let good = ip_frame(mac_of(&hurd), mac_of(&linux), ipv6, false, 200, 5);
        let mut blank = good.clone();
        blank_checksum(&mut blank, ipv6, false);
        let options = TxOptions {
            checksum_blank: true,
            ..TxOptions::default()
        };
        linux.send(0, &blank, options).unwrap();
        world.settle(&mut [&mut linux, &mut hurd]);
        let got = only_frame(hurd.take_received());
        assert_eq!(got.data, good);
    }

    // And the Hurd's single-slot frames reach Linux unchanged.
    for size in [60, 600, 1514] {
        let frame = ip_frame(mac_of(&linux), mac_of(&hurd), false, false, size - 42, 7);
        hurd.send(0, &frame, TxOptions::default()).unwrap();
        world.settle(&mut [&mut linux, &mut hurd]);
        assert_eq!(only_frame(linux.take_received()).data, frame);
    }
}

#[test]
fn broadcast_floods_and_learning_narrows_to_one_port() {
    // Without pinning the vifs' own addresses, so the switch has to learn.
    let config = netback::Config {
        enforce_source_mac: false,
        ..netback::Config::default()
    };
    let mut world = World::with_config(config);
    let (mut a, _) = world.guest("a", NetfrontConfig::linux());
    let (mut b, _) = world.guest("b", NetfrontConfig::linux());
    let (mut c, _) = world.guest("c", NetfrontConfig::gnu_mach());

    let hello = raw_frame(BROADCAST, mac_of(&a), 100, 1);
    a.send(0, &hello, TxOptions::default()).unwrap();
    world.settle(&mut [&mut a, &mut b, &mut c]);
    assert_eq!(only_frame(b.take_received()).data, hello);
    assert_eq!(only_frame(c.take_received()).data, hello);
    assert!(a.take_received().is_empty());
    assert_eq!(world.uplink.take_sent().len(), 1);

    // b is unknown yet: a's frame to it floods.
    let to_b = raw_frame(mac_of(&b), mac_of(&a), 100, 2);
    a.send(0, &to_b, TxOptions::default()).unwrap();
    world.settle(&mut [&mut a, &mut b, &mut c]);
    assert_eq!(b.take_received().len(), 1);
    assert_eq!(c.take_received().len(), 1);
    world.uplink.take_sent();

    // b answers; from now on a <-> b is unicast.
    let to_a = raw_frame(mac_of(&a), mac_of(&b), 100, 3);
    b.send(0, &to_a, TxOptions::default()).unwrap();
    world.settle(&mut [&mut a, &mut b, &mut c]);
    assert_eq!(only_frame(a.take_received()).data, to_a);
    a.send(1, &to_b, TxOptions::default()).unwrap();
    world.settle(&mut [&mut a, &mut b, &mut c]);
    assert_eq!(only_frame(b.take_received()).data, to_b);
    assert!(c.take_received().is_empty());
    assert!(world.uplink.take_sent().is_empty());

    let counters = world.vif(&a).port_counters;
    assert_eq!(counters.received_packets, 3);
    assert_eq!(counters.sent_packets, 1);
}

#[test]
fn pinned_guest_addresses_are_never_flooded() {
    let mut world = World::new();
    let (mut a, _) = world.guest("a", NetfrontConfig::linux());
    let (mut b, _) = world.guest("b", NetfrontConfig::linux());
    let (mut c, _) = world.guest("c", NetfrontConfig::gnu_mach());
    // b has never sent anything, yet a's frame goes to b alone.
    let to_b = raw_frame(mac_of(&b), mac_of(&a), 100, 2);
    a.send(0, &to_b, TxOptions::default()).unwrap();
    world.settle(&mut [&mut a, &mut b, &mut c]);
    assert_eq!(only_frame(b.take_received()).data, to_b);
    assert!(c.take_received().is_empty());
    assert!(world.uplink.take_sent().is_empty());
}

#[test]
fn uplink_frames_reach_guests_and_guest_frames_reach_the_uplink() {
    let mut world = World::new();
    let (mut a, _) = world.guest("a", NetfrontConfig::linux());
    let outside = [0x02, 0xaa, 0, 0, 0, 1];
    let frame = ip_frame(outside, mac_of(&a), false, true, 3000, 4);
    let mut blank = frame.clone();
    blank_checksum(&mut blank, false, true);
    let options = TxOptions {
        checksum_blank: true,
        gso: Some((GSO_TCPV4, 1000)),
        ..TxOptions::default()
    };
    a.send(0, &blank, options).unwrap();
    world.settle(&mut [&mut a]);
    // The uplink takes no offloads: three segments with real checksums.
    let sent = world.uplink.take_sent();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|f| verify_checksum(&f.data) == Ok(true)));

    let inbound = raw_frame(mac_of(&a), outside, 1514, 8);
    world
        .uplink
        .inject(netback::Frame::new(inbound.clone()))
        .unwrap();
    world.settle(&mut [&mut a]);
    assert_eq!(only_frame(a.take_received()).data, inbound);
    assert_eq!(world.netback.uplink_counters().unwrap().received_packets, 1);
}

#[test]
fn two_guests_keep_talking_while_a_third_floods() {
    let config = netback::Config {
        tx_budget: 16,
        ..netback::Config::default()
    };
    let mut world = World::with_config(config);
    let (mut a, _) = world.guest("a", NetfrontConfig::linux());
    let (mut b, _) = world.guest("b", NetfrontConfig::gnu_mach());
    let (mut flooder, _) = world.guest("flooder", NetfrontConfig::linux());
    let mut received_a = 0;
    let mut received_b = 0;
    for round in 0..40u8 {
        // The flooder fills its rings with broadcasts every round.
        for queue in 0..2 {
            while flooder
                .send(
                    queue,
                    &raw_frame(BROADCAST, mac_of(&flooder), 1514, round),
                    TxOptions::default(),
                )
                .is_ok()
            {}
        }
        a.send(
            0,
            &raw_frame(mac_of(&b), mac_of(&a), 1000, round),
            TxOptions::default(),
        )
        .unwrap();
        b.send(
            0,
            &raw_frame(mac_of(&a), mac_of(&b), 1000, round),
            TxOptions::default(),
        )
        .unwrap();
        for _ in 0..20 {
            world.step();
            flooder.process().unwrap();
            a.process().unwrap();
            b.process().unwrap();
        }
        for frame in a.take_received() {
            if frame.data[6..12] == mac_of(&b) {
                received_a += 1;
            }
        }
        for frame in b.take_received() {
            if frame.data[6..12] == mac_of(&a) {
                received_b += 1;
            }
        }
    }
    world.settle(&mut [&mut a, &mut b, &mut flooder]);
    for frame in a.take_received() {
        if frame.data[6..12] == mac_of(&b) {
            received_a += 1;
        }
    }
    for frame in b.take_received() {
        if frame.data[6..12] == mac_of(&a) {
            received_b += 1;
        }
    }
    assert_eq!(received_a, 40);
    assert_eq!(received_b, 40);
    // Work per poll is bounded: 16 packets per queue, 5 queues.
    assert!(world.max_tx_per_poll <= 16 * 5, "{}", world.max_tx_per_poll);
    // The flood was real, and throttled at the source by the TX budget.
    assert!(world.vif(&flooder).port_counters.received_packets > 1000);
}

#[test]
fn vifs_detach_and_reattach_and_frontends_restart() {
    let mut world = World::new();
    let (mut a, _) = world.guest("a", NetfrontConfig::linux());
    let (mut b, b_nodes) = world.guest("b", NetfrontConfig::linux());
    let toolstack = world.xen.toolstack();

    // Detach b: the backend closes and forgets it.
    toolstack.begin_detach(&b_nodes).unwrap();
    world.pump();
    // The backend stops its datapath and waits for the frontend to close.
    assert_eq!(b.backend_state(), Some(XenbusState::Closing));
    assert!(!world.vif(&b).connected);
    b.close().unwrap();
    world.pump();
    assert_eq!(b.backend_state(), Some(XenbusState::Closed));
    toolstack.finish_detach(&b_nodes).unwrap();
    world.pump();
    assert_eq!(world.netback.vifs().len(), 1);

    // Reattach a vif for the same guest.
    let nodes = toolstack
        .attach_vif(&xensim::VifConfig::new(
            world.driver.domid(),
            b.domain().domid(),
        ))
        .unwrap();
    world.pump();
    let mut b = xensim::frontend::net::Netfront::new(
        b.domain().clone(),
        world.driver.domid(),
        nodes.devid,
        NetfrontConfig::linux(),
    );
    b.connect().unwrap();
    world.pump();
    assert_eq!(b.backend_state(), Some(XenbusState::Connected));
    let frame = raw_frame(mac_of(&b), mac_of(&a), 700, 1);
    a.send(0, &frame, TxOptions::default()).unwrap();
    world.settle(&mut [&mut a, &mut b]);
    assert_eq!(only_frame(b.take_received()).data, frame);

    // a's driver restarts: Closed, then Initialising, then a new connect.
    a.close().unwrap();
    world.pump();
    assert_eq!(a.backend_state(), Some(XenbusState::Closed));
    assert!(!world.vif(&a).connected);
    a.restart().unwrap();
    world.pump();
    assert_eq!(a.backend_state(), Some(XenbusState::InitWait));
    a.connect().unwrap();
    world.pump();
    assert_eq!(a.backend_state(), Some(XenbusState::Connected));
    let frame = raw_frame(mac_of(&a), mac_of(&b), 1500, 2);
    b.send(0, &frame, TxOptions::default()).unwrap();
    world.settle(&mut [&mut a, &mut b]);
    assert_eq!(only_frame(a.take_received()).data, frame);
    assert_eq!(world.vif(&a).counters.connects, 2);
}

#[test]
fn backend_publishes_the_features_it_implements_and_statistics() {
    let mut world = World::new();
    let (mut a, _) = world.guest("a", NetfrontConfig::gnu_mach());
    let path = a.backend_path().to_string();
    let mut dom0 = world.xen.dom0();
    let read = |dom0: &mut xensim::Domain, key: &str| {
        xenbus::platform::Xenstore::read(
            dom0,
            xenbus::platform::TxId::NONE,
            &format!("{path}/{key}"),
        )
        .ok()
    };
    for (key, value) in [
        ("feature-rx-copy", "1"),
        ("feature-rx-flip", "0"),
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
        ("feature-gso-tcpv6", "1"),
        ("feature-ipv6-csum-offload", "1"),
        ("feature-split-event-channels", "1"),
        ("multi-queue-max-queues", "4"),
        ("feature-ctrl-ring", "1"),
        ("hotplug-status", "connected"),
        ("state", "4"),
    ] {
        assert_eq!(read(&mut dom0, key).as_deref(), Some(value), "{key}");
    }
    for unimplemented in [
        "feature-multicast-control",
        "feature-dynamic-multicast-control",
        "feature-xdp-headroom",
    ] {
        assert_eq!(read(&mut dom0, unimplemented), None);
    }
    let frame = raw_frame(BROADCAST, mac_of(&a), 100, 0);
    a.send(0, &frame, TxOptions::default()).unwrap();
    world.settle(&mut [&mut a]);
    world.netback.publish_statistics(&mut world.driver);
    world.pump();
    assert_eq!(
        read(&mut dom0, "statistics/tx-packets").as_deref(),
        Some("1")
    );
    assert_eq!(
        read(&mut dom0, "statistics/tx-bytes").as_deref(),
        Some("100")
    );
    assert_eq!(world.vif(&a).mac, Some(mac_of(&a)));
}

#[test]
fn four_queues_carry_traffic_both_ways_and_flows_spread_over_them() {
    let mut world = World::new();
    let config = NetfrontConfig {
        queues: 4,
        ..NetfrontConfig::linux()
    };
    let (mut linux, _) = world.guest("linux", config);
    let (mut hurd, _) = world.guest("hurd", NetfrontConfig::gnu_mach());
    assert_eq!(linux.queue_count(), 4);
    assert_eq!(world.vif(&linux).features.unwrap().queues, 4);

    // Every TX queue works.
    for queue in 0..4 {
        let frame = raw_frame(mac_of(&hurd), mac_of(&linux), 200 + queue, queue as u8);
        linux.send(queue, &frame, TxOptions::default()).unwrap();
        world.settle(&mut [&mut linux, &mut hurd]);
        assert_eq!(only_frame(hurd.take_received()).data, frame);
    }

    // Many flows towards the Linux guest land on several RX queues, and
    // one flow always on the same queue.
    let mut queues_seen = std::collections::BTreeMap::new();
    for flow in 0..32u8 {
        for repeat in 0..2 {
            let mut frame = ip_frame(mac_of(&linux), mac_of(&hurd), false, false, 100, repeat);
            frame[34] = flow; // UDP source port
            let mut patched = netback::Frame::new(frame);
            netback::frame::fill_checksum(&mut patched).unwrap();
            hurd.send(0, &patched.data, TxOptions::default()).unwrap();
            world.settle(&mut [&mut linux, &mut hurd]);
            let got = only_frame(linux.take_received());
            assert_eq!(got.data, patched.data);
            let first = *queues_seen.entry(flow).or_insert(got.queue);
            assert_eq!(first, got.queue, "flow {flow} moved queues");
        }
    }
    let distinct: std::collections::BTreeSet<_> = queues_seen.values().collect();
    assert!(distinct.len() >= 3, "{distinct:?}");
}

#[test]
fn more_vifs_than_allowed_are_left_alone() {
    let config = netback::Config {
        max_vifs: 2,
        ..netback::Config::default()
    };
    let mut world = World::with_config(config);
    let (_a, _) = world.guest("a", NetfrontConfig::linux());
    let (_b, _) = world.guest("b", NetfrontConfig::linux());
    let (guest, _) = world.attached_domain("c");
    assert_eq!(world.netback.vifs().len(), 2);
    let mut c = xensim::frontend::net::Netfront::new(
        guest,
        world.driver.domid(),
        0,
        NetfrontConfig::linux(),
    );
    assert_eq!(c.backend_state(), Some(XenbusState::Initialising));
}

#[test]
fn frames_for_a_frontend_that_posts_no_buffers_expire_and_memory_is_bounded() {
    let config = netback::Config {
        backlog: netback::BacklogLimits {
            bytes_engine: 64 * 1024,
            timeout: std::time::Duration::from_secs(1),
            ..netback::BacklogLimits::default()
        },
        ..netback::Config::default()
    };
    let mut world = World::with_config(config);
    let (mut sender, _) = world.guest("sender", NetfrontConfig::linux());
    let sink_config = NetfrontConfig {
        rx_buffers: 0,
        ..NetfrontConfig::gnu_mach()
    };
    let (mut sink, _) = world.guest("sink", sink_config);
    for seed in 0..100u8 {
        let frame = raw_frame(mac_of(&sink), mac_of(&sender), 1500, seed);
        sender.send(0, &frame, TxOptions::default()).unwrap();
        world.settle(&mut [&mut sender, &mut sink]);
    }
    // The engine-wide bound holds: 43 frames fit in 64 KiB, the rest drop.
    assert!(world.netback.backlog_bytes() <= 64 * 1024);
    assert_eq!(world.vif(&sink).port_counters.drops, 100 - 43);
    // After the timeout the waiting frames are dropped too.
    world.now += std::time::Duration::from_secs(2);
    world.step();
    assert_eq!(world.netback.backlog_bytes(), 0);
    assert_eq!(world.vif(&sink).port_counters.drops, 100);
    assert!(sink.take_received().is_empty());
    // A buffer posted now gets only new frames.
    let fresh = raw_frame(mac_of(&sink), mac_of(&sender), 100, 200);
    sender.send(0, &fresh, TxOptions::default()).unwrap();
    let gref = sink.grant_writable_page().unwrap();
    sink.push_raw_rx(0, gref).unwrap();
    world.settle(&mut [&mut sender, &mut sink]);
    assert_eq!(only_frame(sink.take_received()).data, fresh);
}

#[test]
fn control_ring_hash_mapping_steers_flows_to_the_chosen_queue() {
    use netback::control::*;
    let mut world = World::new();
    let config = NetfrontConfig {
        queues: 4,
        ..NetfrontConfig::linux()
    };
    let (mut linux, _) = world.guest("linux", config);
    let (mut hurd, _) = world.guest("hurd", NetfrontConfig::gnu_mach());
    assert!(linux.has_control_ring());

    let key: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let key_gref = linux.grant_data(0, &key).unwrap();
    let table: Vec<u8> = std::iter::repeat_n(2u32, 8)
        .flat_map(u32::to_le_bytes)
        .collect();
    let table_gref = linux.grant_data(0, &table).unwrap();
    let bad_table: Vec<u8> = [1u32, 7].iter().flat_map(|q| q.to_le_bytes()).collect();
    let bad_table_gref = linux.grant_data(0, &bad_table).unwrap();
    let requests = [
        (CTRL_GET_HASH_FLAGS, [0, 0, 0], CTRL_STATUS_NOT_SUPPORTED, 0),
        (
            CTRL_SET_HASH_ALGORITHM,
            [9, 0, 0],
            CTRL_STATUS_INVALID_PARAMETER,
            0,
        ),
        (
            CTRL_SET_HASH_ALGORITHM,
            [HASH_ALGORITHM_TOEPLITZ, 0, 0],
            CTRL_STATUS_SUCCESS,
            0,
        ),
        (CTRL_GET_HASH_FLAGS, [0, 0, 0], CTRL_STATUS_SUCCESS, 0xf),
        (
            CTRL_SET_HASH_FLAGS,
            [0x10, 0, 0],
            CTRL_STATUS_INVALID_PARAMETER,
            0,
        ),
        (CTRL_SET_HASH_FLAGS, [0x3, 0, 0], CTRL_STATUS_SUCCESS, 0),
        (
            CTRL_SET_HASH_KEY,
            [key_gref, 41, 0],
            CTRL_STATUS_BUFFER_OVERFLOW,
            0,
        ),
        (CTRL_SET_HASH_KEY, [key_gref, 40, 0], CTRL_STATUS_SUCCESS, 0),
        (
            CTRL_GET_HASH_MAPPING_SIZE,
            [0, 0, 0],
            CTRL_STATUS_SUCCESS,
            128,
        ),
        (
            CTRL_SET_HASH_MAPPING_SIZE,
            [129, 0, 0],
            CTRL_STATUS_INVALID_PARAMETER,
            0,
        ),
        (
            CTRL_SET_HASH_MAPPING_SIZE,
            [8, 0, 0],
            CTRL_STATUS_SUCCESS,
            0,
        ),
        (
            CTRL_SET_HASH_MAPPING,
            [bad_table_gref, 2, 0],
            CTRL_STATUS_INVALID_PARAMETER,
            0,
        ),
        (
            CTRL_SET_HASH_MAPPING,
            [table_gref, 8, 1],
            CTRL_STATUS_INVALID_PARAMETER,
            0,
        ),
        (
            CTRL_SET_HASH_MAPPING,
            [4000, 8, 0],
            CTRL_STATUS_INVALID_PARAMETER,
            0,
        ),
        (
            CTRL_SET_HASH_MAPPING,
            [table_gref, 8, 0],
            CTRL_STATUS_SUCCESS,
            0,
        ),
        (8, [0, 0, 0], CTRL_STATUS_NOT_SUPPORTED, 0),
    ];
    for (kind, data, status, value) in requests {
        let id = linux.control_request(kind, data).unwrap();
        world.pump();
        let responses = linux.control_responses().unwrap();
        assert_eq!(
            responses,
            vec![(id, kind, status, value)],
            "type {kind} {data:?}"
        );
    }

    // Every TCP flow now lands on queue 2.
    for flow in 0..16u8 {
        let mut frame = ip_frame(mac_of(&linux), mac_of(&hurd), false, true, 100, flow);
        frame[34] = flow;
        let mut patched = netback::Frame::new(frame);
        netback::frame::fill_checksum(&mut patched).unwrap();
        hurd.send(0, &patched.data, TxOptions::default()).unwrap();
        world.settle(&mut [&mut linux, &mut hurd]);
        let got = only_frame(linux.take_received());
        assert_eq!(got.queue, 2);
        assert_eq!(got.data, patched.data);
    }
}
