//! Both ends on their own threads over one [`LocalMemory`], with a
//! condition variable standing in for each event channel. The ends sleep
//! whenever the final checks say they may, so a lost wakeup (an end asleep
//! while work waits for it and no notification is coming) fails the test
//! instead of hanging it. The races a missing barrier opens are narrow:
//! this test can catch them but is no proof of their absence; the
//! single-threaded property and differential tests pin down the logic.

use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::Duration;

use xen_ring::{BackRing, FrontRing, LocalMemory};

const MESSAGES: u64 = 60_000;
const SLOT_SIZE: usize = 16;

/// An event channel: a pending bit and a way to sleep on it.
#[derive(Default)]
struct EventChannel {
    pending: Mutex<bool>,
    raised: Condvar,
}

impl EventChannel {
    fn notify(&self) {
        *self.pending.lock().unwrap() = true;
        self.raised.notify_one();
    }

    /// Sleeps until notified. `work_waiting` is consulted only when the
    /// sleep has lasted long enough that a notification in flight would
    /// have arrived; work waiting then means a lost wakeup.
    fn wait(&self, work_waiting: impl Fn() -> bool) {
        let mut pending = self.pending.lock().unwrap();
        loop {
            if *pending {
                *pending = false;
                return;
            }
            let (guard, timeout) = self
                .raised
                .wait_timeout(pending, Duration::from_secs(20))
                .unwrap();
            pending = guard;
            if timeout.timed_out() && !*pending {
                assert!(
                    !work_waiting(),
                    "lost wakeup: asleep with work waiting and no notification"
                );
            }
        }
    }
}

fn payload(serial: u64) -> [u8; SLOT_SIZE] {
    let mut bytes = [0; SLOT_SIZE];
    bytes[..8].copy_from_slice(&serial.to_le_bytes());
    bytes[8..].copy_from_slice(&(!serial).wrapping_mul(0x9e37_79b9).to_le_bytes());
    bytes
}

#[test]
fn ends_on_two_threads_never_lose_a_wakeup() {
    for (pages, start) in [(1, 0), (2, u32::MAX - 1000)] {
        let memory = LocalMemory::pages(pages);
        let mut front = FrontRing::init_at(memory.clone(), SLOT_SIZE, start).unwrap();
        let mut back = BackRing::attach(memory, SLOT_SIZE).unwrap();
        let to_backend = EventChannel::default();
        let to_frontend = EventChannel::default();

        thread::scope(|scope| {
            scope.spawn(|| {
                let mut answered = 0;
                let mut request = [0; SLOT_SIZE];
                while answered < MESSAGES {
                    let mut progressed = false;
                    while back.next_request(&mut request).unwrap() {
                        assert_eq!(request, payload(answered), "request out of order");
                        let mut response = request;
                        response.reverse();
                        back.push_response(&response).unwrap();
                        answered += 1;
                        progressed = true;
                    }
                    if back.push_responses_and_check_notify() {
                        to_frontend.notify();
                    }
                    if !progressed && !back.final_check_for_requests().unwrap() {
                        to_backend.wait(|| back.unconsumed_requests().unwrap() > 0);
                    }
                }
            });

            let mut sent = 0;
            let mut received = 0;
            let mut response = [0; SLOT_SIZE];
            while received < MESSAGES {
                let mut progressed = false;
                while sent < MESSAGES && !front.is_full() {
                    front.push_request(&payload(sent)).unwrap();
                    sent += 1;
                    progressed = true;
                }
                if front.push_requests_and_check_notify() {
                    to_backend.notify();
                }
                while front.next_response(&mut response).unwrap() {
                    let mut expected = payload(received);
                    expected.reverse();
                    assert_eq!(response, expected, "response out of order");
                    received += 1;
                    progressed = true;
                }
                if !progressed && !front.final_check_for_responses().unwrap() {
                    to_frontend.wait(|| front.unconsumed_responses().unwrap() > 0);
                }
            }
        });
        assert_eq!(front.free_requests(), front.size());
    }
}
