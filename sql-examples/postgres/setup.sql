-- The PostgreSQL side of sql-examples/postgres/site_temperatures.sql: reference data (which
-- site each sensor is in) and the live result table. Run it once with
--   psql postgres://postgres@127.0.0.1:5432/test -f sql-examples/postgres/setup.sql
DROP TABLE IF EXISTS weir_example_sensors, weir_example_site_temps;
CREATE TABLE weir_example_sensors (id text PRIMARY KEY, site text NOT NULL);
INSERT INTO weir_example_sensors
  SELECT 'sensor-' || lpad(i::text, 4, '0'), 'site-' || (i % 5)
  FROM generate_series(0, 39) AS i;
-- sensor-0040 and above are not registered: the LEFT lookup join keeps their readings.
CREATE TABLE weir_example_site_temps (
  site text PRIMARY KEY,
  readings bigint NOT NULL,
  max_temp double precision,
  avg_temp numeric(6, 2)
);
