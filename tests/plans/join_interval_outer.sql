-- Interval joins: a LEFT join with strict bounds written either way round, feeding a window
-- aggregation on the left time column (both time columns stay event-time columns), and a FULL
-- join with a filter beyond the keys and bounds.
CREATE TABLE r (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE TABLE m (sensor_id STRING, kind STRING, severity INT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE VIEW near AS
  SELECT r.sensor_id, r.ts, m.kind FROM r LEFT JOIN m ON r.sensor_id = m.sensor_id
    AND m.ts > r.ts - INTERVAL '10' SECOND AND r.ts + INTERVAL '10' SECOND > m.ts;
SELECT window_start, COUNT(kind) AS maintained, COUNT(*) AS readings
FROM TABLE(TUMBLE(TABLE near, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end;
SELECT r.sensor_id, r.ts, m.kind, m.ts AS m_ts FROM r FULL JOIN m
  ON r.sensor_id = m.sensor_id AND m.severity > 2
  AND m.ts BETWEEN r.ts AND r.ts + INTERVAL '1' MINUTE;
