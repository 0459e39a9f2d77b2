-- Base tables: one row per processed frame, detected object, alert and dead letter.
--
-- Placeholders filled by the migration runner (framestream/services/clickhouse.py):
--   {database}  target database      {ttl_days}  retention in days
-- The runner re-applies the configured TTL on every start, so changing
-- FRAMESTREAM_CLICKHOUSE_TTL_DAYS does not need a new migration.
--
-- Deduplication: every table is a ReplacingMergeTree whose sorting key ends
-- with the message's deterministic id, and every other key column is a
-- function of that id's message (camera, capture time). A replayed message
-- therefore collapses into the row it duplicates on merge (and at once under
-- FINAL). The sink additionally skips ids already stored, so plain count()
-- stays exact between merges. Wall-clock fields that can differ on a replay
-- (detected_at, raised_at, failed_at) are kept out of the sorting keys.
--
-- Every statement is idempotent (IF NOT EXISTS): a migration interrupted
-- half way is simply re-run.

CREATE DATABASE IF NOT EXISTS {database};

CREATE TABLE IF NOT EXISTS {database}.frames
(
    event_id          String                     COMMENT '<camera_id>:<frame_seq>, deterministic',
    camera_id         LowCardinality(String),
    frame_seq         UInt64,
    captured_at       DateTime64(3, 'UTC'),
    detected_at       DateTime64(3, 'UTC'),
    width             UInt32,
    height            UInt32,
    model_name        LowCardinality(String),
    model_version     LowCardinality(String),
    object_count      UInt32,
    brightness        Nullable(Float32)          COMMENT 'mean grey level 0..255',
    sharpness         Nullable(Float32)          COMMENT 'variance of the Laplacian',
    ingest_ms         Nullable(Float32)          COMMENT 'capture to produce',
    queue_ms          Nullable(Float32)          COMMENT 'produce to detect pickup: the consumer lag a frame saw',
    batch_wait_ms     Nullable(Float32),
    triton_ms         Nullable(Float32),
    stored_at         DateTime64(3, 'UTC') DEFAULT now64(3),
    detect_latency_ms Float64 ALIAS dateDiff('millisecond', captured_at, detected_at),
    store_latency_ms  Float64 ALIAS dateDiff('millisecond', captured_at, stored_at)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(captured_at)
ORDER BY (camera_id, captured_at, event_id)
TTL toDateTime(captured_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {database}.detections
(
    detection_id   String                  COMMENT '<camera_id>:<frame_seq>:<index>, deterministic',
    event_id       String,
    camera_id      LowCardinality(String),
    frame_seq      UInt64,
    object_index   UInt16,
    captured_at    DateTime64(3, 'UTC'),
    class_id       UInt16,
    class_name     LowCardinality(String),
    score          Float32,
    x1             Float32,
    y1             Float32,
    x2             Float32,
    y2             Float32,
    model_name     LowCardinality(String),
    model_version  LowCardinality(String),
    stored_at      DateTime64(3, 'UTC') DEFAULT now64(3),
    box_area       Float32 ALIAS (x2 - x1) * (y2 - y1),
    INDEX class_name_set class_name TYPE set(256) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(captured_at)
ORDER BY (camera_id, captured_at, detection_id)
TTL toDateTime(captured_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {database}.alerts
(
    alert_id      String                       COMMENT '<rule_id>:<camera_id>:<frame_seq>, deterministic',
    rule_id       LowCardinality(String),
    severity      Enum8('info' = 1, 'warning' = 2, 'critical' = 3),
    camera_id     LowCardinality(String),
    frame_seq     UInt64,
    event_id      String,
    captured_at   DateTime64(3, 'UTC'),
    raised_at     DateTime64(3, 'UTC'),
    class_name    LowCardinality(String),
    score         Float32,
    x1            Float32,
    y1            Float32,
    x2            Float32,
    y2            Float32,
    zone          LowCardinality(Nullable(String)),
    object_count  UInt32,
    message       String,
    stored_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(captured_at)
ORDER BY (camera_id, captured_at, alert_id)
TTL toDateTime(captured_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    dead_letter_id   String                    COMMENT 'hash of source topic/partition/offset and stage (or of the content when the offset is unknown)',
    stage            LowCardinality(String),
    error_type       LowCardinality(String),
    reason           String,
    source_topic     LowCardinality(String),
    source_partition Nullable(Int32),
    source_offset    Nullable(Int64),
    record_key       Nullable(String),
    headers          Map(String, String),
    original_size    UInt32                    COMMENT 'bytes of the original record value',
    original_sha256  String,
    original_head    String                    COMMENT 'first 4 KiB of the original; the full bytes stay on the dead-letter topic',
    failed_at        DateTime64(3, 'UTC'),
    stored_at        DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(failed_at)
ORDER BY (stage, source_topic, dead_letter_id)
TTL toDateTime(failed_at) + INTERVAL {ttl_days} DAY;
