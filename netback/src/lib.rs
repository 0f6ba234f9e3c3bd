//! netif backend engine and an in-domain L2 learning switch.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod backend;
mod backlog;
pub mod device;
pub mod frame;
pub mod switch;
pub mod tx;
pub mod wire;

pub use backend::{
    Config, FrontendFeatures, Netback, Platform, PollOutcome, VifCounters, VifStatus,
    DIRECTORY_WATCH_TOKEN, UPLINK_PORT,
};
pub use backlog::BacklogLimits;
pub use device::{DeviceError, MemoryDevice, NetDevice, NoUplink};
pub use frame::{ChecksumState, Frame, Gso, MacAddress, Offloads};
pub use switch::{Forward, PortCounters, PortId, Switch, SwitchConfig};
pub use xenbus::backend::DeviceAddress;
