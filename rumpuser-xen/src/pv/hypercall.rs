//! Hypercalls through the hypercall page Xen fills in at build time (the
//! `XEN_ELFNOTE_HYPERCALL_PAGE` note): entry `n` sits at offset `32 * n`.
//! Arguments go in `rdi, rsi, rdx, r10, r8`; the result comes back in `rax`;
//! the `syscall` inside the stub clobbers `rcx` and `r11`.

use core::arch::asm;

unsafe extern "C" {
    static hypercall_page: [u8; 4096];
}

fn entry(number: u32) -> u64 {
    // Taking the address of an extern static needs no unsafe.
    let page = core::ptr::addr_of!(hypercall_page) as u64;
    page + 32 * u64::from(number)
}

/// Issues hypercall `number` with up to five arguments.
///
/// # Safety
///
/// The arguments must be valid for that hypercall: any pointer among them
/// must point to memory of the layout Xen expects, live for the duration of
/// the call, and the operation must not break the memory the Rust program
/// relies on (for example by unmapping a live page).
pub unsafe fn hypercall(number: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let result: i64;
    // SAFETY: the caller vouches for the arguments; the stub preserves all
    // registers except rax, rcx and r11, which are declared clobbered.
    unsafe {
        asm!(
            "call {target}",
            target = in(reg) entry(number),
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rax") result,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    result
}

/// Issues hypercall `number` with a sub-command and a pointer to its
/// argument structure: the calling convention of the `*_op` hypercalls
/// (`event_channel_op`, `memory_op`, `physdev_op`, ...).
///
/// # Safety
///
/// As for [`hypercall`]: `argument` must be the structure Xen expects for
/// `command` of hypercall `number`, every guest handle in it must point at
/// memory that lives across the call, and the operation must not break
/// memory the program relies on.
pub unsafe fn hypercall_op<T>(number: u32, command: u32, argument: &mut T) -> i64 {
    // SAFETY: the caller vouches for the pairing; `argument` is borrowed
    // for the whole call.
    unsafe {
        hypercall(
            number,
            u64::from(command),
            argument as *mut T as u64,
            0,
            0,
            0,
        )
    }
}
