//! Frames both ways through the driver and the 82540EM model: sizes,
//! padding, descriptor chains, ring wraparound, overrun, link flaps,
//! interrupts, and the netback device trait.

mod common;

use common::{assert_no_dma_faults, bring_up, frame, small_rings, BROADCAST, MAC, PEER};
use e1000::descriptor::rx_status;
use e1000::model::Delivery;
use e1000::registers::{self as reg, interrupt};
use e1000::{Config, SendError, MAX_FRAME_LEN, MAX_LONG_FRAME_LEN};
use netback::{DeviceError, Frame, NetDevice, Offloads};

#[test]
fn every_frame_size_from_60_to_1514_reaches_the_wire_byte_exact() {
    let (mut driver, model) = bring_up(Config::default());
    let mut sent = Vec::new();
    let mut on_wire = Vec::new();
    for len in 60..=1514 {
        let outgoing = frame(PEER, MAC, len, len as u32);
        driver.send(&outgoing).expect("send");
        sent.push(outgoing);
        if len % 100 == 0 {
            driver.poll().expect("poll");
            on_wire.extend(model.take_transmitted());
        }
    }
    driver.poll().expect("poll");
    on_wire.extend(model.take_transmitted());
    assert_eq!(on_wire.len(), sent.len());
    for (wire, sent) in on_wire.iter().zip(&sent) {
        assert_eq!(wire, sent, "frame of {} bytes", sent.len());
    }
    let statistics = driver.statistics();
    assert_eq!(statistics.tx_frames, sent.len() as u64);
    assert_eq!(
        statistics.tx_bytes,
        sent.iter().map(|frame| frame.len() as u64).sum::<u64>()
    );
    assert_eq!(statistics.tx_ring_full, 0);
    assert_no_dma_faults(&model);
}

#[test]
fn short_frames_are_padded_by_the_device_and_lengths_are_bounded() {
    let (mut driver, model) = bring_up(small_rings());
    let header_only = frame(BROADCAST, MAC, 14, 0);
    driver.send(&header_only).expect("send");
    let wire = model.take_transmitted();
    assert_eq!(wire.len(), 1);
    assert_eq!(wire[0].len(), 60);
    assert_eq!(&wire[0][..14], &header_only[..]);
    assert!(wire[0][14..].iter().all(|&byte| byte == 0));

    assert_eq!(driver.send(&header_only[..13]), Err(SendError::TooShort));
    assert_eq!(driver.send(&[]), Err(SendError::TooShort));
    let vlan_sized = frame(PEER, MAC, MAX_FRAME_LEN, 1);
    assert_eq!(driver.send(&vlan_sized), Ok(()));
    let too_long = frame(PEER, MAC, MAX_FRAME_LEN + 1, 1);
    assert_eq!(driver.send(&too_long), Err(SendError::TooLarge));
    assert_eq!(driver.statistics().tx_bad_length, 3);
    assert_eq!(model.take_transmitted(), vec![vlan_sized]);
}

#[test]
fn long_frames_go_out_over_several_descriptors() {
    let config = Config {
        long_packets: true,
        tx_descriptors: 16,
        ..small_rings()
    };
    let (mut driver, model) = bring_up(config);
    let descriptors_before = model.counters().tx_descriptors;
    let jumbo = frame(PEER, MAC, 9000, 9);
    driver.send(&jumbo).expect("send");
    assert_eq!(model.counters().tx_descriptors - descriptors_before, 5);
    let largest = frame(PEER, MAC, MAX_LONG_FRAME_LEN, 10);
    // 8 buffers of 2048 bytes, with 5 of 15 in flight until reaped: the
    // driver reaps when the ring looks full.
    driver.send(&largest).expect("send");
    assert_eq!(model.take_transmitted(), vec![jumbo, largest]);
    let too_long = frame(PEER, MAC, MAX_LONG_FRAME_LEN + 1, 11);
    assert_eq!(driver.send(&too_long), Err(SendError::TooLarge));
    driver.poll().expect("poll");
    assert_eq!(driver.statistics().tx_frames, 2);
    assert_no_dma_faults(&model);
}

#[test]
fn received_frames_arrive_byte_exact_and_filtered_as_configured() {
    let (mut driver, model) = bring_up(Config {
        promiscuous: false,
        ..Config::default()
    });
    let mut expected = Vec::new();
    for (number, len) in (60..=1518).step_by(7).enumerate() {
        let destination = if number % 2 == 0 { MAC } else { BROADCAST };
        let incoming = frame(destination, PEER, len, number as u32);
        assert_eq!(model.receive(&incoming), Delivery::Delivered(1));
        expected.push(incoming);
        if number % 50 == 49 {
            while let Some(received) = driver.receive().expect("receive") {
                assert_eq!(received, expected.remove(0));
            }
        }
    }
    while let Some(received) = driver.receive().expect("receive") {
        assert_eq!(received, expected.remove(0));
    }
    assert!(expected.is_empty());

    // Not for us and not broadcast: the filter keeps it out.
    let elsewhere = frame(PEER, [0x02, 0, 0, 0, 0, 9], 64, 1);
    assert_eq!(model.receive(&elsewhere), Delivery::Filtered);
    let multicast = frame([0x01, 0x00, 0x5E, 0, 0, 1], PEER, 64, 1);
    assert_eq!(model.receive(&multicast), Delivery::Filtered);
    // Without long-packet mode the device refuses longer frames.
    let long = frame(MAC, PEER, MAX_FRAME_LEN + 1, 1);
    assert_eq!(model.receive(&long), Delivery::TooLong);
    assert_eq!(driver.receive(), Ok(None));
    assert_no_dma_faults(&model);
}

#[test]
fn a_promiscuous_uplink_takes_every_destination() {
    let (mut driver, model) = bring_up(small_rings());
    let for_a_guest = frame([0x00, 0x16, 0x3E, 0, 0, 1], PEER, 64, 1);
    let multicast = frame([0x33, 0x33, 0, 0, 0, 1], PEER, 64, 2);
    assert_eq!(model.receive(&for_a_guest), Delivery::Delivered(1));
    assert_eq!(model.receive(&multicast), Delivery::Delivered(1));
    assert_eq!(driver.receive(), Ok(Some(for_a_guest)));
    assert_eq!(driver.receive(), Ok(Some(multicast)));
}

#[test]
fn frames_spanning_descriptors_are_assembled() {
    let (mut driver, model) = bring_up(Config {
        long_packets: true,
        ..Config::default()
    });
    for len in [2048, 2049, 4096, 9000, MAX_LONG_FRAME_LEN] {
        let incoming = frame(MAC, PEER, len, len as u32);
        assert_eq!(
            model.receive(&incoming),
            Delivery::Delivered(len.div_ceil(2048))
        );
        assert_eq!(driver.receive(), Ok(Some(incoming)));
    }
    let statistics = driver.statistics();
    assert_eq!(statistics.rx_frames, 5);
    assert_no_dma_faults(&model);
}

#[test]
fn a_frame_whose_end_has_not_arrived_waits_in_the_driver() {
    let (mut driver, model) = bring_up(Config {
        long_packets: true,
        tx_descriptors: 16,
        ..small_rings()
    });
    let whole = frame(MAC, PEER, 5000, 3);
    assert!(model.receive_raw(&whole[..2048], 2048, rx_status::DD, 0));
    assert!(model.receive_raw(&whole[2048..4096], 2048, rx_status::DD, 0));
    assert_eq!(driver.receive(), Ok(None));
    // The two cleaned descriptors went back to the device already.
    assert_eq!(model.rx_descriptors_free(), 7);
    assert!(model.receive_raw(
        &whole[4096..],
        (5000 - 4096) as u16,
        rx_status::DD | rx_status::EOP,
        0
    ));
    assert_eq!(driver.receive(), Ok(Some(whole)));
    assert_no_dma_faults(&model);
}

#[test]
fn rings_wrap_around_many_times_in_both_directions() {
    let (mut driver, model) = bring_up(small_rings());
    let mut received = 0;
    for round in 0..1000u32 {
        let len = 60 + (round as usize * 37) % 1400;
        let outgoing = frame(PEER, MAC, len, round);
        driver.send(&outgoing).expect("send");
        // Three frames in at a time, two out, so the rings fill and drain
        // at different paces.
        let incoming = frame(MAC, PEER, len, round + 5000);
        assert_eq!(model.receive(&incoming), Delivery::Delivered(1));
        assert_eq!(driver.receive(), Ok(Some(incoming)));
        received += 1;
        assert_eq!(model.take_transmitted(), vec![outgoing]);
        if round % 3 == 0 {
            driver.poll().expect("poll");
        }
    }
    driver.poll().expect("poll");
    let statistics = driver.statistics();
    assert_eq!(statistics.rx_frames, received);
    assert_eq!(statistics.tx_frames, 1000);
    assert_eq!(statistics.tx_ring_full, 0);
    assert_eq!(model.counters().bad_tail_writes, 0);
    assert_no_dma_faults(&model);
}

#[test]
fn a_full_transmit_ring_is_reported_and_counted() {
    let (mut driver, model) = bring_up(small_rings());
    // The model completes a frame inside the TDT write; withholding the
    // write-back keeps descriptors in flight as slow hardware would.
    model.set_tx_write_back(e1000::model::TxWriteBack::Withhold);
    for number in 0..7 {
        driver.send(&frame(PEER, MAC, 100, number)).expect("send");
    }
    assert_eq!(
        driver.send(&frame(PEER, MAC, 100, 7)),
        Err(SendError::RingFull)
    );
    assert_eq!(driver.statistics().tx_ring_full, 1);
    assert_eq!(driver.poll().expect("poll").tx_completed, 0);
    assert_eq!(driver.statistics().tx_frames, 0);
    assert_eq!(model.take_transmitted().len(), 7);
}

#[test]
fn overrun_is_counted_and_reception_resumes() {
    let (mut driver, model) = bring_up(small_rings());
    let frames: Vec<Vec<u8>> = (0..10).map(|n| frame(MAC, PEER, 200, n)).collect();
    let deliveries: Vec<Delivery> = frames.iter().map(|f| model.receive(f)).collect();
    assert_eq!(deliveries[..7], [Delivery::Delivered(1); 7]);
    assert_eq!(deliveries[7..], [Delivery::Overrun; 3]);
    let outcome = driver.poll().expect("poll");
    assert_ne!(outcome.causes & interrupt::RXO, 0);
    assert!(outcome.rx_pending);
    let statistics = driver.statistics();
    assert_eq!(statistics.rx_overruns, 1);
    assert_eq!(statistics.rx_missed, 3);
    assert_eq!(statistics.rx_no_buffers, 3);
    for expected in &frames[..7] {
        assert_eq!(driver.receive().as_ref(), Ok(&Some(expected.clone())));
    }
    assert_eq!(driver.receive(), Ok(None));
    assert!(!driver.poll().expect("poll").rx_pending);
    assert_eq!(model.rx_descriptors_free(), 7);
    for extra in &frames[7..] {
        assert_eq!(model.receive(extra), Delivery::Delivered(1));
        assert_eq!(driver.receive().as_ref(), Ok(&Some(extra.clone())));
    }
    assert_no_dma_faults(&model);
}

#[test]
fn the_link_flaps() {
    let (mut driver, model) = bring_up(small_rings());
    assert!(driver.link_up());
    for flap in 0..5 {
        model.set_cable(false);
        let outcome = driver.poll().expect("poll");
        assert_ne!(outcome.causes & interrupt::LSC, 0);
        assert!(outcome.link_changed && !outcome.link_up);
        assert!(!driver.link_up());
        assert_eq!(
            driver.send(&frame(PEER, MAC, 64, flap)),
            Err(SendError::LinkDown)
        );
        assert_eq!(
            model.receive(&frame(MAC, PEER, 64, flap)),
            Delivery::NotReceiving
        );
        // Nothing changes while it stays down.
        let outcome = driver.poll().expect("poll");
        assert!(!outcome.link_changed && !outcome.link_up);

        model.set_cable(true);
        let outcome = driver.poll().expect("poll");
        assert!(outcome.link_changed && outcome.link_up);
        let outgoing = frame(PEER, MAC, 64, flap + 100);
        driver.send(&outgoing).expect("send after link up");
        assert_eq!(model.take_transmitted(), vec![outgoing]);
    }
    let statistics = driver.statistics();
    assert_eq!(statistics.link_changes, 10);
    assert_eq!(statistics.tx_link_down, 5);
    assert!(statistics.interrupts >= 10);
}

#[test]
fn interrupts_fire_once_per_event_and_again_after_unmask() {
    let (mut driver, model) = bring_up(small_rings());
    driver.poll().expect("poll");
    let before = driver.statistics().interrupts;
    assert_eq!(
        model.receive(&frame(MAC, PEER, 64, 1)),
        Delivery::Delivered(1)
    );
    assert_eq!(
        model.receive(&frame(MAC, PEER, 64, 2)),
        Delivery::Delivered(1)
    );
    let outcome = driver.poll().expect("poll");
    assert_ne!(outcome.causes & interrupt::RXT0, 0);
    assert!(outcome.rx_pending);
    // Two frames, one interrupt: the vector stayed masked until the poll.
    assert_eq!(driver.statistics().interrupts, before + 1);
    // Nothing new: no interrupt, no causes.
    let outcome = driver.poll().expect("poll");
    assert_eq!(outcome.causes, 0);
    assert_eq!(driver.statistics().interrupts, before + 1);
    // A cause raised after the unmask fires again.
    model.raise(interrupt::LSC);
    driver.poll().expect("poll");
    assert_eq!(driver.statistics().interrupts, before + 2);
    // Causes the driver does not unmask do not interrupt.
    assert_eq!(model.register(reg::IMS) & interrupt::TXQE, 0);
    model.raise(interrupt::TXQE);
    driver.poll().expect("poll");
    assert_eq!(driver.statistics().interrupts, before + 2);
}

#[test]
fn the_driver_is_netbacks_uplink_device() {
    let (mut driver, model) = bring_up(small_rings());
    assert_eq!(driver.offloads(), Offloads::NONE);
    let outgoing = frame(PEER, MAC, 300, 1);
    driver
        .transmit(Frame::new(outgoing.clone()))
        .expect("transmit");
    assert_eq!(model.take_transmitted(), vec![outgoing]);
    let incoming = frame(MAC, PEER, 300, 2);
    assert_eq!(model.receive(&incoming), Delivery::Delivered(1));
    assert_eq!(NetDevice::receive(&mut driver), Some(Frame::new(incoming)));
    assert_eq!(NetDevice::receive(&mut driver), None);
    assert_eq!(
        driver.transmit(Frame::new(frame(PEER, MAC, 2000, 3))),
        Err(DeviceError::TooLarge)
    );
    model.set_cable(false);
    driver.poll().expect("poll");
    assert_eq!(
        driver.transmit(Frame::new(frame(PEER, MAC, 64, 4))),
        Err(DeviceError::LinkDown)
    );
    model.set_cable(true);
    driver.poll().expect("poll");
    model.set_tx_write_back(e1000::model::TxWriteBack::Withhold);
    for number in 0..7 {
        driver
            .transmit(Frame::new(frame(PEER, MAC, 64, number)))
            .expect("transmit");
    }
    assert_eq!(
        driver.transmit(Frame::new(frame(PEER, MAC, 64, 8))),
        Err(DeviceError::Busy)
    );
}

#[test]
fn one_receive_call_returns_at_most_one_frame() {
    let (mut driver, model) = bring_up(small_rings());
    for number in 0..5 {
        assert_eq!(
            model.receive(&frame(MAC, PEER, 64, number)),
            Delivery::Delivered(1)
        );
    }
    assert_eq!(driver.receive().map(|f| f.is_some()), Ok(true));
    assert!(driver.rx_pending().expect("peek"));
    let mut count = 1;
    while driver.receive().expect("receive").is_some() {
        count += 1;
    }
    assert_eq!(count, 5);
    assert!(!driver.rx_pending().expect("peek"));
}

#[test]
fn a_link_that_comes_up_after_bring_up_is_followed() {
    let model = e1000::model::Model::new(MAC);
    model.set_cable(false);
    let mut driver = match e1000::E1000::new(model.clone(), small_rings()) {
        Ok(driver) => driver,
        Err((error, _)) => panic!("bring-up failed: {error}"),
    };
    assert!(!driver.link_up());
    assert_eq!(
        driver.send(&frame(PEER, MAC, 64, 1)),
        Err(SendError::LinkDown)
    );
    model.set_cable(true);
    let outcome = driver.poll().expect("poll");
    assert!(outcome.link_changed && outcome.link_up);
    let outgoing = frame(PEER, MAC, 64, 2);
    driver.send(&outgoing).expect("send");
    assert_eq!(model.take_transmitted(), vec![outgoing]);
}

#[test]
fn random_traffic_matches_what_the_device_and_driver_accepted() {
    for seed in 1..=10u64 {
        let mut rng = common::Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let long_packets = seed % 2 == 1;
        let (mut driver, model) = bring_up(Config {
            rx_descriptors: 16,
            tx_descriptors: 16,
            long_packets,
            ..Config::default()
        });
        model.set_tx_write_back(e1000::model::TxWriteBack::Done);
        let limit = if long_packets {
            MAX_LONG_FRAME_LEN
        } else {
            MAX_FRAME_LEN
        };
        // The independent expectation: what the model says it delivered
        // must come out of the driver in order, and what the driver says
        // it queued must appear on the wire in order.
        let mut expected_in = std::collections::VecDeque::new();
        let mut expected_out = Vec::new();
        let mut got_out = Vec::new();
        for step in 0..3000u32 {
            match rng.below(6) {
                0 | 1 => {
                    let len = 14 + rng.below(limit as u64 - 13) as usize;
                    let incoming = frame(MAC, PEER, len, step);
                    match model.receive(&incoming) {
                        Delivery::Delivered(_) => expected_in.push_back(incoming),
                        Delivery::Overrun => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                2 | 3 => {
                    if let Some(received) = driver.receive().expect("receive") {
                        assert_eq!(Some(received), expected_in.pop_front());
                    }
                }
                4 => {
                    let len = 14 + rng.below(limit as u64 - 13) as usize;
                    let outgoing = frame(PEER, MAC, len, step);
                    match driver.send(&outgoing) {
                        Ok(()) => expected_out.push(outgoing),
                        Err(SendError::RingFull) => {}
                        Err(error) => panic!("send: {error}"),
                    }
                }
                _ => {
                    driver.poll().expect("poll");
                    got_out.extend(model.take_transmitted());
                }
            }
        }
        while let Some(received) = driver.receive().expect("receive") {
            assert_eq!(Some(received), expected_in.pop_front());
        }
        assert!(expected_in.is_empty());
        // The clear-on-read counters are gathered by polls.
        driver.poll().expect("poll");
        got_out.extend(model.take_transmitted());
        // The wire carries padded frames; none here is shorter than 60
        // bytes once padded, so compare after cutting the padding.
        assert_eq!(got_out.len(), expected_out.len());
        for (wire, sent) in got_out.iter().zip(&expected_out) {
            assert_eq!(&wire[..sent.len()], &sent[..]);
            assert!(wire[sent.len()..].iter().all(|&byte| byte == 0));
        }
        assert_eq!(
            driver.statistics().rx_missed,
            model.counters().rx_overruns,
            "every overrun is counted by the driver"
        );
        assert_no_dma_faults(&model);
    }
}
