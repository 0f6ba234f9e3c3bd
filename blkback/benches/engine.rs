//! Engine throughput benchmark (written below).
fn main() {}
