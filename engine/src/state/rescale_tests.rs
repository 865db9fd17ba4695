use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::expressions::Column;

use super::*;
use crate::operators::row_slots::{bitmap, unbitmap};
use crate::state::MemoryBackend;

const MAX: usize = 16;

fn config() -> ParallelConfig {
    ParallelConfig {
        parallelism: 1,
        max_parallelism: MAX,
        agg_phase: weir_planner::parallel::AggPhase::Auto,
        chaining: true,
    }
}

fn owned(i: usize, p: usize) -> Owned {
    Owned {
        groups: config().key_groups_of(i, p),
        config: config(),
    }
}

fn key_row(k: &str) -> Vec<u8> {
    let c = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
    let col: ArrayRef = Arc::new(StringArray::from(vec![k]));
    c.convert_columns(&[col]).unwrap().row(0).as_ref().to_vec()
}

/// The subtask (of `p`) the keyed exchange sends key `k` to.
fn owner(k: &str, p: usize) -> usize {
    let col: ArrayRef = Arc::new(StringArray::from(vec![k]));
    let g = key_groups(&[col], config()).unwrap()[0];
    config().subtask_of(g, p)
}

fn keys() -> Vec<String> {
    (0..40).map(|i| format!("sensor-{i}")).collect()
}

fn strings(a: &ArrayRef) -> Vec<String> {
    let s = a.as_any().downcast_ref::<StringArray>().unwrap();
    s.iter().map(|v| v.unwrap().to_string()).collect()
}

fn gather_all(shape: &StateShape, old: &[MemoryBackend], p: usize) -> Vec<MemoryBackend> {
    let refs: Vec<&dyn StateBackend> = old.iter().map(|b| b as &dyn StateBackend).collect();
    (0..p)
        .map(|i| {
            let mut new = MemoryBackend::default();
            gather(shape, &refs, &owned(i, p), &mut new).unwrap();
            new
        })
        .collect()
}

#[test]
fn per_key_entries_go_to_the_subtask_their_rows_are_routed_to() {
    let shape = StateShape {
        rules: vec![
            Rule::KeyRow {
                prefix: b"g/k/".to_vec(),
                skip: 0,
            },
            Rule::MinI64 {
                key: b"m/watermark".to_vec(),
            },
        ],
    };
    // Three old subtasks, each holding the keys routed to it, and its watermark.
    let mut old: Vec<MemoryBackend> = (0..3).map(|_| MemoryBackend::default()).collect();
    for k in keys() {
        let b = &mut old[owner(&k, 3)];
        b.put(&[b"g/k/", &key_row(&k)[..]].concat(), k.as_bytes())
            .unwrap();
    }
    for (i, b) in old.iter_mut().enumerate() {
        b.put(b"m/watermark", &(100 - i as i64).to_be_bytes())
            .unwrap();
    }
    for p in [1, 2, 5] {
        let new = gather_all(&shape, &old, p);
        let mut seen = Vec::new();
        for (i, b) in new.iter().enumerate() {
            for (_, v) in b.scan(b"g/k/").unwrap() {
                let k = String::from_utf8(v).unwrap();
                assert_eq!(owner(&k, p), i, "{k} at parallelism {p}");
                seen.push(k);
            }
            let wm = b.get(b"m/watermark").unwrap().unwrap();
            assert_eq!(i64_of(&wm).unwrap(), 98, "the smallest watermark");
        }
        seen.sort();
        let mut all = keys();
        all.sort();
        assert_eq!(seen, all, "every key once at parallelism {p}");
    }
}

#[test]
fn column_entries_are_split_by_row_and_joined_again() {
    let shape = StateShape {
        rules: vec![Rule::Columns {
            prefix: b"w/".to_vec(),
            key: KeyOf::Columns(vec![0]),
        }],
    };
    let mut old: Vec<MemoryBackend> = (0..2).map(|_| MemoryBackend::default()).collect();
    for (n, k) in keys().iter().enumerate() {
        let window = format!("w/{}", n % 2);
        let b = &mut old[owner(k, 2)];
        let mut rows: Vec<(String, i64)> = match b.get(window.as_bytes()).unwrap() {
            Some(v) => {
                let c = decode_columns(&v).unwrap();
                let ks = strings(&c[0]);
                let vs = c[1].as_any().downcast_ref::<Int64Array>().unwrap();
                ks.into_iter().zip(vs.values().iter().copied()).collect()
            }
            None => Vec::new(),
        };
        rows.push((k.clone(), n as i64));
        let ks: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0)));
        let vs: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)));
        b.put(window.as_bytes(), &encode_columns(&[ks, vs]).unwrap())
            .unwrap();
    }
    let new = gather_all(&shape, &old, 3);
    let mut total = 0;
    for (i, b) in new.iter().enumerate() {
        for (_, v) in b.scan(b"w/").unwrap() {
            let c = decode_columns(&v).unwrap();
            for k in strings(&c[0]) {
                assert_eq!(owner(&k, 3), i);
                total += 1;
            }
        }
    }
    assert_eq!(total, keys().len());
}

#[test]
fn held_rows_still_held_move_with_their_key_and_matches() {
    let shape = StateShape {
        rules: vec![Rule::Slots {
            prefix: b"L".to_vec(),
            key: KeyOf::Exprs(vec![Arc::new(Column::new("k", 0))]),
            matched: true,
        }],
    };
    // One old subtask held every key in one slot; rows 0..10 have left, odd rows matched.
    let mut old = MemoryBackend::default();
    let ks: ArrayRef = Arc::new(StringArray::from_iter_values(keys()));
    let n = keys().len();
    old.put(b"Lb/\0\0\0\x07", &encode_columns(&[ks]).unwrap())
        .unwrap();
    let gone: Vec<bool> = (0..n).map(|i| i < 10).collect();
    let matched: Vec<bool> = (0..n).map(|i| i % 2 == 1).collect();
    old.put(b"Lr/\0\0\0\x07", &bitmap(&gone)).unwrap();
    old.put(b"Lm/\0\0\0\x07", &bitmap(&matched)).unwrap();
    let new = gather_all(&shape, &[old], 2);
    let mut held = Vec::new();
    for (i, b) in new.iter().enumerate() {
        for (k, v) in b.scan(b"Lb/").unwrap() {
            let rows = strings(&decode_columns(&v).unwrap()[0]);
            let slot = &k[3..];
            let bits = b.get(&[b"Lm/", slot].concat()).unwrap().unwrap();
            let bits = unbitmap(&bits, rows.len());
            for (r, m) in rows.into_iter().zip(bits) {
                assert_eq!(owner(&r, 2), i);
                let n: usize = r.trim_start_matches("sensor-").parse().unwrap();
                assert_eq!(m, n % 2 == 1, "{r}'s match travels with it");
                held.push(n);
            }
        }
        assert!(b.scan(b"Lr/").unwrap().is_empty(), "only held rows move");
    }
    held.sort_unstable();
    assert_eq!(held, (10..n).collect::<Vec<_>>());
}

#[test]
fn an_entry_no_rule_covers_is_an_error() {
    let mut old = MemoryBackend::default();
    old.put(b"g/groups", b"legacy").unwrap();
    let refs: [&dyn StateBackend; 1] = [&old];
    let mut new = MemoryBackend::default();
    let err = gather(&StateShape::default(), &refs, &owned(0, 2), &mut new).unwrap_err();
    assert!(
        err.to_string().contains("'g/groups' cannot be divided"),
        "{err}"
    );
}
