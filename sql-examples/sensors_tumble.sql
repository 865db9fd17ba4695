-- The main job: 5-minute statistics per sensor from a JSON-lines file.
-- Run it with: weir run sql-examples/sensors_tumble.sql
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  humidity DOUBLE,
  timestamp TIMESTAMP(3),
  WATERMARK FOR timestamp AS timestamp - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl', 'format' = 'json');

SELECT sensor_id,
       TUMBLE_START(timestamp, INTERVAL '5' MINUTE) AS window_start,
       AVG(temperature) AS avg_temp, MAX(temperature) AS max_temp,
       MIN(temperature) AS min_temp, COUNT(*) AS reading_count
FROM sensor_readings
GROUP BY sensor_id, TUMBLE(timestamp, INTERVAL '5' MINUTE);
