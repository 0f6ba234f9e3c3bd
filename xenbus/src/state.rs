//! `XenbusState`, from `xen/io/xenbus.h`.

/// The state a xenbus device end publishes in its `state` node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum XenbusState {
    /// 0: not yet known (also what a missing node reads as).
    Unknown = 0,
    /// 1: the end is setting itself up.
    Initialising = 1,
    /// 2: the backend has published its features and waits for the frontend.
    InitWait = 2,
    /// 3: the frontend has published its rings and event channels.
    Initialised = 3,
    /// 4: both ends are ready for I/O.
    Connected = 4,
    /// 5: the end is shutting the device down.
    Closing = 5,
    /// 6: the device is shut down.
    Closed = 6,
    /// 7: reconfiguration is in progress.
    Reconfiguring = 7,
    /// 8: reconfiguration is done.
    Reconfigured = 8,
}

impl XenbusState {
    /// Maps the numeric value from a `state` node, or `None` when out of range.
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::Unknown,
            1 => Self::Initialising,
            2 => Self::InitWait,
            3 => Self::Initialised,
            4 => Self::Connected,
            5 => Self::Closing,
            6 => Self::Closed,
            7 => Self::Reconfiguring,
            8 => Self::Reconfigured,
            _ => return None,
        })
    }

    /// Parses a `state` node's value as another domain wrote it: canonical
    /// decimal only (see [`crate::value::parse_u32`]: no sign, padding or
    /// leading zero), in range. Anything else is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        crate::value::parse_u32(value).ok().and_then(Self::from_u32)
    }

    /// The value written to a `state` node.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "0",
            Self::Initialising => "1",
            Self::InitWait => "2",
            Self::Initialised => "3",
            Self::Connected => "4",
            Self::Closing => "5",
            Self::Closed => "6",
            Self::Reconfiguring => "7",
            Self::Reconfigured => "8",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::XenbusState;

    #[test]
    fn parse_round_trips_every_state() {
        for number in 0..=8 {
            let state = XenbusState::from_u32(number).unwrap();
            assert_eq!(state as u32, number);
            assert_eq!(XenbusState::parse(state.as_str()), Some(state));
        }
        assert_eq!(XenbusState::from_u32(9), None);
    }

    #[test]
    fn parse_refuses_anything_but_the_canonical_spelling() {
        for bad in [
            "",
            "9",
            "04",
            "+4",
            "-1",
            " 4",
            "4 ",
            "4\n",
            "0x4",
            "4294967300",
            "Connected",
        ] {
            assert_eq!(XenbusState::parse(bad), None, "{bad:?}");
        }
    }
}
