//! Shared set-up for the driver tests: a model, a driver on it, frames.
#![allow(dead_code)]

use e1000::model::Model;
use e1000::{Config, E1000};

/// The Ethernet address in the model's EEPROM (QEMU's default prefix).
pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Another station on the wire.
pub const PEER: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x07];
pub const BROADCAST: [u8; 6] = [0xFF; 6];

pub fn bring_up(config: Config) -> (E1000<Model>, Model) {
    let model = Model::new(MAC);
    let driver = match E1000::new(model.clone(), config) {
        Ok(driver) => driver,
        Err((error, _)) => panic!("bring-up failed: {error}"),
    };
    (driver, model)
}

pub fn small_rings() -> Config {
    Config {
        rx_descriptors: 8,
        tx_descriptors: 8,
        ..Config::default()
    }
}

/// A frame of `len` bytes (at least 14) to `destination` from `source`,
/// with a payload that differs for every `seed`.
pub fn frame(destination: [u8; 6], source: [u8; 6], len: usize, seed: u32) -> Vec<u8> {
    assert!(len >= 14);
    let mut data = Vec::with_capacity(len);
    data.extend_from_slice(&destination);
    data.extend_from_slice(&source);
    data.extend_from_slice(&0x88B5u16.to_be_bytes());
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(len as u32) | 1;
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        data.push(state as u8);
    }
    data
}

/// A small deterministic generator for hostile sequences.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// No test may make the device DMA outside live memory.
pub fn assert_no_dma_faults(model: &Model) {
    assert_eq!(
        model.dma_faults(),
        Vec::new(),
        "device DMA outside live memory"
    );
}
