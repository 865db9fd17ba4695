#![warn(missing_docs)]
//! # Weir
//!
//! A streaming SQL engine for sensor and event pipelines: Flink-dialect SQL in, incremental
//! operators over Arrow record batches, correct results when data arrives late and out of order.
//!
//! The example below runs as a doctest: it registers a source and a sink of its own, a scalar
//! UDF, runs a windowed query as a `Stream` of Arrow batches, then submits a job, reads its
//! metrics and stops it. `examples/` has longer versions (`custom_source`, `custom_udf`).
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use futures::{future::BoxFuture, StreamExt};
//! use weir::arrow::array::{Float64Array, TimestampMillisecondArray};
//! use weir::arrow::record_batch::RecordBatch;
//! use weir::datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
//! use weir::planner::TableDef;
//! use weir::{Sink, SinkContext, SinkFactory, Source, SourceContext, SourceEvent, SourceFactory};
//!
//! /// A source of ours: one batch of readings, then the end.
//! struct Readings;
//! struct OneBatch(Option<RecordBatch>);
//! impl SourceFactory for Readings {
//!     fn name(&self) -> &'static str { "readings" }
//!     fn validate(&self, _t: &TableDef) -> Result<(), String> { Ok(()) }
//!     fn is_bounded(&self, _t: &TableDef) -> bool { true }
//!     fn create(&self, ctx: SourceContext) -> weir::Result<Box<dyn Source>> {
//!         let ts = TimestampMillisecondArray::from(vec![0, 30_000, 61_000]);
//!         let v = Float64Array::from(vec![1.0, 2.0, 4.0]);
//!         let batch = RecordBatch::try_new(ctx.schema.clone(), vec![Arc::new(v), Arc::new(ts)])?;
//!         Ok(Box::new(OneBatch(Some(batch))))
//!     }
//! }
//! impl Source for OneBatch {
//!     fn next(&mut self) -> BoxFuture<'_, weir::Result<SourceEvent>> {
//!         let e = self.0.take().map_or(SourceEvent::End, SourceEvent::Batch);
//!         Box::pin(async move { Ok(e) })
//!     }
//! }
//!
//! /// A sink of ours: counts rows.
//! #[derive(Clone, Default)]
//! struct Count(Arc<Mutex<usize>>);
//! impl SinkFactory for Count {
//!     fn name(&self) -> &'static str { "count" }
//!     fn validate(&self, _t: &TableDef) -> Result<(), String> { Ok(()) }
//!     fn guarantee(&self, _t: &TableDef, _ck: bool) -> &'static str { "at-least-once" }
//!     fn create(&self, _ctx: SinkContext) -> weir::Result<Box<dyn Sink>> { Ok(Box::new(self.clone())) }
//! }
//! impl Sink for Count {
//!     fn write(&mut self, b: RecordBatch) -> BoxFuture<'_, weir::Result<()>> {
//!         *self.0.lock().unwrap() += b.num_rows();
//!         Box::pin(async { Ok(()) })
//!     }
//!     fn finish(&mut self) -> BoxFuture<'_, weir::Result<()>> { Box::pin(async { Ok(()) }) }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let engine = weir::Engine::new();
//! engine.set_quiet(true);
//! engine.register_source(Arc::new(Readings));
//! let counted = Count::default();
//! engine.register_sink(Arc::new(counted.clone()));
//! // A scalar UDF built with DataFusion's helper: doubles a DOUBLE.
//! engine.register_udf(create_udf(
//!     "twice",
//!     vec![weir::arrow::datatypes::DataType::Float64],
//!     weir::arrow::datatypes::DataType::Float64,
//!     Volatility::Immutable,
//!     Arc::new(|args: &[ColumnarValue]| {
//!         let a = ColumnarValue::values_to_arrays(args)?;
//!         let v = a[0].as_any().downcast_ref::<Float64Array>().unwrap();
//!         let out: Float64Array = v.iter().map(|x| x.map(|x| 2.0 * x)).collect();
//!         Ok(ColumnarValue::Array(Arc::new(out)))
//!     }),
//! ))?;
//! engine.execute("CREATE TABLE r (v DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) \
//!     WITH ('connector' = 'readings')").await?;
//!
//! // A query is a Stream of Arrow record batches, one or more per closed window.
//! let mut rows = engine.query("SELECT window_start, SUM(twice(v)) AS total \
//!     FROM TABLE(TUMBLE(TABLE r, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
//!     GROUP BY window_start, window_end").await?;
//! let mut totals = vec![];
//! while let Some(batch) = rows.next().await {
//!     let batch = batch?;
//!     let t = batch.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
//!     totals.extend(t.iter().flatten());
//! }
//! assert_eq!(totals, vec![6.0, 8.0]);
//!
//! // A job writes into a sink; its metrics are live, and it can be stopped.
//! engine.execute("CREATE TABLE out_t (v DOUBLE) WITH ('connector' = 'count')").await?;
//! let job = engine.submit("INSERT INTO out_t SELECT v FROM r WHERE v > 1").await?;
//! job.wait().await?;
//! assert_eq!(*counted.0.lock().unwrap(), 2);
//! println!("late rows: {}", job.late_rows());
//! job.cancel(); // (a no-op once finished; stops a running job)
//! # Ok::<(), weir::EngineError>(())
//! # }).unwrap();
//! ```

use std::ops::Deref;

pub mod metrics_server;

pub use datafusion;
pub use datafusion::arrow;
pub use weir_connectors as connectors;
pub use weir_engine::changelog;
pub use weir_engine::checkpoint::{CheckpointConfig, CheckpointMeta, CheckpointStore};
pub use weir_engine::connector::{
    ConnectorRegistry, Sink, SinkContext, SinkFactory, Source, SourceContext, SourceEvent,
    SourceFactory, Split,
};
pub use weir_engine::runtime::job::JobStatus;
pub use weir_engine::session::system_tables;
pub use weir_engine::{plan_only, EngineError, JobHandle, Output, QueryStream, Result};
pub use weir_planner as planner;
/// The engine's numbers: job counters, the metric catalog, typed samples (what `/metrics`,
/// `weir.metrics` and the progress line show) and the text they are served as.
pub mod engine_metrics {
    pub use weir_engine::observe::catalog::{self as metric, Kind, Metric};
    pub use weir_engine::observe::collect::samples;
    pub use weir_engine::observe::metrics::{format_watermark, JobMetrics};
    pub use weir_engine::observe::prometheus::{encode, parse, render};
    pub use weir_engine::observe::samples::{Sample, Samples, SeriesLine, Value};

    /// Read a counter.
    pub fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
        JobMetrics::get(c)
    }
}

/// The engine with Weir's built-in connectors. It dereferences to [`weir_engine::Engine`], whose
/// methods (`execute`, `query`, `submit`, `explain`, `register_*`, `set_*`) are the API.
#[derive(Clone)]
pub struct Engine(weir_engine::Engine);

impl Engine {
    /// An engine that knows every built-in connector (`filesystem`, `kafka`, `upsert-kafka`,
    /// `datagen`, `print`, `blackhole`); register more with `register_source`/`register_sink`.
    pub fn new() -> Self {
        Engine(weir_engine::Engine::with_connectors(
            weir_connectors::default_registry(),
        ))
    }

    /// The underlying engine (for APIs that take `weir_engine::Engine`).
    pub fn inner(&self) -> &weir_engine::Engine {
        &self.0
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for Engine {
    type Target = weir_engine::Engine;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
