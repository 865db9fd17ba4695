//! The session options Weir understands (`SET 'key' = 'value'`, `weir run --set key=value`):
//! one table of keys with what they do, and the closest known key for a misspelt one.

/// One session option.
#[derive(Debug, Clone, Copy)]
pub struct SessionOption {
    /// The key as written in `SET 'key' = ...`.
    pub key: &'static str,
    /// An example value.
    pub example: &'static str,
    /// What it changes.
    pub doc: &'static str,
}

/// Every option a Weir session or job reads.
pub const SESSION_OPTIONS: &[SessionOption] = &[
    SessionOption {
        key: "table.local-time-zone",
        example: "Europe/Berlin",
        doc: "session time zone of TIMESTAMP_LTZ values and day windows (default UTC)",
    },
    SessionOption {
        key: "window.allowed-lateness",
        example: "2 min",
        doc: "fired windows stay open this long and re-emit late rows as updates",
    },
    SessionOption {
        key: "window.early-fire.delay",
        example: "10 s",
        doc: "emit partial results of open windows every so often",
    },
    SessionOption {
        key: "table.exec.late-data.sink",
        example: "late_rows",
        doc: "sink table for rows dropped as late, with the reason and the window they missed",
    },
    SessionOption {
        key: "table.exec.sink.upsert-materialize",
        example: "AUTO",
        doc: "when upsert sinks keep each key's rows to delete keys whose row left (AUTO, FORCE, NONE)",
    },
    SessionOption {
        key: "table.exec.state.ttl",
        example: "1 d",
        doc: "drop keys of updating state idle this long",
    },
    SessionOption {
        key: "parallelism.default",
        example: "4",
        doc: "subtasks of each keyed operator (as weir run -p; default: one per core)",
    },
    SessionOption {
        key: "pipeline.max-parallelism",
        example: "128",
        doc: "key groups keyed state is split into: the most subtasks a restored job can have",
    },
    SessionOption {
        key: "table.optimizer.agg-phase-strategy",
        example: "ONE_PHASE",
        doc: "AUTO (default), TWO_PHASE or ONE_PHASE: pre-aggregation before a window's exchange",
    },
    SessionOption {
        key: "pipeline.operator-chaining",
        example: "false",
        doc: "run filters, projections and window assignment inside their input's task (default true)",
    },
    SessionOption {
        key: "execution.checkpointing.interval",
        example: "10 s",
        doc: "how often checkpointing jobs checkpoint",
    },
    SessionOption {
        key: "execution.checkpointing.timeout",
        example: "10 min",
        doc: "abandon a checkpoint not complete by then (a savepoint's fails the job)",
    },
    SessionOption {
        key: "execution.checkpointing.dir",
        example: "/var/lib/weir/ck",
        doc: "where jobs checkpoint (as --checkpoint-dir)",
    },
    SessionOption {
        key: "state.memory-limit",
        example: "1 gb",
        doc: "window state beyond this size moves into RocksDB",
    },
    SessionOption {
        key: "monitoring.lag-warn",
        example: "10000",
        doc: "log a warning when Kafka consumer lag exceeds this many records",
    },
    SessionOption {
        key: "monitoring.latency-warn",
        example: "30 s",
        doc: "log a warning when the watermark lags the wall clock by more than this",
    },
    SessionOption {
        key: "sql-client.execution.result-mode",
        example: "table",
        doc: "how the shell shows query rows: tableau, table or changelog",
    },
    SessionOption {
        key: "sql-client.execution.max-table-result.rows",
        example: "1000",
        doc: "rows the shell's 'table' mode keeps (the oldest drop first, with a note)",
    },
];

/// The option named `key`, if Weir knows it.
pub fn session_option(key: &str) -> Option<&'static SessionOption> {
    SESSION_OPTIONS.iter().find(|o| o.key == key)
}

/// The known key closest to `key` by edit distance, when it is close enough to be a typo.
pub fn closest_option(key: &str) -> Option<&'static str> {
    SESSION_OPTIONS
        .iter()
        .map(|o| (edit_distance(key, o.key), o.key))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// "unknown option 'x'", with the closest known key when there is one.
pub fn unknown_option_message(key: &str) -> String {
    match closest_option(key) {
        Some(k) => format!("unknown option '{key}'; did you mean '{k}'?"),
        None => format!(
            "unknown option '{key}'; known options: {}",
            SESSION_OPTIONS
                .iter()
                .map(|o| o.key)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_finds_its_key() {
        assert_eq!(
            closest_option("table.local-timezone"),
            Some("table.local-time-zone")
        );
        assert_eq!(
            closest_option("state.memory-limt"),
            Some("state.memory-limit")
        );
        assert_eq!(closest_option("taskmanager.numberOfTaskSlots"), None);
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn messages_name_the_suggestion_or_the_list() {
        assert!(unknown_option_message("window.alowed-lateness")
            .contains("did you mean 'window.allowed-lateness'"));
        assert!(unknown_option_message("zzz").contains("known options: table.local-time-zone"));
    }
}
