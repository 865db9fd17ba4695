-- Lookup joins Weir refuses, each with its location: a RIGHT lookup join, a key that is an
-- expression of the looked-up table, a lookup of an updating input, and a lookup table that is
-- missing its 'table-name'.
CREATE TABLE readings (sensor_id STRING, temperature DOUBLE, pt AS PROCTIME())
WITH ('connector' = 'datagen', 'rows-per-second' = '10');
CREATE TABLE sensors (id STRING, site STRING)
WITH ('connector' = 'jdbc', 'url' = 'jdbc:postgresql://127.0.0.1:5432/test', 'table-name' = 'sensors');

SELECT r.sensor_id, s.site FROM readings AS r
RIGHT JOIN sensors FOR SYSTEM_TIME AS OF r.pt AS s ON r.sensor_id = s.id;

SELECT r.sensor_id, s.site FROM readings AS r
JOIN sensors FOR SYSTEM_TIME AS OF r.pt AS s ON r.sensor_id = UPPER(s.id);

SELECT c.sensor_id, s.site FROM (SELECT sensor_id, COUNT(*) AS n, MAX(pt) AS pt FROM readings GROUP BY sensor_id) AS c
JOIN sensors FOR SYSTEM_TIME AS OF c.pt AS s ON c.sensor_id = s.id;

CREATE TABLE nameless (id STRING) WITH ('connector' = 'jdbc', 'url' = 'postgres://127.0.0.1/test');
SELECT r.sensor_id FROM readings AS r
JOIN nameless FOR SYSTEM_TIME AS OF r.pt AS n ON r.sensor_id = n.id;
