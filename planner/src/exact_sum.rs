//! Exact sums of `DOUBLE`s, so that SUM and AVG give the same bits however the rows were
//! split, ordered or pre-aggregated (parallelism, batch size, two-phase aggregation).
//!
//! A [`ExactSum`] keeps Shewchuk's non-overlapping partials (as Python's `math.fsum` does):
//! their exact total is the exact sum of every value added, and [`ExactSum::value`] rounds it
//! once, to nearest. Different orders of addition leave different partials, but the same exact
//! total, so the same rounded result. Infinities and NaN are summed apart (their sum does not
//! depend on order either). The one order-dependent case left is an intermediate overflow (two
//! finite partials summing past `f64::MAX`), which gives an infinity.
//!
//! Sensor readings keep two or three partials, held inline (no allocation per group).

use smallvec::SmallVec;

/// Partials held without allocating.
const INLINE: usize = 4;

/// The exact sum of the values added so far.
#[derive(Debug, Clone, Default)]
pub struct ExactSum {
    /// Non-overlapping, finite, by increasing magnitude.
    partials: SmallVec<[f64; INLINE]>,
    /// The sum of the infinities and NaNs added (0 when none).
    special: f64,
}

impl ExactSum {
    /// Add `x` exactly.
    #[inline]
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            self.special += x;
            return;
        }
        let p = &mut self.partials;
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
            true => p.push(x),
            // Intermediate overflow: the sum is past the largest DOUBLE.
            false => self.special += x,
        }
    }

    /// Add every value `other` holds.
    pub fn merge(&mut self, other: &ExactSum) {
        for &x in other.terms() {
            self.add(x);
        }
        if other.special != 0.0 {
            self.add(other.special);
        }
    }

    /// The exact sum rounded to the nearest DOUBLE (ties to even).
    pub fn value(&self) -> f64 {
        if self.special != 0.0 {
            return self.special; // an infinity, or NaN (which is != 0 too)
        }
        let p = &self.partials;
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

    /// The finite terms whose exact sum this is (the special sum apart).
    pub fn terms(&self) -> &[f64] {
        &self.partials
    }

    /// Values whose sum is this one: the terms, then the special sum if there is one. A state
    /// written this way is read back by adding each value.
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let special = (self.special != 0.0).then_some(self.special);
        self.partials.iter().copied().chain(special)
    }

    /// Heap bytes beyond the struct (partials spilled past the inline ones).
    pub fn heap_size(&self) -> usize {
        match self.partials.spilled() {
            true => self.partials.capacity() * size_of::<f64>(),
            false => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ExactSum;

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
                total.merge(&part);
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
