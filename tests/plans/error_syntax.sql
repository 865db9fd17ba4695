-- A syntax error: the message names the line and column, with a caret.
CREATE TABLE a (sensor_id STRING, temperature DOUBLE)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
SELECT sensor_id temperature FROM a WHERE;
