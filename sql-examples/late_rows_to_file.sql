-- One-minute counts per sensor with a tight watermark (1 second of allowed disorder): readings
-- that arrive after their minute fired are dropped from the result, counted, and written with
-- the reason and the window they missed to a late-data table.
-- Run it with: weir run sql-examples/late_rows_to_file.sql
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  `timestamp` TIMESTAMP(3),
  WATERMARK FOR `timestamp` AS `timestamp` - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl', 'format' = 'json');

CREATE TABLE late_readings (
  sensor_id STRING,
  temperature DOUBLE,
  `timestamp` TIMESTAMP(3),
  late_reason STRING,
  missed_window_start TIMESTAMP(3),
  missed_window_end TIMESTAMP(3)
) WITH ('connector' = 'filesystem', 'path' = 'target/sql-examples-out/late_readings.jsonl', 'format' = 'json');

SET 'table.exec.late-data.sink' = 'late_readings';

SELECT sensor_id, window_start, COUNT(*) AS readings, AVG(temperature) AS avg_temp
FROM TABLE(TUMBLE(TABLE sensor_readings, DESCRIPTOR(`timestamp`), INTERVAL '1' MINUTE))
GROUP BY sensor_id, window_start, window_end;
