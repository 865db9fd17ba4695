-- Generated readings (no files needed), filtered and printed.
CREATE TABLE gen (
  id BIGINT,
  sensor_id STRING,
  temperature DOUBLE
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '100',
  'rows-per-second' = '100000',
  'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '100',
  'fields.temperature.min' = '10', 'fields.temperature.max' = '40',
  'fields.sensor_id.length' = '6'
);

CREATE TABLE out (id BIGINT, temp_f DOUBLE) WITH ('connector' = 'print');

INSERT INTO out SELECT id, temperature * 9 / 5 + 32 FROM gen WHERE temperature > 30;
