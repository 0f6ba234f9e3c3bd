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

/// Which backend a metric compares ours against.
#[derive(Clone, Copy, PartialEq)]
enum Device {
    Block,
    /// The same block workloads on the rig's NVMe controller, passed
    /// through to each driver domain in turn.
    Nvme,
    Network,
    /// A guest behind the driver domain reaching dom0 across the rig's
    /// emulated wire, through the e1000 passed through to the domain.
    Uplink,
}

struct Metric {
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    device: Device,
}

const fn metric(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    device: Device,
) -> Metric {
    Metric {
        key,
        label,
        unit,
        higher_is_better,
        device,
    }
}

const METRICS: &[Metric] = &[
    metric(
        "randread_4k_qd32_iops",
        "fio 4 KiB random read, QD32",
        "IOPS",
        true,
        Device::Block,
    ),
    metric(
        "randwrite_4k_qd32_iops",
        "fio 4 KiB random write, QD32",
        "IOPS",
        true,
        Device::Block,
    ),
    metric(
        "seqread_1m_mib_s",
        "fio 1 MiB sequential read",
        "MiB/s",
        true,
        Device::Block,
    ),
    metric(
        "seqwrite_1m_verify_mib_s",
        "fio 1 MiB sequential write + verify",
        "MiB/s",
        true,
        Device::Block,
    ),
    metric(
        "sequential_data_verified",
        "fio verify pass over the written data",
        "1 = ok",
        true,
        Device::Block,
    ),
    metric(
        "create_to_ready_s",
        "xl create to backend ready",
        "s",
        false,
        Device::Block,
    ),
    metric(
        "create_to_connected_s",
        "xl create to frontend Connected",
        "s",
        false,
        Device::Block,
    ),
    metric(
        "memory_mib",
        "memory given to the driver domain",
        "MiB",
        false,
        Device::Block,
    ),
    metric(
        "memory_used_mib",
        "memory in use after the workload, RAM disks included",
        "MiB",
        false,
        Device::Block,
    ),
    metric(
        "image_mib",
        "image size (kernel + ramdisk + root fs)",
        "MiB",
        false,
        Device::Block,
    ),
    metric(
        "nvme_randread_4k_qd32_iops",
        "fio 4 KiB random read, QD32",
        "IOPS",
        true,
        Device::Nvme,
    ),
    metric(
        "nvme_randwrite_4k_qd32_iops",
        "fio 4 KiB random write, QD32",
        "IOPS",
        true,
        Device::Nvme,
    ),
    metric(
        "nvme_seqread_1m_mib_s",
        "fio 1 MiB sequential read",
        "MiB/s",
        true,
        Device::Nvme,
    ),
    metric(
        "nvme_seqwrite_1m_verify_mib_s",
        "fio 1 MiB sequential write + verify",
        "MiB/s",
        true,
        Device::Nvme,
    ),
    metric(
        "nvme_sequential_data_verified",
        "fio verify pass over the written data",
        "1 = ok",
        true,
        Device::Nvme,
    ),
    metric(
        "nvme_create_to_ready_s",
        "xl create to backend ready, controller up",
        "s",
        false,
        Device::Nvme,
    ),
    metric(
        "nvme_create_to_connected_s",
        "xl create to frontend Connected",
        "s",
        false,
        Device::Nvme,
    ),
    metric(
        "nvme_memory_mib",
        "memory given to the driver domain",
        "MiB",
        false,
        Device::Nvme,
    ),
    metric(
        "nvme_memory_used_mib",
        "memory in use after the workload",
        "MiB",
        false,
        Device::Nvme,
    ),
    metric(
        "iperf3_tcp_mbit_s",
        "iperf3 TCP, guest to guest, 10 s",
        "Mbit/s",
        true,
        Device::Network,
    ),
    metric(
        "ping_rtt_ms",
        "ping round trip, guest to guest",
        "ms",
        false,
        Device::Network,
    ),
    metric(
        "net_create_to_ready_s",
        "xl create to backend ready",
        "s",
        false,
        Device::Network,
    ),
    metric(
        "create_to_vif_connected_s",
        "xl create to first vif Connected",
        "s",
        false,
        Device::Network,
    ),
    metric(
        "memory_mib",
        "memory given to the driver domain",
        "MiB",
        false,
        Device::Network,
    ),
    metric(
        "image_mib",
        "image size (kernel + ramdisk + root fs)",
        "MiB",
        false,
        Device::Network,
    ),
    metric(
        "uplink_iperf3_tcp_mbit_s",
        "iperf3 TCP, guest to dom0 across the e1000, 10 s",
        "Mbit/s",
        true,
        Device::Uplink,
    ),
    metric(
        "uplink_ping_rtt_ms",
        "ping round trip, guest to dom0 across the e1000",
        "ms",
        false,
        Device::Uplink,
    ),
    metric(
        "uplink_net_create_to_ready_s",
        "xl create to backend ready, NIC up",
        "s",
        false,
        Device::Uplink,
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
         {table}\n",
        versions = versions.join(", "),
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

fn table(measured: &Measurements) -> String {
    let mut out = String::new();
    for (device, ours, title) in [
        (Device::Block, "rumpdisk", "Block"),
        (Device::Nvme, "rumpdisk", "Block on NVMe passthrough"),
        (Device::Network, "rumpnet", "Network"),
        (
            Device::Uplink,
            "rumpnet",
            "Network across a passed-through e1000",
        ),
    ] {
        out.push_str(&format!(
            "### {title}\n\n| measurement | unit | Linux dd | {ours} | {ours} / Linux | better |\n|---|---|---:|---:|---:|---|\n"
        ));
        for m in METRICS.iter().filter(|m| m.device == device) {
            let linux = measured.get(&(LINUX.to_string(), m.key.to_string()));
            let our = measured.get(&(ours.to_string(), m.key.to_string()));
            let show = |v: Option<&f64>| v.map_or("-".to_string(), |v| format_value(*v));
            let ratio = match (our, linux) {
                (Some(o), Some(l)) if *l != 0.0 => format!("{:.2}", o / l),
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
        let mut measured = Measurements::new();
        measured.insert((LINUX.into(), "randread_4k_qd32_iops".into()), 2000.0);
        measured.insert(("rumpdisk".into(), "randread_4k_qd32_iops".into()), 3000.0);
        measured.insert((LINUX.into(), "iperf3_tcp_mbit_s".into()), 150.0);
        let table = table(&measured);
        assert!(
            table.contains("| fio 4 KiB random read, QD32 | IOPS | 2000 | 3000 | 1.50 | higher |")
        );
        assert!(
            table.contains("| iperf3 TCP, guest to guest, 10 s | Mbit/s | 150 | - | - | higher |")
        );
    }

    #[test]
    fn nvme_rows_sit_in_their_own_section_after_the_ram_disk_rows() {
        let mut measured = Measurements::new();
        measured.insert((LINUX.into(), "randread_4k_qd32_iops".into()), 2000.0);
        measured.insert((LINUX.into(), "nvme_randread_4k_qd32_iops".into()), 400.0);
        measured.insert(
            ("rumpdisk".into(), "nvme_randread_4k_qd32_iops".into()),
            500.0,
        );
        let table = table(&measured);
        let nvme = table.find("### Block on NVMe passthrough").unwrap();
        let network = table.find("### Network").unwrap();
        let row = table
            .find("| fio 4 KiB random read, QD32 | IOPS | 400 | 500 | 1.25 | higher |")
            .unwrap();
        assert!(nvme < row && row < network);
        assert!(table.contains("| fio 4 KiB random read, QD32 | IOPS | 2000 | - | - | higher |"));
    }

    #[test]
    fn uplink_rows_come_last_and_compare_rumpnet() {
        let mut measured = Measurements::new();
        measured.insert((LINUX.into(), "iperf3_tcp_mbit_s".into()), 300.0);
        measured.insert((LINUX.into(), "uplink_iperf3_tcp_mbit_s".into()), 80.0);
        measured.insert(("rumpnet".into(), "uplink_iperf3_tcp_mbit_s".into()), 60.0);
        let table = table(&measured);
        let network = table.find("### Network\n").unwrap();
        let uplink = table
            .find("### Network across a passed-through e1000")
            .unwrap();
        let row = table
            .find("| iperf3 TCP, guest to dom0 across the e1000, 10 s | Mbit/s | 80.0 | 60.0 | 0.75 | higher |")
            .unwrap();
        assert!(network < uplink && uplink < row);
        assert!(
            table.contains("| iperf3 TCP, guest to guest, 10 s | Mbit/s | 300 | - | - | higher |")
        );
    }
}
