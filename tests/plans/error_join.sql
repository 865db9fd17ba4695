-- A join without time bounds (a regular join) does not run as a stream yet: the error says so
-- where the query is, with the condition that would make it an interval join.
CREATE TABLE a (sensor_id STRING, temperature DOUBLE)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE TABLE s (sensor_id STRING, hall STRING)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
SELECT a.sensor_id, s.hall FROM a JOIN s ON a.sensor_id = s.sensor_id;
