//! Unit tests of both ring halves over [`LocalMemory`].

use alloc::vec;
use alloc::vec::Vec;

use super::*;

/// `sizeof(union blkif_sring_entry)` on x86_64.
const BLKIF_SLOT: usize = 112;

fn pair(
    pages: usize,
    slot_size: usize,
    start: u32,
) -> (FrontRing<LocalMemory>, BackRing<LocalMemory>) {
    let memory = LocalMemory::pages(pages);
    let front = FrontRing::init_at(memory.clone(), slot_size, start).unwrap();
    let back = BackRing::attach(memory, slot_size).unwrap();
    (front, back)
}

fn slot(tag: u32, slot_size: usize) -> Vec<u8> {
    let mut bytes = vec![0; slot_size];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = (tag as usize).wrapping_mul(31).wrapping_add(index) as u8;
    }
    bytes
}

#[test]
fn ring_entries_match_ring_h() {
    // Values of __CONST_RING_SIZE for the protocols in io/*.h on x86_64.
    assert_eq!(ring_entries(4096, 112), Some(32)); // blkif, x86_64 ABI
    assert_eq!(ring_entries(4096, 108), Some(32)); // blkif, x86_32 ABI
    assert_eq!(ring_entries(4096, 12), Some(256)); // netif tx
    assert_eq!(ring_entries(4096, 8), Some(256)); // netif rx
    assert_eq!(ring_entries(16 * 4096, 112), Some(512)); // ring-page-order 4
    assert_eq!(ring_entries(4096, 4032), Some(1));
    assert_eq!(ring_entries(4096, 4033), None);
    assert_eq!(ring_entries(63, 1), None);
    assert_eq!(ring_entries(4096, 0), None);
    assert_eq!(ring_entries(64 + 3 * 7, 7), Some(2));
}

#[test]
fn construction_rejects_bad_geometry() {
    assert_eq!(
        FrontRing::init(LocalMemory::new(100), 40).unwrap_err(),
        RingError::MappingTooSmall {
            mapping_len: 100,
            slot_size: 40
        }
    );
    assert_eq!(
        BackRing::new(LocalMemory::pages(1), 0).unwrap_err(),
        RingError::ZeroSlotSize
    );
}

#[test]
fn init_writes_shared_ring_init_header() {
    let memory = LocalMemory::from_bytes(&[0xaa; 4096]);
    FrontRing::init(memory.clone(), BLKIF_SLOT).unwrap();
    let image = memory.to_vec();
    assert_eq!(&image[0..4], &0u32.to_le_bytes()); // req_prod
    assert_eq!(&image[4..8], &1u32.to_le_bytes()); // req_event
    assert_eq!(&image[8..12], &0u32.to_le_bytes()); // rsp_prod
    assert_eq!(&image[12..16], &1u32.to_le_bytes()); // rsp_event
    assert!(image[16..64].iter().all(|&byte| byte == 0));
    assert!(
        image[64..].iter().all(|&byte| byte == 0xaa),
        "slots untouched"
    );
}

#[test]
fn requests_and_responses_round_trip() {
    let (mut front, mut back) = pair(1, BLKIF_SLOT, 0);
    for tag in 0..5 {
        front.push_request(&slot(tag, BLKIF_SLOT)).unwrap();
    }
    assert_eq!(back.unconsumed_requests(), Ok(0), "not yet published");
    front.push_requests_and_check_notify();
    assert_eq!(back.unconsumed_requests(), Ok(5));
    let mut buffer = vec![0; BLKIF_SLOT];
    for tag in 0..5 {
        assert_eq!(back.next_request(&mut buffer), Ok(true));
        assert_eq!(buffer, slot(tag, BLKIF_SLOT));
        back.push_response(&slot(100 + tag, 16)).unwrap();
    }
    assert_eq!(back.next_request(&mut buffer), Ok(false));
    back.push_responses_and_check_notify();
    let mut response = vec![0; 16];
    for tag in 0..5 {
        assert_eq!(front.next_response(&mut response), Ok(true));
        assert_eq!(response, slot(100 + tag, 16));
    }
    assert_eq!(front.next_response(&mut response), Ok(false));
    assert_eq!(front.free_requests(), 32);
}

#[test]
fn notification_hold_off_follows_event_indices() {
    let (mut front, mut back) = pair(1, BLKIF_SLOT, 0);
    let request = slot(1, BLKIF_SLOT);
    // req_event starts at 1: the first request notifies.
    front.push_request(&request).unwrap();
    assert!(front.push_requests_and_check_notify());
    // The backend has not re-armed req_event: no further notification.
    front.push_request(&request).unwrap();
    assert!(!front.push_requests_and_check_notify());
    // Pushing nothing never notifies.
    assert!(!front.push_requests_and_check_notify());

    let mut buffer = vec![0; BLKIF_SLOT];
    while back.next_request(&mut buffer).unwrap() {}
    assert_eq!(back.final_check_for_requests(), Ok(false));
    assert_eq!(back.memory().load_u32(REQ_EVENT_OFFSET), 3);
    front.push_request(&request).unwrap();
    front.push_request(&request).unwrap();
    assert!(front.push_requests_and_check_notify(), "backend went idle");
    assert_eq!(back.final_check_for_requests(), Ok(true));

    // Responses: rsp_event starts at 1.
    back.next_request(&mut buffer).unwrap();
    back.next_request(&mut buffer).unwrap();
    back.push_response(&buffer).unwrap();
    assert!(back.push_responses_and_check_notify());
    back.push_response(&buffer).unwrap();
    assert!(!back.push_responses_and_check_notify());
    while front.next_response(&mut buffer).unwrap() {}
    assert_eq!(front.final_check_for_responses(), Ok(false));
    back.push_response(&buffer).unwrap();
    assert!(back.push_responses_and_check_notify(), "frontend went idle");
}

#[test]
fn final_check_sees_work_published_before_it() {
    let (mut front, mut back) = pair(1, 8, 0);
    front.push_request(&[7; 8]).unwrap();
    front.push_requests_and_check_notify();
    assert_eq!(back.final_check_for_requests(), Ok(true));
    // Work found on the first look: req_event is left alone.
    assert_eq!(back.memory().load_u32(REQ_EVENT_OFFSET), 1);
}

#[test]
fn full_ring_refuses_requests() {
    let (mut front, mut back) = pair(1, BLKIF_SLOT, 0);
    for tag in 0..32 {
        front.push_request(&slot(tag, BLKIF_SLOT)).unwrap();
    }
    assert!(front.is_full());
    assert_eq!(front.push_request(&[0; 4]), Err(RingError::RingFull));
    front.push_requests();
    let mut buffer = vec![0; BLKIF_SLOT];
    for _ in 0..32 {
        assert_eq!(back.next_request(&mut buffer), Ok(true));
    }
    assert_eq!(back.requests_in_flight(), 32);
    // Consuming a request does not free its slot; only the response does.
    assert!(front.is_full());
    back.push_response(&[1]).unwrap();
    back.push_responses();
    assert!(front.next_response(&mut [0]).unwrap());
    assert_eq!(front.free_requests(), 1);
}

#[test]
fn misuse_by_the_local_caller_is_an_error() {
    let (mut front, mut back) = pair(1, 8, 0);
    assert_eq!(
        back.push_response(&[0; 8]),
        Err(RingError::NoRequestToAnswer)
    );
    assert_eq!(
        front.push_request(&[0; 9]),
        Err(RingError::BufferLargerThanSlot {
            buffer_len: 9,
            slot_size: 8
        })
    );
    assert_eq!(
        back.next_request(&mut [0; 9]),
        Err(RingError::BufferLargerThanSlot {
            buffer_len: 9,
            slot_size: 8
        })
    );
}

#[test]
fn short_buffers_touch_only_their_bytes() {
    let (mut front, mut back) = pair(1, 12, 0);
    front.push_request(&[0xcc; 12]).unwrap();
    front.push_requests();
    let mut request = [0; 12];
    back.next_request(&mut request).unwrap();
    // A 4-byte response in a 12-byte slot (netif_tx_response in the tx union).
    back.push_response(&[1, 2, 3, 4]).unwrap();
    let mut image = [0; 12];
    back.memory().read(SRING_HEADER_SIZE, &mut image);
    assert_eq!(
        image,
        [1, 2, 3, 4, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc]
    );
}

#[test]
fn indices_wrap_around_u32() {
    let start = u32::MAX - 40;
    let (mut front, mut back) = pair(1, 16, start);
    let mut buffer = [0; 16];
    for round in 0..10u32 {
        for tag in 0..7 {
            front.push_request(&slot(round * 7 + tag, 16)).unwrap();
        }
        front.push_requests_and_check_notify();
        for tag in 0..7 {
            assert_eq!(back.next_request(&mut buffer), Ok(true));
            assert_eq!(&buffer[..], &slot(round * 7 + tag, 16)[..]);
            back.push_response(&buffer).unwrap();
        }
        back.push_responses_and_check_notify();
        for tag in 0..7 {
            assert_eq!(front.next_response(&mut buffer), Ok(true));
            assert_eq!(&buffer[..], &slot(round * 7 + tag, 16)[..]);
        }
    }
    assert_eq!(front.req_prod_pvt(), start.wrapping_add(70));
    assert!(front.req_prod_pvt() < start, "crossed the wrap");
    assert_eq!(back.rsp_prod_pvt(), front.rsp_cons());
}

#[test]
fn hostile_req_prod_too_far_ahead() {
    let (mut front, mut back) = pair(1, BLKIF_SLOT, u32::MAX - 2);
    let base = front.req_prod_pvt();
    // Exactly a full ring is legal.
    back.memory()
        .store_u32(REQ_PROD_OFFSET, base.wrapping_add(32));
    assert_eq!(back.unconsumed_requests(), Ok(32));
    // One more is not, nor is anything absurd.
    for bad in [33, 1000, u32::MAX / 2, u32::MAX] {
        let req_prod = base.wrapping_add(bad);
        back.memory().store_u32(REQ_PROD_OFFSET, req_prod);
        let expected = RingError::RequestOverflow {
            req_prod,
            rsp_prod_pvt: base,
        };
        assert_eq!(back.unconsumed_requests(), Err(expected));
        assert_eq!(back.next_request(&mut [0; 4]), Err(expected));
        assert_eq!(back.final_check_for_requests(), Err(expected));
        assert_eq!(back.req_cons(), base, "nothing consumed");
    }
    // The front half is unaffected by the back's troubles.
    front.push_request(&[0; 4]).unwrap();
}

#[test]
fn hostile_req_prod_counts_unanswered_requests() {
    // RING_REQUEST_PROD_OVERFLOW is measured from rsp_prod_pvt, not req_cons:
    // requests consumed but unanswered still hold their response slots.
    let (mut front, mut back) = pair(1, 8, 0);
    let ring_size = front.size();
    for _ in 0..ring_size {
        front.push_request(&[1; 8]).unwrap();
    }
    front.push_requests();
    let mut buffer = [0; 8];
    for _ in 0..ring_size {
        assert_eq!(back.next_request(&mut buffer), Ok(true));
    }
    back.memory().store_u32(REQ_PROD_OFFSET, ring_size + 1);
    assert_eq!(
        back.next_request(&mut buffer),
        Err(RingError::RequestOverflow {
            req_prod: ring_size + 1,
            rsp_prod_pvt: 0
        })
    );
    back.push_response(&buffer).unwrap();
    assert_eq!(back.next_request(&mut buffer), Ok(true));
    assert_eq!(back.next_request(&mut buffer), Ok(false));
}

#[test]
fn hostile_req_prod_rewound() {
    let (mut front, mut back) = pair(1, 8, 0);
    for _ in 0..5 {
        front.push_request(&[1; 8]).unwrap();
    }
    front.push_requests();
    let mut buffer = [0; 8];
    for _ in 0..4 {
        back.next_request(&mut buffer).unwrap();
    }
    back.push_response(&buffer).unwrap();
    back.memory().store_u32(REQ_PROD_OFFSET, 2);
    assert_eq!(
        back.next_request(&mut buffer),
        Err(RingError::RequestProducerRewound {
            req_prod: 2,
            req_cons: 4
        })
    );
    // Back to exactly req_cons: nothing to do, and not an error.
    back.memory().store_u32(REQ_PROD_OFFSET, 4);
    assert_eq!(back.next_request(&mut buffer), Ok(false));
}

#[test]
fn hostile_rsp_prod() {
    let (mut front, back) = pair(1, 8, u32::MAX);
    for _ in 0..3 {
        front.push_request(&[1; 8]).unwrap();
    }
    front.push_requests();
    let base = u32::MAX;
    let mut buffer = [0; 8];
    // Responses to requests never published.
    front.push_request(&[1; 8]).unwrap();
    for bad in [4, 5, 100, u32::MAX] {
        let rsp_prod = base.wrapping_add(bad);
        back.memory().store_u32(RSP_PROD_OFFSET, rsp_prod);
        let expected = RingError::ResponseOverflow {
            rsp_prod,
            rsp_cons: base,
            req_prod: base.wrapping_add(3),
        };
        assert_eq!(front.next_response(&mut buffer), Err(expected));
        assert_eq!(front.final_check_for_responses(), Err(expected));
        assert_eq!(front.rsp_cons(), base);
    }
    back.memory()
        .store_u32(RSP_PROD_OFFSET, base.wrapping_add(3));
    assert_eq!(front.unconsumed_responses(), Ok(3));
}

#[test]
fn attach_resumes_from_published_rsp_prod() {
    let memory = LocalMemory::pages(2);
    let mut front = FrontRing::init_at(memory.clone(), 64, 1000).unwrap();
    for tag in 0..3 {
        front.push_request(&slot(tag, 64)).unwrap();
    }
    front.push_requests();
    let back = BackRing::attach(memory.clone(), 64).unwrap();
    assert_eq!(back.req_cons(), 1000);
    assert_eq!(back.unconsumed_requests(), Ok(3));

    memory.store_u32(REQ_PROD_OFFSET, 1000 + 200);
    assert_eq!(
        BackRing::attach(memory, 64).unwrap_err(),
        RingError::RequestOverflow {
            req_prod: 1200,
            rsp_prod_pvt: 1000
        }
    );
}

#[test]
fn multi_page_ring_uses_the_whole_mapping() {
    let (mut front, mut back) = pair(16, BLKIF_SLOT, 0);
    assert_eq!(front.size(), 512);
    let mut buffer = vec![0; BLKIF_SLOT];
    for tag in 0..512 {
        front.push_request(&slot(tag, BLKIF_SLOT)).unwrap();
    }
    front.push_requests();
    for tag in 0..512 {
        assert_eq!(back.next_request(&mut buffer), Ok(true));
        assert_eq!(buffer, slot(tag, BLKIF_SLOT));
    }
    let last_slot_end = SRING_HEADER_SIZE + 512 * BLKIF_SLOT;
    assert!(last_slot_end <= 16 * XEN_PAGE_SIZE);
    assert!(last_slot_end > 8 * XEN_PAGE_SIZE);
}

#[test]
fn local_memory_partial_writes_keep_neighbours() {
    let memory = LocalMemory::from_bytes(&[0xee; 16]);
    let alias = memory.clone();
    memory.write(1, &[1, 2, 3, 4, 5, 6]);
    assert!(alias.same_memory(&memory));
    assert_eq!(
        alias.to_vec(),
        [0xee, 1, 2, 3, 4, 5, 6, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee]
    );
    assert_eq!(alias.load_u32(4), u32::from_le_bytes([4, 5, 6, 0xee]));
    let mut odd = [0; 3];
    alias.read(13, &mut odd);
    assert_eq!(odd, [0xee; 3]);
    assert_eq!(LocalMemory::new(5).len(), 5);
}

#[test]
#[should_panic(expected = "outside")]
fn local_memory_rejects_out_of_range() {
    LocalMemory::new(8).read(6, &mut [0; 4]);
}

#[test]
fn batched_final_check_waits_for_enough_requests() {
    let (mut front, mut back) = pair(1, 8, u32::MAX - 1);
    let base = back.req_cons();
    front.push_request(&[1; 8]).unwrap();
    front.push_requests_and_check_notify();
    assert_eq!(back.final_check_for_requests_at_least(3), Ok(false));
    assert_eq!(
        back.memory().load_u32(REQ_EVENT_OFFSET),
        base.wrapping_add(3)
    );
    front.push_request(&[2; 8]).unwrap();
    assert!(
        !front.push_requests_and_check_notify(),
        "only 2 of 3 posted"
    );
    front.push_request(&[3; 8]).unwrap();
    assert!(
        front.push_requests_and_check_notify(),
        "the third one wakes"
    );
    assert_eq!(back.final_check_for_requests_at_least(3), Ok(true));
    // 0 behaves as 1.
    assert_eq!(back.final_check_for_requests_at_least(0), Ok(true));
}

#[test]
fn shared_handles_are_shared_memory() {
    let memory = alloc::rc::Rc::new(LocalMemory::pages(1));
    let mut front = FrontRing::init(alloc::rc::Rc::clone(&memory), 8).unwrap();
    let mut back = BackRing::new(alloc::sync::Arc::new(LocalMemory::clone(&memory)), 8).unwrap();
    front.push_request(&[9; 8]).unwrap();
    front.push_requests();
    let mut buffer = [0; 8];
    assert_eq!(back.next_request(&mut buffer), Ok(true));
    assert_eq!(buffer, [9; 8]);
    let by_reference = BackRing::new(&*memory, 8).unwrap();
    assert_eq!(by_reference.unconsumed_requests(), Ok(1));
}
