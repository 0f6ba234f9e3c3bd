//! Shared helpers of the driver tests.
#![allow(dead_code)]

use blkback::{BlockDevice, IoCompletion, IoRequest, IoTag};
use nvme::{Config, Nvme, Status};
use pcidev::PciDevice;

use nvme::model::{Model, Options};

/// Polls bring-up (time standing still) until it settles.
pub fn bring_up<D: PciDevice>(nvme: &mut Nvme<D>) -> Status {
    for _ in 0..32 {
        let status = nvme.poll_bring_up(0);
        if status != Status::Starting {
            return status;
        }
    }
    nvme.status()
}

/// A ready driver over a fresh model.
pub fn ready(options: Options, config: Config) -> (Nvme<Model>, Model) {
    let model = Model::new(options);
    let mut nvme = Nvme::new(model.clone(), config);
    assert_eq!(bring_up(&mut nvme), Status::Ready);
    (nvme, model)
}

/// Lets the model run and collects `count` completions.
pub fn complete(nvme: &mut Nvme<Model>, model: &Model, count: usize) -> Vec<IoCompletion> {
    let mut done = Vec::new();
    for _ in 0..10_000 {
        while let Some(completion) = nvme.poll_completion() {
            done.push(completion);
        }
        if done.len() >= count {
            break;
        }
        model.process();
    }
    assert_eq!(done.len(), count, "completions");
    done
}

/// Submits one request and returns its completion.
pub fn run_one(nvme: &mut Nvme<Model>, model: &Model, request: IoRequest) -> IoCompletion {
    nvme.submit(IoTag(7), request).expect("accepted");
    let mut done = complete(nvme, model, 1);
    let completion = done.pop().unwrap();
    assert_eq!(completion.tag, IoTag(7));
    completion
}

pub fn write(nvme: &mut Nvme<Model>, model: &Model, sector: u64, data: Vec<u8>) {
    let completion = run_one(
        nvme,
        model,
        IoRequest::Write {
            sector,
            buffer: data,
        },
    );
    assert_eq!(completion.result, Ok(()));
}

pub fn read(nvme: &mut Nvme<Model>, model: &Model, sector: u64, bytes: usize) -> Vec<u8> {
    let completion = run_one(
        nvme,
        model,
        IoRequest::Read {
            sector,
            buffer: vec![0; bytes],
        },
    );
    assert_eq!(completion.result, Ok(()));
    completion.buffer
}

/// Deterministic bytes that differ per position and seed.
pub fn pattern(seed: u64, bytes: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
