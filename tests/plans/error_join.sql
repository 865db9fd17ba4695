-- Joins that do not run as a stream yet, each refused where its query is: an outer join whose
-- other input never ends (its result would be a changelog), a join without equal keys, time
-- bounds that admit no pair, and a semi join (EXISTS).
CREATE TABLE a (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
WITH ('connector' = 'datagen', 'rows-per-second' = '10');
CREATE TABLE s (sensor_id STRING, hall STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
WITH ('connector' = 'datagen', 'rows-per-second' = '10');
SELECT a.sensor_id, s.hall FROM s LEFT JOIN a ON a.sensor_id = s.sensor_id;
SELECT a.sensor_id, s.hall FROM a JOIN s ON s.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND;
SELECT a.sensor_id, s.hall FROM a JOIN s ON a.sensor_id = s.sensor_id
  AND s.ts BETWEEN a.ts + INTERVAL '1' SECOND AND a.ts;
SELECT sensor_id FROM a WHERE EXISTS (SELECT 1 FROM s WHERE s.sensor_id = a.sensor_id);
