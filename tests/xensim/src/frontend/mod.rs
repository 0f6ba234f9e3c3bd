//! Mock frontends that behave like real guests' drivers.

pub mod blk;
pub mod net;
