//! Console hypercalls: `rumpuser_putchar` and `rumpuser_dprintf`.
//!
//! The rump kernel's own printf goes through `rumpuser_putchar` a byte at
//! a time; bytes are gathered into lines so each line is one console write.
//!
//! `rumpuser_dprintf` is C-variadic, which stable Rust cannot define. A
//! short trampoline in assembly (System V x86_64 calling
//! convention) stores the five integer argument registers that may hold
//! variadic arguments next to each other and passes them, with the address
//! of the arguments passed on the stack, to [`format`], which walks the
//! format string and takes each argument in the order `va_arg` would.
//! Floating-point conversions are not supported (the NetBSD kernel's printf
//! has none either): they print as `?` and consume nothing, since doubles
//! would travel in vector registers the trampoline does not save.

use alloc::vec::Vec;
use core::ffi::{c_char, c_int};

use super::state::{host, STATE};

/// The longest line held back before it is written anyway.
const LINE_LIMIT: usize = 256;

/// Bytes written with `rumpuser_putchar` since the last newline.
pub(crate) struct ConsoleLine {
    bytes: Vec<u8>,
}

impl ConsoleLine {
    pub(crate) const fn new() -> Self {
        Self { bytes: Vec::new() }
    }
}

/// Writes out what `rumpuser_putchar` has gathered.
fn flush_line() {
    let line = STATE.with(|state| core::mem::take(&mut state.console.bytes));
    if !line.is_empty() {
        host().console_write(&line);
    }
}

/// `rumpuser_putchar`: one byte to the console.
#[no_mangle]
pub extern "C" fn rumpuser_putchar(character: c_int) {
    let full = STATE.with(|state| {
        state.console.bytes.push(character as u8);
        character as u8 == b'\n' || state.console.bytes.len() >= LINE_LIMIT
    });
    if full {
        flush_line();
    }
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    r#"
    .pushsection .text.rumpuser_dprintf, "ax", @progbits
    .global rumpuser_dprintf
    .type rumpuser_dprintf, @function
    // void rumpuser_dprintf(const char *format [rdi], ...):
    // the variadic integer arguments are in rsi, rdx, rcx, r8, r9, then
    // on the stack above the return address.
rumpuser_dprintf:
    push rbp
    mov rbp, rsp
    sub rsp, 48
    mov [rsp], rsi
    mov [rsp + 8], rdx
    mov [rsp + 16], rcx
    mov [rsp + 24], r8
    mov [rsp + 32], r9
    mov rsi, rsp
    lea rdx, [rbp + 16]
    call {dprintf_body}
    leave
    ret
    .size rumpuser_dprintf, . - rumpuser_dprintf
    .popsection
"#,
    dprintf_body = sym dprintf_body,
);

/// The variadic arguments of one `rumpuser_dprintf` call, in `va_arg`
/// order: five saved registers, then the caller's stack.
pub(crate) struct VariadicArguments {
    registers: *const u64,
    stack: *const u64,
    taken: usize,
}

/// Where [`format`] takes its arguments from.
pub(crate) trait ArgumentSource {
    /// The next integer or pointer argument, as its 64-bit slot.
    ///
    /// # Safety
    ///
    /// Called at most once for each argument the caller passed (for
    /// [`VariadicArguments`], the slots beyond those are not memory the
    /// caller wrote).
    unsafe fn next_slot(&mut self) -> u64;
}

impl ArgumentSource for VariadicArguments {
    unsafe fn next_slot(&mut self) -> u64 {
        let index = self.taken;
        self.taken += 1;
        // SAFETY: the trampoline saved five register slots and the caller
        // pushed the rest on the stack; our caller asks for no more slots
        // than there are arguments (this method's contract).
        unsafe {
            if index < 5 {
                self.registers.add(index).read()
            } else {
                self.stack.add(index - 5).read()
            }
        }
    }
}

/// The body of `rumpuser_dprintf`, called only by the trampoline.
///
/// # Safety
///
/// `format_string` is null or a C string; `registers` points to the five
/// saved argument registers and `stack` to the caller's stacked arguments,
/// which must hold every argument the format string asks for.
unsafe extern "C" fn dprintf_body(
    format_string: *const c_char,
    registers: *const u64,
    stack: *const u64,
) {
    let mut arguments = VariadicArguments {
        registers,
        stack,
        taken: 0,
    };
    let mut text = Vec::new();
    if !format_string.is_null() {
        // SAFETY: the caller of `rumpuser_dprintf` passes a C string.
        let bytes = unsafe { core::ffi::CStr::from_ptr(format_string) }.to_bytes();
        // SAFETY: the caller's arguments match its format string (this
        // function's contract), which is what `format` asks of the source.
        unsafe { format(bytes, &mut arguments, &mut text) };
    }
    // Whatever `rumpuser_putchar` gathered was printed first.
    flush_line();
    host().console_write(&text);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Length {
    Char,
    Short,
    Int,
    Long,
}

/// Formats `format_string` as C's printf would, for the integer, character,
/// string and pointer conversions, appending to `out`.
///
/// # Safety
///
/// `arguments` must hold one argument of the right kind for every
/// conversion (and `*` width or precision) of `format_string`, as printf
/// requires: each `%s` argument null or the address of a string that is
/// NUL-terminated or readable for at least the precision given.
pub(crate) unsafe fn format(
    format_string: &[u8],
    arguments: &mut dyn ArgumentSource,
    out: &mut Vec<u8>,
) {
    let mut rest = format_string;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte != b'%' {
            out.push(byte);
            continue;
        }
        let mut left = false;
        let mut zero = false;
        let mut plus = false;
        let mut space = false;
        let mut alternate = false;
        while let Some((&flag, tail)) = rest.split_first() {
            match flag {
                b'-' => left = true,
                b'0' => zero = true,
                b'+' => plus = true,
                b' ' => space = true,
                b'#' => alternate = true,
                _ => break,
            }
            rest = tail;
        }
        let mut width = 0usize;
        if rest.first() == Some(&b'*') {
            rest = &rest[1..];
            // SAFETY: `*` takes an argument (this function's contract).
            let value = unsafe { arguments.next_slot() } as u32 as i32;
            if value < 0 {
                left = true;
            }
            width = value.unsigned_abs() as usize;
        } else {
            while let Some((&digit @ b'0'..=b'9', tail)) = rest.split_first() {
                width = width
                    .saturating_mul(10)
                    .saturating_add(usize::from(digit - b'0'));
                rest = tail;
            }
        }
        let mut precision: Option<usize> = None;
        if rest.first() == Some(&b'.') {
            rest = &rest[1..];
            if rest.first() == Some(&b'*') {
                rest = &rest[1..];
                // SAFETY: `*` takes an argument (this function's contract).
                let value = unsafe { arguments.next_slot() } as u32 as i32;
                precision = usize::try_from(value).ok();
            } else {
                let mut value = 0usize;
                while let Some((&digit @ b'0'..=b'9', tail)) = rest.split_first() {
                    value = value
                        .saturating_mul(10)
                        .saturating_add(usize::from(digit - b'0'));
                    rest = tail;
                }
                precision = Some(value);
            }
        }
        let mut length = Length::Int;
        loop {
            match rest.first() {
                Some(b'h') => {
                    length = if length == Length::Short {
                        Length::Char
                    } else {
                        Length::Short
                    }
                }
                Some(b'l' | b'q' | b'j' | b'z' | b't') => length = Length::Long,
                _ => break,
            }
            rest = &rest[1..];
        }
        let Some((&conversion, tail)) = rest.split_first() else {
            out.push(b'%');
            break;
        };
        rest = tail;
        let mut body: Vec<u8> = Vec::new();
        let mut prefix: &[u8] = b"";
        let mut numeric = true;
        match conversion {
            b'd' | b'i' => {
                // SAFETY: the conversion takes an argument (this function's contract).
                let slot = unsafe { arguments.next_slot() };
                let value: i64 = match length {
                    Length::Char => i64::from(slot as i8),
                    Length::Short => i64::from(slot as i16),
                    Length::Int => i64::from(slot as i32),
                    Length::Long => slot as i64,
                };
                digits(value.unsigned_abs(), 10, false, &mut body);
                prefix = if value < 0 {
                    b"-"
                } else if plus {
                    b"+"
                } else if space {
                    b" "
                } else {
                    b""
                };
            }
            b'u' | b'x' | b'X' | b'o' => {
                // SAFETY: the conversion takes an argument (this function's contract).
                let slot = unsafe { arguments.next_slot() };
                let value = match length {
                    Length::Char => u64::from(slot as u8),
                    Length::Short => u64::from(slot as u16),
                    Length::Int => u64::from(slot as u32),
                    Length::Long => slot,
                };
                let (base, upper) = match conversion {
                    b'u' => (10, false),
                    b'o' => (8, false),
                    b'x' => (16, false),
                    _ => (16, true),
                };
                digits(value, base, upper, &mut body);
                if alternate && value != 0 {
                    prefix = match conversion {
                        b'x' => b"0x",
                        b'X' => b"0X",
                        b'o' => b"0",
                        _ => b"",
                    };
                }
            }
            b'p' => {
                // SAFETY: the conversion takes an argument (this function's contract).
                let value = unsafe { arguments.next_slot() };
                digits(value, 16, false, &mut body);
                prefix = b"0x";
            }
            b'c' => {
                numeric = false;
                // SAFETY: the conversion takes an argument (this function's contract).
                body.push(unsafe { arguments.next_slot() } as u8);
            }
            b's' => {
                numeric = false;
                // SAFETY: the conversion takes an argument (this function's contract).
                let pointer = unsafe { arguments.next_slot() } as usize as *const c_char;
                if pointer.is_null() {
                    body.extend_from_slice(b"(null)");
                } else {
                    let limit = precision.unwrap_or(usize::MAX);
                    let mut index = 0;
                    while index < limit {
                        // SAFETY: this function's contract: a `%s` argument
                        // is readable up to its NUL or the precision, and
                        // the loop stops at whichever comes first.
                        let byte = unsafe { pointer.add(index).read() } as u8;
                        if byte == 0 {
                            break;
                        }
                        body.push(byte);
                        index += 1;
                    }
                }
            }
            b'%' => {
                out.push(b'%');
                continue;
            }
            b'e' | b'E' | b'f' | b'F' | b'g' | b'G' | b'a' | b'A' => {
                numeric = false;
                body.push(b'?');
            }
            other => {
                // Unknown conversion: print it as written.
                out.push(b'%');
                out.push(other);
                continue;
            }
        }
        if numeric {
            if let Some(precision) = precision {
                while body.len() < precision {
                    body.insert(0, b'0');
                }
                zero = false;
            }
        }
        let length_now = prefix.len() + body.len();
        let padding = width.saturating_sub(length_now);
        if left {
            out.extend_from_slice(prefix);
            out.extend_from_slice(&body);
            out.extend(core::iter::repeat_n(b' ', padding));
        } else if zero && numeric {
            out.extend_from_slice(prefix);
            out.extend(core::iter::repeat_n(b'0', padding));
            out.extend_from_slice(&body);
        } else {
            out.extend(core::iter::repeat_n(b' ', padding));
            out.extend_from_slice(prefix);
            out.extend_from_slice(&body);
        }
    }
}

fn digits(mut value: u64, base: u64, upper: bool, out: &mut Vec<u8>) {
    let table: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let start = out.len();
    loop {
        out.push(table[(value % base) as usize]);
        value /= base;
        if value == 0 {
            break;
        }
    }
    out[start..].reverse();
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slots(Vec<u64>);

    impl ArgumentSource for Slots {
        unsafe fn next_slot(&mut self) -> u64 {
            self.0.remove(0)
        }
    }

    /// # Safety
    ///
    /// As for [`format`]: `slots` match `format_string`.
    unsafe fn printf(format_string: &str, slots: &[u64]) -> alloc::string::String {
        let mut out = Vec::new();
        // SAFETY: forwarded from the caller.
        unsafe {
            format(
                format_string.as_bytes(),
                &mut Slots(slots.to_vec()),
                &mut out,
            )
        };
        alloc::string::String::from_utf8(out).unwrap()
    }

    #[test]
    fn integers_follow_c_printf() {
        // Expected strings are what C's printf prints for the same calls.
        // SAFETY: every call passes one integer slot per conversion.
        unsafe {
            assert_eq!(printf("%d|%i", &[(-5i32) as u32 as u64, 42]), "-5|42");
            // An `int` slot's upper half is garbage and must be ignored.
            assert_eq!(printf("%d", &[0xdead_beef_0000_0007]), "7");
            assert_eq!(printf("%ld", &[(-5i64) as u64]), "-5");
            assert_eq!(printf("%u", &[u64::MAX]), "4294967295");
            assert_eq!(printf("%llu", &[u64::MAX]), "18446744073709551615");
            assert_eq!(
                printf("%x %X %#x %o %#o", &[255, 255, 255, 8, 8]),
                "ff FF 0xff 10 010"
            );
            assert_eq!(printf("%hhd %hu", &[0x1ff, 0x1_0005]), "-1 5");
            assert_eq!(
                printf("%5d|%-5d|%05d|%+d|% d", &[42, 42, 42, 42, 42]),
                "   42|42   |00042|+42| 42"
            );
            assert_eq!(printf("%.3d|%8.3x", &[7, 10]), "007|     00a");
            assert_eq!(printf("%*d|%-*d", &[4, 1, 4, 2]), "   1|2   ");
            assert_eq!(printf("%p", &[0x1000]), "0x1000");
            assert_eq!(printf("%05d", &[(-42i32) as u32 as u64]), "-0042");
        }
    }

    #[test]
    fn characters_strings_and_oddities() {
        let text = b"hello\0";
        let pointer = text.as_ptr() as u64;
        // SAFETY: every call passes one slot per conversion, and each `%s`
        // slot is null or `text`, which is NUL-terminated.
        unsafe {
            assert_eq!(
                printf(
                    "[%s] [%.3s] [%8s] [%-7s]",
                    &[pointer, pointer, pointer, pointer]
                ),
                "[hello] [hel] [   hello] [hello  ]"
            );
            assert_eq!(printf("%s", &[0]), "(null)");
            assert_eq!(printf("%c%c", &[b'o' as u64, b'k' as u64]), "ok");
            assert_eq!(printf("100%% %f %d", &[3]), "100% ? 3");
            assert_eq!(printf("%y and a trailing %", &[]), "%y and a trailing %");
        }
    }
}
