-- A window over a column that is not a time attribute, and a window table function that does
-- not exist.
CREATE TABLE a (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE TABLE plain (k STRING, ts TIMESTAMP(3))
WITH ('connector' = 'datagen', 'number-of-rows' = '10');
SELECT k, COUNT(*) FROM TABLE(TUMBLE(TABLE plain, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY k, window_start, window_end;
SELECT k, COUNT(*) FROM TABLE(SLIDE(TABLE a, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY k, window_start, window_end;
