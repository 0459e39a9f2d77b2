-- Shadow mode: per sampled frame, how far a candidate detector agrees with the served one
-- (vision.model-agreement.v1, streams/shadow.py). Deduplicated like the base tables: the sorting
-- key ends with the deterministic agreement_id ('<event_id>:<candidate>'), and captured_at is a
-- function of that id's message.

CREATE TABLE IF NOT EXISTS {database}.model_agreement
(
    agreement_id      String                   COMMENT '<event_id>:<candidate>, deterministic',
    event_id          String,
    camera_id         LowCardinality(String),
    frame_seq         UInt64,
    captured_at       DateTime64(3, 'UTC'),
    current_model     LowCardinality(String)   COMMENT '<name>:<version> that served the frame',
    candidate         LowCardinality(String)   COMMENT 'the shadowed candidate, e.g. detector:2',
    current_objects   UInt32,
    candidate_objects UInt32,
    matched           UInt32                   COMMENT 'same-class pairs with IoU >= iou_threshold',
    precision         Float64                  COMMENT 'matched / candidate objects (1 when both empty)',
    recall            Float64                  COMMENT 'matched / current objects (1 when both empty)',
    mean_iou          Float64,
    iou_threshold     Float64,
    candidate_ms      Float64                  COMMENT 'candidate inference in the shadow worker',
    compared_at       DateTime64(3, 'UTC'),
    stored_at         DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(captured_at)
ORDER BY (camera_id, candidate, captured_at, agreement_id)
TTL toDateTime(captured_at) + INTERVAL {ttl_days} DAY;
