//! PCI addresses as written in configuration: `segment:bus:device.function`.

use core::fmt;

/// A PCI function's address (segment, bus, device, function), as in
/// `0000:00:05.0`, the form `xl pci-assignable-list` and pciback use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI segment (domain), 0..=0xffff.
    pub segment: u16,
    /// Bus, 0..=0xff.
    pub bus: u8,
    /// Device, 0..=0x1f.
    pub device: u8,
    /// Function, 0..=7.
    pub function: u8,
}

/// Why a PCI address could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BdfError {
    /// The address is not of the form `ssss:bb:dd.f` or `bb:dd.f`.
    Syntax,
    /// A field is not hexadecimal or is too long.
    BadNumber,
    /// The device number is above 0x1f or the function above 7.
    OutOfRange,
}

impl fmt::Display for BdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Syntax => "the address is not of the form ssss:bb:dd.f or bb:dd.f",
            Self::BadNumber => "a field is not hexadecimal or is too long",
            Self::OutOfRange => "the device number is above 0x1f or the function above 7",
        })
    }
}

fn hex(field: &str, max_digits: usize) -> Result<u32, BdfError> {
    if field.is_empty() || field.len() > max_digits || !field.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(BdfError::BadNumber);
    }
    u32::from_str_radix(field, 16).map_err(|_| BdfError::BadNumber)
}

impl Bdf {
    /// Parses `ssss:bb:dd.f`, or `bb:dd.f` meaning segment 0.
    pub fn parse(text: &str) -> Result<Self, BdfError> {
        let (location, function) = text.rsplit_once('.').ok_or(BdfError::Syntax)?;
        let mut fields = location.split(':');
        let (first, second, third, extra) =
            (fields.next(), fields.next(), fields.next(), fields.next());
        let (segment, bus, device) = match (first, second, third, extra) {
            (Some(segment), Some(bus), Some(device), None) => (hex(segment, 4)?, bus, device),
            (Some(bus), Some(device), None, None) => (0, bus, device),
            _ => return Err(BdfError::Syntax),
        };
        let (bus, device, function) = (hex(bus, 2)?, hex(device, 2)?, hex(function, 1)?);
        if device > 0x1f || function > 7 {
            return Err(BdfError::OutOfRange);
        }
        // Each field was bounded by its digit count above.
        Ok(Self {
            segment: segment as u16,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn parses_and_prints() {
        let bdf = Bdf::parse("0000:00:05.0").unwrap();
        assert_eq!(
            bdf,
            Bdf {
                segment: 0,
                bus: 0,
                device: 5,
                function: 0
            }
        );
        assert_eq!(bdf.to_string(), "0000:00:05.0");
        let bdf = Bdf::parse("ab:1f.7").unwrap();
        assert_eq!(
            (bdf.segment, bdf.bus, bdf.device, bdf.function),
            (0, 0xab, 0x1f, 7)
        );
        assert_eq!(Bdf::parse("1:2:3.4").unwrap().to_string(), "0001:02:03.4");
    }

    #[test]
    fn rejects_malformed() {
        for (text, error) in [
            ("", BdfError::Syntax),
            ("00:05", BdfError::Syntax),
            ("0:0:0:0.0", BdfError::Syntax),
            ("00:20.0", BdfError::OutOfRange),
            ("00:05.8", BdfError::OutOfRange),
            ("00000:00:05.0", BdfError::BadNumber),
            ("00:+5.0", BdfError::BadNumber),
            ("00:05.", BdfError::BadNumber),
            ("g0:05.0", BdfError::BadNumber),
        ] {
            assert_eq!(Bdf::parse(text), Err(error), "{text}");
        }
    }
}
