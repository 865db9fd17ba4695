//! Decoding whole lines into Arrow batches of about `batch_size` rows, keeping every good line
//! and naming every bad one exactly.
//!
//! The fast path hands a whole region of lines to arrow-json's / arrow-csv's streaming decoder,
//! which stops after `batch_size` rows; the run ("segment") is then cut at the end of that line.
//! A clean file thus decodes at the decoder's own speed with no per-line copies, plus one
//! vectorised count of line ends per segment for exact line numbers. When a segment fails, the
//! next `batch_size` lines are split into 16 parts and each part retried (recursively, down to
//! single lines), so `k` bad lines among `n` cost about `n * log16 k` re-decoding instead of `n`
//! one-line decodes; the good rows keep their order and each bad line is returned with its
//! index and the decoder's reason.

use std::panic::{catch_unwind, AssertUnwindSafe};

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::{csv, json};

use super::{CsvOptions, Format};

/// A line that could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BadLine {
    /// 0-based index of the line within its segment.
    pub index: usize,
    /// The line without its line terminator.
    pub raw: Vec<u8>,
    pub reason: String,
}

/// The result of decoding one segment.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// The good rows, in input order (`None` when the segment had none).
    pub batch: Option<RecordBatch>,
    pub bad: Vec<BadLine>,
}

/// One decoded segment: how many bytes and line ends of the region it took, and its rows.
#[derive(Debug)]
pub(crate) struct Segment {
    pub len: usize,
    pub lines: u64,
    pub decoded: Decoded,
}

/// How many parts a failing run of lines is split into.
const FAN_OUT: usize = 16;

/// Good batches and bad lines collected while isolating bad lines, in input order.
#[derive(Default)]
struct Parts {
    batches: Vec<RecordBatch>,
    bad: Vec<BadLine>,
}

impl Parts {
    fn push(&mut self, batches: Vec<RecordBatch>) {
        self.batches
            .extend(batches.into_iter().filter(|b| b.num_rows() > 0));
    }
}

enum Inner {
    Json(json::reader::Decoder),
    Csv(Box<csv::reader::Decoder>),
}

/// Decodes segments of about `batch_size` rows of one format into one schema.
pub(crate) struct SegmentDecoder {
    schema: SchemaRef,
    format: Format,
    csv: CsvOptions,
    /// Rows per batch: the inner decoder stops after this many, and a fallback segment has at
    /// most this many lines.
    batch_size: usize,
    inner: Inner,
}

impl SegmentDecoder {
    pub(crate) fn new(
        schema: SchemaRef,
        format: Format,
        csv: CsvOptions,
        batch_size: usize,
    ) -> Result<Self, ArrowError> {
        let batch_size = batch_size.max(1);
        let inner = build(&schema, format, csv, batch_size)?;
        Ok(SegmentDecoder {
            schema,
            format,
            csv,
            batch_size,
            inner,
        })
    }

    /// Decode the next segment of `region` (a non-empty run of whole lines, each ending in
    /// `\n`): about `batch_size` rows, cut at a line end.
    pub(crate) fn next_segment(&mut self, region: &[u8]) -> Result<Segment, ArrowError> {
        match self.guarded(|d| d.fast(region)) {
            Ok((len, batches)) => {
                let lines = count_newlines(&region[..len]);
                let batch = self.concat(batches)?;
                Ok(Segment {
                    len,
                    lines,
                    decoded: Decoded {
                        batch,
                        bad: Vec::new(),
                    },
                })
            }
            Err(_) => {
                self.reset()?;
                let (len, lines) = advance_lines(region, self.batch_size);
                let decoded = self.recover(&region[..len])?;
                Ok(Segment {
                    len,
                    lines,
                    decoded,
                })
            }
        }
    }

    /// Decode whole lines of `region` until `batch_size` rows; the bytes taken and the batch.
    fn fast(&mut self, region: &[u8]) -> Result<(usize, Vec<RecordBatch>), ArrowError> {
        let (mut pos, mut rows) = (0, 0);
        while pos < region.len() && rows < self.batch_size {
            let end = line_end(region, pos);
            rows += self.feed_line(&region[pos..end])?;
            pos = end;
        }
        if pos == 0 {
            return Err(ArrowError::ParseError(
                "the decoder made no progress".into(),
            ));
        }
        Ok((pos, self.finish_input()?))
    }

    /// Decode one whole line: it must complete exactly one record (none when it is empty), so
    /// that rows and lines correspond (a record spanning lines, or a line of several, is bad).
    fn feed_line(&mut self, line: &[u8]) -> Result<usize, ArrowError> {
        let before = self.buffered();
        if self.decode_some(line)? < line.len() {
            return Err(ArrowError::ParseError(
                "the line holds more records than fit; a line must hold exactly one".into(),
            ));
        }
        let added = self.buffered() - before;
        let partial = matches!(&self.inner, Inner::Json(d) if d.has_partial_record());
        let want = usize::from(!self.is_empty_line(trim_line_end(line)));
        match (partial, added) {
            (false, n) if n == want => Ok(n),
            (false, n) if n > 1 => Err(ArrowError::ParseError(format!(
                "the line holds {n} records; a line must hold exactly one"
            ))),
            _ => Err(ArrowError::ParseError(
                "the record does not end at the end of its line".into(),
            )),
        }
    }

    /// Rows the decoder holds.
    fn buffered(&self) -> usize {
        match &self.inner {
            Inner::Json(d) => d.len(),
            Inner::Csv(d) => self.batch_size.saturating_sub(d.capacity()),
        }
    }

    /// The input so far is complete: check the last record ended, flush, and (CSV) start a
    /// fresh reader for the next bytes.
    fn finish_input(&mut self) -> Result<Vec<RecordBatch>, ArrowError> {
        self.end_of_input()?;
        let batches: Vec<RecordBatch> = self.flush()?.into_iter().collect();
        if self.format == Format::Csv {
            self.reset()?;
        }
        Ok(batches)
    }

    /// Decode `segment` (whole lines, each ending in `\n`), isolating bad lines.
    pub(crate) fn decode(&mut self, segment: &[u8]) -> Result<Decoded, ArrowError> {
        let starts = line_starts(segment);
        let mut out = Parts::default();
        self.try_lines(segment, &starts, (0, starts.len() - 1), &mut out)?;
        let batch = self.concat(out.batches)?;
        Ok(Decoded {
            batch,
            bad: out.bad,
        })
    }

    /// Like [`Self::decode`] for a segment already known to fail: split it straight away.
    fn recover(&mut self, segment: &[u8]) -> Result<Decoded, ArrowError> {
        let starts = line_starts(segment);
        let lines = starts.len() - 1;
        if lines <= 1 {
            return self.decode(segment);
        }
        let mut out = Parts::default();
        self.split_lines(segment, &starts, (0, lines), &mut out)?;
        let batch = self.concat(out.batches)?;
        Ok(Decoded {
            batch,
            bad: out.bad,
        })
    }

    /// The batches as one (`None` when there are no rows).
    fn concat(&self, mut parts: Vec<RecordBatch>) -> Result<Option<RecordBatch>, ArrowError> {
        parts.retain(|b| b.num_rows() > 0);
        match parts.len() {
            0 => Ok(None),
            1 => Ok(parts.pop()),
            _ => concat_batches(&self.schema, &parts).map(Some),
        }
    }

    /// Decode lines `lo..hi` of `segment` (`starts` are the line offsets) in one go; when that
    /// fails, report a single line as bad or split the range.
    fn try_lines(
        &mut self,
        segment: &[u8],
        starts: &[usize],
        (lo, hi): (usize, usize),
        out: &mut Parts,
    ) -> Result<(), ArrowError> {
        let bytes = &segment[starts[lo]..starts[hi]];
        let err = match self.guarded(|d| d.feed(bytes)) {
            Ok(batches) => {
                out.push(batches);
                return Ok(());
            }
            Err(err) => err.to_string(),
        };
        self.reset()?;
        if hi - lo > 1 {
            return self.split_lines(segment, starts, (lo, hi), out);
        }
        let raw = trim_line_end(bytes).to_vec();
        out.bad.push(BadLine {
            index: lo,
            raw,
            reason: err,
        });
        Ok(())
    }

    /// A line that gives no row: blank (for JSON, only white space), or a CSV comment.
    fn is_empty_line(&self, line: &[u8]) -> bool {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self.format {
            Format::Json | Format::Parquet => line.trim_ascii().is_empty(),
            Format::Csv => {
                line.is_empty() || (self.csv.allow_comments && line.first() == Some(&b'#'))
            }
        }
    }

    /// Retry lines `lo..hi` as [`FAN_OUT`] parts. A wide split keeps the re-decoding low both
    /// for one bad line (about `1/FAN_OUT` extra per level) and for many (few levels).
    fn split_lines(
        &mut self,
        segment: &[u8],
        starts: &[usize],
        (lo, hi): (usize, usize),
        out: &mut Parts,
    ) -> Result<(), ArrowError> {
        let step = (hi - lo).div_ceil(FAN_OUT);
        let mut a = lo;
        while a < hi {
            let b = (a + step).min(hi);
            self.try_lines(segment, starts, (a, b), out)?;
            a = b;
        }
        Ok(())
    }

    /// Run `f`; a panic inside the decoder counts as an error (never take the job down).
    fn guarded<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ArrowError>,
    ) -> Result<T, ArrowError> {
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(result) => result,
            Err(_) => Err(ArrowError::ParseError(
                "the decoder failed on this input".into(),
            )),
        }
    }

    /// Hand `bytes` to the decoder until it is full or they are used up; the bytes taken.
    fn decode_some(&mut self, bytes: &[u8]) -> Result<usize, ArrowError> {
        match &mut self.inner {
            Inner::Json(d) => d.decode(bytes),
            Inner::Csv(d) => d.decode(bytes),
        }
    }

    /// Decode all of `bytes` (whole lines) and flush (more than once when the decoder fills).
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut batches = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            if self.buffered() >= self.batch_size {
                batches.extend(self.flush()?);
            }
            let end = line_end(bytes, pos);
            self.feed_line(&bytes[pos..end])?;
            pos = end;
        }
        batches.extend(self.finish_input()?);
        Ok(batches)
    }

    /// Fail when the input stopped inside a record. JSON's flush checks that by itself; the CSV
    /// decoder would silently keep a record whose quoted field runs past its line, so it is
    /// told that the input ended and must not complete another record because of that.
    fn end_of_input(&mut self) -> Result<(), ArrowError> {
        if let Inner::Csv(d) = &mut self.inner {
            let before = d.capacity();
            d.decode(&[])?;
            if d.capacity() != before {
                return Err(ArrowError::CsvError(
                    "unterminated quoted field: a record must end at the end of its line".into(),
                ));
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match &mut self.inner {
            Inner::Json(d) => d.flush(),
            Inner::Csv(d) => d.flush(),
        }
    }

    /// A fresh decoder: after an error the old one's internal state is unknown.
    fn reset(&mut self) -> Result<(), ArrowError> {
        self.inner = build(&self.schema, self.format, self.csv, self.batch_size)?;
        Ok(())
    }
}

fn build(
    schema: &SchemaRef,
    format: Format,
    csv_options: CsvOptions,
    capacity: usize,
) -> Result<Inner, ArrowError> {
    Ok(match format {
        Format::Json => Inner::Json(
            json::ReaderBuilder::new(schema.clone())
                .with_batch_size(capacity)
                .with_strict_mode(false)
                .with_coerce_primitive(true)
                .build_decoder()?,
        ),
        Format::Csv => {
            let mut b = csv::ReaderBuilder::new(schema.clone())
                .with_batch_size(capacity)
                .with_header(false)
                .with_delimiter(csv_options.delimiter)
                .with_quote(csv_options.quote);
            if csv_options.allow_comments {
                b = b.with_comment(b'#');
            }
            Inner::Csv(Box::new(b.build_decoder()))
        }
        Format::Parquet => {
            return Err(ArrowError::InvalidArgumentError(
                "Parquet files are not read line by line".into(),
            ))
        }
    })
}

/// Offsets where each line of `segment` starts, plus `segment.len()` at the end.
fn line_starts(segment: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    for (i, b) in segment.iter().enumerate() {
        if *b == b'\n' && i + 1 < segment.len() {
            starts.push(i + 1);
        }
    }
    starts.push(segment.len());
    starts
}

/// The end of the line starting at `pos` (after its `\n`, or the end of `bytes`).
fn line_end(bytes: &[u8], pos: usize) -> usize {
    match memchr::memchr(b'\n', &bytes[pos..]) {
        Some(i) => pos + i + 1,
        None => bytes.len(),
    }
}

/// The number of `\n` in `bytes`.
///
/// Optimised builds count 32 lanes at a time, which vectorises (several GB/s); unoptimised
/// builds would run that byte by byte through iterator calls, so they use std's precompiled
/// `memchr` (via `BufRead::skip_until`) instead. Both are tested against each other.
pub(crate) fn count_newlines(bytes: &[u8]) -> u64 {
    if cfg!(debug_assertions) {
        count_newlines_memchr(bytes)
    } else {
        count_newlines_lanes(bytes)
    }
}

fn count_newlines_lanes(bytes: &[u8]) -> u64 {
    let mut total = 0u64;
    let mut lanes = [0u8; 32];
    let mut pending = 0;
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, b) in lanes.iter_mut().zip(block) {
            *lane += u8::from(*b == b'\n');
        }
        pending += 1;
        if pending == 255 {
            total += lanes.iter().map(|l| u64::from(*l)).sum::<u64>();
            lanes = [0; 32];
            pending = 0;
        }
    }
    total += lanes.iter().map(|l| u64::from(*l)).sum::<u64>();
    total + blocks.remainder().iter().filter(|b| **b == b'\n').count() as u64
}

fn count_newlines_memchr(mut rest: &[u8]) -> u64 {
    use std::io::BufRead;
    let mut total = 0;
    while !rest.is_empty() {
        let whole = rest;
        // Reading from a slice cannot fail; it stops after a `\n` or at the end.
        match rest.skip_until(b'\n') {
            Ok(taken) if taken > 0 => total += u64::from(whole[taken - 1] == b'\n'),
            _ => break,
        }
    }
    total
}

/// `line` without a trailing `\n` or `\r\n`.
pub(crate) fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The end of the first `max_lines` lines of `buf` and how many line ends it holds.
pub(crate) fn advance_lines(buf: &[u8], max_lines: usize) -> (usize, u64) {
    if max_lines > 0 {
        if let Some(i) = memchr::memchr_iter(b'\n', buf).nth(max_lines - 1) {
            return (i + 1, max_lines as u64);
        }
    }
    (buf.len(), count_newlines(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::sync::Arc;

    fn json_decoder(max_lines: usize) -> SegmentDecoder {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let csv = CsvOptions {
            delimiter: b',',
            quote: b'"',
            allow_comments: false,
            ignore_first_line: false,
        };
        SegmentDecoder::new(schema, Format::Json, csv, max_lines).unwrap()
    }

    fn values(d: &Decoded) -> Vec<i64> {
        let b = d.batch.as_ref().unwrap();
        b.column(0).as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn keeps_good_lines_around_many_bad_ones() {
        let mut d = json_decoder(100);
        let mut text = String::new();
        for i in 0..40 {
            if i % 7 == 3 {
                text.push_str("{\"a\": oops}\n");
            } else {
                text.push_str(&format!("{{\"a\": {i}}}\n"));
            }
        }
        let out = d.decode(text.as_bytes()).unwrap();
        let expected: Vec<i64> = (0..40).filter(|i| i % 7 != 3).collect();
        assert_eq!(values(&out), expected);
        let bad: Vec<usize> = out.bad.iter().map(|b| b.index).collect();
        assert_eq!(bad, vec![3, 10, 17, 24, 31, 38]);
        assert_eq!(out.bad[0].raw, b"{\"a\": oops}".to_vec());
        // The decoder is usable again after errors.
        let again = d.decode(b"{\"a\": 7}\n").unwrap();
        assert_eq!(values(&again), vec![7]);
        assert!(again.bad.is_empty());
    }

    #[test]
    fn a_line_must_hold_one_record_and_a_record_one_line() {
        let mut d = json_decoder(1);
        let out = d.decode(b"{\"a\":1} {\"a\":2} {\"a\":3}\n").unwrap();
        assert!(out.batch.is_none());
        assert!(
            out.bad[0].reason.contains("a line must hold exactly one"),
            "{:?}",
            out.bad
        );
        // An object split over two lines is two bad lines, not one row (found by fuzzing).
        let mut d = json_decoder(100);
        let seg = d.next_segment(b"{\"a\":\n1}\n{\"a\": 2}\n").unwrap();
        assert_eq!(values(&seg.decoded), vec![2]);
        let bad: Vec<usize> = seg.decoded.bad.iter().map(|b| b.index).collect();
        assert_eq!(bad, vec![0, 1]);
        // And a key whose string runs over a line end, glued from two lines.
        let seg = d
            .next_segment(b"{\"idll}\n\n{\": 7}\n{\"a\": 3}\n")
            .unwrap();
        assert_eq!(values(&seg.decoded), vec![3]);
        let bad: Vec<usize> = seg.decoded.bad.iter().map(|b| b.index).collect();
        assert_eq!(bad, vec![0, 2]);
    }

    #[test]
    fn newline_counters_agree() {
        let samples: [&[u8]; 6] = [b"", b"\n", b"abc", b"a\nb", b"a\n\n\nb\n", &[b'\n'; 9000]];
        for s in samples {
            let expected = s.iter().filter(|b| **b == b'\n').count() as u64;
            assert_eq!(count_newlines_lanes(s), expected);
            assert_eq!(count_newlines_memchr(s), expected);
            assert_eq!(count_newlines(s), expected);
        }
        let mixed: Vec<u8> = (0..100_000u32)
            .map(|i| if i % 7 == 0 { b'\n' } else { b'x' })
            .collect();
        assert_eq!(count_newlines_lanes(&mixed), 14_286);
        assert_eq!(count_newlines_memchr(&mixed), 14_286);
    }

    #[test]
    fn line_helpers() {
        assert_eq!(line_starts(b"a\nbb\n\nc\n"), vec![0, 2, 5, 6, 8]);
        assert_eq!(advance_lines(b"a\nbb\n\nc\n", 2), (5, 2));
        assert_eq!(advance_lines(b"a\nbb", 5), (4, 1));
        assert_eq!(trim_line_end(b"x\r\n"), b"x");
    }
}
