//! What the rumpuser(3) layer needs from the machine it runs on.
//!
//! The hypercall semantics (locks, condition variables, block I/O, the
//! rump kernel context rule) live in the portable modules next to this one
//! and are the same everywhere. A [`Host`] supplies the few primitives they
//! are built from: cooperative threads that can park and be unparked, two
//! clocks, a console, entropy and configuration. On Xen it is
//! `pv::rumpuser_host`; the conformance tests implement it over std threads.

use alloc::boxed::Box;
use alloc::string::String;

/// Identifies a host thread. Unique among the threads the host has
/// started (and the thread that was running before the first one).
pub type ThreadKey = usize;

/// Why a host could not start a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// Memory for the thread or its stack could not be allocated.
    OutOfMemory,
}

/// The machine under the rumpuser(3) layer.
///
/// # Safety
///
/// Implementations promise the cooperative model the rumpuser layer is
/// written for: at any moment at most one thread runs rumpuser code, and a
/// thread stops running only inside [`Host::park`], [`Host::exit_thread`]
/// or [`Host::exit`]. Everything one thread did before it stopped happens
/// before whatever the next running thread does. The layer relies on this
/// to share its state without locks that could block.
pub unsafe trait Host: Sync {
    /// Starts a thread running `entry`. It first runs once the calling
    /// thread parks; `entry` never returns (it ends in
    /// [`Host::exit_thread`]).
    fn spawn(&self, name: &str, entry: Box<dyn FnOnce() + Send>) -> Result<ThreadKey, SpawnError>;

    /// The calling thread.
    fn current(&self) -> ThreadKey;

    /// Lets other threads run until [`Host::unpark`] is called for the
    /// calling thread or the monotonic clock reaches `deadline_ns`. An
    /// unpark that came while the thread ran makes the next park return at
    /// once. May return early; callers re-check their condition.
    fn park(&self, deadline_ns: Option<u64>);

    /// Makes `thread` return from its current or next [`Host::park`].
    /// Once the caller parks or exits, `thread` must get to run even if
    /// every other thread is parked: a host may not wait for an outside
    /// event while an unparked thread has not returned from `park`.
    fn unpark(&self, thread: ThreadKey);

    /// Ends the calling thread. Other threads keep running.
    fn exit_thread(&self) -> !;

    /// Nanoseconds of a clock that never goes back (its origin is arbitrary).
    fn monotonic_ns(&self) -> u64;

    /// Nanoseconds since 1970-01-01 00:00 UTC, as well as the host knows.
    fn wall_clock_ns(&self) -> u64;

    /// Writes bytes to the console.
    fn console_write(&self, bytes: &[u8]);

    /// 64 bits from a hardware random number generator, if the machine has
    /// one that works.
    fn hardware_random(&self) -> Option<u64>;

    /// Feeds `sink` whatever hard-to-predict inputs the host has (timing
    /// jitter, identifiers unique to this instance, ...) to seed the
    /// software generator. Called once, from `rumpuser_init`.
    fn seed_material(&self, sink: &mut dyn FnMut(&[u8]));

    /// A configuration value set by the operator (on Xen: a `NAME=value`
    /// word of the domain's command line), if any.
    fn parameter(&self, name: &str) -> Option<String>;

    /// The instance name the rump kernel reports as its hostname.
    fn hostname(&self) -> String;

    /// Bytes of memory the rump kernel may use.
    fn memory_limit(&self) -> u64;

    /// Stops the whole machine: a clean stop for `status` >= 0, a crash
    /// report for `rumpuser_exit(RUMPUSER_PANIC)`.
    fn exit(&self, status: i32) -> !;
}
