//! The materialised result the `table` result mode shows, kept bounded.
//!
//! `SET 'sql-client.execution.max-table-result.rows' = 'N'` (Flink's SQL-client option; default
//! here 1,000) caps the rows kept. Past the cap the oldest row is dropped first: for an
//! append-only result the view holds the latest N rows; for an updating result it holds the N
//! rows inserted or updated most recently, and a later retraction (`-U`/`-D`) of a row that was
//! dropped is ignored, so every row shown is still current. A key whose row was dropped shows
//! again when it next changes. [`View::dropped`] counts the rows dropped, for the note the
//! shell prints.

use std::collections::{BTreeMap, HashMap, VecDeque};

use weir::planner::Settings;

pub const MAX_ROWS_KEY: &str = "sql-client.execution.max-table-result.rows";
pub const DEFAULT_MAX_ROWS: usize = 1_000;

/// The row cap of the session's `table` mode; an unusable value is reported and replaced by
/// the default.
pub fn max_rows(settings: &Settings) -> usize {
    let Some(v) = settings.get(MAX_ROWS_KEY) else {
        return DEFAULT_MAX_ROWS;
    };
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => n,
        _ => {
            eprintln!(
                "warning: '{MAX_ROWS_KEY}' = '{v}' is not a positive number of rows; \
                 keeping {DEFAULT_MAX_ROWS}"
            );
            DEFAULT_MAX_ROWS
        }
    }
}

/// A multiset of rows in arrival order, at most `max_rows` of them.
pub struct View {
    max_rows: usize,
    /// Rows by arrival number.
    rows: BTreeMap<u64, Vec<String>>,
    /// The arrival numbers of each distinct row, oldest first.
    index: HashMap<Vec<String>, VecDeque<u64>>,
    next: u64,
    dropped: u64,
}

impl View {
    pub fn new(max_rows: usize) -> Self {
        Self {
            max_rows: max_rows.max(1),
            rows: BTreeMap::new(),
            index: HashMap::new(),
            next: 0,
            dropped: 0,
        }
    }

    /// Add a row (`+I`, `+U`), dropping the oldest row when the view is full.
    pub fn insert(&mut self, row: Vec<String>) {
        if self.rows.len() == self.max_rows {
            self.drop_oldest();
        }
        let at = self.next;
        self.next += 1;
        self.index.entry(row.clone()).or_default().push_back(at);
        self.rows.insert(at, row);
    }

    /// Remove the oldest copy of a row (`-U`, `-D`); false when the view does not hold it.
    pub fn retract(&mut self, row: &[String]) -> bool {
        let Some(ats) = self.index.get_mut(row) else {
            return false;
        };
        let at = ats.pop_front();
        if ats.is_empty() {
            self.index.remove(row);
        }
        at.and_then(|a| self.rows.remove(&a)).is_some()
    }

    fn drop_oldest(&mut self) {
        let Some((_, row)) = self.rows.pop_first() else {
            return;
        };
        // The oldest row overall is the oldest copy of its row.
        if let Some(ats) = self.index.get_mut(&row) {
            ats.pop_front();
            if ats.is_empty() {
                self.index.remove(&row);
            }
        }
        self.dropped += 1;
    }

    /// The latest `n` rows, oldest first.
    pub fn latest(&self, n: usize) -> Vec<Vec<String>> {
        let mut rows: Vec<Vec<String>> = self.rows.values().rev().take(n).cloned().collect();
        rows.reverse();
        rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows dropped because the view was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn max_rows(&self) -> usize {
        self.max_rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: &str, v: u32) -> Vec<String> {
        vec![k.to_string(), v.to_string()]
    }

    #[test]
    fn an_append_only_result_keeps_the_latest_rows() {
        let mut v = View::new(3);
        (0..10).for_each(|i| v.insert(row("k", i)));
        assert_eq!(v.rows.len(), 3);
        assert_eq!(v.dropped(), 7);
        assert_eq!(v.latest(10), vec![row("k", 7), row("k", 8), row("k", 9)]);
        assert_eq!(v.latest(2), vec![row("k", 8), row("k", 9)]);
        assert_eq!(v.index.len(), 3, "the index forgets dropped rows");
    }

    #[test]
    fn an_updating_result_keeps_the_most_recently_changed_rows() {
        let mut v = View::new(2);
        v.insert(row("a", 1));
        v.insert(row("b", 1));
        // a changes: its old row is retracted, the new one is the newest.
        assert!(v.retract(&row("a", 1)));
        v.insert(row("a", 2));
        // c arrives: b, the oldest, is dropped.
        v.insert(row("c", 1));
        assert_eq!(v.latest(5), vec![row("a", 2), row("c", 1)]);
        assert_eq!(v.dropped(), 1);
        // b's update retracts a row no longer in view: ignored; its new row shows again.
        assert!(!v.retract(&row("b", 1)));
        v.insert(row("b", 2));
        assert_eq!(v.latest(5), vec![row("c", 1), row("b", 2)]);
        assert_eq!(v.dropped(), 2);
    }

    #[test]
    fn duplicate_rows_are_retracted_one_at_a_time() {
        let mut v = View::new(10);
        v.insert(row("a", 1));
        v.insert(row("a", 1));
        assert!(v.retract(&row("a", 1)));
        assert_eq!(v.latest(5), vec![row("a", 1)]);
        assert!(v.retract(&row("a", 1)));
        assert!(v.is_empty());
        assert!(!v.retract(&row("a", 1)));
        assert!(v.index.is_empty());
    }

    #[test]
    fn the_limit_comes_from_the_session() {
        let mut s = Settings::new();
        assert_eq!(max_rows(&s), DEFAULT_MAX_ROWS);
        s.insert(MAX_ROWS_KEY.into(), " 25 ".into());
        assert_eq!(max_rows(&s), 25);
        s.insert(MAX_ROWS_KEY.into(), "0".into());
        assert_eq!(max_rows(&s), DEFAULT_MAX_ROWS);
    }
}
