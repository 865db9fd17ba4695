-- Regular joins that give a changelog: an outer join whose other input does not end, a join
-- of an updating input (a GROUP BY), and a STATE_TTL hint per input.
CREATE TABLE readings (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'datagen', 'rows-per-second' = '10');
CREATE TABLE alarms (sensor_id STRING, level INT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'datagen', 'rows-per-second' = '1');

SELECT r.sensor_id, r.temperature, a.level FROM readings AS r
LEFT JOIN alarms AS a ON r.sensor_id = a.sensor_id;

SELECT /*+ STATE_TTL('r' = '1 d', 'a' = '12 h') */ r.sensor_id, r.n, a.level
FROM (SELECT sensor_id, COUNT(*) AS n FROM readings GROUP BY sensor_id) AS r
JOIN alarms AS a ON r.sensor_id = a.sensor_id AND a.level > 2;
