-- Enrich readings with reference data from PostgreSQL (a lookup join, cached) and keep a live
-- per-site table in PostgreSQL current (an upsert sink). Prepare the database once with
-- sql-examples/postgres/setup.sql, then: weir run sql-examples/postgres/site_temperatures.sql
CREATE TABLE sensor_readings (
  sensor_id STRING,
  temperature DOUBLE,
  humidity DOUBLE,
  timestamp TIMESTAMP(3),
  pt AS PROCTIME()
) WITH ('connector' = 'filesystem', 'path' = 'sql-examples/data/sensors.jsonl', 'format' = 'json');

CREATE TABLE sensors (
  id STRING,
  site STRING
) WITH (
  'connector' = 'jdbc',
  'url' = 'jdbc:postgresql://127.0.0.1:5432/test',
  'username' = 'postgres',
  'table-name' = 'weir_example_sensors',
  'lookup.cache' = 'PARTIAL',
  'lookup.partial-cache.max-rows' = '1000',
  'lookup.partial-cache.expire-after-write' = '10 min'
);

CREATE TABLE site_temps (
  site STRING,
  readings BIGINT,
  max_temp DOUBLE,
  avg_temp DECIMAL(6, 2),
  PRIMARY KEY (site) NOT ENFORCED
) WITH (
  'connector' = 'jdbc',
  'url' = 'jdbc:postgresql://127.0.0.1:5432/test',
  'username' = 'postgres',
  'table-name' = 'weir_example_site_temps'
);

INSERT INTO site_temps
SELECT COALESCE(s.site, 'unregistered') AS site,
       COUNT(*) AS readings,
       MAX(r.temperature) AS max_temp,
       CAST(AVG(r.temperature) AS DECIMAL(6, 2)) AS avg_temp
FROM sensor_readings AS r
  LEFT JOIN sensors FOR SYSTEM_TIME AS OF r.pt AS s ON r.sensor_id = s.id
GROUP BY COALESCE(s.site, 'unregistered');
