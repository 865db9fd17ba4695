-- Suspected electricity theft: a meter's consumption over the last minute below half of its
-- own one-hour sliding baseline (a HOP window sliding every 15 seconds) while the meter reports
-- that it is connected, flagged within a minute. The minute and the baseline are joined on
-- their window time (an interval join whose state the watermark frees), and the meter's
-- status valid at that time comes from a temporal join.
CREATE TABLE meter_readings (
  meter_id STRING,
  kwh DOUBLE,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/meter_readings.jsonl', 'format' = 'json');

CREATE TABLE meter_status (
  meter_id STRING,
  connected BOOLEAN,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/meter_status.jsonl', 'format' = 'json');

CREATE VIEW last_minute AS
SELECT meter_id, window_end, window_time, SUM(kwh) AS kwh
FROM TABLE(TUMBLE(TABLE meter_readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY meter_id, window_start, window_end, window_time;

CREATE VIEW baseline AS
SELECT meter_id, window_time, SUM(kwh) / 60 AS kwh_per_minute, COUNT(*) AS readings
FROM TABLE(HOP(TABLE meter_readings, DESCRIPTOR(ts), INTERVAL '15' SECOND, INTERVAL '1' HOUR))
GROUP BY meter_id, window_start, window_end, window_time;

CREATE VIEW compared AS
SELECT m.meter_id, m.window_end, m.window_time, m.kwh, b.kwh_per_minute
FROM last_minute AS m
JOIN baseline AS b
  ON m.meter_id = b.meter_id
  AND b.window_time BETWEEN m.window_time AND m.window_time
WHERE b.readings >= 300;

SELECT c.meter_id, c.window_end, ROUND(c.kwh, 4) AS kwh_last_minute,
  ROUND(c.kwh_per_minute, 4) AS baseline_per_minute
FROM compared AS c
JOIN meter_status FOR SYSTEM_TIME AS OF c.window_time AS s ON c.meter_id = s.meter_id
WHERE s.connected AND c.kwh < 0.5 * c.kwh_per_minute;
