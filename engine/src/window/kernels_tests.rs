//! Unit tests of the window-assignment kernels.
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
    assert_eq!(a.late_rows(), 0);
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
    assert_eq!(a.late_rows(), 0);
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
        a.late_rows(),
        0,
        "a row in no window above the watermark is not late"
    );
    let a = run(&[90 * S], &spec, &UTC_MS, 90 * S * 1_000_000);
    assert!(a.is_empty());
    assert_eq!(
        a.late_rows(),
        1,
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
    assert_eq!(a.late_rows(), 0);
    let a = run(&t, &spec, &UTC_MS, fire_time_ns(5 * MIN, &UTC_MS));
    assert!(a.is_empty());
    assert_eq!(a.late_rows(), 1);
}

#[test]
fn tumble_late_rows() {
    let spec = ms_spec(tumble(NS_MIN), 0);
    let fire = fire_time_ns(MIN, &UTC_MS);
    assert_eq!(fire, (MIN - 1) * 1_000_000);
    let a = run(&[10 * S], &spec, &UTC_MS, fire - 1);
    assert_eq!(
        (a.len(), a.late_rows()),
        (1, 0),
        "window still open below end - 1"
    );
    let a = run(&[10 * S], &spec, &UTC_MS, fire);
    assert_eq!(
        (a.len(), a.late_rows()),
        (0, 1),
        "watermark at end - 1 fired the window"
    );
    // A row behind the watermark whose window is still open is not late.
    let a = run(&[10 * S], &spec, &UTC_MS, 30 * S * 1_000_000);
    assert_eq!((a.len(), a.late_rows()), (1, 0));
}

#[test]
fn per_row_watermarks() {
    let spec = ms_spec(tumble(NS_MIN), 0);
    let fire = fire_time_ns(MIN, &UTC_MS);
    let ts = TimestampMillisecondArray::from(vec![10 * S; 5]);
    let wms = Int64Array::from(vec![Some(i64::MIN), Some(fire), None, Some(fire - 1), None]);
    let a = assign_windows(&ts, &spec, &UTC_MS, Some(&wms), 0).unwrap();
    assert_eq!(a.rows, vec![0, 2, 3, 4]);
    assert_eq!(a.late_rows(), 1);
    // The operator watermark applies to every row: max(row watermark, op watermark).
    let a = assign_windows(&ts, &spec, &UTC_MS, Some(&wms), fire).unwrap();
    assert_eq!((a.len(), a.late_rows()), (0, 5));
}

#[test]
fn hop_partially_fired_goes_only_to_open_windows() {
    let spec = ms_spec(hop(2 * NS_MIN, 5 * NS_MIN), 0);
    let t = [2 * MIN + 30 * S];
    let a = run(&t, &spec, &UTC_MS, fire_time_ns(5 * MIN, &UTC_MS));
    assert_eq!(triples(&a), vec![(0, 2 * MIN, 7 * MIN)]);
    assert_eq!(a.late_rows(), 0);
    let a = run(&t, &spec, &UTC_MS, fire_time_ns(5 * MIN, &UTC_MS) - 1);
    assert_eq!(windows_of(&a, 0), vec![(0, 5 * MIN), (2 * MIN, 7 * MIN)]);
    let a = run(&t, &spec, &UTC_MS, fire_time_ns(7 * MIN, &UTC_MS));
    assert_eq!((a.len(), a.late_rows()), (0, 1));
}

#[test]
fn null_timestamps_are_skipped_not_late() {
    let spec = ms_spec(tumble(NS_MIN), 0);
    let ts = TimestampMillisecondArray::from(vec![Some(5), None, Some(MIN + 5), None]);
    let a = assign_windows(&ts, &spec, &UTC_MS, None, i64::MAX).unwrap();
    assert_eq!((a.len(), a.late_rows()), (0, 2));
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
    assert_eq!((a.len(), a.late_rows()), (4, 0));
    let a = run(&instants[..4], &spec, &tc, fire);
    assert_eq!((a.len(), a.late_rows()), (0, 4));
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
        assert_eq!(a.late_rows(), late, "{spec:?}");
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
        late += part.late_rows();
    }
    assert_eq!(triples(&all), joined);
    assert_eq!(all.late_rows(), late);
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
