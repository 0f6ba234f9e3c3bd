//! The rumpnet driver domain image (built for `x86_64-unknown-none`).
//!
//! For now it boots the platform, logs, and waits for the toolstack to shut
//! it down; the netback wiring comes on top of this.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
mod domain {
    use alloc::vec::Vec;

    use rumpuser_xen::pv::{self, Wakeup};

    extern crate alloc;

    rumpuser_xen::entry!(main);

    fn main(command_line: &str) -> ! {
        log::info!(
            "rumpnet: up (command line \"{command_line}\"); no network backend is served yet"
        );
        let mut wakeups = Vec::new();
        loop {
            wakeups.clear();
            pv::wait(None, &mut wakeups);
            for wakeup in wakeups.drain(..) {
                if let Wakeup::Shutdown(request) = wakeup {
                    log::info!("rumpnet: shutdown requested ({request:?})");
                    match request {
                        pv::ShutdownRequest::Poweroff => pv::shutdown::poweroff(),
                        pv::ShutdownRequest::Reboot => pv::shutdown::reboot(),
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
