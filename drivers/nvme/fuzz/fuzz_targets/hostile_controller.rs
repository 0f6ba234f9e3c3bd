//! The NVMe driver against a controller model that, as the input says,
//! posts arbitrary completions, fails commands, swallows them, goes fatal
//! or disappears, while requests of every kind are submitted and time
//! passes. The driver must never panic, never return a request twice, and
//! once stopped must have returned every request it accepted.
#![no_main]

use std::collections::BTreeMap;

use blkback::{BlockDevice, IoRequest, IoTag};
use libfuzzer_sys::fuzz_target;
use nvme::model::{Model, Options};
use nvme::{Config, Nvme, Status};
use pcidev::InterruptMode;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        first
    }
    fn word(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.byte();
    let options = Options {
        namespace_blocks: 2048,
        block_shift: if flags & 1 == 0 { 9 } else { 12 },
        mdts: input.byte() % 4,
        dataset_management: flags & 2 != 0,
        volatile_write_cache: flags & 4 != 0,
        interrupt_modes: if flags & 8 != 0 { vec![InterruptMode::MsiX] } else { vec![] },
        seed: u64::from(input.byte()),
        ..Options::default()
    };
    let model = Model::new(options);
    let mut config = Config::new(1);
    config.io_queue_entries = 2 + u16::from(input.byte() % 15);
    let mut nvme = Nvme::new(model.clone(), config);
    let mut now = 0;
    while nvme.poll_bring_up(now) == Status::Starting {
        now += 100;
    }
    if nvme.status() != Status::Ready {
        return;
    }
    let mut returned: BTreeMap<u64, u32> = BTreeMap::new();
    let mut accepted = 0u64;
    let mut next_tag = 0u64;
    while !input.0.is_empty() {
        match input.byte() % 12 {
            0..=3 => {
                let sector = u64::from(input.word() % 9000);
                let bytes = 512 * (1 + usize::from(input.byte()));
                let request = match input.byte() % 4 {
                    0 => IoRequest::Read { sector, buffer: vec![0; bytes] },
                    1 => IoRequest::Write { sector, buffer: vec![7; bytes] },
                    2 => IoRequest::Flush,
                    _ => IoRequest::Discard {
                        sector,
                        sectors: u64::from(input.word()),
                        secure: input.byte() & 1 == 1,
                    },
                };
                if nvme.submit(IoTag(next_tag), request).is_ok() {
                    accepted += 1;
                }
                next_tag += 1;
            }
            4..=6 => model.process_some(usize::from(input.byte() % 8)),
            7 => model.post_garbage([input.word(), input.word(), input.word(), input.word()]),
            8 => model.inject(input.byte() % 10, (input.word() & 0x7fff) as u16),
            9 => {
                now += u64::from(input.word() % 40_000);
                nvme.tick(now);
            }
            10 => match input.byte() {
                0 => model.make_fatal(),
                1 => model.remove(),
                2 => model.swallow(true),
                _ => {}
            },
            _ => {
                nvme.shutdown(now);
            }
        }
        while let Some(completion) = nvme.poll_completion() {
            let count = returned.entry(completion.tag.0).or_default();
            *count += 1;
            assert_eq!(*count, 1, "request {} returned twice", completion.tag.0);
        }
    }
    // Whatever is left in flight, a stopped driver has answered it all.
    nvme.tick(now + 1_000_000);
    nvme.tick(now + 2_000_000);
    while let Some(completion) = nvme.poll_completion() {
        let count = returned.entry(completion.tag.0).or_default();
        *count += 1;
        assert_eq!(*count, 1, "request {} returned twice", completion.tag.0);
    }
    if matches!(nvme.status(), Status::Failed(_)) {
        assert_eq!(returned.len() as u64, accepted, "accepted requests were lost");
    }
});
