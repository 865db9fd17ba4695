-- Correlation: every reading taken within 10 seconds of a maintenance event on the same sensor
-- (an interval join), so readings disturbed by the work can be told apart. Both inputs keep
-- their event time, and rows come out as soon as both watermarks show no match can follow.
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  humidity DOUBLE,
  `timestamp` TIMESTAMP(3),
  WATERMARK FOR `timestamp` AS `timestamp` - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl', 'format' = 'json');

CREATE TABLE maintenance (
  sensor_id STRING,
  kind STRING,
  severity INT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/maintenance.jsonl', 'format' = 'json');

SELECT r.sensor_id, r.`timestamp` AS reading_at, r.temperature, m.kind, m.ts AS maintenance_at
FROM sensor_readings AS r
JOIN maintenance AS m
  ON r.sensor_id = m.sensor_id
  AND r.`timestamp` BETWEEN m.ts - INTERVAL '10' SECOND AND m.ts + INTERVAL '10' SECOND;
