//! A sink's snapshot as a list of pending commits, in JSON with named fields and a version:
//! `{"version": 2, "pending": [{..}, ..]}`. Version 1 wrote the bare list, each entry an array
//! read by position; [`read`] still accepts it (each entry type reads both of its forms), so a
//! checkpoint taken by an older Weir restores.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// The current version of pending-commit snapshots.
pub const VERSION: u32 = 2;

#[derive(Serialize)]
struct Written<'a, T> {
    version: u32,
    pending: &'a [T],
}

#[derive(Deserialize)]
struct Read<T> {
    pending: Vec<T>,
}

/// `pending` as a snapshot.
pub fn write<T: Serialize>(pending: &[T]) -> Result<String> {
    let w = Written {
        version: VERSION,
        pending,
    };
    serde_json::to_string(&w).map_err(|e| EngineError::State(e.to_string()))
}

/// The pending commits of a snapshot [`write`] (or version 1) wrote; an empty snapshot has
/// none. `what` names the sink in the error.
pub fn read<T: DeserializeOwned>(text: &str, what: &str) -> Result<Vec<T>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    // Read directly (not through an untagged enum, which would lose integer map keys).
    let read = match text.trim_start().starts_with('[') {
        true => serde_json::from_str::<Vec<T>>(text),
        false => serde_json::from_str::<Read<T>>(text).map(|r| r.pending),
    };
    read.map_err(|e| EngineError::State(format!("unreadable {what} state ({e}): '{text}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Entry {
        id: u64,
    }

    #[test]
    fn both_versions_read_back_and_garbage_is_an_error() {
        let text = write(&[Entry { id: 3 }]).unwrap();
        assert_eq!(text, r#"{"version":2,"pending":[{"id":3}]}"#);
        assert_eq!(read::<Entry>(&text, "x").unwrap(), [Entry { id: 3 }]);
        assert_eq!(
            read::<Entry>(r#"[{"id":4}]"#, "x").unwrap(),
            [Entry { id: 4 }]
        );
        assert!(read::<Entry>("", "x").unwrap().is_empty());
        let e = read::<Entry>("[1]", "test sink").unwrap_err().to_string();
        assert!(e.contains("unreadable test sink state"), "{e}");
    }
}
