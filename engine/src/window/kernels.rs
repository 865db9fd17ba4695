//! The window-assignment kernel: which tumble, hop or cumulate windows a row belongs to, and when
//! a window fires.
//!
//! This module owns the pure arithmetic behind the window operators (no state, no I/O), so the
//! rules of `docs/semantics.md` (half-open windows aligned to the epoch plus an offset, Euclidean
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
use weir_planner::window_spec::format_duration;
use weir_planner::{WindowKind, WindowSpec};

/// How the time column is interpreted: its unit and, for `TIMESTAMP_LTZ`, the session time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeContext {
    /// The unit of the time column's values.
    pub unit: TimeUnit,
    /// The session time zone for a `TIMESTAMP_LTZ` column; `None` when wall-clock value == instant.
    pub tz: Option<Tz>,
}

/// A window kind with its durations in the time column's unit (all strictly positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// Fixed-size, non-overlapping windows.
    Tumble {
        /// Window length (column unit).
        size: i64,
    },
    /// Fixed-size windows starting every `slide`; they overlap when `size > slide`.
    Hop {
        /// Distance between window starts (column unit).
        slide: i64,
        /// Window length (column unit).
        size: i64,
    },
    /// `max_size` is a multiple of `step`.
    Cumulate {
        /// Step by which each window's end grows (column unit).
        step: i64,
        /// Length of the largest window, after which a new series starts (column unit).
        max_size: i64,
    },
    /// Not assigned by [`assign_windows`]; carried so the session operator gets the gap converted.
    Session {
        /// Inactivity that closes a session (column unit).
        gap: i64,
    },
}

/// A [`WindowSpec`] converted to the time column's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitSpec {
    /// The window kind and its durations.
    pub kind: UnitKind,
    /// Alignment offset, normalised into `[0, period)` where the period is the tumble size, the hop
    /// slide or the cumulate max_size (0 for sessions).
    pub offset: i64,
}

/// Result of assigning one batch: row i of the output is input row `rows[i]` placed in window
/// `[starts[i], ends[i])` (wall-clock values in the column unit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignments {
    /// Input row index of each output row.
    pub rows: Vec<u32>,
    /// Window start of each output row.
    pub starts: Vec<i64>,
    /// Window end (exclusive) of each output row.
    pub ends: Vec<i64>,
    /// Rows dropped because every window they belong to has fired (or, for a row in no window at
    /// all, because its time is at or below the watermark), each with the last window it missed.
    pub late: Vec<MissedWindow>,
}

/// A late row and the last window it belonged to: `[start, end)` in the column's unit, both
/// `None` for a row that belongs to no window (a gap between hopping windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissedWindow {
    /// Input row index.
    pub row: u32,
    /// Wall-clock start of the window.
    pub start: Option<i64>,
    /// Wall-clock end (exclusive) of the window.
    pub end: Option<i64>,
}

impl MissedWindow {
    fn new(row: usize, window: Option<(i64, i64)>) -> MissedWindow {
        MissedWindow {
            row: row as u32, // the batch length was checked to fit in u32
            start: window.map(|w| w.0),
            end: window.map(|w| w.1),
        }
    }
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
            late: Vec::new(),
        }
    }

    #[inline]
    fn push_late(&mut self, row: usize, window: Option<(i64, i64)>) {
        self.late.push(MissedWindow::new(row, window));
    }

    /// Number of late rows.
    pub fn late_rows(&self) -> usize {
        self.late.len()
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

    /// True when no row was placed in a window.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

fn values_of<T: ArrowPrimitiveType<Native = i64>>(ts: &dyn Array) -> Option<&[i64]> {
    ts.as_primitive_opt::<T>().map(|a| &a.values()[..])
}

/// The raw values of a timestamp column in `unit`.
pub(crate) fn timestamp_values(ts: &dyn Array, unit: TimeUnit) -> Result<&[i64], String> {
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
/// `fire_time_ns(end) > watermark`. A row none of whose windows is open is counted in `late`
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
                out.push_late(i, Some((start, end)));
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
        let last = first.saturating_add(slide.saturating_mul(count - 1));
        let window = (count > 0).then(|| (last, last.saturating_add(size)));
        out.push_late(i, window);
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
        let window = (first <= last).then(|| (start, start.saturating_add(max_size)));
        out.push_late(i, window);
    }
}

#[cfg(test)]
#[path = "kernels_tests.rs"]
mod tests;
