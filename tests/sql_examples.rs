//! Every job in `sql-examples/` runs to completion (paths resolved against the repository).

use crate::common::*;

#[tokio::test]
async fn every_example_runs() {
    let dir = root().join("sql-examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    for f in files {
        let sql = absolutize_paths(&std::fs::read_to_string(&f).unwrap(), &root());
        let engine = weir::Engine::new();
        engine.set_quiet(true);
        let outputs = engine
            .execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut produced = 0;
        for o in outputs {
            match o {
                weir::Output::Stream(s) => {
                    produced += s
                        .collect()
                        .await
                        .unwrap()
                        .iter()
                        .map(|b| b.num_rows())
                        .sum::<usize>()
                }
                weir::Output::Job(j) => {
                    j.wait()
                        .await
                        .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                    produced += weir::engine_metrics::get(&j.metrics().rows_out) as usize;
                }
                _ => {}
            }
        }
        assert!(produced > 0, "{} produced no rows", f.display());
    }
}

#[tokio::test]
async fn main_example_matches_a_hand_computed_window() {
    let sql = absolutize_paths(
        &std::fs::read_to_string(root().join("sql-examples/sensors_tumble.sql")).unwrap(),
        &root(),
    );
    let rows = run_query(&sql, 8192).await;
    // Recompute the first 5-minute window of one sensor from the data file.
    let data = read_jsonl(&root().join("sql-examples/data/sensors.jsonl"));
    let first: Vec<f64> = data
        .iter()
        .filter(|r| {
            r["sensor_id"] == "sensor-0000"
                && r["timestamp"].as_str().unwrap() < "2024-01-01 00:05:00"
        })
        .map(|r| r["temperature"].as_f64().unwrap())
        .collect();
    let row = rows
        .iter()
        .find(|r| r["sensor_id"] == "sensor-0000" && r["window_start"] == "2024-01-01 00:00:00.000")
        .expect("first window of sensor-0000");
    assert_eq!(row["reading_count"].as_u64().unwrap() as usize, first.len());
    let max = first.iter().cloned().fold(f64::MIN, f64::max);
    assert_eq!(row["max_temp"].as_f64().unwrap(), max);
}

#[tokio::test]
async fn meter_theft_flags_the_bypassed_meters_only_while_they_report_connected() {
    let sql = absolutize_paths(
        &std::fs::read_to_string(root().join("sql-examples/meter_theft.sql")).unwrap(),
        &root(),
    );
    // The data bypasses m-003 from 01:20 to 01:50 and m-007 from 01:35 to 02:20; m-007
    // reports itself disconnected from 01:40 to 02:00.
    for batch in [7, 8192] {
        let rows = run_query(&sql, batch).await;
        let minute = |r: &serde_json::Value| r["window_end"].as_str().unwrap()[11..16].to_string();
        let of = |m: &str| -> Vec<String> {
            rows.iter()
                .filter(|r| r["meter_id"] == m)
                .map(minute)
                .collect()
        };
        assert_eq!(
            of("m-003").len() + of("m-007").len(),
            rows.len(),
            "{rows:?}"
        );
        assert!(of("m-003")
            .iter()
            .all(|t| ("01:21".."01:51").contains(&t.as_str())));
        let m7 = of("m-007");
        assert!(m7.contains(&"01:40".to_string()) && m7.contains(&"02:01".to_string()));
        assert!(
            !m7.iter().any(|t| ("01:41".."02:01").contains(&t.as_str())),
            "flagged while disconnected: {m7:?}"
        );
    }
}
