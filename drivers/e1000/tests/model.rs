//! The model on its own, driven through the pcidev traits with the
//! manual's numbers written out literally (317453, chapter 13), so that a
//! misreading shared by the driver's register table and the model shows.

use e1000::model::{Delivery, Model, DMA_BASE};
use e1000::registers as reg;
use pcidev::{ConfigSpace, Dma, DmaBuffer, InterruptMode, Interrupts, Mmio, PciError};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF];

#[test]
fn register_offsets_are_the_manuals() {
    let table = [
        (reg::CTRL, 0x0000),
        (reg::STATUS, 0x0008),
        (reg::EERD, 0x0014),
        (reg::ICR, 0x00C0),
        (reg::ITR, 0x00C4),
        (reg::ICS, 0x00C8),
        (reg::IMS, 0x00D0),
        (reg::IMC, 0x00D8),
        (reg::RCTL, 0x0100),
        (reg::TCTL, 0x0400),
        (reg::TIPG, 0x0410),
        (reg::RDBAL, 0x2800),
        (reg::RDBAH, 0x2804),
        (reg::RDLEN, 0x2808),
        (reg::RDH, 0x2810),
        (reg::RDT, 0x2818),
        (reg::TDBAL, 0x3800),
        (reg::TDBAH, 0x3804),
        (reg::TDLEN, 0x3808),
        (reg::TDH, 0x3810),
        (reg::TDT, 0x3818),
        (reg::MPC, 0x4010),
        (reg::MTA, 0x5200),
        (reg::RAL0, 0x5400),
        (reg::RAH0, 0x5404),
    ];
    for (ours, manual) in table {
        assert_eq!(ours, manual);
    }
    assert_eq!(reg::ctrl::RST, 1 << 26);
    assert_eq!(reg::ctrl::SLU, 1 << 6);
    assert_eq!(reg::status::LU, 1 << 1);
    assert_eq!(reg::interrupt::LSC, 1 << 2);
    assert_eq!(reg::interrupt::RXO, 1 << 6);
    assert_eq!(reg::interrupt::RXT0, 1 << 7);
    assert_eq!(reg::rctl::BAM, 1 << 15);
    assert_eq!(reg::rctl::SECRC, 1 << 26);
    assert_eq!(reg::tctl::PSP, 1 << 3);
}

#[test]
fn config_space_identifies_an_82540em_and_only_command_is_writable() {
    let mut model = Model::new(MAC);
    assert_eq!(model.config_read32(0), Ok(0x100E_8086));
    model.config_write16(4, 0x0006).unwrap();
    assert_eq!(model.config_read16(4), Ok(0x0006));
    model.config_write16(0, 0x1234).unwrap();
    assert_eq!(model.config_read16(0), Ok(0x8086));
    assert_eq!(model.config_read16(3), Err(PciError::Misaligned));
    assert_eq!(model.config_read32(256), Err(PciError::OutOfBounds));
}

#[test]
fn registers_have_their_side_effects() {
    let mut model = Model::new(MAC);
    // EERD: start bit 0, done bit 4, address 15:8, data 31:16.
    model.write32(0, 0x14, (1 << 8) | 1).unwrap();
    let eerd = model.read32(0, 0x14).unwrap();
    assert_ne!(eerd & (1 << 4), 0);
    assert_eq!(eerd >> 16, u32::from(u16::from_le_bytes([MAC[2], MAC[3]])));
    // Reset loads RAL0/RAH0 from the EEPROM, with AV.
    model.write32(0, 0x0000, 1 << 26).unwrap();
    assert_eq!(model.read32(0, 0x5400), Ok(0xAB00_5452));
    assert_eq!(model.read32(0, 0x5404), Ok(0x8000_EFCD));
    // RST reads back set for a few reads, then clears.
    let mut reads = 0;
    while model.read32(0, 0x0000).unwrap() & (1 << 26) != 0 {
        reads += 1;
        assert!(reads < 100);
    }
    // ICS sets causes, ICR read returns and clears them.
    model.write32(0, 0xC8, 0b101).unwrap();
    assert_eq!(model.read32(0, 0xC0), Ok(0b101));
    assert_eq!(model.read32(0, 0xC0), Ok(0));
    // IMS sets, IMC clears, IMS reads the mask.
    model.write32(0, 0xD0, 0xF0).unwrap();
    model.write32(0, 0xD8, 0x30).unwrap();
    assert_eq!(model.read32(0, 0xD0), Ok(0xC0));
    // Link: up only with the cable in and SLU set.
    assert_eq!(model.read32(0, 0x08).unwrap() & 2, 0);
    model.write32(0, 0x00, 1 << 6).unwrap();
    assert_ne!(model.read32(0, 0x08).unwrap() & 2, 0);
    model.set_cable(false);
    assert_eq!(model.read32(0, 0x08).unwrap() & 2, 0);
    // Accesses outside BAR 0, misaligned, to other BARs, or 64 bits wide.
    assert_eq!(model.read32(0, 0x2_0000), Err(PciError::OutOfBounds));
    assert_eq!(model.read32(0, 2), Err(PciError::Misaligned));
    assert_eq!(model.read32(1, 0), Err(PciError::NoSuchBar));
    assert_eq!(model.read64(0, 0), Err(PciError::Denied));
}

#[test]
fn the_intx_line_fires_once_and_again_after_unmask_while_asserted() {
    let mut model = Model::new(MAC);
    assert_eq!(
        model.enable_interrupts(InterruptMode::Msi, 1),
        Err(PciError::NoSuchVector)
    );
    assert_eq!(model.enable_interrupts(InterruptMode::Intx, 1), Ok(1));
    model.write32(0, 0xD0, 1 << 2).unwrap();
    model.write32(0, 0xC8, 1 << 2).unwrap();
    assert_eq!(model.take_fired(), Some(0));
    assert_eq!(model.take_fired(), None);
    // Still asserted (ICR not read): unmasking fires again, as a level
    // does.
    model.unmask(0);
    assert_eq!(model.take_fired(), Some(0));
    model.read32(0, 0xC0).unwrap();
    model.unmask(0);
    assert_eq!(model.take_fired(), None);
}

#[test]
fn dma_memory_is_above_4_gib_and_stray_device_accesses_are_faults() {
    let mut model = Model::new(MAC);
    let ring = model.allocate(8 * 16, 128).unwrap();
    let buffer = model.allocate(4096, 4096).unwrap();
    assert!(ring.bus_address().0 >= DMA_BASE);
    assert_eq!(buffer.bus_address().0 % 4096, 0);
    assert_eq!(buffer.write(4090, &[0; 7]), Err(PciError::OutOfBounds));
    // A receive descriptor pointing at memory nobody allocated.
    let mut descriptor = [0u8; 16];
    descriptor[0..8].copy_from_slice(&0xDEAD_0000u64.to_le_bytes());
    ring.write(0, &descriptor).unwrap();
    let base = ring.bus_address().0;
    model.write32(0, 0x00, 1 << 6).unwrap();
    model.write32(0, 0x2800, base as u32).unwrap();
    model.write32(0, 0x2804, (base >> 32) as u32).unwrap();
    model.write32(0, 0x2808, 128).unwrap();
    model.write32(0, 0x2818, 7).unwrap();
    model.write32(0, 0x0100, (1 << 1) | (1 << 3)).unwrap();
    assert_eq!(model.receive(&[0xFF; 64]), Delivery::Fault);
    let faults = model.dma_faults();
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].address, 0xDEAD_0000);
    assert!(faults[0].write);
    // The faulting descriptor was not consumed (RDH stays). A freed
    // buffer is gone for the device too.
    assert_eq!(model.register(0x2810), 0);
    let freed = buffer.bus_address().0;
    model.free(buffer);
    descriptor[0..8].copy_from_slice(&freed.to_le_bytes());
    ring.write(0, &descriptor).unwrap();
    assert_eq!(model.receive(&[0xFF; 64]), Delivery::Fault);
    assert_eq!(model.dma_faults()[1].address, freed);
}
