-- Versioned reference data: each reading corrected with the calibration offset that was valid
-- at the reading's own time (an event-time temporal join), not the one valid now. A sensor
-- recalibrated at 00:03 has its earlier readings corrected with the earlier offset; readings
-- taken before a sensor's first calibration keep NULLs (LEFT JOIN).
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  humidity DOUBLE,
  `timestamp` TIMESTAMP(3),
  WATERMARK FOR `timestamp` AS `timestamp` - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl', 'format' = 'json');

CREATE TABLE calibrations (
  sensor_id STRING,
  offset_c DOUBLE,
  valid_from TIMESTAMP(3),
  WATERMARK FOR valid_from AS valid_from - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/calibrations.jsonl', 'format' = 'json');

-- The latest calibration per sensor, by event time: a versioned view, as in Flink.
CREATE VIEW current_calibration AS
SELECT sensor_id, offset_c, valid_from FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor_id ORDER BY valid_from DESC) AS rn
  FROM calibrations)
WHERE rn = 1;

SELECT r.sensor_id, r.`timestamp`, r.temperature, c.offset_c,
  r.temperature + c.offset_c AS corrected, c.valid_from AS calibrated_at
FROM sensor_readings AS r
LEFT JOIN current_calibration FOR SYSTEM_TIME AS OF r.`timestamp` AS c
  ON r.sensor_id = c.sensor_id;
