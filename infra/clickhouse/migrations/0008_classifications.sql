-- Classifier verdicts: one row per frame of a camera with a classifier (FrameDetections'
-- optional `classification`: label, class id, score, and the model name and version that
-- answered). Frames of cameras without a classifier have no row.
--
-- Deduplicated like the base tables: the sorting key ends with the frame's deterministic
-- event_id, and camera_id and captured_at are fields of that id's message. Defect rate per
-- camera over time: countIf(label = 'defect') / count() grouped by camera and time bucket.

CREATE TABLE IF NOT EXISTS {database}.classifications
(
    event_id       String                  COMMENT '<camera_id>:<frame_seq>, deterministic',
    camera_id      LowCardinality(String),
    frame_seq      UInt64,
    captured_at    DateTime64(3, 'UTC'),
    label          LowCardinality(String)  COMMENT 'the most probable class, e.g. defect',
    class_id       UInt16,
    score          Float32                 COMMENT 'probability of label',
    model_name     LowCardinality(String),
    model_version  LowCardinality(String),
    stored_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(captured_at)
ORDER BY (camera_id, captured_at, event_id)
TTL toDateTime(captured_at) + INTERVAL {ttl_days} DAY;
