//! # Weir
//!
//! A streaming SQL engine for sensor and event pipelines: Flink-dialect SQL in, incremental
//! operators over Arrow record batches, correct results when data arrives late and out of order.
//!
//! ```no_run
//! # async fn demo() -> weir::Result<()> {
//! let engine = weir::Engine::new();
//! engine.execute("CREATE TABLE t (id STRING, v DOUBLE, ts TIMESTAMP(3), \
//!     WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
//!     WITH ('connector' = 'filesystem', 'path' = 'data.jsonl', 'format' = 'json')").await?;
//! let mut rows = engine.query("SELECT id, window_start, AVG(v) AS avg_v \
//!     FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
//!     GROUP BY id, window_start, window_end").await?;
//! while let Some(batch) = rows.next_batch().await {
//!     println!("{} rows", batch?.num_rows());
//! }
//! # Ok(()) }
//! ```

use std::ops::Deref;

pub use datafusion::arrow;
pub use weir_connectors as connectors;
pub use weir_engine::changelog;
pub use weir_engine::checkpoint::CheckpointConfig;
pub use weir_engine::connector::{
    ConnectorRegistry, Sink, SinkContext, SinkFactory, Source, SourceContext, SourceEvent,
    SourceFactory,
};
pub use weir_engine::{EngineError, JobHandle, Output, QueryStream, Result};
pub use weir_planner as planner;
/// Job counters.
pub mod engine_metrics {
    pub use weir_engine::metrics::JobMetrics;

    /// Read a counter.
    pub fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
        JobMetrics::get(c)
    }
}

/// The engine with Weir's built-in connectors (filesystem, datagen, print, blackhole).
#[derive(Clone)]
pub struct Engine(weir_engine::Engine);

impl Engine {
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
