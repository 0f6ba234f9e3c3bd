//! Bring-up against the 82540EM model: reset, Ethernet address, link,
//! ring and interrupt set-up, refusals, and shutdown.

mod common;

use common::{assert_no_dma_faults, bring_up, frame, small_rings, MAC, PEER};
use e1000::model::{Delivery, Model, DMA_BASE};
use e1000::registers::{self as reg, interrupt, rah, rctl, tctl};
use e1000::{Config, Error, E1000};
use pcidev::{
    InterruptMode, PciError, COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE, COMMAND_MEMORY_SPACE,
};

fn bring_up_error(model: &Model, config: Config) -> Error {
    match E1000::new(model.clone(), config) {
        Ok(_) => panic!("bring-up succeeded"),
        Err((error, _)) => error,
    }
}

#[test]
fn bring_up_programs_the_device() {
    let (driver, model) = bring_up(Config::default());
    assert_eq!(driver.mac_address(), MAC);
    assert!(driver.link_up());
    assert!(model.link_up());
    assert_eq!(driver.failure(), None);

    let command = model.command();
    assert_ne!(command & COMMAND_BUS_MASTER, 0);
    assert_ne!(command & COMMAND_MEMORY_SPACE, 0);
    assert_eq!(model.interrupt_mode(), Some(InterruptMode::Intx));

    let receive = model.register(reg::RCTL);
    for bit in [rctl::EN, rctl::BAM, rctl::SECRC, rctl::UPE, rctl::MPE] {
        assert_ne!(receive & bit, 0, "RCTL bit {bit:#x}");
    }
    assert_eq!(receive & (rctl::BSIZE_MASK | rctl::BSEX | rctl::LPE), 0);
    let transmit = model.register(reg::TCTL);
    assert_ne!(transmit & tctl::EN, 0);
    assert_ne!(transmit & tctl::PSP, 0);
    assert_ne!(model.register(reg::TIPG), 0);
    assert_eq!(model.register(reg::ITR), 50_000 / 256);

    assert_eq!(model.register(reg::RDLEN), 256 * 16);
    assert_eq!(model.register(reg::TDLEN), 256 * 16);
    // DMA memory sits above 4 GiB: the high halves must be programmed.
    let rx_base =
        u64::from(model.register(reg::RDBAL)) | (u64::from(model.register(reg::RDBAH)) << 32);
    let tx_base =
        u64::from(model.register(reg::TDBAL)) | (u64::from(model.register(reg::TDBAH)) << 32);
    assert!(rx_base >= DMA_BASE && tx_base >= DMA_BASE && rx_base != tx_base);
    assert_eq!(rx_base % 16, 0);
    assert_eq!(tx_base % 16, 0);
    assert_eq!(model.register(reg::RDH), 0);
    assert_eq!(model.register(reg::RDT), 255);
    assert_eq!(model.rx_descriptors_free(), 255);
    assert_eq!(model.register(reg::TDH), 0);
    assert_eq!(model.register(reg::TDT), 0);

    let low = model.register(reg::RAL0).to_le_bytes();
    let high = model.register(reg::RAH0);
    assert_eq!(&low[..], &MAC[0..4]);
    assert_eq!(&high.to_le_bytes()[0..2], &MAC[4..6]);
    assert_ne!(high & rah::AV, 0);

    let mask = model.register(reg::IMS);
    for cause in [
        interrupt::LSC,
        interrupt::RXT0,
        interrupt::RXO,
        interrupt::TXDW,
    ] {
        assert_ne!(mask & cause, 0, "cause {cause:#x} unmasked");
    }
    assert_no_dma_faults(&model);
}

#[test]
fn address_comes_from_the_eeprom_when_the_reset_did_not_load_it() {
    let model = Model::new(MAC);
    model.set_load_address_at_reset(false);
    let driver = E1000::new(model.clone(), Config::default()).expect("bring-up");
    assert_eq!(driver.mac_address(), MAC);
    // And the filter is programmed from it: unicast to us arrives even
    // without promiscuous mode.
    drop(driver);
    let model = Model::new(MAC);
    model.set_load_address_at_reset(false);
    let mut driver = E1000::new(
        model.clone(),
        Config {
            promiscuous: false,
            ..Config::default()
        },
    )
    .expect("bring-up");
    let to_us = frame(MAC, PEER, 64, 1);
    assert_eq!(model.receive(&to_us), Delivery::Delivered(1));
    assert_eq!(driver.receive(), Ok(Some(to_us)));
}

#[test]
fn eeprom_word_order_is_low_byte_first() {
    let model = Model::new([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
    model.set_load_address_at_reset(false);
    let driver = E1000::new(model, Config::default()).expect("bring-up");
    assert_eq!(driver.mac_address(), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
}

#[test]
fn a_slow_reset_is_waited_for_and_a_stuck_one_is_an_error() {
    let model = Model::new(MAC);
    model.set_reset_reads(50);
    let config = Config {
        register_poll_limit: 100,
        ..small_rings()
    };
    assert!(E1000::new(model.clone(), config).is_ok());

    let model = Model::new(MAC);
    model.set_reset_reads(u32::MAX);
    assert_eq!(bring_up_error(&model, config), Error::ResetTimeout);
    assert_eq!(model.allocated_bytes(), 0);
}

#[test]
fn a_silent_eeprom_is_an_error() {
    let model = Model::new(MAC);
    model.set_load_address_at_reset(false);
    model.set_eeprom_answers(false);
    let config = Config {
        register_poll_limit: 100,
        ..small_rings()
    };
    assert_eq!(bring_up_error(&model, config), Error::EepromTimeout);
}

#[test]
fn a_multicast_or_blank_address_is_refused() {
    for first_word in [0x0001u16, 0x0000] {
        let model = Model::new(MAC);
        model.set_load_address_at_reset(false);
        model.set_eeprom_word(0, first_word);
        if first_word == 0 {
            model.set_eeprom_word(1, 0);
            model.set_eeprom_word(2, 0);
        }
        assert_eq!(
            bring_up_error(&model, small_rings()),
            Error::NoEthernetAddress
        );
    }
}

#[test]
fn other_devices_and_bad_ring_sizes_are_refused() {
    let model = Model::new(MAC);
    model.set_device_id(0x10D3);
    assert_eq!(
        bring_up_error(&model, small_rings()),
        Error::UnsupportedDevice {
            vendor: 0x8086,
            device: 0x10D3
        }
    );
    for size in [0u16, 4, 12, 4104] {
        let model = Model::new(MAC);
        let config = Config {
            rx_descriptors: size,
            ..small_rings()
        };
        assert_eq!(bring_up_error(&model, config), Error::InvalidRingSize);
        let config = Config {
            tx_descriptors: size,
            ..small_rings()
        };
        assert_eq!(bring_up_error(&model, config), Error::InvalidRingSize);
    }
    // Long frames need a transmit ring that can hold one.
    let model = Model::new(MAC);
    let config = Config {
        long_packets: true,
        ..small_rings()
    };
    assert_eq!(bring_up_error(&model, config), Error::InvalidRingSize);
    // The largest ring the manual allows works.
    let model = Model::new(MAC);
    let config = Config {
        rx_descriptors: 4096,
        tx_descriptors: 8,
        ..Config::default()
    };
    assert!(E1000::new(model.clone(), config).is_ok());
    assert_eq!(model.rx_descriptors_free(), 4095);
}

#[test]
fn running_out_of_dma_memory_is_an_error_and_leaks_nothing_unprogrammed() {
    let model = Model::new(MAC);
    model.set_dma_limit(Some(8 * 16 + 4096));
    assert_eq!(
        bring_up_error(&model, small_rings()),
        Error::Pci(PciError::OutOfMemory)
    );
    assert_eq!(model.allocated_bytes(), 0);
}

#[test]
fn a_vanished_device_fails_bring_up() {
    let model = Model::new(MAC);
    model.set_gone(true);
    assert_eq!(
        bring_up_error(&model, small_rings()),
        Error::Pci(PciError::DeviceGone)
    );
}

#[test]
fn shutdown_stops_the_device_and_frees_its_memory() {
    let (mut driver, model) = bring_up(small_rings());
    let outgoing = frame(PEER, MAC, 100, 1);
    driver.send(&outgoing).expect("send");
    assert_eq!(
        model.receive(&frame(MAC, PEER, 100, 2)),
        Delivery::Delivered(1)
    );
    assert!(model.allocated_bytes() > 0);
    let model_back = driver.shutdown();
    assert_eq!(model.allocated_bytes(), 0);
    assert_eq!(model_back.interrupt_mode(), None);
    assert_eq!(model.register(reg::RCTL), 0);
    assert_eq!(
        model.receive(&frame(MAC, PEER, 100, 3)),
        Delivery::NotReceiving
    );
    assert_no_dma_faults(&model);
}

#[test]
fn shutdown_of_a_vanished_device_leaks_rather_than_frees() {
    let (driver, model) = bring_up(small_rings());
    let allocated = model.allocated_bytes();
    model.set_gone(true);
    let _ = driver.shutdown();
    assert_eq!(model.allocated_bytes(), allocated);
}

#[test]
fn the_device_can_be_brought_up_again_after_shutdown() {
    let (driver, model) = bring_up(small_rings());
    let device = driver.shutdown();
    let mut driver = E1000::new(device, small_rings()).expect("second bring-up");
    let incoming = frame(MAC, PEER, 80, 4);
    assert_eq!(model.receive(&incoming), Delivery::Delivered(1));
    assert_eq!(driver.receive(), Ok(Some(incoming)));
    assert_no_dma_faults(&model);
}

#[test]
fn without_an_interrupt_the_device_is_polled() {
    let model = Model::new(MAC);
    model.set_line_routed(false);
    let mut driver = match E1000::new(model.clone(), Config::default()) {
        Ok(driver) => driver,
        Err((error, _)) => panic!("bring-up without interrupts failed: {error}"),
    };
    assert_eq!(model.interrupt_mode(), None);
    // Every cause masked and the line off: nothing can assert it.
    assert_eq!(model.register(reg::IMS), 0);
    assert_ne!(model.command() & COMMAND_INTX_DISABLE, 0);
    // Frames still move, found by polling alone.
    let incoming = frame(MAC, PEER, 100, 1);
    assert_eq!(model.receive(&incoming), Delivery::Delivered(1));
    let outcome = driver.poll().expect("poll");
    assert!(outcome.rx_pending);
    assert_eq!(driver.receive(), Ok(Some(incoming)));
    let outgoing = frame(PEER, MAC, 64, 2);
    driver.send(&outgoing).expect("send");
    assert_eq!(model.take_transmitted(), vec![outgoing]);
    assert_eq!(driver.poll().expect("poll").tx_completed, 1);
    assert_eq!(driver.statistics().interrupts, 0);
}
