//! Window specifications shared by the planner and the engine's window operators.
//!
//! Durations are held in nanoseconds; operators convert them to the time column's unit, where
//! window arithmetic is exact.

use std::fmt;

/// The kind of window and its sizes (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size`.
    Tumble { size: i64 },
    /// Windows of `size` starting every `slide` (Flink: `HOP(ts, slide, size)`).
    Hop { slide: i64, size: i64 },
    /// Windows `[start, start + step * i)` within each `max_size` period.
    Cumulate { step: i64, max_size: i64 },
    /// Per key, rows closer than `gap` chain into one window `[first, last + gap)`.
    Session { gap: i64 },
}

/// A window kind plus the alignment offset (ns, may be negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    pub offset: i64,
}

impl WindowSpec {
    pub fn name(&self) -> &'static str {
        match self.kind {
            WindowKind::Tumble { .. } => "TUMBLE",
            WindowKind::Hop { .. } => "HOP",
            WindowKind::Cumulate { .. } => "CUMULATE",
            WindowKind::Session { .. } => "SESSION",
        }
    }

    pub fn is_session(&self) -> bool {
        matches!(self.kind, WindowKind::Session { .. })
    }
}

/// Render a nanosecond duration the way a user wrote it (`5 s`, `1 min`, `250 ms`).
pub fn format_duration(ns: i64) -> String {
    const UNITS: [(i64, &str); 7] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "min"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if ns == 0 {
        return "0 s".to_string();
    }
    for (unit, name) in UNITS {
        if ns % unit == 0 {
            return format!("{} {name}", ns / unit);
        }
    }
    format!("{ns} ns")
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = format_duration;
        match self.kind {
            WindowKind::Tumble { size } => write!(f, "TUMBLE(size={})", d(size))?,
            WindowKind::Hop { slide, size } => {
                write!(f, "HOP(slide={}, size={})", d(slide), d(size))?
            }
            WindowKind::Cumulate { step, max_size } => {
                write!(f, "CUMULATE(step={}, max_size={})", d(step), d(max_size))?
            }
            WindowKind::Session { gap } => write!(f, "SESSION(gap={})", d(gap))?,
        }
        if self.offset != 0 {
            write!(f, " offset={}", d(self.offset))?;
        }
        Ok(())
    }
}
