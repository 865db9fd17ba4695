//! Weir's integration tests: one binary, one module per concern.
//!
//! - `conformance`: the golden cases from Apache Flink (`tests/conformance/*`), run through the
//!   embedded API and compared row by row.
//! - `determinism`: the same inputs fed in batches of 1, 7 and 4096 rows give identical results.
//! - `sql_examples`: every job in `sql-examples/` plans and runs.
//! - `errors`: bad SQL and bad records give clear, located errors and never panic.
//! - `queries`: time zones, chained windows, aggregates, views, unions, functions.
//! - `kafka`: the Kafka connector against a real broker (tansu or `WEIR_TEST_KAFKA`).
//! - `api`: the embedded `Engine` API (queries, jobs, sinks, cancellation).

mod common;

mod api;
mod conformance;
mod determinism;
mod errors;
mod kafka;
mod queries;
mod sql_examples;
