-- Per-sensor activity sessions, and a 1-minute rollup chained into 10-minute windows.
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  humidity DOUBLE,
  timestamp TIMESTAMP(3),
  WATERMARK FOR timestamp AS timestamp - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl', 'format' = 'json');

CREATE TABLE blackhole_sink (sensor_id STRING, ws TIMESTAMP(3), we TIMESTAMP(3), n BIGINT)
WITH ('connector' = 'blackhole');

CREATE TABLE rollup_print (sensor_id STRING, window_start TIMESTAMP(3), avg_temp DOUBLE, readings BIGINT)
WITH ('connector' = 'print');

CREATE VIEW per_minute AS
SELECT sensor_id, window_start AS minute_start, window_time AS minute_time,
       AVG(temperature) AS avg_temp, COUNT(*) AS readings
FROM TABLE(TUMBLE(TABLE sensor_readings, DESCRIPTOR(timestamp), INTERVAL '1' MINUTE))
GROUP BY sensor_id, window_start, window_end, window_time;

EXECUTE STATEMENT SET BEGIN
INSERT INTO blackhole_sink
  SELECT sensor_id, SESSION_START(timestamp, INTERVAL '30' SECOND), SESSION_END(timestamp, INTERVAL '30' SECOND), COUNT(*)
  FROM sensor_readings GROUP BY sensor_id, SESSION(timestamp, INTERVAL '30' SECOND);
INSERT INTO rollup_print
  SELECT sensor_id, window_start, AVG(avg_temp), SUM(readings)
  FROM TABLE(TUMBLE(TABLE per_minute, DESCRIPTOR(minute_time), INTERVAL '10' MINUTE))
  GROUP BY sensor_id, window_start, window_end;
END;
