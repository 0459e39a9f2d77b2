-- Hard examples: frames the monitor stage sampled for labelling, one row per frame and reason
-- (vision.hard-examples.v1). The JPEG and the FrameDetections JSON live in the example store
-- (image_uri, predictions_uri); the predictions are copied here as JSON so that
-- `framestream label export` needs no store round trip for them. image_uri is NULL when the
-- frame had left the frames topic (retention) before it could be read back.
--
-- Deduplication as in 0001: example_id '<camera_id>:<frame_seq>:<reason>' ends the sorting key,
-- and camera_id and captured_at are functions of it; sampled_at (wall clock) stays out of the key.

CREATE TABLE IF NOT EXISTS {database}.hard_examples
(
    example_id       String                  COMMENT '<camera_id>:<frame_seq>:<reason>, deterministic',
    camera_id        LowCardinality(String),
    frame_seq        UInt64,
    event_id         String,
    reason           LowCardinality(String)  COMMENT 'uncertain | confused | rare_class | drifting_camera | reviewed_false',
    detail           String,
    captured_at      DateTime64(3, 'UTC'),
    sampled_at       DateTime64(3, 'UTC'),
    image_uri        Nullable(String)        COMMENT 'file:// or s3:// JPEG; NULL: the frame was gone',
    predictions_uri  String,
    width            UInt32,
    height           UInt32,
    model_name       LowCardinality(String),
    model_version    LowCardinality(String),
    prediction_count UInt32,
    predictions      String                  COMMENT 'JSON array of the model''s detections (class_name, score, box)',
    review_id        Nullable(String),
    stored_at        DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(captured_at)
ORDER BY (camera_id, captured_at, example_id)
TTL toDateTime(captured_at) + INTERVAL {ttl_days} DAY;
