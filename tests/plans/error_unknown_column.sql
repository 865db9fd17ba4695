-- A column that does not exist, and a second error later in the file: both are reported.
CREATE TABLE a (sensor_id STRING, temperature DOUBLE)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
SELECT sensor, temperature FROM a;
SELECT sensor_id FROM nowhere;
