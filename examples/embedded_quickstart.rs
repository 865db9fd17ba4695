//! Embedding Weir: create a table over a JSON-lines file, run a windowed query, read Arrow batches.

#[tokio::main]
async fn main() -> weir::Result<()> {
    let engine = weir::Engine::new();
    engine.set_quiet(true);
    engine
        .execute(
            "CREATE TABLE sensor_readings (
               sensor_id STRING, temperature DOUBLE, humidity DOUBLE, `timestamp` TIMESTAMP(3),
               WATERMARK FOR `timestamp` AS `timestamp` - INTERVAL '5' SECOND
             ) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl', 'format' = 'json')",
        )
        .await?;
    let mut rows = engine
        .query(
            "SELECT window_start, COUNT(*) AS readings, AVG(temperature) AS avg_temp
             FROM TABLE(TUMBLE(TABLE sensor_readings, DESCRIPTOR(`timestamp`), INTERVAL '1' MINUTE))
             GROUP BY window_start, window_end",
        )
        .await?;
    let mut windows = 0;
    while let Some(batch) = rows.next_batch().await {
        windows += batch?.num_rows();
    }
    println!(
        "{windows} one-minute windows closed; late rows dropped: {}",
        rows.job().late_rows()
    );
    assert!(windows > 0);
    Ok(())
}
