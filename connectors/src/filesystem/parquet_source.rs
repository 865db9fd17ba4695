//! Reading Parquet files (`'format' = 'parquet'`): one file, a directory, or a partitioned
//! tree (`dt=2024-01-01/facility=f-1/part-0.parquet`, the partition columns' values taken from
//! the path, as Flink does), through the `parquet` crate's Arrow reader: columns arrive as
//! Arrow arrays, with no row conversion. Only the column chunks of the columns the query reads
//! are read (a projection mask); the others come out NULL. Columns are cast to the declared
//! types (`parquet_conform`), so files of other writers read. Files are read in path order; the
//! checkpointed position is the file and the rows of it already read.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use futures::future::BoxFuture;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};
use weir_engine::connector::{Source, SourceContext, SourceEvent};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};

use super::parquet_conform::conform;
use super::{FileOptions, NAME};

/// Flink's name for a NULL partition value in a path.
pub(super) const DEFAULT_PARTITION: &str = "__DEFAULT_PARTITION__";

/// One file to read and the partition values its path gives (`column=value` directories).
#[derive(Debug, Clone, PartialEq)]
struct PartFile {
    path: PathBuf,
    partition: Vec<(String, String)>,
}

/// Where a Parquet source is: files before `file` are read, and `rows` rows of that one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct ParquetPosition {
    file: usize,
    rows: u64,
}

/// A running Parquet source.
pub(super) struct ParquetSource {
    ctx: SourceContext,
    files: Vec<PartFile>,
    position: ParquetPosition,
    reader: Option<ParquetRecordBatchReader>,
    /// The columns of the source's schema that are partition columns.
    partition_columns: Vec<usize>,
    /// The columns the query reads.
    used: Vec<bool>,
}

impl ParquetSource {
    pub(super) fn new(ctx: SourceContext, options: &FileOptions) -> Result<Self> {
        let files = list_tree(&options.local_path())?;
        let schema = ctx.schema.clone();
        let partition_columns = ctx
            .table
            .partition_by
            .iter()
            .filter_map(|p| schema.index_of(p).ok())
            .collect();
        let n = schema.fields().len();
        let mut used = vec![ctx.used_columns.is_none(); n];
        for &i in ctx.used_columns.iter().flatten() {
            used[i] = true;
        }
        let position = match &ctx.restore {
            Some(p) => serde_json::from_str(p).map_err(|e| {
                EngineError::State(format!("unreadable Parquet position ({e}): '{p}'"))
            })?,
            None => ParquetPosition::default(),
        };
        Ok(Self {
            ctx,
            files,
            position,
            reader: None,
            partition_columns,
            used,
        })
    }

    /// A reader of the current file from the row the position names, of the used columns.
    fn open(&self) -> Result<ParquetRecordBatchReader> {
        let f = &self.files[self.position.file];
        let fail = |e: &dyn std::fmt::Display| {
            EngineError::connector(NAME, format!("cannot read '{}': {e}", f.path.display()))
        };
        let file = File::open(&f.path).map_err(|e| fail(&e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fail(&e))?;
        let in_file = builder.schema().clone();
        let roots: Vec<usize> = self
            .ctx
            .schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| self.used[*i] && !self.partition_columns.contains(i))
            .filter_map(|(_, field)| column_of(&in_file, field.name()))
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder
            .with_projection(mask)
            .with_batch_size(self.ctx.batch_size.max(1))
            .with_offset(self.position.rows as usize)
            .build()
            .map_err(|e| fail(&e))
    }

    /// `batch` (the file's used columns) in the source's columns: cast to their types, the
    /// partition columns from the path, NULL for the columns not read.
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let f = &self.files[self.position.file];
        let n = batch.num_rows();
        let schema: &SchemaRef = &self.ctx.schema;
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (i, field) in schema.fields().iter().enumerate() {
            let value = f
                .partition
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(field.name()));
            let col = match (self.partition_columns.contains(&i), value) {
                (true, Some((_, v))) if v != DEFAULT_PARTITION => {
                    cast(&StringArray::from(vec![v.as_str(); n]), field.data_type())?
                }
                (true, _) => new_null_array(field.data_type(), n),
                (false, _) => match column_of(&batch.schema(), field.name()) {
                    Some(j) if self.used[i] => self.read_as_declared(batch.column(j), i)?,
                    _ => new_null_array(field.data_type(), n),
                },
            };
            cols.push(col);
        }
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    }

    /// Column `i` of the source as it is declared, from `array`, the file's column of that name.
    fn read_as_declared(&self, array: &ArrayRef, i: usize) -> Result<ArrayRef> {
        let field = self.ctx.schema.field(i);
        conform(array, field.data_type()).map_err(|e| {
            let declared = self
                .ctx
                .table
                .columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(field.name()))
                .map_or_else(|| field.data_type().to_string(), |c| c.sql_type.clone());
            EngineError::connector(
                NAME,
                format!(
                    "cannot read '{}': column `{}` is {} in the file, which cannot be read as \
                     {declared}: {e}",
                    self.files[self.position.file].path.display(),
                    field.name(),
                    array.data_type(),
                ),
            )
        })
    }

    /// The next batch, opening files in turn; `None` after the last.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while self.position.file < self.files.len() {
            if self.reader.is_none() {
                self.reader = Some(self.open()?);
            }
            let next = self.reader.as_mut().and_then(|r| r.next());
            match next {
                Some(Ok(b)) => {
                    let out = self.conform(&b)?;
                    self.position.rows += b.num_rows() as u64;
                    JobMetrics::add(&self.ctx.metrics.rows_in, b.num_rows());
                    return Ok(Some(out));
                }
                Some(Err(e)) => {
                    let path = self.files[self.position.file].path.display().to_string();
                    return Err(EngineError::connector(
                        NAME,
                        format!("cannot read '{path}': {e}"),
                    ));
                }
                None => {
                    self.reader = None;
                    self.position = ParquetPosition {
                        file: self.position.file + 1,
                        rows: 0,
                    };
                }
            }
        }
        Ok(None)
    }
}

impl Source for ParquetSource {
    fn next(&mut self) -> BoxFuture<'_, Result<SourceEvent>> {
        Box::pin(async move {
            Ok(match self.next_batch()? {
                Some(b) => SourceEvent::Batch(b),
                None => SourceEvent::End,
            })
        })
    }

    fn snapshot(&mut self) -> Result<Option<String>> {
        Ok(Some(serde_json::to_string(&self.position).map_err(
            |e| EngineError::State(format!("Parquet position: {e}")),
        )?))
    }
}

/// The index of column `name` (case-insensitive) in `schema`.
fn column_of(schema: &SchemaRef, name: &str) -> Option<usize> {
    schema
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(name))
}

/// The files under `root` (itself when it is a file), in path order, with the partition
/// values of their directories; hidden names (`.`, `_`) are skipped, as in Flink.
fn list_tree(root: &Path) -> Result<Vec<PartFile>> {
    let fail = |p: &Path, e: std::io::Error| {
        EngineError::connector(NAME, format!("cannot read '{}': {e}", p.display()))
    };
    let meta = std::fs::metadata(root).map_err(|e| fail(root, e))?;
    if !meta.is_dir() {
        return Ok(vec![PartFile {
            path: root.to_path_buf(),
            partition: vec![],
        }]);
    }
    let mut out = Vec::new();
    let mut dirs = VecDeque::from([(root.to_path_buf(), Vec::new())]);
    while let Some((dir, partition)) = dirs.pop_front() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| fail(&dir, e))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let path = e.path();
            if path.is_dir() {
                let mut p: Vec<(String, String)> = partition.clone();
                if let Some((k, v)) = name.split_once('=') {
                    p.push((k.to_string(), v.to_string()));
                }
                dirs.push_back((path, p));
            } else {
                out.push(PartFile {
                    path,
                    partition: partition.clone(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::DataType;
    use weir_engine::observe::dead_letter::OnError;

    use super::*;
    use crate::test_util::{source_ctx, table, temp_path};

    #[tokio::test]
    async fn only_the_columns_the_query_reads_are_read() {
        let dir = temp_path("parquet-projection");
        std::fs::create_dir_all(&dir).unwrap();
        let columns = [("a", DataType::Int64), ("b", DataType::Utf8)];
        let path = dir.display().to_string();
        let t = table(
            &[
                ("connector", "filesystem"),
                ("path", &path),
                ("format", "parquet"),
            ],
            &columns,
        );
        let schema = t.physical_schema();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["x", "y", "z"])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
        let file = File::create(dir.join("part-0.parquet")).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let mut ctx = source_ctx(t, OnError::Skip, 1024);
        ctx.used_columns = Some(vec![0]);
        let options = FileOptions::parse(&ctx.table).unwrap();
        let mut source = ParquetSource::new(ctx, &options).unwrap();
        let mut rows = Vec::new();
        while let SourceEvent::Batch(b) = source.next().await.unwrap() {
            rows.push(b);
        }
        let b = &rows[0];
        let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(a.values().to_vec(), vec![1, 2, 3]);
        assert_eq!(b.column(1).null_count(), 3, "`b` is not read");
        assert_eq!(
            source.snapshot().unwrap().as_deref(),
            Some(r#"{"file":1,"rows":0}"#)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
