//! Amounts and fixed-point ratios: integer arithmetic only, so every validator computes the same
//! bytes.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, Sub, SubAssign};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::err::AmountError;

/// An amount of tokens in micro-units: 1 UMB = 1 000 000 µUMB.
///
/// People read and write it in UMB (`"12.5 UMB"`, see [`FromStr`](Amount::from_str) and
/// [`Display`](fmt::Display)); JSON and the canonical encoding hold the plain number of µUMB,
/// as when it was a `u64`. Arithmetic is `u64`'s: `+` and `-` overflow as `u64` does, and
/// `checked_*`/`saturating_*` are there where a value can come from outside.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

/// Micro-units in one UMB.
pub const UNIT: Amount = Amount(1_000_000);

impl Amount {
    /// Nothing.
    pub const ZERO: Amount = Amount(0);
    /// The most an amount can be.
    pub const MAX: Amount = Amount(u64::MAX);

    /// `whole` UMB (in constants, where `whole * UNIT` cannot be written).
    pub const fn from_umb(whole: u64) -> Amount {
        Amount(whole * UNIT.0)
    }

    /// Whether it is nothing.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, or none if it overflows.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or none if `other` is more.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// `self + other`, at most [`Amount::MAX`].
    pub fn saturating_add(self, other: Amount) -> Amount {
        Amount(self.0.saturating_add(other.0))
    }

    /// `self × factor`, or none if it overflows.
    pub fn checked_mul(self, factor: u64) -> Option<Amount> {
        self.0.checked_mul(factor).map(Amount)
    }
}

impl Add for Amount {
    type Output = Amount;

    fn add(self, other: Amount) -> Amount {
        Amount(self.0 + other.0)
    }
}

impl AddAssign for Amount {
    fn add_assign(&mut self, other: Amount) {
        self.0 += other.0;
    }
}

impl Sub for Amount {
    type Output = Amount;

    fn sub(self, other: Amount) -> Amount {
        Amount(self.0 - other.0)
    }
}

impl SubAssign for Amount {
    fn sub_assign(&mut self, other: Amount) {
        self.0 -= other.0;
    }
}

/// `3 * UNIT`: a whole number of amounts.
impl Mul<Amount> for u64 {
    type Output = Amount;

    fn mul(self, amount: Amount) -> Amount {
        Amount(self * amount.0)
    }
}

impl Mul<u64> for Amount {
    type Output = Amount;

    fn mul(self, factor: u64) -> Amount {
        Amount(self.0 * factor)
    }
}

/// An equal share: `cost / epochs`, rounded down.
impl Div<u64> for Amount {
    type Output = Amount;

    fn div(self, divisor: u64) -> Amount {
        Amount(self.0 / divisor)
    }
}

impl Sum for Amount {
    fn sum<I: Iterator<Item = Amount>>(amounts: I) -> Amount {
        amounts.fold(Amount::ZERO, Add::add)
    }
}

impl From<Amount> for u128 {
    fn from(amount: Amount) -> u128 {
        u128::from(amount.0)
    }
}

impl TryFrom<u128> for Amount {
    type Error = std::num::TryFromIntError;

    fn try_from(micro: u128) -> Result<Amount, Self::Error> {
        u64::try_from(micro).map(Amount)
    }
}

/// In UMB, with no more decimals than it needs: `12.5 UMB`, `3 UMB`, `0.000001 UMB`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / UNIT.0;
        let fraction = self.0 % UNIT.0;
        if fraction == 0 {
            return write!(f, "{whole} UMB");
        }
        let digits = format!("{fraction:06}");
        write!(f, "{whole}.{} UMB", digits.trim_end_matches('0'))
    }
}

/// Reads UMB as a person writes them: `12`, `12.5`, `.5`, `0.000001 UMB` (at most 6 decimals,
/// the unit optional).
impl FromStr for Amount {
    type Err = AmountError;

    fn from_str(text: &str) -> Result<Amount, AmountError> {
        let trimmed = text
            .trim()
            .trim_end_matches("UMB")
            .trim_end_matches("umb")
            .trim();
        let (whole, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
        let malformed = || AmountError::Malformed {
            text: text.to_owned(),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(malformed());
        }
        if fraction.len() > 6 || !fraction.chars().all(|c| c.is_ascii_digit()) {
            return Err(malformed());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| malformed())?
        };
        let fraction: u64 = format!("{fraction:0<6}").parse().map_err(|_| malformed())?;
        UNIT.checked_mul(whole)
            .and_then(|micro| micro.checked_add(Amount(fraction)))
            .ok_or_else(|| AmountError::TooLarge {
                text: text.to_owned(),
            })
    }
}

/// Parts per million: how performance, margins and rates are written (1 000 000 = 100 %). A
/// plain number in JSON and the canonical encoding, as when it was a `u32`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Ppm(pub u32);

/// 100 % in parts per million.
pub const PPM: Ppm = Ppm(1_000_000);

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
        Fixed::ratio(u128::from(ppm.0), u128::from(PPM.0))
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
        assert_eq!(
            Fixed::from_ppm(Ppm(950_000)).pow(20).0,
            358_485_922_408_542_233
        );
        assert_eq!(Fixed::ONE.pow(20), Fixed::ONE);
        assert_eq!(Fixed::ZERO.pow(0), Fixed::ONE);
        assert_eq!(half.of(1_000_001), 500_000);
        assert_eq!(Fixed::ONE.over(Fixed::ZERO), Fixed::ZERO);
    }

    #[test]
    fn amounts_parse_from_umb_or_say_why() {
        assert_eq!("12".parse(), Ok(12 * UNIT));
        assert_eq!("12.5".parse(), Ok(Amount(12_500_000)));
        assert_eq!("0.000001 UMB".parse(), Ok(Amount(1)));
        assert_eq!(" 7umb ".parse(), Ok(7 * UNIT));
        assert_eq!(".5".parse(), Ok(Amount(500_000)));
        assert_eq!("18446744073709.551615".parse(), Ok(Amount::MAX));
        let error = |text: &str| text.parse::<Amount>().unwrap_err().to_string();
        assert!(error("1.0000001").contains("at most 6 decimals"));
        assert!(error("ten").contains("write e.g. 12 or 12.5"));
        assert!(error("-1").contains("not an amount of UMB"));
        assert!(error("").contains("not an amount of UMB"));
        assert!(error(".").contains("not an amount of UMB"));
        assert!(error("1.-5").contains("not an amount of UMB"));
        assert!(error("99999999999999999").contains("more UMB than can exist"));
        assert!(error("18446744073709.551616").contains("more UMB than can exist"));
    }

    #[test]
    fn amounts_display_in_umb() {
        assert_eq!(Amount(12_500_000).to_string(), "12.5 UMB");
        assert_eq!((3 * UNIT).to_string(), "3 UMB");
        assert_eq!(Amount(1).to_string(), "0.000001 UMB");
        assert_eq!(Amount::ZERO.to_string(), "0 UMB");
        assert_eq!(Amount::MAX.to_string(), "18446744073709.551615 UMB");
    }

    proptest! {
        #[test]
        fn amounts_round_trip_through_text(micro in any::<u64>()) {
            let amount = Amount(micro);
            prop_assert_eq!(amount.to_string().parse::<Amount>(), Ok(amount));
        }

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
