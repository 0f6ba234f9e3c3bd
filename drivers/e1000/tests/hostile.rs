//! A device that lies in its write-backs or stops answering: every case
//! costs frames and counters, never a panic, a hang or memory the driver
//! did not give the device.

mod common;

use common::{assert_no_dma_faults, bring_up, frame, small_rings, Rng, MAC, PEER};
use e1000::descriptor::{rx_errors, rx_status, tx_status};
use e1000::model::{Delivery, TxWriteBack};
use e1000::{Config, Error, SendError, BUFFER_SIZE, MAX_FRAME_LEN};
use netback::NetDevice;
use pcidev::PciError;

const DONE_END: u8 = rx_status::DD | rx_status::EOP;

/// Receives one good frame, to show the driver is back in step.
fn assert_in_step(driver: &mut e1000::E1000<e1000::model::Model>, model: &e1000::model::Model) {
    let good = frame(MAC, PEER, 128, 0xABCD);
    assert_eq!(model.receive(&good), Delivery::Delivered(1));
    assert_eq!(driver.receive(), Ok(Some(good)));
    assert_eq!(driver.receive(), Ok(None));
}

#[test]
fn a_length_beyond_the_buffer_drops_the_frame() {
    let (mut driver, model) = bring_up(small_rings());
    let data = frame(MAC, PEER, 64, 1);
    for length in [BUFFER_SIZE as u16 + 1, 4096, u16::MAX] {
        assert!(model.receive_raw(&data, length, DONE_END, 0));
        assert_eq!(driver.receive(), Ok(None));
    }
    assert_eq!(driver.statistics().rx_bogus_write_backs, 3);
    assert_eq!(driver.statistics().rx_frames, 0);
    assert_in_step(&mut driver, &model);
    assert_no_dma_faults(&model);
}

#[test]
fn a_bogus_length_inside_a_chain_drops_the_whole_frame() {
    let (mut driver, model) = bring_up(Config {
        long_packets: true,
        tx_descriptors: 16,
        ..small_rings()
    });
    let data = frame(MAC, PEER, 2048, 1);
    assert!(model.receive_raw(&data, 2048, rx_status::DD, 0));
    assert!(model.receive_raw(&data, 5000, rx_status::DD, 0));
    assert!(model.receive_raw(&data, 100, DONE_END, 0));
    assert_eq!(driver.receive(), Ok(None));
    let statistics = driver.statistics();
    assert_eq!(statistics.rx_bogus_write_backs, 1);
    assert_eq!(statistics.rx_frames, 0);
    assert_in_step(&mut driver, &model);
}

#[test]
fn frames_the_device_flags_bad_are_dropped() {
    let (mut driver, model) = bring_up(small_rings());
    let data = frame(MAC, PEER, 64, 1);
    for error in [
        rx_errors::CE,
        rx_errors::SE,
        rx_errors::SEQ,
        rx_errors::CXE,
        rx_errors::RXE,
    ] {
        assert!(model.receive_raw(&data, 64, DONE_END, error));
        assert_eq!(driver.receive(), Ok(None));
    }
    assert_eq!(driver.statistics().rx_frame_errors, 5);
    // Checksum offload results (IPE, TCPE) are not frame errors.
    assert!(model.receive_raw(&data, 64, DONE_END, 0x60));
    assert_eq!(driver.receive(), Ok(Some(data)));
    assert_in_step(&mut driver, &model);
}

#[test]
fn a_chain_longer_than_a_frame_is_dropped_up_to_its_end() {
    let (mut driver, model) = bring_up(small_rings());
    let data = vec![0x5A; BUFFER_SIZE];
    // Without long-packet mode a frame is at most 1518 bytes: a device
    // that chains buffers anyway is not believed.
    assert!(model.receive_raw(&data, 2048, rx_status::DD, 0));
    assert!(model.receive_raw(&data, 2048, rx_status::DD, 0));
    assert_eq!(driver.receive(), Ok(None));
    assert!(model.receive_raw(&data, 10, DONE_END, 0));
    assert_eq!(driver.receive(), Ok(None));
    let statistics = driver.statistics();
    assert_eq!(statistics.rx_oversize, 1);
    assert_eq!(statistics.rx_frames, 0);
    // Exactly the limit is fine, one more is not.
    let limit = frame(MAC, PEER, MAX_FRAME_LEN, 3);
    assert!(model.receive_raw(&limit[..1000], 1000, rx_status::DD, 0));
    assert!(model.receive_raw(&limit[1000..], 518, DONE_END, 0));
    assert_eq!(driver.receive(), Ok(Some(limit)));
    assert!(model.receive_raw(&data, 1000, rx_status::DD, 0));
    assert!(model.receive_raw(&data, 519, DONE_END, 0));
    assert_eq!(driver.receive(), Ok(None));
    assert_eq!(driver.statistics().rx_oversize, 2);
    assert_in_step(&mut driver, &model);
}

#[test]
fn runts_and_empty_frames_are_dropped() {
    let (mut driver, model) = bring_up(small_rings());
    let data = frame(MAC, PEER, 64, 1);
    assert!(model.receive_raw(&data, 0, DONE_END, 0));
    assert!(model.receive_raw(&data, 13, DONE_END, 0));
    assert_eq!(driver.receive(), Ok(None));
    assert_eq!(driver.statistics().rx_runts, 2);
    assert!(model.receive_raw(&data, 14, DONE_END, 0));
    assert_eq!(driver.receive(), Ok(Some(data[..14].to_vec())));
}

#[test]
fn an_endless_chain_without_end_of_packet_is_bounded() {
    let (mut driver, model) = bring_up(small_rings());
    let data = vec![0x11; BUFFER_SIZE];
    // Far more fragments than a ring holds, none of them ending a frame:
    // each receive looks at a bounded number of descriptors, hands them
    // back, and returns.
    let mut fragments = 0;
    for _ in 0..100 {
        while model.receive_raw(&data, 2048, rx_status::DD, 0) {
            fragments += 1;
        }
        assert_eq!(driver.receive(), Ok(None));
        assert_eq!(model.rx_descriptors_free(), 7);
    }
    assert_eq!(fragments, 700);
    assert_eq!(driver.statistics().rx_oversize, 1);
    assert!(model.receive_raw(&data, 1, DONE_END, 0));
    assert_eq!(driver.receive(), Ok(None));
    assert_in_step(&mut driver, &model);
}

#[test]
fn status_bits_without_descriptor_done_are_ignored() {
    let (mut driver, model) = bring_up(small_rings());
    let data = frame(MAC, PEER, 64, 1);
    // EOP and errors but no DD: not done, whatever else it says. The
    // driver waits; the descriptor is still the device's.
    assert!(model.receive_raw(&data, 64, rx_status::EOP | 0xFC, 0xFF));
    assert_eq!(driver.receive(), Ok(None));
    assert!(!driver.rx_pending().expect("peek"));
    assert_eq!(driver.statistics().rx_frames, 0);
}

#[test]
fn random_write_backs_never_break_the_driver() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let long_packets = seed % 2 == 0;
        let (mut driver, model) = bring_up(Config {
            long_packets,
            tx_descriptors: 16,
            ..small_rings()
        });
        let limit = if long_packets { 16_124 } else { MAX_FRAME_LEN };
        let data: Vec<u8> = (0..BUFFER_SIZE).map(|byte| byte as u8).collect();
        let mut ends = 0u64;
        for _ in 0..2000 {
            match rng.below(4) {
                0 => {
                    let length = match rng.below(3) {
                        0 => rng.below(u64::from(u16::MAX) + 1) as u16,
                        _ => rng.below(BUFFER_SIZE as u64 + 1) as u16,
                    };
                    let status = rng.next() as u8;
                    let errors = if rng.below(3) == 0 {
                        rng.next() as u8
                    } else {
                        0
                    };
                    if model.receive_raw(&data, length, status, errors)
                        && status & DONE_END == DONE_END
                    {
                        ends += 1;
                    }
                }
                1 => {
                    let len = 14 + rng.below(1500) as usize;
                    if let Delivery::Delivered(_) = model.receive(&frame(MAC, PEER, len, 7)) {
                        ends += 1;
                    }
                }
                2 => match driver.receive() {
                    Ok(Some(frame)) => {
                        assert!(frame.len() >= 14 && frame.len() <= limit);
                    }
                    Ok(None) => {}
                    Err(error) => panic!("receive failed: {error}"),
                },
                _ => {
                    driver.poll().expect("poll");
                }
            }
        }
        while driver.receive().expect("receive").is_some() {}
        let statistics = driver.statistics();
        assert!(statistics.rx_frames <= ends);
        // A write-back without DD leaves the driver waiting for a
        // descriptor the device has moved past: polls find the ring
        // stalled, and a reset recovers.
        let mut stalled = false;
        for _ in 0..=driver.config().stall_polls {
            stalled |= driver.poll().expect("poll").stalled;
        }
        if stalled {
            let config = *driver.config();
            let device = driver.shutdown();
            driver = e1000::E1000::new(device, config).expect("bring-up again");
        } else if model.rx_descriptors_free() > 0 {
            // An unfinished chain is ended by one EOP write-back.
            assert!(model.receive_raw(&data, 64, DONE_END, 0));
            while driver.receive().expect("receive").is_some() {}
        }
        assert_in_step(&mut driver, &model);
        assert_no_dma_faults(&model);
    }
}

#[test]
fn transmit_errors_reported_by_the_device_are_counted() {
    let (mut driver, model) = bring_up(small_rings());
    model.set_tx_write_back(TxWriteBack::Status(tx_status::DD | tx_status::EC));
    driver.send(&frame(PEER, MAC, 64, 1)).expect("send");
    model.set_tx_write_back(TxWriteBack::Status(tx_status::DD | tx_status::LC));
    driver.send(&frame(PEER, MAC, 64, 2)).expect("send");
    // Garbage in the reserved bits beside DD does not matter.
    model.set_tx_write_back(TxWriteBack::Status(0xF0 | tx_status::DD));
    driver.send(&frame(PEER, MAC, 64, 3)).expect("send");
    let outcome = driver.poll().expect("poll");
    assert_eq!(outcome.tx_completed, 3);
    let statistics = driver.statistics();
    assert_eq!(statistics.tx_errors, 2);
    assert_eq!(statistics.tx_frames, 1);
    assert_eq!(statistics.tx_bytes, 64);
}

#[test]
fn a_transmit_ring_that_never_completes_stays_full_without_harm() {
    let (mut driver, model) = bring_up(small_rings());
    model.set_tx_write_back(TxWriteBack::Withhold);
    for number in 0..7 {
        driver.send(&frame(PEER, MAC, 64, number)).expect("send");
    }
    for _ in 0..10 {
        assert_eq!(driver.poll().expect("poll").tx_completed, 0);
        assert_eq!(
            driver.send(&frame(PEER, MAC, 64, 99)),
            Err(SendError::RingFull)
        );
    }
    assert_eq!(driver.statistics().tx_ring_full, 10);
    // Receiving is unaffected.
    assert_in_step(&mut driver, &model);
}

#[test]
fn rings_the_device_skips_are_reported_stalled_and_a_reset_recovers() {
    let config = Config {
        stall_polls: 5,
        ..small_rings()
    };
    // Transmit: descriptors taken (TDH moves) but never written back.
    let (mut driver, model) = bring_up(config);
    model.set_tx_write_back(TxWriteBack::Withhold);
    driver.send(&frame(PEER, MAC, 64, 1)).expect("send");
    let stalled: Vec<bool> = (0..6)
        .map(|_| driver.poll().expect("poll").stalled)
        .collect();
    assert_eq!(stalled, [false, false, false, false, true, true]);
    assert_eq!(driver.statistics().stalls, 1);
    model.set_tx_write_back(TxWriteBack::Done);
    let device = driver.shutdown();
    let mut driver = e1000::E1000::new(device, config).expect("bring-up again");
    let outgoing = frame(PEER, MAC, 64, 2);
    model.take_transmitted();
    driver.send(&outgoing).expect("send");
    assert_eq!(model.take_transmitted(), vec![outgoing]);
    assert!(!driver.poll().expect("poll").stalled);

    // Receive: a descriptor consumed without DD.
    assert!(model.receive_raw(&[0; 64], 64, rx_status::EOP, 0));
    assert_eq!(driver.receive(), Ok(None));
    let stalled: Vec<bool> = (0..5)
        .map(|_| driver.poll().expect("poll").stalled)
        .collect();
    assert_eq!(stalled, [false, false, false, false, true]);
    let device = driver.shutdown();
    let mut driver = e1000::E1000::new(device, config).expect("bring-up again");
    assert_in_step(&mut driver, &model);
    assert!(!driver.poll().expect("poll").stalled);
    assert_no_dma_faults(&model);
}

#[test]
fn a_working_device_is_never_reported_stalled() {
    let (mut driver, model) = bring_up(Config {
        stall_polls: 2,
        ..small_rings()
    });
    for round in 0..200 {
        if round % 3 == 0 {
            driver.send(&frame(PEER, MAC, 64, round)).expect("send");
        }
        if round % 5 == 0 {
            // Left in the ring across polls: pending, not stalled.
            assert_eq!(
                model.receive(&frame(MAC, PEER, 64, round)),
                Delivery::Delivered(1)
            );
        }
        assert!(!driver.poll().expect("poll").stalled);
        if round % 10 == 9 {
            while driver.receive().expect("receive").is_some() {}
        }
    }
    assert_eq!(driver.statistics().stalls, 0);
}

#[test]
fn a_device_that_vanishes_stops_the_driver_cleanly() {
    let (mut driver, model) = bring_up(small_rings());
    assert_eq!(
        model.receive(&frame(MAC, PEER, 64, 1)),
        Delivery::Delivered(1)
    );
    model.set_gone(true);
    assert_eq!(driver.poll(), Err(Error::Failed));
    assert_eq!(driver.failure(), Some(Error::Pci(PciError::DeviceGone)));
    assert_eq!(
        driver.send(&frame(PEER, MAC, 64, 2)),
        Err(SendError::Failed)
    );
    assert_eq!(driver.receive(), Err(Error::Failed));
    assert_eq!(NetDevice::receive(&mut driver), None);
    // It stays stopped even if the device comes back: a reset is needed.
    model.set_gone(false);
    assert_eq!(driver.poll(), Err(Error::Failed));
    assert_eq!(driver.rx_pending(), Err(Error::Failed));
    let device = driver.shutdown();
    let mut driver = e1000::E1000::new(device, small_rings()).expect("bring-up again");
    assert_in_step(&mut driver, &model);
}

#[test]
fn a_failure_during_transmit_stops_the_driver() {
    let (mut driver, model) = bring_up(small_rings());
    model.set_gone(true);
    assert_eq!(
        driver.send(&frame(PEER, MAC, 64, 1)),
        Err(SendError::Failed)
    );
    assert_eq!(driver.failure(), Some(Error::Pci(PciError::DeviceGone)));
}
