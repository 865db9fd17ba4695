-- A watermark on a column that is not a timestamp, and one on a column that does not exist.
CREATE TABLE a (sensor_id STRING, ts BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE TABLE b (sensor_id STRING, ts TIMESTAMP(3), WATERMARK FOR event_time AS event_time)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
