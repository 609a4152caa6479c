//! Amounts and fixed-point ratios: integer arithmetic only, so every validator computes the same
//! bytes.

use serde::{Deserialize, Serialize};

/// An amount of tokens in micro-units: 1 UMB = 1 000 000 µUMB.
pub type Amount = u64;

/// Micro-units in one UMB.
pub const UNIT: Amount = 1_000_000;

/// Parts per million: how performance, margins and rates are written (1 000 000 = 100 %).
pub type Ppm = u32;

/// 100 % in parts per million.
pub const PPM: Ppm = 1_000_000;

/// A non-negative fixed-point number with 18 decimal places (as Nym's `Decimal`), in a `u128`.
/// Operations round down; none overflow for the values a ledger holds (amounts below 2^64,
/// ratios at most a few units).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fixed(pub u128);

impl Fixed {
    /// 10^18: the representation of 1.
    pub const SCALE: u128 = 1_000_000_000_000_000_000;
    /// Zero.
    pub const ZERO: Fixed = Fixed(0);
    /// One.
    pub const ONE: Fixed = Fixed(Self::SCALE);

    /// `numerator / denominator` (zero when the denominator is zero).
    pub fn ratio(numerator: u128, denominator: u128) -> Fixed {
        if denominator == 0 {
            return Fixed::ZERO;
        }
        Fixed(mul_div(numerator, Self::SCALE, denominator))
    }

    /// A ppm value as a fraction.
    pub fn from_ppm(ppm: Ppm) -> Fixed {
        Fixed::ratio(u128::from(ppm), u128::from(PPM))
    }

    /// `self × other`.
    pub fn times(self, other: Fixed) -> Fixed {
        Fixed(mul_div(self.0, other.0, Self::SCALE))
    }

    /// `self / other` (zero when `other` is zero).
    pub fn over(self, other: Fixed) -> Fixed {
        if other.0 == 0 {
            return Fixed::ZERO;
        }
        Fixed(mul_div(self.0, Self::SCALE, other.0))
    }

    /// `self + other`, saturating.
    pub fn plus(self, other: Fixed) -> Fixed {
        Fixed(self.0.saturating_add(other.0))
    }

    /// The smaller of `self` and one.
    pub fn at_most_one(self) -> Fixed {
        self.min(Fixed::ONE)
    }

    /// `self` to the power `exponent`, by repeated squaring (each step rounds down).
    pub fn pow(self, mut exponent: u32) -> Fixed {
        let mut base = self;
        let mut result = Fixed::ONE;
        while exponent > 0 {
            if exponent & 1 == 1 {
                result = result.times(base);
            }
            base = base.times(base);
            exponent >>= 1;
        }
        result
    }

    /// `amount × self`, rounded down to whole micro-units.
    pub fn of(self, amount: u128) -> u128 {
        mul_div(amount, self.0, Self::SCALE)
    }
}

/// `a × b / c` rounded down, exact for any `a × b` up to 2^256 (the product is kept in two
/// words). Saturates at `u128::MAX` if the quotient does not fit; `c` must not be zero.
pub fn mul_div(a: u128, b: u128, c: u128) -> u128 {
    if c == 0 {
        return 0;
    }
    if let Some(product) = a.checked_mul(b) {
        return product / c;
    }
    // 256-bit product as (high, low), then long division by c one bit at a time
    let (high, low) = wide_mul(a, b);
    if high >= c {
        return u128::MAX;
    }
    let mut remainder = high;
    let mut quotient: u128 = 0;
    for bit in (0..128).rev() {
        let carry = remainder >> 127;
        remainder = (remainder << 1) | ((low >> bit) & 1);
        quotient <<= 1;
        if carry == 1 || remainder >= c {
            remainder = remainder.wrapping_sub(c);
            quotient |= 1;
        }
    }
    quotient
}

fn wide_mul(a: u128, b: u128) -> (u128, u128) {
    let mask = u128::from(u64::MAX);
    let (a_high, a_low) = (a >> 64, a & mask);
    let (b_high, b_low) = (b >> 64, b & mask);
    let low_low = a_low * b_low;
    let low_high = a_low * b_high;
    let high_low = a_high * b_low;
    let high_high = a_high * b_high;
    let middle = (low_low >> 64) + (low_high & mask) + (high_low & mask);
    let low = (middle << 64) | (low_low & mask);
    let high = high_high + (low_high >> 64) + (high_low >> 64) + (middle >> 64);
    (high, low)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_arithmetic() {
        let half = Fixed::ratio(1, 2);
        assert_eq!(half.times(half), Fixed::ratio(1, 4));
        // 0.95^20 = 0.3584859224085422343…; each squaring rounds down, a few units of 10^-18 in all
        assert_eq!(Fixed::from_ppm(950_000).pow(20).0, 358_485_922_408_542_233);
        assert_eq!(Fixed::ONE.pow(20), Fixed::ONE);
        assert_eq!(Fixed::ZERO.pow(0), Fixed::ONE);
        assert_eq!(half.of(1_000_001), 500_000);
        assert_eq!(Fixed::ONE.over(Fixed::ZERO), Fixed::ZERO);
    }

    proptest! {
        #[test]
        fn mul_div_is_exact(a in any::<u128>(), b in any::<u128>(), c in 1..u128::MAX) {
            let result = mul_div(a, b, c);
            // check against the same computation on 64-bit halves when it fits
            if let Some(product) = a.checked_mul(b) {
                prop_assert_eq!(result, product / c);
            } else if result != u128::MAX {
                // result × c ≤ a × b < (result + 1) × c
                let (high, low) = wide_mul(result, c);
                let (high_ab, low_ab) = wide_mul(a, b);
                prop_assert!((high, low) <= (high_ab, low_ab));
                let (high_next, low_next) = wide_mul(result + 1, c);
                prop_assert!((high_next, low_next) > (high_ab, low_ab));
            }
        }
    }
}
