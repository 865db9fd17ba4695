//! The window-assignment kernel: which tumble, hop or cumulate windows a row belongs to, and when
//! a window fires.
//!
//! This module owns the pure arithmetic behind the window operators (no state, no I/O), so the
//! rules of `semantics.md` (half-open windows aligned to the epoch plus an offset, Euclidean
//! alignment before 1970, local-midnight alignment for `TIMESTAMP_LTZ`, firing at `end - 1` unit,
//! per-row watermarks) live in one place and are tested exhaustively here.
//!
//! Conventions:
//! - Time values are `i64` in the time column's unit. Window durations are converted from the
//!   planner's nanoseconds to that unit exactly ([`UnitSpec::new`] rejects what does not divide).
//! - Without a time zone, wall-clock value == instant. With one (`TIMESTAMP_LTZ`), rows are placed
//!   on local wall-clock values and window bounds are wall-clock values.
//! - A window `[start, end)` fires at the *last instant whose wall-clock time is before `end`*
//!   ([`window_time`]); [`fire_time_ns`] is that instant in nanoseconds. Without a zone this is
//!   `end - 1` unit. When `end` falls in a DST gap it is one unit before the gap's end; when it is
//!   ambiguous (a DST fold) it is one unit before the *later* of the two instants, unless `end` is
//!   exactly the start of the fold (then the earlier one): rows of the repeated hour are in the
//!   window and must not be declared late.
//! - Session windows are not assigned here; the session operator only uses [`UnitSpec`] to convert
//!   the gap and [`session_bounds`] for the window a single row opens.

use chrono::{DateTime, MappedLocalTime, Offset, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};
use datafusion::arrow::array::{Array, ArrowPrimitiveType, AsArray, Int64Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{
    DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use weir_planner::window::format_duration;
use weir_planner::{WindowKind, WindowSpec};

/// How the time column is interpreted: its unit and, for `TIMESTAMP_LTZ`, the session time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeContext {
    pub unit: TimeUnit,
    pub tz: Option<Tz>,
}

/// A window kind with its durations in the time column's unit (all strictly positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Tumble {
        size: i64,
    },
    Hop {
        slide: i64,
        size: i64,
    },
    /// `max_size` is a multiple of `step`.
    Cumulate {
        step: i64,
        max_size: i64,
    },
    /// Not assigned by [`assign_windows`]; carried so the session operator gets the gap converted.
    Session {
        gap: i64,
    },
}

/// A [`WindowSpec`] converted to the time column's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitSpec {
    pub kind: UnitKind,
    /// Alignment offset, normalised into `[0, period)` where the period is the tumble size, the hop
    /// slide or the cumulate max_size (0 for sessions).
    pub offset: i64,
}

/// Result of assigning one batch: row i of the output is input row `rows[i]` placed in window
/// `[starts[i], ends[i])` (wall-clock values in the column unit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignments {
    pub rows: Vec<u32>,
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    /// Rows dropped because every window they belong to has fired (or, for a row in no window at
    /// all, because its time is at or below the watermark).
    pub late_rows: usize,
}

/// Upper bound on the output capacity reserved up front (beyond one slot per row).
const MAX_RESERVE: usize = 1 << 20;

impl UnitSpec {
    /// Convert `spec` to `unit`; every duration must be a whole number of units.
    pub fn new(spec: &WindowSpec, unit: TimeUnit) -> Result<UnitSpec, String> {
        let d = |what: &str, ns: i64| positive_duration(what, ns, unit);
        let kind = match spec.kind {
            WindowKind::Tumble { size } => UnitKind::Tumble {
                size: d("window size", size)?,
            },
            WindowKind::Hop { slide, size } => UnitKind::Hop {
                slide: d("window slide", slide)?,
                size: d("window size", size)?,
            },
            WindowKind::Cumulate {
                step: step_ns,
                max_size: max_ns,
            } => {
                let (step, max_size) = (d("window step", step_ns)?, d("window max_size", max_ns)?);
                if max_size % step != 0 {
                    return Err(format!(
                        "CUMULATE max_size {} is not a multiple of step {}",
                        format_duration(max_ns),
                        format_duration(step_ns)
                    ));
                }
                UnitKind::Cumulate { step, max_size }
            }
            WindowKind::Session { gap } => UnitKind::Session {
                gap: d("session gap", gap)?,
            },
        };
        let offset = duration_in_unit("window offset", spec.offset, unit)?;
        let offset = period(kind).map_or(0, |p| offset.rem_euclid(p));
        Ok(UnitSpec { kind, offset })
    }

    /// The session gap in the column unit, for a session spec.
    pub fn session_gap(&self) -> Option<i64> {
        match self.kind {
            UnitKind::Session { gap } => Some(gap),
            _ => None,
        }
    }

    /// The most windows one row can belong to.
    pub fn max_windows_per_row(&self) -> usize {
        let n = match self.kind {
            UnitKind::Tumble { .. } | UnitKind::Session { .. } => 1,
            UnitKind::Hop { slide, size } => (size - 1) / slide + 1,
            UnitKind::Cumulate { step, max_size } => max_size / step,
        };
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// Distance between consecutive window ends (used to spread the fire-time cache).
    fn end_spacing(&self) -> i64 {
        match self.kind {
            UnitKind::Tumble { size } => size,
            UnitKind::Hop { slide, .. } => slide,
            UnitKind::Cumulate { step, .. } => step,
            UnitKind::Session { gap } => gap,
        }
    }
}

/// The period window starts are aligned to (`None` for sessions).
fn period(kind: UnitKind) -> Option<i64> {
    match kind {
        UnitKind::Tumble { size } => Some(size),
        UnitKind::Hop { slide, .. } => Some(slide),
        UnitKind::Cumulate { max_size, .. } => Some(max_size),
        UnitKind::Session { .. } => None,
    }
}

fn unit_ns(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

fn units_per_second(unit: TimeUnit) -> i64 {
    1_000_000_000 / unit_ns(unit)
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "seconds",
        TimeUnit::Millisecond => "milliseconds",
        TimeUnit::Microsecond => "microseconds",
        TimeUnit::Nanosecond => "nanoseconds",
    }
}

/// `ns` in `unit`, or an error naming `what` if it is not a whole number of units.
fn duration_in_unit(what: &str, ns: i64, unit: TimeUnit) -> Result<i64, String> {
    let per = unit_ns(unit);
    if ns % per != 0 {
        return Err(format!(
            "{what} {} is not a whole number of {}",
            format_duration(ns),
            unit_name(unit)
        ));
    }
    Ok(ns / per)
}

fn positive_duration(what: &str, ns: i64, unit: TimeUnit) -> Result<i64, String> {
    if ns <= 0 {
        return Err(format!(
            "{what} must be positive, got {}",
            format_duration(ns)
        ));
    }
    duration_in_unit(what, ns, unit)
}

/// Convert a value in `unit` to nanoseconds (saturating).
pub fn to_ns(v: i64, unit: TimeUnit) -> i64 {
    v.saturating_mul(unit_ns(unit))
}

/// The window a single session row opens: `[wall, wall + gap)` (saturating).
pub fn session_bounds(wall: i64, gap: i64) -> (i64, i64) {
    (wall, wall.saturating_add(gap))
}

/// The UTC offset (seconds) of `tz` at the instant `secs` (clamped to chrono's range).
fn utc_offset_secs(tz: Tz, secs: i64) -> i64 {
    let lo = DateTime::<Utc>::MIN_UTC.timestamp();
    let hi = DateTime::<Utc>::MAX_UTC.timestamp();
    match DateTime::from_timestamp(secs.clamp(lo, hi), 0) {
        Some(utc) => i64::from(
            tz.offset_from_utc_datetime(&utc.naive_utc())
                .fix()
                .local_minus_utc(),
        ),
        None => 0,
    }
}

/// The wall-clock value of the instant `v` (both in `tc.unit`); `v` itself without a time zone.
pub fn to_wall(v: i64, tc: &TimeContext) -> i64 {
    match tc.tz {
        None => v,
        Some(tz) => {
            let per_sec = units_per_second(tc.unit);
            let offset = utc_offset_secs(tz, v.div_euclid(per_sec));
            v.saturating_add(offset.saturating_mul(per_sec))
        }
    }
}

/// `window_time` for TVF output: the last instant (in the column unit) whose wall-clock time is
/// before `end_wall`, i.e. `instant(end) - 1` unit (see the module docs for DST gaps and folds).
pub fn window_time(end_wall: i64, tc: &TimeContext) -> i64 {
    let Some(tz) = tc.tz else {
        return end_wall.saturating_sub(1);
    };
    let per_sec = units_per_second(tc.unit);
    let (secs, sub) = (end_wall.div_euclid(per_sec), end_wall.rem_euclid(per_sec));
    let Some(local) = DateTime::from_timestamp(secs, 0).map(|d| d.naive_utc()) else {
        return end_wall.saturating_sub(1); // beyond chrono's range: no zone rules there
    };
    let in_unit = |s: i64, sub: i64| s.saturating_mul(per_sec).saturating_add(sub);
    match tz.from_local_datetime(&local) {
        MappedLocalTime::Single(d) => in_unit(d.timestamp(), sub).saturating_sub(1),
        MappedLocalTime::Ambiguous(earlier, later) => {
            let before_later = in_unit(later.timestamp(), sub).saturating_sub(1);
            if to_wall(before_later, tc) < end_wall {
                before_later
            } else {
                in_unit(earlier.timestamp(), sub).saturating_sub(1)
            }
        }
        MappedLocalTime::None => match GapInfo::new(&local, &tz).and_then(|g| g.end) {
            Some(gap_end) => in_unit(gap_end.timestamp(), 0).saturating_sub(1),
            None => end_wall.saturating_sub(1),
        },
    }
}

/// The watermark (ns) at which the window ending at `end_wall` fires: [`window_time`] in ns.
pub fn fire_time_ns(end_wall: i64, tc: &TimeContext) -> i64 {
    to_ns(window_time(end_wall, tc), tc.unit)
}

/// Wall-clock conversion and firing, specialised per zone-ness so the UTC path does no tz work.
trait Clock {
    fn wall(&mut self, v: i64) -> i64;
    fn fire_ns(&mut self, end_wall: i64) -> i64;
}

struct UtcClock {
    unit: TimeUnit,
}

impl Clock for UtcClock {
    #[inline]
    fn wall(&mut self, v: i64) -> i64 {
        v
    }

    #[inline]
    fn fire_ns(&mut self, end_wall: i64) -> i64 {
        to_ns(end_wall.saturating_sub(1), self.unit)
    }
}

/// Zone clock with two caches: the UTC offset of the current UTC hour (used when the offset is the
/// same at both ends of the hour; tzdb never has two transitions within an hour), and a small
/// direct-mapped table of recent fire times keyed by window end.
struct TzClock {
    tc: TimeContext,
    tz: Tz,
    per_sec: i64,
    hour: i64,
    hour_offset: Option<i64>,
    spacing: i64,
    fired: [Option<(i64, i64)>; 8],
}

impl TzClock {
    fn new(tc: TimeContext, tz: Tz, spacing: i64) -> TzClock {
        let mut clock = TzClock {
            tc,
            tz,
            per_sec: units_per_second(tc.unit),
            hour: 0,
            hour_offset: None,
            spacing: spacing.max(1),
            fired: [None; 8],
        };
        clock.load_hour(0);
        clock
    }

    fn load_hour(&mut self, hour: i64) {
        let first = hour.saturating_mul(3600);
        let a = utc_offset_secs(self.tz, first);
        let b = utc_offset_secs(self.tz, first.saturating_add(3599));
        self.hour = hour;
        self.hour_offset = (a == b).then_some(a);
    }
}

impl Clock for TzClock {
    #[inline]
    fn wall(&mut self, v: i64) -> i64 {
        let secs = v.div_euclid(self.per_sec);
        let hour = secs.div_euclid(3600);
        if hour != self.hour {
            self.load_hour(hour);
        }
        let offset = match self.hour_offset {
            Some(o) => o,
            None => utc_offset_secs(self.tz, secs),
        };
        v.saturating_add(offset.saturating_mul(self.per_sec))
    }

    #[inline]
    fn fire_ns(&mut self, end_wall: i64) -> i64 {
        let slot = (end_wall.div_euclid(self.spacing) & 7) as usize;
        if let Some((end, fire)) = self.fired[slot] {
            if end == end_wall {
                return fire;
            }
        }
        let fire = fire_time_ns(end_wall, &self.tc);
        self.fired[slot] = Some((end_wall, fire));
        fire
    }
}

/// The largest `start <= w` with `start ≡ off (mod period)`, for `0 <= off < period`
/// (Euclidean, so values before 1970 work; saturates at `i64::MIN`).
#[inline]
fn align(w: i64, off: i64, period: i64) -> i64 {
    match w.checked_sub(off) {
        Some(d) => w.saturating_sub(d.rem_euclid(period)),
        None => {
            let w128 = i128::from(w);
            let start = w128 - (w128 - i128::from(off)).rem_euclid(i128::from(period));
            start.max(i128::from(i64::MIN)) as i64
        }
    }
}

/// The hop windows containing `w`: `(first start, count)`; starts ascend by `slide`.
#[inline]
fn hop_windows(w: i64, off: i64, slide: i64, size: i64) -> (i64, i64) {
    let last = align(w, off, slide);
    let into = w.saturating_sub(last);
    if size <= into {
        return (last, 0); // size < slide: w falls in a gap between windows
    }
    let count = (size - into - 1) / slide + 1;
    (
        last.saturating_sub((count - 1).saturating_mul(slide)),
        count,
    )
}

/// The batch being assigned: time values, their validity and the per-row watermarks.
struct Batch<'a> {
    values: &'a [i64],
    nulls: Option<&'a NullBuffer>,
    wm_values: Option<&'a [i64]>,
    wm_nulls: Option<&'a NullBuffer>,
    op_wm: i64,
    unit: TimeUnit,
}

impl Batch<'_> {
    /// The watermark in force before row `i`.
    #[inline]
    fn wm(&self, i: usize) -> i64 {
        match self.wm_values {
            Some(v) if !self.wm_nulls.is_some_and(|n| n.is_null(i)) => v[i].max(self.op_wm),
            _ => self.op_wm,
        }
    }

    /// Call `f(row, value)` for every non-null time value.
    #[inline]
    fn for_each_valid(&self, mut f: impl FnMut(usize, i64)) {
        match self.nulls.filter(|n| n.null_count() > 0) {
            None => self.values.iter().enumerate().for_each(|(i, &t)| f(i, t)),
            Some(nulls) => {
                for (i, &t) in self.values.iter().enumerate() {
                    if nulls.is_valid(i) {
                        f(i, t);
                    }
                }
            }
        }
    }

    /// Book-keeping for a row that produced no output.
    #[inline]
    fn is_late_without_output(&self, i: usize, t: i64, had_windows: bool) -> bool {
        had_windows || to_ns(t, self.unit) <= self.wm(i)
    }
}

impl Assignments {
    fn with_capacity(n: usize) -> Assignments {
        Assignments {
            rows: Vec::with_capacity(n),
            starts: Vec::with_capacity(n),
            ends: Vec::with_capacity(n),
            late_rows: 0,
        }
    }

    #[inline]
    fn push(&mut self, row: usize, start: i64, end: i64) {
        self.rows.push(row as u32); // the batch length was checked to fit in u32
        self.starts.push(start);
        self.ends.push(end);
    }

    /// Number of (row, window) pairs.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

fn values_of<T: ArrowPrimitiveType<Native = i64>>(ts: &dyn Array) -> Option<&[i64]> {
    ts.as_primitive_opt::<T>().map(|a| &a.values()[..])
}

/// The raw values of a timestamp column in `unit`.
fn timestamp_values(ts: &dyn Array, unit: TimeUnit) -> Result<&[i64], String> {
    let values = match (ts.data_type(), unit) {
        (DataType::Timestamp(u, _), _) if *u != unit => None,
        (_, TimeUnit::Second) => values_of::<TimestampSecondType>(ts),
        (_, TimeUnit::Millisecond) => values_of::<TimestampMillisecondType>(ts),
        (_, TimeUnit::Microsecond) => values_of::<TimestampMicrosecondType>(ts),
        (_, TimeUnit::Nanosecond) => values_of::<TimestampNanosecondType>(ts),
    };
    values.ok_or_else(|| {
        format!(
            "window time column must be a timestamp in {}, got {}",
            unit_name(unit),
            ts.data_type()
        )
    })
}

/// Assign rows to their windows that are still open. `ts` is the time column (a PrimitiveArray of
/// any Timestamp type matching `tc.unit`); NULL timestamps are skipped (not counted as late).
/// The watermark (ns) in force before row i is `max(row_watermarks[i], op_wm)`, or `op_wm` when
/// there are no row watermarks or that entry is NULL. A window is open iff
/// `fire_time_ns(end) > watermark`. A row none of whose windows is open is counted in `late_rows`
/// and produces no output; a row in no window at all (hop with size < slide) is late iff its time
/// is at or below the watermark. Output is in row order, windows of a row by ascending end.
pub fn assign_windows(
    ts: &dyn Array,
    spec: &UnitSpec,
    tc: &TimeContext,
    row_watermarks: Option<&Int64Array>,
    op_wm: i64,
) -> Result<Assignments, String> {
    if let UnitKind::Session { .. } = spec.kind {
        return Err("SESSION windows are assigned by the session operator".to_string());
    }
    let values = timestamp_values(ts, tc.unit)?;
    if u32::try_from(values.len()).is_err() {
        return Err(format!("batch of {} rows is too large", values.len()));
    }
    if let Some(wms) = row_watermarks.filter(|w| w.len() != values.len()) {
        return Err(format!(
            "{} row watermarks for a batch of {} rows",
            wms.len(),
            values.len()
        ));
    }
    let batch = Batch {
        values,
        nulls: ts.nulls(),
        wm_values: row_watermarks.map(|w| &w.values()[..]),
        wm_nulls: row_watermarks.and_then(|w| w.nulls()),
        op_wm,
        unit: tc.unit,
    };
    Ok(match tc.tz {
        None => assign_with(&batch, spec, &mut UtcClock { unit: tc.unit }),
        Some(tz) => assign_with(&batch, spec, &mut TzClock::new(*tc, tz, spec.end_spacing())),
    })
}

fn assign_with<C: Clock>(b: &Batch, spec: &UnitSpec, clock: &mut C) -> Assignments {
    let len = b.values.len();
    let reserve = len
        .saturating_mul(spec.max_windows_per_row())
        .min(len.max(MAX_RESERVE));
    let mut out = Assignments::with_capacity(reserve);
    let off = spec.offset;
    match spec.kind {
        UnitKind::Tumble { size } => b.for_each_valid(|i, t| {
            let start = align(clock.wall(t), off, size);
            let end = start.saturating_add(size);
            if clock.fire_ns(end) > b.wm(i) {
                out.push(i, start, end);
            } else {
                out.late_rows += 1;
            }
        }),
        UnitKind::Hop { slide, size } => {
            b.for_each_valid(|i, t| hop_row(b, clock, &mut out, (i, t), (off, slide, size)))
        }
        UnitKind::Cumulate { step, max_size } => {
            b.for_each_valid(|i, t| cumulate_row(b, clock, &mut out, (i, t), (off, step, max_size)))
        }
        UnitKind::Session { .. } => {}
    }
    out
}

#[inline]
fn hop_row<C: Clock>(
    b: &Batch,
    clock: &mut C,
    out: &mut Assignments,
    (i, t): (usize, i64),
    (off, slide, size): (i64, i64, i64),
) {
    let (first, count) = hop_windows(clock.wall(t), off, slide, size);
    let wm = b.wm(i);
    let before = out.len();
    let mut start = first;
    for _ in 0..count {
        let end = start.saturating_add(size);
        if clock.fire_ns(end) > wm {
            out.push(i, start, end);
        }
        start = start.saturating_add(slide);
    }
    if out.len() == before && b.is_late_without_output(i, t, count > 0) {
        out.late_rows += 1;
    }
}

#[inline]
fn cumulate_row<C: Clock>(
    b: &Batch,
    clock: &mut C,
    out: &mut Assignments,
    (i, t): (usize, i64),
    (off, step, max_size): (i64, i64, i64),
) {
    let wall = clock.wall(t);
    let start = align(wall, off, max_size);
    let wm = b.wm(i);
    let before = out.len();
    let (first, last) = (wall.saturating_sub(start) / step + 1, max_size / step);
    for k in first..=last {
        let end = start.saturating_add(step.saturating_mul(k));
        if clock.fire_ns(end) > wm {
            out.push(i, start, end);
        }
    }
    if out.len() == before && b.is_late_without_output(i, t, first <= last) {
        out.late_rows += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use datafusion::arrow::array::{
        TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
        TimestampSecondArray,
    };

    const NS_S: i64 = 1_000_000_000;
    const NS_MIN: i64 = 60 * NS_S;
    const NS_H: i64 = 60 * NS_MIN;
    const NS_D: i64 = 24 * NS_H;
    const S: i64 = 1_000; // one second in ms
    const MIN: i64 = 60 * S; // one minute in ms
    const H: i64 = 60 * MIN; // one hour in ms
    const UTC_MS: TimeContext = TimeContext {
        unit: TimeUnit::Millisecond,
        tz: None,
    };
    const NO_WM: i64 = i64::MIN;

    fn tumble(size: i64) -> WindowKind {
        WindowKind::Tumble { size }
    }

    fn hop(slide: i64, size: i64) -> WindowKind {
        WindowKind::Hop { slide, size }
    }

    fn cumulate(step: i64, max_size: i64) -> WindowKind {
        WindowKind::Cumulate { step, max_size }
    }

    fn spec_in(kind: WindowKind, offset: i64, unit: TimeUnit) -> Result<UnitSpec, String> {
        UnitSpec::new(&WindowSpec { kind, offset }, unit)
    }

    fn ms_spec(kind: WindowKind, offset: i64) -> UnitSpec {
        spec_in(kind, offset, TimeUnit::Millisecond).unwrap()
    }

    fn ny() -> TimeContext {
        TimeContext {
            unit: TimeUnit::Millisecond,
            tz: Some(chrono_tz::America::New_York),
        }
    }

    /// A UTC date-time (or a wall-clock value read as UTC) in ms.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|date| date.and_hms_opt(h, mi, s))
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    fn run(values: &[i64], spec: &UnitSpec, tc: &TimeContext, op_wm: i64) -> Assignments {
        let ts = TimestampMillisecondArray::from(values.to_vec());
        assign_windows(&ts, spec, tc, None, op_wm).unwrap()
    }

    fn triples(a: &Assignments) -> Vec<(u32, i64, i64)> {
        (0..a.len())
            .map(|i| (a.rows[i], a.starts[i], a.ends[i]))
            .collect()
    }

    /// The windows of row `row` as (start, end) pairs.
    fn windows_of(a: &Assignments, row: u32) -> Vec<(i64, i64)> {
        triples(a)
            .into_iter()
            .filter(|t| t.0 == row)
            .map(|t| (t.1, t.2))
            .collect()
    }

    #[test]
    fn tumble_row_at_end_goes_to_next_window() {
        let spec = ms_spec(tumble(NS_MIN), 0);
        let a = run(&[MIN - 1, MIN, 0, 2 * MIN], &spec, &UTC_MS, NO_WM);
        let expected = vec![
            (0, 0, MIN),
            (1, MIN, 2 * MIN),
            (2, 0, MIN),
            (3, 2 * MIN, 3 * MIN),
        ];
        assert_eq!(triples(&a), expected);
        assert_eq!(a.late_rows, 0);
    }

    #[test]
    fn tumble_before_1970() {
        let spec = ms_spec(tumble(NS_MIN), 0);
        let a = run(&[-1, -MIN, -MIN - 1, -2 * MIN + 1], &spec, &UTC_MS, NO_WM);
        let expected = vec![
            (0, -MIN, 0),
            (1, -MIN, 0),
            (2, -2 * MIN, -MIN),
            (3, -2 * MIN, -MIN),
        ];
        assert_eq!(triples(&a), expected);
    }

    #[test]
    fn tumble_with_offset() {
        // 1 h windows offset by 15 min: 00:10 belongs to [23:15 the day before, 00:15).
        let spec = ms_spec(tumble(NS_H), 15 * NS_MIN);
        assert_eq!(spec.offset, 15 * MIN);
        let day = at(2024, 5, 1, 0, 0, 0);
        let a = run(&[day + 10 * MIN, day + 15 * MIN], &spec, &UTC_MS, NO_WM);
        let expected = vec![
            (0, at(2024, 4, 30, 23, 15, 0), at(2024, 5, 1, 0, 15, 0)),
            (1, at(2024, 5, 1, 0, 15, 0), at(2024, 5, 1, 1, 15, 0)),
        ];
        assert_eq!(triples(&a), expected);
    }

    #[test]
    fn tumble_with_negative_offset() {
        // Offset -15 min == +45 min: windows [hh:45, hh+1:45).
        let spec = ms_spec(tumble(NS_H), -15 * NS_MIN);
        assert_eq!(spec.offset, 45 * MIN);
        let a = run(&[10 * MIN, 45 * MIN, -16 * MIN], &spec, &UTC_MS, NO_WM);
        let expected = vec![
            (0, -15 * MIN, 45 * MIN),
            (1, 45 * MIN, 105 * MIN),
            (2, -75 * MIN, -15 * MIN),
        ];
        assert_eq!(triples(&a), expected);
    }

    #[test]
    fn offset_larger_than_period_is_normalised() {
        assert_eq!(ms_spec(tumble(NS_H), 75 * NS_MIN).offset, 15 * MIN);
        assert_eq!(ms_spec(hop(2 * NS_MIN, 5 * NS_MIN), -NS_MIN).offset, MIN);
        assert_eq!(
            ms_spec(cumulate(NS_MIN, 5 * NS_MIN), 6 * NS_MIN).offset,
            MIN
        );
    }

    #[test]
    fn hop_size_not_a_multiple_of_slide() {
        let spec = ms_spec(hop(2 * NS_MIN, 5 * NS_MIN), 0);
        assert_eq!(spec.max_windows_per_row(), 3);
        let values = [0, MIN, 2 * MIN + 30 * S, -1, 4 * MIN];
        let a = run(&values, &spec, &UTC_MS, NO_WM);
        let w = |s: i64| (s * MIN, s * MIN + 5 * MIN);
        assert_eq!(windows_of(&a, 0), vec![w(-4), w(-2), w(0)]);
        assert_eq!(windows_of(&a, 1), vec![w(-2), w(0)]);
        assert_eq!(windows_of(&a, 2), vec![w(-2), w(0), w(2)]);
        assert_eq!(windows_of(&a, 3), vec![w(-4), w(-2)]);
        assert_eq!(windows_of(&a, 4), vec![w(0), w(2), w(4)]);
        assert_eq!(a.late_rows, 0);
    }

    #[test]
    fn hop_with_offset() {
        // 2 min windows every minute, aligned at :30.
        let spec = ms_spec(hop(NS_MIN, 2 * NS_MIN), 30 * NS_S);
        let a = run(&[0, 30 * S], &spec, &UTC_MS, NO_WM);
        assert_eq!(
            windows_of(&a, 0),
            vec![(-90 * S, 30 * S), (-30 * S, 90 * S)]
        );
        assert_eq!(
            windows_of(&a, 1),
            vec![(-30 * S, 90 * S), (30 * S, 150 * S)]
        );
    }

    /// All windows containing t, by enumerating starts `off + k * slide` (i128, no shortcuts).
    fn brute_hop(t: i64, off: i64, slide: i64, size: i64) -> Vec<(i64, i64)> {
        let (t, off, slide, size) = (t as i128, off as i128, slide as i128, size as i128);
        let k0 = (t - size - off) / slide - 2;
        let k1 = (t - off) / slide + 2;
        (k0..=k1)
            .map(|k| off + k * slide)
            .filter(|&s| s <= t && t < s + size)
            .map(|s| (s as i64, (s + size) as i64))
            .collect()
    }

    #[test]
    fn hop_matches_brute_force() {
        let cases = [
            (2 * MIN, 5 * MIN, 0),
            (2 * MIN, 5 * MIN, 30 * S),
            (MIN, 3 * MIN, -20 * S),
            (3 * MIN, 3 * MIN, 0),
            (2 * MIN, MIN, 10 * S),
            (7 * S, 60 * S, 3 * S),
        ];
        let values: Vec<i64> = (-2000..2000).map(|i| i * 7 * S + i % 3).collect();
        for (slide, size, offset) in cases {
            let spec = ms_spec(hop(slide * 1_000_000, size * 1_000_000), offset * 1_000_000);
            let a = run(&values, &spec, &UTC_MS, NO_WM);
            let expected: Vec<(u32, i64, i64)> = (values.iter().enumerate())
                .flat_map(|(row, &t)| {
                    let ws = brute_hop(t, spec.offset, slide, size);
                    ws.into_iter().map(move |(s, e)| (row as u32, s, e))
                })
                .collect();
            assert_eq!(triples(&a), expected, "slide={slide} size={size}");
        }
    }

    #[test]
    fn hop_smaller_than_slide_leaves_gaps() {
        let spec = ms_spec(hop(2 * NS_MIN, NS_MIN), 0);
        let a = run(&[30 * S, 90 * S], &spec, &UTC_MS, NO_WM);
        assert_eq!(triples(&a), vec![(0, 0, MIN)]);
        assert_eq!(
            a.late_rows, 0,
            "a row in no window above the watermark is not late"
        );
        let a = run(&[90 * S], &spec, &UTC_MS, 90 * S * 1_000_000);
        assert!(a.is_empty());
        assert_eq!(
            a.late_rows, 1,
            "a row in no window at the watermark is late"
        );
    }

    #[test]
    fn cumulate_windows() {
        let spec = ms_spec(cumulate(NS_MIN, 5 * NS_MIN), 0);
        assert_eq!(spec.max_windows_per_row(), 5);
        let values = [2 * MIN + 30 * S, 3 * MIN, 5 * MIN - 1, 5 * MIN, 0];
        let a = run(&values, &spec, &UTC_MS, NO_WM);
        let upto = |p: i64, ends: &[i64]| -> Vec<(i64, i64)> {
            ends.iter().map(|&e| (p * MIN, e * MIN)).collect()
        };
        assert_eq!(windows_of(&a, 0), upto(0, &[3, 4, 5]));
        assert_eq!(windows_of(&a, 1), upto(0, &[4, 5]));
        assert_eq!(windows_of(&a, 2), upto(0, &[5]));
        assert_eq!(windows_of(&a, 3), upto(5, &[6, 7, 8, 9, 10]));
        assert_eq!(windows_of(&a, 4), upto(0, &[1, 2, 3, 4, 5]));
    }

    #[test]
    fn cumulate_before_1970_and_with_offset() {
        let a = run(
            &[-30 * S],
            &ms_spec(cumulate(NS_MIN, 5 * NS_MIN), 0),
            &UTC_MS,
            NO_WM,
        );
        assert_eq!(triples(&a), vec![(0, -5 * MIN, 0)]);
        let spec = ms_spec(cumulate(NS_MIN, 5 * NS_MIN), NS_MIN);
        let a = run(&[-30 * S], &spec, &UTC_MS, NO_WM);
        assert_eq!(triples(&a), vec![(0, -4 * MIN, 0), (0, -4 * MIN, MIN)]);
    }

    #[test]
    fn cumulate_partially_fired() {
        let spec = ms_spec(cumulate(NS_MIN, 5 * NS_MIN), 0);
        let t = [2 * MIN + 30 * S];
        let wm = fire_time_ns(3 * MIN, &UTC_MS);
        let a = run(&t, &spec, &UTC_MS, wm);
        assert_eq!(triples(&a), vec![(0, 0, 4 * MIN), (0, 0, 5 * MIN)]);
        assert_eq!(a.late_rows, 0);
        let a = run(&t, &spec, &UTC_MS, fire_time_ns(5 * MIN, &UTC_MS));
        assert!(a.is_empty());
        assert_eq!(a.late_rows, 1);
    }

    #[test]
    fn tumble_late_rows() {
        let spec = ms_spec(tumble(NS_MIN), 0);
        let fire = fire_time_ns(MIN, &UTC_MS);
        assert_eq!(fire, (MIN - 1) * 1_000_000);
        let a = run(&[10 * S], &spec, &UTC_MS, fire - 1);
        assert_eq!(
            (a.len(), a.late_rows),
            (1, 0),
            "window still open below end - 1"
        );
        let a = run(&[10 * S], &spec, &UTC_MS, fire);
        assert_eq!(
            (a.len(), a.late_rows),
            (0, 1),
            "watermark at end - 1 fired the window"
        );
        // A row behind the watermark whose window is still open is not late.
        let a = run(&[10 * S], &spec, &UTC_MS, 30 * S * 1_000_000);
        assert_eq!((a.len(), a.late_rows), (1, 0));
    }

    #[test]
    fn per_row_watermarks() {
        let spec = ms_spec(tumble(NS_MIN), 0);
        let fire = fire_time_ns(MIN, &UTC_MS);
        let ts = TimestampMillisecondArray::from(vec![10 * S; 5]);
        let wms = Int64Array::from(vec![Some(i64::MIN), Some(fire), None, Some(fire - 1), None]);
        let a = assign_windows(&ts, &spec, &UTC_MS, Some(&wms), 0).unwrap();
        assert_eq!(a.rows, vec![0, 2, 3, 4]);
        assert_eq!(a.late_rows, 1);
        // The operator watermark applies to every row: max(row watermark, op watermark).
        let a = assign_windows(&ts, &spec, &UTC_MS, Some(&wms), fire).unwrap();
        assert_eq!((a.len(), a.late_rows), (0, 5));
    }

    #[test]
    fn hop_partially_fired_goes_only_to_open_windows() {
        let spec = ms_spec(hop(2 * NS_MIN, 5 * NS_MIN), 0);
        let t = [2 * MIN + 30 * S];
        let a = run(&t, &spec, &UTC_MS, fire_time_ns(5 * MIN, &UTC_MS));
        assert_eq!(triples(&a), vec![(0, 2 * MIN, 7 * MIN)]);
        assert_eq!(a.late_rows, 0);
        let a = run(&t, &spec, &UTC_MS, fire_time_ns(5 * MIN, &UTC_MS) - 1);
        assert_eq!(windows_of(&a, 0), vec![(0, 5 * MIN), (2 * MIN, 7 * MIN)]);
        let a = run(&t, &spec, &UTC_MS, fire_time_ns(7 * MIN, &UTC_MS));
        assert_eq!((a.len(), a.late_rows), (0, 1));
    }

    #[test]
    fn null_timestamps_are_skipped_not_late() {
        let spec = ms_spec(tumble(NS_MIN), 0);
        let ts = TimestampMillisecondArray::from(vec![Some(5), None, Some(MIN + 5), None]);
        let a = assign_windows(&ts, &spec, &UTC_MS, None, i64::MAX).unwrap();
        assert_eq!((a.len(), a.late_rows), (0, 2));
        let a = assign_windows(&ts, &spec, &UTC_MS, None, NO_WM).unwrap();
        assert_eq!(triples(&a), vec![(0, 0, MIN), (2, MIN, 2 * MIN)]);
    }

    #[test]
    fn units_second_milli_micro_nano() {
        let units = [
            (TimeUnit::Second, 1),
            (TimeUnit::Millisecond, 1_000),
            (TimeUnit::Microsecond, 1_000_000),
            (TimeUnit::Nanosecond, 1_000_000_000),
        ];
        for (unit, per_sec) in units {
            let spec = spec_in(tumble(NS_MIN), 15 * NS_S, unit).unwrap();
            assert_eq!(spec.kind, UnitKind::Tumble { size: 60 * per_sec });
            let tc = TimeContext { unit, tz: None };
            let a = assign_in_tc(90 * per_sec, &spec, &tc);
            assert_eq!(triples(&a), vec![(0, 75 * per_sec, 135 * per_sec)]);
            let unit_in_ns = NS_S / per_sec;
            assert_eq!(fire_time_ns(135 * per_sec, &tc), 135 * NS_S - unit_in_ns);
            assert_eq!(window_time(135 * per_sec, &tc), 135 * per_sec - 1);
            assert_eq!(to_ns(3 * per_sec, unit), 3 * NS_S);
        }
    }

    #[test]
    fn non_whole_durations_are_rejected() {
        let err = spec_in(tumble(1_500_000), 0, TimeUnit::Second).unwrap_err();
        assert_eq!(err, "window size 1500 us is not a whole number of seconds");
        let err = spec_in(tumble(1_500_000), 0, TimeUnit::Millisecond).unwrap_err();
        assert_eq!(
            err,
            "window size 1500 us is not a whole number of milliseconds"
        );
        let ok = spec_in(tumble(1_500_000), 0, TimeUnit::Microsecond).unwrap();
        assert_eq!(ok.kind, UnitKind::Tumble { size: 1500 });
        let err = spec_in(tumble(NS_MIN), 500_000_000, TimeUnit::Second).unwrap_err();
        assert_eq!(err, "window offset 500 ms is not a whole number of seconds");
        let err = spec_in(hop(1_500, NS_S), 0, TimeUnit::Microsecond).unwrap_err();
        assert_eq!(
            err,
            "window slide 1500 ns is not a whole number of microseconds"
        );
        let err = spec_in(cumulate(NS_S, 2_500_000_000), 0, TimeUnit::Second).unwrap_err();
        assert_eq!(
            err,
            "window max_size 2500 ms is not a whole number of seconds"
        );
        let err = spec_in(WindowKind::Session { gap: 10 }, 0, TimeUnit::Second).unwrap_err();
        assert_eq!(err, "session gap 10 ns is not a whole number of seconds");
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let err = spec_in(tumble(0), 0, TimeUnit::Millisecond).unwrap_err();
        assert_eq!(err, "window size must be positive, got 0 s");
        assert!(spec_in(hop(-NS_S, NS_S), 0, TimeUnit::Millisecond).is_err());
        let err = spec_in(cumulate(2 * NS_MIN, 5 * NS_MIN), 0, TimeUnit::Second).unwrap_err();
        assert_eq!(
            err,
            "CUMULATE max_size 5 min is not a multiple of step 2 min"
        );
    }

    #[test]
    fn sessions_are_not_assigned_here() {
        let spec = spec_in(
            WindowKind::Session { gap: 5 * NS_S },
            0,
            TimeUnit::Millisecond,
        );
        let spec = spec.unwrap();
        assert_eq!(spec.session_gap(), Some(5 * S));
        assert_eq!(ms_spec(tumble(NS_S), 0).session_gap(), None);
        assert_eq!(session_bounds(10, 5 * S), (10, 10 + 5 * S));
        assert_eq!(session_bounds(i64::MAX - 1, 5), (i64::MAX - 1, i64::MAX));
        let ts = TimestampMillisecondArray::from(vec![1]);
        assert!(assign_windows(&ts, &spec, &UTC_MS, None, NO_WM).is_err());
    }

    #[test]
    fn wrong_inputs_are_errors() {
        let spec = ms_spec(tumble(NS_MIN), 0);
        let err = assign_windows(&Int64Array::from(vec![1]), &spec, &UTC_MS, None, 0);
        assert!(err
            .unwrap_err()
            .contains("must be a timestamp in milliseconds"));
        let secs = TimestampSecondArray::from(vec![1]);
        assert!(assign_windows(&secs, &spec, &UTC_MS, None, 0).is_err());
        let ts = TimestampMillisecondArray::from(vec![1, 2]);
        let wms = Int64Array::from(vec![0]);
        let err = assign_windows(&ts, &spec, &UTC_MS, Some(&wms), 0).unwrap_err();
        assert_eq!(err, "1 row watermarks for a batch of 2 rows");
        // A zone-tagged column is accepted (LTZ columns carry their zone in the type).
        let ltz = TimestampMillisecondArray::from(vec![1]).with_timezone("UTC");
        assert_eq!(
            assign_windows(&ltz, &spec, &UTC_MS, None, 0).unwrap().len(),
            1
        );
    }

    #[test]
    fn dst_day_in_new_york() {
        // 2024-03-10 is 23 hours long in New York (02:00 EST -> 03:00 EDT at 07:00Z).
        let spec = ms_spec(tumble(NS_D), 0);
        let tc = ny();
        let day_start = at(2024, 3, 10, 0, 0, 0); // wall values
        let day_end = at(2024, 3, 11, 0, 0, 0);
        let instants = [
            at(2024, 3, 10, 5, 0, 0),     // 00:00 EST
            at(2024, 3, 10, 7, 0, 0) - 1, // 01:59:59.999 EST
            at(2024, 3, 10, 7, 0, 0),     // 03:00 EDT
            at(2024, 3, 11, 4, 0, 0) - 1, // 23:59:59.999 EDT
            at(2024, 3, 11, 4, 0, 0),     // next day 00:00 EDT
            at(2024, 3, 10, 5, 0, 0) - 1, // previous day 23:59:59.999 EST
        ];
        let a = run(&instants, &spec, &tc, NO_WM);
        for row in 0..4 {
            assert_eq!(windows_of(&a, row), vec![(day_start, day_end)], "row {row}");
        }
        assert_eq!(windows_of(&a, 4), vec![(day_end, at(2024, 3, 12, 0, 0, 0))]);
        assert_eq!(
            windows_of(&a, 5),
            vec![(at(2024, 3, 9, 0, 0, 0), day_start)]
        );
        let fire = fire_time_ns(day_end, &tc);
        assert_eq!(fire, (at(2024, 3, 11, 4, 0, 0) - 1) * 1_000_000);
        assert_eq!(window_time(day_end, &tc), at(2024, 3, 11, 4, 0, 0) - 1);
        assert_eq!(fire - fire_time_ns(day_start, &tc), 23 * NS_H);
        // The window is open until the watermark reaches its fire time.
        let a = run(&instants[..4], &spec, &tc, fire - 1);
        assert_eq!((a.len(), a.late_rows), (4, 0));
        let a = run(&instants[..4], &spec, &tc, fire);
        assert_eq!((a.len(), a.late_rows), (0, 4));
    }

    #[test]
    fn dst_fold_in_new_york() {
        // 2024-11-03: 02:00 EDT -> 01:00 EST at 06:00Z; walls 01:00..02:00 happen twice.
        let tc = ny();
        let wall = |h, m| at(2024, 11, 3, h, m, 0);
        let utc = |h, m| at(2024, 11, 3, h, m, 0);
        // An end inside the fold fires after its second occurrence ...
        assert_eq!(window_time(wall(1, 30), &tc), utc(6, 30) - 1);
        // ... an end at the very start of the fold after its first ...
        assert_eq!(window_time(wall(1, 0), &tc), utc(5, 0) - 1);
        // ... and an end after the fold is unambiguous.
        assert_eq!(window_time(wall(2, 0), &tc), utc(7, 0) - 1);
        // A 25 hour day.
        let day = window_time(at(2024, 11, 4, 0, 0, 0), &tc) - window_time(wall(0, 0), &tc);
        assert_eq!(day, 25 * H);
        // A row of the second pass (01:10 EST) still reaches [01:00, 01:30).
        let spec = ms_spec(tumble(30 * NS_MIN), 0);
        let a = run(&[utc(6, 10)], &spec, &tc, utc(5, 45) * 1_000_000);
        assert_eq!(triples(&a), vec![(0, wall(1, 0), wall(1, 30))]);
    }

    #[test]
    fn dst_gap_in_new_york() {
        // 2024-03-10: walls 02:00..03:00 do not exist; the first instant after them is 07:00Z.
        let tc = ny();
        let gap_end = at(2024, 3, 10, 7, 0, 0);
        assert_eq!(window_time(at(2024, 3, 10, 2, 0, 0), &tc), gap_end - 1);
        assert_eq!(window_time(at(2024, 3, 10, 2, 30, 0), &tc), gap_end - 1);
        assert_eq!(window_time(at(2024, 3, 10, 3, 0, 0), &tc), gap_end - 1);
        assert_eq!(window_time(at(2024, 3, 10, 3, 0, 1), &tc), gap_end + 999);
        assert_eq!(
            fire_time_ns(at(2024, 3, 10, 2, 30, 0), &tc),
            (gap_end - 1) * 1_000_000
        );
    }

    #[test]
    fn to_wall_conversions() {
        let tc = ny();
        assert_eq!(
            to_wall(at(2024, 1, 15, 12, 0, 0), &tc),
            at(2024, 1, 15, 7, 0, 0)
        );
        assert_eq!(
            to_wall(at(2024, 7, 15, 12, 0, 0), &tc),
            at(2024, 7, 15, 8, 0, 0)
        );
        assert_eq!(to_wall(-1, &tc), -1 - 5 * H);
        assert_eq!(to_wall(12_345, &UTC_MS), 12_345);
        let kolkata = TimeContext {
            unit: TimeUnit::Second,
            tz: Some(chrono_tz::Asia::Kolkata),
        };
        assert_eq!(to_wall(0, &kolkata), 5 * 3600 + 1800);
    }

    /// Reference assignment for one row without any caching or shortcuts.
    fn reference_row(t: i64, spec: &UnitSpec, tc: &TimeContext, wm: i64) -> Vec<(i64, i64)> {
        let w = to_wall(t, tc);
        let all: Vec<(i64, i64)> = match spec.kind {
            UnitKind::Tumble { size } => brute_hop(w, spec.offset, size, size),
            UnitKind::Hop { slide, size } => brute_hop(w, spec.offset, slide, size),
            UnitKind::Cumulate { step, max_size } => {
                let p = brute_hop(w, spec.offset, max_size, max_size)[0].0;
                (1..=max_size / step)
                    .map(|i| (p, p + i * step))
                    .filter(|&(_, e)| e > w)
                    .collect()
            }
            UnitKind::Session { .. } => unreachable!(),
        };
        let open = |e: i64| fire_time_ns(e, tc) > wm;
        all.into_iter().filter(|&(_, e)| open(e)).collect()
    }

    fn check_against_reference(values: &[Option<i64>], wms: &[Option<i64>], tc: &TimeContext) {
        let specs = [
            ms_spec(tumble(NS_MIN), 0),
            ms_spec(tumble(NS_H), -15 * NS_MIN),
            ms_spec(tumble(NS_D), 0),
            ms_spec(hop(2 * NS_MIN, 5 * NS_MIN), 0),
            ms_spec(hop(15 * NS_MIN, NS_H), 7 * NS_MIN),
            ms_spec(hop(2 * NS_MIN, NS_MIN), 0),
            ms_spec(cumulate(NS_MIN, 5 * NS_MIN), 30 * NS_S),
        ];
        let ts = TimestampMillisecondArray::from(values.to_vec());
        let wm_array = Int64Array::from(wms.to_vec());
        let op_wm = -24 * NS_H;
        for spec in specs {
            let a = assign_windows(&ts, &spec, tc, Some(&wm_array), op_wm).unwrap();
            let (mut expected, mut late) = (Vec::new(), 0);
            for (row, t) in values.iter().enumerate() {
                let Some(t) = *t else { continue };
                let wm = wms[row].map_or(op_wm, |w| w.max(op_wm));
                let ws = reference_row(t, &spec, tc, wm);
                let in_no_window = reference_row(t, &spec, tc, i64::MIN).is_empty();
                if ws.is_empty() && (!in_no_window || to_ns(t, tc.unit) <= wm) {
                    late += 1;
                }
                expected.extend(ws.into_iter().map(|(s, e)| (row as u32, s, e)));
            }
            assert_eq!(triples(&a), expected, "{spec:?}");
            assert_eq!(a.late_rows, late, "{spec:?}");
        }
    }

    /// Deterministic pseudo-random numbers (no dependency on a rand crate).
    fn lcg(seed: &mut u64) -> i64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) as i64
    }

    /// `n` ms timestamps around `base` (within ~±3 days), some NULL, with per-row watermarks that
    /// trail a running maximum (some NULL).
    fn random_batch(n: usize, base: i64, seed: u64) -> (Vec<Option<i64>>, Vec<Option<i64>>) {
        let mut seed = seed;
        let (mut values, mut wms, mut max_seen) = (Vec::new(), Vec::new(), i64::MIN);
        for _ in 0..n {
            let t = base + lcg(&mut seed) % (6 * 24 * H) - 3 * 24 * H;
            let is_null = lcg(&mut seed) % 50 == 0;
            let wm = to_ns(max_seen.saturating_sub(20 * MIN), TimeUnit::Millisecond);
            wms.push((lcg(&mut seed) % 10 != 0).then_some(wm));
            values.push((!is_null).then_some(t));
            max_seen = max_seen.max(if is_null { i64::MIN } else { t });
        }
        (values, wms)
    }

    #[test]
    fn large_batch_matches_naive_reference() {
        let (values, wms) = random_batch(10_000, 0, 42);
        check_against_reference(&values, &wms, &UTC_MS);
        let (values, wms) = random_batch(10_000, at(2024, 6, 1, 0, 0, 0), 7);
        check_against_reference(&values, &wms, &UTC_MS);
    }

    #[test]
    fn large_batch_with_time_zone_matches_naive_reference() {
        let (values, wms) = random_batch(10_000, at(2024, 3, 10, 7, 0, 0), 3);
        check_against_reference(&values, &wms, &ny());
    }

    #[test]
    fn offset_cache_is_exact_across_transitions() {
        let zones = [
            (chrono_tz::America::New_York, at(2024, 3, 10, 5, 0, 0)),
            (chrono_tz::America::New_York, at(2024, 11, 3, 4, 0, 0)),
            // Lord Howe moves by 30 minutes, at 15:30Z: not on a UTC hour.
            (chrono_tz::Australia::Lord_Howe, at(2024, 10, 5, 14, 0, 0)),
            (chrono_tz::Australia::Lord_Howe, at(2024, 4, 6, 13, 0, 0)),
        ];
        for (tz, from) in zones {
            let values: Vec<Option<i64>> = (0..4 * 360).map(|i| Some(from + i * 10 * S)).collect();
            let wms = vec![None; values.len()];
            let tc = TimeContext {
                unit: TimeUnit::Millisecond,
                tz: Some(tz),
            };
            check_against_reference(&values, &wms, &tc);
        }
    }

    #[test]
    fn splitting_a_batch_does_not_change_the_result() {
        let (values, wms) = random_batch(1_000, 0, 9);
        let spec = ms_spec(hop(2 * NS_MIN, 5 * NS_MIN), 0);
        let all = {
            let ts = TimestampMillisecondArray::from(values.clone());
            let wms = Int64Array::from(wms.clone());
            assign_windows(&ts, &spec, &UTC_MS, Some(&wms), 0).unwrap()
        };
        let (mut joined, mut late) = (Vec::new(), 0);
        for (lo, hi) in [(0, 333), (333, 334), (334, 1_000)] {
            let ts = TimestampMillisecondArray::from(values[lo..hi].to_vec());
            let w = Int64Array::from(wms[lo..hi].to_vec());
            let part = assign_windows(&ts, &spec, &UTC_MS, Some(&w), 0).unwrap();
            joined.extend(
                triples(&part)
                    .into_iter()
                    .map(|(r, s, e)| (r + lo as u32, s, e)),
            );
            late += part.late_rows;
        }
        assert_eq!(triples(&all), joined);
        assert_eq!(all.late_rows, late);
    }

    #[test]
    fn extreme_values_saturate_without_panicking() {
        let extremes = [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX];
        let kinds = [tumble(NS_D), hop(NS_H, NS_D), cumulate(NS_H, NS_D)];
        let units = [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ];
        for unit in units {
            for tz in [None, Some(chrono_tz::America::New_York)] {
                let tc = TimeContext { unit, tz };
                for kind in kinds {
                    let spec = spec_in(kind, 7 * NS_MIN, unit).unwrap();
                    for &v in &extremes {
                        assign_in_tc(v, &spec, &tc);
                        fire_time_ns(v, &tc);
                        window_time(v, &tc);
                        to_wall(v, &tc);
                    }
                }
            }
        }
        let secs = TimeContext {
            unit: TimeUnit::Second,
            tz: None,
        };
        assert_eq!(fire_time_ns(i64::MAX, &secs), i64::MAX);
        assert_eq!(fire_time_ns(i64::MIN, &secs), i64::MIN);
        assert_eq!(to_ns(-1 << 40, TimeUnit::Second), i64::MIN);
        // 1500-01-01 and 2300-01-01 in ms saturate in ns.
        assert_eq!(fire_time_ns(at(1500, 1, 1, 0, 0, 0), &UTC_MS), i64::MIN);
        assert_eq!(fire_time_ns(at(2300, 1, 1, 0, 0, 0), &ny()), i64::MAX);
    }

    fn assign_in_tc(v: i64, spec: &UnitSpec, tc: &TimeContext) -> Assignments {
        let ts: Box<dyn Array> = match tc.unit {
            TimeUnit::Second => Box::new(TimestampSecondArray::from(vec![v])),
            TimeUnit::Millisecond => Box::new(TimestampMillisecondArray::from(vec![v])),
            TimeUnit::Microsecond => Box::new(TimestampMicrosecondArray::from(vec![v])),
            TimeUnit::Nanosecond => Box::new(TimestampNanosecondArray::from(vec![v])),
        };
        assign_windows(ts.as_ref(), spec, tc, None, NO_WM).unwrap()
    }
}
