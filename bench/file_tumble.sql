-- File benchmark (docs/benchmarks.md): the core tumble query over the 2-million-row JSON file
-- made by `python3 ../shared/tools/gen_sensors.py -n 2000000 -k 1000 --seed 42 -o sensors.jsonl`,
-- run from the folder holding sensors.jsonl: `weir run -q bench/file_tumble.sql`.
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sensors.jsonl', 'format' = 'json');

CREATE TABLE sink (
  sensor_id STRING, window_start TIMESTAMP(3), avg_temp DOUBLE, max_temp DOUBLE, min_temp DOUBLE,
  reading_count BIGINT
) WITH ('connector' = 'blackhole');

INSERT INTO sink
SELECT sensor_id, TUMBLE_START(ts, INTERVAL '1' MINUTE), AVG(temperature), MAX(temperature),
       MIN(temperature), COUNT(*)
FROM sensor_readings
GROUP BY sensor_id, TUMBLE(ts, INTERVAL '1' MINUTE);
