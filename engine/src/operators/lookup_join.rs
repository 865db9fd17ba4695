//! The lookup join: each left row with the rows a lookup table has for its key when the row
//! comes (`JOIN d FOR SYSTEM_TIME AS OF a.proc_time ON a.k = d.k`).
//!
//! Per batch: the keys are encoded in row format (cast to the table's key types first); each
//! distinct key is answered from the [`LookupCache`] when it can be, and every other key of
//! the batch goes to the table in one lookup (`WHERE k = ANY($1)` for PostgreSQL), retried on
//! failure. A LEFT join keeps the rows whose key the table lacks (or is NULL), padded with
//! NULLs. Unlike Flink's synchronous JDBC lookup (one query per row), a batch of 4096 rows
//! with 4096 new keys costs one round trip.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{
    cast, concat_batches, filter_record_batch, interleave_record_batch, take,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows};
use weir_planner::stream_plan::JoinKind;
use weir_planner::stream_plan::LookupJoinNode;

use super::groups::key_converter;
use super::lookup_cache::{CacheConfig, LookupCache};
use super::rows::{mask, padded_rows, take_rows};
use super::window_aggregate::key_arrays;
use crate::connector::LookupSource;
use crate::error::{EngineError, Result};
use crate::message::StreamBatch;
use crate::observe::op_metrics::OperatorMetrics;

/// Where each distinct key of a batch gets its rows.
#[derive(Clone, Copy)]
enum Answer {
    /// The rows are `sets[i]`.
    Rows(usize),
    /// Not cached: the `i`-th key of the lookup.
    Fetch(usize),
}

/// The answers for a batch's keys, and the rows that needed the cache or the table.
#[derive(Default)]
struct Answers<'r> {
    by_key: HashMap<&'r [u8], Answer>,
    /// Each row's answer (`None` for a NULL key).
    of_row: Vec<Option<Answer>>,
    /// Rows of cached keys (then of fetched ones).
    sets: Vec<RecordBatch>,
    /// The first row of each key to fetch.
    fetch: Vec<u32>,
    hits: u64,
    misses: u64,
}

/// A lookup join's state: the lookup table, its cache and the key encoding.
pub struct LookupJoin {
    node: LookupJoinNode,
    source: Box<dyn LookupSource>,
    cache: LookupCache,
    config: CacheConfig,
    converter: RowConverter,
    key_types: Vec<DataType>,
    key_schema: SchemaRef,
    /// The key columns' and the output columns' positions in the table's rows.
    right_key_idx: Vec<usize>,
    right_proj: Vec<usize>,
    metrics: Arc<OperatorMetrics>,
}

impl LookupJoin {
    /// A join of `node` looking rows up in `source` (rows of the table's `physical` schema).
    pub fn new(
        node: LookupJoinNode,
        source: Box<dyn LookupSource>,
        physical: &Schema,
        metrics: Arc<OperatorMetrics>,
    ) -> Result<Self> {
        let config = CacheConfig::parse(&node.table)
            .map_err(|e| EngineError::connector(node.table.connector().unwrap_or_default(), e))?;
        let right_key_idx = node
            .right_keys
            .iter()
            .map(|k| physical.index_of(k))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let right_proj = node
            .right_schema
            .fields()
            .iter()
            .map(|f| physical.index_of(f.name()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let key_fields: Vec<Field> = right_key_idx
            .iter()
            .map(|&i| physical.field(i).clone())
            .collect();
        let key_types: Vec<DataType> = key_fields.iter().map(|f| f.data_type().clone()).collect();
        Ok(Self {
            converter: key_converter(&key_types)?,
            key_schema: Arc::new(Schema::new(key_fields)),
            key_types,
            cache: LookupCache::new(config),
            config,
            source,
            node,
            right_key_idx,
            right_proj,
            metrics,
        })
    }

    /// Join one batch of left rows.
    pub async fn process(&mut self, b: &StreamBatch) -> Result<Option<StreamBatch>> {
        let batch = &b.batch;
        let keys = self.left_keys(batch)?;
        let rows = self.converter.convert_columns(&keys)?;
        let now = Instant::now();
        let mut a = self.answers(&keys, &rows, now);
        let fetched = self.fetch(&keys, &rows, &a.fetch, now).await?;
        let first_fetched = a.sets.len();
        a.sets.extend(fetched);
        let set_of_row: Vec<Option<usize>> = (a.of_row.iter())
            .map(|answer| match answer {
                Some(Answer::Rows(s)) => Some(*s),
                Some(Answer::Fetch(f)) => Some(first_fetched + f),
                None => None,
            })
            .collect();
        self.count(a.hits, a.misses);
        self.joined(b, &a.sets, &set_of_row)
    }

    /// Where each distinct key of the batch gets its rows: the cache, or the lookup.
    fn answers<'r>(&mut self, keys: &[ArrayRef], rows: &'r Rows, now: Instant) -> Answers<'r> {
        let mut a = Answers::default();
        for i in 0..rows.num_rows() {
            if keys.iter().any(|k| k.is_null(i)) {
                a.of_row.push(None);
                continue;
            }
            let key = rows.row(i).data();
            let (sets, fetch) = (&mut a.sets, &mut a.fetch);
            let answer = a
                .by_key
                .entry(key)
                .or_insert_with(|| match self.cache.get(key, now) {
                    Some(r) => {
                        sets.push(r.clone());
                        Answer::Rows(sets.len() - 1)
                    }
                    None => {
                        fetch.push(i as u32);
                        Answer::Fetch(fetch.len() - 1)
                    }
                });
            match answer {
                Answer::Rows(_) => a.hits += 1,
                Answer::Fetch(_) => a.misses += 1,
            }
            a.of_row.push(Some(*answer));
        }
        a
    }

    /// The left key columns, cast to the table's key types.
    fn left_keys(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let keys = key_arrays(&self.node.left_keys, batch)?;
        keys.iter()
            .zip(&self.key_types)
            .map(|(k, t)| match k.data_type() == t {
                true => Ok(k.clone()),
                false => Ok(cast(k, t)?),
            })
            .collect()
    }

    /// Look up the keys at rows `fetch` and cache what comes back; the rows of each, in order.
    async fn fetch(
        &mut self,
        keys: &[ArrayRef],
        rows: &Rows,
        fetch: &[u32],
        now: Instant,
    ) -> Result<Vec<RecordBatch>> {
        if fetch.is_empty() {
            return Ok(Vec::new());
        }
        let idx = UInt32Array::from(fetch.to_vec());
        let cols = keys
            .iter()
            .map(|k| Ok(take(k, &idx, None)?))
            .collect::<Result<Vec<_>>>()?;
        let wanted = RecordBatch::try_new(self.key_schema.clone(), cols)?;
        let found = self.lookup(wanted).await?;
        let found_keys: Vec<ArrayRef> = self
            .right_key_idx
            .iter()
            .map(|&i| found.column(i).clone())
            .collect();
        let found_keys = self.converter.convert_columns(&found_keys)?;
        let mut by_key: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for i in 0..found.num_rows() {
            by_key
                .entry(found_keys.row(i).data())
                .or_default()
                .push(i as u32);
        }
        let projected = found.project(&self.right_proj)?;
        let mut out = Vec::with_capacity(fetch.len());
        for &f in fetch {
            let key = rows.row(f as usize).data();
            let picks = by_key.get(key).map_or(&[][..], |v| v.as_slice());
            let rows_of_key = take_rows(&projected, picks)?;
            self.cache.put(key, rows_of_key.clone(), now);
            out.push(rows_of_key);
        }
        Ok(out)
    }

    /// One lookup, retried `lookup.max-retries` times with a growing pause.
    async fn lookup(&mut self, wanted: RecordBatch) -> Result<RecordBatch> {
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let r = self.source.lookup(wanted.clone()).await;
            OperatorMetrics::add_event(&self.metrics.lookup_queries, 1);
            OperatorMetrics::add_event(
                &self.metrics.lookup_ns,
                started.elapsed().as_nanos() as u64,
            );
            match r {
                Ok(rows) => return Ok(rows),
                Err(e) if attempt < self.config.max_retries => {
                    attempt += 1;
                    tracing::warn!(target: "weir::lookup", "lookup in {} failed ({e}); retry {attempt}", self.node.table.name);
                    tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn count(&self, hits: u64, misses: u64) {
        OperatorMetrics::add_event(&self.metrics.lookup_hits, hits);
        OperatorMetrics::add_event(&self.metrics.lookup_misses, misses);
        self.metrics.state_keys.store(
            self.cache.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.metrics.state_bytes.store(
            self.cache.bytes() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The output: each left row with each of its rows that passes the filter; a LEFT join's
    /// rows without any, padded. Rows keep their watermarks.
    fn joined(
        &self,
        b: &StreamBatch,
        sets: &[RecordBatch],
        set_of_row: &[Option<usize>],
    ) -> Result<Option<StreamBatch>> {
        let mut parts = Vec::new();
        let mut out_idx = Vec::new();
        let mut matched = vec![false; b.batch.num_rows()];
        if let Some((pairs, left_idx)) = self.pairs(&b.batch, sets, set_of_row)? {
            let pass = match &self.node.filter {
                Some(f) => mask(f, &pairs)?,
                None => BooleanArray::from(vec![true; pairs.num_rows()]),
            };
            for (i, ok) in left_idx.iter().zip(pass.iter()) {
                if ok == Some(true) {
                    matched[*i as usize] = true;
                    out_idx.push(*i);
                }
            }
            parts.push(filter_record_batch(&pairs, &pass)?);
        }
        if self.node.kind == JoinKind::Left {
            let lone: Vec<u32> = (0..b.batch.num_rows() as u32)
                .filter(|i| !matched[*i as usize])
                .collect();
            parts.push(self.padded(&b.batch, &lone)?);
            out_idx.extend(lone);
        }
        let out = concat_batches(&self.node.schema, &parts)?;
        if out.num_rows() == 0 {
            return Ok(None);
        }
        let mut sb = StreamBatch::new(out);
        if let Some(w) = &b.row_watermarks {
            let taken = take(w, &UInt32Array::from(out_idx), None)?;
            sb.row_watermarks = taken.as_any().downcast_ref::<Int64Array>().cloned();
        }
        sb.ingest_ns = b.ingest_ns;
        Ok(Some(sb))
    }

    /// Each left row with each of its table rows (before the filter), and the left row of each
    /// pair; `None` when no row has any.
    fn pairs(
        &self,
        batch: &RecordBatch,
        sets: &[RecordBatch],
        set_of_row: &[Option<usize>],
    ) -> Result<Option<(RecordBatch, Vec<u32>)>> {
        let mut left_idx: Vec<u32> = Vec::new();
        let mut picks: Vec<(usize, usize)> = Vec::new();
        for (i, s) in set_of_row.iter().enumerate() {
            if let Some(s) = *s {
                for r in 0..sets[s].num_rows() {
                    left_idx.push(i as u32);
                    picks.push((s, r));
                }
            }
        }
        if picks.is_empty() {
            return Ok(None);
        }
        let set_refs: Vec<&RecordBatch> = sets.iter().collect();
        let right = interleave_record_batch(&set_refs, &picks)?;
        let left = take_rows(batch, &left_idx)?;
        let cols = [left.columns().to_vec(), right.columns().to_vec()].concat();
        let pairs = RecordBatch::try_new(self.node.schema.clone(), cols)?;
        Ok(Some((pairs, left_idx)))
    }

    fn padded(&self, batch: &RecordBatch, idx: &[u32]) -> Result<RecordBatch> {
        padded_rows(batch, idx, &self.node.right_schema, &self.node.schema)
    }
}
