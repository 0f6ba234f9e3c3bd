//! The rumpdisk driver domain: serves RAM disks to other domains' blkfronts.
//!
//! Layer: a thin binary at the top. It picks the platform
//! (`rumpuser_xen::pv`, real Xen), the block devices (`blkback::RamDisk`,
//! one per `disk=NAME:SIZE` word of the command line) and the engine
//! (`blkback::Blkback`, `xen/io/blkif.h`), and runs the event loop that
//! feeds the engine. The engine watches this domain's `backend/vbd`
//! directory itself, so no `xl devd` is needed. See `docs/rumpdisk.md`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

extern crate alloc;

#[cfg(target_os = "none")]
mod devices;
mod disks;

#[cfg(target_os = "none")]
mod domain {
    use alloc::vec::Vec;

    use blkback::{Blkback, Config, RamDisk};
    use rumpuser_xen::pv::{self, Platform, ShutdownRequest, Wakeup};
    use xenbus::backend::hold::{AttachHold, Verdict, DEFAULT_HOLD_NS};
    use xenbus::backend::retire::{Outcome, Retirements};

    use crate::disks;

    rumpuser_xen::entry!(main);

    /// Mapped data pages kept per virtual disk: bounded so that all vbds
    /// together stay well inside the platform's grant window.
    const MAX_PERSISTENT_GRANTS: usize = 1024;

    fn main(command_line: &str) -> ! {
        let mut platform = Platform::default();
        let Some(domid) = pv::own_domid() else {
            log::error!("rumpdisk: cannot read our domid from xenstore; stopping");
            pv::shutdown::poweroff();
        };
        let mut config = Config::new(domid);
        config.max_persistent_grants = MAX_PERSISTENT_GRANTS;
        let mut backend: Blkback<Platform, crate::devices::Disk> = Blkback::new(config);

        let (specs, refused) = disks::parse_command_line(command_line);
        for (word, reason) in &refused {
            log::error!("rumpdisk: ignoring disk={word}: {reason}");
        }
        if rumpuser_xen::cmdline::values(command_line, "disk")
            .next()
            .is_none()
        {
            log::warn!("rumpdisk: no disk= on the command line; serving nothing");
        }
        for spec in specs {
            match RamDisk::new(spec.sectors) {
                Ok(disk) => match backend.add_device(&spec.name, disk.into()) {
                    Ok(()) => log::info!(
                        "rumpdisk: RAM disk {} ready, {} sectors ({} MiB)",
                        spec.name,
                        spec.sectors,
                        (spec.sectors * disks::SECTOR_SIZE) >> 20
                    ),
                    Err(error) => log::error!("rumpdisk: cannot add {}: {error:?}", spec.name),
                },
                Err(error) => log::error!(
                    "rumpdisk: cannot create {} ({} sectors): {error:?}",
                    spec.name,
                    spec.sectors
                ),
            }
        }
        let nvme_disks = crate::devices::add_nvme_disks(&mut backend, command_line);
        crate::devices::add_netbsd_disks(&mut backend, command_line);
        log::info!("rumpdisk: {}", pv::memory_summary());

        if let Err(error) = backend.start(&mut platform) {
            log::error!(
                "rumpdisk: cannot watch {}: {error:?}; stopping",
                backend.backend_root()
            );
            pv::shutdown::poweroff();
        }
        log::info!("rumpdisk: serving, watching {}", backend.backend_root());

        let hold_ns = rumpuser_xen::cmdline::values(command_line, "attach-hold-ms")
            .filter_map(|value| value.parse::<u64>().ok())
            .last()
            .map_or(DEFAULT_HOLD_NS, |milliseconds| {
                milliseconds.saturating_mul(1_000_000)
            });
        let mut hold = AttachHold::new(hold_ns);
        // What `xl devd` does in a Linux driver domain: remove the
        // directory of a vbd the toolstack detached, once it is closed and
        // libxl has had time to read Closed.
        let mut retirements = Retirements::default();
        let mut wakeups = Vec::new();
        // Connected vbds at the last look; their count changes only on
        // xenstore events, and each change logs the memory in use.
        let mut connected = 0;
        let mut watched = false;
        loop {
            while backend.poll(&mut platform).more_work {}
            if log::log_enabled!(log::Level::Trace) {
                for vbd in backend.vbds() {
                    log::trace!("after poll: {vbd:?}");
                }
            }
            if core::mem::take(&mut watched) {
                let now_connected = backend
                    .vbds()
                    .iter()
                    .filter(|vbd| vbd.state == xenbus::XenbusState::Connected)
                    .count();
                if now_connected != connected {
                    connected = now_connected;
                    log::info!(
                        "rumpdisk: {connected} vbd(s) connected; {}",
                        pv::memory_summary()
                    );
                }
            }
            wakeups.clear();
            let deadline = [hold.deadline_ns(), retirements.deadline()]
                .into_iter()
                .flatten()
                .min();
            pv::wait(deadline, &mut wakeups);
            for wakeup in wakeups.drain(..) {
                match wakeup {
                    Wakeup::Watch(event) => {
                        watched = true;
                        retirements.touch(
                            backend.directory(),
                            &event.path,
                            pv::time::monotonic_ns(),
                        );
                        let verdict = hold.admit(
                            pv::time::monotonic_ns(),
                            backend.directory(),
                            &event.path,
                            &event.token,
                            |vbd| backend.vbd(vbd.frontend_id, vbd.devid).is_some(),
                        );
                        if verdict == Verdict::Deliver {
                            backend.on_watch(&mut platform, &event.path, &event.token);
                        }
                    }
                    Wakeup::Port(port) => backend.on_event(&mut platform, port),
                    Wakeup::Timer => {}
                    Wakeup::Shutdown(request) => {
                        log::info!(
                            "rumpdisk: shutdown requested ({request:?}) with {} vbd(s) known",
                            backend.vbds().len()
                        );
                        crate::devices::shut_down_nvme_disks(&mut backend, &nvme_disks);
                        match request {
                            ShutdownRequest::Poweroff => pv::shutdown::poweroff(),
                            ShutdownRequest::Reboot => pv::shutdown::reboot(),
                        }
                    }
                }
            }
            let now = pv::time::monotonic_ns();
            // Whatever woke the loop: a busy ring must not keep held
            // events waiting past their time.
            while let Some((path, token)) = hold.due(now) {
                watched = true;
                backend.on_watch(&mut platform, &path, &token);
            }
            for (vbd, outcome) in retirements.retire(&mut platform, backend.directory(), now) {
                let path = backend.directory().device_path(vbd);
                match outcome {
                    Ok(Outcome::Removed) => log::info!("rumpdisk: detached; removed {path}"),
                    Ok(Outcome::Gone | Outcome::InUse) => {}
                    Err(error) => log::warn!("rumpdisk: cannot remove {path}: {error:?}"),
                }
            }
        }
    }
}

/// On the host the binary checks a command line: it prints the disks the
/// domain would create from the `extra=` words given as arguments, and
/// fails if any `disk=` word would be refused. The image itself runs as a
/// Xen PV domain; build it with `cargo xtask build`.
#[cfg(not(target_os = "none"))]
fn main() -> std::process::ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let (specs, refused) = disks::parse_command_line(&words.join(" "));
    for spec in &specs {
        println!(
            "disk {}: {} sectors ({} bytes)",
            spec.name,
            spec.sectors,
            spec.sectors * disks::SECTOR_SIZE
        );
    }
    for (word, reason) in &refused {
        eprintln!("disk={word} refused: {reason}");
    }
    if refused.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
