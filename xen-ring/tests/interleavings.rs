//! Property tests: random interleavings of both ring halves over one
//! [`LocalMemory`], checked against a plain queue model, and a backend facing
//! a frontend that scribbles arbitrary indices.

use std::collections::VecDeque;

use proptest::prelude::*;
use xen_ring::{
    BackRing, FrontRing, LocalMemory, RingError, SharedMemory, REQ_EVENT_OFFSET, REQ_PROD_OFFSET,
};

#[derive(Debug, Clone)]
enum Step {
    /// Frontend queues up to this many requests, then pushes and checks notify.
    FrontProduce(u8),
    /// Frontend copies out up to this many responses.
    FrontConsume(u8),
    /// Frontend runs `RING_FINAL_CHECK_FOR_RESPONSES`.
    FrontFinalCheck,
    /// Backend copies out up to this many requests.
    BackConsume(u8),
    /// Backend answers up to this many consumed requests, then pushes.
    BackRespond(u8),
    /// Backend runs `RING_FINAL_CHECK_FOR_REQUESTS`.
    BackFinalCheck,
    /// Backend runs the batching final check, wanting this many requests
    /// (reduced modulo what the ring can still hold).
    BackFinalCheckAtLeast(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..40).prop_map(Step::FrontProduce),
        (0u8..40).prop_map(Step::FrontConsume),
        Just(Step::FrontFinalCheck),
        (0u8..40).prop_map(Step::BackConsume),
        (0u8..40).prop_map(Step::BackRespond),
        Just(Step::BackFinalCheck),
        any::<u8>().prop_map(Step::BackFinalCheckAtLeast),
    ]
}

/// Start indices: anywhere, and often just before the `u32` wrap.
fn start_index() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (0u32..600).prop_map(|back| u32::MAX - back)]
}

/// The bytes of message number `serial`, distinct for every serial.
fn message(serial: u64, length: usize) -> Vec<u8> {
    let seed = serial.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..length)
        .map(|index| (seed >> ((index % 8) * 8)) as u8 ^ index as u8)
        .collect()
}

/// What a sleeping end has been promised: the peer notifies exactly when
/// the messages waiting reach the number the sleeper asked for, and not
/// again until the sleeper re-arms.
#[derive(Debug, Default)]
struct Sleeper {
    idle: bool,
    notified: bool,
    /// Messages the sleeper asked to be woken at.
    wanted: u32,
    /// Messages waiting for the sleeper.
    pending: u32,
}

impl Sleeper {
    fn peer_published(&mut self, count: u32, notify: bool) -> Result<(), TestCaseError> {
        if self.idle && !self.notified {
            let before = self.pending;
            self.pending += count;
            if before < self.wanted && self.pending >= self.wanted {
                prop_assert!(notify, "an idle end was not woken");
            } else {
                prop_assert!(!notify, "woken before enough messages were published");
            }
        } else if self.idle {
            prop_assert!(!notify, "an end already woken was notified again");
        }
        if notify {
            self.notified = true;
        }
        Ok(())
    }

    fn active(&mut self) {
        self.idle = false;
        self.notified = false;
    }

    fn sleep(&mut self, pending: u32, wanted: u32) {
        self.idle = true;
        self.notified = false;
        self.pending = pending;
        self.wanted = wanted;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn interleavings_match_a_queue_model(
        start in start_index(),
        pages in 1usize..=4,
        slot_size in 1usize..=200,
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let memory = LocalMemory::pages(pages);
        let mut front = FrontRing::init_at(memory.clone(), slot_size, start).unwrap();
        let mut back = BackRing::attach(memory, slot_size).unwrap();
        let size = front.size();
        prop_assert!(size.is_power_of_two());

        let mut next_request_serial = 0u64;
        let mut published_requests: VecDeque<u64> = VecDeque::new();
        let mut in_flight: VecDeque<u64> = VecDeque::new();
        let mut published_responses: VecDeque<u64> = VecDeque::new();
        let mut back_sleeper = Sleeper::default();
        let mut front_sleeper = Sleeper::default();
        let mut buffer = vec![0u8; slot_size];

        for step in steps {
            match step {
                Step::FrontProduce(count) => {
                    front_sleeper.active();
                    let mut queued = 0;
                    for _ in 0..count {
                        let outstanding = published_requests.len()
                            + in_flight.len()
                            + published_responses.len()
                            + queued;
                        if outstanding == size as usize {
                            prop_assert!(front.is_full());
                            prop_assert_eq!(
                                front.push_request(&buffer),
                                Err(RingError::RingFull)
                            );
                            break;
                        }
                        let serial = next_request_serial + queued as u64;
                        front.push_request(&message(serial, slot_size)).unwrap();
                        queued += 1;
                    }
                    for serial in next_request_serial..next_request_serial + queued as u64 {
                        published_requests.push_back(serial);
                    }
                    next_request_serial += queued as u64;
                    let notify = front.push_requests_and_check_notify();
                    back_sleeper.peer_published(queued as u32, notify)?;
                }
                Step::BackConsume(count) => {
                    back_sleeper.active();
                    prop_assert_eq!(
                        back.unconsumed_requests(),
                        Ok(published_requests.len() as u32)
                    );
                    for _ in 0..count {
                        let got = back.next_request(&mut buffer).unwrap();
                        match published_requests.pop_front() {
                            Some(serial) => {
                                prop_assert!(got);
                                prop_assert_eq!(&buffer, &message(serial, slot_size));
                                in_flight.push_back(serial);
                            }
                            None => prop_assert!(!got),
                        }
                    }
                }
                Step::BackRespond(count) => {
                    back_sleeper.active();
                    let mut answered = 0;
                    for _ in 0..count {
                        match in_flight.pop_front() {
                            Some(serial) => {
                                // The response echoes the request under a
                                // different tag.
                                back.push_response(&message(!serial, slot_size)).unwrap();
                                published_responses.push_back(serial);
                                answered += 1;
                            }
                            None => {
                                prop_assert_eq!(
                                    back.push_response(&buffer),
                                    Err(RingError::NoRequestToAnswer)
                                );
                                break;
                            }
                        }
                    }
                    let notify = back.push_responses_and_check_notify();
                    front_sleeper.peer_published(answered, notify)?;
                }
                Step::BackFinalCheck => {
                    let work = back.final_check_for_requests().unwrap();
                    prop_assert_eq!(work, !published_requests.is_empty());
                    if work {
                        back_sleeper.active();
                    } else {
                        back_sleeper.sleep(0, 1);
                    }
                }
                Step::BackFinalCheckAtLeast(wanted) => {
                    let room = size - in_flight.len() as u32;
                    if room == 0 {
                        continue;
                    }
                    let wanted = 1 + u32::from(wanted) % room;
                    let waiting = published_requests.len() as u32;
                    let work = back.final_check_for_requests_at_least(wanted).unwrap();
                    prop_assert_eq!(work, waiting >= wanted);
                    if work {
                        back_sleeper.active();
                    } else {
                        back_sleeper.sleep(waiting, wanted);
                    }
                }
                Step::FrontConsume(count) => {
                    front_sleeper.active();
                    for _ in 0..count {
                        let got = front.next_response(&mut buffer).unwrap();
                        match published_responses.pop_front() {
                            Some(serial) => {
                                prop_assert!(got);
                                prop_assert_eq!(&buffer, &message(!serial, slot_size));
                            }
                            None => prop_assert!(!got),
                        }
                    }
                }
                Step::FrontFinalCheck => {
                    let work = front.final_check_for_responses().unwrap();
                    prop_assert_eq!(work, !published_responses.is_empty());
                    if work {
                        front_sleeper.active();
                    } else {
                        front_sleeper.sleep(0, 1);
                    }
                }
            }
            let outstanding =
                published_requests.len() + in_flight.len() + published_responses.len();
            prop_assert_eq!(front.free_requests() as usize, size as usize - outstanding);
            prop_assert_eq!(back.requests_in_flight() as usize, in_flight.len());
        }
    }
}

#[derive(Debug, Clone)]
enum HostileStep {
    /// The frontend writes this `req_prod` (an offset from the backend's
    /// `rsp_prod_pvt`, or an arbitrary value).
    WriteReqProd {
        relative: bool,
        value: u32,
    },
    /// The frontend scribbles `req_event`.
    WriteReqEvent(u32),
    /// The frontend rewrites a byte anywhere in the ring.
    Scribble {
        offset: usize,
        byte: u8,
    },
    Consume(u8),
    Respond(u8),
    FinalCheck,
}

fn hostile_step() -> impl Strategy<Value = HostileStep> {
    prop_oneof![
        (any::<bool>(), prop_oneof![0u32..80, any::<u32>()])
            .prop_map(|(relative, value)| HostileStep::WriteReqProd { relative, value }),
        any::<u32>().prop_map(HostileStep::WriteReqEvent),
        (0usize..8192, any::<u8>())
            .prop_map(|(offset, byte)| HostileStep::Scribble { offset, byte }),
        (0u8..80).prop_map(HostileStep::Consume),
        (0u8..80).prop_map(HostileStep::Respond),
        Just(HostileStep::FinalCheck),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Whatever the frontend writes, the backend never panics, never hands
    /// out more requests than it has response slots for, and reports every
    /// impossible `req_prod` as an error without consuming anything.
    #[test]
    fn backend_survives_a_hostile_frontend(
        start in start_index(),
        pages in 1usize..=2,
        slot_size in 1usize..=120,
        steps in proptest::collection::vec(hostile_step(), 1..150),
    ) {
        let memory = LocalMemory::pages(pages);
        FrontRing::init_at(memory.clone(), slot_size, start).unwrap();
        let mut back = BackRing::attach(memory.clone(), slot_size).unwrap();
        let size = back.size();
        let mut buffer = vec![0u8; slot_size];
        for step in steps {
            match step {
                HostileStep::WriteReqProd { relative, value } => {
                    let req_prod = if relative {
                        back.rsp_prod_pvt().wrapping_add(value)
                    } else {
                        value
                    };
                    memory.store_u32(REQ_PROD_OFFSET, req_prod);
                }
                HostileStep::WriteReqEvent(value) => memory.store_u32(REQ_EVENT_OFFSET, value),
                HostileStep::Scribble { offset, byte } => {
                    memory.write(offset % memory.len(), &[byte]);
                }
                HostileStep::Consume(count) => {
                    for _ in 0..count {
                        let req_prod = memory.load_u32(REQ_PROD_OFFSET);
                        let before = back.req_cons();
                        let legal = req_prod.wrapping_sub(back.rsp_prod_pvt()) <= size
                            && req_prod.wrapping_sub(back.rsp_prod_pvt())
                                >= back.requests_in_flight();
                        match back.next_request(&mut buffer) {
                            Ok(true) => {
                                prop_assert!(legal);
                                prop_assert_eq!(back.req_cons(), before.wrapping_add(1));
                                prop_assert!(req_prod.wrapping_sub(before) >= 1);
                            }
                            Ok(false) => {
                                prop_assert!(legal);
                                prop_assert_eq!(req_prod, before);
                                break;
                            }
                            Err(_) => {
                                prop_assert!(!legal);
                                prop_assert_eq!(back.req_cons(), before);
                                break;
                            }
                        }
                    }
                }
                HostileStep::Respond(count) => {
                    for _ in 0..count {
                        if back.push_response(&buffer).is_err() {
                            prop_assert_eq!(back.requests_in_flight(), 0);
                            break;
                        }
                    }
                    back.push_responses_and_check_notify();
                }
                HostileStep::FinalCheck => {
                    let _ = back.final_check_for_requests();
                }
            }
            prop_assert!(back.requests_in_flight() <= size);
        }
    }

    /// Whatever the backend writes as `rsp_prod`, the frontend never takes
    /// a response for a request it did not publish.
    #[test]
    fn frontend_survives_a_hostile_backend(
        start in start_index(),
        published in 0u32..32,
        rsp_prod_offset in prop_oneof![0u32..64, any::<u32>()],
    ) {
        let memory = LocalMemory::pages(1);
        let mut front = FrontRing::init_at(memory.clone(), 112, start).unwrap();
        for _ in 0..published {
            front.push_request(&[0; 112]).unwrap();
        }
        front.push_requests();
        let rsp_prod = start.wrapping_add(rsp_prod_offset);
        memory.store_u32(xen_ring::RSP_PROD_OFFSET, rsp_prod);
        let mut taken = 0;
        let mut buffer = [0; 112];
        loop {
            match front.next_response(&mut buffer) {
                Ok(true) => taken += 1,
                Ok(false) => break,
                Err(error) => {
                    prop_assert!(rsp_prod_offset > published);
                    let is_overflow = matches!(error, RingError::ResponseOverflow { .. });
                    prop_assert!(is_overflow, "unexpected error {:?}", error);
                    break;
                }
            }
            prop_assert!(taken <= published);
        }
        if rsp_prod_offset <= published {
            prop_assert_eq!(taken, rsp_prod_offset);
        } else {
            prop_assert_eq!(taken, 0);
        }
    }
}
