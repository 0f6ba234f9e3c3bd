//! I/O through the `BlockDevice` trait against the model: random workloads
//! with many commands in flight, PRP lists, splitting, flush, discard, and
//! what a broken controller gets.

mod common;

use std::collections::HashMap;

use blkback::{BlockDevice, IoError, IoRequest, IoTag, SubmitError};
use nvme::spec::nvm;
use nvme::{Config, Nvme, NvmeError, Status};

use common::{complete, pattern, read, ready, run_one, write};
use nvme::model::{Model, Options, Starved};

/// Random reads and writes, up to a queue's worth in flight, completed in a
/// random order, checked against a plain copy of the disk.
#[test]
fn random_workload_matches_a_reference_disk() {
    for seed in 1..=6 {
        let options = Options {
            namespace_blocks: 8192,
            seed,
            ..Options::default()
        };
        let mut config = Config::new(1);
        config.io_queue_entries = 16;
        let (mut nvme, model) = ready(options, config);
        let idle_buffers = model.dma_buffers();
        let mut reference = vec![0u8; 8192 * 512];
        let mut random = pattern(seed, 1 << 16).into_iter().cycle();
        let mut byte = move || random.next().unwrap();
        let mut in_flight: HashMap<u64, (bool, u64, Vec<u8>)> = HashMap::new();
        let mut next_tag = 0u64;
        for _round in 0..60 {
            // Requests in one batch do not overlap, so any completion order
            // gives one answer.
            let mut taken: Vec<(u64, u64)> = Vec::new();
            for _ in 0..(byte() % 12 + 1) {
                // Up to 320 KiB: more than one command's worth at times.
                let sectors = u64::from(byte()) % 64 * (1 + u64::from(byte() % 10)) + 1;
                let sector = (u64::from(byte()) << 8 | u64::from(byte())) % (8192 - sectors);
                if taken
                    .iter()
                    .any(|&(start, end)| sector < end && start < sector + sectors)
                {
                    continue;
                }
                let bytes = sectors as usize * 512;
                let is_write = byte() % 2 == 0;
                let request = if is_write {
                    let data = pattern(next_tag + seed * 1000, bytes);
                    IoRequest::Write {
                        sector,
                        buffer: data,
                    }
                } else {
                    IoRequest::Read {
                        sector,
                        buffer: vec![0xee; bytes],
                    }
                };
                let data = match &request {
                    IoRequest::Write { buffer, .. } => buffer.clone(),
                    _ => Vec::new(),
                };
                match nvme.submit(IoTag(next_tag), request) {
                    Ok(()) => {
                        taken.push((sector, sector + sectors));
                        in_flight.insert(next_tag, (is_write, sector, data));
                        next_tag += 1;
                    }
                    Err(SubmitError::QueueFull(_)) => break,
                    Err(SubmitError::Refused(request)) => panic!("refused {request:?}"),
                }
            }
            for completion in complete(&mut nvme, &model, in_flight.len()) {
                let (is_write, sector, data) = in_flight.remove(&completion.tag.0).unwrap();
                assert_eq!(completion.result, Ok(()));
                let at = sector as usize * 512;
                if is_write {
                    assert_eq!(completion.buffer, data);
                    reference[at..at + data.len()].copy_from_slice(&data);
                } else {
                    let len = completion.buffer.len();
                    assert_eq!(
                        completion.buffer,
                        &reference[at..at + len],
                        "read at {sector}"
                    );
                }
            }
        }
        assert_eq!(model.media(), reference);
        assert!(model.most_in_flight() > 4, "{}", model.most_in_flight());
        assert_eq!(model.dma_buffers(), idle_buffers, "DMA buffers leaked");
        assert!(model.faults().is_empty(), "{:?}", model.faults());
    }
}

#[test]
fn prp_lists_chain_across_pages() {
    let options = Options {
        namespace_blocks: 16384,
        mdts: 0,
        ..Options::default()
    };
    let mut config = Config::new(1);
    config.max_transfer_bytes = 8 << 20;
    let (mut nvme, model) = ready(options, config);
    // One and two pages need no list.
    write(&mut nvme, &model, 0, pattern(1, 4096));
    write(&mut nvme, &model, 8, pattern(2, 8192));
    assert_eq!(model.prp_list_pages(), 0);
    // Three pages: PRP2 points to a list of two entries.
    write(&mut nvme, &model, 24, pattern(3, 12288));
    assert_eq!(model.prp_list_pages(), 1);
    // 2.5 MiB = 640 pages: 639 entries, so two chained list pages.
    let data = pattern(4, 640 * 4096);
    write(&mut nvme, &model, 100, data.clone());
    assert_eq!(model.prp_list_pages(), 3);
    assert_eq!(model.commands(nvm::WRITE), 4);
    assert_eq!(read(&mut nvme, &model, 100, data.len()), data);
    // 1024 entries need three list pages: 511 + 511 + 2.
    let data = pattern(5, 1025 * 4096);
    let before = model.prp_list_pages();
    write(&mut nvme, &model, 0, data.clone());
    assert_eq!(model.prp_list_pages() - before, 3);
    assert_eq!(read(&mut nvme, &model, 0, data.len()), data);
    assert_eq!(&model.media()[..data.len()], &data[..]);
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}

#[test]
fn requests_larger_than_mdts_are_split() {
    // MDTS 1: 8 KiB per command.
    let options = Options {
        mdts: 1,
        ..Options::default()
    };
    let (mut nvme, model) = ready(options, Config::new(1));
    let data = pattern(9, 65536 + 1024);
    write(&mut nvme, &model, 3, data.clone());
    assert_eq!(model.commands(nvm::WRITE), 9);
    assert_eq!(read(&mut nvme, &model, 3, data.len()), data);
    assert_eq!(&model.media()[1536..1536 + data.len()], &data[..]);
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}

#[test]
fn flush_makes_completed_writes_durable() {
    let (mut nvme, model) = ready(Options::default(), Config::new(1));
    write(&mut nvme, &model, 0, vec![1; 4096]);
    assert_eq!(&model.power_cut()[..4096], &[0; 4096][..]);
    let flush = run_one(&mut nvme, &model, IoRequest::Flush);
    assert_eq!(flush.result, Ok(()));
    assert!(flush.buffer.is_empty());
    assert_eq!(model.commands(nvm::FLUSH), 1);
    assert_eq!(&model.power_cut()[..4096], &[1; 4096][..]);
    write(&mut nvme, &model, 8, vec![2; 512]);
    assert_eq!(&model.power_cut()[4096..4608], &[0; 512][..]);
    // Without a volatile cache there is nothing to flush: no command.
    let options = Options {
        volatile_write_cache: false,
        ..Options::default()
    };
    let (mut nvme, model) = ready(options, Config::new(1));
    write(&mut nvme, &model, 0, vec![3; 512]);
    assert_eq!(run_one(&mut nvme, &model, IoRequest::Flush).result, Ok(()));
    assert_eq!(model.commands(nvm::FLUSH), 0);
    assert_eq!(&model.power_cut()[..512], &[3; 512][..]);
}

#[test]
fn discard_deallocates() {
    let (mut nvme, model) = ready(Options::default(), Config::new(1));
    write(&mut nvme, &model, 0, vec![7; 16 * 512]);
    let discard = IoRequest::Discard {
        sector: 4,
        sectors: 8,
        secure: false,
    };
    assert_eq!(run_one(&mut nvme, &model, discard).result, Ok(()));
    let data = read(&mut nvme, &model, 0, 16 * 512);
    assert_eq!(&data[..2048], &[7; 2048][..]);
    assert_eq!(&data[2048..6144], &[0; 4096][..]);
    assert_eq!(&data[6144..], &[7; 2048][..]);
    assert_eq!(model.deallocated_blocks(), 8);
    // Deallocation is not a secure erase.
    let secure = IoRequest::Discard {
        sector: 0,
        sectors: 1,
        secure: true,
    };
    assert_eq!(
        run_one(&mut nvme, &model, secure).result,
        Err(IoError::NotSupported)
    );
    let outside = IoRequest::Discard {
        sector: 4090,
        sectors: 7,
        secure: false,
    };
    assert!(matches!(
        nvme.submit(IoTag(1), outside),
        Err(SubmitError::Refused(_))
    ));
    // A controller without Dataset Management advertises no discard.
    let options = Options {
        dataset_management: false,
        ..Options::default()
    };
    let (mut nvme, model) = ready(options, Config::new(1));
    assert_eq!(nvme.info().discard, None);
    let discard = IoRequest::Discard {
        sector: 0,
        sectors: 1,
        secure: false,
    };
    assert_eq!(
        run_one(&mut nvme, &model, discard).result,
        Err(IoError::NotSupported)
    );
    assert_eq!(model.commands(nvm::DATASET_MANAGEMENT), 0);
}

#[test]
fn command_errors_fail_only_their_request() {
    let options = Options {
        mdts: 1,
        ..Options::default()
    };
    let (mut nvme, model) = ready(options, Config::new(1));
    // Unrecovered read error (media and data integrity, 0x81).
    model.inject(nvm::READ, 0x0281);
    let failed = run_one(
        &mut nvme,
        &model,
        IoRequest::Read {
            sector: 0,
            buffer: vec![0; 512],
        },
    );
    assert_eq!(failed.result, Err(IoError::Media));
    assert_eq!(failed.buffer.len(), 512);
    // One failed command of a split request fails the request, once.
    model.inject(nvm::WRITE, 0x0281);
    let failed = run_one(
        &mut nvme,
        &model,
        IoRequest::Write {
            sector: 0,
            buffer: vec![1; 32768],
        },
    );
    assert_eq!(failed.result, Err(IoError::Media));
    assert!(nvme.poll_completion().is_none());
    // Invalid opcode: the device does not do it.
    model.inject(nvm::FLUSH, 0x0001);
    let failed = run_one(&mut nvme, &model, IoRequest::Flush);
    assert_eq!(failed.result, Err(IoError::NotSupported));
    // The driver carries on.
    assert_eq!(nvme.status(), Status::Ready);
    write(&mut nvme, &model, 0, vec![4; 512]);
    assert_eq!(read(&mut nvme, &model, 0, 512), vec![4; 512]);
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}

#[test]
fn out_of_range_and_malformed_requests_are_refused() {
    let (mut nvme, model) = ready(Options::default(), Config::new(1));
    for request in [
        IoRequest::Read {
            sector: 4095,
            buffer: vec![0; 1024],
        },
        IoRequest::Write {
            sector: u64::MAX / 256,
            buffer: vec![0; 512],
        },
        IoRequest::Read {
            sector: 0,
            buffer: vec![0; 100],
        },
        IoRequest::Write {
            sector: 0,
            buffer: Vec::new(),
        },
    ] {
        assert!(matches!(
            nvme.submit(IoTag(0), request),
            Err(SubmitError::Refused(_))
        ));
    }
    assert_eq!(model.in_flight(), 0);
    // The last sector is fine.
    write(&mut nvme, &model, 4095, vec![6; 512]);
}

#[test]
fn a_full_queue_asks_for_a_retry() {
    let mut config = Config::new(1);
    config.io_queue_entries = 4;
    let options = Options {
        mdts: 1,
        ..Options::default()
    };
    let (mut nvme, model) = ready(options, config);
    assert_eq!(nvme.info().queue_depth, 3);
    for tag in 0..3 {
        let request = IoRequest::Read {
            sector: tag,
            buffer: vec![0; 512],
        };
        nvme.submit(IoTag(tag), request).unwrap();
    }
    let request = IoRequest::Flush;
    let Err(SubmitError::QueueFull(request)) = nvme.submit(IoTag(3), request) else {
        panic!("a fourth command fit in a queue of three");
    };
    complete(&mut nvme, &model, 3);
    nvme.submit(IoTag(3), request).unwrap();
    complete(&mut nvme, &model, 1);
    // 32 KiB needs four 8 KiB commands: never possible with three.
    let request = IoRequest::Read {
        sector: 0,
        buffer: vec![0; 32768],
    };
    assert!(matches!(
        nvme.submit(IoTag(4), request),
        Err(SubmitError::Refused(_))
    ));
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}

#[test]
fn many_wraps_of_the_completion_queue_keep_the_phase() {
    let mut config = Config::new(1);
    config.io_queue_entries = 2;
    let (mut nvme, model) = ready(Options::default(), config);
    model.set_auto(true);
    for round in 0..50u8 {
        let sector = u64::from(round) * 2;
        write(&mut nvme, &model, sector, vec![round; 1024]);
        assert_eq!(read(&mut nvme, &model, sector, 1024), vec![round; 1024]);
    }
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}

#[test]
fn a_stuck_command_times_out_and_keeps_its_buffers() {
    let mut config = Config::new(1);
    config.io_timeout_ms = 1_000;
    let (mut nvme, model) = ready(Options::default(), config);
    assert_eq!(nvme.tick(500), Status::Ready);
    model.swallow(true);
    let before = model.dma_buffers();
    nvme.submit(
        IoTag(1),
        IoRequest::Write {
            sector: 0,
            buffer: vec![1; 12288],
        },
    )
    .unwrap();
    model.process();
    assert!(nvme.poll_completion().is_none());
    // The age counts from the first tick that sees the command.
    assert_eq!(nvme.tick(1_000), Status::Ready);
    assert_eq!(nvme.tick(2_000), Status::Ready);
    assert_eq!(nvme.tick(2_001), Status::Failed(NvmeError::IoTimeout));
    let failed = nvme.poll_completion().unwrap();
    assert_eq!((failed.tag, failed.result), (IoTag(1), Err(IoError::Media)));
    assert_eq!(failed.buffer, vec![1; 12288]);
    // The data buffer and PRP list may still be written: not freed.
    assert_eq!(model.dma_buffers(), before + 2);
    assert!(!model.enabled());
    // Later requests fail at once.
    nvme.submit(IoTag(2), IoRequest::Flush).unwrap();
    assert_eq!(nvme.poll_completion().unwrap().result, Err(IoError::Media));
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}

#[test]
fn a_fatal_controller_fails_what_is_in_flight() {
    let (mut nvme, model) = ready(Options::default(), Config::new(1));
    for tag in 0..5 {
        let request = IoRequest::Read {
            sector: tag * 8,
            buffer: vec![0; 4096],
        };
        nvme.submit(IoTag(tag), request).unwrap();
    }
    model.make_fatal();
    assert_eq!(nvme.tick(1), Status::Failed(NvmeError::ControllerFatal));
    let mut tags: Vec<u64> = std::iter::from_fn(|| nvme.poll_completion())
        .map(|completion| {
            assert_eq!(completion.result, Err(IoError::Media));
            completion.tag.0
        })
        .collect();
    tags.sort();
    assert_eq!(tags, [0, 1, 2, 3, 4]);
}

#[test]
fn a_completion_for_nothing_stops_the_driver() {
    let (mut nvme, model) = ready(Options::default(), Config::new(1));
    nvme.submit(IoTag(9), IoRequest::Flush).unwrap();
    model.post_bogus_completion(40);
    let failed = nvme.poll_completion().unwrap();
    assert_eq!((failed.tag, failed.result), (IoTag(9), Err(IoError::Media)));
    assert_eq!(nvme.status(), Status::Failed(NvmeError::BadCompletion));
}

#[test]
fn a_removed_device_is_noticed() {
    let (mut nvme, model) = ready(Options::default(), Config::new(1));
    model.remove();
    assert_eq!(nvme.tick(1), Status::Failed(NvmeError::DeviceGone));
}

#[test]
fn running_out_of_dma_memory_never_hangs() {
    let model = Model::new(Options::default());
    // Bring-up needs five buffers: admin queues, identify, I/O queues.
    let starved = Starved {
        model: model.clone(),
        allocations_left: 5,
    };
    let mut nvme = Nvme::new(starved, Config::new(1));
    assert_eq!(common::bring_up(&mut nvme), Status::Ready);
    nvme.submit(
        IoTag(1),
        IoRequest::Read {
            sector: 0,
            buffer: vec![0; 512],
        },
    )
    .unwrap();
    let failed = nvme.poll_completion().unwrap();
    assert_eq!(failed.result, Err(IoError::Media));
    // With a command in flight, the answer is "retry later" instead.
    nvme.submit(IoTag(2), IoRequest::Flush).unwrap();
    let request = IoRequest::Read {
        sector: 0,
        buffer: vec![0; 512],
    };
    assert!(matches!(
        nvme.submit(IoTag(3), request),
        Err(SubmitError::QueueFull(_))
    ));
    model.process();
    assert_eq!(nvme.poll_completion().unwrap().tag, IoTag(2));
    assert_eq!(nvme.status(), Status::Ready);
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}

#[test]
fn shutdown_writes_back_the_cache_after_what_is_in_flight() {
    let (mut nvme, model) = ready(Options::default(), Config::new(1));
    write(&mut nvme, &model, 0, vec![8; 4096]);
    let request = IoRequest::Write {
        sector: 8,
        buffer: vec![9; 512],
    };
    nvme.submit(IoTag(1), request).unwrap();
    // A command in flight: shutdown waits for it, and takes no new ones.
    assert_eq!(nvme.shutdown(0), Status::Ready);
    nvme.submit(IoTag(2), IoRequest::Flush).unwrap();
    let refused = nvme.poll_completion().unwrap();
    assert_eq!(
        (refused.tag, refused.result),
        (IoTag(2), Err(IoError::Media))
    );
    model.process();
    assert_eq!(nvme.poll_completion().unwrap().result, Ok(()));
    assert_eq!(&model.power_cut()[..4096], &[0; 4096][..]);
    assert_eq!(nvme.shutdown(1), Status::ShuttingDown);
    assert_eq!(nvme.shutdown(2), Status::ShutDown);
    assert_eq!(&model.power_cut()[..4096], &[8; 4096][..]);
    assert_eq!(&model.power_cut()[4096..4608], &[9; 512][..]);
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}

#[test]
fn a_shutdown_that_never_finishes_times_out() {
    let options = Options {
        stuck_shutdown: true,
        ..Options::default()
    };
    let (mut nvme, _model) = ready(options, Config::new(1));
    assert_eq!(nvme.shutdown(100), Status::ShuttingDown);
    assert_eq!(nvme.shutdown(5_099), Status::ShuttingDown);
    assert_eq!(
        nvme.shutdown(5_100),
        Status::Failed(NvmeError::ShutdownTimeout)
    );
}
