//! blkback serving an NVMe namespace (the controller model) to a mock Linux
//! blkfront in the simulator: the whole path a guest's I/O takes in the
//! rumpdisk domain, with multi-queue rings, indirect requests, persistent
//! grants, flush and discard.

mod common;

use blkback::{Blkback, Config as BlkbackConfig};
use nvme::spec::nvm;
use nvme::{Config, Nvme, NvmeError, Status};
use xenbus::platform::{TxId, Xenstore};
use xensim::frontend::blk::{BlkOp, Blkfront, BlkfrontConfig, Completion, RSP_ERROR, RSP_OKAY};
use xensim::{Domain, Hypervisor, VbdConfig};

use common::{pattern, ready};
use nvme::model::{Model, Options};

struct Rig {
    xen: Hypervisor,
    driver: Domain,
    backend: Blkback<Domain, Nvme<Model>>,
}

impl Rig {
    fn pump(&mut self) -> bool {
        let mut platform = self.driver.clone();
        let activity = self.driver.poll_activity();
        let mut happened = !activity.ports.is_empty() || !activity.watches.is_empty();
        for event in &activity.watches {
            self.backend
                .on_watch(&mut platform, &event.path, &event.token);
        }
        for port in &activity.ports {
            self.backend.on_event(&mut platform, *port);
        }
        for _ in 0..10_000 {
            let status = self.backend.poll(&mut platform);
            let waiting = self
                .backend
                .vbds()
                .iter()
                .any(|vbd| vbd.device_in_flight > 0);
            if !status.more_work && !waiting {
                break;
            }
            happened = true;
        }
        happened
    }

    fn connect(&mut self, front: &mut Blkfront) {
        for _ in 0..100 {
            let busy = self.pump();
            front.step().unwrap();
            if front.is_connected() && !busy {
                return;
            }
        }
        panic!("frontend did not connect: {front:?}");
    }

    fn request(&mut self, front: &mut Blkfront, queue: usize, op: BlkOp) -> Completion {
        let id = front.submit(queue, op).unwrap();
        for _ in 0..100 {
            self.pump();
            if let Some(done) = front.collect().unwrap().into_iter().find(|c| c.id == id) {
                return done;
            }
        }
        panic!("request {id} was never answered");
    }
}

#[test]
fn a_linux_guest_uses_an_nvme_namespace_through_blkback() {
    // 32 MiB namespace; MDTS 5 (128 KiB) so 1 MiB indirect requests split.
    let options = Options {
        namespace_blocks: 65536,
        ..Options::default()
    };
    let (nvme, model) = ready(options, Config::new(1));
    model.set_auto(true);
    let xen = Hypervisor::new();
    let driver = xen.create_domain("rumpdisk");
    let mut backend = Blkback::new(BlkbackConfig::new(driver.domid()));
    backend.add_device("nvme0", nvme).unwrap();
    let mut platform = driver.clone();
    backend.start(&mut platform).unwrap();
    let mut rig = Rig {
        xen,
        driver,
        backend,
    };
    let guest = rig.xen.create_domain("linux");
    let vbd = VbdConfig::new(rig.driver.domid(), guest.domid(), "nvme0");
    let nodes = rig.xen.toolstack().attach_vbd(&vbd).unwrap();
    let mut front = Blkfront::new(guest.clone(), &nodes, BlkfrontConfig::linux());
    rig.connect(&mut front);
    let disk = front.disk().unwrap();
    assert_eq!(disk.sectors, 65536);
    assert!(disk.flush && disk.discard);
    let node = rig.xen.dom0().read(
        TxId::NONE,
        &format!("{}/discard-granularity", nodes.backend),
    );
    assert_eq!(node.as_deref(), Ok("512"));

    for queue in 0..front.queue_count() {
        let sector = 4096 * queue as u64;
        let big = pattern(queue as u64, 1 << 20);
        let write = BlkOp::Write {
            sector,
            data: big.clone(),
        };
        assert_eq!(rig.request(&mut front, queue, write).status, RSP_OKAY);
        let read = BlkOp::Read {
            sector,
            sectors: 2048,
        };
        let done = rig.request(&mut front, queue, read);
        assert_eq!(done.status, RSP_OKAY);
        assert!(done.data.unwrap() == big, "read back different data");
        let at = sector as usize * 512;
        assert!(model.media()[at..at + big.len()] == big[..]);
    }
    assert!(model.commands(nvm::WRITE) >= 8 * front.queue_count() as u64);

    assert_eq!(rig.request(&mut front, 0, BlkOp::Flush).status, RSP_OKAY);
    assert!(model.commands(nvm::FLUSH) >= 1);
    assert!(model.power_cut()[..1 << 20] == pattern(0, 1 << 20)[..]);

    let discard = BlkOp::Discard {
        sector: 0,
        sectors: 16,
        secure: false,
    };
    assert_eq!(rig.request(&mut front, 0, discard).status, RSP_OKAY);
    assert_eq!(&model.media()[..8192], &[0; 8192][..]);

    // A medium error reaches the guest as BLKIF_RSP_ERROR, and only once.
    model.inject(nvm::READ, 0x0281);
    let read = BlkOp::Read {
        sector: 64,
        sectors: 8,
    };
    assert_eq!(rig.request(&mut front, 0, read).status, RSP_ERROR);
    let read = BlkOp::Read {
        sector: 64,
        sectors: 8,
    };
    assert_eq!(rig.request(&mut front, 0, read).status, RSP_OKAY);

    // The domain's clock ticks the driver through blkback. A controller
    // that goes fatal fails the guest's requests; nothing hangs.
    let nvme = rig.backend.device_mut("nvme0").unwrap();
    assert_eq!(nvme.tick(1_000), Status::Ready);
    model.make_fatal();
    assert_eq!(
        rig.backend.device_mut("nvme0").unwrap().tick(2_000),
        Status::Failed(NvmeError::ControllerFatal)
    );
    let write = BlkOp::Write {
        sector: 0,
        data: vec![1; 4096],
    };
    assert_eq!(rig.request(&mut front, 1, write).status, RSP_ERROR);
    assert_eq!(rig.request(&mut front, 0, BlkOp::Flush).status, RSP_ERROR);
    assert!(model.faults().is_empty(), "{:?}", model.faults());
}
