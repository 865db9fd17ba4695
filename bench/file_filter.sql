-- File benchmark (docs/benchmarks.md): a filter-only job over the same 2-million-row JSON file
-- as bench/file_tumble.sql (made by `python3 ../shared/tools/gen_sensors.py -n 2000000 -k 1000
-- --seed 42 -o sensors.jsonl`), run from the folder holding sensors.jsonl:
-- `weir run -q -p N bench/file_filter.sql`.
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'sensors.jsonl', 'format' = 'json');

CREATE TABLE sink (sensor_id STRING, temperature DOUBLE, ts TIMESTAMP(3))
WITH ('connector' = 'blackhole');

INSERT INTO sink
SELECT sensor_id, temperature, ts FROM sensor_readings WHERE temperature > 20;
