//! Seeded random workloads, ordering of flushes and barriers, and the
//! device lifecycle (detach, reattach, frontend restart).

mod common;

use std::collections::BTreeMap;

use blkback::{Config, RamDisk};
use common::devices::{FileDisk, Gated, Reorder, Seen};
use common::{Rig, Rng};
use xenbus::XenbusState;
use xensim::frontend::blk::{BlkOp, Blkfront, BlkfrontConfig, RSP_OKAY};

const SECTORS: u64 = 16 * 1024; // 8 MiB

/// A request in flight: its byte range and, for a read, the data expected.
type InFlight = (std::ops::Range<usize>, Option<Vec<u8>>);

/// Runs `operations` random reads and writes on every frontend at once,
/// checking each read against a model of the disk. A request is only
/// issued if no request in flight on the same frontend overlaps it, so the
/// model is exact whatever order the backend completes them in.
fn random_workload(rig: &mut Rig<RamDisk>, fronts: &mut [Blkfront], seed: u64, operations: usize) {
    let mut rng = Rng::new(seed);
    let mut models: Vec<Vec<u8>> = fronts
        .iter()
        .map(|_| vec![0u8; SECTORS as usize * 512])
        .collect();
    // In flight per frontend: id -> (byte range, expected data for reads).
    let mut in_flight: Vec<BTreeMap<u64, InFlight>> =
        fronts.iter().map(|_| BTreeMap::new()).collect();
    let mut issued = 0;
    let mut verified_reads = 0;
    while issued < operations || in_flight.iter().any(|map| !map.is_empty()) {
        if issued < operations {
            for (index, front) in fronts.iter_mut().enumerate() {
                for _ in 0..4 {
                    let queue = rng.below(front.queue_count() as u64) as usize;
                    if !front.has_room(queue) {
                        continue;
                    }
                    let max_sectors = if front.max_indirect_segments() > 0 {
                        512
                    } else {
                        88
                    };
                    let sectors = 1 + rng.below(max_sectors) as u32;
                    let sector = rng.below(SECTORS - u64::from(sectors));
                    let range = sector as usize * 512..(sector as usize + sectors as usize) * 512;
                    let overlaps = in_flight[index]
                        .values()
                        .any(|(other, _)| other.start < range.end && range.start < other.end);
                    if overlaps {
                        continue;
                    }
                    if rng.below(2) == 0 {
                        let mut data = vec![0u8; sectors as usize * 512];
                        rng.fill(&mut data);
                        models[index][range.clone()].copy_from_slice(&data);
                        let id = front.submit(queue, BlkOp::Write { sector, data }).unwrap();
                        in_flight[index].insert(id, (range, None));
                    } else {
                        let id = front
                            .submit(queue, BlkOp::Read { sector, sectors })
                            .unwrap();
                        let want = models[index][range.clone()].to_vec();
                        in_flight[index].insert(id, (range, Some(want)));
                    }
                    issued += 1;
                }
            }
        }
        rig.pump();
        for (index, front) in fronts.iter_mut().enumerate() {
            for completion in front.collect().unwrap() {
                let (_, want) = in_flight[index]
                    .remove(&completion.id)
                    .expect("known request");
                assert_eq!(completion.status, RSP_OKAY);
                if let Some(want) = want {
                    assert!(
                        completion.data.unwrap() == want,
                        "frontend {index} read wrong data"
                    );
                    verified_reads += 1;
                }
            }
        }
    }
    assert!(
        verified_reads > operations / 4,
        "too few reads were checked: {verified_reads}"
    );
}

#[test]
fn random_reads_and_writes_from_several_frontends_at_once() {
    let mut rig = Rig::with_ram_disks(3, SECTORS);
    let linux = rig.guest("linux");
    let hurd = rig.guest("hurd");
    let (_a, mut a) = rig.attach(&linux, "ram0", true, BlkfrontConfig::linux());
    let mut narrow = BlkfrontConfig::linux();
    narrow.queues = 2;
    narrow.ring_page_order = 1;
    narrow.persistent = false;
    let (_b, mut b) = rig.attach(&linux, "ram1", true, narrow);
    let (_c, mut c) = rig.attach(&hurd, "ram2", true, BlkfrontConfig::gnu_mach());
    rig.settle(&mut [&mut a, &mut b, &mut c]);
    let mut fronts = [a, b, c];
    random_workload(&mut rig, &mut fronts, 0x0dd5eed, 300);
}

#[test]
fn persistent_grant_table_stays_bounded_and_data_stays_right() {
    let mut config = Config::new(0);
    config.max_persistent_grants = 16;
    let devices = vec![("ram0".to_string(), RamDisk::new(SECTORS).unwrap())];
    let mut rig = Rig::new(config, devices);
    let guest = rig.guest("linux");
    let (nodes, mut front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    rig.connect(&mut front);
    let mut rng = Rng::new(7);
    for round in 0..20u64 {
        // 40 pages per request: more than the table holds, so it evicts.
        let mut data = vec![0u8; 40 * 4096];
        rng.fill(&mut data);
        rig.write(&mut front, round * 320, &data);
        assert!(
            rig.read(&mut front, round * 320, data.len()) == data,
            "read back different data"
        );
        let status = rig.backend.vbd(nodes.frontend_id, nodes.devid).unwrap();
        assert!(
            status.persistent_grants <= 16,
            "{}",
            status.persistent_grants
        );
        assert!(status.persistent_grants > 0);
    }
}

#[test]
fn flush_and_barrier_wait_for_earlier_writes_on_a_reordering_device() {
    for seed in 1..=8 {
        let device = Reorder::new(SECTORS, seed);
        let log = device.log.clone();
        let mut rig = Rig::new(Config::new(0), vec![("slow".to_string(), device)]);
        let guest = rig.guest("linux");
        let mut config = BlkfrontConfig::linux();
        config.queues = 1;
        let (_nodes, mut front) = rig.attach(&guest, "slow", true, config);
        rig.settle(&mut [&mut front]);
        assert!(front.is_connected());
        // Eight writes, a flush, a barrier with data, four more writes,
        // all on the ring before the backend looks.
        let mut ids = Vec::new();
        for index in 0..8u64 {
            let op = BlkOp::Write {
                sector: index * 8,
                data: vec![index as u8; 4096],
            };
            ids.push(front.submit(0, op).unwrap());
        }
        let flush = front.submit(0, BlkOp::Flush).unwrap();
        let barrier = front
            .submit(
                0,
                BlkOp::Barrier {
                    sector: 500,
                    data: vec![0xbb; 4096],
                },
            )
            .unwrap();
        let mut later = Vec::new();
        for index in 0..4u64 {
            let op = BlkOp::Write {
                sector: 1000 + index * 8,
                data: vec![0xcc; 4096],
            };
            later.push(front.submit(0, op).unwrap());
        }
        let mut order = Vec::new();
        for _ in 0..200 {
            rig.pump();
            order.extend(front.collect().unwrap().into_iter().map(|c| {
                assert_eq!(c.status, RSP_OKAY);
                c.id
            }));
            if order.len() == 14 {
                break;
            }
        }
        assert_eq!(order.len(), 14, "seed {seed}: not everything completed");
        let position = |id| order.iter().position(|&done| done == id).unwrap();
        for &id in &ids {
            assert!(
                position(id) < position(flush),
                "seed {seed}: flush answered before write {id}"
            );
            assert!(
                position(id) < position(barrier),
                "seed {seed}: barrier before write {id}"
            );
        }
        for &id in &later {
            assert!(
                position(barrier) < position(id),
                "seed {seed}: write {id} passed the barrier"
            );
        }
        // What the device saw: every early write completed before the
        // first flush was submitted; the later writes were submitted only
        // after the barrier's flush completed.
        let seen = log.borrow();
        let at = |event: &Seen| seen.iter().position(|seen| seen == event).unwrap();
        let first_flush = at(&Seen::SubmitFlush);
        for index in 0..8u64 {
            assert!(
                at(&Seen::CompleteWrite(index * 8)) < first_flush,
                "seed {seed}"
            );
        }
        let barrier_write = at(&Seen::CompleteWrite(500));
        let barrier_flush_done = seen
            .iter()
            .enumerate()
            .filter(|(position, event)| **event == Seen::CompleteFlush && *position > barrier_write)
            .map(|(position, _)| position)
            .next()
            .expect("the barrier flushed after its write");
        for index in 0..4u64 {
            assert!(
                barrier_flush_done < at(&Seen::SubmitWrite(1000 + index * 8)),
                "seed {seed}"
            );
        }
    }
}

#[test]
fn data_survives_detach_and_reattach() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("linux");
    let (nodes, mut front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    rig.connect(&mut front);
    let data: Vec<u8> = (0..40 * 1024).map(|index| (index % 251) as u8).collect();
    rig.write(&mut front, 64, &data);
    rig.detach(&nodes, &mut front);
    assert!(rig.backend.vbds().is_empty(), "the vbd was not forgotten");
    // Attach again, from another guest flavour this time.
    let hurd = rig.guest("hurd");
    let (_nodes, mut again) = rig.attach(&hurd, "ram0", true, BlkfrontConfig::gnu_mach());
    rig.connect(&mut again);
    assert!(
        rig.read(&mut again, 64, data.len()) == data,
        "read back different data"
    );
}

#[test]
fn file_backed_disk_keeps_data_across_reattach() {
    let path = std::env::temp_dir().join(format!("blkback-file-disk-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let disk = FileDisk::new(file, SECTORS).unwrap();
    let mut rig = Rig::new(Config::new(0), vec![("file0".to_string(), disk)]);
    let guest = rig.guest("linux");
    let (nodes, mut front) = rig.attach(&guest, "file0", true, BlkfrontConfig::linux());
    rig.connect(&mut front);
    let data = vec![0x5a; 8192];
    rig.write(&mut front, 10, &data);
    assert_eq!(rig.request(&mut front, 0, BlkOp::Flush).status, RSP_OKAY);
    rig.detach(&nodes, &mut front);
    let (_nodes, mut again) = rig.attach(&guest, "file0", true, BlkfrontConfig::linux());
    rig.connect(&mut again);
    assert!(
        rig.read(&mut again, 10, 8192) == data,
        "read back different data"
    );
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[10 * 512..10 * 512 + 8192], &data[..]);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn frontend_restart_reconnects_and_sees_its_data() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("linux");
    let (nodes, mut front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    rig.connect(&mut front);
    rig.write(&mut front, 0, &[0x11; 4096]);
    front.begin_close().unwrap();
    rig.settle(&mut [&mut front]);
    assert_eq!(front.state(), XenbusState::Closed);
    assert_eq!(rig.backend_state(&nodes), Some(XenbusState::Closed));
    assert_eq!(
        rig.driver.active_maps(),
        0,
        "rings or persistent grants stayed mapped"
    );
    front.restart().unwrap();
    rig.connect(&mut front);
    assert!(rig.driver.active_maps() > 0);
    assert_eq!(rig.backend_state(&nodes), Some(XenbusState::Connected));
    assert!(
        rig.read(&mut front, 0, 4096) == vec![0x11; 4096],
        "read back different data"
    );
}

#[test]
fn a_closing_frontend_sees_closed_only_once_the_device_has_finished() {
    let held = std::rc::Rc::new(std::cell::Cell::new(true));
    let device = Gated {
        inner: RamDisk::new(SECTORS).unwrap(),
        held: held.clone(),
    };
    let mut rig = Rig::new(Config::new(0), vec![("gated".to_string(), device)]);
    let guest = rig.guest("linux");
    let (nodes, mut front) = rig.attach(&guest, "gated", true, BlkfrontConfig::linux());
    held.set(false);
    rig.connect(&mut front);
    held.set(true);
    front
        .submit(
            0,
            BlkOp::Write {
                sector: 8,
                data: vec![0x5c; 4096],
            },
        )
        .unwrap();
    rig.pump();
    let status = rig.backend.vbd(nodes.frontend_id, nodes.devid).unwrap();
    assert_eq!(status.device_in_flight, 1);
    front.begin_close().unwrap();
    for _ in 0..4 {
        rig.pump();
        front.step().unwrap();
    }
    assert_eq!(
        rig.driver.active_maps(),
        0,
        "the rings stayed mapped after the frontend closed"
    );
    assert_ne!(
        rig.backend_state(&nodes),
        Some(XenbusState::Closed),
        "Closed while the device still works for the old connection"
    );
    held.set(false);
    rig.settle(&mut [&mut front]);
    assert_eq!(rig.backend_state(&nodes), Some(XenbusState::Closed));
    assert_eq!(front.state(), XenbusState::Closed);
    // The write the device had taken is on the disk.
    front.restart().unwrap();
    rig.connect(&mut front);
    assert!(
        rig.read(&mut front, 8, 4096) == vec![0x5c; 4096],
        "read back different data"
    );
}

#[test]
fn frontend_domain_destroyed_while_connected_releases_the_disk() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("linux");
    let other = rig.guest("other");
    let (nodes, mut front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    let (_other_nodes, mut survivor) =
        rig.attach(&other, "ram0", false, BlkfrontConfig::gnu_mach());
    rig.settle(&mut [&mut front, &mut survivor]);
    rig.write(&mut front, 0, &[0x22; 4096]);
    rig.toolstack.destroy_domain(guest.domid()).unwrap();
    rig.settle(&mut [&mut survivor]);
    assert!(rig.backend.vbd(nodes.frontend_id, nodes.devid).is_none());
    assert!(
        rig.read(&mut survivor, 0, 4096) == vec![0x22; 4096],
        "read back different data"
    );
}

#[test]
fn a_shallow_device_queue_and_a_small_buffer_budget_only_slow_things_down() {
    let mut disk = RamDisk::new(SECTORS).unwrap();
    disk.set_queue_depth(2).unwrap();
    let mut config = Config::new(0);
    config.max_bytes_in_flight_per_ring = 16 * 1024;
    let mut rig = Rig::new(config, vec![("ram0".to_string(), disk)]);
    let guest = rig.guest("linux");
    let (_nodes, mut front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    rig.connect(&mut front);
    let mut ids = Vec::new();
    for index in 0..200u64 {
        let queue = (index % 4) as usize;
        let data = vec![index as u8; 8192];
        ids.push(
            front
                .submit(
                    queue,
                    BlkOp::Write {
                        sector: index * 16,
                        data,
                    },
                )
                .unwrap(),
        );
    }
    let mut done = 0;
    for _ in 0..500 {
        rig.pump();
        for completion in front.collect().unwrap() {
            assert_eq!(completion.status, RSP_OKAY);
            done += 1;
        }
        if done == ids.len() {
            break;
        }
    }
    assert_eq!(done, ids.len());
    for index in [0u64, 77, 199] {
        assert!(rig.read(&mut front, index * 16, 8192) == vec![index as u8; 8192]);
    }
}

#[test]
fn device_errors_become_error_responses_and_flush_still_completes() {
    let device = common::devices::Failing::new(SECTORS, 100..200);
    let mut rig = Rig::new(Config::new(0), vec![("flaky".to_string(), device)]);
    let guest = rig.guest("linux");
    let (_nodes, mut front) = rig.attach(&guest, "flaky", true, BlkfrontConfig::gnu_mach());
    rig.connect(&mut front);
    let bad = rig.request(
        &mut front,
        0,
        BlkOp::Write {
            sector: 150,
            data: vec![1; 4096],
        },
    );
    assert_eq!(bad.status, xensim::frontend::blk::RSP_ERROR);
    let good = rig.request(
        &mut front,
        0,
        BlkOp::Write {
            sector: 300,
            data: vec![2; 4096],
        },
    );
    assert_eq!(good.status, RSP_OKAY);
    assert_eq!(rig.request(&mut front, 0, BlkOp::Flush).status, RSP_OKAY);
    assert!(common::logged(&["device error"]));
}

#[test]
fn a_frontend_that_ignores_detach_is_cut_off_when_the_toolstack_removes_the_nodes() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("stubborn");
    let (nodes, mut front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    rig.connect(&mut front);
    rig.write(&mut front, 0, &[3; 4096]);
    assert!(rig.driver.active_maps() > 0);
    // The toolstack asks for the disk back; the frontend never answers.
    rig.toolstack.begin_detach(&nodes).unwrap();
    rig.pump();
    assert_eq!(rig.backend_state(&nodes), Some(XenbusState::Closing));
    // The toolstack gives up waiting and removes the nodes.
    rig.toolstack.finish_detach(&nodes).unwrap();
    rig.pump();
    assert!(rig.backend.vbds().is_empty());
    assert_eq!(
        rig.driver.active_maps(),
        0,
        "the stubborn frontend's pages stayed mapped"
    );
}

#[test]
fn a_flush_on_one_queue_waits_for_writes_on_the_others() {
    for seed in 11..=14 {
        let device = Reorder::new(SECTORS, seed);
        let log = device.log.clone();
        let mut rig = Rig::new(Config::new(0), vec![("slow".to_string(), device)]);
        let guest = rig.guest("linux");
        let (_nodes, mut front) = rig.attach(&guest, "slow", true, BlkfrontConfig::linux());
        rig.connect(&mut front);
        assert_eq!(front.queue_count(), 4);
        let mut writes = Vec::new();
        for index in 0..12u64 {
            let op = BlkOp::Write {
                sector: index * 8,
                data: vec![index as u8; 4096],
            };
            writes.push(front.submit((index % 3) as usize, op).unwrap());
        }
        let flush = front.submit(3, BlkOp::Flush).unwrap();
        let mut order = Vec::new();
        for _ in 0..200 {
            rig.pump();
            order.extend(front.collect().unwrap().into_iter().map(|c| {
                assert_eq!(c.status, RSP_OKAY);
                c.id
            }));
            if order.len() == 13 {
                break;
            }
        }
        assert_eq!(order.len(), 13, "seed {seed}");
        let flush_at = order.iter().position(|&id| id == flush).unwrap();
        assert_eq!(
            flush_at, 12,
            "seed {seed}: the flush was answered before a write"
        );
        let seen = log.borrow();
        let flush_submitted = seen
            .iter()
            .position(|event| *event == Seen::SubmitFlush)
            .unwrap();
        let completed_before = seen[..flush_submitted]
            .iter()
            .filter(|event| matches!(event, Seen::CompleteWrite(_)))
            .count();
        assert_eq!(
            completed_before, 12,
            "seed {seed}: the device flushed too early"
        );
    }
}

#[test]
fn a_failed_xenstore_write_is_retried_at_the_next_poll() {
    use xenbus::platform::{TxId, Xenstore, XsError};
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    // Use up the driver domain's node quota, then free a few nodes: not
    // enough for everything the probe publishes.
    let mut driver = rig.driver.clone();
    let junk = format!("{}/data/junk", driver.home());
    let mut written = 0;
    loop {
        // At most 100 children per directory, so that no directory hits the
        // node size quota before the domain hits its node count quota.
        let path = format!("{junk}/{}/{}", written / 100, written % 100);
        match driver.write(TxId::NONE, &path, "x") {
            Ok(()) => written += 1,
            // xenstored reports an exhausted node quota as ENOSPC.
            Err(XsError::Equota | XsError::Enospc) => break,
            Err(error) => panic!("unexpected {error:?}"),
        }
        assert!(written < 5000, "no quota");
    }
    for index in 0..3 {
        driver.rm(TxId::NONE, &format!("{junk}/0/{index}")).unwrap();
    }
    let guest = rig.guest("linux");
    let (nodes, mut front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    rig.settle(&mut [&mut front]);
    assert_eq!(rig.backend_state(&nodes), Some(XenbusState::Initialising));
    assert!(common::logged(&["will retry"]));
    // Room again: the next poll publishes everything, no event needed.
    driver.rm(TxId::NONE, &junk).unwrap();
    rig.driver.poll_activity();
    rig.poll_once();
    assert_eq!(rig.backend_state(&nodes), Some(XenbusState::InitWait));
    rig.connect(&mut front);
    rig.write(&mut front, 0, &[9; 512]);
}
