-- Camera health from ingest (vision.camera-health.v1): one row per report, every few seconds per
-- camera and on every change between online and offline.
--
-- Deduplicated like the base tables: the sorting key ends with the deterministic health_id
-- ('<camera_id>:<run_id>:<report_seq>'), and reported_at is a field of that id's message. The
-- per-report counts (frames, decode_errors, reconnects: since the camera's previous report) add
-- up over a time range; achieved_fps, target_fps and frame ages are read per report.
-- outage_s: on an offline report, the outage so far; on the first report back online, how long
-- the whole outage lasted (last frame before it to first frame after).

CREATE TABLE IF NOT EXISTS {database}.camera_health
(
    health_id           String                   COMMENT '<camera_id>:<run_id>:<report_seq>, deterministic',
    camera_id           LowCardinality(String),
    run_id              String,
    report_seq          UInt32,
    reported_at         DateTime64(3, 'UTC'),
    trigger             Enum8('periodic' = 1, 'state_change' = 2, 'final' = 3),
    state               Enum8('online' = 1, 'offline' = 2),
    target_fps          Float32,
    achieved_fps        Float32,
    window_s            Float32,
    frames              UInt32                   COMMENT 'since the previous report',
    decode_errors       UInt32                   COMMENT 'since the previous report',
    reconnects          UInt32                   COMMENT 'since the previous report',
    frames_total        UInt64,
    decode_errors_total UInt64,
    reconnects_total    UInt64,
    frame_age_ms_p50    Nullable(Float32)        COMMENT 'capture to produce, median over the window',
    frame_age_ms_max    Nullable(Float32),
    last_frame_at       Nullable(DateTime64(3, 'UTC')),
    offline_since       Nullable(DateTime64(3, 'UTC')),
    outage_s            Nullable(Float64),
    stored_at           DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(reported_at)
ORDER BY (camera_id, reported_at, health_id)
TTL toDateTime(reported_at) + INTERVAL {ttl_days} DAY;
