//! The rumpnet driver domain: networks other domains' netfronts through a
//! switch inside this domain, with no bridge or hotplug script in dom0.
//!
//! Layer: a thin binary at the top. It picks the platform
//! (`rumpuser_xen::pv`, real Xen), the engine (`netback::Netback`, the
//! backend half of
//! [`xen/io/netif.h`](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/io/netif.h),
//! with its learning switch) and the uplink: an e1000 passed through to
//! the domain (`uplink=ADDRESS`, driven by `drivers/e1000`) or none, when
//! the switch joins the vifs only. It runs the event loop that feeds the
//! engine: watch events, event channel ports, time. The engine
//! watches this domain's `backend/vif` directory itself, so no `xl devd`
//! is needed. Every second or so it writes per-vif counters to xenstore.
//! See `docs/rumpnet.md`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

extern crate alloc;

#[cfg(test)]
mod detach;
mod options;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod report;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod uplink;

#[cfg(target_os = "none")]
mod domain {
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;
    use core::time::Duration;

    use netback::{Config, DeviceAddress, Netback};
    use pcidev::Bdf;
    use rumpuser_xen::pv::{self, pci, Platform, ShutdownRequest, Wakeup};
    use xenbus::backend::hold::{AttachHold, Verdict};
    use xenbus::backend::retire::{Outcome, Retirements};

    use crate::options::{self, UplinkChoice};
    use crate::report::VifLog;
    use crate::uplink::{Mac, Uplink};

    rumpuser_xen::entry!(main);

    /// How often rings are looked at without an event while some frontend
    /// does not notify when it posts receive buffers (no
    /// `feature-rx-notify`, as GNU Mach's netfront).
    const RX_POLL_INTERVAL_NS: u64 = 10_000_000;

    /// Polls in a row while the engine reports more work, before events
    /// and watches get a look in.
    const POLLS_PER_ROUND: usize = 16;

    fn main(command_line: &str) -> ! {
        let (options, refused) = options::parse(command_line);
        for (word, reason) in &refused {
            log::error!("rumpnet: ignoring {word}: {reason}");
        }
        let mut uplink = match options.uplink {
            Some(UplinkChoice::Pci(address)) => open_uplink(address),
            Some(UplinkChoice::Netbsd(name)) => open_netbsd_uplink(name.as_str()),
            None => Uplink::None,
        };
        let config = Config {
            max_queues: options.max_queues,
            uplink: uplink.is_present(),
            ..Config::default()
        };
        let mut platform = Platform::default();
        let mut netback: Netback<Platform> = Netback::new(config);
        if let Err(error) = netback.start(&mut platform) {
            log::error!("rumpnet: cannot watch backend/vif: {error:?}; stopping");
            pv::shutdown::poweroff();
        }
        log::info!(
            "rumpnet: serving, watching backend/vif; up to {} queue(s) per vif, statistics every {} ms; {}",
            options.max_queues,
            options.statistics_interval_ns / 1_000_000,
            pv::memory_summary()
        );

        let mut hold = AttachHold::new(options.attach_hold_ns);
        // What `xl devd` does in a Linux driver domain: remove the
        // directory of a vif the toolstack detached, once it is closed and
        // libxl has had time to read Closed.
        let mut retirements = Retirements::default();
        let mut vif_log = VifLog::default();
        let mut rx_polling = false;
        let mut next_statistics = pv::time::monotonic_ns() + options.statistics_interval_ns;
        let mut uplink_log = UplinkLog::default();
        let mut wakeups = Vec::new();
        loop {
            // The NIC's interrupts, link and finished transmissions.
            let tended = uplink.tend();
            if let Some(up) = tended.link_changed {
                log::info!("rumpnet: uplink: link {}", if up { "up" } else { "down" });
            }
            // Move frames while there are any, within a bound so that a
            // busy ring cannot keep watches and shutdown waiting.
            let now = pv::time::monotonic_ns();
            let mut busy = tended.rx_pending;
            for _ in 0..POLLS_PER_ROUND {
                busy = netback
                    .poll(&mut platform, &mut uplink, Duration::from_nanos(now))
                    .more_work;
                if !busy {
                    break;
                }
            }
            // Netback takes a bounded number of frames from the uplink per
            // poll and does not count what it left behind.
            busy = busy || uplink.rx_pending();

            let mut deadline = next_statistics;
            if let Some(held) = hold.deadline_ns() {
                deadline = deadline.min(held);
            }
            if let Some(retire) = retirements.deadline() {
                deadline = deadline.min(retire);
            }
            if rx_polling {
                deadline = deadline.min(now + RX_POLL_INTERVAL_NS);
            }
            if busy {
                deadline = now;
            }
            wakeups.clear();
            pv::wait(Some(deadline), &mut wakeups);

            let mut watched = false;
            for wakeup in wakeups.drain(..) {
                match wakeup {
                    Wakeup::Port(port) => {
                        if !netback.on_event(&mut platform, port) {
                            // A port of a vif torn down meanwhile: leave it
                            // masked; it is closed or about to be.
                            log::debug!("rumpnet: event on port {port}, which is not a vif's");
                        }
                    }
                    Wakeup::Watch(event) => {
                        watched = true;
                        let now = pv::time::monotonic_ns();
                        retirements.touch(netback.directory(), &event.path, now);
                        let known = known_vifs(&netback);
                        let verdict = hold.admit(
                            now,
                            netback.directory(),
                            &event.path,
                            &event.token,
                            |vif| known.contains(&key(vif)),
                        );
                        if verdict == Verdict::Deliver {
                            netback.on_watch(&mut platform, &event.path, &event.token);
                        }
                    }
                    Wakeup::Timer => {}
                    Wakeup::Shutdown(request) => {
                        log::info!(
                            "rumpnet: shutdown requested ({request:?}) with {} vif(s)",
                            netback.vifs().len()
                        );
                        netback.shutdown(&mut platform);
                        // Reset the NIC so that it stops using its DMA
                        // memory before the domain goes.
                        if core::mem::replace(&mut uplink, Uplink::None)
                            .shutdown()
                            .is_some()
                        {
                            log::info!("rumpnet: uplink: device reset");
                        }
                        match request {
                            ShutdownRequest::Poweroff => pv::shutdown::poweroff(),
                            ShutdownRequest::Reboot => pv::shutdown::reboot(),
                        }
                    }
                }
            }

            let now = pv::time::monotonic_ns();
            while let Some((path, token)) = hold.due(now) {
                watched = true;
                retirements.touch(netback.directory(), &path, now);
                netback.on_watch(&mut platform, &path, &token);
            }
            for (vif, outcome) in retirements.retire(&mut platform, netback.directory(), now) {
                let path = netback.directory().device_path(vif);
                match outcome {
                    Ok(Outcome::Removed) => log::info!(
                        "rumpnet: vif {}/{}: detached; removed {path}",
                        vif.frontend_id,
                        vif.devid
                    ),
                    Ok(Outcome::Gone | Outcome::InUse) => {}
                    Err(error) => log::warn!(
                        "rumpnet: vif {}/{}: cannot remove {path}: {error:?}",
                        vif.frontend_id,
                        vif.devid
                    ),
                }
            }
            let statistics_due = now >= next_statistics;
            if statistics_due {
                netback.publish_statistics(&mut platform);
                next_statistics = now + options.statistics_interval_ns;
            }
            if statistics_due {
                if let Some(line) = uplink_log.update(&uplink) {
                    log::info!("rumpnet: {line}");
                }
            }
            if watched || statistics_due {
                let vifs = netback.vifs();
                for line in vif_log.update(&vifs) {
                    log::info!("rumpnet: {line}");
                }
                rx_polling = vifs
                    .iter()
                    .any(|vif| vif.features.is_some_and(|features| !features.rx_notify));
            }
        }
    }

    /// Opens the NIC at `address` and brings it up; on failure the domain
    /// serves without an uplink, saying why.
    fn open_uplink(address: Bdf) -> Uplink<pci::PciDevice> {
        let device = match pci::open(address) {
            Ok(device) => device,
            Err(error) => {
                log::error!("rumpnet: uplink {address}: {error}; serving without an uplink");
                return Uplink::None;
            }
        };
        match Uplink::e1000(device) {
            Ok(uplink) => {
                if let Some(driver) = uplink.driver() {
                    let interrupts = match driver.device().interrupt_mode() {
                        Some(mode) => alloc::format!("interrupts by {mode:?}"),
                        None => "polled every millisecond (no interrupt)".into(),
                    };
                    log::info!(
                        "rumpnet: uplink {address}: e1000 {}, link {}, {interrupts}",
                        Mac(driver.mac_address()),
                        if driver.link_up() { "up" } else { "down" }
                    );
                }
                uplink
            }
            Err((error, _device)) => {
                log::error!("rumpnet: uplink {address}: {error}; serving without an uplink");
                Uplink::None
            }
        }
    }

    /// Brings up NetBSD's interface `name` (booting the rump kernel, whose
    /// drivers attach to the NICs passed through); on failure, or in an
    /// image without NetBSD's drivers, the domain serves without an uplink,
    /// saying why.
    fn open_netbsd_uplink(name: &str) -> Uplink<pci::PciDevice> {
        #[cfg(feature = "netbsd")]
        match rumpuser_xen::pv::netbsd::Interface::open(name) {
            Ok(interface) => {
                log::info!("rumpnet: uplink NetBSD {name} up, promiscuous, frames through bpf");
                Uplink::Netbsd(interface)
            }
            Err(error) => {
                log::error!("rumpnet: uplink NetBSD {name}: {error}; serving without an uplink");
                Uplink::None
            }
        }
        #[cfg(not(feature = "netbsd"))]
        {
            log::error!(
                "rumpnet: uplink NetBSD {name}: this image holds no NetBSD drivers (built \
                 without RUMP_LIBDIR; see docs/rumpuser.md); serving without an uplink"
            );
            Uplink::None
        }
    }

    /// Logs the uplink's counters when they moved since the last line.
    #[derive(Default)]
    struct UplinkLog {
        last: Option<e1000::Statistics>,
        /// Frames a NetBSD uplink dropped, at the last line.
        #[cfg(feature = "netbsd")]
        netbsd_dropped: u64,
    }

    impl UplinkLog {
        fn update(&mut self, uplink: &Uplink<pci::PciDevice>) -> Option<alloc::string::String> {
            #[cfg(feature = "netbsd")]
            if let Uplink::Netbsd(interface) = uplink {
                let dropped = interface.dropped();
                if dropped == core::mem::replace(&mut self.netbsd_dropped, dropped) {
                    return None;
                }
                return Some(alloc::format!(
                    "uplink: NetBSD {}: {dropped} received frames dropped (queue full or cut short)",
                    interface.name()
                ));
            }
            let driver = uplink.driver()?;
            let now = driver.statistics();
            if self.last == Some(now) {
                return None;
            }
            self.last = Some(now);
            let dropped = now.rx_frame_errors
                + now.rx_bogus_write_backs
                + now.rx_oversize
                + now.rx_runts
                + now.rx_missed
                + now.rx_no_buffers;
            Some(alloc::format!(
                "uplink: link {}, rx {} frames {} bytes, tx {} frames {} bytes, rx dropped {dropped}, \
                 tx refused {}, interrupts {}, resets {}",
                if driver.link_up() { "up" } else { "down" },
                now.rx_frames,
                now.rx_bytes,
                now.tx_frames,
                now.tx_bytes,
                now.tx_ring_full + now.tx_link_down + now.tx_bad_length,
                now.interrupts,
                now.stalls,
            ))
        }
    }

    fn key(address: DeviceAddress) -> (u16, u32) {
        (address.frontend_id, address.devid)
    }

    fn known_vifs(netback: &Netback<Platform>) -> BTreeSet<(u16, u32)> {
        netback.vifs().iter().map(|vif| key(vif.address)).collect()
    }
}

/// On the host the binary checks a command line: it prints the settings
/// the domain would use for the `extra=` words given as arguments, and
/// fails if any word would be refused. The image itself runs as a Xen PV
/// domain; build it with `cargo xtask build`.
#[cfg(not(target_os = "none"))]
fn main() -> std::process::ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let (options, refused) = options::parse(&words.join(" "));
    println!(
        "statistics every {} ms, attach hold {} ms, up to {} queue(s) per vif, uplink {}",
        options.statistics_interval_ns / 1_000_000,
        options.attach_hold_ns / 1_000_000,
        options.max_queues,
        options
            .uplink
            .map_or_else(|| "none".to_string(), |address| address.to_string())
    );
    for (word, reason) in &refused {
        eprintln!("{word} refused: {reason}");
    }
    if refused.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
