//! Building datagen columns: a small deterministic PRNG and one Arrow array per field and batch.
//!
//! Values are produced column by column into plain vectors and wrapped (or cast) into the
//! column's Arrow type once per batch, so generation costs no allocation per row except the text
//! of string values. Each field has its own generator seeded from its name and position, so a
//! column's values do not change when other columns are added, and a row's values are a
//! function of its row number alone (each row draws from its own point of the field's stream),
//! so they do not depend on how many subtasks share the generation or how rows are batched.

use std::sync::Arc;

use datafusion::arrow::array::{
    make_array, Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringBuilder,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::error::ArrowError;

use super::spec::{FieldKind, FieldSpec};

/// SplitMix64: tiny, fast and good enough for test data.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `min..=max` (any `i64` range, without modulo bias worth noticing).
    pub(crate) fn in_range(&mut self, min: i64, max: i64) -> i64 {
        let span = (i128::from(max) - i128::from(min) + 1) as u128;
        let offset = (u128::from(self.next_u64()) * span) >> 64;
        (i128::from(min) + offset as i128) as i64
    }
}

/// FNV-1a of a field name, to seed its generator.
fn seed_of(name: &str, index: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Generates the values of one column.
pub(crate) struct FieldGen {
    spec: FieldSpec,
    seed: u64,
}

/// Draws a row may take from its own stretch of the field's stream (a string of up to 4,096
/// characters takes 256).
const DRAWS_PER_ROW: u64 = 256;

impl FieldGen {
    pub(crate) fn new(spec: FieldSpec, index: usize) -> Self {
        let seed = seed_of(&spec.name, index);
        FieldGen { spec, seed }
    }

    /// The generator of row `row`'s values (`salt` apart for a second use, the NULLs).
    fn rng_at(&self, row: u64, salt: u64) -> Rng {
        let step = row
            .wrapping_mul(DRAWS_PER_ROW)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Rng::new((self.seed ^ salt).wrapping_add(step))
    }

    /// One generator per row of `first_row .. first_row + n`.
    fn rows(&self, first_row: u64, n: usize, salt: u64) -> impl Iterator<Item = Rng> + '_ {
        (0..n as u64).map(move |i| self.rng_at(first_row + i, salt))
    }

    /// The next `n` values; `first_row` is the 0-based number of the first row (for
    /// sequences) and `now_ns` the moment of generation (for timestamps).
    pub(crate) fn column(
        &mut self,
        first_row: u64,
        n: usize,
        now_ns: i64,
    ) -> Result<ArrayRef, ArrowError> {
        let values: ArrayRef = match self.spec.kind.clone() {
            FieldKind::Sequence { start, .. } => self.sequence(start, first_row, n),
            FieldKind::RandomInt { min, max } => Arc::new(Int64Array::from_iter_values(
                self.rows(first_row, n, 0).map(|mut r| r.in_range(min, max)),
            )),
            FieldKind::RandomFloat { min, max } => Arc::new(Float64Array::from_iter_values(
                self.rows(first_row, n, 0).map(|mut r| {
                    let u = r.next_f64();
                    min * (1.0 - u) + max * u
                }),
            )),
            FieldKind::RandomBool => Arc::new(
                self.rows(first_row, n, 0)
                    .map(|mut r| Some(r.next_u64() & 1 == 1))
                    .collect::<BooleanArray>(),
            ),
            FieldKind::RandomString { length } => self.strings(length, first_row, n),
            FieldKind::RandomTimestamp { max_past_ms } => {
                self.timestamps(max_past_ms, first_row, n, now_ns)
            }
        };
        let values = if values.data_type() == &self.spec.data_type {
            values
        } else {
            cast(&values, &self.spec.data_type)?
        };
        self.with_nulls(values, first_row)
    }

    fn sequence(&mut self, start: i64, first_row: u64, n: usize) -> ArrayRef {
        let first = start.saturating_add(first_row as i64);
        let numbers = (0..n as i64).map(move |i| first.saturating_add(i));
        if matches!(
            self.spec.data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            let mut b = StringBuilder::with_capacity(n, n * 8);
            for v in numbers {
                b.append_value(v.to_string());
            }
            Arc::new(b.finish())
        } else {
            Arc::new(Int64Array::from_iter_values(numbers))
        }
    }

    /// Random lowercase hexadecimal text, as Flink's datagen makes.
    fn strings(&mut self, length: usize, first_row: u64, n: usize) -> ArrayRef {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut b = StringBuilder::with_capacity(n, n * length);
        let mut text = String::with_capacity(length);
        for mut rng in self.rows(first_row, n, 0) {
            text.clear();
            while text.len() < length {
                let mut bits = rng.next_u64();
                for _ in 0..16.min(length - text.len()) {
                    text.push(HEX[(bits & 15) as usize] as char);
                    bits >>= 4;
                }
            }
            b.append_value(&text);
        }
        Arc::new(b.finish())
    }

    /// Times from `now - max_past` to `now`, in the column's unit.
    fn timestamps(&mut self, max_past_ms: i64, first_row: u64, n: usize, now_ns: i64) -> ArrayRef {
        let per_unit: i64 = match self.spec.data_type {
            DataType::Timestamp(TimeUnit::Second, _) => 1_000_000_000,
            DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000_000,
            DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000,
            _ => 1,
        };
        let now = now_ns.div_euclid(per_unit);
        let past = max_past_ms.saturating_mul(1_000_000) / per_unit;
        let values = self.rows(first_row, n, 0).map(|mut rng| {
            if past > 0 {
                now - rng.in_range(0, past)
            } else {
                now
            }
        });
        Arc::new(Int64Array::from_iter_values(values))
    }

    /// Replace a `null-rate` share of the values by NULL.
    fn with_nulls(&mut self, values: ArrayRef, first_row: u64) -> Result<ArrayRef, ArrowError> {
        let rate = self.spec.null_rate;
        if rate <= 0.0 {
            return Ok(values);
        }
        const NULLS: u64 = 0x6E75_6C6C; // "null": the NULL draws' own stream
        let valid: Vec<bool> = self
            .rows(first_row, values.len(), NULLS)
            .map(|mut r| r.next_f64() >= rate)
            .collect();
        let nulls = NullBuffer::from(valid);
        let data = values.to_data().into_builder().nulls(Some(nulls)).build()?;
        Ok(make_array(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_ranges_are_inclusive_and_deterministic() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<i64> = (0..1000).map(|_| a.in_range(-2, 2)).collect();
        let ys: Vec<i64> = (0..1000).map(|_| b.in_range(-2, 2)).collect();
        assert_eq!(xs, ys);
        for v in -2..=2 {
            assert!(xs.contains(&v), "{v} never drawn");
        }
        assert!(xs.iter().all(|v| (-2..=2).contains(v)));
        let full: Vec<i64> = (0..100).map(|_| a.in_range(i64::MIN, i64::MAX)).collect();
        assert!(full.iter().any(|v| *v < 0) && full.iter().any(|v| *v > 0));
        assert!((0..1000)
            .map(|_| a.next_f64())
            .all(|u| (0.0..1.0).contains(&u)));
    }
}
