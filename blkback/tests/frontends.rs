//! The engine against mock frontends that behave like Linux's xen-blkfront
//! and GNU Mach's blkfront.

mod common;

use blkback::proto::Abi;
use common::Rig;
use xenbus::XenbusState;
use xensim::frontend::blk::{BlkOp, BlkfrontConfig, RingAbi, RSP_EOPNOTSUPP, RSP_OKAY};

const SECTORS: u64 = 64 * 1024; // 32 MiB

fn pattern(seed: u8, bytes: usize) -> Vec<u8> {
    (0..bytes)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn backend_publishes_disk_and_features_before_initwait() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("linux");
    let (nodes, _front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    rig.pump();
    assert_eq!(rig.backend_state(&nodes), Some(XenbusState::InitWait));
    let node = |key: &str| rig.read_node(&format!("{}/{key}", nodes.backend));
    assert_eq!(node("sectors").as_deref(), Some("65536"));
    assert_eq!(node("sector-size").as_deref(), Some("512"));
    assert_eq!(node("physical-sector-size").as_deref(), Some("512"));
    assert_eq!(node("info").as_deref(), Some("0"));
    assert_eq!(node("feature-flush-cache").as_deref(), Some("1"));
    assert_eq!(node("feature-barrier").as_deref(), Some("1"));
    assert_eq!(node("feature-discard").as_deref(), Some("1"));
    assert_eq!(node("discard-granularity").as_deref(), Some("512"));
    assert_eq!(node("discard-alignment").as_deref(), Some("0"));
    assert_eq!(node("discard-secure").as_deref(), Some("0"));
    assert_eq!(node("feature-persistent").as_deref(), Some("1"));
    assert_eq!(
        node("feature-max-indirect-segments").as_deref(),
        Some("256")
    );
    assert_eq!(node("multi-queue-max-queues").as_deref(), Some("4"));
    assert_eq!(node("max-ring-page-order").as_deref(), Some("4"));
    assert_eq!(node("hotplug-status").as_deref(), Some("connected"));
}

#[test]
fn linux_frontend_negotiates_everything() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("linux");
    let (nodes, mut front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    rig.connect(&mut front);
    assert_eq!(front.queue_count(), 4);
    // 16 pages: (65536 - 64) / 112 = 584 slots, rounded down to 512.
    assert_eq!(front.ring_size(), 512);
    assert!(front.persistent());
    assert_eq!(front.max_indirect_segments(), 256);
    let status = rig.backend.vbd(nodes.frontend_id, nodes.devid).unwrap();
    assert_eq!(status.state, XenbusState::Connected);
    assert_eq!(status.queues, 4);
    assert_eq!(status.ring_size, 512);
    assert_eq!(status.abi, Some(Abi::X86_64));
    assert_eq!(status.device.as_deref(), Some("ram0"));
    let disk = front.disk().unwrap();
    assert_eq!(
        (disk.sectors, disk.sector_size, disk.info),
        (SECTORS, 512, 0)
    );
    assert!(disk.flush && disk.barrier && disk.discard && !disk.secure_discard);
}

#[test]
fn linux_frontend_reads_back_on_every_queue_with_direct_and_indirect_requests() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("linux");
    let (nodes, mut front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    rig.connect(&mut front);
    for queue in 0..4 {
        // 1 MiB: 256 segments, one indirect page.
        let big = pattern(queue as u8, 1 << 20);
        let sector = 4096 * queue as u64;
        let done = rig.request(
            &mut front,
            queue,
            BlkOp::Write {
                sector,
                data: big.clone(),
            },
        );
        assert_eq!(done.status, RSP_OKAY);
        let done = rig.request(
            &mut front,
            queue,
            BlkOp::Read {
                sector,
                sectors: 2048,
            },
        );
        assert_eq!(done.status, RSP_OKAY);
        assert!(done.data.unwrap() == big, "read back different data");
        // A small direct request with a partial page: 3 sectors.
        let small = pattern(100 + queue as u8, 1536);
        let sector = 30_000 + queue as u64;
        let done = rig.request(
            &mut front,
            queue,
            BlkOp::Write {
                sector,
                data: small.clone(),
            },
        );
        assert_eq!(done.status, RSP_OKAY);
        let done = rig.request(&mut front, queue, BlkOp::Read { sector, sectors: 3 });
        assert!(done.data.unwrap() == small, "read back different data");
    }
    let status = rig.backend.vbd(nodes.frontend_id, nodes.devid).unwrap();
    assert!(
        status.persistent_grants > 0,
        "persistent grants were not used"
    );
}

#[test]
fn linux_frontend_flushes_barriers_and_discards() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("linux");
    let (_nodes, mut front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    rig.connect(&mut front);
    rig.write(&mut front, 100, &pattern(7, 8192));
    assert_eq!(rig.request(&mut front, 1, BlkOp::Flush).status, RSP_OKAY);
    let barrier = BlkOp::Barrier {
        sector: 200,
        data: pattern(9, 4096),
    };
    assert_eq!(rig.request(&mut front, 2, barrier).status, RSP_OKAY);
    assert!(
        rig.read(&mut front, 200, 4096) == pattern(9, 4096),
        "read back different data"
    );
    let empty_barrier = BlkOp::Barrier {
        sector: 0,
        data: Vec::new(),
    };
    assert_eq!(rig.request(&mut front, 0, empty_barrier).status, RSP_OKAY);
    let discard = BlkOp::Discard {
        sector: 100,
        sectors: 8,
        secure: false,
    };
    assert_eq!(rig.request(&mut front, 3, discard).status, RSP_OKAY);
    let after = rig.read(&mut front, 100, 8192);
    assert_eq!(&after[..4096], &[0u8; 4096][..]);
    assert_eq!(&after[4096..], &pattern(7, 8192)[4096..]);
    // Secure discard is not offered by this device.
    let secure = BlkOp::Discard {
        sector: 0,
        sectors: 8,
        secure: true,
    };
    assert_eq!(rig.request(&mut front, 0, secure).status, RSP_EOPNOTSUPP);
}

#[test]
fn secure_discard_is_offered_and_served_when_the_device_can() {
    let mut rig = Rig::new(
        blkback::Config::new(0),
        vec![(
            "secure".to_string(),
            common::devices::secure_ram_disk(SECTORS),
        )],
    );
    let guest = rig.guest("linux");
    let (nodes, mut front) = rig.attach(&guest, "secure", true, BlkfrontConfig::linux());
    rig.connect(&mut front);
    assert_eq!(
        rig.read_node(&format!("{}/discard-secure", nodes.backend))
            .as_deref(),
        Some("1")
    );
    rig.write(&mut front, 8, &pattern(1, 4096));
    let secure = BlkOp::Discard {
        sector: 8,
        sectors: 8,
        secure: true,
    };
    assert_eq!(rig.request(&mut front, 0, secure).status, RSP_OKAY);
    assert!(
        rig.read(&mut front, 8, 4096) == vec![0; 4096],
        "read back different data"
    );
}

#[test]
fn gnu_mach_frontend_connects_with_the_32_bit_layout_and_no_features() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("hurd");
    let (nodes, mut front) = rig.attach(&guest, "ram0", true, BlkfrontConfig::gnu_mach());
    rig.connect(&mut front);
    assert_eq!(front.abi(), RingAbi::X86_32);
    assert_eq!(front.queue_count(), 1);
    // One page: (4096 - 64) / 108 = 37 slots, rounded down to 32.
    assert_eq!(front.ring_size(), 32);
    assert!(!front.persistent());
    assert_eq!(front.max_indirect_segments(), 0);
    let status = rig.backend.vbd(nodes.frontend_id, nodes.devid).unwrap();
    assert_eq!(
        status.abi,
        Some(Abi::X86_32),
        "no protocol node must mean x86_32"
    );
    assert_eq!(status.persistent_grants, 0);
    // The largest direct request: 11 pages.
    let data = pattern(3, 11 * 4096);
    rig.write(&mut front, 1000, &data);
    assert!(
        rig.read(&mut front, 1000, data.len()) == data,
        "read back different data"
    );
    // Odd sizes and offsets.
    let data = pattern(4, 512 * 13);
    rig.write(&mut front, 7, &data);
    assert!(
        rig.read(&mut front, 7, data.len()) == data,
        "read back different data"
    );
}

#[test]
fn read_only_disk_is_published_and_refuses_writes() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("hurd");
    let (nodes, mut front) = rig.attach(&guest, "ram0", false, BlkfrontConfig::gnu_mach());
    rig.connect(&mut front);
    assert_eq!(front.disk().unwrap().info, 4, "VDISK_READONLY");
    assert_eq!(
        rig.read_node(&format!("{}/feature-flush-cache", nodes.backend))
            .as_deref(),
        Some("0")
    );
    let write = BlkOp::Write {
        sector: 0,
        data: vec![1; 512],
    };
    assert_eq!(
        rig.request(&mut front, 0, write).status,
        xensim::frontend::blk::RSP_ERROR
    );
    assert!(
        rig.read(&mut front, 0, 512) == vec![0; 512],
        "read back different data"
    );
}

#[test]
fn several_devices_and_frontends_are_independent() {
    let mut rig = Rig::with_ram_disks(3, SECTORS);
    let linux = rig.guest("linux");
    let hurd = rig.guest("hurd");
    let (_n0, mut a) = rig.attach(&linux, "ram0", true, BlkfrontConfig::linux());
    let (_n1, mut b) = rig.attach(&linux, "ram1", true, BlkfrontConfig::linux());
    let (_n2, mut c) = rig.attach(&hurd, "ram2", true, BlkfrontConfig::gnu_mach());
    rig.settle(&mut [&mut a, &mut b, &mut c]);
    assert!(a.is_connected() && b.is_connected() && c.is_connected());
    rig.write(&mut a, 0, &pattern(1, 4096));
    rig.write(&mut b, 0, &pattern(2, 4096));
    rig.write(&mut c, 0, &pattern(3, 4096));
    assert!(
        rig.read(&mut a, 0, 4096) == pattern(1, 4096),
        "read back different data"
    );
    assert!(
        rig.read(&mut b, 0, 4096) == pattern(2, 4096),
        "read back different data"
    );
    assert!(
        rig.read(&mut c, 0, 4096) == pattern(3, 4096),
        "read back different data"
    );
}

#[test]
fn unknown_target_gets_hotplug_error_and_others_keep_working() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("linux");
    let (good_nodes, mut good) = rig.attach(&guest, "ram0", true, BlkfrontConfig::linux());
    let (bad_nodes, mut bad) = rig.attach(&guest, "nvme7", true, BlkfrontConfig::linux());
    rig.settle(&mut [&mut good, &mut bad]);
    assert!(good.is_connected());
    assert_eq!(rig.backend_state(&bad_nodes), Some(XenbusState::Closed));
    assert_eq!(
        rig.read_node(&format!("{}/hotplug-status", bad_nodes.backend))
            .as_deref(),
        Some("error")
    );
    let error = rig
        .read_node(&format!("{}/hotplug-error", bad_nodes.backend))
        .unwrap();
    assert!(error.contains("nvme7"), "{error}");
    rig.write(&mut good, 5, &pattern(5, 4096));
    assert!(
        rig.read(&mut good, 5, 4096) == pattern(5, 4096),
        "read back different data"
    );
    assert_eq!(rig.backend_state(&good_nodes), Some(XenbusState::Connected));
}

#[test]
fn cdrom_and_removable_and_discard_enable_are_published() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("linux");
    let (cdrom, mut front) =
        rig.attach_with(&guest, |vbd| vbd.cdrom = true, BlkfrontConfig::linux());
    rig.connect(&mut front);
    // A cdrom is read-only and the toolstack marks it removable.
    assert_eq!(front.disk().unwrap().info, 1 | 2 | 4);
    assert_eq!(
        rig.read_node(&format!("{}/feature-discard", cdrom.backend))
            .as_deref(),
        Some("0")
    );
    let guest = rig.guest("other");
    let (nodes, mut front) = rig.attach_with(
        &guest,
        |vbd| vbd.discard_enable = false,
        BlkfrontConfig::linux(),
    );
    rig.connect(&mut front);
    assert_eq!(
        rig.read_node(&format!("{}/feature-discard", nodes.backend))
            .as_deref(),
        Some("0")
    );
    assert!(rig
        .read_node(&format!("{}/discard-granularity", nodes.backend))
        .is_none());
    let discard = BlkOp::Discard {
        sector: 0,
        sectors: 8,
        secure: false,
    };
    assert_eq!(rig.request(&mut front, 0, discard).status, RSP_EOPNOTSUPP);
}

#[test]
fn a_32_bit_linux_frontend_uses_indirect_requests_and_multi_page_rings() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("linux32");
    let mut config = BlkfrontConfig::linux();
    config.protocol = Some("x86_32-abi".to_string());
    config.abi = RingAbi::X86_32;
    config.queues = 2;
    let (nodes, mut front) = rig.attach(&guest, "ram0", true, config);
    rig.connect(&mut front);
    assert_eq!(
        rig.backend.vbd(nodes.frontend_id, nodes.devid).unwrap().abi,
        Some(Abi::X86_32)
    );
    // 16 pages of 108-byte slots: 603 fit, rounded down to 512.
    assert_eq!(front.ring_size(), 512);
    for queue in 0..2 {
        let data = pattern(40 + queue as u8, 200 * 4096);
        let sector = 10_000 * (queue as u64 + 1);
        let done = rig.request(
            &mut front,
            queue,
            BlkOp::Write {
                sector,
                data: data.clone(),
            },
        );
        assert_eq!(done.status, RSP_OKAY);
        let done = rig.request(
            &mut front,
            queue,
            BlkOp::Read {
                sector,
                sectors: 1600,
            },
        );
        assert!(done.data.unwrap() == data, "read back different data");
    }
}
