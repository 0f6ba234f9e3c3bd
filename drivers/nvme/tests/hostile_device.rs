//! A controller that posts completions of arbitrary contents: duplicate,
//! unknown and foreign command ids, other queues, error statuses. The driver
//! must not panic, and every request must come back exactly once, whether
//! the driver carries on or stops.

mod common;

use std::collections::HashMap;

use blkback::{BlockDevice, IoRequest, IoTag, SubmitError};
use nvme::{Config, Status};

use common::{pattern, ready};
use nvme::model::Options;

#[test]
fn arbitrary_completions_never_lose_or_duplicate_a_request() {
    let mut stopped = 0;
    for seed in 1..=150u64 {
        let options = Options {
            mdts: 1,
            seed,
            ..Options::default()
        };
        let mut config = Config::new(1);
        config.io_queue_entries = 8;
        let (mut nvme, model) = ready(options, config);
        let random = pattern(seed, 4096);
        let mut random = random
            .chunks_exact(4)
            .map(|chunk| u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
        let mut next = move || random.next().unwrap();
        let mut returned: HashMap<u64, usize> = HashMap::new();
        let mut submitted = 0u64;
        for _ in 0..40 {
            // Odd seeds get an arbitrary completion one step in sixteen;
            // even seeds none, so the driver's ordinary path also ends the run.
            let garbage = seed % 2 == 1 && next() % 16 == 0;
            match if garbage { 2 } else { next() % 2 } {
                0 => {
                    let bytes = 512 * (1 + next() as usize % 40);
                    let sector = u64::from(next()) % 4000;
                    let request = if next() % 2 == 0 {
                        IoRequest::Read {
                            sector,
                            buffer: vec![0; bytes],
                        }
                    } else {
                        IoRequest::Write {
                            sector,
                            buffer: vec![1; bytes],
                        }
                    };
                    match nvme.submit(IoTag(submitted), request) {
                        Ok(()) => submitted += 1,
                        Err(SubmitError::QueueFull(_) | SubmitError::Refused(_)) => {}
                    }
                }
                2 => {
                    // Command ids mostly near the real ones, queue ids mostly 1.
                    let command_id = next() % 12;
                    let queue = if next() % 8 == 0 { next() % 4 } else { 1 };
                    let status = if next() % 3 == 0 { next() & 0x7fff } else { 0 };
                    model.post_garbage([next(), 0, queue << 16, command_id | (status << 17)]);
                }
                _ => model.process_some(1 + next() as usize % 3),
            }
            while let Some(completion) = nvme.poll_completion() {
                *returned.entry(completion.tag.0).or_default() += 1;
            }
        }
        // Let everything finish.
        for _ in 0..100 {
            model.process();
            while let Some(completion) = nvme.poll_completion() {
                *returned.entry(completion.tag.0).or_default() += 1;
            }
        }
        match nvme.status() {
            Status::Failed(_) => stopped += 1,
            status => assert_eq!(status, Status::Ready),
        }
        if seed % 2 == 0 {
            assert_eq!(nvme.status(), Status::Ready, "seed {seed}");
            assert!(model.faults().is_empty(), "{:?}", model.faults());
        }
        for tag in 0..submitted {
            assert_eq!(
                returned.get(&tag).copied().unwrap_or(0),
                1,
                "seed {seed}: request {tag} came back the wrong number of times ({:?})",
                nvme.status()
            );
        }
        assert_eq!(
            returned.len() as u64,
            submitted,
            "seed {seed}: unknown tags"
        );
    }
    // Both outcomes were exercised.
    assert!(stopped > 0 && stopped < 150, "{stopped} of 150 stopped");
}

#[test]
fn interrupts_are_taken_and_unmasked_after_draining() {
    let (mut nvme, model) = ready(Options::default(), Config::new(1));
    for tag in 0..4 {
        let request = IoRequest::Read {
            sector: tag * 8,
            buffer: vec![0; 4096],
        };
        nvme.submit(IoTag(tag), request).unwrap();
    }
    let before = model.interrupts_raised();
    model.process_some(2);
    // One interrupt for the first completion; the vector is then masked.
    assert_eq!(model.interrupts_raised(), before + 1);
    assert!(model.masked());
    assert!(nvme.poll_completion().is_some());
    assert!(nvme.poll_completion().is_some());
    assert!(!model.masked());
    model.process_some(2);
    assert_eq!(model.interrupts_raised(), before + 2);
    assert!(nvme.poll_completion().is_some());
    assert!(nvme.poll_completion().is_some());
    assert!(nvme.poll_completion().is_none());
    assert!(!model.masked());
}
