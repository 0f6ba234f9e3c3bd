//! `cargo xtask bench`: one rig boot that measures the Linux driver domain
//! and our driver domains under the same workloads (tests/rig/payload/
//! tests-bench.sh), then prints a table and writes docs/benchmarks.md.
//!
//! The numbers come from an emulated machine (QEMU TCG on a shared host):
//! compare the columns with each other, never with real hardware.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::rig::{self, Rig};

/// The workloads a metric belongs to; each section of the table shows one.
#[derive(Clone, Copy, PartialEq)]
enum Workload {
    /// fio in a guest on a RAM disk in the driver domain.
    RamDisk,
    /// The same fio workloads on a disk passed through to each driver
    /// domain in turn (a PCI function of the rig).
    PassthroughDisk,
    /// ping and iperf3 between two guests behind the driver domain.
    Network,
    /// A guest behind the driver domain reaching dom0 across the rig's
    /// emulated wire, through the e1000 passed through to the domain.
    Uplink,
}

struct Metric {
    /// The name in the RIG-BENCH lines, after the section's prefix.
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    workload: Workload,
}

const fn metric(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    workload: Workload,
) -> Metric {
    Metric {
        key,
        label,
        unit,
        higher_is_better,
        workload,
    }
}

/// One table: a workload on one device, Linux's dd against one of ours.
struct Section {
    title: &'static str,
    workload: Workload,
    /// Goes before each metric's key in the RIG-BENCH lines (the
    /// payload's BENCH_KEY_PREFIX): which device the workload ran on.
    prefix: &'static str,
    /// The backend compared with Linux, as the RIG-BENCH lines name it.
    ours: &'static str,
}

const SECTIONS: &[Section] = &[
    Section {
        title: "Block",
        workload: Workload::RamDisk,
        prefix: "",
        ours: "rumpdisk",
    },
    Section {
        title: "Block on NVMe passthrough",
        workload: Workload::PassthroughDisk,
        prefix: "nvme_",
        ours: "rumpdisk",
    },
    Section {
        title: "Block on virtio-blk passthrough, NetBSD's ld@virtio in rumpdisk",
        workload: Workload::PassthroughDisk,
        prefix: "virtio_",
        ours: "rumpdisk-netbsd",
    },
    Section {
        title: "Network",
        workload: Workload::Network,
        prefix: "",
        ours: "rumpnet",
    },
    Section {
        title: "Network across a passed-through e1000",
        workload: Workload::Uplink,
        prefix: "uplink_",
        ours: "rumpnet",
    },
    Section {
        title: "Network across a passed-through e1000, NetBSD's wm(4) in rumpnet",
        workload: Workload::Uplink,
        prefix: "uplink_",
        ours: "rumpnet-netbsd",
    },
];

const METRICS: &[Metric] = &[
    metric(
        "randread_4k_qd32_iops",
        "fio 4 KiB random read, QD32",
        "IOPS",
        true,
        Workload::RamDisk,
    ),
    metric(
        "randwrite_4k_qd32_iops",
        "fio 4 KiB random write, QD32",
        "IOPS",
        true,
        Workload::RamDisk,
    ),
    metric(
        "seqread_1m_mib_s",
        "fio 1 MiB sequential read",
        "MiB/s",
        true,
        Workload::RamDisk,
    ),
    metric(
        "seqwrite_1m_verify_mib_s",
        "fio 1 MiB sequential write + verify",
        "MiB/s",
        true,
        Workload::RamDisk,
    ),
    metric(
        "sequential_data_verified",
        "fio verify pass over the written data",
        "1 = ok",
        true,
        Workload::RamDisk,
    ),
    metric(
        "create_to_ready_s",
        "xl create to backend ready",
        "s",
        false,
        Workload::RamDisk,
    ),
    metric(
        "create_to_connected_s",
        "xl create to frontend Connected",
        "s",
        false,
        Workload::RamDisk,
    ),
    metric(
        "memory_mib",
        "memory given to the driver domain",
        "MiB",
        false,
        Workload::RamDisk,
    ),
    metric(
        "memory_used_mib",
        "memory in use after the workload, RAM disks included",
        "MiB",
        false,
        Workload::RamDisk,
    ),
    metric(
        "image_mib",
        "image size (kernel + ramdisk + root fs)",
        "MiB",
        false,
        Workload::RamDisk,
    ),
    metric(
        "randread_4k_qd32_iops",
        "fio 4 KiB random read, QD32",
        "IOPS",
        true,
        Workload::PassthroughDisk,
    ),
    metric(
        "randwrite_4k_qd32_iops",
        "fio 4 KiB random write, QD32",
        "IOPS",
        true,
        Workload::PassthroughDisk,
    ),
    metric(
        "seqread_1m_mib_s",
        "fio 1 MiB sequential read",
        "MiB/s",
        true,
        Workload::PassthroughDisk,
    ),
    metric(
        "seqwrite_1m_verify_mib_s",
        "fio 1 MiB sequential write + verify",
        "MiB/s",
        true,
        Workload::PassthroughDisk,
    ),
    metric(
        "sequential_data_verified",
        "fio verify pass over the written data",
        "1 = ok",
        true,
        Workload::PassthroughDisk,
    ),
    metric(
        "create_to_ready_s",
        "xl create to backend ready, device up",
        "s",
        false,
        Workload::PassthroughDisk,
    ),
    metric(
        "create_to_connected_s",
        "xl create to frontend Connected",
        "s",
        false,
        Workload::PassthroughDisk,
    ),
    metric(
        "memory_mib",
        "memory given to the driver domain",
        "MiB",
        false,
        Workload::PassthroughDisk,
    ),
    metric(
        "memory_used_mib",
        "memory in use after the workload",
        "MiB",
        false,
        Workload::PassthroughDisk,
    ),
    metric(
        "iperf3_tcp_mbit_s",
        "iperf3 TCP, guest to guest, 10 s",
        "Mbit/s",
        true,
        Workload::Network,
    ),
    metric(
        "ping_rtt_ms",
        "ping round trip, guest to guest",
        "ms",
        false,
        Workload::Network,
    ),
    metric(
        "net_create_to_ready_s",
        "xl create to backend ready",
        "s",
        false,
        Workload::Network,
    ),
    metric(
        "create_to_vif_connected_s",
        "xl create to first vif Connected",
        "s",
        false,
        Workload::Network,
    ),
    metric(
        "memory_mib",
        "memory given to the driver domain",
        "MiB",
        false,
        Workload::Network,
    ),
    metric(
        "image_mib",
        "image size (kernel + ramdisk + root fs)",
        "MiB",
        false,
        Workload::Network,
    ),
    metric(
        "iperf3_tcp_mbit_s",
        "iperf3 TCP, guest to dom0 across the e1000, 10 s",
        "Mbit/s",
        true,
        Workload::Uplink,
    ),
    metric(
        "ping_rtt_ms",
        "ping round trip, guest to dom0 across the e1000",
        "ms",
        false,
        Workload::Uplink,
    ),
    metric(
        "net_create_to_ready_s",
        "xl create to backend ready, NIC up",
        "s",
        false,
        Workload::Uplink,
    ),
];

const LINUX: &str = "linux-dd";

/// Measured values by (backend, metric).
type Measurements = BTreeMap<(String, String), f64>;

/// `RIG-BENCH backend=B metric=M value=V` anywhere on a line.
fn parse(line: &str) -> Option<(String, String, f64)> {
    let rest = &line[line.find("RIG-BENCH ")? + "RIG-BENCH ".len()..];
    let field = |name: &str| {
        rest.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    let value = field("value")?.parse().ok()?;
    Some((field("backend")?, field("metric")?, value))
}

/// Boots the rig for the `bench` test, or with `from_log` reads the serial
/// log of an earlier boot that ran it (`cargo xtask e2e ... bench`).
pub fn run(rig: &Rig, from_log: Option<&Path>) -> Result<bool, String> {
    let boot = match from_log {
        Some(path) => rig::Boot::from_log(path)?,
        None => {
            rig.prepare()?;
            let timeout = Duration::from_secs(
                std::env::var("RIG_TIMEOUT")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(2400),
            );
            rig.boot("bench", &["bench"], timeout)?
        }
    };
    let mut measured: Measurements = boot
        .lines
        .iter()
        .filter_map(|line| parse(line))
        .map(|(backend, metric, value)| ((backend, metric), value))
        .collect();
    image_sizes(rig, &mut measured);
    let verdict = rig::results(&boot, &["bench"]).remove(0);

    let table = table(&measured);
    println!("\n{table}");
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let versions: Vec<String> = rig
        .versions()
        .into_iter()
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    // Like the image sizes, a property of the images on this host.
    let netbsd_images = rig
        .root
        .join("target/domains")
        .join(crate::images::NETBSD_MARKER)
        .is_file();
    let document = format!(
        "# Benchmarks\n\n\
         Produced by `cargo xtask bench` on {date}; the Linux column is the reference\n\
         driver domain (Debian's kernel blkback/netback in a PV domU with `xl devd`),\n\
         the other column our driver domain. Ratios are ours divided by Linux.\n\n\
         Rig: {versions}; `-machine q35 -cpu qemu64,+npt -smp 2 -m 3072`, TCG (no KVM),\n\
         host CPU {cpu} (2 cores, shared with other work while measuring).\n\
         Serial log of this run: `{log}` (not kept in git).\n\n\
         Everything runs emulated, so absolute numbers say little about real\n\
         hardware and vary by tens of percent between runs on a busy host;\n\
         compare the columns of one run. Workloads (tests/rig/payload/tests-bench.sh,\n\
         tests/rig/guest/domu-steps): fio with `--direct=1 --ioengine=libaio` on\n\
         48 MiB of the guest's `xvdb`, a 64 MiB RAM disk in the driver domain\n\
         (`brd` in Linux, `ram0` in rumpdisk); iperf3 between two guests whose\n\
         vifs the driver domain serves. \"Connected\" is the backend's xenstore\n\
         `state` reaching 4 for a guest that was already waiting for the disk.\n\
         Image sizes are file sizes: our images are the ELF files xl boots\n\
         (debug information stripped, symbols kept); Linux counts vmlinux,\n\
         initramfs and root filesystem. A dash means not measured (image not built, or that\n\
         part of the run failed; the serial log says which).\n\n\
         The NVMe rows put the same guest workloads on QEMU's emulated NVMe\n\
         controller (00:11.0, 64 MiB, backed by `target/rig/nvme.img`) instead\n\
         of a RAM disk. The controller is passed through (`xl pci-assignable-add`,\n\
         `pci=`) to one driver domain at a time: first to dd, whose Linux\n\
         `nvme` driver (by pcifront, DMA through swiotlb-xen) gives\n\
         `/dev/nvme0n1` to blkback, then, after dd is destroyed and the device is\n\
         back with pciback, to rumpdisk (`xl-configs/rumpdisk-nvme.cfg`, disk\n\
         `nvme0`), which drives the controller itself. \"Backend ready\" then\n\
         includes bringing the controller up. The Linux memory in use includes\n\
         swiotlb's bounce buffers; rumpdisk's includes its 8 MiB of DMA memory.\n\n\
         The e1000 rows take QEMU's e1000 at 00:10.0, on one emulated wire (a\n\
         QEMU hub) with a second e1000 at 00:12.0 that dom0 drives with Linux's\n\
         `e1000` and that runs the iperf3 server. The NIC at 00:10.0 is passed\n\
         through to one driver domain at a time: dd, whose Linux `e1000` puts it\n\
         on bridge ddbr0 with the guest's vif, then rumpnet\n\
         (`xl-configs/rumpnet-e1000.cfg`), which drives it itself as its\n\
         switch's uplink. A guest behind the driver domain pings dom0 and runs\n\
         iperf3 against it.\n\n\
         The NetBSD sections, measured when the images hold NetBSD's drivers\n\
         (docs/rumpuser.md), put NetBSD's own drivers, in the rump kernel linked\n\
         into our domains, on the same kind of passthrough. Block: QEMU's legacy\n\
         virtio-blk function (00:13.0, 64 MiB, backed by `target/rig/virtio-blk.img`)\n\
         goes first to dd, whose Linux `virtio_pci` and `virtio_blk` (by pcifront,\n\
         DMA through swiotlb-xen) give `/dev/vda` to blkback, then to rumpdisk\n\
         (`xl-configs/rumpdisk-netbsd.cfg`), where NetBSD's `ld@virtio` drives it\n\
         and rumpdisk serves `ld0`, at most four requests at once, each copied\n\
         through a 64 KiB DMA buffer. Network: the e1000 at 00:10.0 goes to\n\
         rumpnet (`xl-configs/rumpnet-netbsd.cfg`), where NetBSD's `wm(4)` drives\n\
         it behind the switch's uplink, frames passing through `/dev/bpf`; its\n\
         Linux column is dd's measurement of the e1000 section. \"Backend ready\"\n\
         includes booting the rump kernel.\n{netbsd_images}\n\n\
         {table}\n",
        versions = versions.join(", "),
        netbsd_images = if netbsd_images {
            "In this run our images hold NetBSD's drivers, and the image sizes in the\n\
             tables include them."
        } else {
            "In this run our images hold no NetBSD driver."
        },
        log = boot
            .serial_log
            .strip_prefix(&rig.root)
            .unwrap_or(&boot.serial_log)
            .display(),
    );
    let path = rig.root.join("docs/benchmarks.md");
    fs::write(&path, document).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("xtask: wrote {}", path.display());
    println!(
        "bench: {}",
        if verdict.passed() {
            "Linux baseline complete"
        } else {
            &verdict.detail
        }
    );
    Ok(verdict.passed())
}

/// Image sizes are properties of files on this host, not of the boot.
fn image_sizes(rig: &Rig, measured: &mut Measurements) {
    let mebibytes = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let linux = ["vmlinux", "initramfs.cpio.gz"]
        .iter()
        .map(|f| rig::tree_size(&rig.cache.join(f)))
        .sum::<u64>()
        + rig::tree_size(&rig.cache.join("rootfs"));
    measured.insert((LINUX.into(), "image_mib".into()), mebibytes(linux));
    for name in rig::DOMAIN_IMAGES {
        let image = rig.root.join("target/domains").join(name);
        if image.is_file() {
            measured.insert(
                (name.to_string(), "image_mib".into()),
                mebibytes(rig::tree_size(&image)),
            );
        }
    }
}

/// The sections, each a Markdown table; a section of which nothing was
/// measured is left out and named at the end.
fn table(measured: &Measurements) -> String {
    let mut out = String::new();
    let mut left_out = Vec::new();
    for section in SECTIONS {
        let ours = section.ours;
        let value = |backend: &str, metric: &Metric| {
            measured
                .get(&(
                    backend.to_string(),
                    format!("{}{}", section.prefix, metric.key),
                ))
                .copied()
        };
        let rows: Vec<(&Metric, Option<f64>, Option<f64>)> = METRICS
            .iter()
            .filter(|m| m.workload == section.workload)
            .map(|m| (m, value(LINUX, m), value(ours, m)))
            .collect();
        if rows
            .iter()
            .all(|(_, linux, our)| linux.is_none() && our.is_none())
        {
            left_out.push(section.title);
            continue;
        }
        out.push_str(&format!(
            "### {}\n\n| measurement | unit | Linux dd | {ours} | {ours} / Linux | better |\n|---|---|---:|---:|---:|---|\n",
            section.title
        ));
        for (m, linux, our) in rows {
            let show = |v: Option<f64>| v.map_or("-".to_string(), format_value);
            let ratio = match (our, linux) {
                (Some(o), Some(l)) if l != 0.0 => format!("{:.2}", o / l),
                _ => "-".into(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                m.label,
                m.unit,
                show(linux),
                show(our),
                ratio,
                if m.higher_is_better {
                    "higher"
                } else {
                    "lower"
                }
            ));
        }
        out.push('\n');
    }
    if !left_out.is_empty() {
        out.push_str(&format!(
            "Not measured in this run: {}. The NetBSD sections need images that hold \
             NetBSD's drivers (`RUMP_LIBDIR`, docs/rumpuser.md); otherwise the serial log \
             says why.\n",
            left_out.join("; ")
        ));
    }
    out
}

fn format_value(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (backend, metric, value) as the RIG-BENCH lines would give them.
    fn measurements(values: &[(&str, &str, f64)]) -> Measurements {
        values
            .iter()
            .map(|&(backend, metric, value)| ((backend.into(), metric.into()), value))
            .collect()
    }

    /// Each of `parts` is in `table`, each after the one before.
    fn assert_in_order(table: &str, parts: &[&str]) {
        let mut from = 0;
        for part in parts {
            match table[from..].find(part) {
                Some(at) => from += at + part.len(),
                None => panic!("{part:?} not found after byte {from} of:\n{table}"),
            }
        }
    }

    #[test]
    fn bench_lines_parse_and_others_do_not() {
        let (backend, metric, value) =
            parse("[ 812.4] RIG-BENCH backend=linux-dd metric=seqread_1m_mib_s value=97.5")
                .unwrap();
        assert_eq!(
            (backend.as_str(), metric.as_str(), value),
            ("linux-dd", "seqread_1m_mib_s", 97.5)
        );
        assert!(parse("RIG-BENCH backend=linux-dd metric=x value=").is_none());
        assert!(parse("RIG-RESULT bench PASS").is_none());
    }

    #[test]
    fn the_table_shows_ratios_only_where_both_sides_were_measured() {
        let table = table(&measurements(&[
            (LINUX, "randread_4k_qd32_iops", 2000.0),
            ("rumpdisk", "randread_4k_qd32_iops", 3000.0),
            (LINUX, "iperf3_tcp_mbit_s", 150.0),
        ]));
        assert!(
            table.contains("| fio 4 KiB random read, QD32 | IOPS | 2000 | 3000 | 1.50 | higher |")
        );
        assert!(
            table.contains("| iperf3 TCP, guest to guest, 10 s | Mbit/s | 150 | - | - | higher |")
        );
    }

    #[test]
    fn nvme_rows_sit_in_their_own_section_after_the_ram_disk_rows() {
        let table = table(&measurements(&[
            (LINUX, "randread_4k_qd32_iops", 2000.0),
            (LINUX, "nvme_randread_4k_qd32_iops", 400.0),
            ("rumpdisk", "nvme_randread_4k_qd32_iops", 500.0),
        ]));
        assert_in_order(
            &table,
            &[
                "### Block\n",
                "| fio 4 KiB random read, QD32 | IOPS | 2000 | - | - | higher |",
                "### Block on NVMe passthrough\n",
                "| fio 4 KiB random read, QD32 | IOPS | 400 | 500 | 1.25 | higher |",
            ],
        );
    }

    #[test]
    fn uplink_rows_follow_the_network_rows_and_compare_rumpnet() {
        let table = table(&measurements(&[
            (LINUX, "iperf3_tcp_mbit_s", 300.0),
            (LINUX, "uplink_iperf3_tcp_mbit_s", 80.0),
            ("rumpnet", "uplink_iperf3_tcp_mbit_s", 60.0),
        ]));
        assert_in_order(
            &table,
            &[
                "### Network\n",
                "| iperf3 TCP, guest to guest, 10 s | Mbit/s | 300 | - | - | higher |",
                "### Network across a passed-through e1000\n",
                "| iperf3 TCP, guest to dom0 across the e1000, 10 s | Mbit/s | 80.0 | 60.0 | 0.75 | higher |",
            ],
        );
    }

    #[test]
    fn netbsd_sections_compare_netbsds_drivers_with_linux_on_the_same_device() {
        let table = table(&measurements(&[
            // A row of the RAM disk and of the guest-to-guest sections.
            (LINUX, "image_mib", 500.0),
            (LINUX, "nvme_seqread_1m_mib_s", 40.0),
            (LINUX, "virtio_seqread_1m_mib_s", 50.0),
            ("rumpdisk-netbsd", "virtio_seqread_1m_mib_s", 25.0),
            // One Linux measurement across the e1000 serves both of ours.
            (LINUX, "uplink_ping_rtt_ms", 10.0),
            ("rumpnet", "uplink_ping_rtt_ms", 12.0),
            ("rumpnet-netbsd", "uplink_ping_rtt_ms", 15.0),
        ]));
        assert_in_order(
            &table,
            &[
                "### Block on NVMe passthrough\n",
                "| fio 1 MiB sequential read | MiB/s | 40.0 | - | - | higher |",
                "### Block on virtio-blk passthrough, NetBSD's ld@virtio in rumpdisk\n",
                "| Linux dd | rumpdisk-netbsd | rumpdisk-netbsd / Linux |",
                "| fio 1 MiB sequential read | MiB/s | 50.0 | 25.0 | 0.50 | higher |",
                "### Network across a passed-through e1000\n",
                "| ping round trip, guest to dom0 across the e1000 | ms | 10.0 | 12.0 | 1.20 | lower |",
                "### Network across a passed-through e1000, NetBSD's wm(4) in rumpnet\n",
                "| ping round trip, guest to dom0 across the e1000 | ms | 10.0 | 15.0 | 1.50 | lower |",
            ],
        );
        assert!(!table.contains("Not measured"));
    }

    #[test]
    fn sections_with_nothing_measured_are_left_out_and_named() {
        let table = table(&measurements(&[
            (LINUX, "image_mib", 500.0),
            (LINUX, "nvme_seqread_1m_mib_s", 40.0),
        ]));
        assert_in_order(
            &table,
            &[
                "### Block\n",
                "### Block on NVMe passthrough\n",
                "### Network\n",
                "Not measured in this run: Block on virtio-blk passthrough, NetBSD's ld@virtio \
                 in rumpdisk; Network across a passed-through e1000; Network across a \
                 passed-through e1000, NetBSD's wm(4) in rumpnet.",
            ],
        );
        assert_eq!(table.matches("### ").count(), 3);
    }
}
