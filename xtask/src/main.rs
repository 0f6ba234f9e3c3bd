//! `cargo xtask`: the one entry point for building the driver domain images
//! and for the real-Xen rig (Xen 4.17 + Linux dom0 nested in QEMU/TCG).
//!
//! ```text
//! cargo xtask build                 build target/domains/{rumpdisk,rumpnet}
//! cargo xtask e2e [TESTS|GROUPS]    boot the rig once and run the tests
//! cargo xtask e2e --list            list tests and groups
//! cargo xtask bench                 measure dd vs our domains, write docs/benchmarks.md
//! cargo xtask bench --from-log LOG  the same from the serial log of `e2e ... bench`
//! ```
//! The rig itself (scripts, guest init, dom0 tests) lives in `tests/rig/`;
//! docs/rig.md explains it.

mod bench;
mod catalogue;
mod images;
mod rig;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage:
  cargo xtask build                build the driver domain images into target/domains/
  cargo xtask e2e [TESTS...]       run rig tests (names or groups; default: the `default` group)
  cargo xtask e2e --list           list tests and groups
  cargo xtask bench                run the benchmarks and write docs/benchmarks.md
  cargo xtask bench --from-log LOG write docs/benchmarks.md from a boot that ran `bench`
environment:
  RIG_CACHE=dir                    cache of packages and images (default target/rig/cache)
  RIG_TIMEOUT=seconds              stop QEMU after this long (default 300 + 240 per test)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let outcome = match args.first().map(String::as_str) {
        Some("build") => images::build(&root).map(|()| true),
        Some("e2e") if args.get(1).is_some_and(|a| a == "--list") => {
            print!("{}", catalogue::listing());
            Ok(true)
        }
        Some("e2e") => e2e(root, &args[1..]),
        Some("bench") => match args.get(1).map(String::as_str) {
            None => images::build(&root).and_then(|()| bench::run(&rig::Rig::new(root), None)),
            Some("--from-log") if args.len() == 3 => {
                bench::run(&rig::Rig::new(root), Some(std::path::Path::new(&args[2])))
            }
            Some(_) => Err(USAGE.to_string()),
        },
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(true)
        }
        _ => Err(USAGE.to_string()),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The default boot timeout for a list of tests, unless RIG_TIMEOUT says.
fn timeout_for(tests: usize) -> Duration {
    let seconds = std::env::var("RIG_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300 + 240 * tests as u64);
    Duration::from_secs(seconds)
}

/// `cargo xtask e2e`: prepare, boot once, report. Ok(false) when a test failed.
fn e2e(root: PathBuf, words: &[String]) -> Result<bool, String> {
    let tests = catalogue::select(words)?;
    // The rig boots whatever is in target/domains: never a stale image.
    images::build(&root)?;
    let rig = rig::Rig::new(root);
    let boot = match rig
        .prepare()
        .and_then(|()| rig.boot("e2e", &tests, timeout_for(tests.len())))
    {
        Ok(boot) => boot,
        Err(message) => {
            // The summary line stays the last line, whatever went wrong.
            eprintln!("xtask: {message}");
            println!("0 passed, {} failed", tests.len());
            return Ok(false);
        }
    };
    let results = rig::results(&boot, &tests);

    println!();
    for failed in results.iter().filter(|r| r.verdict == rig::Verdict::Fail) {
        println!("==== {} FAILED: {}", failed.name, failed.detail);
        let lines = rig::section(&boot, &failed.name);
        println!(
            "---- last serial lines of {} (full log: {}) ----",
            failed.name,
            boot.serial_log.display()
        );
        for line in &lines[lines.len().saturating_sub(60)..] {
            println!("{line}");
        }
        println!();
    }
    println!(
        "boot: {:.0} s, ended: {:?}, artefacts: {}",
        boot.seconds,
        boot.ending,
        boot.directory.display()
    );
    for result in &results {
        let verdict = match result.verdict {
            rig::Verdict::Pass => "PASS",
            rig::Verdict::Fail => "FAIL",
            rig::Verdict::Skip => "SKIP",
        };
        println!("{verdict:<4} {:<20} {}", result.name, result.detail);
    }
    println!("{}", rig::tally(&results));
    let failed = results.iter().any(|r| r.verdict == rig::Verdict::Fail);
    Ok(!failed && boot.ending == rig::Ending::Finished)
}
