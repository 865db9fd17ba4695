-- Updating results: the latest reading per sensor, and how many sensors are hot right now.
-- The result is a changelog (+I, -U, +U, -D): weir run shows it in the `op` column.
-- Run it with: weir run sql-examples/hot_sensors_now.sql
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  humidity DOUBLE,
  timestamp TIMESTAMP(3),
  WATERMARK FOR timestamp AS timestamp - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl', 'format' = 'json');

-- Keys idle for a day are forgotten, so the state stays bounded.
SET 'table.exec.state.ttl' = '1 d';

-- Deduplication, keep last: one row per sensor, replaced by each newer reading.
CREATE VIEW latest AS
SELECT sensor_id, temperature, timestamp FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor_id ORDER BY timestamp DESC) AS rn
  FROM sensor_readings)
WHERE rn = 1;

-- A GROUP BY without a window over that changelog: rows retracted as sensors cool down.
SELECT COUNT(*) AS hot_sensors, MAX(temperature) AS hottest, AVG(temperature) AS avg_hot
FROM latest
WHERE temperature > 24;
