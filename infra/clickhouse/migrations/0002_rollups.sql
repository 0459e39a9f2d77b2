-- Per-minute rollups fed by materialized views.
--
-- Replay safety: a materialized view sees every inserted block, including a
-- replayed duplicate that the ReplacingMergeTree base table will later
-- collapse. A SummingMergeTree of count() would count it twice. These
-- rollups therefore keep only idempotent aggregate states:
--   uniqExact(id)  a set of the deterministic ids: re-adding an id is a no-op,
--   max / min      re-adding a value leaves them unchanged.
-- Sums and averages of scores are read from the base tables (with FINAL).
-- Read the rollups with uniqExactMerge(...) grouped by the key.

CREATE TABLE IF NOT EXISTS {database}.detections_per_minute
(
    minute      DateTime('UTC'),
    camera_id   LowCardinality(String),
    class_name  LowCardinality(String),
    detections  AggregateFunction(uniqExact, String)  COMMENT 'distinct detection_id',
    frames      AggregateFunction(uniqExact, String)  COMMENT 'distinct event_id with this class',
    max_score   SimpleAggregateFunction(max, Float32),
    min_score   SimpleAggregateFunction(min, Float32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (camera_id, class_name, minute)
TTL minute + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.detections_per_minute_mv
TO {database}.detections_per_minute
AS SELECT
    toStartOfMinute(captured_at) AS minute,
    camera_id,
    class_name,
    uniqExactState(detection_id) AS detections,
    uniqExactState(event_id)     AS frames,
    max(score)                   AS max_score,
    min(score)                   AS min_score
FROM {database}.detections
GROUP BY minute, camera_id, class_name;

CREATE TABLE IF NOT EXISTS {database}.frames_per_minute
(
    minute        DateTime('UTC'),
    camera_id     LowCardinality(String),
    frames        AggregateFunction(uniqExact, String)         COMMENT 'distinct event_id',
    empty_frames  AggregateFunction(uniqExactIf, String, UInt8) COMMENT 'distinct event_id with no detection',
    max_objects   SimpleAggregateFunction(max, UInt32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (camera_id, minute)
TTL minute + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.frames_per_minute_mv
TO {database}.frames_per_minute
AS SELECT
    toStartOfMinute(captured_at)               AS minute,
    camera_id,
    uniqExactState(event_id)                   AS frames,
    uniqExactIfState(event_id, object_count = 0) AS empty_frames,
    max(object_count)                          AS max_objects
FROM {database}.frames
GROUP BY minute, camera_id;
