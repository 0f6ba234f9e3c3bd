//! The whole engine on the simulated hypervisor, driven by a hostile
//! Linux-like netfront: the input is a script of raw TX slots, producer
//! index jumps, raw receive buffers, garbage xenstore values and driver
//! restarts. Whatever it does, the engine must not panic or spin, and two
//! bystander guests must still exchange frames afterwards.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use libfuzzer_sys::fuzz_target;
use xensim::frontend::net::{NetfrontConfig, TxOptions};

const KEYS: [&str; 8] = [
    "state",
    "tx-ring-ref",
    "queue-0/rx-ring-ref",
    "queue-1/event-channel-tx",
    "multi-queue-num-queues",
    "feature-sg",
    "request-rx-copy",
    "feature-gso-tcpv4",
];

const VALUES: [&str; 8] = ["0", "1", "3", "4", "5", "6", "4294967296", "x"];

fuzz_target!(|data: &[u8]| {
    // Few receive buffers: setting a guest up is most of the cost of a run.
    let small = |config: NetfrontConfig| NetfrontConfig {
        rx_buffers: 8,
        ..config
    };
    let mut world = World::new();
    let (mut attacker, _) = world.guest("attacker", small(NetfrontConfig::linux()));
    let (mut left, _) = world.guest("left", small(NetfrontConfig::linux()));
    let (mut right, _) = world.guest("right", small(NetfrontConfig::gnu_mach()));

    let mut input = data;
    let mut steps = 0;
    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        steps += 1;
        if steps > 64 {
            break;
        }
        let queue = usize::from(op >> 7);
        match op & 7 {
            0 | 1 => {
                // Up to 8 raw TX slots.
                let count = usize::from(op >> 3 & 7) + 1;
                let take = (count * 12).min(input.len() / 12 * 12);
                let slots: Vec<[u8; 12]> = input[..take]
                    .chunks_exact(12)
                    .map(|chunk| chunk.try_into().unwrap())
                    .collect();
                input = &input[take..];
                let _ = attacker.push_raw_tx(queue, &slots);
            }
            2 => {
                let Some((&value, rest)) = input.split_first() else {
                    break;
                };
                input = rest;
                let _ = attacker.set_tx_req_prod(queue, u32::from(value) << (op >> 3 & 31));
            }
            3 => {
                let Some((&value, rest)) = input.split_first() else {
                    break;
                };
                input = rest;
                let _ = attacker.push_raw_rx(queue, u32::from(value) * 37);
            }
            4 => {
                let Some((&value, rest)) = input.split_first() else {
                    break;
                };
                input = rest;
                let key = KEYS[usize::from(value & 7)];
                let _ = attacker.write_key(key, VALUES[usize::from(value >> 3 & 7)]);
            }
            5 => {
                let _ = attacker.restart();
                world.pump();
                let _ = attacker.connect();
            }
            6 => {
                let Some((&value, rest)) = input.split_first() else {
                    break;
                };
                input = rest;
                let frame = raw_frame(
                    mac_of(&left),
                    mac_of(&attacker),
                    14 + usize::from(value) * 40,
                    value,
                );
                let options = TxOptions {
                    checksum_blank: value & 1 != 0,
                    gso: (value & 2 != 0).then_some((1 + (value >> 2 & 1), 88 + u16::from(value))),
                    ..TxOptions::default()
                };
                let _ = attacker.send(queue, &frame, options);
            }
            _ => {
                let _ = attacker.process();
            }
        }
        world.pump();
    }
    world.settle(&mut [&mut left, &mut right]);
    let _ = left.take_received();
    let _ = right.take_received();

    let frame = raw_frame(mac_of(&right), mac_of(&left), 1000, 7);
    left.send(0, &frame, TxOptions::default()).unwrap();
    world.settle(&mut [&mut left, &mut right]);
    let got: Vec<_> = right.take_received().into_iter().map(|f| f.data).collect();
    assert!(got.contains(&frame));
});
