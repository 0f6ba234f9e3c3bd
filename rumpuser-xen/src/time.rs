//! Portable time arithmetic.

/// Scales a TSC delta to nanoseconds as `vcpu_time_info` specifies
/// (`xen.h`): shift left by `shift` (right if negative), then multiply by
/// `multiplier / 2^32`.
pub fn scale_delta(delta: u64, multiplier: u32, shift: i8) -> u64 {
    let shifted = if shift >= 0 {
        delta
            .checked_shl(u32::from(shift.unsigned_abs()))
            .unwrap_or(0)
    } else {
        delta
            .checked_shr(u32::from(shift.unsigned_abs()))
            .unwrap_or(0)
    };
    ((u128::from(shifted) * u128::from(multiplier)) >> 32) as u64
}

#[cfg(test)]
mod tests {
    use super::scale_delta;

    #[test]
    fn scales_like_the_header_formula() {
        // A 2 GHz TSC: 0.5 ns per tick = multiplier 2^31, shift 0.
        assert_eq!(scale_delta(2_000_000_000, 1 << 31, 0), 1_000_000_000);
        // A 1 GHz TSC expressed with shift -1 and multiplier 2^32 - 1.
        assert_eq!(scale_delta(1000, u32::MAX, 1), 1999);
        assert_eq!(scale_delta(1000, 1 << 31, -1), 250);
        assert_eq!(scale_delta(0, u32::MAX, 3), 0);
    }
}
