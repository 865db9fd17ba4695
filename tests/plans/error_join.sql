-- Joins are not supported yet (issue 16): the error says so where the join is.
CREATE TABLE a (sensor_id STRING, temperature DOUBLE)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE TABLE s (sensor_id STRING, hall STRING)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
SELECT a.sensor_id, s.hall FROM a JOIN s ON a.sensor_id = s.sensor_id;
