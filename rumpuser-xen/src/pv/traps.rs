//! The trap table (`HYPERVISOR_set_trap_table`) and the crash report.
//!
//! A 64-bit PV guest takes exceptions on its own stack with `rcx` and `r11`
//! pushed on top of the hardware frame (Xen's bounce frame): from `rsp`
//! upwards `rcx, r11, [error code], rip, cs, rflags, rsp, ss`. The stubs
//! below normalise that to one layout, [`TrapFrame`], with a zero error code
//! where the CPU pushes none. Every exception is fatal for a driver domain:
//! the report goes to the console and the domain shuts down with reason
//! crash, so `on_crash` in the xl config decides what happens next.

use core::arch::global_asm;
use core::fmt::Write;

use super::abi::trap_info;
use super::hypercall::hypercall;

/// Registers saved by `trap_common`, lowest address first.
#[repr(C)]
pub struct TrapFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    rcx: u64,
    r11: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

global_asm!(
    r#"
    .section .text.traps, "ax"
trap_stub_0:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 0
    jmp trap_common
trap_stub_1:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 1
    jmp trap_common
trap_stub_2:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 2
    jmp trap_common
trap_stub_3:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 3
    jmp trap_common
trap_stub_4:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 4
    jmp trap_common
trap_stub_5:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 5
    jmp trap_common
trap_stub_6:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 6
    jmp trap_common
trap_stub_7:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 7
    jmp trap_common
trap_stub_8:
    push 8
    jmp trap_common
trap_stub_9:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 9
    jmp trap_common
trap_stub_10:
    push 10
    jmp trap_common
trap_stub_11:
    push 11
    jmp trap_common
trap_stub_12:
    push 12
    jmp trap_common
trap_stub_13:
    push 13
    jmp trap_common
trap_stub_14:
    push 14
    jmp trap_common
trap_stub_16:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 16
    jmp trap_common
trap_stub_17:
    push 17
    jmp trap_common
trap_stub_18:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 18
    jmp trap_common
trap_stub_19:
    pop rcx
    pop r11
    push 0
    push r11
    push rcx
    push 19
    jmp trap_common

trap_common:
    push rax
    push rbx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    and rsp, -16
    call {report}
    ud2

failsafe_callback:
    mov rdi, rsp
    and rsp, -16
    call {failsafe}
    ud2

    .section .rodata.traps, "a"
    .balign 8
    .global trap_stub_table
trap_stub_table:
    .quad 0, trap_stub_0
    .quad 1, trap_stub_1
    .quad 2, trap_stub_2
    .quad 3, trap_stub_3
    .quad 4, trap_stub_4
    .quad 5, trap_stub_5
    .quad 6, trap_stub_6
    .quad 7, trap_stub_7
    .quad 8, trap_stub_8
    .quad 9, trap_stub_9
    .quad 10, trap_stub_10
    .quad 11, trap_stub_11
    .quad 12, trap_stub_12
    .quad 13, trap_stub_13
    .quad 14, trap_stub_14
    .quad 16, trap_stub_16
    .quad 17, trap_stub_17
    .quad 18, trap_stub_18
    .quad 19, trap_stub_19
    .quad 0, 0
    .global failsafe_callback_address
failsafe_callback_address:
    .quad failsafe_callback
"#,
    report = sym report_trap,
    failsafe = sym report_failsafe,
);

fn vector_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        2 => "NMI",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        9 => "coprocessor segment overrun",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack fault",
        13 => "general protection",
        14 => "page fault",
        16 => "x87 floating point",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating point",
        _ => "unknown exception",
    }
}

unsafe extern "C" {
    /// Pairs of (vector, stub address), terminated by (0, 0).
    static trap_stub_table: [[u64; 2]; 20];
    /// Address of the failsafe callback stub.
    static failsafe_callback_address: u64;
}

/// Address of the failsafe callback, for `HYPERVISOR_set_callbacks`.
pub fn failsafe_address() -> u64 {
    // SAFETY: a constant initialised by the assembler.
    unsafe { failsafe_callback_address }
}

/// Installs the trap table.
pub fn install() {
    let mut table = [trap_info {
        vector: 0,
        flags: 0,
        cs: 0,
        address: 0,
    }; 21];
    // SAFETY: constant data emitted by the assembler above.
    let stubs = unsafe { &trap_stub_table };
    for (slot, &[vector, address]) in table.iter_mut().zip(stubs.iter()) {
        if address == 0 {
            break;
        }
        // Vectors 3 and 4 (int3, into) may be raised from any privilege
        // level; bit 2 masks event upcalls while the handler runs.
        let privilege = if vector == 3 || vector == 4 { 3 } else { 0 };
        *slot = trap_info {
            vector: vector as u8,
            flags: privilege | 4,
            cs: xen_abi::FLAT_KERNEL_CS as u16,
            address,
        };
    }
    // SAFETY: the table is a zero-terminated array of `trap_info` that lives
    // across the call; Xen copies it.
    let rc = unsafe {
        hypercall(
            xen_abi::__HYPERVISOR_set_trap_table,
            table.as_ptr() as u64,
            0,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        super::shutdown::crash_now();
    }
}

extern "C" fn report_trap(frame: &TrapFrame) -> ! {
    let mut out = super::console::CrashWriter;
    let cr2 = if frame.vector == 14 {
        super::events::vcpu_cr2()
    } else {
        0
    };
    let _ = write!(
        out,
        "\r\n*** fatal exception {} ({}), error code {:#x}\r\n\
         rip {:#018x} rsp {:#018x} rflags {:#x} cs {:#x} ss {:#x} cr2 {:#x}\r\n\
         rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\r\n\
         rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}\r\n\
         r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}\r\n\
         r13 {:#018x} r14 {:#018x} r15 {:#018x}\r\n",
        frame.vector,
        vector_name(frame.vector),
        frame.error_code,
        frame.rip,
        frame.rsp,
        frame.rflags,
        frame.cs,
        frame.ss,
        cr2,
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx,
        frame.rsi,
        frame.rdi,
        frame.rbp,
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11,
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15,
    );
    backtrace(&mut out, frame.rbp, frame.rsp);
    super::shutdown::crash_now()
}

extern "C" fn report_failsafe(_stack: u64) -> ! {
    let mut out = super::console::CrashWriter;
    let _ = write!(
        out,
        "\r\n*** failsafe callback: Xen could not load a segment register or return frame\r\n"
    );
    super::shutdown::crash_now()
}

/// Prints a backtrace: first the frame-pointer chain starting at `rbp`
/// (complete when the image is built with `-C force-frame-pointers=yes`),
/// then every word between `rsp` and the top of the stack that points into
/// the image's text, which catches frames compiled without a frame pointer.
pub fn backtrace(out: &mut impl Write, rbp: u64, rsp: u64) {
    let (stack_low, stack_high) =
        super::sched::current_stack_bounds().unwrap_or_else(super::boot::stack_bounds);
    let (text_low, text_high) = super::text_bounds();
    let in_stack = |address: u64| address >= stack_low && address + 16 <= stack_high;
    let _ = write!(out, "backtrace (frame pointers):\r\n");
    let mut frame = rbp;
    for depth in 0..32 {
        if !in_stack(frame) || !frame.is_multiple_of(8) {
            break;
        }
        // SAFETY: `frame` lies inside our own stack, checked above, so both
        // words are mapped and readable.
        let (next, return_address) = unsafe {
            (
                (frame as *const u64).read(),
                (frame as *const u64).add(1).read(),
            )
        };
        let _ = write!(out, "  #{depth} {return_address:#018x}\r\n");
        if next <= frame {
            break;
        }
        frame = next;
    }
    let _ = write!(out, "return addresses found on the stack:\r\n");
    if !in_stack(rsp) {
        return;
    }
    let mut found = 0;
    let mut address = rsp & !7;
    while address + 8 <= stack_high && found < 48 {
        // SAFETY: `address` walks our own mapped stack, bounds checked by the loop.
        let word = unsafe { (address as *const u64).read() };
        if word >= text_low && word < text_high {
            let _ = write!(out, "  [{address:#x}] {word:#018x}\r\n");
            found += 1;
        }
        address += 8;
    }
}
