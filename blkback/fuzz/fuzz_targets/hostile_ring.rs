//! Drives the blkif backend engine with a frontend that does whatever the
//! fuzzer says: raw ring slots, rewritten ring indices, garbage xenstore
//! values, honest requests, closes and restarts. The engine must never
//! panic, and a second, honest frontend must still read its data back.
#![no_main]

use blkback::{Blkback, Config, RamDisk};
use libfuzzer_sys::fuzz_target;
use xen_ring::SharedMemory;
use xensim::frontend::blk::{BlkOp, Blkfront, BlkfrontConfig, RSP_OKAY};
use xensim::{Domain, Hypervisor, SimConfig, VbdConfig};

const SECTORS: u64 = 2048;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }
    fn u32(&mut self) -> Option<u32> {
        let mut bytes = [0u8; 4];
        for byte in &mut bytes {
            *byte = self.byte()?;
        }
        Some(u32::from_le_bytes(bytes))
    }
    fn bytes(&mut self, count: usize) -> Vec<u8> {
        let take = count.min(self.0.len());
        let (taken, rest) = self.0.split_at(take);
        self.0 = rest;
        let mut out = taken.to_vec();
        out.resize(count, 0);
        out
    }
}

struct Machine {
    driver: Domain,
    backend: Blkback<Domain, RamDisk>,
}

impl Machine {
    fn pump(&mut self) {
        let mut platform = self.driver.clone();
        let activity = self.driver.poll_activity();
        for event in &activity.watches {
            self.backend
                .on_watch(&mut platform, &event.path, &event.token);
        }
        for port in &activity.ports {
            self.backend.on_event(&mut platform, *port);
        }
        for _ in 0..64 {
            if !self.backend.poll(&mut platform).more_work {
                break;
            }
        }
    }

    fn settle(&mut self, fronts: &mut [&mut Blkfront]) {
        for _ in 0..8 {
            self.pump();
            for front in fronts.iter_mut() {
                let _ = front.step();
            }
        }
    }
}

const NODES: [&str; 8] = [
    "ring-ref",
    "event-channel",
    "protocol",
    "ring-page-order",
    "multi-queue-num-queues",
    "feature-persistent",
    "state",
    "queue-0/ring-ref0",
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    // Small tables keep each run cheap; they still hold every gref and
    // port the two frontends use.
    let xen = Hypervisor::with_config(SimConfig {
        grant_frames: 4,
        evtchn_ports: 256,
        max_maptrack_handles: 4096,
        ..SimConfig::default()
    });
    let driver = xen.create_domain("rumpdisk");
    let mut config = Config::new(driver.domid());
    config.max_persistent_grants = 8;
    let mut backend = Blkback::new(config);
    backend
        .add_device("ram0", RamDisk::new(SECTORS).unwrap())
        .unwrap();
    backend
        .add_device("ram1", RamDisk::new(SECTORS).unwrap())
        .unwrap();
    let mut platform = driver.clone();
    backend.start(&mut platform).unwrap();
    let mut machine = Machine { driver, backend };
    let toolstack = xen.toolstack();

    let attacker = xen.create_domain("attacker");
    let bystander = xen.create_domain("bystander");
    let flavour = match input.byte().unwrap_or(0) % 3 {
        0 => BlkfrontConfig::gnu_mach(),
        1 => BlkfrontConfig::linux(),
        _ => {
            let mut config = BlkfrontConfig::linux();
            config.queues = 1;
            config.ring_page_order = 0;
            config
        }
    };
    let nodes = toolstack
        .attach_vbd(&VbdConfig::new(
            machine.driver.domid(),
            attacker.domid(),
            "ram0",
        ))
        .unwrap();
    let mut evil = Blkfront::new(attacker, &nodes, flavour);
    let mut good_vbd = VbdConfig::new(machine.driver.domid(), bystander.domid(), "ram1");
    good_vbd.vdev = "xvdc".to_string();
    let good_nodes = toolstack.attach_vbd(&good_vbd).unwrap();
    let mut good = Blkfront::new(bystander, &good_nodes, BlkfrontConfig::gnu_mach());
    machine.settle(&mut [&mut evil, &mut good]);
    assert!(good.is_connected());
    let written = vec![0x6b; 4096];
    let id = good
        .submit(
            0,
            BlkOp::Write {
                sector: 8,
                data: written.clone(),
            },
        )
        .unwrap();
    machine.pump();
    assert!(good
        .collect()
        .unwrap()
        .iter()
        .any(|c| c.id == id && c.status == RSP_OKAY));

    let slot_size = evil.abi().slot_size();
    for _ in 0..64 {
        let Some(command) = input.byte() else {
            break;
        };
        let queue = usize::from(input.byte().unwrap_or(0) % 4);
        match command % 9 {
            0 | 1 => {
                let slot = input.bytes(slot_size);
                let _ = evil.push_raw(queue, &slot);
            }
            2 => {
                // A raw slot naming one of the attacker's own granted pages.
                let mut slot = input.bytes(slot_size);
                if let Ok(page) = evil.grant_data_page(false) {
                    let at = if slot_size == 108 { 20 } else { 24 };
                    slot[at..at + 4].copy_from_slice(&page.gref.to_le_bytes());
                }
                let _ = evil.push_raw(queue, &slot);
            }
            3 => {
                if let (Some(memory), Some(value)) = (evil.ring_memory(queue), input.u32()) {
                    let offset = [0, 4, 8, 12][usize::from(input.byte().unwrap_or(0) % 4)];
                    memory.store_u32(offset, value);
                    let _ = evil.notify(queue);
                }
            }
            4 => {
                let key = NODES[usize::from(input.byte().unwrap_or(0)) % NODES.len()];
                let length = usize::from(input.byte().unwrap_or(0) % 24);
                let value: String = input
                    .bytes(length)
                    .into_iter()
                    .map(|byte| char::from(b'0' + byte % 75))
                    .collect();
                let _ = evil.write_node(key, &value);
            }
            5 => {
                let sector = u64::from(input.u32().unwrap_or(0)) % (SECTORS + 16);
                let sectors = 1 + u32::from(input.byte().unwrap_or(0));
                let _ = evil.submit(queue, BlkOp::Read { sector, sectors });
            }
            6 => {
                let _ = evil.begin_close();
            }
            7 => {
                let _ = evil.restart();
            }
            _ => machine.pump(),
        }
        if input.byte().unwrap_or(0) % 2 == 0 {
            machine.pump();
            let _ = evil.step();
            let _ = evil.collect();
        }
    }
    machine.settle(&mut [&mut evil, &mut good]);
    let _ = evil.collect();

    // The bystander is untouched and still served.
    let _ = good.collect();
    let id = good
        .submit(
            0,
            BlkOp::Read {
                sector: 8,
                sectors: 8,
            },
        )
        .unwrap();
    machine.pump();
    let answers = good.collect().unwrap();
    let answer = answers
        .iter()
        .find(|c| c.id == id)
        .expect("bystander answered");
    assert_eq!(answer.status, RSP_OKAY);
    assert!(answer.data.as_deref() == Some(&written[..]));
});
