//! Kafka metadata columns: `ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'`, `partition`,
//! `offset`, `topic`, `key` and `headers` (`MAP<STRING, BYTES>`), appended after the decoded value columns (the order the planner
//! expects). A metadata timestamp can be the event-time column.

use std::ffi::CStr;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BinaryBuilder, Int32Array, Int64Array, MapBuilder, StringArray,
    StringBuilder, TimestampMillisecondArray,
};
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::bindings::{
    rd_kafka_header_add, rd_kafka_header_get_all, rd_kafka_headers_t, rd_kafka_resp_err_t,
};
use rdkafka::message::{BorrowedHeaders, Headers, OwnedHeaders};
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::source::{KafkaSource, LineMeta};
use super::NAME;

/// The metadata keys the Kafka source provides.
pub const KEYS: &[&str] = &[
    "timestamp",
    "partition",
    "offset",
    "topic",
    "key",
    "headers",
];

/// (key start, key length, value range or None for a null value) into `HeaderStore::bytes`.
type HeaderEntry = (usize, usize, Option<(usize, usize)>);

/// The headers of one poll's messages, laid end to end (no allocation per record).
#[derive(Default)]
pub(super) struct HeaderStore {
    bytes: Vec<u8>,
    entries: Vec<HeaderEntry>,
}

impl HeaderStore {
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }

    /// Keep a message's headers; returns (first entry, count).
    pub(super) fn push(&mut self, headers: Option<&BorrowedHeaders>) -> (u32, u32) {
        let first = self.entries.len() as u32;
        for h in headers
            .into_iter()
            .flat_map(|h| (0..h.count()).map(|i| header_at(h, i)))
        {
            let Some(RawHeader { key, value }) = h else {
                continue;
            };
            let k = self.bytes.len();
            self.bytes.extend_from_slice(key);
            let v = value.map(|v| {
                self.bytes.extend_from_slice(v);
                (k + key.len(), v.len())
            });
            self.entries.push((k, key.len(), v));
        }
        (first, self.entries.len() as u32 - first)
    }

    /// A `MAP<STRING, BYTES>` column of the headers of `rows`.
    fn column<'a>(&self, rows: impl Iterator<Item = &'a LineMeta>) -> Result<ArrayRef> {
        let mut b = MapBuilder::new(None, StringBuilder::new(), BinaryBuilder::new());
        for m in rows {
            let (first, n) = (m.headers.0 as usize, m.headers.1 as usize);
            for (ks, kl, v) in &self.entries[first..first + n] {
                let key = String::from_utf8_lossy(&self.bytes[*ks..ks + kl]);
                b.keys().append_value(key);
                match v {
                    Some((vs, vl)) => b.values().append_value(&self.bytes[*vs..vs + vl]),
                    None => b.values().append_null(),
                }
            }
            b.append(true)?;
        }
        Ok(Arc::new(b.finish()))
    }
}

/// Message headers readable as bytes, whichever way the message is held.
pub(crate) trait RawHeaders {
    fn borrowed(&self) -> &BorrowedHeaders;
}

impl RawHeaders for BorrowedHeaders {
    fn borrowed(&self) -> &BorrowedHeaders {
        self
    }
}

impl RawHeaders for OwnedHeaders {
    fn borrowed(&self) -> &BorrowedHeaders {
        self.as_borrowed()
    }
}

/// One header with its key as bytes.
struct RawHeader<'a> {
    key: &'a [u8],
    value: Option<&'a [u8]>,
}

/// Header `idx` as bytes. rdkafka's own accessor unwraps the key as UTF-8 and so panics on a
/// record whose producer sent a non-UTF-8 header key (the broker does not check); this reads
/// the key's bytes instead (a key that is not UTF-8 shows with replacement characters).
#[allow(unsafe_code)] // the workspace's one FFI call: see the SAFETY notes
fn header_at(h: &BorrowedHeaders, idx: usize) -> Option<RawHeader<'_>> {
    let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
    // SAFETY: a `&BorrowedHeaders` is rdkafka's view of a native `rd_kafka_headers_t`: the
    // reference's address is the native pointer (rdkafka's `BorrowedHeaders::as_native_ptr`),
    // valid for the borrow. librdkafka returns a NUL-terminated name and a value of `size`
    // bytes that live as long as the header list.
    let err = unsafe {
        let native = h as *const BorrowedHeaders as *const rd_kafka_headers_t;
        rd_kafka_header_get_all(native, idx, &mut name, &mut value, &mut size)
    };
    if err != rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
        return None;
    }
    // SAFETY: as above; both point into the header list borrowed by `h`.
    let key = unsafe { CStr::from_ptr(name) }.to_bytes();
    let value =
        (!value.is_null()).then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
    Some(RawHeader { key, value })
}

/// Headers whose keys are any bytes (rdkafka's `OwnedHeaders::insert` takes UTF-8 keys only),
/// to produce records as any producer may: for tests and fuzzing.
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
#[allow(unsafe_code)]
pub(crate) fn raw_headers(list: &[(&[u8], Option<&[u8]>)]) -> OwnedHeaders {
    let headers = OwnedHeaders::new_with_capacity(list.len());
    let native = headers.as_borrowed() as *const BorrowedHeaders as *mut rd_kafka_headers_t;
    for (key, value) in list {
        let (v, n) = value.map_or((std::ptr::null(), 0), |v| (v.as_ptr(), v.len() as isize));
        // SAFETY: `native` is the header list `headers` owns (see `header_at`); librdkafka
        // copies the name and value.
        unsafe {
            rd_kafka_header_add(native, key.as_ptr().cast(), key.len() as isize, v.cast(), n)
        };
    }
    headers
}

/// The value of the first header named `key` (`None` when absent or null).
pub(crate) fn header_value<'a>(h: &'a BorrowedHeaders, key: &[u8]) -> Option<&'a [u8]> {
    (0..h.count())
        .filter_map(|i| header_at(h, i))
        .find(|x| x.key == key)
        .and_then(|x| x.value)
}

/// `batch` with the table's metadata columns appended, for the rows at `row_lines`.
pub(super) fn append(
    table: &TableDef,
    batch: RecordBatch,
    row_lines: &[usize],
    meta: &[LineMeta],
    src: &KafkaSource,
) -> Result<RecordBatch> {
    crate::lines::append_metadata(table, batch, |key| {
        let rows = row_lines.iter().map(|l| &meta[*l]);
        Ok(match key {
            "timestamp" => Arc::new(
                TimestampMillisecondArray::from_iter(rows.map(|m| m.timestamp))
                    .with_timezone("UTC"),
            ),
            "partition" => Arc::new(Int32Array::from_iter_values(
                rows.map(|m| src.parts[m.id as usize].partition),
            )),
            "offset" => Arc::new(Int64Array::from_iter_values(rows.map(|m| m.offset))),
            "topic" => Arc::new(StringArray::from_iter_values(
                rows.map(|m| src.parts[m.id as usize].topic.as_str()),
            )),
            "key" => Arc::new(BinaryArray::from_iter(
                rows.map(|m| m.key.map(|(s, l)| &src.keys[s..s + l])),
            )),
            "headers" => src.headers.column(rows)?,
            other => {
                return Err(EngineError::connector(
                    NAME,
                    format!("no metadata key '{other}'"),
                ))
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_keys_that_are_not_utf8_are_read_not_a_panic() {
        // rdkafka's own `Headers::iter` unwraps each key as UTF-8 and panicked here.
        let headers = raw_headers(&[
            (b"plant", Some(b"north")),
            (b"\xff\xfekey", Some(b"\x00\x01")),
            (b"empty", None),
        ]);
        let mut store = HeaderStore::default();
        assert_eq!(store.push(Some(headers.borrowed())), (0, 3));
        assert_eq!(
            header_value(headers.borrowed(), b"\xff\xfekey"),
            Some(&b"\x00\x01"[..])
        );
        assert_eq!(header_value(headers.borrowed(), b"empty"), None);
        assert_eq!(
            header_value(headers.borrowed(), b"plant"),
            Some(&b"north"[..])
        );
        let keys: Vec<String> = store
            .entries
            .iter()
            .map(|(s, l, _)| String::from_utf8_lossy(&store.bytes[*s..s + l]).to_string())
            .collect();
        assert_eq!(keys, ["plant", "\u{fffd}\u{fffd}key", "empty"]);
    }
}
