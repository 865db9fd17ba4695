-- Per-reading statistics: each reading's z-score against the same sensor's last 5 minutes
-- (an OVER aggregate: AVG and STDDEV_POP over a RANGE frame), with a severity label. A
-- reading is emitted once the watermark passes its time, with the frame up to and including it.
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  humidity DOUBLE,
  `timestamp` TIMESTAMP(3),
  WATERMARK FOR `timestamp` AS `timestamp` - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl', 'format' = 'json');

CREATE VIEW scored AS
SELECT sensor_id, `timestamp`, temperature,
  (temperature - AVG(temperature) OVER w) / STDDEV_POP(temperature) OVER w AS z,
  COUNT(*) OVER w AS n,
  MAX(temperature) OVER w AS max_5m
FROM sensor_readings
WINDOW w AS (PARTITION BY sensor_id ORDER BY `timestamp`
  RANGE BETWEEN INTERVAL '5' MINUTE PRECEDING AND CURRENT ROW);

SELECT sensor_id, `timestamp`, temperature, ROUND(z, 2) AS z, max_5m,
  CASE WHEN ABS(z) >= 3 THEN 'critical' ELSE 'warning' END AS severity
FROM scored
WHERE n >= 20 AND ABS(z) >= 2.5;
