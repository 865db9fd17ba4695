-- Lookup joins against PostgreSQL: each reading with its sensor's row when it comes (LEFT keeps
-- unknown sensors), cached; a key cast to the table's type; the rest of the ON condition as a
-- filter. The jdbc sink upserts by its primary key.
CREATE TABLE readings (sensor_id STRING, site_no INT, temperature DOUBLE, pt AS PROCTIME())
WITH ('connector' = 'datagen', 'rows-per-second' = '10');
CREATE TABLE sensors (id STRING, site_no BIGINT, active BOOLEAN, site STRING)
WITH ('connector' = 'jdbc', 'url' = 'jdbc:postgresql://127.0.0.1:5432/test',
      'table-name' = 'sensors', 'password' = 'secret',
      'lookup.cache' = 'PARTIAL', 'lookup.partial-cache.max-rows' = '5000',
      'lookup.partial-cache.expire-after-write' = '10 min');
CREATE TABLE latest (site STRING, n BIGINT, PRIMARY KEY (site) NOT ENFORCED)
WITH ('connector' = 'jdbc', 'url' = 'postgres://postgres@127.0.0.1/test', 'table-name' = 'latest');

SELECT r.sensor_id, r.temperature, s.site FROM readings AS r
LEFT JOIN sensors FOR SYSTEM_TIME AS OF r.pt AS s ON r.sensor_id = s.id;

INSERT INTO latest
SELECT s.site, COUNT(*) FROM readings AS r
JOIN sensors FOR SYSTEM_TIME AS OF r.pt AS s ON r.site_no = s.site_no AND s.active
GROUP BY s.site;
