//! Differential test of `xen-ring` against Xen's own `io/ring.h` macros.
//!
//! `tests/c/ring_harness.c` is built with gcc against
//! `/usr/include/xen/io/ring.h` and plays one end of a ring whose page image
//! lives in a file, one step per invocation. Each scenario runs two rings
//! through the same random sequence of steps:
//!
//! * ring A: the C end and the other end in Rust, taking turns on the file;
//! * ring B: both ends in Rust, over one [`LocalMemory`].
//!
//! After every step the two page images must be identical byte for byte,
//! and the C end and its Rust twin must agree on every notification
//! decision, every final check, every message copied out and their private
//! indices. Ring A also shows that the two implementations interoperate:
//! every message must arrive with the contents its producer wrote.
//!
//! A second test feeds both implementations producer indices a hostile
//! peer might publish and checks Rust's `RingError`s against the C
//! overflow predicates (`RING_REQUEST_PROD_OVERFLOW`,
//! `RING_RESPONSE_PROD_OVERFLOW`).
//!
//! Scenarios cover both directions (C frontend with Rust backend and the
//! reverse), one-, two- and sixteen-page rings (`ring-page-order` 0, 1 and
//! 4), three slot shapes, and indices that start just before the `u32` wrap.
//!
//! The test needs gcc and libxen-dev; without them it fails, saying so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use xen_ring::{
    BackRing, FrontRing, LocalMemory, RingError, SharedMemory, REQ_PROD_OFFSET, RSP_PROD_OFFSET,
    XEN_PAGE_SIZE,
};

const REQUEST: u32 = 1;
const RESPONSE: u32 = 2;

/// Byte `position` of the message of `kind` at free-running ring index
/// `index`. Must match `message_byte` in `ring_harness.c`.
fn message_byte(kind: u32, index: u32, position: usize) -> u8 {
    let mixed = index
        .wrapping_mul(2_654_435_761)
        .wrapping_add((position as u32).wrapping_mul(40_503))
        .wrapping_add(kind.wrapping_mul(977));
    (mixed >> 13) as u8
}

fn message(kind: u32, index: u32, length: usize) -> Vec<u8> {
    (0..length)
        .map(|position| message_byte(kind, index, position))
        .collect()
}

/// The ring types `ring_harness.c` defines with `DEFINE_RING_TYPES`.
#[derive(Debug, Clone, Copy)]
struct RingType {
    name: &'static str,
    request_size: usize,
    response_size: usize,
}

impl RingType {
    fn slot_size(&self) -> usize {
        self.request_size.max(self.response_size)
    }
}

const TYPES: [RingType; 3] = [
    RingType {
        name: "a",
        request_size: 12,
        response_size: 4,
    },
    RingType {
        name: "b",
        request_size: 112,
        response_size: 16,
    },
    RingType {
        name: "c",
        request_size: 8,
        response_size: 24,
    },
];

fn harness() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/ring_harness.c");
        let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ring_harness");
        assert!(
            Path::new("/usr/include/xen/io/ring.h").exists(),
            "/usr/include/xen/io/ring.h is missing: the differential test against \
             Xen's ring macros needs libxen-dev (apt-get install libxen-dev)"
        );
        let output = Command::new("gcc")
            .args(["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&binary)
            .arg(&source)
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run gcc ({error}): the differential test against Xen's \
                     ring macros needs gcc (apt-get install gcc)"
                )
            });
        assert!(
            output.status.success(),
            "gcc failed to build {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        binary
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Front,
    Back,
}

/// What one step reported: the same shape for the C end and a Rust end.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    /// `(A, B)`: `(req_prod_pvt, rsp_cons)` or `(rsp_prod_pvt, req_cons)`.
    state: (u32, u32),
    notify: Option<bool>,
    work: Option<bool>,
    overflow: Option<bool>,
    got: Vec<(u32, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Produce(usize),
    Push,
    Consume(usize),
    Final,
}

/// The C end of ring A.
struct CEnd {
    ring_type: RingType,
    pages: usize,
    image: PathBuf,
    role: Role,
    state: (u32, u32),
    size: u32,
}

impl CEnd {
    fn run(&mut self, command: &str, argument: Option<u64>) -> Report {
        let role = match self.role {
            Role::Front => "front",
            Role::Back => "back",
        };
        let mut process = Command::new(harness());
        process
            .arg(self.ring_type.name)
            .arg(self.pages.to_string())
            .arg(&self.image)
            .arg(role)
            .arg(self.state.0.to_string())
            .arg(self.state.1.to_string())
            .arg(command);
        if let Some(argument) = argument {
            process.arg(argument.to_string());
        }
        let output = process.output().expect("cannot run ring_harness");
        assert!(
            output.status.success(),
            "ring_harness {command} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut report = Report::default();
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["size", size] => self.size = size.parse().unwrap(),
                ["state", a, b] => report.state = (a.parse().unwrap(), b.parse().unwrap()),
                ["notify", flag] => report.notify = Some(*flag == "1"),
                ["work", flag] => report.work = Some(*flag == "1"),
                ["overflow", flag] => report.overflow = Some(*flag == "1"),
                ["got", index, hex] => {
                    let bytes = (0..hex.len())
                        .step_by(2)
                        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
                        .collect();
                    report.got.push((index.parse().unwrap(), bytes));
                }
                _ => panic!("unexpected ring_harness output: {line}"),
            }
        }
        self.state = report.state;
        report
    }

    fn step(&mut self, step: Step) -> Report {
        match step {
            Step::Produce(count) => self.run("produce", Some(count as u64)),
            Step::Push => self.run("push", None),
            Step::Consume(count) => self.run("consume", Some(count as u64)),
            Step::Final => self.run("final", None),
        }
    }
}

/// A Rust end: either half of a ring.
enum RustEnd {
    Front(FrontRing<LocalMemory>),
    Back(BackRing<LocalMemory>),
}

impl RustEnd {
    fn step(&mut self, ring_type: RingType, step: Step) -> Report {
        let mut report = Report::default();
        match (&mut *self, step) {
            (Self::Front(front), Step::Produce(count)) => {
                for _ in 0..count {
                    if front.is_full() {
                        break;
                    }
                    let index = front.req_prod_pvt();
                    front
                        .push_request(&message(REQUEST, index, ring_type.request_size))
                        .unwrap();
                }
            }
            (Self::Back(back), Step::Produce(count)) => {
                for _ in 0..count {
                    if back.requests_in_flight() == 0 {
                        break;
                    }
                    let index = back.rsp_prod_pvt();
                    back.push_response(&message(RESPONSE, index, ring_type.response_size))
                        .unwrap();
                }
            }
            (Self::Front(front), Step::Push) => {
                report.notify = Some(front.push_requests_and_check_notify());
            }
            (Self::Back(back), Step::Push) => {
                report.notify = Some(back.push_responses_and_check_notify());
            }
            (Self::Front(front), Step::Consume(count)) => {
                let mut buffer = vec![0; ring_type.response_size];
                for _ in 0..count {
                    let index = front.rsp_cons();
                    if !front.next_response(&mut buffer).unwrap() {
                        break;
                    }
                    report.got.push((index, buffer.clone()));
                }
            }
            (Self::Back(back), Step::Consume(count)) => {
                let mut buffer = vec![0; ring_type.request_size];
                for _ in 0..count {
                    let index = back.req_cons();
                    if !back.next_request(&mut buffer).unwrap() {
                        break;
                    }
                    report.got.push((index, buffer.clone()));
                }
            }
            (Self::Front(front), Step::Final) => {
                report.work = Some(front.final_check_for_responses().unwrap());
            }
            (Self::Back(back), Step::Final) => {
                report.work = Some(back.final_check_for_requests().unwrap());
            }
        }
        report.state = self.state();
        report
    }

    fn state(&self) -> (u32, u32) {
        match self {
            Self::Front(front) => (front.req_prod_pvt(), front.rsp_cons()),
            Self::Back(back) => (back.rsp_prod_pvt(), back.req_cons()),
        }
    }
}

/// A small deterministic generator, so a failing scenario replays exactly.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Compares ring A's page image with ring B's, naming the first difference.
fn assert_same_images(image: &Path, memory_b: &LocalMemory, context: &str) {
    let a = fs::read(image).unwrap();
    let b = memory_b.to_vec();
    assert_eq!(a.len(), b.len(), "{context}: image sizes differ");
    if let Some(offset) = (0..a.len()).find(|&offset| a[offset] != b[offset]) {
        panic!(
            "{context}: page images differ first at byte {offset}: {:#04x} (C ring) != {:#04x} (Rust ring)",
            a[offset], b[offset]
        );
    }
}

/// Tallies showing a scenario exercised what it claims to.
#[derive(Debug, Default)]
struct Coverage {
    notifications: usize,
    suppressed_notifications: usize,
    idle_final_checks: usize,
    delivered: usize,
}

fn run_scenario(ring_type: RingType, pages: usize, start: u32, c_role: Role, seed: u64) {
    let scenario = format!(
        "type {} pages {pages} start {start} C end {c_role:?} seed {seed}",
        ring_type.name
    );
    let bytes = pages * XEN_PAGE_SIZE;
    let image = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "ring-{}-{pages}-{start}-{c_role:?}-{seed}.img",
        ring_type.name
    ));
    fs::write(&image, vec![0xa5; bytes]).unwrap();

    // Ring B, all Rust, starts from the same junk-filled page.
    let memory_b = LocalMemory::from_bytes(&vec![0xa5; bytes]);
    let slot_size = ring_type.slot_size();
    let front_b = FrontRing::init_at(memory_b.clone(), slot_size, start).unwrap();
    let back_b = BackRing::attach(memory_b.clone(), slot_size).unwrap();
    let mut twin_front = RustEnd::Front(front_b);
    let mut twin_back = RustEnd::Back(back_b);

    // Ring A: the C end, then the Rust end on what the frontend initialised.
    let mut c_end = CEnd {
        ring_type,
        pages,
        image: image.clone(),
        role: Role::Front,
        state: (0, 0),
        size: 0,
    };
    let memory_a = LocalMemory::from_bytes(&vec![0xa5; bytes]);
    let mut rust_end = match c_role {
        Role::Front => {
            c_end.run("init", Some(u64::from(start)));
            memory_a.write(0, &fs::read(&image).unwrap());
            RustEnd::Back(BackRing::attach(memory_a.clone(), slot_size).unwrap())
        }
        Role::Back => {
            let front = FrontRing::init_at(memory_a.clone(), slot_size, start).unwrap();
            fs::write(&image, memory_a.to_vec()).unwrap();
            c_end.role = Role::Back;
            c_end.run("init", Some(u64::from(start)));
            RustEnd::Front(front)
        }
    };
    let size = match &twin_front {
        RustEnd::Front(front) => front.size(),
        RustEnd::Back(_) => unreachable!(),
    };
    assert_eq!(c_end.size, size, "{scenario}: RING_SIZE differs");
    assert_same_images(
        &image,
        &memory_b,
        &format!("{scenario}: after initialisation"),
    );

    let mut random = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut coverage = Coverage::default();
    for step_number in 0..160 {
        let front_acts = random.below(2) == 0;
        let count = match random.below(8) {
            0 => size as usize + 1,
            1 => 0,
            _ => random.below(u64::from(size.min(48)) + 1) as usize,
        };
        let step = match random.below(10) {
            0..=2 => Step::Produce(count),
            3..=4 => Step::Push,
            5..=7 => Step::Consume(count),
            _ => Step::Final,
        };
        let acting = if front_acts { Role::Front } else { Role::Back };
        let context = format!("{scenario}: step {step_number}, {acting:?} {step:?}");

        // Ring A: whichever end acts takes its turn on the file.
        let report_a = if acting == c_role {
            c_end.step(step)
        } else {
            memory_a.write(0, &fs::read(&image).unwrap());
            let report = rust_end.step(ring_type, step);
            fs::write(&image, memory_a.to_vec()).unwrap();
            report
        };
        // Ring B: the same step, in Rust.
        let twin = match acting {
            Role::Front => &mut twin_front,
            Role::Back => &mut twin_back,
        };
        let report_b = twin.step(ring_type, step);

        assert_eq!(report_a, report_b, "{context}: C and Rust disagree");
        assert_same_images(&image, &memory_b, &context);
        let (kind, length) = match acting {
            Role::Front => (RESPONSE, ring_type.response_size),
            Role::Back => (REQUEST, ring_type.request_size),
        };
        for (index, bytes) in &report_a.got {
            assert_eq!(
                bytes,
                &message(kind, *index, length),
                "{context}: message {index} arrived corrupted"
            );
        }
        coverage.delivered += report_a.got.len();
        match report_a.notify {
            Some(true) => coverage.notifications += 1,
            Some(false) => coverage.suppressed_notifications += 1,
            None => {}
        }
        if report_a.work == Some(false) {
            coverage.idle_final_checks += 1;
        }
    }
    fs::remove_file(&image).unwrap();

    // Guard against a degenerate random walk that would prove nothing.
    assert!(
        coverage.delivered > 0,
        "{scenario}: nothing delivered: {coverage:?}"
    );
    assert!(coverage.notifications > 0, "{scenario}: {coverage:?}");
    assert!(
        coverage.suppressed_notifications > 0,
        "{scenario}: {coverage:?}"
    );
    assert!(coverage.idle_final_checks > 0, "{scenario}: {coverage:?}");
    if start > u32::MAX - 100 {
        let (a, _) = c_end.state;
        assert!(a < start, "{scenario}: indices never wrapped");
    }
}

fn run_all(c_role: Role) {
    let mut seed = 1;
    for ring_type in TYPES {
        for pages in [1, 2, 16] {
            for start in [0, u32::MAX - 20] {
                run_scenario(ring_type, pages, start, c_role, seed);
                seed += 1;
            }
        }
    }
}

#[test]
fn c_frontend_with_rust_backend() {
    run_all(Role::Front);
}

#[test]
fn rust_frontend_with_c_backend() {
    run_all(Role::Back);
}

/// A producer index a hostile peer might publish, relative to `base`:
/// mostly near the legal window, sometimes anywhere.
fn hostile_producer(random: &mut XorShift, base: u32, size: u32) -> u32 {
    match random.below(4) {
        0 => random.next() as u32,
        1 => base.wrapping_sub(random.below(u64::from(size) * 2) as u32),
        _ => base.wrapping_add(random.below(u64::from(size) * 3) as u32),
    }
}

#[test]
fn hostile_producers_against_c_overflow_macros() {
    let ring_type = TYPES[1];
    let slot_size = ring_type.slot_size();
    let image = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ring-overflow.img");
    let mut random = XorShift(0x5eed_1234_abcd_0001);
    let mut rejected_by_c = 0;
    for case in 0..300 {
        let start = if random.below(2) == 0 {
            u32::MAX - random.below(64) as u32
        } else {
            random.next() as u32
        };
        let size = xen_ring::ring_entries(XEN_PAGE_SIZE, slot_size).unwrap();
        let memory = LocalMemory::pages(1);
        FrontRing::init_at(memory.clone(), slot_size, start).unwrap();
        let mut c_end = CEnd {
            ring_type,
            pages: 1,
            image: image.clone(),
            role: Role::Back,
            state: (0, 0),
            size: 0,
        };

        // Backend: rsp_prod_pvt = start, req_cons = start + consumed.
        let consumed = random.below(u64::from(size) + 1) as u32;
        memory.store_u32(REQ_PROD_OFFSET, start.wrapping_add(consumed));
        let mut back = BackRing::attach(memory.clone(), slot_size).unwrap();
        let mut buffer = vec![0; slot_size];
        for _ in 0..consumed {
            assert_eq!(back.next_request(&mut buffer), Ok(true));
        }
        let req_prod = hostile_producer(&mut random, start.wrapping_add(consumed), size);
        memory.store_u32(REQ_PROD_OFFSET, req_prod);
        fs::write(&image, memory.to_vec()).unwrap();
        c_end.state = (start, start.wrapping_add(consumed));
        let c_says = c_end.run("overflow", Some(u64::from(req_prod))).overflow;
        let rust_says = back.unconsumed_requests();
        let context = format!("case {case}: back at {start}+{consumed}, req_prod {req_prod}");
        assert_eq!(
            matches!(rust_says, Err(RingError::RequestOverflow { .. })),
            c_says == Some(true),
            "{context}: Rust {rust_says:?}, C RING_REQUEST_PROD_OVERFLOW {c_says:?}"
        );
        if c_says == Some(true) {
            rejected_by_c += 1;
        } else if req_prod.wrapping_sub(start) < consumed {
            assert!(
                matches!(rust_says, Err(RingError::RequestProducerRewound { .. })),
                "{context}: {rust_says:?}"
            );
        } else {
            assert_eq!(
                rust_says,
                Ok(req_prod.wrapping_sub(start.wrapping_add(consumed))),
                "{context}"
            );
        }

        // Frontend: rsp_cons = start, `published` requests outstanding.
        let memory = LocalMemory::pages(1);
        let mut front = FrontRing::init_at(memory.clone(), slot_size, start).unwrap();
        let published = random.below(u64::from(size) + 1) as u32;
        for _ in 0..published {
            front.push_request(&buffer).unwrap();
        }
        front.push_requests();
        let rsp_prod = hostile_producer(&mut random, start, size);
        memory.store_u32(RSP_PROD_OFFSET, rsp_prod);
        fs::write(&image, memory.to_vec()).unwrap();
        c_end.role = Role::Front;
        c_end.state = (start.wrapping_add(published), start);
        let c_says = c_end.run("overflow", Some(u64::from(rsp_prod))).overflow;
        let rust_says = front.unconsumed_responses();
        let context = format!("case {case}: front at {start}+{published}, rsp_prod {rsp_prod}");
        if c_says == Some(true) {
            rejected_by_c += 1;
            assert!(
                matches!(rust_says, Err(RingError::ResponseOverflow { .. })),
                "{context}: C RING_RESPONSE_PROD_OVERFLOW, Rust {rust_says:?}"
            );
        }
        // Rust is stricter than the C predicate: no response beyond the
        // requests actually published.
        if rsp_prod.wrapping_sub(start) > published {
            assert!(
                matches!(rust_says, Err(RingError::ResponseOverflow { .. })),
                "{context}: {rust_says:?}"
            );
        } else {
            assert_eq!(rust_says, Ok(rsp_prod.wrapping_sub(start)), "{context}");
        }
    }
    fs::remove_file(&image).unwrap();
    assert!(rejected_by_c > 50, "too few hostile cases: {rejected_by_c}");
}
