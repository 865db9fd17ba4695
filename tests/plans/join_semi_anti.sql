-- Semi and anti joins: IN/EXISTS and NOT EXISTS, over windows (a window join), within time
-- bounds (an interval join) and against a table that ends (a regular join).
CREATE TABLE r (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'datagen', 'rows-per-second' = '10');
CREATE TABLE m (sensor_id STRING, kind STRING, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'datagen', 'rows-per-second' = '10');
CREATE TABLE retired (sensor_id STRING NOT NULL)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE VIEW per_minute AS SELECT sensor_id, window_start, window_end, AVG(temperature) AS t
  FROM TABLE(TUMBLE(TABLE r, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY sensor_id, window_start, window_end;
CREATE VIEW maintained AS SELECT sensor_id, window_start, window_end, COUNT(*) AS n
  FROM TABLE(TUMBLE(TABLE m, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY sensor_id, window_start, window_end;
SELECT * FROM per_minute p WHERE NOT EXISTS (SELECT 1 FROM maintained q
  WHERE p.sensor_id = q.sensor_id AND p.window_start = q.window_start
  AND p.window_end = q.window_end);
SELECT sensor_id, ts FROM r WHERE EXISTS (SELECT 1 FROM m WHERE m.sensor_id = r.sensor_id
  AND m.ts BETWEEN r.ts - INTERVAL '10' SECOND AND r.ts);
SELECT sensor_id, temperature FROM r WHERE sensor_id NOT IN (SELECT sensor_id FROM retired);
