//! The cache of a lookup join (`'lookup.cache' = 'PARTIAL'`, Flink's option names): the rows
//! of each looked-up key, by the key in row format, for at most
//! `'lookup.partial-cache.max-rows'` keys, each for `expire-after-write` since it was fetched
//! and `expire-after-access` since it was last used. A key the table does not have is cached
//! as no rows when `'lookup.partial-cache.cache-missing-key'` (the default), so a stream of
//! unknown keys does not query the database for each row. Decisions take the time as an
//! argument, so they are tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use weir_planner::interval::parse_duration;
use weir_planner::TableDef;

/// How the cache behaves, from the lookup table's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// `'lookup.cache' = 'PARTIAL'`; without it every key is looked up each time it comes.
    pub enabled: bool,
    /// `'lookup.partial-cache.max-rows'`: keys held at most.
    pub max_rows: usize,
    /// `'lookup.partial-cache.expire-after-write'`: how long a fetched key stays.
    pub expire_after_write: Option<Duration>,
    /// `'lookup.partial-cache.expire-after-access'`: how long an unused key stays.
    pub expire_after_access: Option<Duration>,
    /// `'lookup.partial-cache.cache-missing-key'`: remember keys the table lacks.
    pub cache_missing_key: bool,
    /// `'lookup.max-retries'`: how often a failed lookup is tried again.
    pub max_retries: u32,
}

impl CacheConfig {
    /// Read the `lookup.*` options of `table`.
    pub fn parse(table: &TableDef) -> Result<Self, String> {
        let enabled = match table.option("lookup.cache").map(str::to_ascii_uppercase).as_deref() {
            None | Some("NONE") => false,
            Some("PARTIAL") => true,
            Some(other) => {
                return Err(format!(
                    "option 'lookup.cache' must be NONE or PARTIAL, not '{other}' (FULL is not supported)"
                ))
            }
        };
        let duration = |key: &str| -> Result<Option<Duration>, String> {
            match table.option(key) {
                None => Ok(None),
                Some(v) => {
                    let ns = parse_duration(v).map_err(|e| format!("option '{key}': {e}"))?;
                    Ok(Some(Duration::from_nanos(ns.max(0) as u64)))
                }
            }
        };
        let number = |key: &str, default: u64| -> Result<u64, String> {
            table.option(key).map_or(Ok(default), |v| {
                v.trim()
                    .parse()
                    .map_err(|_| format!("option '{key}' must be a number, not '{v}'"))
            })
        };
        let missing = match table.option("lookup.partial-cache.cache-missing-key") {
            None => true,
            Some(v) => v.parse::<bool>().map_err(|_| {
                format!("option 'lookup.partial-cache.cache-missing-key' must be 'true' or 'false', not '{v}'")
            })?,
        };
        Ok(Self {
            enabled,
            max_rows: number("lookup.partial-cache.max-rows", 10_000)? as usize,
            expire_after_write: duration("lookup.partial-cache.expire-after-write")?,
            expire_after_access: duration("lookup.partial-cache.expire-after-access")?,
            cache_missing_key: missing,
            max_retries: number("lookup.max-retries", 3)? as u32,
        })
    }
}

struct Entry {
    rows: RecordBatch,
    written: Instant,
    accessed: Instant,
}

/// The cached rows of recently looked-up keys.
pub struct LookupCache {
    config: CacheConfig,
    entries: HashMap<Box<[u8]>, Entry>,
}

impl LookupCache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
        }
    }

    /// The cached rows of `key` (possibly none: a key the table lacks), if cached and fresh.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<&RecordBatch> {
        if !self.config.enabled {
            return None;
        }
        let fresh = self.entries.get(key).map(|e| self.is_fresh(e, now))?;
        if !fresh {
            self.entries.remove(key);
            return None;
        }
        let e = self.entries.get_mut(key)?;
        e.accessed = now;
        Some(&e.rows)
    }

    fn is_fresh(&self, e: &Entry, now: Instant) -> bool {
        let young = |since: Instant, limit: Option<Duration>| {
            limit.is_none_or(|l| now.saturating_duration_since(since) < l)
        };
        young(e.written, self.config.expire_after_write)
            && young(e.accessed, self.config.expire_after_access)
    }

    /// Remember the rows fetched for `key`.
    pub fn put(&mut self, key: &[u8], rows: RecordBatch, now: Instant) {
        let missing = rows.num_rows() == 0;
        if !self.config.enabled
            || self.config.max_rows == 0
            || (missing && !self.config.cache_missing_key)
        {
            return;
        }
        if self.entries.len() >= self.config.max_rows && !self.entries.contains_key(key) {
            self.make_room(now);
        }
        let e = Entry {
            rows,
            written: now,
            accessed: now,
        };
        self.entries.insert(key.into(), e);
    }

    /// Drop the stale entries and, if that is not enough, the least recently used tenth.
    fn make_room(&mut self, now: Instant) {
        let stale: Vec<Box<[u8]>> = self
            .entries
            .iter()
            .filter(|(_, e)| !self.is_fresh(e, now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.entries.remove(&k);
        }
        if self.entries.len() < self.config.max_rows {
            return;
        }
        let mut by_use: Vec<(Instant, Box<[u8]>)> = self
            .entries
            .iter()
            .map(|(k, e)| (e.accessed, k.clone()))
            .collect();
        by_use.sort_unstable_by_key(|(t, _)| *t);
        let drop = (self.config.max_rows / 10).max(1);
        for (_, k) in by_use.into_iter().take(drop) {
            self.entries.remove(&k);
        }
    }

    /// Keys cached now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, e)| k.len() + e.rows.get_array_memory_size())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1; n]))]).unwrap()
    }

    fn config() -> CacheConfig {
        CacheConfig {
            enabled: true,
            max_rows: 10,
            expire_after_write: Some(Duration::from_secs(60)),
            expire_after_access: Some(Duration::from_secs(10)),
            cache_missing_key: true,
            max_retries: 3,
        }
    }

    #[test]
    fn entries_expire_after_write_and_after_access() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = LookupCache::new(config());
        c.put(b"a", rows(1), t0);
        assert!(c.get(b"a", t0 + 9 * s).is_some(), "used within 10 s");
        assert!(c.get(b"a", t0 + 18 * s).is_some(), "access renews it");
        assert!(c.get(b"a", t0 + 29 * s).is_none(), "11 s without access");
        c.put(b"b", rows(1), t0);
        for i in 1..=6 {
            assert!(c.get(b"b", t0 + i * 9 * s).is_some(), "kept in use");
        }
        assert!(
            c.get(b"b", t0 + 61 * s).is_none(),
            "60 s after it was fetched"
        );
    }

    #[test]
    fn missing_keys_are_cached_unless_told_not_to_and_none_disables() {
        let t0 = Instant::now();
        let mut c = LookupCache::new(config());
        c.put(b"gone", rows(0), t0);
        assert_eq!(c.get(b"gone", t0).map(|r| r.num_rows()), Some(0));
        let mut c = LookupCache::new(CacheConfig {
            cache_missing_key: false,
            ..config()
        });
        c.put(b"gone", rows(0), t0);
        assert!(c.get(b"gone", t0).is_none());
        let mut c = LookupCache::new(CacheConfig {
            enabled: false,
            ..config()
        });
        c.put(b"a", rows(1), t0);
        assert!(c.get(b"a", t0).is_none() && c.is_empty());
    }

    #[test]
    fn a_full_cache_drops_the_least_recently_used() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut c = LookupCache::new(config());
        for i in 0..10u8 {
            c.put(&[i], rows(1), t0 + u32::from(i) * ms);
        }
        assert!(c.get(&[0], t0 + 20 * ms).is_some(), "0 is used again");
        c.put(&[99], rows(1), t0 + 21 * ms);
        assert_eq!(c.len(), 10);
        assert!(
            c.get(&[1], t0 + 22 * ms).is_none(),
            "1 was the least recently used"
        );
        assert!(c.get(&[0], t0 + 22 * ms).is_some());
    }

    #[test]
    fn options_are_read_with_flinks_names() {
        let mut t = weir_planner::TableDef {
            name: "d".into(),
            columns: vec![],
            watermark: None,
            primary_key: vec![],
            partition_by: vec![],
            options: Default::default(),
            option_locations: Default::default(),
            location: Default::default(),
        };
        for (k, v) in [
            ("lookup.cache", "partial"),
            ("lookup.partial-cache.max-rows", "500"),
            ("lookup.partial-cache.expire-after-write", "10 min"),
            ("lookup.partial-cache.cache-missing-key", "false"),
            ("lookup.max-retries", "5"),
        ] {
            t.options.insert(k.into(), v.into());
        }
        let c = CacheConfig::parse(&t).unwrap();
        assert!(c.enabled && !c.cache_missing_key);
        assert_eq!((c.max_rows, c.max_retries), (500, 5));
        assert_eq!(c.expire_after_write, Some(Duration::from_secs(600)));
        assert_eq!(c.expire_after_access, None);
        t.options.insert("lookup.cache".into(), "FULL".into());
        assert!(CacheConfig::parse(&t)
            .unwrap_err()
            .contains("FULL is not supported"));
    }
}
