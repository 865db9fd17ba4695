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

    /// Let the decoder take up to `batch_size` rows from `region`, then finish the line it
    /// stopped in; the bytes taken and the batches.
    fn fast(&mut self, region: &[u8]) -> Result<(usize, Vec<RecordBatch>), ArrowError> {
        let taken = self.decode_some(region)?;
        if taken == 0 {
            return Err(ArrowError::ParseError(
                "the decoder made no progress".into(),
            ));
        }
        let end = if region[taken - 1] == b'\n' {
            taken
        } else {
            match region[taken..].iter().position(|b| *b == b'\n') {
                Some(i) => taken + i + 1,
                None => region.len(),
            }
        };
        // The rest of the line is normally a line end; `feed` flushes first if it holds more.
        let batches = self.feed(&region[taken..end])?;
        Ok((end, batches))
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
        match self.guarded(|d| d.feed(bytes)) {
            Ok(batches) => out.push(batches),
            Err(err) => {
                self.reset()?;
                if hi - lo > 1 {
                    return self.split_lines(segment, starts, (lo, hi), out);
                }
                let raw = trim_line_end(bytes).to_vec();
                out.bad.push(BadLine {
                    index: lo,
                    raw,
                    reason: err.to_string(),
                });
            }
        }
        Ok(())
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

    /// Decode all of `bytes` and flush (more than once when the decoder fills up).
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut batches = Vec::new();
        let mut offset = 0;
        while offset < bytes.len() {
            let n = self.decode_some(&bytes[offset..])?;
            if n == 0 {
                // The decoder is full (more records than lines, e.g. two objects on a line).
                let Some(b) = self.flush()? else {
                    return Err(ArrowError::ParseError(
                        "the decoder made no progress".into(),
                    ));
                };
                batches.push(b);
            }
            offset += n;
        }
        self.end_of_input()?;
        batches.extend(self.flush()?);
        if self.format == Format::Csv {
            // The CSV reader has seen the end of its input; the next bytes need a fresh one.
            self.reset()?;
        }
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
    let mut seen = 0usize;
    for (i, b) in buf.iter().enumerate() {
        if *b == b'\n' {
            seen += 1;
            if seen == max_lines {
                return (i + 1, seen as u64);
            }
        }
    }
    (buf.len(), seen as u64)
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
    fn two_objects_on_one_line_and_full_decoder() {
        let mut d = json_decoder(1);
        let out = d.decode(b"{\"a\":1} {\"a\":2} {\"a\":3}\n").unwrap();
        assert_eq!(values(&out), vec![1, 2, 3]);
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
