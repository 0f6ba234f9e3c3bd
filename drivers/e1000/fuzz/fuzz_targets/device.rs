//! The driver against a device that writes back whatever the input says:
//! receive write-backs with any length, status and errors, transmit status
//! withheld or false, link flaps, interleaved with real frames both ways and
//! polls. Whatever the device does, the driver must not panic, must return
//! only frames within the configured bounds, must not make the device touch
//! memory it was not given, and after a reset must exchange frames again.
#![no_main]

use e1000::model::{Delivery, Model, TxWriteBack};
use e1000::{Config, E1000, BUFFER_SIZE, MAX_FRAME_LEN, MAX_LONG_FRAME_LEN};
use libfuzzer_sys::fuzz_target;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 7];

fn frame(destination: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    data.extend_from_slice(&destination);
    data.extend_from_slice(&PEER);
    data.extend_from_slice(&[0x88, 0xB5]);
    data.resize(len.max(14), fill);
    data
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut input)) = data.split_first() else {
        return;
    };
    let config = Config {
        rx_descriptors: 8,
        tx_descriptors: 16,
        long_packets: flags & 1 != 0,
        promiscuous: flags & 2 != 0,
        stall_polls: 4,
        ..Config::default()
    };
    let limit = if config.long_packets {
        MAX_LONG_FRAME_LEN
    } else {
        MAX_FRAME_LEN
    };
    let model = Model::new(MAC);
    let Ok(mut driver) = E1000::new(model.clone(), config) else {
        panic!("bring-up failed on a well-behaved device");
    };
    let buffer: Vec<u8> = (0..BUFFER_SIZE).map(|byte| byte as u8).collect();
    let mut steps = 0;
    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        steps += 1;
        if steps > 4096 {
            break;
        }
        let mut take = |count: usize| -> Vec<u8> {
            let (head, tail) = input.split_at(count.min(input.len()));
            input = tail;
            head.to_vec()
        };
        match op % 8 {
            0 => {
                let bytes = take(4);
                let length = u16::from_le_bytes([
                    bytes.first().copied().unwrap_or(0),
                    bytes.get(1).copied().unwrap_or(0),
                ]);
                let status = bytes.get(2).copied().unwrap_or(0);
                let errors = bytes.get(3).copied().unwrap_or(0);
                model.receive_raw(&buffer, length, status, errors);
            }
            1 => {
                let bytes = take(2);
                let len = usize::from(u16::from_le_bytes([
                    bytes.first().copied().unwrap_or(0),
                    bytes.get(1).copied().unwrap_or(0),
                ])) % 17_000;
                let _ = model.receive(&frame(MAC, len, op));
            }
            2 | 3 => match driver.receive() {
                Ok(Some(received)) => {
                    assert!(received.len() >= 14 && received.len() <= limit);
                }
                Ok(None) => {}
                Err(error) => panic!("receive failed on a present device: {error}"),
            },
            4 => {
                let bytes = take(2);
                let len = usize::from(u16::from_le_bytes([
                    bytes.first().copied().unwrap_or(0),
                    bytes.get(1).copied().unwrap_or(0),
                ])) % 17_000;
                let _ = driver.send(&frame(PEER, len, op));
            }
            5 => {
                let mode = take(1).first().copied().unwrap_or(0);
                model.set_tx_write_back(match mode % 3 {
                    0 => TxWriteBack::Done,
                    1 => TxWriteBack::Withhold,
                    _ => TxWriteBack::Status(mode),
                });
            }
            6 => model.set_cable(!model.link_up()),
            _ => {
                driver.poll().expect("poll on a present device");
            }
        }
    }
    assert!(model.dma_faults().is_empty());

    // Reset, and the two talk again.
    let device = driver.shutdown();
    assert_eq!(model.allocated_bytes(), 0);
    model.set_cable(true);
    model.set_tx_write_back(TxWriteBack::Done);
    let Ok(mut driver) = E1000::new(device, config) else {
        panic!("bring-up after reset failed");
    };
    let inbound = frame(MAC, 100, 0xA5);
    assert_eq!(model.receive(&inbound), Delivery::Delivered(1));
    assert_eq!(driver.receive(), Ok(Some(inbound)));
    let outbound = frame(PEER, 100, 0x5A);
    model.take_transmitted();
    driver.send(&outbound).expect("send after reset");
    assert_eq!(model.take_transmitted(), vec![outbound]);
    assert!(model.dma_faults().is_empty());
});
