//! Frames per second and Gbit/s through netback's switch between two mock
//! Linux netfronts on the simulated hypervisor, for 64 B, 1500 B and 64 KiB
//! GSO frames, beside a memcpy of the same bytes in the same run.
//!
//! `cargo bench -p netback`. A measurement, not a test: nothing is asserted
//! about speed.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::*;
use xensim::frontend::net::{NetfrontConfig, TxOptions};

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    options: TxOptions,
    count: usize,
}

fn main() {
    let mut world = World::new();
    let (mut a, _) = world.guest("a", NetfrontConfig::linux());
    let (mut b, _) = world.guest("b", NetfrontConfig::linux());
    // Teach the switch both addresses so the run is unicast.
    let hello_b = raw_frame(mac_of(&b), mac_of(&a), 60, 0);
    let hello_a = raw_frame(mac_of(&a), mac_of(&b), 60, 0);
    a.send(0, &hello_b, TxOptions::default()).unwrap();
    b.send(0, &hello_a, TxOptions::default()).unwrap();
    world.settle(&mut [&mut a, &mut b]);
    a.take_received();
    b.take_received();

    let mut gso = ip_frame(mac_of(&b), mac_of(&a), false, true, 65_535 - 54, 1);
    blank_checksum(&mut gso, false, true);
    let cases = [
        Case {
            name: "64 B",
            frame: raw_frame(mac_of(&b), mac_of(&a), 64, 1),
            options: TxOptions::default(),
            count: 20_000,
        },
        Case {
            name: "1500 B",
            frame: raw_frame(mac_of(&b), mac_of(&a), 1500, 1),
            options: TxOptions::default(),
            count: 20_000,
        },
        Case {
            name: "64 KiB GSO",
            frame: gso,
            options: TxOptions {
                checksum_blank: true,
                gso: Some((1, 1448)),
                ..TxOptions::default()
            },
            count: 2_000,
        },
    ];
    println!("netback switch benchmark: mock netfront a -> netback -> mock netfront b");
    println!(
        "{:>12} {:>10} {:>8} {:>14} {:>10} {:>16}",
        "frame", "delivered", "dropped", "frames/s", "Gbit/s", "memcpy Gbit/s"
    );
    for case in &cases {
        let mut delivered = 0usize;
        let start = Instant::now();
        let mut sent = 0usize;
        while sent < case.count {
            // Keep at most 256 KiB in flight, as TCP's window would, so
            // the run measures forwarding rather than backlog drops.
            let window = (256 * 1024 / case.frame.len()).clamp(2, 400);
            while sent < case.count
                && sent - delivered < window
                && a.send(sent % 2, &case.frame, case.options).is_ok()
            {
                sent += 1;
            }
            world.step();
            a.process().unwrap();
            b.process().unwrap();
            delivered += b.take_received().len();
        }
        world.settle(&mut [&mut a, &mut b]);
        delivered += b.take_received().len();
        let elapsed = start.elapsed();
        let bytes = (case.frame.len() * delivered) as f64;
        let memcpy = memcpy_time(&case.frame, case.count);
        println!(
            "{:>12} {:>10} {:>8} {:>14.0} {:>10.3} {:>16.2}",
            case.name,
            delivered,
            case.count - delivered,
            delivered as f64 / elapsed.as_secs_f64(),
            bytes * 8.0 / elapsed.as_secs_f64() / 1e9,
            bytes * 8.0 / memcpy.as_secs_f64() / 1e9,
        );
    }
}

/// Time to copy `count` frames of this size into a fresh buffer each.
fn memcpy_time(frame: &[u8], count: usize) -> Duration {
    let mut destination = vec![0u8; frame.len()];
    let start = Instant::now();
    for _ in 0..count {
        destination.copy_from_slice(black_box(frame));
        black_box(&mut destination);
    }
    start.elapsed()
}
