//! Operator state backends: a small key-value contract with RocksDB as the real backend and an
//! in-memory map for tests and tiny jobs.
//!
//! Every stateful operator of a checkpointing job owns one backend instance (its own RocksDB
//! directory under the checkpoint dir's `work/`), writes what changed since the last checkpoint
//! when a barrier passes, and then asks the backend for a durable copy in the checkpoint's
//! directory. For RocksDB that copy is a RocksDB checkpoint: SST files are hard-linked, so only
//! what changed since the previous checkpoint costs I/O.

mod memory;
pub mod rescale;
mod rocks;

use std::path::Path;

use crate::error::Result;

pub use memory::MemoryBackend;
pub use rocks::RocksBackend;

/// The key-value store one operator's state lives in.
pub trait StateBackend: Send {
    /// Set `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// The value of `key`, if present.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Remove `key` (no error if absent).
    fn delete(&mut self, key: &[u8]) -> Result<()>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Write a durable, self-contained copy of the current state into `dir` (which must not
    /// exist yet).
    fn checkpoint(&mut self, dir: &Path) -> Result<()>;
    /// Bytes the state takes on disk or in memory (approximate).
    fn size_bytes(&self) -> u64;

    /// Values of several keys at once.
    fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Write several entries at once.
    fn put_all(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        entries.iter().try_for_each(|(k, v)| self.put(k, v))
    }

    /// Up to `limit` entries under `prefix` whose key is after `after`, in key order.
    fn scan_chunk(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let all = self.scan(prefix)?;
        Ok(all
            .into_iter()
            .filter(|(k, _)| after.is_none_or(|a| k.as_slice() > a))
            .take(limit)
            .collect())
    }

    /// Delete every entry under `prefix`.
    fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
        for (k, _) in self.scan(prefix)? {
            self.delete(&k)?;
        }
        Ok(())
    }
}

/// A backend shared by an operator (which may keep state in it while running) and the task
/// that checkpoints it.
pub type SharedState = std::sync::Arc<std::sync::Mutex<Box<dyn StateBackend>>>;

/// The smallest key greater than every key starting with `prefix` (for range deletes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A byte size such as `512 mb`, `1 gb`, `64kb` or `1048576`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Order-preserving key bytes of an i64 (big-endian with the sign bit flipped).
pub fn i64_key(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`i64_key`].
pub fn i64_from_key(b: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

/// Columns as a batch whose fields are named by position (`c0`, `c1`, ...), as state stores
/// them; expressions address columns by index, so they evaluate over it.
pub fn positional_batch(
    cols: &[datafusion::arrow::array::ArrayRef],
) -> Result<datafusion::arrow::record_batch::RecordBatch> {
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
    let fields: Vec<Field> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
        .collect();
    let rows = cols.first().map_or(0, |c| c.len());
    let opts = RecordBatchOptions::new().with_row_count(Some(rows));
    let schema = std::sync::Arc::new(Schema::new(fields));
    Ok(RecordBatch::try_new_with_options(
        schema,
        cols.to_vec(),
        &opts,
    )?)
}

/// Columns as Arrow IPC stream bytes (how operators store batches of state).
pub fn encode_columns(cols: &[datafusion::arrow::array::ArrayRef]) -> Result<Vec<u8>> {
    use datafusion::arrow::ipc::writer::StreamWriter;
    let batch = positional_batch(cols)?;
    let schema = batch.schema();
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, &schema)?;
    w.write(&batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

/// The inverse of [`encode_columns`]. Corrupt bytes are an error, never a panic or a huge
/// allocation: every length the stream declares is checked against the bytes first, and a
/// panic inside arrow-ipc (59.3 unwraps optional parts of a schema it has verified, such as a
/// schema without a field list) becomes an error.
pub fn decode_columns(bytes: &[u8]) -> Result<Vec<datafusion::arrow::array::ArrayRef>> {
    check_ipc_lengths(bytes)?;
    std::panic::catch_unwind(|| read_ipc(bytes)).unwrap_or_else(|_| {
        Err(crate::error::EngineError::State(
            "corrupt state entry: arrow-ipc could not read its schema".into(),
        ))
    })
}

fn read_ipc(bytes: &[u8]) -> Result<Vec<datafusion::arrow::array::ArrayRef>> {
    use datafusion::arrow::ipc::reader::StreamReader;
    let mut r = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    match r.next() {
        Some(b) => Ok(b?.columns().to_vec()),
        None => Err(crate::error::EngineError::State(
            "a state entry holds no batch".into(),
        )),
    }
}

/// Walk the messages of an Arrow IPC stream and check that each one's metadata and body lie
/// within `bytes` (the reader would otherwise allocate what a corrupt length says).
fn check_ipc_lengths(bytes: &[u8]) -> Result<()> {
    let bad = |what: &str| crate::error::EngineError::State(format!("corrupt state entry: {what}"));
    let mut rest = bytes;
    loop {
        let word = |b: &[u8]| {
            b.get(..4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        };
        let Some(mut len) = word(rest) else {
            return Ok(()); // the end of the stream (the reader reports a missing batch)
        };
        if len == 0xFFFF_FFFF {
            rest = &rest[4..];
            len = word(rest).ok_or_else(|| bad("a message length is cut off"))?;
        }
        rest = &rest[4..];
        if len == 0 {
            return Ok(()); // the end-of-stream marker
        }
        let meta = rest
            .get(..len as usize)
            .ok_or_else(|| bad("a message is longer than the entry"))?;
        let message = datafusion::arrow::ipc::root_as_message(meta)
            .map_err(|e| bad(&format!("unreadable message header: {e}")))?;
        let body =
            usize::try_from(message.bodyLength()).map_err(|_| bad("a negative body length"))?;
        rest = rest[len as usize..]
            .get(body..)
            .ok_or_else(|| bad("a message body is longer than the entry"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(b: &mut dyn StateBackend, ckpt: &Path) {
        b.put(b"w/2", b"two").unwrap();
        b.put(b"w/1", b"one").unwrap();
        b.put(b"x", b"other").unwrap();
        assert_eq!(b.get(b"w/1").unwrap().as_deref(), Some(&b"one"[..]));
        let scan = b.scan(b"w/").unwrap();
        assert_eq!(scan.len(), 2);
        assert_eq!(scan[0].0, b"w/1");
        b.checkpoint(ckpt).unwrap();
        b.delete(b"w/1").unwrap();
        assert_eq!(b.get(b"w/1").unwrap(), None);
        assert!(b.size_bytes() > 0);
    }

    #[test]
    fn corrupt_state_entries_are_errors_not_huge_allocations() {
        use datafusion::arrow::array::{ArrayRef, Int64Array};
        let col: ArrayRef = std::sync::Arc::new(Int64Array::from(vec![1, 2, 3]));
        let bytes = encode_columns(&[col]).unwrap();
        assert_eq!(decode_columns(&bytes).unwrap()[0].len(), 3);
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes()); // found by fuzzing
        assert!(decode_columns(&huge)
            .unwrap_err()
            .to_string()
            .contains("longer than"));
        for cut in [1, 7, bytes.len() / 2, bytes.len() - 9] {
            assert!(decode_columns(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Found by fuzzing: a verified schema message without a field list.
        let no_fields = include_bytes!("schema_without_fields.arrows");
        assert!(decode_columns(no_fields).is_err());
    }

    #[test]
    fn both_backends_keep_order_and_checkpoint() {
        let dir = std::env::temp_dir().join(format!("weir-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut rocks = RocksBackend::open(&dir.join("live"), None).unwrap();
        exercise(&mut rocks, &dir.join("ckpt-rocks"));
        drop(rocks);
        // Restoring from the checkpoint sees the state as it was then.
        let back = RocksBackend::open(&dir.join("live2"), Some(&dir.join("ckpt-rocks"))).unwrap();
        assert_eq!(back.get(b"w/1").unwrap().as_deref(), Some(&b"one"[..]));

        let mut mem = MemoryBackend::default();
        exercise(&mut mem, &dir.join("ckpt-mem"));
        let back = MemoryBackend::restore(&dir.join("ckpt-mem")).unwrap();
        assert_eq!(back.get(b"w/1").unwrap().as_deref(), Some(&b"one"[..]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn i64_keys_sort_like_numbers() {
        let vals = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        let keys: Vec<_> = vals.iter().map(|v| i64_key(*v)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(i64_from_key(&keys[1]), Some(-5));
    }
}
