-- Temporal joins: each reading with the calibration valid at its own time, from a table whose
-- rows are versions (LEFT: readings before any calibration keep NULLs), and refused forms.
CREATE TABLE r (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'datagen', 'rows-per-second' = '10');
CREATE TABLE cal (sensor_id STRING, offset_c DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'datagen', 'rows-per-second' = '1');
CREATE TABLE meta (sensor_id STRING, hall STRING)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
SELECT r.sensor_id, r.ts, r.temperature + c.offset_c AS corrected
FROM r LEFT JOIN cal FOR SYSTEM_TIME AS OF r.ts AS c ON r.sensor_id = c.sensor_id;
SELECT r.sensor_id, m.hall FROM r JOIN meta FOR SYSTEM_TIME AS OF r.ts AS m
  ON r.sensor_id = m.sensor_id;
SELECT r.sensor_id, c.offset_c FROM r RIGHT JOIN cal FOR SYSTEM_TIME AS OF r.ts AS c
  ON r.sensor_id = c.sensor_id;
