//! Controller bring-up against the model: reset, enable, identify, queue
//! creation, and every way a controller can refuse to come up.

mod common;

use blkback::{BlockDevice, IoRequest, SubmitError};
use nvme::{Config, Nvme, NvmeError, Status};
use pcidev::{capabilities, register, CapabilityId, ConfigSpace, InterruptMode};

use common::{bring_up, read, ready, write};
use nvme::model::{Model, Options};

#[test]
fn comes_up_and_describes_the_namespace() {
    let (mut nvme, model) = ready(Options::default(), Config::new(1));
    let info = nvme.info();
    assert_eq!(info.sectors, 4096);
    assert_eq!(info.physical_sector_size, 512);
    assert!(info.flush);
    assert!(!info.read_only);
    assert_eq!(info.discard.map(|discard| discard.granularity), Some(512));
    assert_eq!(info.queue_depth, 63);
    let controller = nvme.identify_controller().unwrap();
    assert_eq!((controller.vendor_id, controller.namespaces), (0x1b36, 1));
    assert!(controller.volatile_write_cache);
    // Bus mastering was turned on, and the capability walk sees MSI-X.
    let device = nvme.device_mut();
    let command = device.config_read16(register::COMMAND).unwrap();
    assert_eq!(command & 0b110, 0b110);
    let found = capabilities(device).unwrap();
    assert_eq!(found[0].id, CapabilityId::MSI_X);
    assert!(model.enabled());
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}

#[test]
fn resets_a_controller_left_enabled() {
    let options = Options {
        start_enabled: true,
        ..Options::default()
    };
    let (mut nvme, model) = ready(options, Config::new(1));
    write(&mut nvme, &model, 0, vec![5; 512]);
    assert_eq!(read(&mut nvme, &model, 0, 512), vec![5; 512]);
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}

#[test]
fn waits_for_ready_for_exactly_cap_to() {
    // CAP.TO = 4 means 2 s.
    let options = Options {
        stuck_not_ready: true,
        timeout_units: 4,
        ..Options::default()
    };
    let model = Model::new(options);
    let mut nvme = Nvme::new(model.clone(), Config::new(1));
    assert_eq!(nvme.poll_bring_up(0), Status::Starting);
    assert_eq!(nvme.poll_bring_up(1_999), Status::Starting);
    assert_eq!(
        nvme.poll_bring_up(2_000),
        Status::Failed(NvmeError::ReadyTimeout)
    );
    assert!(!model.enabled());
}

#[test]
fn a_slow_controller_is_waited_for() {
    let options = Options {
        ready_after_reads: 20,
        start_enabled: true,
        ..Options::default()
    };
    let model = Model::new(options);
    let mut nvme = Nvme::new(model.clone(), Config::new(1));
    let mut now = 0;
    while nvme.poll_bring_up(now) == Status::Starting {
        now += 10;
        assert!(now < 1_000, "bring-up did not finish");
    }
    assert_eq!(nvme.status(), Status::Ready);
}

#[test]
fn a_controller_that_stays_ready_fails_the_reset() {
    let options = Options {
        start_enabled: true,
        stuck_ready: true,
        ..Options::default()
    };
    let model = Model::new(options);
    let mut nvme = Nvme::new(model, Config::new(1));
    assert_eq!(nvme.poll_bring_up(0), Status::Starting);
    assert_eq!(
        nvme.poll_bring_up(1_000),
        Status::Failed(NvmeError::ResetTimeout)
    );
}

#[test]
fn fatal_status_during_enable_fails() {
    let model = Model::new(Options::default());
    model.make_fatal();
    let mut nvme = Nvme::new(model, Config::new(1));
    assert_eq!(
        bring_up(&mut nvme),
        Status::Failed(NvmeError::ControllerFatal)
    );
}

#[test]
fn a_removed_device_fails() {
    let model = Model::new(Options::default());
    model.remove();
    let mut nvme = Nvme::new(model, Config::new(1));
    assert_eq!(bring_up(&mut nvme), Status::Failed(NvmeError::DeviceGone));
}

#[test]
fn missing_and_inactive_namespaces_fail() {
    let model = Model::new(Options::default());
    let mut nvme = Nvme::new(model, Config::new(2));
    assert_eq!(
        bring_up(&mut nvme),
        Status::Failed(NvmeError::NoSuchNamespace)
    );
    let model = Model::new(Options {
        namespaces: 2,
        ..Options::default()
    });
    let mut nvme = Nvme::new(model.clone(), Config::new(2));
    assert_eq!(
        bring_up(&mut nvme),
        Status::Failed(NvmeError::NoSuchNamespace)
    );
    // A stopped driver fails requests at once, returning the buffer.
    nvme.submit(
        blkback::IoTag(1),
        IoRequest::Read {
            sector: 0,
            buffer: vec![1; 512],
        },
    )
    .unwrap();
    let completion = nvme.poll_completion().unwrap();
    assert_eq!(completion.result, Err(blkback::IoError::Media));
    assert_eq!(completion.buffer, vec![1; 512]);
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}

#[test]
fn unsupported_block_sizes_fail() {
    let model = Model::new(Options {
        block_shift: 13,
        namespace_blocks: 64,
        ..Options::default()
    });
    let mut nvme = Nvme::new(model, Config::new(1));
    assert_eq!(
        bring_up(&mut nvme),
        Status::Failed(NvmeError::UnsupportedFormat)
    );
}

#[test]
fn works_without_interrupts_and_with_msi_or_a_wide_doorbell_stride() {
    for (modes, stride) in [
        (vec![], 0),
        (vec![InterruptMode::Msi], 0),
        (vec![InterruptMode::Intx], 3),
    ] {
        let polled = modes.is_empty();
        let options = Options {
            interrupt_modes: modes,
            doorbell_stride: stride,
            ..Options::default()
        };
        let (mut nvme, model) = ready(options, Config::new(1));
        write(&mut nvme, &model, 9, vec![3; 1024]);
        assert_eq!(read(&mut nvme, &model, 9, 1024), vec![3; 1024]);
        assert_eq!(model.interrupts_raised() == 0, polled);
        assert!(model.faults().is_empty(), "{:?}", model.faults());
    }
}

#[test]
fn four_kib_blocks_refuse_unaligned_requests() {
    let options = Options {
        block_shift: 12,
        namespace_blocks: 256,
        ..Options::default()
    };
    let (mut nvme, model) = ready(options, Config::new(1));
    let info = nvme.info();
    assert_eq!((info.sectors, info.physical_sector_size), (2048, 4096));
    for (sector, bytes) in [(1, 4096), (0, 512), (8, 6144)] {
        let request = IoRequest::Read {
            sector,
            buffer: vec![0; bytes],
        };
        assert!(matches!(
            nvme.submit(blkback::IoTag(0), request),
            Err(SubmitError::Refused(_))
        ));
    }
    write(&mut nvme, &model, 8, vec![9; 8192]);
    assert_eq!(&model.media()[4096..12288], &[9; 8192][..]);
}

#[test]
fn requests_before_bring_up_are_refused() {
    let model = Model::new(Options::default());
    let mut nvme = Nvme::new(model, Config::new(1));
    assert!(matches!(
        nvme.submit(blkback::IoTag(0), IoRequest::Flush),
        Err(SubmitError::Refused(IoRequest::Flush))
    ));
}

#[test]
fn an_impossible_namespace_size_gets_errors_not_panics() {
    // 2^64 - 1 blocks of 4 KiB do not fit 64 bits of bytes.
    let options = Options {
        block_shift: 12,
        namespace_blocks: 16,
        reported_blocks: Some(u64::MAX),
        ..Options::default()
    };
    let (mut nvme, model) = ready(options, Config::new(1));
    let sectors = nvme.info().sectors;
    assert_eq!(sectors, u64::MAX / 512 / 8 * 8);
    // Past the real medium the controller answers LBA Out of Range.
    let request = IoRequest::Read {
        sector: 1 << 40,
        buffer: vec![0; 4096],
    };
    nvme.submit(blkback::IoTag(1), request).unwrap();
    model.process();
    let completion = nvme.poll_completion().unwrap();
    assert_eq!(completion.result, Err(blkback::IoError::Media));
    let request = IoRequest::Read {
        sector: sectors - 8,
        buffer: vec![0; 4096],
    };
    nvme.submit(blkback::IoTag(2), request).unwrap();
    model.process();
    assert_eq!(
        nvme.poll_completion().unwrap().result,
        Err(blkback::IoError::Media)
    );
    assert_eq!(nvme.status(), Status::Ready);
}

#[test]
fn misaligned_dma_memory_from_the_platform_is_not_used() {
    let model = Model::new(Options {
        misaligned_dma: true,
        ..Options::default()
    });
    let mut nvme = Nvme::new(model.clone(), Config::new(1));
    assert_eq!(
        bring_up(&mut nvme),
        Status::Failed(NvmeError::Pci(pcidev::PciError::OutOfMemory))
    );
    // Every buffer was handed back; the controller never saw one.
    assert_eq!(model.dma_buffers(), 0);
    assert!(!model.enabled());
}

#[test]
fn an_admin_command_that_never_completes_times_out() {
    let model = Model::new(Options {
        swallow_admin: Some(nvme::spec::admin::IDENTIFY),
        ready_after_reads: 0,
        ..Options::default()
    });
    let mut config = Config::new(1);
    config.admin_timeout_ms = 3_000;
    let mut nvme = Nvme::new(model.clone(), config);
    assert_eq!(nvme.poll_bring_up(100), Status::Starting);
    assert_eq!(nvme.poll_bring_up(3_099), Status::Starting);
    assert_eq!(
        nvme.poll_bring_up(3_100),
        Status::Failed(NvmeError::AdminTimeout)
    );
    assert!(!model.enabled());
}

#[test]
fn a_refused_queue_creation_fails_with_its_status() {
    // Invalid Queue Size (command specific, 0x02).
    let model = Model::new(Options {
        fail_admin: Some((nvme::spec::admin::CREATE_IO_CQ, 0x0102)),
        ..Options::default()
    });
    let mut nvme = Nvme::new(model, Config::new(1));
    assert_eq!(
        bring_up(&mut nvme),
        Status::Failed(NvmeError::AdminFailed {
            opcode: nvme::spec::admin::CREATE_IO_CQ,
            status: 0x0102
        })
    );
}

#[test]
fn arbitrary_identify_data_gives_a_consistent_disk_or_an_error() {
    let mut ready_count = 0;
    for seed in 0..300 {
        let model = Model::new(Options {
            garbage_identify: Some(seed),
            ..Options::default()
        });
        let mut nvme = Nvme::new(model.clone(), Config::new(1));
        match bring_up(&mut nvme) {
            Status::Ready => {
                ready_count += 1;
                let info = nvme.info();
                let block = u64::from(info.physical_sector_size);
                assert!((512..=4096).contains(&block) && block.is_power_of_two());
                assert_eq!(info.sectors % (block / 512), 0);
                // Whatever the device claims, I/O gets an answer.
                let request = IoRequest::Read {
                    sector: 0,
                    buffer: vec![0; block as usize],
                };
                if nvme.submit(blkback::IoTag(1), request).is_ok() {
                    model.process();
                    assert!(nvme.poll_completion().is_some(), "seed {seed}");
                }
            }
            Status::Failed(_) => {}
            status => panic!("seed {seed}: bring-up stuck in {status:?}"),
        }
    }
    // Odd seeds almost never describe a usable format; even seeds do, with
    // random sizes and capabilities.
    assert!(ready_count > 100, "only {ready_count} came up");
}
