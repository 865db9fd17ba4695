//! Exact sums of `DOUBLE`s, so that SUM and AVG give the same bits however the rows were
//! split, ordered or pre-aggregated (parallelism, batch size, two-phase aggregation).
//!
//! An [`ExactSum`] holds the exact sum of every value added, and [`ExactSum::value`] rounds it
//! once, to nearest (ties to even). Different orders of addition leave different
//! representations of the same exact total, so the same rounded result.
//!
//! Two parts hold it. Most values go into a 128-bit integer counted in units of `2^scale` (a
//! DOUBLE is an integer of at most 53 bits times a power of two): readings of similar
//! magnitude (temperatures, meter values) span far fewer than 128 bits, so adding one is a
//! shift and an integer add. A value that does not fit (magnitudes too far apart, or the
//! integer full) goes into Shewchuk's non-overlapping partials instead (as Python's
//! `math.fsum`), which are exact for any values. Infinities and NaN are summed apart (their sum
//! does not depend on order either). The one order-dependent case left is an intermediate
//! overflow of the partials (finite values summing past `f64::MAX` on the way), which gives an
//! infinity.

use smallvec::SmallVec;

/// Partials held without allocating.
const INLINE: usize = 2;

/// The largest exponent of a value's lowest bit the integer takes, so that the integer's
/// 127 bits times `2^scale` stay below `f64::MAX` (and its pieces are finite DOUBLEs).
const MAX_FIXED_EXP: i32 = 1023 - 127;

/// No value is in the integer yet.
const UNSET: i32 = i32::MAX;

/// The exact sum of the values added so far.
#[derive(Debug, Clone)]
pub struct ExactSum {
    /// The sum of the values in the integer part, in units of `2^scale`.
    fixed: i128,
    /// The exponent of the integer's unit ([`UNSET`] before the first value).
    scale: i32,
    /// The values that did not fit the integer, exactly.
    rest: Partials,
    /// The sum of the infinities and NaNs added (0 when none).
    special: f64,
}

impl Default for ExactSum {
    fn default() -> Self {
        Self {
            fixed: 0,
            scale: UNSET,
            rest: Partials::default(),
            special: 0.0,
        }
    }
}

impl ExactSum {
    /// Add `x` exactly.
    #[inline]
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            self.special += x;
        } else if x != 0.0 && !self.add_fixed(x) {
            if let Some(inf) = self.rest.add(x) {
                self.special += inf;
            }
        }
    }

    /// Add `x` (finite, not zero) to the integer; false when it does not fit.
    #[inline]
    fn add_fixed(&mut self, x: f64) -> bool {
        let (m, e) = decompose(x);
        if e > MAX_FIXED_EXP {
            return false;
        }
        if self.scale == UNSET || self.fixed == 0 {
            self.scale = e;
        }
        if e < self.scale {
            // Lower the unit to the value's: shift the integer up, if it has room.
            let room = self.fixed.unsigned_abs().leading_zeros() as i32 - 1;
            let d = self.scale - e;
            if d > room {
                return false;
            }
            self.fixed <<= d;
            self.scale = e;
        }
        let shift = e - self.scale;
        if shift > 73 {
            return false; // m << shift would pass 2^126
        }
        match self.fixed.checked_add((m as i128) << shift) {
            Some(sum) => {
                self.fixed = sum;
                true
            }
            None => false,
        }
    }

    /// The exact sum rounded to the nearest DOUBLE (ties to even).
    pub fn value(&self) -> f64 {
        if self.special != 0.0 {
            return self.special; // an infinity, or NaN (which is != 0 too)
        }
        if self.scale == UNSET {
            return self.rest.value();
        }
        if self.rest.is_empty() && self.fixed.unsigned_abs() < 1 << 53 {
            // One DOUBLE holds it exactly (no rounding): the common case of a small group. It
            // fits an `i64`, whose conversion is one instruction (an `i128`'s is a call).
            return (self.fixed as i64) as f64 * pow2(self.scale);
        }
        let mut all = self.rest.clone();
        for piece in self.pieces().into_iter().filter(|p| *p != 0.0) {
            if let Some(inf) = all.add(piece) {
                return inf;
            }
        }
        all.value()
    }

    /// The integer part as three DOUBLEs (each exact: 53 bits times a power of two; the low
    /// two not negative, the top one signed) whose sum it is.
    fn pieces(&self) -> [f64; 3] {
        if self.scale == UNSET || self.fixed == 0 {
            return [0.0; 3];
        }
        const LOW: i128 = (1 << 53) - 1;
        let unit = |k: i32| pow2(self.scale + k);
        let f = self.fixed;
        // Each piece fits an `i64` (53 bits, and 22 for the top), converted in one instruction.
        [
            ((f & LOW) as i64) as f64 * unit(0),
            (((f >> 53) & LOW) as i64) as f64 * unit(53),
            ((f >> 106) as i64) as f64 * unit(106),
        ]
    }

    /// Values whose exact sum is this one: the integer's pieces, the partials, then the
    /// special sum if there is one. A state written this way is read back by adding each.
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let special = (self.special != 0.0).then_some(self.special);
        let pieces = self.pieces().into_iter().filter(|p| *p != 0.0);
        pieces.chain(self.rest.0.iter().copied()).chain(special)
    }

    /// At most how many values [`ExactSum::values`] gives.
    pub fn len_hint(&self) -> usize {
        3 + self.rest.0.len() + 1
    }

    /// Heap bytes beyond the struct (partials spilled past the inline ones).
    pub fn heap_size(&self) -> usize {
        match self.rest.0.spilled() {
            true => self.rest.0.capacity() * size_of::<f64>(),
            false => 0,
        }
    }
}

/// `2^k` for `k` in -1074..=1023, exactly (subnormal below -1022).
fn pow2(k: i32) -> f64 {
    match k {
        -1022..=1023 => f64::from_bits(((k + 1023) as u64) << 52),
        -1074..=-1023 => f64::from_bits(1 << (k + 1074)),
        _ => 2f64.powi(k), // not reached: a unit is some DOUBLE's lowest bit
    }
}

/// `x` (finite, not zero) as `m * 2^e` with `m` an odd integer of at most 53 bits (signed).
#[inline]
fn decompose(x: f64) -> (i64, i32) {
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = (bits & ((1 << 52) - 1)) as i64;
    let (m, e) = match biased {
        0 => (fraction, -1074), // subnormal
        _ => (fraction | 1 << 52, biased - 1075),
    };
    let tz = m.trailing_zeros();
    let (m, e) = (m >> tz, e + tz as i32);
    match x < 0.0 {
        true => (-m, e),
        false => (m, e),
    }
}

/// Shewchuk's partials: non-overlapping, finite, by increasing magnitude; their exact sum is
/// the exact sum of the values added.
#[derive(Debug, Clone, Default)]
struct Partials(SmallVec<[f64; INLINE]>);

impl Partials {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Add finite `x` exactly; an infinity when the sum overflowed on the way.
    fn add(&mut self, x: f64) -> Option<f64> {
        let p = &mut self.0;
        let (mut x, mut kept) = (x, 0);
        for j in 0..p.len() {
            let mut y = p[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                p[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        p.truncate(kept);
        match x.is_finite() {
            true => {
                p.push(x);
                None
            }
            false => Some(x),
        }
    }

    /// The exact sum rounded to the nearest DOUBLE (ties to even).
    fn value(&self) -> f64 {
        let p = &self.0;
        let Some(mut n) = p.len().checked_sub(1) else {
            return 0.0;
        };
        let (mut hi, mut lo) = (p[n], 0.0);
        while n > 0 {
            n -= 1;
            let (x, y) = (hi, p[n]);
            hi = x + y;
            lo = y - (hi - x);
            if lo != 0.0 {
                break;
            }
        }
        // Round half to even: when the rest below `lo` pushes the same way, the exact value
        // is past the halfway point `hi + lo` stood on.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

#[cfg(test)]
mod tests {
    use super::{ExactSum, Partials};

    fn sum(values: &[f64]) -> f64 {
        let mut s = ExactSum::default();
        values.iter().for_each(|&v| s.add(v));
        s.value()
    }

    #[test]
    fn cancelling_values_keep_the_small_ones() {
        assert_eq!(sum(&[1e100, 1.0, -1e100, 1e-100]), 1.0);
        assert_eq!(sum(&[1e100, 1.0, -1e100]), 1.0); // naively 0
                                                     // The exact sum of these DOUBLEs (math.fsum's), not 0.1 + 0.2 + 0.3 - 0.6 = 1.1e-16.
        assert_eq!(sum(&[0.1, 0.2, 0.3, -0.6]), 2.7755575615628914e-17);
        assert_eq!(sum(&[]), 0.0);
    }

    #[test]
    fn the_result_is_the_same_in_any_order_and_any_split() {
        let values: Vec<f64> = (0..10_000)
            .map(|i| ((i * 7919) % 10_007) as f64 * 0.013 - 61.7 + 1.0 / (i + 1) as f64)
            .collect();
        let forward = sum(&values);
        let mut reversed = values.clone();
        reversed.reverse();
        assert_eq!(forward.to_bits(), sum(&reversed).to_bits());
        for parts in [2, 3, 7, 64] {
            let mut total = ExactSum::default();
            for chunk in values.chunks(values.len().div_ceil(parts)) {
                let mut part = ExactSum::default();
                chunk.iter().for_each(|&v| part.add(v));
                part.values().for_each(|v| total.add(v));
            }
            assert_eq!(forward.to_bits(), total.value().to_bits(), "{parts} parts");
        }
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-53 is halfway between 1 and the next DOUBLE: ties go to even (1.0); a tiny
        // bit more goes up.
        let half = f64::EPSILON / 2.0;
        assert_eq!(sum(&[1.0, half]), 1.0);
        assert_eq!(sum(&[1.0, half, 1e-300]), 1.0 + f64::EPSILON);
        assert_eq!(sum(&[1.0, half, -1e-300]), 1.0);
    }

    #[test]
    fn infinities_and_nan_are_summed_apart() {
        assert_eq!(sum(&[1.0, f64::INFINITY, -5.0]), f64::INFINITY);
        assert!(sum(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
        assert!(sum(&[f64::NAN, 1.0]).is_nan());
        assert_eq!(sum(&[f64::MAX, f64::MAX]), f64::INFINITY);
    }

    /// Sums through the integer (and its spills) equal Shewchuk's partials alone, for values
    /// of one magnitude, of magnitudes far apart, negative, subnormal and huge.
    #[test]
    fn the_integer_part_agrees_with_the_partials_alone() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let kinds: [&dyn Fn(u64) -> f64; 5] = [
            &|r| (r % 4000) as f64 / 100.0,
            &|r| (r % 2000) as f64 / 7.0 - 140.0,
            &|r| f64::from_bits(r >> 2) * if r & 1 == 0 { 1.0 } else { -1.0 },
            &|r| ((r % 1000) as f64 - 500.0) * 2f64.powi((r % 200) as i32 - 100),
            &|r| (r % 7) as f64 * f64::MIN_POSITIVE / 3.0 + (r % 3) as f64 * 1e300,
        ];
        for (k, kind) in kinds.iter().enumerate() {
            for n in [1, 2, 5, 60, 1000] {
                let values: Vec<f64> = (0..n)
                    .map(|_| kind(next()))
                    .filter(|v| v.is_finite())
                    .collect();
                let mut reference = Partials::default();
                let overflow = values.iter().any(|&v| reference.add(v).is_some());
                let expected = if overflow {
                    f64::NAN
                } else {
                    reference.value()
                };
                let got = sum(&values);
                assert!(
                    overflow
                        || got.to_bits() == expected.to_bits()
                        || (got == 0.0 && expected == 0.0),
                    "kind {k}, {n} values: {got} != {expected}"
                );
            }
        }
    }

    #[test]
    fn values_read_back_give_the_same_sum() {
        let mut s = ExactSum::default();
        [1e20, 3.5, -1e-7, f64::INFINITY]
            .iter()
            .for_each(|&v| s.add(v));
        let mut back = ExactSum::default();
        s.values().for_each(|v| back.add(v));
        assert_eq!(back.value(), s.value());
        assert_eq!(ExactSum::default().values().count(), 0);
    }
}
