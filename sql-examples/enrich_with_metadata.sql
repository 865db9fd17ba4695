-- Enrichment: readings joined with the sensor register (a file), so each figure names its hall
-- and line and is compared with its own sensor's limit. The register is read to its end
-- before any reading goes unmatched, so the LEFT JOIN is append-only, and the readings keep
-- their event time: a window can follow. A sensor missing from the register gives NULLs.
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  humidity DOUBLE,
  `timestamp` TIMESTAMP(3),
  WATERMARK FOR `timestamp` AS `timestamp` - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl', 'format' = 'json');

CREATE TABLE sensor_register (
  sensor_id STRING,
  hall STRING,
  line INT,
  max_temp DOUBLE
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensor_meta.jsonl', 'format' = 'json');

CREATE VIEW enriched AS
SELECT r.sensor_id, m.hall, m.line, r.temperature, m.max_temp, r.`timestamp`
FROM sensor_readings AS r
LEFT JOIN sensor_register AS m ON r.sensor_id = m.sensor_id;

SELECT hall, window_start, COUNT(*) AS readings,
  COUNT(*) FILTER (WHERE temperature > max_temp) AS above_limit
FROM TABLE(TUMBLE(TABLE enriched, DESCRIPTOR(`timestamp`), INTERVAL '1' MINUTE))
GROUP BY hall, window_start, window_end;
