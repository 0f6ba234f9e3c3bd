//! The network device behind the switch's uplink port.
//!
//! The uplink (a NIC driver, later) plugs in through [`NetDevice`]: frames
//! go out through [`NetDevice::transmit`], frames come in through
//! [`NetDevice::receive`]. The engine polls it a bounded number of times per
//! [`crate::Netback::poll`]; the device never calls back.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::frame::{Frame, Offloads};

/// Why a device did not take a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    /// The transmit queue is full; the frame was not sent.
    Busy,
    /// The frame is larger than the device can send.
    TooLarge,
    /// The link is down.
    LinkDown,
}

/// A network device: a frame goes out, frames come in.
pub trait NetDevice {
    /// The offloads the device takes on transmit. Frames are adapted
    /// (checksums filled in, super-packets segmented) before
    /// [`NetDevice::transmit`] sees them.
    fn offloads(&self) -> Offloads;

    /// Sends one frame.
    fn transmit(&mut self, frame: Frame) -> Result<(), DeviceError>;

    /// Takes one received frame, if there is one. A device may report
    /// offload metadata (for example a blank checksum from a NIC that
    /// validated it) in the frame.
    fn receive(&mut self) -> Option<Frame>;
}

/// No uplink: every frame sent is dropped, nothing is received.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUplink;

impl NetDevice for NoUplink {
    fn offloads(&self) -> Offloads {
        Offloads::ALL
    }

    fn transmit(&mut self, _frame: Frame) -> Result<(), DeviceError> {
        Err(DeviceError::LinkDown)
    }

    fn receive(&mut self) -> Option<Frame> {
        None
    }
}

/// A device made of two in-memory queues, for tests and for wiring
/// without a NIC: frames sent are kept in `sent`, frames pushed to
/// `incoming` are received. Both queues are bounded by `capacity`.
#[derive(Debug, Clone)]
pub struct MemoryDevice {
    /// What the device takes on transmit.
    pub offloads: Offloads,
    /// Frames transmitted, oldest first.
    pub sent: VecDeque<Frame>,
    /// Frames waiting to be received, oldest first.
    pub incoming: VecDeque<Frame>,
    /// Bound on each queue.
    pub capacity: usize,
}

impl MemoryDevice {
    /// An empty device.
    pub fn new(offloads: Offloads, capacity: usize) -> Self {
        Self {
            offloads,
            sent: VecDeque::new(),
            incoming: VecDeque::new(),
            capacity,
        }
    }

    /// Queues a frame to be received; returns it back if the queue is full.
    pub fn inject(&mut self, frame: Frame) -> Result<(), Frame> {
        if self.incoming.len() >= self.capacity {
            return Err(frame);
        }
        self.incoming.push_back(frame);
        Ok(())
    }

    /// Takes every transmitted frame.
    pub fn take_sent(&mut self) -> Vec<Frame> {
        self.sent.drain(..).collect()
    }
}

impl NetDevice for MemoryDevice {
    fn offloads(&self) -> Offloads {
        self.offloads
    }

    fn transmit(&mut self, frame: Frame) -> Result<(), DeviceError> {
        if self.sent.len() >= self.capacity {
            return Err(DeviceError::Busy);
        }
        self.sent.push_back(frame);
        Ok(())
    }

    fn receive(&mut self) -> Option<Frame> {
        self.incoming.pop_front()
    }
}
