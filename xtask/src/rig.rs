//! The real-Xen rig: Xen 4.17 with a Linux dom0, nested in QEMU (TCG).
//!
//! Preparation runs the shell scripts in `tests/rig/` (host packages, Xen
//! and kernel packages, root filesystem, initramfs), which cache their work
//! under the cache directory. A boot assembles the payload disk, starts QEMU
//! under `/tmp/xen-rig.lock`, copies the serial console to `serial.log` with
//! a timestamp per line, and stops QEMU when dom0 is done, on a panic, or on
//! the timeout. See docs/rig.md.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, LineWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::images::NETBSD_MARKER;

/// Serialises every QEMU boot on this machine (two cores are not enough
/// for two emulated Xen hosts). Others use `flock /tmp/xen-rig.lock ...`;
/// `File::lock` takes the same flock(2) lock.
const LOCK_FILE: &str = "/tmp/xen-rig.lock";
/// How long QEMU may linger once dom0 has printed its summary.
const EXIT_GRACE: Duration = Duration::from_secs(30);
/// Serial output kept after a panic before QEMU is stopped.
const PANIC_GRACE: Duration = Duration::from_secs(5);

/// The domains' images and configs other parts of the workspace provide.
pub const DOMAIN_IMAGES: &[&str] = &["rumpdisk", "rumpnet"];
/// Test images built and shipped like the domains (to `target/domains/`
/// and the payload's `domains/`), but booted only by their rig tests:
/// binaries of the package [`TEST_IMAGE_PACKAGE`].
pub const TEST_IMAGES: &[&str] = &["rumpuser-smoke"];
/// The package whose binaries the test images are (they call the
/// platform's C symbols, which is unsafe code, kept to that crate).
pub const TEST_IMAGE_PACKAGE: &str = "rumpuser-xen";

/// Where things live.
pub struct Rig {
    /// Workspace root.
    pub root: PathBuf,
    /// Cache of packages and images (`$RIG_CACHE`, default target/rig/cache).
    pub cache: PathBuf,
}

/// What a test reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The test could not run here (for example, the images lack what it
    /// needs) and said why: neither a pass nor a failure.
    Skip,
}

/// Verdict of one requested test.
pub struct TestResult {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }
}

/// How a boot ended.
#[derive(Debug, PartialEq)]
pub enum Ending {
    /// dom0 printed its summary (QEMU then exited or was stopped).
    Finished,
    /// QEMU exited before dom0 printed its summary.
    QemuExited,
    /// Xen or dom0 panicked.
    Panic,
    /// The timeout passed.
    Timeout,
}

/// Everything a boot produced.
pub struct Boot {
    pub directory: PathBuf,
    pub serial_log: PathBuf,
    /// The serial lines, as written to `serial_log`.
    pub lines: Vec<String>,
    pub ending: Ending,
    pub seconds: f64,
}

impl Boot {
    /// A finished boot, read back from its serial log.
    pub fn from_log(path: &Path) -> Result<Boot, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let ending = if lines.iter().any(|l| l.contains("RIG-SUMMARY")) {
            Ending::Finished
        } else {
            Ending::QemuExited
        };
        Ok(Boot {
            directory: path.parent().map(PathBuf::from).unwrap_or_default(),
            serial_log: path.to_path_buf(),
            lines,
            ending,
            seconds: 0.0,
        })
    }
}

impl Rig {
    pub fn new(root: PathBuf) -> Rig {
        let cache = std::env::var_os("RIG_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/rig/cache"));
        Rig { root, cache }
    }

    fn script(&self, name: &str) -> Result<(), String> {
        let started = Instant::now();
        let path = self.root.join("tests/rig").join(name);
        let status = Command::new(&path)
            .env("RIG_CACHE", &self.cache)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        if !status.success() {
            return Err(format!("{name} failed ({status})"));
        }
        println!(
            "xtask: {name} took {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Host packages, Xen and kernel, root filesystem, initramfs: each step
    /// skips what its cache already holds.
    pub fn prepare(&self) -> Result<(), String> {
        if !running_as_root() {
            return Err(
                "the rig installs packages and builds images as root; run it as root".into(),
            );
        }
        for step in ["host-setup.sh", "build-rootfs.sh", "build-initramfs.sh"] {
            self.script(step)?;
        }
        Ok(())
    }

    /// Versions of the rig's parts, for reports.
    pub fn versions(&self) -> Vec<(&'static str, String)> {
        let read = |name: &str| {
            fs::read_to_string(self.cache.join(name))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let qemu = Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| {
                s.lines()
                    .next()
                    .map(|l| l.replace("QEMU emulator version ", ""))
            })
            .unwrap_or_default();
        vec![
            ("Xen", read("xen-version")),
            (
                "Linux",
                format!("{} ({})", read("kernel-abi"), read("kernel-version")),
            ),
            ("QEMU", qemu),
        ]
    }

    /// Builds the payload disk for one boot: the dom0 scripts, the guest
    /// kernel and initramfs, the xl configs and whatever domain images exist.
    fn payload(&self, directory: &Path) -> Result<PathBuf, String> {
        let tree = directory.join("payload");
        fs::create_dir_all(tree.join("domains")).map_err(io_error("payload"))?;
        fs::create_dir_all(tree.join("xl-configs")).map_err(io_error("payload"))?;
        copy_files(&self.root.join("tests/rig/payload"), &tree, |_| true)?;
        copy_files(
            &self.root.join("xl-configs"),
            &tree.join("xl-configs"),
            |p| p.extension().is_some_and(|e| e == "cfg"),
        )?;
        for file in ["vmlinux", "initramfs.cpio.gz"] {
            copy(&self.cache.join(file), &tree.join(file))?;
        }
        for image in DOMAIN_IMAGES.iter().chain(TEST_IMAGES) {
            let built = self.root.join("target/domains").join(image);
            if built.is_file() {
                copy(&built, &tree.join("domains").join(image))?;
                // Symbols for diag_domain's xenctx stack dumps.
                if let Ok(out) = Command::new("nm").arg("-n").arg(&built).output() {
                    if out.status.success() {
                        fs::write(tree.join(format!("{image}.map")), out.stdout)
                            .map_err(io_error("symbol map"))?;
                    }
                }
            }
        }
        // The images hold NetBSD's drivers: the `netbsd` tests look for it.
        let marker = self.root.join("target/domains").join(NETBSD_MARKER);
        if marker.is_file() {
            copy(&marker, &tree.join("domains").join(NETBSD_MARKER))?;
        }
        let image = directory.join("payload.ext4");
        let megabytes = tree_size(&tree) / (1 << 20) + 64;
        run(Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", "rigpayload", "-d"])
            .arg(&tree)
            .arg(&image)
            .arg(format!("{megabytes}M")))?;
        fs::remove_dir_all(&tree).map_err(io_error("payload tree"))?;
        Ok(image)
    }

    /// `target/rig/NAME`, a sparse 64 MiB raw disk for a passed-through
    /// device, made on first use and kept across boots like a real disk.
    fn disk_image(&self, name: &str) -> Result<PathBuf, String> {
        let path = self.root.join("target/rig").join(name);
        if !path.exists() {
            fs::File::create(&path)
                .and_then(|file| file.set_len(64 << 20))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(path)
    }

    /// Boots Xen and dom0 once and runs `tests` in order.
    pub fn boot(&self, label: &str, tests: &[&str], timeout: Duration) -> Result<Boot, String> {
        let stamp = timestamp();
        let directory = self
            .root
            .join("target/rig")
            .join(format!("{stamp}-{label}"));
        fs::create_dir_all(&directory).map_err(io_error("output directory"))?;

        let payload = self.payload(&directory)?;
        let serial_log = directory.join("serial.log");
        let dom0_command_line = format!(
            "root=/dev/vda console=hvc0 earlyprintk=xen rig.payload=/dev/vdb rig.script=dom0-main.sh rig.tests={}",
            tests.join("+")
        );
        // QEMU splits -initrd at commas (",," is a literal comma).
        assert!(!dom0_command_line.contains(','));
        let cache = |name: &str| self.cache.join(name).display().to_string();
        let drive =
            |file: String, options: &str| format!("file={file},format=raw,if=virtio,{options}");
        let payload_file = payload.display().to_string();
        // An NVMe controller at 00:11.0 for PCI passthrough into rumpdisk
        // (tests-rumpdisk-nvme.sh), backed by a sparse file that outlives
        // the boot like a real disk would.
        let nvme_image = self.disk_image("nvme.img")?;
        // A legacy virtio-blk function at 00:13.0 for NetBSD's ld@virtio in
        // rumpdisk (tests-netbsd.sh): NetBSD's rump virtio driver knows only
        // legacy devices (I/O BAR0, device ids 0x1000-0x103f, revision 0).
        let virtio_image = self.disk_image("virtio-blk.img")?;
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args(["-machine", "q35", "-accel", "tcg", "-cpu", "qemu64,+npt", "-smp", "2", "-m", "3072"])
            .args(["-device", "intel-iommu,intremap=on"])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-net", "none"])
            .arg("-kernel")
            .arg(cache("xen"))
            .arg("-append")
            .arg("console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=2 loglvl=all guest_loglvl=all")
            .arg("-initrd")
            .arg(format!("{} {dom0_command_line},{}", cache("vmlinuz"), cache("initramfs.cpio.gz")))
            // vda: dom0's root; vdb: payload for dom0; vdc: payload again and
            // vdd: root again, both for the Linux driver domain dd; vde: the
            // guests' tools disk. snapshot=on keeps the cached images pristine.
            .arg("-drive")
            .arg(drive(cache("rootfs.ext4"), "snapshot=on"))
            .arg("-drive")
            .arg(drive(payload_file.clone(), "readonly=on"))
            .arg("-drive")
            .arg(drive(payload_file, "readonly=on"))
            .arg("-drive")
            .arg(drive(cache("rootfs.ext4"), "snapshot=on"))
            .arg("-drive")
            .arg(drive(cache("tools.ext4"), "readonly=on"))
            .arg("-drive")
            .arg(format!("file={},format=raw,if=none,id=nvme0", nvme_image.display()))
            .args(["-device", "nvme,drive=nvme0,serial=rignvme,addr=0x11"])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=none,id=vblk0", virtio_image.display()))
            .args(["-device", "virtio-blk-pci,drive=vblk0,disable-modern=on,addr=0x13"])
            // Two e1000 NICs on one emulated wire (a QEMU hub): 00:10.0 for
            // passthrough into rumpnet as its uplink, 00:12.0 for dom0's
            // Linux e1000 driver (tests-rumpnet-e1000.sh).
            .args(["-netdev", "hubport,id=wire-uplink,hubid=1"])
            .args(["-device", "e1000,netdev=wire-uplink,addr=0x10,mac=52:54:00:00:71:10"])
            .args(["-netdev", "hubport,id=wire-dom0,hubid=1"])
            .args(["-device", "e1000,netdev=wire-dom0,addr=0x12,mac=52:54:00:00:71:12"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        fs::write(directory.join("qemu-command.txt"), format!("{qemu:?}\n"))
            .map_err(io_error("qemu-command.txt"))?;

        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .map_err(io_error(LOCK_FILE))?;
        if lock.try_lock().is_err() {
            println!("xtask: waiting for {LOCK_FILE} (another rig boot is running)");
            lock.lock().map_err(io_error(LOCK_FILE))?;
        }
        // target/rig/latest: the boot that started last (not one still queued).
        let latest = self.root.join("target/rig/latest");
        let _ = fs::remove_file(&latest);
        let _ = std::os::unix::fs::symlink(&directory, &latest);
        println!("xtask: booting Xen in QEMU for: {}", tests.join(" "));
        println!("xtask: serial log {}", serial_log.display());
        let boot = watch(qemu, &serial_log, timeout);
        drop(lock);
        let _ = fs::remove_file(&payload);
        let (lines, ending, seconds) = boot?;
        Ok(Boot {
            directory,
            serial_log,
            lines,
            ending,
            seconds,
        })
    }
}

/// Runs QEMU, timestamps and logs its output, echoes the rig's milestones,
/// and decides when the boot is over. QEMU is killed on every way out.
fn watch(
    mut qemu: Command,
    serial_log: &Path,
    timeout: Duration,
) -> Result<(Vec<String>, Ending, f64), String> {
    let mut log = LineWriter::new(File::create(serial_log).map_err(io_error("serial.log"))?);
    let started = Instant::now();
    let mut child = qemu
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let (sender, receiver) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    for (stream, prefix) in [
        (Box::new(stdout) as Box<dyn std::io::Read + Send>, ""),
        (Box::new(stderr), "qemu: "),
    ] {
        let sender = sender.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buffer = Vec::new();
            while reader.read_until(b'\n', &mut buffer).unwrap_or(0) > 0 {
                let text = String::from_utf8_lossy(&buffer).replace('\r', "");
                let _ = sender.send(format!("{prefix}{}", text.trim_end_matches('\n')));
                buffer.clear();
            }
        });
    }
    drop(sender);

    let mut lines = Vec::new();
    let mut finished_at: Option<Instant> = None;
    let mut panic_at: Option<Instant> = None;
    let ending = loop {
        match receiver.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                let stamped = format!("[{:7.1}] {line}", started.elapsed().as_secs_f64());
                let _ = writeln!(log, "{stamped}");
                if is_milestone(&line) {
                    println!("{stamped}");
                }
                if line.contains("RIG-SUMMARY") {
                    finished_at.get_or_insert_with(Instant::now);
                }
                if panic_at.is_none() && is_panic(&line) {
                    println!("xtask: panic on the serial console; stopping QEMU shortly");
                    panic_at = Some(Instant::now());
                }
                lines.push(stamped);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Both pipes closed: QEMU is gone (or going).
                let _ = child.wait();
                break if finished_at.is_some() {
                    Ending::Finished
                } else {
                    Ending::QemuExited
                };
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if panic_at.is_some_and(|at| at.elapsed() > PANIC_GRACE) {
            break Ending::Panic;
        }
        if finished_at.is_some_and(|at| at.elapsed() > EXIT_GRACE) {
            println!("xtask: dom0 finished but QEMU is still running; stopping it");
            break Ending::Finished;
        }
        if started.elapsed() > timeout {
            println!(
                "xtask: timeout after {} s; stopping QEMU",
                timeout.as_secs()
            );
            break Ending::Timeout;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    // Lines still in flight from the pipes.
    while let Ok(line) = receiver.recv_timeout(Duration::from_millis(200)) {
        let stamped = format!("[{:7.1}] {line}", started.elapsed().as_secs_f64());
        let _ = writeln!(log, "{stamped}");
        lines.push(stamped);
    }
    Ok((lines, ending, started.elapsed().as_secs_f64()))
}

fn is_milestone(line: &str) -> bool {
    line.contains("RIG-")
        || line.contains("RIG[")
        || line.contains("RIG:")
        || line.starts_with("qemu: ")
        || line.contains("Xen version")
        || is_panic(line)
}

fn is_panic(line: &str) -> bool {
    line.contains("Panic on CPU") || line.contains("Kernel panic - not syncing")
}

/// Reads the verdicts for `tests` from a boot's serial lines. A requested
/// test without a verdict failed: the boot ended before it reported.
pub fn results(boot: &Boot, tests: &[&str]) -> Vec<TestResult> {
    tests
        .iter()
        .map(|name| {
            let verdicts: Vec<(Verdict, String)> = boot
                .lines
                .iter()
                .filter_map(|line| parse_result(line))
                .filter(|(test, _, _)| test == name)
                .map(|(_, verdict, detail)| (verdict, detail))
                .collect();
            let failure = verdicts
                .iter()
                .find(|(verdict, _)| *verdict == Verdict::Fail);
            let (verdict, detail) = match failure {
                Some(failure) => failure.clone(),
                None => verdicts.into_iter().next().unwrap_or_else(|| {
                    (
                        Verdict::Fail,
                        format!(
                            "no result: the boot ended ({:?}) before this test reported",
                            boot.ending
                        ),
                    )
                }),
            };
            TestResult {
                name: name.to_string(),
                verdict,
                detail,
            }
        })
        .collect()
}

/// The last line of a run: `N passed, M failed`, and `, K skipped` when
/// tests skipped.
pub fn tally(results: &[TestResult]) -> String {
    let count = |verdict| results.iter().filter(|r| r.verdict == verdict).count();
    let mut line = format!(
        "{} passed, {} failed",
        count(Verdict::Pass),
        count(Verdict::Fail)
    );
    let skipped = count(Verdict::Skip);
    if skipped > 0 {
        line.push_str(&format!(", {skipped} skipped"));
    }
    line
}

/// `RIG-RESULT <test> PASS|FAIL|SKIP <detail>` anywhere on a line.
fn parse_result(line: &str) -> Option<(String, Verdict, String)> {
    let rest = &line[line.find("RIG-RESULT ")? + "RIG-RESULT ".len()..];
    let mut words = rest.splitn(3, ' ');
    let name = words.next()?.to_string();
    let verdict = match words.next()? {
        "PASS" => Verdict::Pass,
        "FAIL" => Verdict::Fail,
        "SKIP" => Verdict::Skip,
        _ => return None,
    };
    Some((name, verdict, words.next().unwrap_or("").to_string()))
}

/// The serial lines of one test, between its BEGIN and END markers.
pub fn section<'a>(boot: &'a Boot, test: &str) -> &'a [String] {
    let begin_marker = format!("RIG-TEST-BEGIN {test}");
    let end_marker = format!("RIG-TEST-END {test}");
    let Some(begin) = boot.lines.iter().position(|l| l.ends_with(&begin_marker)) else {
        return &boot.lines[boot.lines.len().saturating_sub(40)..];
    };
    let end = boot.lines[begin..]
        .iter()
        .position(|l| l.ends_with(&end_marker))
        .map_or(boot.lines.len(), |offset| begin + offset + 1);
    &boot.lines[begin..end]
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn timestamp() -> String {
    Command::new("date")
        .arg("+%Y%m%d-%H%M%S")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "run".into())
}

fn io_error(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))
}

fn copy_files(from: &Path, to: &Path, wanted: impl Fn(&Path) -> bool) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(from) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() && wanted(&path) {
            copy(&path, &to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

pub fn tree_size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| tree_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(meta) => meta.len(),
        Err(_) => 0,
    }
}

/// Runs a command to completion, failing with its output.
pub fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_read_from_anywhere_on_a_line() {
        let line = "[  12.5] RIG-RESULT linux-blk FAIL step 'write': md5 differs";
        let (name, verdict, detail) = parse_result(line).unwrap();
        assert_eq!(name, "linux-blk");
        assert_eq!(verdict, Verdict::Fail);
        assert_eq!(detail, "step 'write': md5 differs");
        assert!(parse_result("[ 1.0] RIG-RESULT hello MAYBE").is_none());
    }

    #[test]
    fn a_missing_or_failed_verdict_fails_the_test() {
        let boot = Boot {
            directory: PathBuf::new(),
            serial_log: PathBuf::new(),
            lines: vec![
                "[1] RIG-RESULT hello PASS up".into(),
                "[2] RIG-RESULT two PASS first".into(),
                "[3] RIG-RESULT two FAIL second".into(),
            ],
            ending: Ending::Timeout,
            seconds: 1.0,
        };
        let verdicts = results(&boot, &["hello", "two", "absent"]);
        assert!(verdicts[0].passed());
        assert!(verdicts[1].verdict == Verdict::Fail && verdicts[1].detail == "second");
        assert!(verdicts[2].verdict == Verdict::Fail && verdicts[2].detail.contains("Timeout"));
    }

    #[test]
    fn a_skip_is_neither_a_pass_nor_a_failure() {
        let boot = Boot {
            directory: PathBuf::new(),
            serial_log: PathBuf::new(),
            lines: vec![
                "[1] RIG-RESULT hello PASS up".into(),
                "[2] RIG-RESULT netbsd SKIP images built without RUMP_LIBDIR".into(),
                "[3] RIG-RESULT broken SKIP first".into(),
                "[4] RIG-RESULT broken FAIL then".into(),
            ],
            ending: Ending::Finished,
            seconds: 1.0,
        };
        let verdicts = results(&boot, &["hello", "netbsd", "broken"]);
        assert_eq!(verdicts[1].verdict, Verdict::Skip);
        assert!(!verdicts[1].passed());
        assert_eq!(verdicts[1].detail, "images built without RUMP_LIBDIR");
        // A failure reported after a skip still fails the test.
        assert_eq!(verdicts[2].verdict, Verdict::Fail);
        assert_eq!(tally(&verdicts), "1 passed, 1 failed, 1 skipped");
        assert_eq!(tally(&verdicts[..1]), "1 passed, 0 failed");
    }
}
