//! Parallelism: keyed operators run as several subtasks, rows routed by key; results do not
//! depend on the parallelism (the conformance cases check every case at 1, 2 and 4).

use std::process::Command;

use serde_json::Value;

use crate::common::*;

/// A JSON-lines file of `rows` readings, half of them from one sensor (`hot`), the rest spread
/// over 50 others, 10 ms apart and up to 3 s out of order; its path.
fn skewed_file(name: &str, rows: usize) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-parallel-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("in.jsonl");
    let mut text = String::new();
    for i in 0..rows {
        let sensor = match i % 2 {
            0 => "hot".to_string(),
            _ => format!("s{}", (i / 2) % 50),
        };
        let jitter = (i * 7919 % 3000) as i64;
        let ms = 1_704_067_200_000 + i as i64 * 10 - jitter;
        let ts = chrono::DateTime::from_timestamp_millis(ms).unwrap();
        let ts = ts.format("%Y-%m-%d %H:%M:%S%.3f");
        text.push_str(&format!(
            "{{\"sensor\":\"{sensor}\",\"v\":{},\"ts\":\"{ts}\"}}\n",
            i % 97
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn tumble_sql(path: &std::path::Path) -> String {
    format!(
        "CREATE TABLE r (sensor STRING, v BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         SELECT sensor, TUMBLE_START(ts, INTERVAL '10' SECOND) AS ws, COUNT(*) AS n,
           SUM(v) AS total, MAX(v) AS top
         FROM r GROUP BY sensor, TUMBLE(ts, INTERVAL '10' SECOND);",
        path.display()
    )
}

fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|v| v.to_string());
    rows
}

#[tokio::test]
async fn a_key_with_half_the_rows_gives_the_same_windows_at_every_parallelism() {
    let path = skewed_file("skew", 20_000);
    let sql = tumble_sql(&path);
    let (reference, job) = query_to_end_at(&sql, 512, Some(1)).await;
    let reference = sorted(reference);
    let counted: i64 = reference.iter().map(|r| r["n"].as_i64().unwrap()).sum();
    let late = job.late_rows() as i64;
    assert_eq!(counted + late, 20_000, "every row counted or late");
    assert!(late > 0, "the file has late rows, so lateness is exercised");
    for p in [2, 3, 4] {
        let (rows, job) = query_to_end_at(&sql, 512, Some(p)).await;
        assert_same_rows(&format!("parallelism {p}"), &sorted(rows), &reference);
        assert_eq!(job.late_rows() as i64, late, "late rows at parallelism {p}");
    }
}

/// The file and a directory holding its lines in five files, read in segments of 8 KB by
/// several subtasks: the windows and the late rows of a single reader.
#[tokio::test]
async fn files_read_in_segments_by_several_subtasks_have_the_late_rows_of_one_reader() {
    let path = skewed_file("segments", 20_000);
    let dir = path.with_file_name("parts");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, part) in lines.chunks(4_000).enumerate() {
        std::fs::write(dir.join(format!("part-{i}.jsonl")), part.join("\n") + "\n").unwrap();
    }
    let (reference, job) = query_to_end_at(&tumble_sql(&path), 512, Some(1)).await;
    let (reference, late) = (sorted(reference), job.late_rows());
    assert!(late > 0, "the file has late rows, so lateness is exercised");
    for input in [&path, &dir] {
        let sql = in_segments(&tumble_sql(input), "8kb");
        for p in [2, 3] {
            let (rows, job) = query_to_end_at(&sql, 512, Some(p)).await;
            let run = format!("{} at parallelism {p}", input.display());
            assert_same_rows(&run, &sorted(rows), &reference);
            assert_eq!(job.late_rows(), late, "late rows: {run}");
        }
    }
}

#[tokio::test]
async fn explain_shows_each_operators_parallelism_and_its_exchanges() {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    let path = skewed_file("explain", 10);
    let ddl = tumble_sql(&path);
    let (ddl, query) = ddl.split_once(";").unwrap();
    engine.execute(ddl).await.unwrap();
    engine
        .execute("SET 'parallelism.default' = '3'")
        .await
        .unwrap();
    let mut out = engine.execute(&format!("EXPLAIN {query}")).await.unwrap();
    let Some(weir::Output::Text(text)) = out.pop() else {
        panic!("EXPLAIN gives text")
    };
    assert!(
        text.contains("WindowAggregate") && text.contains("[parallelism 3]"),
        "{text}"
    );
    assert!(text.contains("Exchange: hash [sensor"), "{text}");
    assert!(
        text.contains("    LocalWindowAggregate [parallelism 3]"),
        "the window aggregation pre-aggregates before its exchange: {text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("Source: r (connector=filesystem") && l.contains("[parallelism 3]")),
        "a file is read in segments by every subtask: {text}"
    );
    engine
        .execute("SET 'table.optimizer.agg-phase-strategy' = 'ONE_PHASE'")
        .await
        .unwrap();
    let mut out = engine.execute(&format!("EXPLAIN {query}")).await.unwrap();
    let Some(weir::Output::Text(text)) = out.pop() else {
        panic!("EXPLAIN gives text")
    };
    assert!(!text.contains("LocalWindowAggregate"), "ONE_PHASE: {text}");
    match engine
        .execute("SET 'table.optimizer.agg-phase-strategy' = 'SOMETIMES'")
        .await
    {
        Err(e) => assert!(e.to_string().contains("ONE_PHASE"), "{e}"),
        Ok(_) => panic!("an unknown strategy accepted"),
    }
    match engine.execute("SET 'parallelism.default' = '0'").await {
        Err(e) => assert!(e.to_string().contains("at least 1"), "{e}"),
        Ok(_) => panic!("parallelism 0 accepted"),
    }
}

/// HOP and CUMULATE windows with AVG, MIN over strings, COUNT(DISTINCT) and FILTER: the rows
/// of one task whether the window aggregation pre-aggregates before its exchange (the default
/// and TWO_PHASE) or takes the rows whole (ONE_PHASE), at every batch size. Sums and averages
/// of DOUBLEs with fractions (`v / 3 + 0.1`, which no DOUBLE holds exactly) are exact sums,
/// so they are the same to the last bit, not only within a tolerance; MIN and MAX of DOUBLEs
/// that are -0.0 or 0.0 (equal, but printed apart) are the same in any arrival order.
#[tokio::test]
async fn pre_aggregated_windows_equal_those_of_one_task() {
    let path = skewed_file("two-phase", 12_000);
    let ddl = tumble_sql(&path);
    let (ddl, _) = ddl.split_once(";").unwrap();
    for window in [
        "HOP(TABLE r, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '15' SECOND)",
        "CUMULATE(TABLE r, DESCRIPTOR(ts), INTERVAL '4' SECOND, INTERVAL '12' SECOND)",
    ] {
        let query = format!(
            "{ddl}; SELECT sensor, window_start, window_end, COUNT(*) AS n, SUM(v) AS total,
               AVG(v) AS mean, SUM(CAST(v AS DOUBLE) / 3 + 0.1) AS frac,
               AVG(CAST(v AS DOUBLE) * 0.37 - 1e9) AS shifted,
               MIN(CAST(v AS STRING)) AS lo, COUNT(DISTINCT v % 7) AS kinds,
               MIN((CAST(v AS DOUBLE) - 50) * 0.0) AS zero_lo,
               MAX((CAST(v AS DOUBLE) - 50) * 0.0) AS zero_hi,
               COUNT(*) FILTER (WHERE v > 50) AS high
             FROM TABLE({window}) GROUP BY sensor, window_start, window_end;"
        );
        let (reference, job) = query_to_end_at(&query, 512, Some(1)).await;
        let (reference, late) = (sorted(reference), job.late_rows());
        assert!(reference.len() > 1_000, "{} windows", reference.len());
        let phase = |p: &str| format!("SET 'table.optimizer.agg-phase-strategy' = '{p}'; {query}");
        let runs = [
            (query.clone(), "default"),
            (phase("TWO_PHASE"), "two-phase"),
            (phase("ONE_PHASE"), "one-phase"),
        ];
        for (sql, how) in &runs {
            for batch in [7, 4096] {
                let (rows, job) = query_to_end_at(sql, batch, Some(3)).await;
                let run = format!("{window}, {how}, batch size {batch}");
                let rows = sorted(rows);
                assert_same_rows(&run, &rows, &reference);
                assert_eq!(rows, reference, "the same bits: {run}");
                let text = |rows: &[Value]| serde_json::to_string(rows).unwrap();
                assert_eq!(text(&rows), text(&reference), "zeros' signs too: {run}");
                assert_eq!(job.late_rows(), late, "late rows: {run}");
            }
        }
    }
}

#[tokio::test]
async fn a_generated_table_has_the_same_rows_however_many_subtasks_generate_it() {
    let sql = "CREATE TABLE g (id BIGINT, code STRING, x DOUBLE, k INT)
         WITH ('connector' = 'datagen', 'number-of-rows' = '5000',
               'rows-per-second' = '100000000', 'fields.id.kind' = 'sequence',
               'fields.id.start' = '1', 'fields.id.end' = '5000', 'fields.code.length' = '6',
               'fields.k.min' = '0', 'fields.k.max' = '9');
         SELECT id, code, x, k FROM g;";
    let reference = sorted(run_query_parallel(sql, 700, 1).await);
    assert_eq!(reference.len(), 5000);
    for p in [2, 3] {
        let rows = sorted(run_query_parallel(sql, 700, p).await);
        assert_same_rows(&format!("datagen at parallelism {p}"), &rows, &reference);
    }
    // Each key's rows arrive from three subtasks in an order that depends on timing; the
    // DOUBLE sums are exact, so the results are the same bits.
    let grouped = "CREATE TABLE g (k INT, x DOUBLE) WITH ('connector' = 'datagen',
         'number-of-rows' = '3000', 'rows-per-second' = '100000000',
         'fields.k.min' = '0', 'fields.k.max' = '9');
         SELECT k, COUNT(*) AS n, SUM(x) AS total, AVG(x / 7) AS mean FROM g GROUP BY k;";
    let at = |rows: Vec<Value>| sorted(final_table(&rows));
    let one = at(run_query_parallel(grouped, 100, 1).await);
    let three = at(run_query_parallel(grouped, 100, 3).await);
    assert_same_rows("GROUP BY over datagen", &three, &one);
    assert_eq!(three, one, "GROUP BY over datagen: the same bits");
}

#[test]
fn a_checkpoint_restores_at_another_parallelism_but_not_with_other_key_groups() {
    let path = skewed_file("restore", 2_000);
    let dir = std::env::temp_dir().join(format!("weir-parallel-ck-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let job = dir.join("job.sql");
    std::fs::create_dir_all(&dir).unwrap();
    let insert = format!(
        "CREATE TABLE out (sensor STRING, ws TIMESTAMP(3), n BIGINT, total BIGINT, top BIGINT)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out {}",
        dir.join("out").display(),
        tumble_sql(&path).split_once(";").unwrap().1
    );
    std::fs::write(
        &job,
        tumble_sql(&path).split_once(";").unwrap().0.to_string() + ";" + &insert,
    )
    .unwrap();
    let ck = dir.join("ck");
    let run = |p: &str| {
        Command::new(weir_bin())
            .args(["run", "-q", "-p", p, "--checkpoint-dir"])
            .arg(&ck)
            .arg(&job)
            .output()
            .expect("weir runs")
    };
    let first = run("2");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = run("3");
    assert!(
        again.status.success(),
        "a restore at parallelism 3: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        format!("SET 'pipeline.max-parallelism' = '64';\n{text}"),
    )
    .unwrap();
    let other = run("2");
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success(), "other key groups must be refused");
    assert!(
        err.contains("128 key groups") && err.contains("64 key groups"),
        "the refusal names both: {err}"
    );
}

/// The counts EXPLAIN ANALYZE gives each operator line (`in=`, `out=`; the totals over its
/// subtasks, not the busiest one's, which depends on timing), in plan order.
fn analyzed_counts(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("in=") || l.contains("out="))
        .map(|l| {
            let l = l.split("busiest").next().unwrap_or(l);
            let words = l.split(|c: char| c.is_whitespace() || c == ',');
            let counts = words.filter(|w| w.starts_with("in=") || w.starts_with("out="));
            counts.collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// Filters, projections and window assignment run inside their input's task (operator
/// chaining, the default) or each in its own (`pipeline.operator-chaining` = false): the same
/// rows, late rows and per-operator counts either way.
#[tokio::test]
async fn chained_operators_give_the_rows_and_counts_of_separate_tasks() {
    let path = skewed_file("chain", 6_000);
    let (ddl, _) = tumble_sql(&path)
        .split_once(";")
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    let ddl =
        format!("{ddl}; CREATE VIEW f AS SELECT sensor, v * 2 AS w, ts FROM r WHERE v % 3 <> 0");
    let query = "SELECT sensor, window_start, COUNT(*) AS n, SUM(w) AS total
         FROM TABLE(TUMBLE(TABLE f, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY sensor, window_start, window_end";
    let mut runs = Vec::new();
    for chaining in ["false", "true"] {
        let sql = format!("{ddl}; SET 'pipeline.operator-chaining' = '{chaining}'; {query};");
        let (rows, job) = query_to_end_at(&sql, 256, Some(2)).await;
        let engine = weir::Engine::new();
        engine.set_quiet(true);
        engine.execute(&format!("{ddl};")).await.unwrap();
        for set in [
            "SET 'parallelism.default' = '2'".to_string(),
            format!("SET 'pipeline.operator-chaining' = '{chaining}'"),
        ] {
            engine.execute(&set).await.unwrap();
        }
        let out = engine
            .execute(&format!("EXPLAIN ANALYZE {query}"))
            .await
            .unwrap();
        let Some(weir::Output::Text(text)) = out.into_iter().last() else {
            panic!("EXPLAIN ANALYZE prints text");
        };
        let counts = analyzed_counts(&text);
        assert!(counts.len() >= 4, "{text}");
        runs.push((sorted(rows), job.late_rows(), counts, text));
    }
    let (unchained, chained) = (&runs[0], &runs[1]);
    assert!(unchained.0.len() > 100, "{} windows", unchained.0.len());
    assert_same_rows("chained against separate tasks", &chained.0, &unchained.0);
    assert_eq!(chained.1, unchained.1, "late rows");
    assert_eq!(chained.2, unchained.2, "{}\n{}", chained.3, unchained.3);
    let bad = "SET 'pipeline.operator-chaining' = 'sometimes'";
    match weir::Engine::new().execute(bad).await {
        Err(e) => assert!(e.to_string().contains("true or false"), "{e}"),
        Ok(_) => panic!("chaining 'sometimes' accepted"),
    }
}

/// Run `sql` (its INSERTs) at parallelism `p` to the end, checkpointing into `ckpt` if given.
async fn insert_at(sql: &str, p: usize, ckpt: Option<&std::path::Path>) {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine.set_batch_size(512);
    engine
        .override_option("parallelism.default", &p.to_string())
        .expect("parallelism");
    if let Some(dir) = ckpt {
        engine.set_checkpointing(Some(weir::CheckpointConfig::new(dir)));
    }
    let job = engine.submit(sql).await.expect("submitted");
    job.wait().await.expect("the job ran");
}

/// The sorted rows of every `part-*` file in `dir`, and the files' names.
fn parts(dir: &std::path::Path) -> (Vec<Value>, Vec<String>) {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("part-") {
            names.push(name);
        }
    }
    names.sort();
    (sorted(crate::checkpoints::committed_rows(dir)), names)
}

/// A windowed job into a directory at parallelism 2 writes one file per sink subtask (one per
/// subtask and checkpoint when it checkpoints), holding together the rows of one task.
#[tokio::test]
async fn each_sink_subtask_writes_its_own_files_and_together_they_hold_the_rows_of_one() {
    let path = skewed_file("sinks", 20_000);
    let base = path.with_file_name("out");
    let sql = |out: &std::path::Path| {
        let query = tumble_sql(&path);
        let (ddl, select) = query.split_once("SELECT").unwrap();
        format!(
            "{ddl} CREATE TABLE o (sensor STRING, ws TIMESTAMP(3), n BIGINT, total BIGINT,
               top BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'json');
             INSERT INTO o SELECT{select}",
            out.display()
        )
    };
    insert_at(&sql(&base.join("one")), 1, None).await;
    let (reference, names) = parts(&base.join("one"));
    assert_eq!(names, ["part-0.jsonl"]);
    assert!(reference.len() > 100, "{} windows", reference.len());
    insert_at(&sql(&base.join("two")), 2, None).await;
    let (rows, names) = parts(&base.join("two"));
    assert_eq!(names, ["part-0.jsonl", "part-1.jsonl"]);
    assert_same_rows("two subtasks", &rows, &reference);
    let ckpt = base.join("ckpt");
    insert_at(&sql(&base.join("committed")), 2, Some(&ckpt)).await;
    let (rows, names) = parts(&base.join("committed"));
    assert_same_rows("two subtasks, checkpointing", &rows, &reference);
    for subtask in ["0", "1"] {
        let theirs = names
            .iter()
            .filter(|n| n.split('-').nth(2) == Some(subtask));
        assert!(
            theirs.count() > 0,
            "subtask {subtask} committed files: {names:?}"
        );
    }
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
