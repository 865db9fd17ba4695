//! Aggregate state that can take rows back out: COUNT, SUM, AVG, MIN, MAX and COUNT(DISTINCT)
//! for updating (non-windowed) aggregations.
//!
//! DataFusion's accumulators cannot be evaluated without being consumed, nor retract MIN/MAX in
//! any order, so these are Weir's own. Each keeps one slot per group and is updated a batch at a
//! time with a sign per row (+1 for `+I`/`+U`, -1 for `-U`/`-D`). MIN/MAX and DISTINCT keep a
//! count per value, with values in Arrow's row format (byte order = value order), so retracting
//! the current maximum falls back to the next one. On an append-only input MIN/MAX keep only the
//! current extreme.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array, Float64Array, Int64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use weir_planner::exact_sum::ExactSum;

use crate::error::{EngineError, Result};

/// Numbers summed exactly: integers and decimals as i128, DOUBLEs as exact sums (so the
/// result does not depend on the order rows arrive or are taken back in).
enum Sums {
    Int(Vec<i128>),
    Float(Vec<ExactSum>),
}

enum Kind {
    /// COUNT(x): rows whose arguments are all non-null.
    Count(Vec<i64>),
    /// SUM or AVG: the sum and the count of non-null values.
    Sum {
        avg: bool,
        sums: Sums,
        n: Vec<i64>,
        /// Scale of a decimal argument.
        scale: i8,
    },
    /// MIN/MAX on an append-only input: the current extreme.
    Extreme {
        max: bool,
        best: Vec<Option<Box<[u8]>>>,
    },
    /// MIN/MAX under retraction: a count per value.
    Ordered {
        max: bool,
        values: Vec<BTreeMap<Box<[u8]>, i64>>,
    },
    /// COUNT(DISTINCT ..): a count per value.
    Distinct(Vec<HashMap<Box<[u8]>, i64>>),
}

/// One aggregate's state over every group.
pub struct RetractAcc {
    kind: Kind,
    /// Row format of the arguments (MIN/MAX/DISTINCT).
    converter: Option<RowConverter>,
    out_type: DataType,
}

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::Internal(msg.into())
}

impl RetractAcc {
    /// State for `agg` over arguments of `arg_types`; `append_only` when the input never
    /// retracts. Errors for an aggregate without retracting state.
    pub fn new(
        agg: &AggregateFunctionExpr,
        arg_types: &[DataType],
        append_only: bool,
    ) -> Result<Self> {
        let name = agg.fun().name().to_ascii_lowercase();
        let out_type = agg.field().data_type().clone();
        let arg = arg_types.first().cloned().unwrap_or(DataType::Int64);
        let converter = || -> Result<Option<RowConverter>> {
            let f = arg_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect();
            Ok(Some(RowConverter::new(f)?))
        };
        let (kind, converter) = match name.as_str() {
            "count" if agg.is_distinct() => (Kind::Distinct(vec![]), converter()?),
            "count" => (Kind::Count(vec![]), None),
            "sum" | "avg" => {
                let (sums, scale) = match &arg {
                    DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                        (Sums::Float(vec![]), 0)
                    }
                    DataType::Decimal128(_, s) => (Sums::Int(vec![]), *s),
                    t if t.is_integer() => (Sums::Int(vec![]), 0),
                    t => return Err(bad(format!("{name} over {t} cannot be retracted"))),
                };
                let avg = name == "avg";
                let n = vec![];
                (
                    Kind::Sum {
                        avg,
                        sums,
                        n,
                        scale,
                    },
                    None,
                )
            }
            "min" | "max" if append_only => {
                let max = name == "max";
                (Kind::Extreme { max, best: vec![] }, converter()?)
            }
            "min" | "max" => {
                let max = name == "max";
                (
                    Kind::Ordered {
                        max,
                        values: vec![],
                    },
                    converter()?,
                )
            }
            other => return Err(bad(format!("{other}() has no retracting state"))),
        };
        Ok(Self {
            kind,
            converter,
            out_type,
        })
    }

    /// Approximate bytes of the state of every group (walks the per-value maps of MIN/MAX
    /// under retraction and COUNT DISTINCT).
    pub fn memory_size(&self) -> usize {
        use std::mem::size_of;
        // A map entry: its boxed value bytes (estimated), the box and the count, and overhead.
        const ENTRY: usize = 48;
        match &self.kind {
            Kind::Count(c) => c.capacity() * size_of::<i64>(),
            Kind::Sum { sums, n, .. } => {
                let sums = match sums {
                    Sums::Int(v) => v.capacity() * size_of::<i128>(),
                    // Without the rare spilled partials (no walk of every group).
                    Sums::Float(v) => v.capacity() * size_of::<ExactSum>(),
                };
                sums + n.capacity() * size_of::<i64>()
            }
            Kind::Extreme { best, .. } => {
                let values: usize = best.iter().flatten().map(|b| b.len()).sum();
                best.capacity() * size_of::<Option<Box<[u8]>>>() + values
            }
            Kind::Ordered { values, .. } => {
                let entries: usize = values.iter().map(|m| m.len()).sum();
                values.capacity() * size_of::<BTreeMap<Box<[u8]>, i64>>() + entries * ENTRY
            }
            Kind::Distinct(v) => {
                let entries: usize = v.iter().map(|m| m.capacity()).sum();
                v.capacity() * size_of::<HashMap<Box<[u8]>, i64>>() + entries * ENTRY
            }
        }
    }

    /// Make room for `n` groups.
    pub fn resize(&mut self, n: usize) {
        match &mut self.kind {
            Kind::Count(c) => c.resize(n, 0),
            Kind::Sum { sums, n: cnt, .. } => {
                cnt.resize(n, 0);
                match sums {
                    Sums::Int(v) => v.resize(n, 0),
                    Sums::Float(v) => v.resize_with(n, ExactSum::default),
                }
            }
            Kind::Extreme { best, .. } => best.resize(n, None),
            Kind::Ordered { values, .. } => values.resize_with(n, BTreeMap::new),
            Kind::Distinct(v) => v.resize_with(n, HashMap::new),
        }
    }

    /// Add (sign +1) or take back (sign -1) each row's arguments in its group.
    pub fn update(
        &mut self,
        args: &[ArrayRef],
        groups: &[usize],
        signs: &[i64],
        filter: Option<&BooleanArray>,
    ) -> Result<()> {
        let valid = |i: usize| {
            filter.is_none_or(|f| f.is_valid(i) && f.value(i)) && args.iter().all(|a| a.is_valid(i))
        };
        match &mut self.kind {
            Kind::Count(c) => {
                for (i, g) in groups.iter().enumerate() {
                    if valid(i) {
                        c[*g] += signs[i];
                    }
                }
            }
            Kind::Sum { sums, n, .. } => update_sums(sums, n, &args[0], groups, signs, &valid)?,
            Kind::Extreme { max, best } => {
                let rows = self
                    .converter
                    .as_ref()
                    .expect("converter")
                    .convert_columns(args)?;
                for (i, g) in groups.iter().enumerate() {
                    let v = rows.row(i);
                    let better = match &best[*g] {
                        None => true,
                        Some(b) if *max => v.as_ref() > &b[..],
                        Some(b) => v.as_ref() < &b[..],
                    };
                    if valid(i) && better {
                        best[*g] = Some(v.as_ref().into());
                    }
                }
            }
            Kind::Ordered { values, .. } => {
                count_rows(values, &self.converter, args, groups, signs, &valid)?
            }
            Kind::Distinct(values) => {
                count_rows(values, &self.converter, args, groups, signs, &valid)?
            }
        }
        Ok(())
    }

    /// The current values of `groups`, in that order.
    pub fn evaluate(&self, groups: &[usize]) -> Result<ArrayRef> {
        Ok(match &self.kind {
            Kind::Count(c) => Arc::new(Int64Array::from_iter_values(groups.iter().map(|g| c[*g]))),
            Kind::Distinct(v) => Arc::new(Int64Array::from_iter_values(
                groups.iter().map(|g| v[*g].len() as i64),
            )),
            Kind::Sum {
                avg,
                sums,
                n,
                scale,
            } => sum_values(*avg, sums, n, *scale, groups, &self.out_type)?,
            Kind::Extreme { best, .. } => {
                self.rows_to_array(groups.iter().map(|g| best[*g].as_deref()))?
            }
            Kind::Ordered { max, values } => self.rows_to_array(groups.iter().map(|g| {
                let m = &values[*g];
                let e = if *max {
                    m.last_key_value()
                } else {
                    m.first_key_value()
                };
                e.map(|(k, _)| &k[..])
            }))?,
        })
    }

    /// Values in row format back to an array; `None` is NULL.
    fn rows_to_array<'a>(&self, vals: impl Iterator<Item = Option<&'a [u8]>>) -> Result<ArrayRef> {
        let conv = self.converter.as_ref().expect("converter");
        let parser = conv.parser();
        let vals: Vec<Option<&[u8]>> = vals.collect();
        let mut rows = conv.empty_rows(vals.len(), 0);
        let mut nulls = Vec::with_capacity(vals.len());
        let placeholder =
            conv.convert_columns(&[datafusion::arrow::array::new_null_array(&self.out_type, 1)])?;
        for v in &vals {
            match v {
                Some(b) => rows.push(parser.parse(b)),
                None => rows.push(placeholder.row(0)),
            }
            nulls.push(v.is_some());
        }
        let col = conv.convert_rows(&rows)?.remove(0);
        let mask = BooleanArray::from(nulls);
        Ok(datafusion::arrow::compute::nullif(
            &col,
            &datafusion::arrow::compute::not(&mask)?,
        )?)
    }

    /// Keep only the groups where `keep` is true (state TTL).
    pub fn retain(&mut self, keep: &[bool]) {
        use super::key_index::retain_by as f;
        match &mut self.kind {
            Kind::Count(c) => f(c, keep),
            Kind::Sum { sums, n, .. } => {
                f(n, keep);
                match sums {
                    Sums::Int(v) => f(v, keep),
                    Sums::Float(v) => f(v, keep),
                }
            }
            Kind::Extreme { best, .. } => f(best, keep),
            Kind::Ordered { values, .. } => f(values, keep),
            Kind::Distinct(v) => f(v, keep),
        }
    }
}

/// Count each valid row's arguments (in row format) in its group's value map.
fn count_rows<M: CountMap>(
    values: &mut [M],
    converter: &Option<RowConverter>,
    args: &[ArrayRef],
    groups: &[usize],
    signs: &[i64],
    valid: &dyn Fn(usize) -> bool,
) -> Result<()> {
    let rows = converter
        .as_ref()
        .expect("converter")
        .convert_columns(args)?;
    for (i, g) in groups.iter().enumerate() {
        if valid(i) {
            values[*g].add(rows.row(i).as_ref(), signs[i]);
        }
    }
    Ok(())
}

/// A map from value (row bytes) to how many rows hold it.
trait CountMap {
    fn add(&mut self, k: &[u8], sign: i64);
}

/// The same counting for ordered (MIN/MAX) and hashed (DISTINCT) value maps.
macro_rules! count_map {
    ($map:ty) => {
        impl CountMap for $map {
            fn add(&mut self, k: &[u8], sign: i64) {
                match self.get_mut(k) {
                    Some(c) => {
                        *c += sign;
                        if *c <= 0 {
                            self.remove(k);
                        }
                    }
                    None if sign > 0 => {
                        self.insert(k.into(), sign);
                    }
                    None => {}
                }
            }
        }
    };
}

count_map!(BTreeMap<Box<[u8]>, i64>);
count_map!(HashMap<Box<[u8]>, i64>);

fn update_sums(
    sums: &mut Sums,
    n: &mut [i64],
    arg: &ArrayRef,
    groups: &[usize],
    signs: &[i64],
    valid: &dyn Fn(usize) -> bool,
) -> Result<()> {
    match sums {
        Sums::Float(v) => {
            let a = cast(arg, &DataType::Float64)?;
            let a = a.as_primitive::<Float64Type>();
            for (i, g) in groups.iter().enumerate() {
                if valid(i) {
                    v[*g].add(signs[i] as f64 * a.value(i));
                    n[*g] += signs[i];
                }
            }
        }
        Sums::Int(v) => {
            let raw: Vec<i128> = match arg.data_type() {
                DataType::Decimal128(_, _) => arg
                    .as_any()
                    .downcast_ref::<Decimal128Array>()
                    .ok_or_else(|| bad("decimal"))?
                    .values()
                    .to_vec(),
                _ => {
                    let a = cast(arg, &DataType::Int64)?;
                    a.as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .map(|x| *x as i128)
                        .collect()
                }
            };
            for (i, g) in groups.iter().enumerate() {
                if valid(i) {
                    v[*g] += signs[i] as i128 * raw[i];
                    n[*g] += signs[i];
                }
            }
        }
    }
    Ok(())
}

fn sum_values(
    avg: bool,
    sums: &Sums,
    n: &[i64],
    scale: i8,
    groups: &[usize],
    out: &DataType,
) -> Result<ArrayRef> {
    let some = |g: usize| n[g] > 0;
    Ok(match (sums, out) {
        (Sums::Float(v), _) => Arc::new(Float64Array::from_iter(groups.iter().map(|g| {
            some(*g).then(|| {
                let sum = v[*g].value();
                if avg {
                    sum / n[*g] as f64
                } else {
                    sum
                }
            })
        }))),
        (Sums::Int(v), DataType::Decimal128(p, s)) => {
            let shift = 10i128.pow((*s - scale).max(0) as u32);
            let vals = groups.iter().map(|g| {
                some(*g).then(|| {
                    if avg {
                        v[*g] * shift / n[*g] as i128
                    } else {
                        v[*g]
                    }
                })
            });
            Arc::new(Decimal128Array::from_iter(vals).with_precision_and_scale(*p, *s)?)
        }
        (Sums::Int(v), _) if avg => Arc::new(Float64Array::from_iter(
            groups
                .iter()
                .map(|g| some(*g).then(|| v[*g] as f64 / n[*g] as f64)),
        )),
        (Sums::Int(v), _) => Arc::new(Int64Array::from_iter(
            groups.iter().map(|g| some(*g).then_some(v[*g] as i64)),
        )),
    })
}

/// Per-group state as one binary value per group, for checkpoints.
impl RetractAcc {
    /// The state of groups `0..groups`, one binary value per group (for checkpoints).
    pub fn encode(&self, groups: usize) -> ArrayRef {
        let vals: Vec<Vec<u8>> = (0..groups).map(|g| self.encode_group(g)).collect();
        Arc::new(BinaryArray::from_iter_values(vals))
    }

    /// The state of group `g` as bytes (for checkpoints).
    pub(crate) fn encode_group(&self, g: usize) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.kind {
            Kind::Count(c) => out.extend(c[g].to_le_bytes()),
            Kind::Sum { sums, n, .. } => {
                out.extend(n[g].to_le_bytes());
                match sums {
                    Sums::Int(v) => out.extend(v[g].to_le_bytes()),
                    Sums::Float(v) => v[g].values().for_each(|x| out.extend(x.to_le_bytes())),
                }
            }
            Kind::Extreme { best, .. } => {
                if let Some(b) = &best[g] {
                    put_entry(&mut out, b, 1);
                }
            }
            Kind::Ordered { values, .. } => values[g]
                .iter()
                .for_each(|(k, c)| put_entry(&mut out, k, *c)),
            Kind::Distinct(v) => v[g].iter().for_each(|(k, c)| put_entry(&mut out, k, *c)),
        }
        out
    }

    /// Load state written by [`RetractAcc::encode`] into groups `0..`.
    pub fn decode(&mut self, col: &BinaryArray) -> Result<()> {
        self.resize(col.len());
        for g in 0..col.len() {
            self.decode_group(g, col.value(g))
                .ok_or_else(|| EngineError::State("corrupt aggregate state".into()))?;
        }
        Ok(())
    }

    /// Load group `g` from [`RetractAcc::encode_group`]'s bytes; `None` when they are corrupt.
    pub(crate) fn decode_group(&mut self, g: usize, b: &[u8]) -> Option<()> {
        let i64_at = |at: usize| Some(i64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
        match &mut self.kind {
            Kind::Count(c) => c[g] = i64_at(0)?,
            Kind::Sum { sums, n, .. } => {
                n[g] = i64_at(0)?;
                match sums {
                    Sums::Int(v) => v[g] = i128::from_le_bytes(b.get(8..24)?.try_into().ok()?),
                    Sums::Float(v) => v[g] = exact_sum(b.get(8..)?)?,
                }
            }
            Kind::Extreme { best, .. } => best[g] = entries(b)?.into_iter().next().map(|(k, _)| k),
            Kind::Ordered { values, .. } => values[g] = entries(b)?.into_iter().collect(),
            Kind::Distinct(v) => v[g] = entries(b)?.into_iter().collect(),
        }
        Some(())
    }
}

/// An exact sum from the DOUBLEs `b` holds (little-endian, 8 bytes each; a checkpoint from
/// before exact sums holds one, the rounded sum); `None` when `b` is not whole DOUBLEs.
fn exact_sum(b: &[u8]) -> Option<ExactSum> {
    let mut sum = ExactSum::default();
    if !b.len().is_multiple_of(8) {
        return None;
    }
    for x in b.chunks_exact(8) {
        sum.add(f64::from_le_bytes(x.try_into().ok()?));
    }
    Some(sum)
}

fn put_entry(out: &mut Vec<u8>, k: &[u8], count: i64) {
    out.extend((k.len() as u32).to_le_bytes());
    out.extend(k);
    out.extend(count.to_le_bytes());
}

fn entries(mut b: &[u8]) -> Option<Vec<(Box<[u8]>, i64)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let k: Box<[u8]> = b.get(4..4 + len)?.into();
        let c = i64::from_le_bytes(b.get(4 + len..12 + len)?.try_into().ok()?);
        out.push((k, c));
        b = &b[12 + len..];
    }
    Some(out)
}
