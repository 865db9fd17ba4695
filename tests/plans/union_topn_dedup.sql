-- Plan shapes the examples and conformance cases do not have: UNION ALL, top-N, keep-last
-- deduplication and a HAVING over a GROUP BY.
CREATE TABLE a (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE TABLE b (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');

SELECT sensor_id, temperature FROM a WHERE temperature > 30
UNION ALL
SELECT sensor_id, temperature FROM b;

SELECT sensor_id, temperature FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor_id ORDER BY temperature DESC) AS rn FROM a)
WHERE rn <= 3;

SELECT sensor_id, temperature, ts FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor_id ORDER BY ts DESC) AS rn FROM a)
WHERE rn = 1;

SELECT sensor_id, COUNT(*) AS n FROM a GROUP BY sensor_id HAVING COUNT(*) > 2;
