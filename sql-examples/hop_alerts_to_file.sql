-- Sliding 2-minute averages every 30 seconds, hot sensors written to a JSON-lines file.
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  humidity DOUBLE,
  `timestamp` TIMESTAMP(3),
  WATERMARK FOR `timestamp` AS `timestamp` - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl', 'format' = 'json');

CREATE TABLE hot_sensors (
  sensor_id STRING,
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  avg_temp DOUBLE
) WITH ('connector' = 'filesystem', 'path' = 'target/sql-examples-out/hot_sensors.jsonl', 'format' = 'json');

CREATE VIEW windowed AS
SELECT sensor_id, window_start, window_end, AVG(temperature) AS avg_temp
FROM TABLE(HOP(TABLE sensor_readings, DESCRIPTOR(`timestamp`), INTERVAL '30' SECOND, INTERVAL '2' MINUTE))
GROUP BY sensor_id, window_start, window_end;

INSERT INTO hot_sensors
SELECT sensor_id, window_start, window_end, avg_temp FROM windowed WHERE avg_temp > 25;
