//! The Xen public ABI as the platform uses it: the `xen-abi` bindings
//! (generated from `/usr/include/xen`), plus the byte offsets of the
//! shared-info and console fields the platform accesses atomically, derived
//! from those bindings rather than written down by hand.

use core::mem::offset_of;

pub use xen_abi::{
    gnttab_copy, gnttab_copy_gnttab_copy_ptr, gnttab_copy_gnttab_copy_ptr__bindgen_ty_1,
    gnttab_map_grant_ref, gnttab_unmap_grant_ref, mmu_update, shared_info, start_info, trap_info,
    vcpu_info, vcpu_time_info, xencons_interface,
};

/// The machine-to-phys table every PV guest sees read-only
/// (`MACH2PHYS_VIRT_START` in `arch-x86/xen-x86_64.h`; a macro bindgen
/// cannot evaluate, hence written here).
pub const MACH2PHYS_VIRT_START: u64 = 0xffff_8000_0000_0000;

/// `evtchn_pending[]` inside `struct shared_info`.
pub const SHARED_INFO_EVTCHN_PENDING: usize = offset_of!(shared_info, evtchn_pending);
/// `evtchn_mask[]` inside `struct shared_info`.
pub const SHARED_INFO_EVTCHN_MASK: usize = offset_of!(shared_info, evtchn_mask);
/// vcpu 0's `evtchn_upcall_pending` (vcpu_info[0] starts the page).
pub const VCPU_INFO_UPCALL_PENDING: usize = offset_of!(vcpu_info, evtchn_upcall_pending);
/// vcpu 0's `evtchn_upcall_mask`.
pub const VCPU_INFO_UPCALL_MASK: usize = offset_of!(vcpu_info, evtchn_upcall_mask);
/// vcpu 0's `evtchn_pending_sel`.
pub const VCPU_INFO_PENDING_SEL: usize = offset_of!(vcpu_info, evtchn_pending_sel);
/// vcpu 0's `arch.cr2`.
pub const VCPU_INFO_CR2: usize = offset_of!(vcpu_info, arch);
/// vcpu 0's `time`.
pub const VCPU_INFO_TIME: usize = offset_of!(vcpu_info, time);
/// Fields of `struct vcpu_time_info`.
pub const TIME_VERSION: usize = offset_of!(vcpu_time_info, version);
pub const TIME_TSC_TIMESTAMP: usize = offset_of!(vcpu_time_info, tsc_timestamp);
pub const TIME_SYSTEM_TIME: usize = offset_of!(vcpu_time_info, system_time);
pub const TIME_TSC_TO_SYSTEM_MUL: usize = offset_of!(vcpu_time_info, tsc_to_system_mul);
/// `tsc_shift` is the low byte of the 32-bit word at this offset.
pub const TIME_TSC_SHIFT: usize = offset_of!(vcpu_time_info, tsc_shift);
/// Fields of `struct xencons_interface` (`io/console.h`).
pub const CONSOLE_OUT: usize = offset_of!(xencons_interface, out);
pub const CONSOLE_OUT_SIZE: u32 = 2048;
pub const CONSOLE_OUT_CONS: usize = offset_of!(xencons_interface, out_cons);
pub const CONSOLE_OUT_PROD: usize = offset_of!(xencons_interface, out_prod);

const _: () = assert!(
    TIME_TSC_SHIFT.is_multiple_of(4),
    "tsc_shift must start an aligned word"
);
const _: () = assert!(core::mem::size_of::<vcpu_info>() == 64);

/// The console ring of a domU: `start_info.console.domU` (mfn, evtchn).
pub fn console_ring(start_info: &start_info) -> (u64, u32) {
    // SAFETY: both arms of the union are plain integers, so any bit pattern
    // is a valid value; for a domU the domain builder fills the domU arm.
    let console = unsafe { start_info.console.domU };
    (console.mfn, console.evtchn)
}

/// The command line as bytes.
pub fn command_line(start_info: &start_info) -> [u8; 1024] {
    start_info.cmd_line.map(|character| character as u8)
}
