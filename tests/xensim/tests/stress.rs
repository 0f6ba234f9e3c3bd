//! Randomised and multi-threaded checks of the simulator itself.

use xen_ring::{BackRing, FrontRing, SharedMemory};
use xenbus::platform::{CopyOp, GrantCopy, GrantError, GrantSpan};
use xensim::{Hypervisor, SimConfig, LONG_WAIT, PAGE_SIZE};

/// SplitMix64, written out here so the test does not share the
/// simulator's generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// What the copy hypercall should say, derived from Xen's rules
/// independently of the simulator's code: domain, then gref, then the
/// entry's type, grantee and read-only bit, then the page bounds.
#[derive(Clone, Copy)]
struct Grant {
    granted: bool,
    to_backend: bool,
    readonly: bool,
}

fn expected(
    domain_ok: bool,
    gref_in_table: bool,
    grant: Grant,
    write: bool,
    offset: usize,
    length: usize,
) -> Result<(), GrantError> {
    if length == 0 {
        return Ok(());
    }
    if !domain_ok {
        return Err(GrantError::BadDomain);
    }
    if !gref_in_table {
        return Err(GrantError::BadGntref);
    }
    if !grant.granted || !grant.to_backend || (write && grant.readonly) {
        return Err(GrantError::GeneralError);
    }
    if offset + length > PAGE_SIZE {
        return Err(GrantError::BadCopyArg);
    }
    Ok(())
}

#[test]
fn random_copies_match_the_rules() {
    let xen = Hypervisor::with_config(SimConfig {
        grant_frames: 1,
        ..SimConfig::default()
    });
    let frontend = xen.create_domain("guest");
    let mut backend = xen.create_domain("driver");
    let other = xen.create_domain("other");
    let size = frontend.grant_table_size();
    let mut grants = vec![
        Grant {
            granted: false,
            to_backend: false,
            readonly: false,
        };
        size as usize
    ];
    let mut rng = Rng(42);
    let mut issued = Vec::new();
    let (gfn, page) = frontend.alloc_page();
    for _ in 0..400 {
        let readonly = rng.below(2) == 0;
        let to_backend = rng.below(4) != 0;
        let grantee = if to_backend {
            backend.domid()
        } else {
            other.domid()
        };
        let gref = frontend.grant_access(grantee, gfn, readonly).unwrap();
        issued.push(gref);
        grants[gref as usize] = Grant {
            granted: true,
            to_backend,
            readonly,
        };
    }
    let mut checked = [0usize; 5];
    for round in 0..4000 {
        let domain_ok = rng.below(10) != 0;
        let domid = if domain_ok { frontend.domid() } else { 500 };
        let gref = match rng.below(10) {
            0 => size + rng.below(1 << 20) as u32,
            1 => rng.below(u64::from(size)) as u32,
            _ => issued[rng.below(issued.len() as u64) as usize],
        };
        let offset = if rng.below(2) == 0 {
            rng.below(PAGE_SIZE as u64) as usize
        } else {
            rng.below(64) as usize
        };
        let length = rng.below(600) as usize;
        let write = rng.below(2) == 0;
        let grant = grants.get(gref as usize).copied().unwrap_or(Grant {
            granted: false,
            to_backend: false,
            readonly: false,
        });
        let want = expected(domain_ok, gref < size, grant, write, offset, length);
        let span = GrantSpan {
            domid,
            gref,
            offset: offset as u16,
        };
        let mut buffer = vec![round as u8; length];
        let mut status = [Ok(())];
        if write {
            let mut ops = [CopyOp::ToGrant {
                source: &buffer,
                destination: span,
            }];
            backend.copy(&mut ops, &mut status);
            if status[0].is_ok() && length > 0 {
                let mut back = vec![0; length];
                page.read(offset, &mut back);
                assert_eq!(back, buffer, "round {round}: data not written");
            }
        } else {
            let mut ops = [CopyOp::FromGrant {
                source: span,
                destination: &mut buffer,
            }];
            backend.copy(&mut ops, &mut status);
        }
        assert_eq!(
            status[0], want,
            "round {round}: gref {gref} offset {offset} length {length} write {write}"
        );
        let bucket = match want {
            Ok(()) => 0,
            Err(GrantError::BadDomain) => 1,
            Err(GrantError::BadGntref) => 2,
            Err(GrantError::GeneralError) => 3,
            Err(_) => 4,
        };
        checked[bucket] += 1;
    }
    // Every outcome was exercised.
    assert!(checked.iter().all(|&count| count > 20), "{checked:?}");
}

#[test]
fn threads_exchange_many_requests_without_lost_wakeups() {
    const SLOT: usize = 8;
    const REQUESTS: u64 = 20_000;
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let (gfn, page) = frontend.alloc_page();
    let gref = frontend.grant_access(backend.domid(), gfn, false).unwrap();
    let mut front = FrontRing::init(page, SLOT).unwrap();
    let frontend_port = frontend.alloc_unbound(backend.domid()).unwrap();

    let server = {
        let backend = backend.clone();
        let frontend_id = frontend.domid();
        std::thread::spawn(move || {
            let mapping = backend.map_grants(frontend_id, &[gref], true).unwrap();
            let port = backend.bind(frontend_id, frontend_port).unwrap();
            let mut ring = BackRing::new(&mapping, SLOT).unwrap();
            let mut served = 0u64;
            loop {
                let ports = backend.wait_ports(LONG_WAIT);
                assert!(!ports.is_empty(), "backend starved: lost wakeup");
                loop {
                    let mut slot = [0; SLOT];
                    while ring.next_request(&mut slot).unwrap() {
                        let value = u64::from_le_bytes(slot);
                        if value == u64::MAX {
                            ring.push_responses();
                            backend.send(port).unwrap();
                            return served;
                        }
                        served += 1;
                        ring.push_response(&(value + 1).to_le_bytes()).unwrap();
                    }
                    if ring.push_responses_and_check_notify() {
                        backend.send(port).unwrap();
                    }
                    if !ring.final_check_for_requests().unwrap() {
                        break;
                    }
                }
            }
        })
    };

    let mut sent = 0u64;
    let mut received = 0u64;
    let mut sum = 0u64;
    while received < REQUESTS {
        while sent < REQUESTS && !front.is_full() {
            front.push_request(&sent.to_le_bytes()).unwrap();
            sent += 1;
        }
        if front.push_requests_and_check_notify() {
            frontend.send(frontend_port).unwrap();
        }
        loop {
            let mut slot = [0; SLOT];
            while front.next_response(&mut slot).unwrap() {
                sum += u64::from_le_bytes(slot);
                received += 1;
            }
            if !front.final_check_for_responses().unwrap() {
                break;
            }
        }
        if received < sent && front.unconsumed_responses().unwrap() == 0 {
            let ports = frontend.wait_ports(LONG_WAIT);
            assert!(!ports.is_empty(), "frontend starved: lost wakeup");
        }
    }
    front.push_request(&u64::MAX.to_le_bytes()).unwrap();
    front.push_requests();
    frontend.send(frontend_port).unwrap();
    assert_eq!(server.join().unwrap(), REQUESTS);
    // Every value 0..REQUESTS came back incremented exactly once.
    assert_eq!(sum, REQUESTS * (REQUESTS + 1) / 2);
    assert_eq!(front.memory().len(), PAGE_SIZE);
}

/// Interleaves transactions and plain writes at random and checks that
/// every commit the store accepts is serialisable: what the transaction
/// read is still what a model of the store holds at commit time, and the
/// store then holds exactly the model's contents.
#[test]
fn committed_transactions_are_serialisable() {
    use std::collections::BTreeMap;
    use xenbus::platform::{TxId, Xenstore, XsError};

    const KEYS: u64 = 6;
    let xen = Hypervisor::new();
    let mut dom0 = xen.dom0();
    dom0.mkdir(TxId::NONE, "/t").unwrap();
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    let mut rng = Rng(7);

    struct Open {
        tx: TxId,
        /// First observation of each key, before the transaction wrote it.
        reads: BTreeMap<String, Option<String>>,
        writes: Vec<(String, Option<String>)>,
    }
    let mut open: Vec<Open> = Vec::new();
    let (mut commits, mut conflicts) = (0, 0);
    for step in 0..3000 {
        let key = format!("/t/k{}", rng.below(KEYS));
        match rng.below(10) {
            // Start a transaction.
            0 if open.len() < 4 => {
                let tx = dom0.transaction_start().unwrap();
                open.push(Open {
                    tx,
                    reads: BTreeMap::new(),
                    writes: Vec::new(),
                });
            }
            // A plain write or removal outside any transaction.
            1 => {
                if rng.below(3) == 0 {
                    dom0.rm(TxId::NONE, &key).unwrap();
                    model.remove(&key);
                } else {
                    let value = format!("v{step}");
                    dom0.write(TxId::NONE, &key, &value).unwrap();
                    model.insert(key, value);
                }
            }
            // Commit (or abort) a transaction.
            2 | 3 if !open.is_empty() => {
                let index = rng.below(open.len() as u64) as usize;
                let transaction = open.swap_remove(index);
                let commit = rng.below(5) != 0;
                match dom0.transaction_end(transaction.tx, commit) {
                    Ok(()) if commit => {
                        for (key, seen) in &transaction.reads {
                            assert_eq!(
                                model.get(key),
                                seen.as_ref(),
                                "step {step}: committed a transaction that read a stale {key}"
                            );
                        }
                        for (key, value) in transaction.writes {
                            match value {
                                Some(value) => model.insert(key, value),
                                None => model.remove(&key),
                            };
                        }
                        commits += 1;
                    }
                    Ok(()) => {}
                    Err(XsError::Eagain) => conflicts += 1,
                    Err(error) => panic!("step {step}: {error:?}"),
                }
            }
            // Read, write or remove inside a transaction.
            _ if !open.is_empty() => {
                let index = rng.below(open.len() as u64) as usize;
                let transaction = &mut open[index];
                let written = transaction.writes.iter().any(|(k, _)| *k == key);
                match rng.below(3) {
                    0 => {
                        let value = match dom0.read(transaction.tx, &key) {
                            Ok(value) => Some(value),
                            Err(XsError::Enoent) => None,
                            Err(error) => panic!("{error:?}"),
                        };
                        if !written {
                            transaction.reads.entry(key).or_insert(value);
                        }
                    }
                    1 => {
                        let value = format!("t{step}");
                        dom0.write(transaction.tx, &key, &value).unwrap();
                        transaction.writes.push((key, Some(value)));
                    }
                    _ => {
                        dom0.rm(transaction.tx, &key).unwrap();
                        transaction.writes.push((key, None));
                    }
                }
            }
            _ => {}
        }
        // The live store always holds exactly the model.
        if step % 50 == 0 {
            let mut live = BTreeMap::new();
            for name in dom0.directory(TxId::NONE, "/t").unwrap() {
                let path = format!("/t/{name}");
                live.insert(path.clone(), dom0.read(TxId::NONE, &path).unwrap());
            }
            assert_eq!(live, model, "step {step}");
        }
    }
    assert!(
        commits > 50 && conflicts > 50,
        "{commits} commits, {conflicts} conflicts"
    );
}

/// Domains on several threads increment one counter in transactions,
/// retrying on EAGAIN: no increment may be lost.
#[test]
fn concurrent_transactional_increments_are_not_lost() {
    use xenbus::platform::{Access, Permission, TxId, Xenstore, XsError};

    const THREADS: u64 = 4;
    const INCREMENTS: u64 = 200;
    let xen = Hypervisor::new();
    let mut dom0 = xen.dom0();
    dom0.write(TxId::NONE, "/counter", "0").unwrap();
    dom0.set_perms(
        TxId::NONE,
        "/counter",
        &[Permission {
            domid: 0,
            access: Access::Both,
        }],
    )
    .unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|index| {
            let mut domain = xen.create_domain(&format!("worker{index}"));
            std::thread::spawn(move || {
                let mut conflicts = 0;
                for _ in 0..INCREMENTS {
                    loop {
                        let tx = domain.transaction_start().unwrap();
                        let value: u64 = domain.read(tx, "/counter").unwrap().parse().unwrap();
                        domain
                            .write(tx, "/counter", &(value + 1).to_string())
                            .unwrap();
                        match domain.transaction_end(tx, true) {
                            Ok(()) => break,
                            Err(XsError::Eagain) => conflicts += 1,
                            Err(error) => panic!("{error:?}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(
        dom0.read(TxId::NONE, "/counter").unwrap(),
        (THREADS * INCREMENTS).to_string()
    );
}
