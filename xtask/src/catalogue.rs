//! The rig's test catalogue: every test dom0 knows, and the named groups a
//! user can select on the command line.
//!
//! A test name here must match a shell function `test_<name>` (dashes as
//! underscores) in `tests/rig/payload/tests-*.sh`; dom0 reports a test it
//! cannot find as failed, so a typo cannot pass silently.

/// One test of the rig, run inside dom0.
pub struct Test {
    pub name: &'static str,
    pub about: &'static str,
}

const fn test(name: &'static str, about: &'static str) -> Test {
    Test { name, about }
}

/// The toolstack works and a guest boots.
pub const BASIC: &[Test] = &[
    test(
        "xl-info",
        "dom0 runs xenstored, xenconsoled and xl info answers",
    ),
    test(
        "hello",
        "xl create of a small PV guest that reaches userspace",
    ),
];

/// The Linux reference driver domain (kernel blkback/netback + `xl devd`).
pub const LINUX: &[Test] = &[
    test(
        "linux-blk",
        "guest writes, reads back and verifies via dd; a fresh guest re-reads",
    ),
    test(
        "linux-dom0",
        "dom0 as a frontend of dd: fio write+verify, pattern checked in dd",
    ),
    test(
        "linux-net",
        "two guests ping dd and each other through dd's netback and bridge",
    ),
];

/// More of the Linux reference: dom0 as a netfront of dd.
pub const LINUX_EXTRA: &[Test] = &[test(
    "linux-net-dom0",
    "dom0 as a netfront of dd pings a guest (the reference for rumpnet-dom0)",
)];

/// Our block driver domain, `target/domains/rumpdisk`: its start.
pub const RUMPDISK_BOOT: &[Test] = &[test(
    "rumpdisk-boot",
    "xl create xl-configs/rumpdisk.cfg; its console says it is ready",
)];

/// rumpdisk serving guests and dom0: attach, I/O, detach, refusal.
pub const RUMPDISK: &[Test] = &[
    test(
        "rumpdisk-rw",
        "guest writes/reads back ram0, detaches, re-attaches, reads again",
    ),
    test(
        "rumpdisk-reattach",
        "a fresh guest attaches ram0 and reads what another wrote",
    ),
    test(
        "rumpdisk-dom0",
        "dom0 attaches ram1 and runs fio with verify",
    ),
    test(
        "rumpdisk-two",
        "two guests attached at once, each writing and verifying",
    ),
    test(
        "rumpdisk-bad-target",
        "an unknown target fails clearly and rumpdisk keeps serving",
    ),
    test(
        "rumpdisk-features",
        "blkfront negotiates persistent grants, indirect segments, queues",
    ),
];

/// rumpdisk serving an NVMe controller passed through to it (QEMU's nvme
/// at 00:11.0, `xl-configs/rumpdisk-nvme.cfg`).
pub const RUMPDISK_NVME: &[Test] = &[
    test(
        "rumpdisk-nvme",
        "guest writes via rumpdisk's passed-through NVMe; data survives a new rumpdisk",
    ),
    test(
        "rumpdisk-nvme-dom0",
        "dom0 runs fio with verify on rumpdisk's NVMe disk, 32 requests in flight",
    ),
    test(
        "rumpdisk-nvme-modes",
        "the NVMe disk with INTx instead of MSI-X, then with no interrupt (polled)",
    ),
];

/// Our network driver domain, `target/domains/rumpnet`.
pub const RUMPNET: &[Test] = &[
    test(
        "rumpnet-boot",
        "xl create xl-configs/rumpnet.cfg; its console says it is ready",
    ),
    test(
        "rumpnet-ping",
        "two guests ping each other and run iperf3 through rumpnet",
    ),
    test(
        "rumpnet-dom0",
        "dom0 attaches a vif to rumpnet and reaches a guest",
    ),
    test(
        "rumpnet-reattach",
        "network-detach and network-attach of a guest's vif",
    ),
    test(
        "rumpnet-restart",
        "a guest is destroyed and recreated with the same MAC",
    ),
];

/// rumpnet with an e1000 passed through as its uplink (QEMU's e1000 at
/// 00:10.0, wired to dom0's e1000 at 00:12.0; `xl-configs/rumpnet-e1000.cfg`).
pub const RUMPNET_E1000: &[Test] = &[
    test(
        "rumpnet-e1000",
        "a guest behind rumpnet's passed-through e1000 pings dom0 and runs iperf3 over the wire",
    ),
    test(
        "rumpnet-e1000-polled",
        "the same with the e1000 polled every millisecond instead of interrupting",
    ),
];

/// NetBSD's own drivers in our domains, from rump kernel archives linked
/// into the images (`RUMP_LIBDIR`, docs/rumpuser.md): ld@virtio on QEMU's
/// legacy virtio-blk at 00:13.0 in rumpdisk, wm(4) on the e1000 at 00:10.0
/// as rumpnet's uplink. Without those images each test reports SKIP.
pub const NETBSD: &[Test] = &[
    test(
        "rumpdisk-netbsd",
        "NetBSD's ld0 (virtio-blk passed through) served by rumpdisk: guests and dom0 write and verify",
    ),
    test(
        "rumpnet-netbsd",
        "NetBSD's wm0 as rumpnet's uplink: a guest pings dom0 and runs iperf3 over the e1000 wire",
    ),
];

/// The rumpuser(3) hypercalls on real Xen: `target/domains/rumpuser-smoke`
/// (`rumpuser-xen/src/bin/rumpuser-smoke`) plays a rump kernel against the
/// Xen host.
pub const RUMPUSER: &[Test] = &[test(
    "rumpuser-xen",
    "a test image calls every group of rumpuser(3) hypercalls on Xen; every check passes",
)];

/// Measurements, not assertions: see `cargo xtask bench`.
pub const BENCH: &[Test] = &[test(
    "bench",
    "fio, iperf3 and start-up time against dd and our domains",
)];

/// Named selections. `default` is what CI runs: only tests that pass today.
/// The passthrough tests come last: they replace the RAM-disk rumpdisk and
/// the plain rumpnet the tests before them share. The NetBSD tests are in
/// it too: with images built without rump kernel archives (as in CI) they
/// report themselves skipped, with the reason, rather than go unmentioned.
pub const GROUPS: &[(&str, &[&[Test]])] = &[
    (
        "default",
        &[
            BASIC,
            LINUX,
            LINUX_EXTRA,
            RUMPDISK_BOOT,
            RUMPDISK,
            RUMPNET,
            RUMPUSER,
            RUMPDISK_NVME,
            RUMPNET_E1000,
            NETBSD,
        ],
    ),
    ("basic", &[BASIC]),
    ("linux", &[LINUX, LINUX_EXTRA]),
    ("rumpdisk", &[RUMPDISK_BOOT, RUMPDISK]),
    ("rumpnet", &[RUMPNET]),
    ("nvme", &[RUMPDISK_NVME]),
    ("e1000", &[RUMPNET_E1000]),
    ("passthrough", &[RUMPDISK_NVME, RUMPNET_E1000]),
    ("ours", &[RUMPDISK_BOOT, RUMPDISK, RUMPNET]),
    ("rumpuser", &[RUMPUSER]),
    ("netbsd", &[NETBSD]),
    ("all", ALL),
];

/// Every test that checks something (the `all` group): everything but
/// the measurements.
const ALL: &[&[Test]] = &[
    BASIC,
    LINUX,
    LINUX_EXTRA,
    RUMPDISK_BOOT,
    RUMPDISK,
    RUMPDISK_NVME,
    RUMPNET,
    RUMPNET_E1000,
    RUMPUSER,
    NETBSD,
];

fn all_tests() -> impl Iterator<Item = &'static Test> {
    ALL.iter().chain([&BENCH]).copied().flatten()
}

/// Expands group and test names (space or comma separated) into an ordered
/// list of tests without duplicates. No names means the default group.
pub fn select(words: &[String]) -> Result<Vec<&'static str>, String> {
    let mut names: Vec<&str> = words
        .iter()
        .flat_map(|word| word.split(','))
        .filter(|name| !name.is_empty())
        .collect();
    if names.is_empty() {
        names.push("default");
    }
    let mut selected = Vec::new();
    for name in names {
        let expansion: Vec<&'static str> =
            if let Some((_, sets)) = GROUPS.iter().find(|(group, _)| *group == name) {
                sets.iter()
                    .flat_map(|set| set.iter())
                    .map(|t| t.name)
                    .collect()
            } else if let Some(t) = all_tests().find(|t| t.name == name) {
                vec![t.name]
            } else {
                return Err(format!(
                    "unknown test or group `{name}` (see `cargo xtask e2e --list`)"
                ));
            };
        for t in expansion {
            if !selected.contains(&t) {
                selected.push(t);
            }
        }
    }
    Ok(selected)
}

/// The listing printed by `cargo xtask e2e --list`.
pub fn listing() -> String {
    let mut out = String::from("groups:\n");
    for (group, sets) in GROUPS {
        let names: Vec<&str> = sets
            .iter()
            .flat_map(|set| set.iter())
            .map(|t| t.name)
            .collect();
        out.push_str(&format!("  {group:<10} {}\n", names.join(" ")));
    }
    out.push_str("tests:\n");
    for t in all_tests() {
        out.push_str(&format!("  {:<20} {}\n", t.name, t.about));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn no_names_selects_the_default_group_only() {
        let selected = select(&[]).unwrap();
        assert_eq!(
            selected,
            [
                "xl-info",
                "hello",
                "linux-blk",
                "linux-dom0",
                "linux-net",
                "linux-net-dom0",
                "rumpdisk-boot",
                "rumpdisk-rw",
                "rumpdisk-reattach",
                "rumpdisk-dom0",
                "rumpdisk-two",
                "rumpdisk-bad-target",
                "rumpdisk-features",
                "rumpnet-boot",
                "rumpnet-ping",
                "rumpnet-dom0",
                "rumpnet-reattach",
                "rumpnet-restart",
                "rumpuser-xen",
                "rumpdisk-nvme",
                "rumpdisk-nvme-dom0",
                "rumpdisk-nvme-modes",
                "rumpnet-e1000",
                "rumpnet-e1000-polled",
                "rumpdisk-netbsd",
                "rumpnet-netbsd",
            ]
        );
    }

    #[test]
    fn groups_and_tests_mix_without_duplicates() {
        let selected = select(&words(&["hello,rumpdisk", "hello", "rumpdisk-rw"])).unwrap();
        assert_eq!(selected[0], "hello");
        assert_eq!(selected.len(), 1 + RUMPDISK_BOOT.len() + RUMPDISK.len());
    }

    #[test]
    fn the_netbsd_tests_are_selectable_and_last_in_ci() {
        let group = select(&words(&["netbsd"])).unwrap();
        assert_eq!(group, ["rumpdisk-netbsd", "rumpnet-netbsd"]);
        let default = select(&[]).unwrap();
        assert_eq!(default[default.len() - 2..], group);
        assert_eq!(
            select(&words(&["rumpnet-netbsd"])).unwrap(),
            ["rumpnet-netbsd"]
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(select(&words(&["helo"])).is_err());
    }

    #[test]
    fn the_default_group_runs_every_rumpdisk_test_and_boots_first() {
        let default = select(&words(&["default"])).unwrap();
        let ours: Vec<_> = default
            .iter()
            .filter(|name| {
                name.starts_with("rumpdisk")
                    && !name.starts_with("rumpdisk-nvme")
                    && !name.starts_with("rumpdisk-netbsd")
            })
            .copied()
            .collect();
        let group = select(&words(&["rumpdisk"])).unwrap();
        assert_eq!(ours, group);
        assert_eq!(ours[0], "rumpdisk-boot");
    }

    #[test]
    fn test_names_are_unique_and_safe_on_a_kernel_command_line() {
        let mut seen = Vec::new();
        for t in all_tests() {
            assert!(t
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            assert!(!seen.contains(&t.name), "{} twice", t.name);
            seen.push(t.name);
        }
    }
}
