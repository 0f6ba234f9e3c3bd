//! The PV console ring (`xen/include/public/io/console.h`) and the `log`
//! backend on top of it.
//!
//! Debian's non-debug Xen refuses `HYPERVISOR_console_io` writes from
//! domUs, so all output goes through the ring that xenconsoled reads: it
//! logs it to `guest-<name>.log` and `xl console` shows it.

use core::fmt::Write;
use core::sync::atomic::{fence, AtomicU32, Ordering};

use super::abi::{
    console_ring, start_info, CONSOLE_OUT, CONSOLE_OUT_CONS, CONSOLE_OUT_PROD, CONSOLE_OUT_SIZE,
};
use super::Global;

const OUT_OFFSET: usize = CONSOLE_OUT;
const OUT_SIZE: u32 = CONSOLE_OUT_SIZE;
const OUT_CONS_OFFSET: usize = CONSOLE_OUT_CONS;
const OUT_PROD_OFFSET: usize = CONSOLE_OUT_PROD;

struct Console {
    /// Virtual address of the ring page; 0 before [`init`].
    ring: u64,
    evtchn: u32,
}

static CONSOLE: Global<Console> = Global::new(Console { ring: 0, evtchn: 0 });

/// Maps the console ring and installs the `log` backend.
pub fn init(start_info: &start_info) {
    {
        let mut console = CONSOLE.borrow_mut();
        let (mfn, evtchn) = console_ring(start_info);
        console.ring = super::mm::mfn_to_virt(mfn);
        console.evtchn = evtchn;
    }
    let level = super::COMMAND_LINE
        .get()
        .split_ascii_whitespace()
        .find_map(|word| word.strip_prefix("loglevel="))
        .and_then(|level| level.parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Info);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

fn index(ring: u64, offset: usize) -> &'static AtomicU32 {
    // SAFETY: `ring` is the mapped console page (4 KiB) and `offset` one of
    // the aligned index fields inside it; the page stays mapped for the
    // domain's life. The index is shared with xenconsoled, so it is only
    // ever accessed atomically.
    unsafe { AtomicU32::from_ptr((ring as usize + offset) as *mut u32) }
}

/// Writes bytes to the ring, waiting for room as needed. Translates `\n`
/// to `\r\n` so `xl console` shows proper lines.
fn write_bytes(console: &Console, bytes: &[u8]) {
    if console.ring == 0 {
        return;
    }
    let consumer = index(console.ring, OUT_CONS_OFFSET);
    let producer = index(console.ring, OUT_PROD_OFFSET);
    let mut produced = producer.load(Ordering::Relaxed);
    let put = |byte: u8, produced: &mut u32| {
        let mut spins = 0u32;
        while produced.wrapping_sub(consumer.load(Ordering::Acquire)) >= OUT_SIZE {
            // Full: publish what we have and let xenconsoled drain it.
            producer.store(*produced, Ordering::Release);
            super::events::notify_port(console.evtchn);
            super::sched_yield();
            spins += 1;
            if spins > 100_000 {
                // xenconsoled is gone; drop output rather than hang.
                return;
            }
        }
        let slot = OUT_OFFSET + (*produced % OUT_SIZE) as usize;
        // SAFETY: `slot` is inside the ring's `out` array of the mapped
        // console page; a byte store to shared memory is always allowed.
        unsafe { ((console.ring as usize + slot) as *mut u8).write_volatile(byte) };
        *produced = produced.wrapping_add(1);
    };
    for &byte in bytes {
        if byte == b'\n' {
            put(b'\r', &mut produced);
        }
        put(byte, &mut produced);
    }
    fence(Ordering::Release);
    producer.store(produced, Ordering::Release);
    super::events::notify_port(console.evtchn);
}

/// The console ring's event channel (masked: the domain never reads
/// console input, so xenconsoled's notifications are not wanted).
pub fn port() -> u32 {
    CONSOLE
        .try_borrow()
        .map_or(u32::MAX, |console| console.evtchn)
}

/// Writes text to the console.
pub fn write_str(text: &str) {
    if let Ok(console) = CONSOLE.try_borrow() {
        write_bytes(&console, text.as_bytes());
    }
}

/// A writer for crash reports: never blocks on the console state lock
/// (a fault may hit while it is held) and bypasses the logger.
pub struct CrashWriter;

impl Write for CrashWriter {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        // SAFETY: crash path only; the domain stops right after. The console
        // state is two words written once at boot, so reading it while a
        // borrow is live elsewhere sees consistent values.
        let console = unsafe { &*CONSOLE.as_ptr() };
        write_bytes(console, text.as_bytes());
        Ok(())
    }
}

struct Logger;

static LOGGER: Logger = Logger;

/// Formats into a fixed buffer so one record is one ring write.
struct LineBuffer {
    bytes: [u8; 512],
    length: usize,
}

impl Write for LineBuffer {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let room = self.bytes.len() - self.length;
        let take = text.len().min(room);
        self.bytes[self.length..self.length + take].copy_from_slice(&text.as_bytes()[..take]);
        self.length += take;
        Ok(())
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = super::time::monotonic_ns();
        let mut line = LineBuffer {
            bytes: [0; 512],
            length: 0,
        };
        let _ = write!(
            line,
            "[{:>5}.{:06}] {:<5} {}",
            now / 1_000_000_000,
            (now / 1000) % 1_000_000,
            record.level(),
            record.args()
        );
        if line.length == line.bytes.len() {
            line.length -= 1;
        }
        line.bytes[line.length] = b'\n';
        line.length += 1;
        if let Ok(console) = CONSOLE.try_borrow() {
            write_bytes(&console, &line.bytes[..line.length]);
        }
    }

    fn flush(&self) {}
}
