//! The hostile-frontend catalogue: one test per attack. Each checks that
//! the attacker gets an error response or a disconnect, that nothing of
//! anyone else's is touched, and that another frontend keeps being served.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use blkback::{Config, RamDisk};
use common::devices::{plain_ram_disk, Hooked};
use common::{logged, Rig};
use xen_ring::SharedMemory;
use xenbus::XenbusState;
use xensim::frontend::blk::{
    encode_discard, encode_indirect, encode_rw, encode_segments, BlkOp, Blkfront, BlkfrontConfig,
    WireSegment, OP_DISCARD, OP_FLUSH_DISKCACHE, OP_INDIRECT, OP_READ, OP_WRITE, RSP_EOPNOTSUPP,
    RSP_ERROR, RSP_OKAY,
};
use xensim::{DeviceNodes, Domain, PAGE_SIZE};

const SECTORS: u64 = 8192; // 4 MiB

/// A rig with a Linux-like attacker on `ram0` and a GNU Mach-like
/// bystander on `ram1`, both connected.
fn two_guests() -> (Rig<RamDisk>, DeviceNodes, Blkfront, Blkfront) {
    let mut rig = Rig::with_ram_disks(2, SECTORS);
    let attacker = rig.guest("attacker");
    let bystander = rig.guest("bystander");
    let mut config = BlkfrontConfig::linux();
    config.queues = 1;
    let (nodes, mut evil) = rig.attach(&attacker, "ram0", true, config);
    let (_nodes, mut good) = rig.attach(&bystander, "ram1", true, BlkfrontConfig::gnu_mach());
    rig.settle(&mut [&mut evil, &mut good]);
    assert!(evil.is_connected() && good.is_connected());
    rig.write(&mut good, 0, &[0x77; 4096]);
    (rig, nodes, evil, good)
}

/// The bystander still reads what it wrote.
fn bystander_is_fine<D: blkback::BlockDevice>(rig: &mut Rig<D>, good: &mut Blkfront) {
    assert!(
        rig.read(good, 0, 4096) == vec![0x77; 4096],
        "the bystander lost its data"
    );
}

/// Pushes a raw slot, waits for its answer, returns the status.
fn raw_status<D: blkback::BlockDevice>(
    rig: &mut Rig<D>,
    front: &mut Blkfront,
    id: u64,
    operation: u8,
    slot: &[u8],
) -> i16 {
    front.expect_response(0, id, operation);
    front.push_raw(0, slot).unwrap();
    let completion = rig.wait_for(front, id);
    assert_eq!(completion.operation, operation, "operation echoed");
    completion.status
}

fn segment(gref: u32, first: u8, last: u8) -> WireSegment {
    WireSegment {
        gref,
        first_sect: first,
        last_sect: last,
    }
}

/// What the device hook does to the frontend's memory.
type Rewrite = Box<dyn FnMut()>;

#[test]
fn double_fetch_of_a_rewritten_slot_and_indirect_page_changes_nothing() {
    // The device hook runs after the backend copied the request: it
    // rewrites the ring slot and the indirect page to point elsewhere.
    let rewrite: Rc<RefCell<Option<Rewrite>>> = Default::default();
    let hook_rewrite = rewrite.clone();
    let mut inner = RamDisk::new(SECTORS).unwrap();
    inner.contents_mut()[8 * 512..8 * 512 + 4096 * 12].fill(0xd5);
    let device = Hooked {
        inner,
        hook: Box::new(move |_| {
            if let Some(rewrite) = hook_rewrite.borrow_mut().as_mut() {
                rewrite();
            }
        }),
    };
    let mut rig = Rig::new(Config::new(0), vec![("ram0".to_string(), device)]);
    let guest = rig.guest("attacker");
    let mut config = BlkfrontConfig::linux();
    config.queues = 1;
    config.persistent = false;
    let (_nodes, mut front) = rig.attach(&guest, "ram0", true, config);
    rig.connect(&mut front);

    // Direct read into page A; afterwards the slot names page B, another
    // id, a write and an absurd sector.
    let a = front.grant_data_page(false).unwrap();
    let b = front.grant_data_page(false).unwrap();
    let ring = front.ring_memory(0).unwrap().clone();
    let slot_offset = 64; // first slot of a fresh ring
    let forged = encode_rw(
        front.abi(),
        OP_WRITE,
        999,
        u64::MAX - 4,
        &[segment(b.gref, 0, 7)],
    );
    *rewrite.borrow_mut() = Some(Box::new(move || ring.write(slot_offset, &forged)));
    let slot = encode_rw(front.abi(), OP_READ, 77, 8, &[segment(a.gref, 0, 7)]);
    assert_eq!(
        raw_status(&mut rig, &mut front, 77, OP_READ, &slot),
        RSP_OKAY
    );
    assert!(a.page.to_vec() == vec![0xd5; PAGE_SIZE]);
    assert!(b.page.to_vec() == vec![0; PAGE_SIZE]);

    // Indirect read of 12 pages; afterwards every segment in the indirect
    // page names page C.
    let pages: Vec<_> = (0..12)
        .map(|_| front.grant_data_page(false).unwrap())
        .collect();
    let c = front.grant_data_page(false).unwrap();
    let indirect = front.grant_data_page(true).unwrap();
    let segments: Vec<_> = pages.iter().map(|page| segment(page.gref, 0, 7)).collect();
    indirect.page.write(0, &encode_segments(&segments));
    let evil_segments = encode_segments(&[segment(c.gref, 0, 7); 12]);
    let indirect_page = indirect.page.clone();
    *rewrite.borrow_mut() = Some(Box::new(move || indirect_page.write(0, &evil_segments)));
    let slot = encode_indirect(front.abi(), OP_READ, 78, 8, 12, &[indirect.gref]);
    assert_eq!(
        raw_status(&mut rig, &mut front, 78, OP_READ, &slot),
        RSP_OKAY
    );
    for page in &pages {
        assert!(page.page.to_vec() == vec![0xd5; PAGE_SIZE]);
    }
    assert!(c.page.to_vec() == vec![0; PAGE_SIZE]);
}

#[test]
fn out_of_range_sectors_are_refused() {
    let (mut rig, _nodes, mut evil, mut good) = two_guests();
    let page = evil.grant_data_page(false).unwrap();
    let abi = evil.abi();
    let cases = [
        (SECTORS, 0u8, 0u8),  // starts at the end
        (SECTORS - 7, 0, 7),  // ends one past the end
        (u64::MAX - 3, 0, 7), // overflows
    ];
    for (index, (sector, first, last)) in cases.into_iter().enumerate() {
        let id = 100 + index as u64;
        let slot = encode_rw(
            abi,
            OP_WRITE,
            id,
            sector,
            &[segment(page.gref, first, last)],
        );
        assert_eq!(
            raw_status(&mut rig, &mut evil, id, OP_WRITE, &slot),
            RSP_ERROR,
            "{sector}"
        );
    }
    let discard = encode_discard(abi, 200, SECTORS - 1, 2, 0);
    assert_eq!(
        raw_status(&mut rig, &mut evil, 200, OP_DISCARD, &discard),
        RSP_ERROR
    );
    let discard = encode_discard(abi, 201, 1, u64::MAX, 0);
    assert_eq!(
        raw_status(&mut rig, &mut evil, 201, OP_DISCARD, &discard),
        RSP_ERROR
    );
    assert!(logged(&["sector range beyond the device"]));
    bystander_is_fine(&mut rig, &mut good);
}

#[test]
fn bad_segment_counts_and_sector_bounds_are_refused() {
    let (mut rig, _nodes, mut evil, mut good) = two_guests();
    let page = evil.grant_data_page(false).unwrap();
    let abi = evil.abi();
    let one = segment(page.gref, 0, 7);
    // No segments for a read.
    let slot = encode_rw(abi, OP_READ, 1, 0, &[]);
    assert_eq!(
        raw_status(&mut rig, &mut evil, 1, OP_READ, &slot),
        RSP_ERROR
    );
    // Twelve and 255 segments in a direct request.
    for (id, count) in [(2u64, 12u8), (3, 255)] {
        let mut slot = encode_rw(abi, OP_READ, id, 0, &[one; 11]);
        slot[1] = count;
        assert_eq!(
            raw_status(&mut rig, &mut evil, id, OP_READ, &slot),
            RSP_ERROR
        );
    }
    // last_sect beyond the page, first_sect after last_sect.
    for (id, first, last) in [(4u64, 0u8, 8u8), (5, 5, 4), (6, 255, 255)] {
        let slot = encode_rw(abi, OP_READ, id, 0, &[segment(page.gref, first, last)]);
        assert_eq!(
            raw_status(&mut rig, &mut evil, id, OP_READ, &slot),
            RSP_ERROR
        );
    }
    // A flush with twelve segments.
    let mut slot = encode_rw(abi, OP_FLUSH_DISKCACHE, 7, 0, &[one; 11]);
    slot[1] = 12;
    assert_eq!(
        raw_status(&mut rig, &mut evil, 7, OP_FLUSH_DISKCACHE, &slot),
        RSP_ERROR
    );
    assert!(logged(&["last_sect beyond the page"]));
    assert!(logged(&["first_sect after last_sect"]));
    bystander_is_fine(&mut rig, &mut good);
}

#[test]
fn unknown_and_unoffered_operations_get_eopnotsupp() {
    let mut rig = Rig::new(
        Config::new(0),
        vec![("plain".to_string(), plain_ram_disk(SECTORS))],
    );
    let guest = rig.guest("attacker");
    let (_nodes, mut evil) = rig.attach(&guest, "plain", true, BlkfrontConfig::gnu_mach());
    rig.connect(&mut evil);
    let abi = evil.abi();
    for (id, operation) in [(1u64, 4u8), (2, 7), (3, 200)] {
        let slot = encode_rw(abi, operation, id, 0, &[]);
        assert_eq!(
            raw_status(&mut rig, &mut evil, id, operation, &slot),
            RSP_EOPNOTSUPP
        );
    }
    // Discard on a device without it.
    let slot = encode_discard(abi, 4, 0, 8, 0);
    assert_eq!(
        raw_status(&mut rig, &mut evil, 4, OP_DISCARD, &slot),
        RSP_EOPNOTSUPP
    );
    assert!(logged(&["unknown operation"]));
}

#[test]
fn bad_and_foreign_grefs_are_refused_and_touch_nothing() {
    let (mut rig, nodes, mut evil, mut good) = two_guests();
    let abi = evil.abi();
    // A page of the bystander's domain, granted to the backend.
    let bystander: Domain = good.domain().clone();
    let (gfn, victim) = bystander.alloc_page();
    victim.fill(0x42);
    let victim_gref = bystander
        .grant_access(nodes.backend_id, gfn, false)
        .unwrap();
    let attacker = evil.domain().clone();
    // A gref number the attacker never granted.
    let unused = (8..4096)
        .find(|gref| {
            attacker
                .grant_entry(*gref)
                .is_none_or(|entry| entry.flags == 0)
        })
        .unwrap();
    let slot = encode_rw(abi, OP_READ, 1, 0, &[segment(unused, 0, 7)]);
    assert_eq!(
        raw_status(&mut rig, &mut evil, 1, OP_READ, &slot),
        RSP_ERROR
    );
    // The bystander's gref number, if it means nothing in the attacker's table.
    if attacker
        .grant_entry(victim_gref)
        .is_none_or(|entry| entry.flags == 0)
    {
        let slot = encode_rw(abi, OP_READ, 2, 0, &[segment(victim_gref, 0, 7)]);
        assert_eq!(
            raw_status(&mut rig, &mut evil, 2, OP_READ, &slot),
            RSP_ERROR
        );
    }
    // A page granted to dom0 instead of the backend.
    let (gfn, _page) = attacker.alloc_page();
    let to_dom0 = attacker.grant_access(0, gfn, false).unwrap();
    let slot = encode_rw(abi, OP_READ, 3, 0, &[segment(to_dom0, 0, 7)]);
    assert_eq!(
        raw_status(&mut rig, &mut evil, 3, OP_READ, &slot),
        RSP_ERROR
    );
    // A write from a gref out of the table's range.
    let slot = encode_rw(abi, OP_WRITE, 4, 0, &[segment(u32::MAX, 0, 7)]);
    assert_eq!(
        raw_status(&mut rig, &mut evil, 4, OP_WRITE, &slot),
        RSP_ERROR
    );
    assert!(victim.to_vec() == vec![0x42; PAGE_SIZE]);
    bystander_is_fine(&mut rig, &mut good);
}

#[test]
fn read_into_a_read_only_grant_is_refused() {
    let mut rig = Rig::with_ram_disks(1, SECTORS);
    let guest = rig.guest("attacker");
    let (_nodes, mut evil) = rig.attach(&guest, "ram0", true, BlkfrontConfig::gnu_mach());
    rig.connect(&mut evil);
    let page = evil.grant_data_page(true).unwrap();
    page.page.fill(0x31);
    rig.write(&mut evil, 0, &[0x99; 4096]);
    let slot = encode_rw(evil.abi(), OP_READ, 50, 0, &[segment(page.gref, 0, 7)]);
    assert_eq!(
        raw_status(&mut rig, &mut evil, 50, OP_READ, &slot),
        RSP_ERROR
    );
    assert!(page.page.to_vec() == vec![0x31; PAGE_SIZE]);
}

#[test]
fn indirect_page_abuse_is_refused() {
    let (mut rig, _nodes, mut evil, mut good) = two_guests();
    let abi = evil.abi();
    let data = evil.grant_data_page(false).unwrap();
    let indirect = evil.grant_data_page(true).unwrap();
    indirect
        .page
        .write(0, &encode_segments(&[segment(data.gref, 0, 7); 16]));
    let check = |rig: &mut Rig<RamDisk>, evil: &mut Blkfront, id: u64, slot: Vec<u8>| {
        assert_eq!(
            // The response carries the indirect_op, whatever it is.
            raw_status(rig, evil, id, slot[1], &slot),
            RSP_ERROR,
            "case {id}"
        );
    };
    // More segments than advertised, and none at all.
    check(
        &mut rig,
        &mut evil,
        1,
        encode_indirect(abi, OP_READ, 1, 0, 257, &[indirect.gref]),
    );
    check(
        &mut rig,
        &mut evil,
        2,
        encode_indirect(abi, OP_READ, 2, 0, 0, &[indirect.gref]),
    );
    check(
        &mut rig,
        &mut evil,
        3,
        encode_indirect(abi, OP_READ, 3, 0, u16::MAX, &[indirect.gref; 8]),
    );
    // An indirect_op that is not read or write.
    check(
        &mut rig,
        &mut evil,
        4,
        encode_indirect(abi, OP_FLUSH_DISKCACHE, 4, 0, 4, &[indirect.gref]),
    );
    check(
        &mut rig,
        &mut evil,
        5,
        encode_indirect(abi, OP_INDIRECT, 5, 0, 4, &[indirect.gref]),
    );
    // An indirect gref that is not granted.
    check(
        &mut rig,
        &mut evil,
        6,
        encode_indirect(abi, OP_READ, 6, 0, 4, &[u32::MAX - 1]),
    );
    // A bad segment inside the indirect page.
    let bad = evil.grant_data_page(true).unwrap();
    let mut segments = vec![segment(data.gref, 0, 7); 15];
    segments.push(segment(data.gref, 3, 9));
    bad.page.write(0, &encode_segments(&segments));
    check(
        &mut rig,
        &mut evil,
        7,
        encode_indirect(abi, OP_READ, 7, 0, 16, &[bad.gref]),
    );
    // Segments whose sum runs past the end of the disk.
    check(
        &mut rig,
        &mut evil,
        8,
        encode_indirect(abi, OP_READ, 8, SECTORS - 100, 16, &[indirect.gref]),
    );
    // A well-formed one still works.
    let slot = encode_indirect(abi, OP_WRITE, 9, 0, 16, &[indirect.gref]);
    assert_eq!(
        raw_status(&mut rig, &mut evil, 9, OP_WRITE, &slot),
        RSP_OKAY
    );
    assert!(logged(&["more indirect segments than advertised"]));
    assert!(logged(&["indirect page could not be copied"]));
    bystander_is_fine(&mut rig, &mut good);
}

#[test]
fn producer_index_far_ahead_disconnects_only_that_frontend() {
    let (mut rig, nodes, mut evil, mut good) = two_guests();
    let ring = evil.ring_memory(0).unwrap().clone();
    let req_prod = ring.load_u32(0);
    ring.store_u32(0, req_prod.wrapping_add(100_000));
    evil.notify(0).unwrap();
    rig.pump();
    assert_eq!(rig.backend_state(&nodes), Some(XenbusState::Closing));
    assert!(logged(&["broke the ring protocol"]));
    bystander_is_fine(&mut rig, &mut good);
    // The attacker can close and start again, and is served again.
    rig.settle(&mut [&mut evil, &mut good]);
    assert_eq!(evil.state(), XenbusState::Closed);
    evil.restart().unwrap();
    rig.settle(&mut [&mut evil, &mut good]);
    assert!(evil.is_connected());
    rig.write(&mut evil, 0, &[1; 512]);
}

#[test]
fn producer_index_moved_backwards_disconnects() {
    let (mut rig, nodes, mut evil, mut good) = two_guests();
    rig.write(&mut evil, 0, &[1; 512]);
    let ring = evil.ring_memory(0).unwrap().clone();
    // One request was consumed; claim there are none (index rewound by 5).
    let req_prod = ring.load_u32(0);
    ring.store_u32(0, req_prod.wrapping_sub(5));
    evil.notify(0).unwrap();
    rig.pump();
    assert_eq!(rig.backend_state(&nodes), Some(XenbusState::Closing));
    bystander_is_fine(&mut rig, &mut good);
}

#[test]
fn a_flooding_frontend_does_not_starve_another() {
    let mut rig = Rig::with_ram_disks(2, SECTORS);
    let attacker = rig.guest("attacker");
    let bystander = rig.guest("bystander");
    let mut config = BlkfrontConfig::linux();
    config.queues = 4;
    let (_nodes, mut evil) = rig.attach(&attacker, "ram0", true, config);
    let (_nodes, mut good) = rig.attach(&bystander, "ram1", true, BlkfrontConfig::gnu_mach());
    rig.settle(&mut [&mut evil, &mut good]);
    // Fill every slot of every queue of the attacker.
    let mut flood = 0;
    for queue in 0..evil.queue_count() {
        while evil.has_room(queue) {
            evil.submit(
                queue,
                BlkOp::Read {
                    sector: 0,
                    sectors: 8,
                },
            )
            .unwrap();
            flood += 1;
        }
    }
    assert_eq!(flood, 4 * 512);
    let id = good
        .submit(
            0,
            BlkOp::Read {
                sector: 0,
                sectors: 8,
            },
        )
        .unwrap();
    // One poll is enough for the bystander, while most of the flood waits.
    rig.poll_once();
    let answered = good.collect().unwrap();
    assert_eq!(answered.len(), 1);
    assert_eq!((answered[0].id, answered[0].status), (id, RSP_OKAY));
    let served = evil.collect().unwrap().len();
    assert!(served < flood, "the whole flood was served in one poll");
    // The flood is served in full eventually.
    let mut total = served;
    for _ in 0..1000 {
        rig.pump();
        let done = evil.collect().unwrap();
        assert!(done.iter().all(|completion| completion.status == RSP_OKAY));
        total += done.len();
        if total == flood {
            break;
        }
    }
    assert_eq!(total, flood);
}

/// Connects a frontend whose node `key` is overwritten with `value` after
/// it published its transport nodes, and checks the backend refuses it
/// while a bystander keeps working.
fn garbage_node(config: BlkfrontConfig, key: &str, value: &str) {
    let mut rig = Rig::with_ram_disks(2, SECTORS);
    let attacker = rig.guest("attacker");
    let bystander = rig.guest("bystander");
    let (nodes, mut evil) = rig.attach(&attacker, "ram0", true, config);
    let (_nodes, mut good) = rig.attach(&bystander, "ram1", true, BlkfrontConfig::gnu_mach());
    rig.settle(&mut [&mut good]);
    rig.write(&mut good, 0, &[0x77; 4096]);
    rig.pump();
    assert_eq!(rig.backend_state(&nodes), Some(XenbusState::InitWait));
    evil.step().unwrap();
    evil.write_node(key, value).unwrap();
    rig.settle(&mut [&mut evil, &mut good]);
    let state = rig.backend_state(&nodes);
    assert!(
        matches!(
            state,
            Some(XenbusState::Closing) | Some(XenbusState::Closed)
        ),
        "{key} = {value:?} was accepted: backend {state:?}"
    );
    assert!(logged(&["cannot connect"]));
    let connected_queues = rig
        .backend
        .vbd(nodes.frontend_id, nodes.devid)
        .map_or(0, |vbd| vbd.queues);
    assert_eq!(
        connected_queues, 0,
        "{key} = {value:?}: rings stayed mapped"
    );
    bystander_is_fine(&mut rig, &mut good);
}

fn single_queue_linux() -> BlkfrontConfig {
    let mut config = BlkfrontConfig::linux();
    config.queues = 1;
    config.ring_page_order = 0;
    config
}

#[test]
fn garbage_ring_ref_is_refused() {
    garbage_node(BlkfrontConfig::gnu_mach(), "ring-ref", "twelve");
    garbage_node(BlkfrontConfig::gnu_mach(), "ring-ref", "4294967296");
    garbage_node(BlkfrontConfig::gnu_mach(), "ring-ref", " 8");
}

#[test]
fn ring_ref_that_is_not_granted_is_refused() {
    garbage_node(BlkfrontConfig::gnu_mach(), "ring-ref", "4000000");
}

#[test]
fn garbage_event_channel_is_refused() {
    garbage_node(BlkfrontConfig::gnu_mach(), "event-channel", "0");
    garbage_node(BlkfrontConfig::gnu_mach(), "event-channel", "-1");
    garbage_node(BlkfrontConfig::gnu_mach(), "event-channel", "99999999999");
    garbage_node(BlkfrontConfig::gnu_mach(), "event-channel", "4000");
}

#[test]
fn garbage_ring_page_order_is_refused() {
    let mut config = BlkfrontConfig::linux();
    config.queues = 1;
    garbage_node(config.clone(), "ring-page-order", "5");
    garbage_node(config.clone(), "ring-page-order", "4294967295");
    garbage_node(config, "ring-page-order", "two");
    // A larger order than the ring-ref%u nodes written.
    let mut config = BlkfrontConfig::linux();
    config.queues = 1;
    config.ring_page_order = 1;
    garbage_node(config, "ring-page-order", "3");
}

#[test]
fn garbage_protocol_is_refused() {
    garbage_node(single_queue_linux(), "protocol", "x86_16-abi");
    garbage_node(single_queue_linux(), "protocol", "");
    garbage_node(single_queue_linux(), "protocol", &"x".repeat(2000));
}

#[test]
fn garbage_queue_count_is_refused() {
    garbage_node(BlkfrontConfig::linux(), "multi-queue-num-queues", "0");
    garbage_node(BlkfrontConfig::linux(), "multi-queue-num-queues", "5");
    garbage_node(BlkfrontConfig::linux(), "multi-queue-num-queues", "4x");
}

#[test]
fn garbage_feature_persistent_is_refused() {
    garbage_node(single_queue_linux(), "feature-persistent", "yes");
}

#[test]
fn garbage_frontend_state_is_ignored() {
    let (mut rig, nodes, evil, mut good) = two_guests();
    evil.write_node("state", "banana").unwrap();
    rig.pump();
    evil.write_node("state", "99").unwrap();
    rig.pump();
    assert_eq!(rig.backend_state(&nodes), Some(XenbusState::Connected));
    bystander_is_fine(&mut rig, &mut good);
}
