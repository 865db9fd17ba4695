-- An unknown function, a type that does not fit, and an unbounded ORDER BY on a stream.
CREATE TABLE a (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
SELECT k, NO_SUCH_FUNCTION(v) FROM a;
SELECT k FROM a WHERE v = ts;
SELECT k, v FROM a ORDER BY v;
