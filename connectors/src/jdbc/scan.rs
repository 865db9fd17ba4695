//! The `jdbc` scan source: a bounded read of a table (`'table-name'`) or a query
//! (`'scan.query'`), as Flink's JDBC source, for enrichment (the bounded side of a join is
//! read first).
//!
//! With `'scan.partition.column'`, `.num`, `.lower-bound` and `.upper-bound` the read is split
//! into `num` ranges of the column (`BETWEEN lo AND hi`, rows outside the bounds are not read,
//! as in Flink), read one after another. Rows are fetched `'scan.fetch-size'` at a time through
//! a cursor, by a task that runs one fetch ahead of the job. The checkpointed position is the
//! range and the rows of it already read; a restored source reads that range again and skips
//! those rows, so the table must not change during the job (use an `ORDER BY` in `scan.query`
//! for an order that cannot vary).

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use weir_engine::connector::{Source, SourceContext, SourceEvent, SourceFactory};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::connect::ConnectSpec;
use super::read::{select_list, to_batch};
use super::statements::pg_error;
use super::{quote_ident, quote_path, JdbcOptions, NAME};
use crate::options::number_option;

/// A range of the partition column, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    lo: i64,
    hi: i64,
}

/// What to read.
#[derive(Debug, Clone)]
struct ScanOptions {
    connect: ConnectSpec,
    /// The relation: a quoted table name or a parenthesized query.
    from: String,
    /// The partition column (quoted) and its ranges; no column reads everything at once.
    split: Option<(String, Vec<Range>)>,
    fetch_size: Option<usize>,
}

impl ScanOptions {
    fn parse(table: &TableDef) -> Result<Self, String> {
        let jdbc = JdbcOptions::parse(table)?;
        let from = match (table.option("scan.query"), &jdbc.table_name) {
            (Some(q), _) => format!("({})", q.trim().trim_end_matches(';')),
            (None, Some(t)) => quote_path(t),
            (None, None) => {
                return Err(
                    "connector 'jdbc' needs the option 'table-name' (or 'scan.query')".into(),
                )
            }
        };
        let fetch_size = number_option::<usize>(table, "scan.fetch-size")?.filter(|&n| n > 0);
        Ok(Self {
            connect: jdbc.connect,
            from,
            split: split(table)?,
            fetch_size,
        })
    }

    /// The statement reading range `range` (or everything).
    fn sql(&self, schema: &SchemaRef, range: Option<Range>) -> String {
        let mut sql = format!("SELECT {} FROM {} AS q", select_list(schema), self.from);
        if let (Some((col, _)), Some(r)) = (&self.split, range) {
            sql.push_str(&format!(" WHERE q.{col} BETWEEN {} AND {}", r.lo, r.hi));
        }
        sql
    }
}

fn split(table: &TableDef) -> Result<Option<(String, Vec<Range>)>, String> {
    let Some(col) = table.option("scan.partition.column") else {
        return Ok(None);
    };
    let need = |k: &str| -> Result<i64, String> {
        number_option::<i64>(table, k)?
            .ok_or_else(|| format!("option 'scan.partition.column' needs the option '{k}' too"))
    };
    let num = need("scan.partition.num")?;
    let (lo, hi) = (
        need("scan.partition.lower-bound")?,
        need("scan.partition.upper-bound")?,
    );
    if num < 1 || lo > hi {
        return Err(format!(
            "the partition options need 'scan.partition.num' >= 1 and 'lower-bound' <= 'upper-bound' (got {num}, {lo}, {hi})"
        ));
    }
    Ok(Some((quote_ident(col), ranges(lo, hi, num as u64))))
}

/// `[lo, hi]` cut into `num` ranges as even as integers allow (the first ones one longer).
fn ranges(lo: i64, hi: i64, num: u64) -> Vec<Range> {
    let count = (hi as i128 - lo as i128 + 1) as u128;
    let num = u128::from(num).min(count);
    let (size, extra) = (count / num, count % num);
    let mut out = Vec::with_capacity(num as usize);
    let mut start = lo as i128;
    for i in 0..num {
        let len = (size + u128::from(i < extra)) as i128;
        out.push(Range {
            lo: start as i64,
            hi: (start + len - 1) as i64,
        });
        start += len;
    }
    out
}

/// Where the scan is: ranges before `range` are read, and `rows` rows of that one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct ScanPosition {
    range: usize,
    rows: u64,
}

/// Creates `jdbc` scan sources.
pub struct JdbcSourceFactory;

impl SourceFactory for JdbcSourceFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        ScanOptions::parse(table).map(|_| ())
    }

    fn is_bounded(&self, _table: &TableDef) -> bool {
        true
    }

    fn create(&self, ctx: SourceContext) -> Result<Box<dyn Source>> {
        let options =
            ScanOptions::parse(&ctx.table).map_err(|e| EngineError::connector(NAME, e))?;
        let position = match &ctx.restore {
            Some(p) => serde_json::from_str(p).map_err(|e| {
                EngineError::State(format!("unreadable jdbc scan position ({e}): '{p}'"))
            })?,
            None => ScanPosition::default(),
        };
        let (tx, rx) = mpsc::channel(2);
        let fetch = options.fetch_size.unwrap_or(ctx.batch_size.max(1));
        tokio::spawn(read_all(options, ctx.schema.clone(), position, fetch, tx));
        Ok(Box::new(JdbcScan { ctx, rx, position }))
    }
}

/// Rows read from one range.
struct Fetched {
    range: usize,
    batch: RecordBatch,
}

async fn read_all(
    o: ScanOptions,
    schema: SchemaRef,
    from: ScanPosition,
    fetch: usize,
    tx: mpsc::Sender<Result<Fetched>>,
) {
    if let Err(e) = try_read_all(&o, &schema, from, fetch, &tx).await {
        let _ = tx.send(Err(e)).await;
    }
}

async fn try_read_all(
    o: &ScanOptions,
    schema: &SchemaRef,
    from: ScanPosition,
    fetch: usize,
    tx: &mpsc::Sender<Result<Fetched>>,
) -> Result<()> {
    let mut client = o.connect.connect_retrying().await?;
    let ranges: Vec<Option<Range>> = match &o.split {
        Some((_, r)) => r.iter().copied().map(Some).collect(),
        None => vec![None],
    };
    for (i, range) in ranges.into_iter().enumerate().skip(from.range) {
        let skip = if i == from.range {
            from.rows as usize
        } else {
            0
        };
        let read = RangeRead {
            sql: o.sql(schema, range),
            index: i,
            skip,
            fetch,
        };
        if !read.run(&mut client, schema, tx).await? {
            return Ok(()); // the job stopped
        }
    }
    Ok(())
}

/// One range's read through a cursor.
struct RangeRead {
    sql: String,
    index: usize,
    /// Rows already read before a restore.
    skip: usize,
    fetch: usize,
}

impl RangeRead {
    /// Send the range's rows; false when the job stopped taking them.
    async fn run(
        mut self,
        client: &mut tokio_postgres::Client,
        schema: &SchemaRef,
        tx: &mpsc::Sender<Result<Fetched>>,
    ) -> Result<bool> {
        let t = client
            .transaction()
            .await
            .map_err(|e| pg_error("cannot begin", e))?;
        let stmt = t
            .prepare(&self.sql)
            .await
            .map_err(|e| pg_error(&format!("cannot read ({})", self.sql), e))?;
        let portal = t
            .bind(&stmt, &[])
            .await
            .map_err(|e| pg_error("cannot read", e))?;
        loop {
            let rows = t
                .query_portal(&portal, self.fetch as i32)
                .await
                .map_err(|e| pg_error("cannot read", e))?;
            if rows.is_empty() {
                break;
            }
            let drop = self.skip.min(rows.len());
            self.skip -= drop;
            if drop < rows.len() {
                let batch = to_batch(&rows[drop..], schema)?;
                if tx
                    .send(Ok(Fetched {
                        range: self.index,
                        batch,
                    }))
                    .await
                    .is_err()
                {
                    return Ok(false);
                }
            }
        }
        t.commit()
            .await
            .map_err(|e| pg_error("cannot end the read", e))?;
        Ok(true)
    }
}

/// A running scan.
struct JdbcScan {
    ctx: SourceContext,
    rx: mpsc::Receiver<Result<Fetched>>,
    position: ScanPosition,
}

impl Source for JdbcScan {
    fn next(&mut self) -> BoxFuture<'_, Result<SourceEvent>> {
        Box::pin(async move {
            match self.rx.recv().await {
                None => Ok(SourceEvent::End),
                Some(Err(e)) => Err(e),
                Some(Ok(f)) => {
                    if f.range != self.position.range {
                        self.position = ScanPosition {
                            range: f.range,
                            rows: 0,
                        };
                    }
                    self.position.rows += f.batch.num_rows() as u64;
                    JobMetrics::add(&self.ctx.metrics.rows_in, f.batch.num_rows());
                    Ok(SourceEvent::Batch(f.batch))
                }
            }
        })
    }

    fn snapshot(&mut self) -> Result<Option<String>> {
        serde_json::to_string(&self.position)
            .map(Some)
            .map_err(|e| EngineError::State(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::table;

    #[test]
    fn bounds_are_cut_into_even_ranges() {
        let r = ranges(1, 10, 3);
        let got: Vec<(i64, i64)> = r.iter().map(|r| (r.lo, r.hi)).collect();
        assert_eq!(got, [(1, 4), (5, 7), (8, 10)]);
        assert_eq!(ranges(5, 6, 4).len(), 2, "never more ranges than values");
        let wide = ranges(i64::MIN, i64::MAX, 2);
        assert_eq!((wide[0].lo, wide[1].hi), (i64::MIN, i64::MAX));
        assert_eq!(wide[0].hi + 1, wide[1].lo);
    }

    #[test]
    fn partition_options_come_together() {
        let t = table(
            &[
                ("connector", "jdbc"),
                ("url", "postgres://h/db"),
                ("table-name", "sensors"),
                ("scan.partition.column", "id"),
                ("scan.partition.num", "2"),
            ],
            &[],
        );
        let err = ScanOptions::parse(&t).unwrap_err();
        assert_eq!(
            err,
            "option 'scan.partition.column' needs the option 'scan.partition.lower-bound' too"
        );
    }
}
