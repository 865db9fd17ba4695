-- An updating result into an append-only sink is refused when planned.
CREATE TABLE a (sensor_id STRING, temperature DOUBLE)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE TABLE out_file (sensor_id STRING, n BIGINT)
WITH ('connector' = 'filesystem', 'path' = '/tmp/weir-plan-golden-out', 'format' = 'json');
INSERT INTO out_file SELECT sensor_id, COUNT(*) AS n FROM a GROUP BY sensor_id;
