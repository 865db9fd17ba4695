-- Joins that do not run as a stream, each refused where its query is: a join without equal
-- keys, time bounds that admit no pair, an interval join of an updating input and an unknown
-- hint; and a semi join (EXISTS) that runs.
CREATE TABLE a (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
WITH ('connector' = 'datagen', 'rows-per-second' = '10');
CREATE TABLE s (sensor_id STRING, hall STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
WITH ('connector' = 'datagen', 'rows-per-second' = '10');
SELECT a.sensor_id, s.hall FROM a JOIN s ON s.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND;
SELECT a.sensor_id, s.hall FROM a JOIN s ON a.sensor_id = s.sensor_id
  AND s.ts BETWEEN a.ts + INTERVAL '1' SECOND AND a.ts;
SELECT sensor_id FROM a WHERE EXISTS (SELECT 1 FROM s WHERE s.sensor_id = a.sensor_id);
SELECT d.sensor_id, s.hall FROM (SELECT sensor_id, ts FROM (SELECT *, ROW_NUMBER() OVER
  (PARTITION BY sensor_id ORDER BY ts DESC) AS rn FROM a) WHERE rn = 1) AS d
  JOIN s ON d.sensor_id = s.sensor_id AND s.ts BETWEEN d.ts AND d.ts + INTERVAL '1' SECOND;
SELECT /*+ BROADCAST(s) */ a.sensor_id, s.hall FROM a JOIN s ON a.sensor_id = s.sensor_id;
