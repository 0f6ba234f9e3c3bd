//! Throughput of the engine in the simulator: a Linux-like frontend with
//! persistent grants keeps 32 requests in flight per queue against a RAM
//! disk, for 4 KiB random and 64 KiB sequential reads and writes, with one
//! and four queues. Everything (frontend, simulated hypervisor, engine,
//! device) runs in this one thread, so the figures bound the engine's cost
//! from above. A plain copy of the same bytes, measured in the same run,
//! gives the scale.
//!
//! Run with `cargo bench -p blkback`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use blkback::{Config, RamDisk};
use common::{Rig, Rng};
use xensim::frontend::blk::{BlkOp, BlkfrontConfig, RSP_OKAY};

const DISK_SECTORS: u64 = 256 * 1024; // 128 MiB
const DEPTH_PER_QUEUE: usize = 32;
const RUN_TIME: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy)]
enum Pattern {
    Random4k,
    Sequential64k,
}

struct Outcome {
    requests: u64,
    bytes: u64,
    elapsed: Duration,
}

fn run(queues: u32, pattern: Pattern, write: bool) -> Outcome {
    let mut disk = RamDisk::new(DISK_SECTORS).unwrap();
    disk.set_queue_depth(1024).unwrap();
    let mut rig = Rig::new(Config::new(0), vec![("ram0".to_string(), disk)]);
    let guest = rig.guest("linux");
    let mut config = BlkfrontConfig::linux();
    config.queues = queues;
    let (_nodes, mut front) = rig.attach(&guest, "ram0", true, config);
    rig.connect(&mut front);
    let sectors: u32 = match pattern {
        Pattern::Random4k => 8,
        Pattern::Sequential64k => 128,
    };
    let payload = vec![0xa5u8; sectors as usize * 512];
    let mut rng = Rng::new(42);
    let mut next_sector = 0u64;
    let mut in_flight = vec![0usize; queues as usize];
    let mut queue_of = std::collections::HashMap::new();
    let mut requests = 0u64;
    let start = Instant::now();
    let mut warm = false;
    let mut measured_from = start;
    let mut measured_requests = 0u64;
    loop {
        for (queue, count) in in_flight.iter_mut().enumerate() {
            while *count < DEPTH_PER_QUEUE && front.has_room(queue) {
                let sector = match pattern {
                    Pattern::Random4k => rng.below(DISK_SECTORS / 8) * 8,
                    Pattern::Sequential64k => {
                        let sector = next_sector;
                        next_sector = (next_sector + u64::from(sectors)) % DISK_SECTORS;
                        sector
                    }
                };
                let op = if write {
                    BlkOp::Write {
                        sector,
                        data: payload.clone(),
                    }
                } else {
                    BlkOp::Read { sector, sectors }
                };
                let id = front.submit(queue, op).unwrap();
                queue_of.insert(id, queue);
                *count += 1;
            }
        }
        rig.pump();
        for completion in front.collect().unwrap() {
            assert_eq!(completion.status, RSP_OKAY);
            black_box(&completion.data);
            let queue = queue_of.remove(&completion.id).unwrap();
            in_flight[queue] -= 1;
            requests += 1;
        }
        let now = Instant::now();
        // The first quarter second warms the persistent grant table up.
        if !warm && now - start > Duration::from_millis(250) {
            warm = true;
            measured_from = now;
            measured_requests = requests;
        }
        if warm && now - measured_from > RUN_TIME {
            let counted = requests - measured_requests;
            return Outcome {
                requests: counted,
                bytes: counted * u64::from(sectors) * 512,
                elapsed: now - measured_from,
            };
        }
    }
}

/// Copies `chunk`-byte buffers for `RUN_TIME`, as a data path that only
/// moved the bytes once would. The destination starts one cache line into
/// its allocation: with source and destination at the same offset within a
/// page, this machine's copies run ten times slower (4 KiB aliasing), which
/// would make the baseline meaningless.
fn memcpy_rate(chunk: usize) -> f64 {
    const SKEW: usize = 64;
    let source = vec![0x5au8; chunk];
    let mut destination = vec![0u8; chunk + SKEW];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < RUN_TIME {
        for _ in 0..256 {
            destination[SKEW..].copy_from_slice(black_box(&source));
            black_box(&mut destination);
        }
        bytes += 256 * chunk as u64;
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing.
    println!(
        "{:<24} {:>6} {:>12} {:>9} {:>14}",
        "workload", "queues", "requests/s", "GB/s", "memcpy GB/s"
    );
    for (name, pattern, chunk) in [
        ("4 KiB random", Pattern::Random4k, 4096),
        ("64 KiB sequential", Pattern::Sequential64k, 65536),
    ] {
        let copy = memcpy_rate(chunk);
        for write in [false, true] {
            for queues in [1, 4] {
                let outcome = run(queues, pattern, write);
                let seconds = outcome.elapsed.as_secs_f64();
                println!(
                    "{:<24} {:>6} {:>12.0} {:>9.3} {:>14.2}",
                    format!("{name} {}", if write { "write" } else { "read" }),
                    queues,
                    outcome.requests as f64 / seconds,
                    outcome.bytes as f64 / seconds / 1e9,
                    copy / 1e9,
                );
            }
        }
    }
}
