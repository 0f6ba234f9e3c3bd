//! rumpuser-xen: the platform layer of the driver domains.
//!
//! Layer: the bottom of the stack and the only crate with `unsafe` code.
//! Below it is the Xen hypervisor's PV ABI
//! ([`xen/include/public/xen.h`](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/xen.h)
//! and its neighbours: `event_channel.h`, `grant_table.h`, `sched.h`,
//! `vcpu.h`, `io/console.h`, `io/xs_wire.h`, `elfnote.h`). Above it are the
//! protocol engines (`blkback`, `netback`), which see it only through the
//! platform traits of `xenbus::platform`, and the thin domain binaries in
//! `domains/`, which boot through [`entry!`].
//!
//! The Xen-only code (boot, hypercalls, page tables, console, events, time,
//! grants, xenstore client, and PCI passthrough: pcifront over `io/pciif.h`,
//! BARs, pirqs from `physdev.h`, DMA memory from `memory.h`'s exchange)
//! lives in [`pv`] and is compiled only for `x86_64-unknown-none`; the PCI
//! layer implements the `pcidev` traits drivers use. The arithmetic beneath
//! it (heap bookkeeping, address layout, time scaling, command line, the
//! PCI request encoding and BAR decoding in [`pci`]) is portable and
//! unit-tested on the host.
//!
//! [`rumpuser`] exports the rumpuser(3) hypercalls a NetBSD rump kernel
//! runs on, as C symbols; their semantics are portable (tested on the host
//! with std threads), and `pv::rumpuser_host` supplies them on Xen.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod cmdline;
pub mod foreign;
pub mod heap;
pub mod layout;
pub mod netbsd;
pub mod pci;
pub mod rumpuser;
pub mod time;

#[cfg(target_os = "none")]
pub mod pv;

/// Declares the domain's main function, `fn(command_line: &str) -> !`,
/// which the platform calls once it is up.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        // The boot code finds the main function by this symbol name. The
        // attribute is the only "unsafe" the domain crates contain, and it
        // is generated here, in the platform crate.
        #[allow(unsafe_code)]
        #[no_mangle]
        fn __rumpuser_xen_main(command_line: &str) -> ! {
            let main: fn(&str) -> ! = $main;
            main(command_line)
        }
    };
}
