//! The switch's uplink port: a NIC passed through to the domain
//! (`uplink=ADDRESS` on the command line, `pci=[...]` in the xl config),
//! driven by `drivers/e1000`; in an image holding NetBSD's drivers, an
//! interface of theirs (`uplink=netbsd:wm0`, frames through
//! `rumpuser_xen::pv::netbsd::Interface`); or nothing.
//!
//! [`Uplink`] is what the main loop hands to netback as its
//! [`NetDevice`]. Besides moving frames it needs looking after on every
//! round ([`Uplink::tend`]): the driver takes its interrupts and
//! follows the link there, and a ring the device stopped writing back is
//! reset here by bringing the device up again. It is generic over the
//! PCI device so that the host tests run it on the e1000 model.

use alloc::boxed::Box;
use core::fmt;

use e1000::{Config, E1000};
use netback::{DeviceError, Frame, NetDevice, Offloads};
use pcidev::PciDevice;

/// Resets after which a device that keeps stalling is given up.
pub const MAX_RESETS: u32 = 8;

/// What one [`Uplink::tend`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tended {
    /// A received frame waits in the device's ring: poll again before
    /// blocking.
    pub rx_pending: bool,
    /// The link went up (`Some(true)`) or down (`Some(false)`).
    pub link_changed: Option<bool>,
    /// The device was reset and brought up again after a stall.
    pub reset: bool,
    /// The device failed and is no longer used; the switch goes on
    /// without an uplink.
    pub lost: bool,
}

/// An Ethernet address as written in xl configs: `00:16:3e:00:00:01`.
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, f] = self.0;
        write!(formatter, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
    }
}

/// The uplink port's device.
pub enum Uplink<D: PciDevice> {
    /// No NIC: frames for the uplink are dropped.
    None,
    /// An 82540EM, with the resets spent on it so far (boxed: the
    /// driver's state is large).
    E1000(Box<E1000<D>>, u32),
    /// A NetBSD driver's interface. It takes no offloads: frames go out
    /// as netback completes them, and come in with checksums unchecked.
    #[cfg(all(feature = "netbsd", target_os = "none"))]
    Netbsd(rumpuser_xen::pv::netbsd::Interface),
}

impl<D: PciDevice> fmt::Debug for Uplink<D> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => formatter.write_str("no uplink"),
            Self::E1000(driver, _) => write!(formatter, "e1000 {}", Mac(driver.mac_address())),
            #[cfg(all(feature = "netbsd", target_os = "none"))]
            Self::Netbsd(interface) => write!(formatter, "NetBSD {}", interface.name()),
        }
    }
}

impl<D: PciDevice> Uplink<D> {
    /// Brings up an e1000 on `device`; on failure the device is handed
    /// back with the reason.
    pub fn e1000(device: D) -> Result<Self, (e1000::Error, D)> {
        E1000::new(device, Config::default()).map(|driver| Self::E1000(Box::new(driver), 0))
    }

    /// Whether there is a device (the switch then has an uplink port).
    pub fn is_present(&self) -> bool {
        !matches!(self, Self::None)
    }

    /// The e1000 driver, if that is the device.
    pub fn driver(&self) -> Option<&E1000<D>> {
        match self {
            Self::E1000(driver, _) => Some(driver),
            _ => None,
        }
    }

    /// Takes the device's interrupts and link changes, reaps finished
    /// transmissions, and resets a stalled device (at most
    /// [`MAX_RESETS`] times). Bounded by the driver's own poll bound plus,
    /// on a stall, one bring-up.
    pub fn tend(&mut self) -> Tended {
        let mut tended = Tended::default();
        #[cfg(all(feature = "netbsd", target_os = "none"))]
        if let Self::Netbsd(interface) = self {
            match interface.pending() {
                Ok(pending) => tended.rx_pending = pending,
                Err(error) => {
                    log::error!("rumpnet: uplink: {error}; going on without it");
                    *self = Self::None;
                    tended.lost = true;
                }
            }
            return tended;
        }
        let Self::E1000(driver, resets) = self else {
            return tended;
        };
        let outcome = match driver.poll() {
            Ok(outcome) => outcome,
            Err(error) => {
                log::error!("rumpnet: uplink: {error}; going on without it");
                *self = Self::None;
                tended.lost = true;
                return tended;
            }
        };
        if outcome.link_changed {
            tended.link_changed = Some(outcome.link_up);
        }
        tended.rx_pending = outcome.rx_pending;
        if !outcome.stalled {
            return tended;
        }
        *resets += 1;
        let resets = *resets;
        let Self::E1000(driver, _) = core::mem::replace(self, Self::None) else {
            return tended;
        };
        if resets > MAX_RESETS {
            log::error!("rumpnet: uplink: stalled again after {MAX_RESETS} resets; giving it up");
            drop(driver.shutdown());
            tended.lost = true;
            return tended;
        }
        log::warn!("rumpnet: uplink: a ring stalled; resetting the device ({resets})");
        let device = driver.shutdown();
        match Self::e1000(device) {
            Ok(Self::E1000(driver, _)) => {
                *self = Self::E1000(driver, resets);
                tended.reset = true;
            }
            Ok(_) => tended.lost = true,
            Err((error, _)) => {
                log::error!("rumpnet: uplink: bring-up after the reset failed: {error}");
                tended.lost = true;
            }
        }
        tended
    }

    /// Whether a received frame waits in the device's ring.
    pub fn rx_pending(&mut self) -> bool {
        match self {
            Self::None => false,
            Self::E1000(driver, _) => driver.rx_pending().unwrap_or(false),
            #[cfg(all(feature = "netbsd", target_os = "none"))]
            Self::Netbsd(interface) => interface.pending().unwrap_or(false),
        }
    }

    /// Stops the device (a reset; its DMA memory is freed) and returns it
    /// to the caller, who may hand it back to the platform.
    pub fn shutdown(self) -> Option<D> {
        match self {
            Self::E1000(driver, _) => Some(driver.shutdown()),
            _ => None,
        }
    }
}

impl<D: PciDevice> NetDevice for Uplink<D> {
    fn offloads(&self) -> Offloads {
        match self {
            Self::None => Offloads::NONE,
            Self::E1000(driver, _) => driver.offloads(),
            #[cfg(all(feature = "netbsd", target_os = "none"))]
            Self::Netbsd(_) => Offloads::NONE,
        }
    }

    fn transmit(&mut self, frame: Frame) -> Result<(), DeviceError> {
        match self {
            Self::None => Err(DeviceError::LinkDown),
            Self::E1000(driver, _) => driver.transmit(frame),
            #[cfg(all(feature = "netbsd", target_os = "none"))]
            Self::Netbsd(interface) => interface.send(&frame.data).map_err(|error| {
                log::debug!("rumpnet: uplink: send: {error}");
                DeviceError::Busy
            }),
        }
    }

    fn receive(&mut self) -> Option<Frame> {
        match self {
            Self::None => None,
            Self::E1000(driver, _) => NetDevice::receive(&mut **driver),
            #[cfg(all(feature = "netbsd", target_os = "none"))]
            Self::Netbsd(interface) => interface.receive().ok().flatten().map(|data| Frame {
                data,
                checksum: netback::ChecksumState::Complete,
                gso: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use e1000::model::{Delivery, Model, TxWriteBack};
    use netback::ChecksumState;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    fn frame(length: usize) -> Vec<u8> {
        let mut data = vec![0u8; length];
        data[..6].copy_from_slice(&[0xff; 6]);
        data[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 1]);
        data[12..14].copy_from_slice(&[0x08, 0x00]);
        data
    }

    #[test]
    fn addresses_print_as_in_xl_configs() {
        use alloc::string::ToString;
        assert_eq!(
            Mac([0, 0x16, 0x3e, 0xa, 0xbc, 1]).to_string(),
            "00:16:3e:0a:bc:01"
        );
    }

    #[test]
    fn no_uplink_drops_and_receives_nothing() {
        let mut uplink: Uplink<Model> = Uplink::None;
        assert!(!uplink.is_present());
        assert_eq!(uplink.tend(), Tended::default());
        assert!(uplink.receive().is_none());
        let sent = uplink.transmit(Frame {
            data: frame(60),
            checksum: ChecksumState::Complete,
            gso: None,
        });
        assert!(sent.is_err());
        assert!(uplink.shutdown().is_none());
    }

    #[test]
    fn frames_cross_the_uplink_both_ways() {
        let model = Model::new(MAC);
        let mut uplink = Uplink::e1000(model.clone())
            .map_err(|(error, _)| error)
            .unwrap();
        assert!(uplink.is_present());
        assert!(matches!(model.receive(&frame(100)), Delivery::Delivered(_)));
        let tended = uplink.tend();
        assert!(!tended.lost && !tended.reset);
        let received = uplink.receive().expect("the frame the wire delivered");
        assert_eq!(received.data, frame(100));
        uplink
            .transmit(Frame {
                data: frame(80),
                checksum: ChecksumState::Complete,
                gso: None,
            })
            .unwrap();
        uplink.tend();
        assert_eq!(model.take_transmitted(), [frame(80)]);
        assert!(uplink.shutdown().is_some());
    }

    #[test]
    fn link_changes_are_reported_once() {
        let model = Model::new(MAC);
        let mut uplink = Uplink::e1000(model.clone())
            .map_err(|(error, _)| error)
            .unwrap();
        uplink.tend();
        model.set_cable(false);
        assert_eq!(uplink.tend().link_changed, Some(false));
        assert_eq!(uplink.tend().link_changed, None);
        model.set_cable(true);
        assert_eq!(uplink.tend().link_changed, Some(true));
    }

    #[test]
    fn a_device_that_vanishes_is_given_up() {
        let model = Model::new(MAC);
        let mut uplink = Uplink::e1000(model.clone())
            .map_err(|(error, _)| error)
            .unwrap();
        model.set_gone(true);
        let tended = uplink.tend();
        assert!(tended.lost);
        assert!(!uplink.is_present());
        assert!(uplink.receive().is_none());
    }

    fn send(uplink: &mut Uplink<Model>, length: usize) {
        uplink
            .transmit(Frame {
                data: frame(length),
                checksum: ChecksumState::Complete,
                gso: None,
            })
            .unwrap();
    }

    #[test]
    fn a_stalled_device_is_reset_then_given_up() {
        let model = Model::new(MAC);
        let mut uplink = Uplink::e1000(model.clone())
            .map_err(|(error, _)| error)
            .unwrap();
        let stall_polls = uplink.driver().unwrap().config().stall_polls;
        let mut resets = 0;
        for round in 1..=MAX_RESETS + 1 {
            // Descriptors taken but never written back.
            model.set_tx_write_back(TxWriteBack::Withhold);
            send(&mut uplink, 64);
            let mut tended = Tended::default();
            for _ in 0..=stall_polls {
                tended = uplink.tend();
                if tended.reset || tended.lost {
                    break;
                }
            }
            if round <= MAX_RESETS {
                assert!(tended.reset, "round {round}: {tended:?}");
                resets += 1;
                // The device is usable again after the reset.
                model.set_tx_write_back(TxWriteBack::Done);
                model.take_transmitted();
                send(&mut uplink, 70);
                assert_eq!(model.take_transmitted(), [frame(70)]);
            } else {
                assert!(tended.lost, "round {round}: {tended:?}");
            }
        }
        assert_eq!(resets, MAX_RESETS);
        assert!(!uplink.is_present());
    }

    #[test]
    fn a_device_that_is_not_an_e1000_is_refused() {
        let model = Model::new(MAC);
        model.set_device_id(0x10d3);
        assert!(Uplink::e1000(model).is_err());
    }
}
