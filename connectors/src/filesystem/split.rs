//! Cutting JSON-lines and CSV files into segments that several source subtasks share.
//!
//! The files (one, or a directory's in name order) form one ordered stream cut into segments
//! of about `'source.split-size'` bytes (2 MB by default): segment `k` of a file starts at the
//! line that holds byte `k * size` (just after the line end at or after `k * size - 1`), so
//! every line is in exactly one segment and the cut depends only on the file's content.
//! Segments are numbered through all files; subtask `i` of `n` reads segments `i`, `i + n`, ...
//! and the engine gives their rows the watermarks of a single reader (`runtime/segments.rs`).
//!
//! A position ([`SplitPosition`]) says which segments are read (*stripes*: every `count`-th
//! segment from `index` below `below`) and where partly read ones stop. Positions of any number
//! of subtasks merge into one, so a job restores at another parallelism.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::NAME;

/// Bytes per segment unless `'source.split-size'` says otherwise (or a checkpoint taken with
/// another size is restored). Small enough that the subtasks' shares of a file end together
/// (docs/benchmarks.md: 16 MB left one subtask a segment behind on a 150 MB file), large
/// enough that a segment is many batches.
pub(crate) const DEFAULT_SPLIT_BYTES: u64 = 2 << 20;

/// `'source.split-size'`: the bytes per segment.
pub(crate) fn split_bytes(table: &TableDef) -> Result<u64, String> {
    match table.option("source.split-size") {
        None => Ok(DEFAULT_SPLIT_BYTES),
        Some(v) => weir_engine::state::parse_bytes(v)
            .filter(|b| *b > 0)
            .ok_or_else(|| {
                format!("option 'source.split-size' must be a size like '16 mb', not '{v}'")
            }),
    }
}

/// One file of the stream.
#[derive(Debug, Clone)]
pub(crate) struct PlannedFile {
    pub path: PathBuf,
    /// The name used in record positions.
    pub name: String,
    pub size: u64,
    /// The number of the file's first segment.
    pub first: u64,
}

/// The segments of a stream of files.
#[derive(Debug, Clone)]
pub(crate) struct SegmentPlan {
    pub files: Vec<PlannedFile>,
    pub split_bytes: u64,
    /// Segments over all files.
    pub total: u64,
}

/// Where segment `n` lies: its file and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentBounds {
    pub file: usize,
    pub start: u64,
    pub end: u64,
}

impl SegmentPlan {
    /// Segments of `files` (path, name) of about `split_bytes` each; an empty file is one
    /// empty segment.
    pub(crate) fn new(files: Vec<(PathBuf, String)>, split_bytes: u64) -> Result<Self> {
        let mut planned = Vec::with_capacity(files.len());
        let mut first = 0;
        for (path, name) in files {
            let size = std::fs::metadata(&path)
                .map_err(|e| EngineError::connector(NAME, format!("cannot read '{name}': {e}")))?
                .len();
            planned.push(PlannedFile {
                path,
                name,
                size,
                first,
            });
            first += size.div_ceil(split_bytes).max(1);
        }
        Ok(Self {
            files: planned,
            split_bytes,
            total: first,
        })
    }

    /// The file holding segment `n` and the segment's number within it.
    fn locate(&self, n: u64) -> Option<(usize, u64)> {
        let i = self
            .files
            .partition_point(|f| f.first <= n)
            .checked_sub(1)?;
        (n < self.total).then(|| (i, n - self.files[i].first))
    }

    /// The byte range of segment `n`, found by looking for the line ends at its cuts.
    pub(crate) fn bounds(&self, n: u64) -> Result<SegmentBounds> {
        let (i, k) = self
            .locate(n)
            .ok_or_else(|| EngineError::State(format!("no segment {n} in the files")))?;
        let f = &self.files[i];
        Ok(SegmentBounds {
            file: i,
            start: self.cut(f, k)?,
            end: self.cut(f, k + 1)?,
        })
    }

    /// The first segment that holds byte `offset` of file `file` (or the file's last).
    fn segment_at(&self, file: usize, offset: u64) -> Result<u64> {
        let f = &self.files[file];
        let last = self.files.get(file + 1).map_or(self.total, |n| n.first) - 1;
        for n in f.first..last {
            if self.cut(f, n - f.first + 1)? > offset {
                return Ok(n);
            }
        }
        Ok(last)
    }

    /// Where cut `k` of a file lies: 0 for the first, the size past the last, else just after
    /// the first line end at or after byte `k * split_bytes - 1`.
    fn cut(&self, f: &PlannedFile, k: u64) -> Result<u64> {
        let nominal = k.saturating_mul(self.split_bytes);
        if k == 0 || nominal >= f.size {
            return Ok(if k == 0 { 0 } else { f.size });
        }
        let fail = |e: std::io::Error| {
            EngineError::connector(NAME, format!("cannot read '{}': {e}", f.name))
        };
        let mut file = File::open(&f.path).map_err(fail)?;
        let mut at = nominal - 1;
        file.seek(SeekFrom::Start(at)).map_err(fail)?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = file.read(&mut buf).map_err(fail)?;
            if n == 0 {
                return Ok(f.size);
            }
            if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
                return Ok((at + i as u64 + 1).min(f.size));
            }
            at += n as u64;
        }
    }
}

/// Every `count`-th segment from `index`, below `below`: read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stripe {
    pub count: u64,
    pub index: u64,
    pub below: u64,
}

impl Stripe {
    fn covers(&self, n: u64) -> bool {
        n < self.below && self.count > 0 && n % self.count == self.index
    }
}

/// A split file source's position (as JSON in checkpoints).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SplitPosition {
    /// The segment size the files were cut with (a restore must cut them the same way).
    pub split_bytes: u64,
    /// Segments read.
    pub done: Vec<Stripe>,
    /// Segments read up to a byte offset of their file.
    pub partial: BTreeMap<u64, u64>,
}

impl SplitPosition {
    /// Whether segment `n` is read.
    pub(crate) fn is_done(&self, n: u64) -> bool {
        self.done.iter().any(|s| s.covers(n))
    }

    /// Merge the positions of several subtasks into one.
    pub(crate) fn merge(all: &[SplitPosition]) -> Result<SplitPosition, String> {
        let mut out = SplitPosition {
            split_bytes: all.first().map_or(DEFAULT_SPLIT_BYTES, |p| p.split_bytes),
            ..Default::default()
        };
        for p in all {
            if p.split_bytes != out.split_bytes {
                return Err("the subtasks' positions cut the files differently".to_string());
            }
            for s in &p.done {
                if !out.done.contains(s) {
                    out.done.push(*s);
                }
            }
            for (n, off) in &p.partial {
                let o = out.partial.entry(*n).or_insert(*off);
                *o = (*o).max(*off);
            }
        }
        Ok(out)
    }

    /// The position of a single reader (`{"file", "offset"}`: files before `file` read, and
    /// `offset` bytes of it) in segments of `plan`.
    pub(crate) fn from_single(plan: &SegmentPlan, file: usize, offset: u64) -> Result<Self> {
        let mut p = SplitPosition {
            split_bytes: plan.split_bytes,
            ..Default::default()
        };
        let below = match plan.files.get(file) {
            None => plan.total,
            Some(f) if offset == 0 => f.first,
            Some(_) => {
                let n = plan.segment_at(file, offset)?;
                p.partial.insert(n, offset);
                n
            }
        };
        p.done.push(Stripe {
            count: 1,
            index: 0,
            below,
        });
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(contents: &[&str], split: u64) -> (PathBuf, SegmentPlan) {
        let dir = crate::test_util::temp_path("segments");
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = Vec::new();
        for (i, c) in contents.iter().enumerate() {
            let path = dir.join(format!("f{i}.jsonl"));
            std::fs::write(&path, c).unwrap();
            files.push((path, format!("f{i}.jsonl")));
        }
        let plan = SegmentPlan::new(files, split).unwrap();
        (dir, plan)
    }

    fn text_of(plan: &SegmentPlan, n: u64) -> String {
        let b = plan.bounds(n).unwrap();
        let all = std::fs::read(&plan.files[b.file].path).unwrap();
        String::from_utf8(all[b.start as usize..b.end as usize].to_vec()).unwrap()
    }

    #[test]
    fn segments_cut_at_line_ends_and_cover_every_line_once() {
        let a = "aaaa\nbb\ncccccccc\nd\ne";
        let (_d, plan) = plan_of(&[a, "", "xy\n"], 5);
        assert_eq!(
            plan.total,
            4 + 1 + 1,
            "20 bytes in segments of 5, then one each"
        );
        let texts: Vec<String> = (0..plan.total).map(|n| text_of(&plan, n)).collect();
        assert_eq!(
            texts[..4].concat(),
            a,
            "the first file's segments join up to it"
        );
        assert_eq!(texts[0], "aaaa\n", "byte 4 is the line end at the cut");
        assert_eq!(
            texts[1], "bb\ncccccccc\n",
            "the cut at 10 moves to the next line end"
        );
        assert_eq!((texts[2].as_str(), texts[3].as_str()), ("", "d\ne"));
        assert_eq!((texts[4].as_str(), texts[5].as_str()), ("", "xy\n"));
        assert!(plan.bounds(6).is_err());
    }

    #[test]
    fn a_line_longer_than_a_segment_leaves_empty_segments() {
        let (_d, plan) = plan_of(&["0123456789abcdef\nz\n"], 4);
        let texts: Vec<String> = (0..plan.total).map(|n| text_of(&plan, n)).collect();
        assert_eq!(texts.concat(), "0123456789abcdef\nz\n");
        assert_eq!(texts[0], "0123456789abcdef\n");
        assert!(texts[1..4].iter().all(|t| t.is_empty()), "{texts:?}");
        assert_eq!(texts[4], "z\n");
    }

    #[test]
    fn positions_merge_and_convert_from_a_single_reader() {
        let (_d, plan) = plan_of(&["aaaa\nbbbb\ncccc\n", "dd\n"], 5);
        let p = SplitPosition::from_single(&plan, 0, 10).unwrap();
        assert_eq!(
            p.partial,
            BTreeMap::from([(2, 10)]),
            "byte 10 is in segment 2"
        );
        assert!(p.is_done(1) && !p.is_done(2));
        let q = SplitPosition::from_single(&plan, 1, 0).unwrap();
        assert!(q.is_done(2) && !q.is_done(3));
        let a = SplitPosition {
            split_bytes: 5,
            done: vec![Stripe {
                count: 2,
                index: 0,
                below: 4,
            }],
            partial: BTreeMap::from([(4, 7)]),
        };
        let b = SplitPosition {
            split_bytes: 5,
            done: vec![Stripe {
                count: 2,
                index: 1,
                below: 1,
            }],
            partial: BTreeMap::from([(1, 3)]),
        };
        let m = SplitPosition::merge(&[a.clone(), b]).unwrap();
        assert!(m.is_done(0) && m.is_done(2) && !m.is_done(1) && !m.is_done(3));
        assert_eq!(m.partial, BTreeMap::from([(1, 3), (4, 7)]));
        let other = SplitPosition {
            split_bytes: 6,
            ..a
        };
        assert!(SplitPosition::merge(&[m, other]).is_err());
    }
}
