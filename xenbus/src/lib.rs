//! Xenbus: the control plane shared by every split driver.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod platform;
pub mod state;

pub use platform::{DomId, EvtchnPort, GrantRef};
pub use state::XenbusState;
