//! xensim: a simulated hypervisor for tests and benchmarks.

pub mod frontend;
