//! Entry from the PV domain builder, the ELF notes it reads, and the
//! bring-up sequence.
//!
//! The notes follow `xen/include/public/elfnote.h`; the initial state follows
//! `start_info` in `xen/include/public/xen.h`: `%rsi` holds the virtual address
//! of the start info page, `%rsp` points into a boot stack right after the
//! bootstrap page tables, and event upcalls are masked.

use core::arch::global_asm;

use super::abi::{command_line, start_info};
use super::{console, events, mm, time, traps};

/// Lowest virtual address of the image: pseudo-physical frame 0. Must match
/// `link.ld` and the VIRT_BASE note below.
pub const VIRT_BASE: u64 = 0xffff_ffff_8000_0000;

/// Size of the stack the domain runs on (in `.bss`).
pub const STACK_SIZE: usize = 128 * 1024;

global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    cld
    lea rsp, [rip + {stack} + {stack_size}]
    xor ebp, ebp
    mov rdi, rsi
    call {rust_start}
    ud2

    .section .text.hypercall_page, "ax"
    .balign 4096
    .global hypercall_page
hypercall_page:
    .skip 4096

    .macro xen_note_begin type
    .balign 4
    .long 4
    .long 2f - 1f
    .long \type
    .asciz "Xen"
1:
    .endm

    .section .note.Xen, "a", @note
    // XEN_ELFNOTE_GUEST_OS
    xen_note_begin 6
    .asciz "rumpuser-xen"
2:  .balign 4
    // XEN_ELFNOTE_XEN_VERSION
    xen_note_begin 5
    .asciz "xen-3.0"
2:  .balign 4
    // XEN_ELFNOTE_LOADER
    xen_note_begin 8
    .asciz "generic"
2:  .balign 4
    // XEN_ELFNOTE_VIRT_BASE
    xen_note_begin 3
    .quad 0xffffffff80000000
2:  .balign 4
    // XEN_ELFNOTE_PADDR_OFFSET (= VIRT_BASE: link addresses are load addresses)
    xen_note_begin 4
    .quad 0xffffffff80000000
2:  .balign 4
    // XEN_ELFNOTE_ENTRY
    xen_note_begin 1
    .quad _start
2:  .balign 4
    // XEN_ELFNOTE_HYPERCALL_PAGE
    xen_note_begin 2
    .quad hypercall_page
2:  .balign 4
    // XEN_ELFNOTE_FEATURES
    xen_note_begin 10
    .asciz "!writable_page_tables|pae_pgdir_above_4gb"
2:  .balign 4
    .text
"#,
    stack = sym STACK,
    stack_size = const STACK_SIZE,
    rust_start = sym rust_start,
);

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

/// The domain's only stack. Written by the CPU through `%rsp` alone.
static mut STACK: Stack = Stack([0; STACK_SIZE]);

/// Bounds of the stack, for the backtrace walker.
pub fn stack_bounds() -> (u64, u64) {
    let low = core::ptr::addr_of!(STACK) as u64;
    (low, low + STACK_SIZE as u64)
}

unsafe extern "Rust" {
    /// The domain's main function, defined by [`crate::entry!`].
    fn __rumpuser_xen_main(command_line: &str) -> !;
}

/// First Rust code: brings the platform up in dependency order, then runs
/// the domain's main function.
extern "C" fn rust_start(start_info: *const start_info) -> ! {
    // SAFETY: the domain builder passes the start info page in %rsi, mapped
    // and initialised; nothing else writes it while we copy it out.
    let start_info = unsafe { start_info.read() };
    traps::install();
    // SAFETY: nothing has read the command line yet, and nothing else runs.
    unsafe {
        super::COMMAND_LINE
            .0
            .as_ptr()
            .write(command_line(&start_info));
    }
    mm::init(&start_info);
    events::init_shared_info(start_info.shared_info);
    console::init(&start_info);
    log::info!(
        "rumpuser-xen: booted, {} pages, {} page-table frames at {:#x}",
        start_info.nr_pages,
        start_info.nr_pt_frames,
        start_info.pt_base
    );
    events::init();
    time::init();
    super::xenstore::init(&start_info);
    super::watch_shutdown();
    log::info!("rumpuser-xen: platform up, {}", super::memory_summary());
    let command_line = super::COMMAND_LINE.get();
    log::info!("rumpuser-xen: command line \"{command_line}\"");
    if let Some(kind) = crate::cmdline::values(command_line, "crash-selftest").last() {
        crash_selftest(kind);
    }
    if crate::cmdline::values(command_line, "sched-selftest").any(|value| value == "1") {
        sched_selftest();
    }
    // SAFETY: `__rumpuser_xen_main` is defined exactly once by `entry!` with
    // this signature; the platform is now fully initialised.
    unsafe { __rumpuser_xen_main(command_line) }
}

/// `crash-selftest=pagefault|breakpoint|panic` on the command line makes
/// the domain crash on purpose right after bring-up, so an operator can see
/// what a crash report looks like and check `on_crash` handling.
fn crash_selftest(kind: &str) {
    log::warn!("rumpuser-xen: crash-selftest={kind} requested");
    match kind {
        "pagefault" => {
            // An address in the unmapped gap below the image.
            let address = VIRT_BASE - 0x1000;
            // SAFETY: not safe at all, on purpose: the read faults, and the
            // page-fault handler stops the domain before anything else runs.
            let value = unsafe { (address as *const u64).read_volatile() };
            log::error!("rumpuser-xen: read {value:#x} from an unmapped page");
        }
        // SAFETY: int3 only raises the breakpoint exception, whose handler
        // stops the domain.
        "breakpoint" => unsafe { core::arch::asm!("int3") },
        "panic" => panic!("crash-selftest=panic"),
        other => log::warn!("rumpuser-xen: unknown crash-selftest {other:?} ignored"),
    }
}

/// `sched-selftest=1`: runs two threads that take turns with the boot
/// thread and sleep on the timer, and logs what happened.
fn sched_selftest() {
    use alloc::rc::Rc;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    let trace: Rc<RefCell<Vec<(char, u32)>>> = Rc::default();
    let started = super::time::monotonic_ns();
    let threads: Vec<super::sched::ThreadId> = ['a', 'b']
        .into_iter()
        .map(|name| {
            let trace = Rc::clone(&trace);
            super::sched::spawn("selftest", 32 * 1024, move || {
                for step in 0..3 {
                    trace.borrow_mut().push((name, step));
                    super::sched::sleep_ns(10_000_000);
                }
            })
        })
        .collect();
    super::sched::wait_until(None, || {
        threads
            .iter()
            .all(|&thread| super::sched::is_finished(thread))
    });
    let elapsed_ms = (super::time::monotonic_ns() - started) / 1_000_000;
    let trace = trace.borrow();
    let steps: alloc::string::String = trace
        .iter()
        .map(|&(name, step)| alloc::format!("{name}{step} "))
        .collect();
    log::info!(
        "rumpuser-xen: sched-selftest done: {} steps ({steps}) in {elapsed_ms} ms",
        trace.len()
    );
}
