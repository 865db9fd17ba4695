-- A table without a connector, an unknown connector, and a misspelt option of a known one.
CREATE TABLE a (v BIGINT) WITH ('format' = 'json');
CREATE TABLE b (v BIGINT) WITH ('connector' = 'kafkaa');
CREATE TABLE c (v BIGINT) WITH ('connector' = 'datagen', 'number-of-row' = '10');
CREATE TABLE d (v BIGINT) WITH ('connector' = 'filesystem', 'path' = '/tmp/x', 'format' = 'xml');
