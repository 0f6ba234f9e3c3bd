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

mod disks;

#[cfg(target_os = "none")]
mod domain {
    use alloc::vec::Vec;

    use blkback::{Blkback, Config, RamDisk};
    use rumpuser_xen::pv::{self, Platform, ShutdownRequest, Wakeup};

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
        let mut backend: Blkback<Platform, RamDisk> = Blkback::new(config);

        let (specs, refused) = disks::parse_command_line(command_line);
        for (word, reason) in &refused {
            log::error!("rumpdisk: ignoring disk={word}: {reason}");
        }
        if specs.is_empty() {
            log::warn!("rumpdisk: no disk=NAME:SIZE on the command line; serving nothing");
        }
        for spec in specs {
            match RamDisk::new(spec.sectors) {
                Ok(disk) => match backend.add_device(&spec.name, disk) {
                    Ok(()) => log::info!(
                        "rumpdisk: RAM disk {} ready, {} sectors ({} MiB)",
                        spec.name,
                        spec.sectors,
                        spec.sectors * disks::SECTOR_SIZE >> 20
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
        log::info!("rumpdisk: {}", pv::memory_summary());

        if let Err(error) = backend.start(&mut platform) {
            log::error!("rumpdisk: cannot watch {}: {error:?}; stopping", backend.backend_root());
            pv::shutdown::poweroff();
        }
        log::info!("rumpdisk: serving, watching {}", backend.backend_root());

        let mut wakeups = Vec::new();
        loop {
            while backend.poll(&mut platform).more_work {}
            wakeups.clear();
            pv::wait(None, &mut wakeups);
            for wakeup in wakeups.drain(..) {
                match wakeup {
                    Wakeup::Watch(event) => backend.on_watch(&mut platform, &event.path, &event.token),
                    Wakeup::Port(port) => backend.on_event(&mut platform, port),
                    Wakeup::Timer => {}
                    Wakeup::Shutdown(request) => {
                        log::info!(
                            "rumpdisk: shutdown requested ({request:?}) with {} vbd(s) known",
                            backend.vbds().len()
                        );
                        match request {
                            ShutdownRequest::Poweroff => pv::shutdown::poweroff(),
                            ShutdownRequest::Reboot => pv::shutdown::reboot(),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("this image runs as a Xen PV domain; build it with `cargo xtask build`");
}
