//! Weir's integration tests: one binary, one module per concern.
//!
//! - `conformance`: the golden cases from Apache Flink (`tests/conformance/*`), run through the
//!   embedded API and compared row by row.
//! - `determinism`: the same inputs fed in batches of 1, 7 and 4096 rows give identical results.
//! - `sql_examples`: every job in `sql-examples/` plans and runs.
//! - `errors`: bad SQL and bad records give clear, located errors and never panic.
//! - `queries`: time zones, chained windows, aggregates, views, unions, functions.
//! - `kafka`: the Kafka connector against a real broker (tansu or `WEIR_TEST_KAFKA`).
//! - `kafka_keys`: Kafka message keys (`key.format`, `EXCEPT_KEY`) and the `headers` column.
//! - `kafka_recovery`: quiet partitions across `kill -9`, offsets committed to the consumer group.
//! - `mqtt`: the MQTT connector against Mosquitto (127.0.0.1:1883): windows over QoS-1 input,
//!   nothing lost across `kill -9`, wildcard topics, the dead-letter topic, the sink.
//! - `late_data`: late rows reach the late-data sink table and the source's late-data topic.
//! - `backpressure`: a slow sink bounds a real `weir run` process's memory and loses nothing.
//! - `checkpoints`: crash and recover every golden case with checkpoints; savepoints.
//! - `chaos`: `kill -9` a checkpointing `weir run` up to five times (three at least); output equals a
//!   clean run's.
//! - `stop`: SIGTERM on `weir run` takes a savepoint, exits 0, and the job resumes from it.
//! - `observability`: `/metrics` and `/health` over HTTP, metric values equal the job's counts.
//! - `metrics_values`: metric values against known inputs (job history and health, busy and
//!   backpressure shares, late rows by operator, state bytes, expired keys).
//! - `latency`: end-to-end latency histograms, per-partition source metrics against the broker,
//!   timestamp-unit corrections, `RUST_LOG`-filtered logs.
//! - `shell`: the interactive shell through a real pseudo-terminal.
//! - `updating`: changelogs (GROUP BY, dedup, top-N, allowed lateness, TTL) and upsert-kafka.
//! - `upserts`: rows leaving an updating result (HAVING, WHERE, top-N) become tombstones.
//! - `api`: the embedded `Engine` API (queries, jobs, sinks, cancellation).
//! - `jdbc`: the PostgreSQL connector against a real server: append and upsert sinks,
//!   exactly-once across a crash, a partitioned scan, a lookup join, dropped connections.
//! - `joins`: interval, window, regular, semi and anti joins, their late rows, refused joins.
//! - `over`: OVER aggregates (RANGE and ROWS frames), their late rows, refused OVER windows.
//! - `parallel`: keyed operators as several subtasks: skewed keys, EXPLAIN's exchanges, datagen
//!   split over subtasks, checkpoints restored at another parallelism (not other key groups).
//! - `rescale`: a Kafka job killed at parallelism 2, resumed at 4 and then 1, into exactly-once
//!   Kafka sinks: its output equals a clean run's.
//! - `parquet`: Parquet files: every type round trip (nested and precise types too, and files
//!   other writers lay out), partitioned and rolled writes, crash and
//!   recovery with Parquet output.

mod common;

mod api;
mod backpressure;
mod chaos;
mod checkpoints;
mod conformance;
mod determinism;
mod errors;
mod jdbc;
mod joins;
mod kafka;
mod kafka_keys;
mod kafka_recovery;
mod late_data;
mod latency;
mod metrics_values;
mod mqtt;
mod observability;
mod over;
mod parallel;
mod parquet;
mod parquet_arrays;
mod queries;
mod rescale;
mod shell;
mod sql_examples;
mod stop;
mod updating;
mod upserts;
