//! The bounded `filesystem` source: reads one file, or every file of a directory in name order,
//! as JSON lines or CSV, and yields Arrow batches of about `batch_size` rows.
//!
//! Files are read in chunks of [`CHUNK_BYTES`] cut at the last line end, so memory stays bounded
//! for files of any size; the decoder takes about `batch_size` rows at a time from the whole
//! lines waiting (see `decode`). Line numbers are counted exactly (1-based, blank lines
//! included) so a bad record is reported as `path:line`; blank lines decode to nothing.
//!
//! Read by several subtasks (and restored from their positions), the files are cut into
//! segments that the subtasks share (`split.rs`, `split_source.rs`); read by one, as a stream.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use futures::FutureExt;
use weir_engine::connector::{Source, SourceContext, SourceEvent, SourceFactory};
use weir_engine::observe::dead_letter::{BadRecord, OnError};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::decode::{advance_lines, SegmentDecoder};
use super::split::{SegmentPlan, SplitPosition};
use super::split_source::SplitSource;
use super::units::DecoderSpec;
use super::{FileOptions, NAME};

/// Bytes read from a file at a time.
pub const CHUNK_BYTES: usize = 4 << 20;

/// Creates `filesystem` sources.
#[derive(Debug, Default, Clone, Copy)]
pub struct FilesystemSourceFactory;

impl SourceFactory for FilesystemSourceFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        FileOptions::parse(table).map(|_| ())
    }

    fn is_bounded(&self, _table: &TableDef) -> bool {
        true
    }

    /// JSON-lines and CSV files are shared by any number of subtasks, in segments
    /// (`split.rs`); Parquet files are read by one.
    fn max_splits(&self, table: &TableDef) -> usize {
        match FileOptions::parse(table).map(|o| o.format) {
            Ok(super::Format::Parquet) => 1,
            _ => usize::MAX,
        }
    }

    /// One reader's position stays as it is (a restore cuts it into segments); the positions
    /// of several subtasks that read segments merge into one.
    fn merge_positions(
        &self,
        _table: &TableDef,
        positions: &[Option<String>],
    ) -> Result<Option<String>, String> {
        let given: Vec<&String> = positions.iter().flatten().collect();
        match given.as_slice() {
            [] => return Ok(None),
            [one] if serde_json::from_str::<FilePosition>(one).is_ok() => {
                return Ok(Some(one.to_string()))
            }
            _ => {}
        }
        let parsed = given
            .iter()
            .map(|p| serde_json::from_str::<SplitPosition>(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("unreadable filesystem position: {e}"))?;
        let merged = SplitPosition::merge(&parsed)?;
        serde_json::to_string(&merged)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    fn create(&self, ctx: SourceContext) -> Result<Box<dyn Source>> {
        let options =
            FileOptions::parse(&ctx.table).map_err(|m| EngineError::connector(NAME, m))?;
        if options.format == super::Format::Parquet {
            let source = super::parquet_source::ParquetSource::new(ctx, &options)?;
            return Ok(Box::new(source));
        }
        let split = ctx
            .restore
            .as_deref()
            .map(serde_json::from_str::<SplitPosition>);
        if ctx.split.count > 1 || matches!(split, Some(Ok(_))) {
            return split_source(ctx, &options);
        }
        Ok(Box::new(FileSource::new(ctx, options)?))
    }
}

/// A subtask's share of the files, in segments, from where the restored position says.
fn split_source(ctx: SourceContext, options: &FileOptions) -> Result<Box<dyn Source>> {
    let split = ctx
        .restore
        .as_deref()
        .and_then(|text| serde_json::from_str::<SplitPosition>(text).ok());
    // A restored job keeps its checkpoint's cut unless the option names another (so a
    // checkpoint taken under an older default still restores).
    let split_bytes = match &split {
        Some(p) if ctx.table.option("source.split-size").is_none() => p.split_bytes,
        _ => options.split_bytes,
    };
    let plan = SegmentPlan::new(list_files(options)?, split_bytes)?;
    let restored = match (ctx.restore.as_deref(), split) {
        (None, _) => SplitPosition {
            split_bytes: plan.split_bytes,
            ..Default::default()
        },
        (Some(_), Some(p)) => p,
        (Some(text), None) => {
            let p: FilePosition = serde_json::from_str(text).map_err(|e| {
                EngineError::State(format!("unreadable filesystem position ({e}): '{text}'"))
            })?;
            SplitPosition::from_single(&plan, p.file, p.offset)?
        }
    };
    if restored.split_bytes != plan.split_bytes {
        return Err(EngineError::connector(
            NAME,
            format!(
                "option 'source.split-size' is {} bytes but the checkpoint cut the files into \
                 segments of {} bytes: restore with the same value",
                plan.split_bytes, restored.split_bytes
            ),
        ));
    }
    let spec = DecoderSpec {
        schema: ctx.schema.clone(),
        format: options.format,
        csv: options.csv,
        batch_size: ctx.batch_size,
    };
    let source = SplitSource::new(ctx, plan, restored, (spec, options.on_error, options.rate))?;
    Ok(Box::new(source))
}

/// The files behind `options.path`: the file itself, or the regular files of the directory
/// sorted by name (names starting with `.` or `_` are hidden files and skipped, as in Flink).
/// Each comes with the name used in record positions (the path as the user wrote it).
fn list_files(options: &FileOptions) -> Result<Vec<(PathBuf, String)>> {
    let local = options.local_path();
    let shown = options
        .path
        .strip_prefix("file://")
        .unwrap_or(&options.path)
        .to_string();
    let fail =
        |e: std::io::Error| EngineError::connector(NAME, format!("cannot read '{shown}': {e}"));
    let meta = std::fs::metadata(&local).map_err(fail)?;
    if !meta.is_dir() {
        return Ok(vec![(local, shown.clone())]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&local).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let hidden = name.starts_with('.') || name.starts_with('_');
        if !hidden && std::fs::metadata(entry.path()).map_err(fail)?.is_file() {
            let display = Path::new(&shown).join(&name).display().to_string();
            files.push((entry.path(), display));
        }
    }
    files.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    Ok(files)
}

/// A running filesystem source.
struct FileSource {
    ctx: SourceContext,
    files: VecDeque<(PathBuf, String)>,
    /// How many files there were (a position names its file by index).
    total_files: usize,
    current: Option<OpenFile>,
    decoder: SegmentDecoder,
    skip_first_line: bool,
    /// `'format.on-error'`: with `fail` the first bad record stops the job even when the
    /// engine's dead-letter handle would skip it.
    on_error: OnError,
    /// Bytes read at a time ([`CHUNK_BYTES`]; tests use tiny chunks).
    chunk_bytes: usize,
    /// `scan.records-per-second`, and the rows emitted since `started`.
    rate: Option<f64>,
    started: Option<std::time::Instant>,
    emitted: u64,
}

impl FileSource {
    fn new(ctx: SourceContext, options: FileOptions) -> Result<Self> {
        let files: VecDeque<_> = list_files(&options)?.into();
        let (schema, format) = (ctx.schema.clone(), options.format);
        let decoder = SegmentDecoder::new(schema, format, options.csv, ctx.batch_size)
            .map_err(|e| EngineError::connector(NAME, e.to_string()))?;
        let skip_first_line = options.csv.ignore_first_line && format == super::Format::Csv;
        let mut me = FileSource {
            total_files: files.len(),
            ctx,
            files,
            current: None,
            decoder,
            skip_first_line,
            on_error: options.on_error,
            chunk_bytes: CHUNK_BYTES,
            rate: options.rate,
            started: None,
            emitted: 0,
        };
        if let Some(pos) = me.ctx.restore.clone() {
            me.resume(&pos)?;
        }
        Ok(me)
    }

    /// Continue from a position [`Source::snapshot`] returned: `{"file": i, "offset": bytes,
    /// "line": n}` (the next file to open when `offset` is 0 and no file was open).
    fn resume(&mut self, pos: &str) -> Result<()> {
        let p: FilePosition = serde_json::from_str(pos).map_err(|e| {
            EngineError::State(format!("unreadable filesystem position ({e}): '{pos}'"))
        })?;
        let (index, offset, line) = (p.file, p.offset, p.line);
        for _ in 0..index.min(self.files.len()) {
            self.files.pop_front();
        }
        if offset > 0 {
            if let Some((path, name)) = self.files.pop_front() {
                let mut f = OpenFile::open(path, name, 0, self.chunk_bytes)?;
                f.seek(offset, line)?;
                self.current = Some(f);
            }
        }
        Ok(())
    }

    /// The open file with whole lines waiting, moving through the files; `None` after the last.
    fn file_with_lines(&mut self) -> Result<Option<&mut OpenFile>> {
        loop {
            if self.current.is_none() {
                let Some((path, name)) = self.files.pop_front() else {
                    return Ok(None);
                };
                let skip = usize::from(self.skip_first_line);
                self.current = Some(OpenFile::open(path, name, skip, self.chunk_bytes)?);
            }
            if self.current.as_mut().expect("open").has_lines()? {
                return Ok(self.current.as_mut());
            }
            self.current = None;
        }
    }

    /// Decode segments until one yields rows, moving through the files; `End` after the last.
    fn next_batch(&mut self) -> Result<SourceEvent> {
        loop {
            if self.file_with_lines()?.is_none() {
                return Ok(SourceEvent::End);
            }
            let file = self.current.as_mut().expect("a file is open");
            let segment = self
                .decoder
                .next_segment(file.region())
                .map_err(|e| EngineError::connector(NAME, format!("{}: {e}", file.name)))?;
            let first_line = file.line;
            file.consume(segment.len, segment.lines);
            JobMetrics::add(&self.ctx.metrics.bytes_in, segment.len);
            for bad in segment.decoded.bad {
                let position = format!("{}:{}", file.name, first_line + bad.index as u64);
                let record = BadRecord {
                    raw: bad.raw,
                    reason: bad.reason,
                    position,
                };
                dead_letter(&self.ctx, self.on_error, record)?;
            }
            if let Some(batch) = segment.decoded.batch {
                JobMetrics::add(&self.ctx.metrics.rows_in, batch.num_rows());
                return Ok(SourceEvent::Batch(batch));
            }
        }
    }
}

impl FileSource {
    /// `scan.records-per-second`: wait until the rows emitted so far are due.
    async fn pace(&mut self) {
        let Some(rate) = self.rate else { return };
        let started = *self.started.get_or_insert_with(std::time::Instant::now);
        let due = started + std::time::Duration::from_secs_f64(self.emitted as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
    }
}

/// Hand a bad record to the dead letters, or stop with it under `'format.on-error' = 'fail'`.
pub(crate) fn dead_letter(ctx: &SourceContext, on_error: OnError, record: BadRecord) -> Result<()> {
    if on_error == OnError::Fail {
        let msg = format!("bad record at {}: {}", record.position, record.reason);
        return Err(EngineError::Execution(msg));
    }
    ctx.dead_letters.report(record)
}

impl Source for FileSource {
    fn next(&mut self) -> BoxFuture<'_, Result<SourceEvent>> {
        async move {
            self.pace().await;
            let event = self.next_batch()?;
            if let SourceEvent::Batch(b) = &event {
                self.emitted += b.num_rows() as u64;
            }
            Ok(event)
        }
        .boxed()
    }

    fn snapshot(&mut self) -> Result<Option<String>> {
        self.position().map(Some)
    }
}

impl FileSource {
    /// The position after everything read from the files so far.
    fn position(&self) -> Result<String> {
        let waiting = self.files.len() + usize::from(self.current.is_some());
        let index = self.total_files - waiting;
        let (offset, line) = self
            .current
            .as_ref()
            .map_or((0, 1), |f| (f.position(), f.line));
        let p = FilePosition {
            file: index,
            offset,
            line,
        };
        serde_json::to_string(&p).map_err(|e| EngineError::State(e.to_string()))
    }
}

/// Where a filesystem source is, as its checkpoint records it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct FilePosition {
    /// Files before this one (in name order) are read.
    file: usize,
    /// Bytes of that file read; 0 with no file open: start it from the beginning.
    offset: u64,
    /// The line number at `offset` (for dead-letter origins).
    line: u64,
}

/// One file being read (or a byte range of it): a buffer of whole lines not yet decoded, and
/// where they are.
pub(crate) struct OpenFile {
    file: File,
    /// The file's name in record positions.
    pub(crate) name: String,
    buf: Vec<u8>,
    /// The first byte of `buf` not yet handed out.
    start: usize,
    /// The end of the whole lines in `buf` (after a `\n`).
    complete: usize,
    /// The 1-based line number of `buf[start]` (counted from the range's start for a range).
    pub(crate) line: u64,
    eof: bool,
    /// Header lines still to skip.
    skip_lines: usize,
    chunk_bytes: usize,
    /// Bytes read from the file into `buf` so far.
    read: u64,
    /// `buf` ends with a line end supplied at the end of the file (not read from it).
    appended: bool,
    /// The file offset where reading stops (the end of a range; `u64::MAX` for the file).
    limit: u64,
}

impl OpenFile {
    fn open(path: PathBuf, name: String, skip_lines: usize, chunk_bytes: usize) -> Result<Self> {
        let file = File::open(&path)
            .map_err(|e| EngineError::connector(NAME, format!("cannot open '{name}': {e}")))?;
        let buf = Vec::new();
        let (start, complete, line, eof) = (0, 0, 1, false);
        Ok(OpenFile {
            file,
            name,
            buf,
            start,
            complete,
            line,
            eof,
            skip_lines,
            chunk_bytes,
            read: 0,
            appended: false,
            limit: u64::MAX,
        })
    }

    /// Bytes `start..end` of a file (`start` at a line start); header lines are skipped only
    /// from the file's start.
    pub(crate) fn open_range(
        path: PathBuf,
        name: String,
        (start, end): (u64, u64),
        skip_header: bool,
        chunk_bytes: usize,
    ) -> Result<Self> {
        let skip = usize::from(skip_header && start == 0);
        let mut f = OpenFile::open(path, name, skip, chunk_bytes)?;
        f.seek(start, 1)?;
        f.limit = end;
        Ok(f)
    }

    /// The file offset of the first byte not yet decoded.
    pub(crate) fn position(&self) -> u64 {
        let from_file = self.buf.len() - usize::from(self.appended);
        self.read - from_file.saturating_sub(self.start) as u64
    }

    /// Continue reading at byte `offset`, which starts line `line`.
    fn seek(&mut self, offset: u64, line: u64) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        self.file.seek(SeekFrom::Start(offset)).map_err(|e| {
            EngineError::connector(NAME, format!("cannot seek in '{}': {e}", self.name))
        })?;
        self.read = offset;
        self.line = line;
        Ok(())
    }

    /// Make sure whole lines are waiting in [`Self::region`] (skipping header lines first);
    /// false at the end of the file. A short tail of a chunk is topped up with the next one
    /// first, so that batches do not come out small at chunk boundaries.
    pub(crate) fn has_lines(&mut self) -> Result<bool> {
        loop {
            let waiting = self.complete - self.start;
            let enough = self.eof || waiting >= self.chunk_bytes / 4;
            if waiting > 0 && enough && self.skip_lines == 0 {
                return Ok(true);
            }
            if waiting > 0 && self.skip_lines > 0 {
                let (len, lines) = advance_lines(self.region(), 1);
                self.consume(len, lines);
                self.skip_lines -= 1;
                continue;
            }
            if self.eof {
                return Ok(false);
            }
            self.fill()?;
        }
    }

    /// The whole lines read and not yet decoded.
    pub(crate) fn region(&self) -> &[u8] {
        &self.buf[self.start..self.complete]
    }

    /// `len` bytes holding `lines` line ends were decoded.
    pub(crate) fn consume(&mut self, len: usize, lines: u64) {
        self.start += len;
        self.line += lines;
    }

    /// Drop the handed-out bytes and read the next chunk, cutting it after the last line end
    /// (or at the end of the file, where a missing final line end is supplied).
    fn fill(&mut self) -> Result<()> {
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.reserve(self.chunk_bytes);
        let want = (self.chunk_bytes as u64).min(self.limit.saturating_sub(self.read));
        let read = (&mut self.file)
            .take(want)
            .read_to_end(&mut self.buf)
            .map_err(|e| {
                EngineError::connector(NAME, format!("cannot read '{}': {e}", self.name))
            })?;
        self.read += read as u64;
        if (read as u64) < want || self.read >= self.limit {
            self.eof = true;
            if self.buf.last().is_some_and(|b| *b != b'\n') {
                self.buf.push(b'\n');
                self.appended = true;
            }
            self.complete = self.buf.len();
        } else {
            let last_end = self.buf.iter().rposition(|b| *b == b'\n');
            self.complete = last_end.map_or(0, |i| i + 1);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "source_tests.rs"]
pub(crate) mod tests;
