//! netif backend engine and an in-domain L2 learning switch.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod device;
pub mod frame;
pub mod switch;
pub mod tx;
pub mod wire;
