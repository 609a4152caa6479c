//! Arithmetic modulo p = 2^255 - 19, just enough to turn many u-coordinates into Edwards
//! y-coordinates with one shared inversion (Montgomery's trick) instead of one each.
//!
//! curve25519-dalek keeps its field type private, and a single inversion costs as much as
//! 250 multiplications, so batches of packets share it here. Elements are five 51-bit limbs
//! (the usual radix-2^51 representation); every operation is constant-time.

use subtle::{Choice, ConstantTimeEq};

const MASK: u64 = (1 << 51) - 1;

/// An element of GF(2^255 - 19), limbs below 2^52 between operations.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldElement([u64; 5]);

impl FieldElement {
    pub(crate) const ONE: FieldElement = FieldElement([1, 0, 0, 0, 0]);

    /// Reads 255 bits little-endian, ignoring the top bit (the caller checks canonicity).
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> FieldElement {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(w)
        };
        FieldElement([
            word(0) & MASK,
            (word(6) >> 3) & MASK,
            (word(12) >> 6) & MASK,
            (word(19) >> 1) & MASK,
            (word(24) >> 12) & MASK,
        ])
    }

    /// The canonical encoding (fully reduced modulo p).
    pub(crate) fn to_bytes(self) -> [u8; 32] {
        let mut limbs = self.carried().0;
        // limbs < 2^51 + small now; subtract p if the value is at least p: add 19, see
        // whether bit 255 is set, and if so the value minus p is the low 255 bits.
        let mut q = (limbs[0] + 19) >> 51;
        q = (limbs[1] + q) >> 51;
        q = (limbs[2] + q) >> 51;
        q = (limbs[3] + q) >> 51;
        q = (limbs[4] + q) >> 51;
        limbs[0] += 19 * q;
        limbs[1] += limbs[0] >> 51;
        limbs[0] &= MASK;
        limbs[2] += limbs[1] >> 51;
        limbs[1] &= MASK;
        limbs[3] += limbs[2] >> 51;
        limbs[2] &= MASK;
        limbs[4] += limbs[3] >> 51;
        limbs[3] &= MASK;
        limbs[4] &= MASK;

        let mut out = [0u8; 32];
        let mut acc: u128 = 0;
        let mut bits = 0;
        let mut at = 0;
        for limb in limbs {
            acc |= u128::from(limb) << bits;
            bits += 51;
            while bits >= 8 && at < 32 {
                out[at] = acc as u8;
                acc >>= 8;
                bits -= 8;
                at += 1;
            }
        }
        if at < 32 {
            out[at] = acc as u8;
        }
        out
    }

    pub(crate) fn add(&self, other: &FieldElement) -> FieldElement {
        let mut sum = [0u64; 5];
        for (s, (a, b)) in sum.iter_mut().zip(self.0.iter().zip(&other.0)) {
            *s = a + b;
        }
        FieldElement(sum).carried()
    }

    pub(crate) fn sub(&self, other: &FieldElement) -> FieldElement {
        // add 16p so no limb goes negative (limbs of `other` are below 2^52 < 16·2^51 - 304)
        const SIXTEEN_P: [u64; 5] = [
            16 * ((1 << 51) - 19),
            16 * MASK,
            16 * MASK,
            16 * MASK,
            16 * MASK,
        ];
        let mut difference = [0u64; 5];
        for (d, ((a, b), p)) in difference
            .iter_mut()
            .zip(self.0.iter().zip(&other.0).zip(SIXTEEN_P))
        {
            *d = a + p - b;
        }
        FieldElement(difference).carried()
    }

    pub(crate) fn mul(&self, other: &FieldElement) -> FieldElement {
        let [a0, a1, a2, a3, a4] = self.0.map(u128::from);
        let [b0, b1, b2, b3, b4] = other.0.map(u128::from);
        let (b1_19, b2_19, b3_19, b4_19) = (b1 * 19, b2 * 19, b3 * 19, b4 * 19);
        let c0 = a0 * b0 + a1 * b4_19 + a2 * b3_19 + a3 * b2_19 + a4 * b1_19;
        let c1 = a0 * b1 + a1 * b0 + a2 * b4_19 + a3 * b3_19 + a4 * b2_19;
        let c2 = a0 * b2 + a1 * b1 + a2 * b0 + a3 * b4_19 + a4 * b3_19;
        let c3 = a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0 + a4 * b4_19;
        let c4 = a0 * b4 + a1 * b3 + a2 * b2 + a3 * b1 + a4 * b0;
        reduce_wide([c0, c1, c2, c3, c4])
    }

    pub(crate) fn square(&self) -> FieldElement {
        self.mul(self)
    }

    fn square_times(&self, times: u32) -> FieldElement {
        let mut x = *self;
        for _ in 0..times {
            x = x.square();
        }
        x
    }

    /// self^(p-2), which is 1/self (and 0 for 0).
    pub(crate) fn invert(&self) -> FieldElement {
        // p - 2 = (2^250 - 1)·2^5 + 11
        let z = *self;
        let z2 = z.square();
        let z9 = z2.square_times(2).mul(&z);
        let z11 = z9.mul(&z2);
        let z_5_0 = z11.square().mul(&z9); // z^(2^5 - 1)
        let z_10_0 = z_5_0.square_times(5).mul(&z_5_0);
        let z_20_0 = z_10_0.square_times(10).mul(&z_10_0);
        let z_40_0 = z_20_0.square_times(20).mul(&z_20_0);
        let z_50_0 = z_40_0.square_times(10).mul(&z_10_0);
        let z_100_0 = z_50_0.square_times(50).mul(&z_50_0);
        let z_200_0 = z_100_0.square_times(100).mul(&z_100_0);
        let z_250_0 = z_200_0.square_times(50).mul(&z_50_0);
        z_250_0.square_times(5).mul(&z11)
    }

    pub(crate) fn is_zero(&self) -> Choice {
        self.to_bytes().ct_eq(&[0u8; 32])
    }

    /// Propagates carries so every limb is below 2^51 plus a little.
    fn carried(self) -> FieldElement {
        let mut l = self.0;
        l[1] += l[0] >> 51;
        l[0] &= MASK;
        l[2] += l[1] >> 51;
        l[1] &= MASK;
        l[3] += l[2] >> 51;
        l[2] &= MASK;
        l[4] += l[3] >> 51;
        l[3] &= MASK;
        l[0] += 19 * (l[4] >> 51);
        l[4] &= MASK;
        FieldElement(l)
    }
}

/// Reduces five 128-bit column sums to limbs below 2^52.
fn reduce_wide(c: [u128; 5]) -> FieldElement {
    let mask = u128::from(MASK);
    let mut c = c;
    c[1] += c[0] >> 51;
    c[2] += c[1] >> 51;
    c[3] += c[2] >> 51;
    c[4] += c[3] >> 51;
    let carry = (c[4] >> 51) as u64;
    let mut l = [
        (c[0] & mask) as u64,
        (c[1] & mask) as u64,
        (c[2] & mask) as u64,
        (c[3] & mask) as u64,
        (c[4] & mask) as u64,
    ];
    // limbs in are below 2^51.1, so column sums stay below 2^109 and carry below 2^58;
    // 19·carry < 2^63 fits in a u64 next to a 51-bit limb
    l[0] += carry * 19;
    l[1] += l[0] >> 51;
    l[0] &= MASK;
    FieldElement(l)
}

/// Replaces every element by its inverse with one inversion and 3(n-1) multiplications.
/// Elements equal to zero stay zero (and must be told apart by the caller beforehand: a zero
/// anywhere would otherwise zero the whole batch, so they are skipped here).
pub(crate) fn batch_invert(elements: &mut [FieldElement]) {
    let mut products = Vec::with_capacity(elements.len());
    let mut acc = FieldElement::ONE;
    for element in elements.iter() {
        products.push(acc);
        let zero = element.is_zero();
        let factor = FieldElement::conditional_select(element, &FieldElement::ONE, zero);
        acc = acc.mul(&factor);
    }
    let mut inverse = acc.invert();
    for (element, before) in elements.iter_mut().zip(products).rev() {
        let zero = element.is_zero();
        let factor = FieldElement::conditional_select(element, &FieldElement::ONE, zero);
        let inverted = inverse.mul(&before);
        inverse = inverse.mul(&factor);
        *element = FieldElement::conditional_select(&inverted, element, zero);
    }
}

impl FieldElement {
    fn conditional_select(a: &FieldElement, b: &FieldElement, choose_b: Choice) -> FieldElement {
        use subtle::ConditionallySelectable;
        let mut out = [0u64; 5];
        for (o, (x, y)) in out.iter_mut().zip(a.0.iter().zip(&b.0)) {
            *o = u64::conditional_select(x, y, choose_b);
        }
        FieldElement(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::{EdwardsPoint, MontgomeryPoint};

    fn sample(i: u64) -> [u8; 32] {
        EdwardsPoint::mul_base_clamped([i as u8 ^ 0x5c; 32].map(|b| b.wrapping_add(i as u8)))
            .to_montgomery()
            .to_bytes()
    }

    #[test]
    fn bytes_round_trip_canonically() {
        for i in 0..50 {
            let bytes = sample(i);
            assert_eq!(FieldElement::from_bytes(&bytes).to_bytes(), bytes);
        }
        // p - 1 and p + 5 (non-canonical) encode as p - 1 and 5
        let mut p_minus_one = [0xff; 32];
        p_minus_one[0] = 0xec;
        p_minus_one[31] = 0x7f;
        assert_eq!(
            FieldElement::from_bytes(&p_minus_one).to_bytes(),
            p_minus_one
        );
        let mut p_plus_five = p_minus_one;
        p_plus_five[0] = 0xf2;
        let mut five = [0u8; 32];
        five[0] = 5;
        assert_eq!(FieldElement::from_bytes(&p_plus_five).to_bytes(), five);
    }

    #[test]
    fn edwards_y_matches_dalek() {
        for i in 0..50 {
            let u_bytes = sample(i);
            let u = FieldElement::from_bytes(&u_bytes);
            let y = u
                .sub(&FieldElement::ONE)
                .mul(&u.add(&FieldElement::ONE).invert());
            let dalek = MontgomeryPoint(u_bytes)
                .to_edwards(0)
                .unwrap()
                .compress()
                .to_bytes();
            let mut expected = dalek;
            expected[31] &= 0x7f;
            assert_eq!(y.to_bytes(), expected, "sample {i}");
        }
    }

    #[test]
    fn batch_inversion_matches_single_inversion_and_keeps_zeros() {
        let mut elements: Vec<FieldElement> = (0..9)
            .map(|i| FieldElement::from_bytes(&sample(i)))
            .collect();
        elements[4] = FieldElement::from_bytes(&[0; 32]);
        let expected: Vec<[u8; 32]> = elements.iter().map(|e| e.invert().to_bytes()).collect();
        batch_invert(&mut elements);
        let got: Vec<[u8; 32]> = elements.iter().map(|e| e.to_bytes()).collect();
        assert_eq!(got, expected);
        assert_eq!(got[4], [0; 32]);
        for (i, element) in elements.iter().enumerate().filter(|(i, _)| *i != 4) {
            let one = element.mul(&FieldElement::from_bytes(&sample(i as u64)));
            assert_eq!(one.to_bytes(), FieldElement::ONE.to_bytes());
        }
    }
}
