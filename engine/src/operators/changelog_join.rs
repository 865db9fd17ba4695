//! Regular joins whose result is a changelog, as Flink's streaming join: an input is updating
//! (a GROUP BY without a window, a deduplication), or an outer side's other input does not end.
//!
//! Each input's rows are held per key ([`ChangelogSide`]). A row that adds (`+I`, `+U`) is
//! joined with the other input's held rows of its key that pass the rest of the condition and
//! emitted with its own kind; a row that takes back (`-U`, `-D`) takes back those pairs and
//! one equal held row. An outer side's row with no partner is emitted NULL-padded; when its
//! first partner comes the padded row is deleted (`-D`) before the pair, and when its last
//! partner goes it is inserted again (`+I`). A semi join's left row is in the result while it
//! has a partner, an anti join's while it has none. Nothing is late: the output watermark is
//! the smaller input watermark. State is kept for ever, or dropped per key by a TTL.

use datafusion::arrow::array::{new_null_array, Array, ArrayRef};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows};

use super::changelog_side::ChangelogSide;
use super::key_index::Clock;
use super::rows::{kept, keys_converter, mask, pair_batch, pair_schema};
use super::window_aggregate::key_arrays;
use crate::changelog::RowKind;
use crate::error::Result;
use crate::message::{Message, StreamBatch, WATERMARK_MIN};
use crate::observe::op_metrics::{EventCounts, StateSize};
use crate::operator::Operator;
use crate::state::StateBackend;
use weir_planner::stream_plan::{JoinKind, JoinNode, PhysExpr};

/// One side of an output row: a row of the input batch, a held row, or NULLs.
enum Part {
    Input(u32),
    Held(OwnedRow),
    Null,
}

/// Output rows being gathered for one input batch of side `side`.
struct Output {
    side: usize,
    kinds: Vec<i8>,
    parts: [Vec<Part>; 2],
}

impl Output {
    fn push(&mut self, kind: RowKind, left: Part, right: Part) {
        self.kinds.push(kind as i8);
        self.parts[0].push(left);
        self.parts[1].push(right);
    }

    /// The row `i` of the batch as side `self.side`, with `other` as the other side.
    fn own(&mut self, kind: RowKind, i: u32, other: Part) {
        match self.side {
            0 => self.push(kind, Part::Input(i), other),
            _ => self.push(kind, other, Part::Input(i)),
        }
    }

    /// A held row of the other input, NULL-padded (or as it is, for a semi or anti join).
    fn other_alone(&mut self, kind: RowKind, row: &OwnedRow) {
        match self.side {
            0 => self.push(kind, Part::Null, Part::Held(row.clone())),
            _ => self.push(kind, Part::Held(row.clone()), Part::Null),
        }
    }
}

/// A changelog regular join.
pub struct ChangelogJoinOperator {
    kind: JoinKind,
    sides: [ChangelogSide; 2],
    converter: RowConverter,
    filter: Option<PhysExpr>,
    pair_schema: SchemaRef,
    schema: SchemaRef,
    wms: [i64; 2],
    out_wm: i64,
}

impl ChangelogJoinOperator {
    /// The operator for `node`; `ttl[side]` drops that input's idle keys (ms of `clock`).
    pub fn new(node: &JoinNode, ttl: [Option<u64>; 2], clock: Clock) -> Result<Self> {
        let (left, right) = (node.left.schema(), node.right.schema());
        let mut sides = [
            ChangelogSide::new(node.left_keys.clone(), left.clone(), b"cj/L")?,
            ChangelogSide::new(node.right_keys.clone(), right.clone(), b"cj/R")?,
        ];
        for (side, ttl) in sides.iter_mut().zip(ttl) {
            if let Some(ms) = ttl {
                side.set_ttl(ms, clock);
            }
        }
        Ok(Self {
            kind: node.kind,
            converter: keys_converter(&node.left_keys, &left)?,
            sides,
            filter: node.filter.clone(),
            pair_schema: pair_schema(&left, &right),
            schema: node.schema.clone(),
            wms: [WATERMARK_MIN; 2],
            out_wm: WATERMARK_MIN,
        })
    }

    /// For each row of `batch` (input `side`) with a key: the indexes of the other input's held
    /// rows of its key that pass the condition.
    fn partners(&self, side: usize, batch: &RecordBatch, keys: &Rows) -> Result<Vec<Vec<u32>>> {
        let other = &self.sides[1 - side];
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for i in 0..batch.num_rows() {
            if let Some(k) = other.held.get(keys.row(i).as_ref()) {
                pairs.extend((0..k.rows.len() as u32).map(|j| (i as u32, j)));
            }
        }
        let pass = self.condition(side, batch, keys, &pairs)?;
        let mut found = vec![Vec::new(); batch.num_rows()];
        for ((i, j), ok) in pairs.into_iter().zip(pass) {
            if ok {
                found[i as usize].push(j);
            }
        }
        Ok(found)
    }

    /// Whether each pair (row of the batch, held row of its key) passes the rest of the ON
    /// condition.
    fn condition(
        &self,
        side: usize,
        batch: &RecordBatch,
        keys: &Rows,
        pairs: &[(u32, u32)],
    ) -> Result<Vec<bool>> {
        let Some(f) = &self.filter else {
            return Ok(vec![true; pairs.len()]);
        };
        if pairs.is_empty() {
            return Ok(vec![]);
        }
        let other = &self.sides[1 - side];
        let own: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let held = pairs.iter().map(|(i, j)| {
            let k = &other.held[keys.row(*i as usize).as_ref()];
            k.rows[*j as usize].row.row()
        });
        let theirs = other.rows.convert_rows(held)?;
        let pairs = pair_batch(&self.pair_schema, side, batch, &own, theirs)?;
        Ok(kept(&mask(f, &pairs)?))
    }

    /// Apply row `i` (kind `kind`, partners `found` among the other input's held rows of
    /// `key`) to the state, gathering what it changes in the result.
    fn apply(&mut self, out: &mut Output, i: u32, kind: RowKind, key: &[u8], found: &[u32]) {
        let side = out.side;
        let adds = matches!(kind, RowKind::Insert | RowKind::UpdateAfter);
        let (own_alone, other_alone) = (self.alone_in_result(side), self.alone_in_result(1 - side));
        let now = self.sides[1 - side].now();
        if let Some(k) = self.sides[1 - side].held.get_mut(key) {
            k.touch_at(now);
            for &j in found {
                let h = &mut k.rows[j as usize];
                let before = h.matches;
                h.matches = if adds {
                    before + 1
                } else {
                    before.saturating_sub(1)
                };
                if self.kind.emits_pairs() {
                    let pair = Part::Held(h.row.clone());
                    if adds && before == 0 && other_alone == Some(true) {
                        out.other_alone(RowKind::Delete, &h.row);
                    }
                    out.own(kind, i, pair);
                    if !adds && h.matches == 0 && other_alone == Some(true) {
                        out.other_alone(RowKind::Insert, &h.row);
                    }
                } else if side == 1 && (before == 0) != (h.matches == 0) {
                    // A semi (anti) join's left row enters (leaves) when its first partner
                    // comes, and leaves (enters) when its last one goes.
                    let enters = (h.matches > 0) == (self.kind == JoinKind::Semi);
                    let k = if enters {
                        RowKind::Insert
                    } else {
                        RowKind::Delete
                    };
                    out.other_alone(k, &h.row);
                }
            }
        }
        if own_alone.is_some_and(|alone| alone == found.is_empty()) {
            out.own(kind, i, Part::Null);
        }
    }

    /// Whether a row of input `side` with no partner is in the result (`Some(true)`: an outer
    /// side or an anti join's left), a row with partners is (`Some(false)`: a semi join's
    /// left, handled apart), or neither shows alone (`None`).
    fn alone_in_result(&self, side: usize) -> Option<bool> {
        match (self.kind, side) {
            (JoinKind::Semi, 0) => Some(false),
            (JoinKind::Semi | JoinKind::Anti, 1) => None,
            (k, s) if k.keeps_unmatched(s) => Some(true),
            _ => None,
        }
    }

    /// The output batch of `out`, over the input batch `batch`.
    fn build(&self, batch: &RecordBatch, out: Output) -> Result<Option<StreamBatch>> {
        if out.kinds.is_empty() {
            return Ok(None);
        }
        let mut cols = Vec::with_capacity(self.schema.fields().len());
        for (s, parts) in out.parts.iter().enumerate() {
            if s == 1 && !self.kind.emits_pairs() {
                break;
            }
            cols.extend(self.side_columns(s, out.side, batch, parts)?);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), cols)?;
        Ok(Some(StreamBatch::new(batch).with_kinds(out.kinds)))
    }

    /// The columns of input `s` for the output rows `parts`.
    fn side_columns(
        &self,
        s: usize,
        input_side: usize,
        batch: &RecordBatch,
        parts: &[Part],
    ) -> Result<Vec<ArrayRef>> {
        let held: Vec<&OwnedRow> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Held(r) => Some(r),
                _ => None,
            })
            .collect();
        let held = self.sides[s]
            .rows
            .convert_rows(held.iter().map(|r| r.row()))?;
        let mut next_held = 0;
        let picks: Vec<(usize, usize)> = parts
            .iter()
            .map(|p| match p {
                Part::Input(i) => (0, *i as usize),
                Part::Held(_) => {
                    next_held += 1;
                    (1, next_held - 1)
                }
                Part::Null => (2, 0),
            })
            .collect();
        let schema = &self.sides[s].schema;
        let mut cols = Vec::with_capacity(schema.fields().len());
        for (c, f) in schema.fields().iter().enumerate() {
            let null = new_null_array(f.data_type(), 1);
            let input = match s == input_side {
                true => batch.column(c).clone(),
                false => new_null_array(f.data_type(), 0),
            };
            let sources: [&dyn Array; 3] = [input.as_ref(), held[c].as_ref(), null.as_ref()];
            cols.push(interleave(&sources, &picks)?);
        }
        Ok(cols)
    }
}

impl Operator for ChangelogJoinOperator {
    fn name(&self) -> &'static str {
        "Join"
    }

    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        self.process_input(0, batch, out)
    }

    fn process_input(&mut self, side: usize, b: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        for s in &mut self.sides {
            s.sweep();
        }
        let keys = key_arrays(&self.sides[side].keys, &b.batch)?;
        let key_rows = self.converter.convert_columns(&keys)?;
        let rows = self.sides[side].rows.convert_columns(b.batch.columns())?;
        let found = self.partners(side, &b.batch, &key_rows)?;
        let mut gathered = Output {
            side,
            kinds: Vec::new(),
            parts: [Vec::new(), Vec::new()],
        };
        let now = self.sides[side].now();
        for (i, found) in found.iter().enumerate() {
            let kind = b
                .kinds
                .as_ref()
                .map_or(RowKind::Insert, |k| RowKind::from_i8(k[i]));
            let key = key_rows.row(i);
            if keys.iter().any(|k| k.is_null(i)) {
                // A NULL key never matches: only an outer side (or anti join) shows the row.
                if self.alone_in_result(side) == Some(true) {
                    gathered.own(kind, i as u32, Part::Null);
                }
                continue;
            }
            self.apply(&mut gathered, i as u32, kind, key.as_ref(), found);
            let own = &mut self.sides[side];
            match kind {
                RowKind::Insert | RowKind::UpdateAfter => {
                    own.insert(key.as_ref(), rows.row(i), found.len() as u32, now)
                }
                _ => {
                    own.remove(key.as_ref(), rows.row(i));
                }
            }
        }
        if let Some(batch) = self.build(&b.batch, gathered)? {
            out.push(Message::Batch(batch));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Message>) -> Result<()> {
        self.on_input_watermark(0, watermark, out)
    }

    fn on_input_watermark(&mut self, side: usize, wm: i64, out: &mut Vec<Message>) -> Result<()> {
        self.wms[side] = self.wms[side].max(wm);
        let next = self.wms[0].min(self.wms[1]);
        if next > self.out_wm {
            self.out_wm = next;
            out.push(Message::Watermark(next));
        }
        Ok(())
    }

    fn state_size(&self) -> StateSize {
        let (k0, b0) = self.sides[0].size();
        let (k1, b1) = self.sides[1].size();
        StateSize {
            open_windows: 0,
            keys: k0 + k1,
            bytes: b0 + b1,
        }
    }

    fn counts(&self) -> EventCounts {
        EventCounts {
            expired_keys: Some(self.sides.iter().map(|s| s.expired()).sum()),
            ..Default::default()
        }
    }

    fn is_stateful(&self) -> bool {
        true
    }

    fn snapshot(&mut self, state: &mut dyn StateBackend) -> Result<()> {
        for s in &self.sides {
            s.snapshot(state)?;
        }
        Ok(())
    }

    /// Each input's rows split by its join key.
    fn state_shape(&self) -> Option<crate::state::rescale::StateShape> {
        Some(crate::state::rescale::StateShape {
            rules: self.sides.iter().map(|s| s.state_rule()).collect(),
        })
    }

    fn restore(&mut self, state: &dyn StateBackend) -> Result<()> {
        for s in &mut self.sides {
            s.restore(state, &self.converter)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "changelog_join_tests.rs"]
mod tests;
