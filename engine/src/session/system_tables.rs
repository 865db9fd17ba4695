//! SQL system tables: `weir.jobs`, `weir.metrics`, `weir.kafka_lag`, `weir.checkpoints` and
//! `weir.dead_letters`, queryable like any table (`SELECT partition, lag FROM weir.kafka_lag
//! WHERE lag > 10000`). A query that names one runs once, as a batch query over a snapshot
//! taken when it starts. `weir.metrics` is parsed from the same Prometheus text `/metrics`
//! serves, so both always show the same numbers; like `/metrics` it and `weir.kafka_lag` cover
//! the current jobs, while `weir.jobs`, `weir.checkpoints` and `weir.dead_letters` cover every
//! job kept in the history (see [`crate::session::job_history`]).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::error::Result;
use crate::session::engine::Output;
use crate::session::stream::JobHandle;

/// The system table names, for a quick check of a query's text.
pub const NAMES: &[&str] = &[
    "jobs",
    "metrics",
    "kafka_lag",
    "checkpoints",
    "dead_letters",
];

/// True when `sql` names a `weir.` system table.
pub fn mentions(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    NAMES.iter().any(|n| lower.contains(&format!("weir.{n}")))
}

/// The jobs the system tables show.
pub struct Jobs {
    /// Every job kept in the history.
    pub kept: Vec<JobHandle>,
    /// The jobs `/metrics` shows.
    pub current: Vec<JobHandle>,
}

/// Run `sql` over a snapshot of the system tables.
pub async fn query(sql: &str, jobs: &Jobs) -> Result<Output> {
    let ctx = SessionContext::new();
    let schema = Arc::new(MemorySchemaProvider::new());
    ctx.catalog("datafusion")
        .expect("the default catalog")
        .register_schema("weir", schema.clone())?;
    for (name, batch) in tables(jobs)? {
        let t = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        datafusion::catalog::SchemaProvider::register_table(&*schema, name.into(), Arc::new(t))?;
    }
    let df = ctx.sql(sql).await?;
    let out_schema = Arc::new(df.schema().as_arrow().clone());
    Ok(Output::Table(out_schema, df.collect().await?))
}

fn batch(fields: Vec<(&str, DataType)>, cols: Vec<ArrayRef>) -> Result<RecordBatch> {
    let schema = Schema::new(
        fields
            .into_iter()
            .map(|(n, t)| Field::new(n, t, true))
            .collect::<Vec<_>>(),
    );
    Ok(RecordBatch::try_new(Arc::new(schema), cols)?)
}

fn strings(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

fn tables(jobs: &Jobs) -> Result<Vec<(&'static str, RecordBatch)>> {
    Ok(vec![
        ("jobs", jobs_table(&jobs.kept)?),
        ("metrics", metrics_table(&jobs.current)?),
        ("kafka_lag", lag_table(&jobs.current)?),
        ("checkpoints", checkpoints_table(&jobs.kept)?),
        ("dead_letters", dead_letters_table(&jobs.kept)?),
    ])
}

fn jobs_table(jobs: &[JobHandle]) -> Result<RecordBatch> {
    use crate::observe::metrics::JobMetrics as M;
    let m = |f: &dyn Fn(&JobHandle) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(jobs.iter().map(f)))
    };
    batch(
        vec![
            ("id", DataType::UInt64),
            ("name", DataType::Utf8),
            ("status", DataType::Utf8),
            ("uptime_s", DataType::UInt64),
            ("rows_in", DataType::UInt64),
            ("rows_out", DataType::UInt64),
            ("late_rows", DataType::UInt64),
            ("bad_records", DataType::UInt64),
            ("last_checkpoint", DataType::UInt64),
        ],
        vec![
            m(&|j| j.id()),
            strings(jobs.iter().map(|j| j.name().to_string()).collect()),
            strings(jobs.iter().map(|j| format!("{:?}", j.status())).collect()),
            m(&|j| j.uptime().as_secs()),
            m(&|j| M::get(&j.metrics().rows_in)),
            m(&|j| M::get(&j.metrics().rows_out)),
            m(&|j| j.late_rows()),
            m(&|j| j.bad_records()),
            m(&|j| j.last_checkpoint().unwrap_or(0)),
        ],
    )
}

/// The samples of every job as rows, one per line `/metrics` writes (`name{labels} value`).
fn metrics_table(jobs: &[JobHandle]) -> Result<RecordBatch> {
    let samples = crate::observe::collect::samples(jobs).lines();
    batch(
        vec![
            ("metric", DataType::Utf8),
            ("labels", DataType::Utf8),
            ("value", DataType::Float64),
        ],
        vec![
            strings(samples.iter().map(|s| s.name.clone()).collect()),
            strings(samples.iter().map(|s| s.labels.clone()).collect()),
            Arc::new(Float64Array::from_iter_values(
                samples.iter().map(|s| s.value),
            )),
        ],
    )
}

fn lag_table(jobs: &[JobHandle]) -> Result<RecordBatch> {
    let (mut job, mut topic, mut part, mut lag) = (vec![], vec![], vec![], vec![]);
    for j in jobs {
        for ((t, p), l) in j.metrics().kafka_lag.lock().expect("lock").iter() {
            job.push(crate::observe::collect::job_label(j));
            topic.push(t.clone());
            part.push(i64::from(*p));
            lag.push(*l);
        }
    }
    batch(
        vec![
            ("job", DataType::Utf8),
            ("topic", DataType::Utf8),
            ("partition", DataType::Int64),
            ("lag", DataType::Int64),
        ],
        vec![
            strings(job),
            strings(topic),
            Arc::new(Int64Array::from(part)),
            Arc::new(Int64Array::from(lag)),
        ],
    )
}

fn checkpoints_table(jobs: &[JobHandle]) -> Result<RecordBatch> {
    let (mut job, mut id, mut ms, mut bytes) = (vec![], vec![], vec![], vec![]);
    for j in jobs {
        for c in j.checkpoints() {
            job.push(crate::observe::collect::job_label(j));
            id.push(c.id);
            ms.push(c.duration.as_secs_f64() * 1e3);
            bytes.push(c.bytes);
        }
    }
    batch(
        vec![
            ("job", DataType::Utf8),
            ("id", DataType::UInt64),
            ("duration_ms", DataType::Float64),
            ("bytes", DataType::UInt64),
        ],
        vec![
            strings(job),
            Arc::new(UInt64Array::from(id)),
            Arc::new(Float64Array::from(ms)),
            Arc::new(UInt64Array::from(bytes)),
        ],
    )
}

fn dead_letters_table(jobs: &[JobHandle]) -> Result<RecordBatch> {
    let (mut job, mut source, mut reason, mut position, mut raw) =
        (vec![], vec![], vec![], vec![], vec![]);
    for j in jobs {
        for (s, dl) in j.dead_letter_sources() {
            for r in dl.records() {
                job.push(crate::observe::collect::job_label(j));
                source.push(s.clone());
                reason.push(r.reason.clone());
                position.push(r.position.clone());
                raw.push(String::from_utf8_lossy(&r.raw).into_owned());
            }
        }
    }
    batch(
        vec![
            ("job", DataType::Utf8),
            ("source", DataType::Utf8),
            ("reason", DataType::Utf8),
            ("position", DataType::Utf8),
            ("raw", DataType::Utf8),
        ],
        vec![
            strings(job),
            strings(source),
            strings(reason),
            strings(position),
            strings(raw),
        ],
    )
}
