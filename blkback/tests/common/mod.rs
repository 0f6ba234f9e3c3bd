//! The test rig: a simulated machine with a driver domain running the
//! engine, guests running mock blkfronts, and helpers to drive them.
#![allow(dead_code)]

pub mod devices;

use std::sync::Mutex;

use blkback::{Blkback, BlockDevice, Config, RamDisk};
use xenbus::platform::{TxId, Xenstore};
use xenbus::XenbusState;
use xensim::frontend::blk::{BlkOp, Blkfront, BlkfrontConfig, Completion, RSP_OKAY};
use xensim::{DeviceNodes, Domain, Hypervisor, Toolstack, VbdConfig};

/// Log lines the engine wrote (warnings and above), for tests that check a
/// reason was logged. Shared by all tests of one binary.
pub static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Recorder;

impl log::Log for Recorder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{}", record.args());
            if std::env::var_os("BLKBACK_TEST_LOG").is_some() {
                eprintln!("{}: {line}", record.level());
            }
            LOG.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

static RECORDER: Recorder = Recorder;

/// Installs the recording logger (once per test binary).
pub fn init_log() {
    if log::set_logger(&RECORDER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// Whether some logged line contains every one of `parts`.
pub fn logged(parts: &[&str]) -> bool {
    LOG.lock()
        .unwrap()
        .iter()
        .any(|line| parts.iter().all(|part| line.contains(part)))
}

/// A deterministic generator (xorshift64*), so workloads are seeded.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
    pub fn fill(&mut self, buffer: &mut [u8]) {
        for chunk in buffer.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// A machine with one driver domain serving devices of type `D`.
pub struct Rig<D: BlockDevice> {
    pub xen: Hypervisor,
    pub driver: Domain,
    pub backend: Blkback<Domain, D>,
    pub toolstack: Toolstack,
    next_vdev: u32,
}

impl Rig<RamDisk> {
    /// A rig serving RAM disks `ram0`, `ram1`, ... of `sectors` sectors each.
    pub fn with_ram_disks(count: usize, sectors: u64) -> Self {
        let devices = (0..count)
            .map(|index| (format!("ram{index}"), RamDisk::new(sectors).unwrap()))
            .collect();
        Rig::new(Config::new(1), devices)
    }
}

impl<D: BlockDevice> Rig<D> {
    /// A rig whose driver domain (domid 1) runs an engine with `config`
    /// (its domid is set to the driver's) and `devices`.
    pub fn new(mut config: Config, devices: Vec<(String, D)>) -> Self {
        init_log();
        let xen = Hypervisor::new();
        let driver = xen.create_domain("rumpdisk");
        config.domid = driver.domid();
        let mut backend = Blkback::new(config);
        for (name, device) in devices {
            backend.add_device(&name, device).unwrap();
        }
        let mut platform = driver.clone();
        backend.start(&mut platform).unwrap();
        let toolstack = xen.toolstack();
        Rig {
            xen,
            driver,
            backend,
            toolstack,
            next_vdev: 0,
        }
    }

    /// Creates a guest domain.
    pub fn guest(&self, name: &str) -> Domain {
        self.xen.create_domain(name)
    }

    /// Attaches disk `params` to `guest` (as the toolstack does) with a
    /// fresh vdev, and returns the nodes and a frontend for it.
    pub fn attach(
        &mut self,
        guest: &Domain,
        params: &str,
        writable: bool,
        config: BlkfrontConfig,
    ) -> (DeviceNodes, Blkfront) {
        let mut vbd = VbdConfig::new(self.driver.domid(), guest.domid(), params);
        vbd.vdev = format!("xvd{}", (b'b' + self.next_vdev as u8) as char);
        vbd.writable = writable;
        self.next_vdev += 1;
        let nodes = self.toolstack.attach_vbd(&vbd).unwrap();
        let front = Blkfront::new(guest.clone(), &nodes, config);
        (nodes, front)
    }

    /// Attaches with a toolstack configuration the caller adjusted.
    pub fn attach_with(
        &mut self,
        guest: &Domain,
        adjust: impl FnOnce(&mut VbdConfig),
        config: BlkfrontConfig,
    ) -> (DeviceNodes, Blkfront) {
        let mut vbd = VbdConfig::new(self.driver.domid(), guest.domid(), "ram0");
        vbd.vdev = format!("xvd{}", (b'b' + self.next_vdev as u8) as char);
        self.next_vdev += 1;
        adjust(&mut vbd);
        let nodes = self.toolstack.attach_vbd(&vbd).unwrap();
        let front = Blkfront::new(guest.clone(), &nodes, config);
        (nodes, front)
    }

    /// Feeds the driver domain's pending watches and events to the engine
    /// and polls until it has nothing left to do. Returns whether anything
    /// happened.
    pub fn pump(&mut self) -> bool {
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

    /// One backend poll only (for fairness tests).
    pub fn poll_once(&mut self) {
        let mut platform = self.driver.clone();
        let activity = self.driver.poll_activity();
        for event in &activity.watches {
            self.backend
                .on_watch(&mut platform, &event.path, &event.token);
        }
        for port in &activity.ports {
            self.backend.on_event(&mut platform, *port);
        }
        self.backend.poll(&mut platform);
    }

    /// Alternates between the backend and the frontends until neither has
    /// anything left to do.
    pub fn settle(&mut self, fronts: &mut [&mut Blkfront]) {
        let mut quiet = 0;
        for _ in 0..1000 {
            let before: Vec<_> = fronts.iter().map(|front| front.state()).collect();
            let backend_busy = self.pump();
            for front in fronts.iter_mut() {
                front.step().unwrap();
            }
            let after: Vec<_> = fronts.iter().map(|front| front.state()).collect();
            if !backend_busy && before == after {
                quiet += 1;
                if quiet == 2 {
                    return;
                }
            } else {
                quiet = 0;
            }
        }
        panic!("the rig did not settle");
    }

    /// Connects `front` (and settles); panics if it does not connect.
    pub fn connect(&mut self, front: &mut Blkfront) {
        self.settle(&mut [front]);
        assert!(front.is_connected(), "frontend did not connect: {front:?}");
    }

    /// Submits `op`, runs the rig until it is answered, and returns the answer.
    pub fn request(&mut self, front: &mut Blkfront, queue: usize, op: BlkOp) -> Completion {
        let id = front.submit(queue, op).unwrap();
        self.wait_for(front, id)
    }

    /// Runs the rig until request `id` of `front` is answered.
    pub fn wait_for(&mut self, front: &mut Blkfront, id: u64) -> Completion {
        for _ in 0..100 {
            self.pump();
            let completions = front.collect().unwrap();
            if let Some(completion) = completions.into_iter().find(|c| c.id == id) {
                return completion;
            }
        }
        panic!("request {id} was never answered");
    }

    /// Writes `data` at `sector` and checks it succeeded.
    pub fn write(&mut self, front: &mut Blkfront, sector: u64, data: &[u8]) {
        let completion = self.request(
            front,
            0,
            BlkOp::Write {
                sector,
                data: data.to_vec(),
            },
        );
        assert_eq!(completion.status, RSP_OKAY, "write at {sector} failed");
    }

    /// Reads `bytes` at `sector` and checks it succeeded.
    pub fn read(&mut self, front: &mut Blkfront, sector: u64, bytes: usize) -> Vec<u8> {
        let completion = self.request(
            front,
            0,
            BlkOp::Read {
                sector,
                sectors: (bytes / 512) as u32,
            },
        );
        assert_eq!(completion.status, RSP_OKAY, "read at {sector} failed");
        completion.data.unwrap()
    }

    /// The backend's published state for `nodes`.
    pub fn backend_state(&self, nodes: &DeviceNodes) -> Option<XenbusState> {
        self.read_node(&format!("{}/state", nodes.backend))
            .and_then(|state| XenbusState::parse(&state))
    }

    /// Reads any node (as dom0).
    pub fn read_node(&self, path: &str) -> Option<String> {
        self.xen.dom0().read(TxId::NONE, path).ok()
    }

    /// Detaches `nodes` the way the toolstack does: `online = 0` and state
    /// Closing, the frontend closes, wait for Closed, remove the nodes.
    pub fn detach(&mut self, nodes: &DeviceNodes, front: &mut Blkfront) {
        self.toolstack.begin_detach(nodes).unwrap();
        self.settle(&mut [front]);
        assert_eq!(self.backend_state(nodes), Some(XenbusState::Closed));
        self.toolstack.finish_detach(nodes).unwrap();
        self.settle(&mut [front]);
    }
}
