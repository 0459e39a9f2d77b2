-- Model monitoring: drift events of the monitor stage and verdicts on alerts; frames get contrast.
--
-- model_alerts: one row per drift start or end (vision.model-alerts.v1), deduplicated like the base
-- tables: the sorting key ends with the deterministic model_alert_id, and captured_at (the capture
-- time of the frame whose arrival ran the test) is a function of that id's message.
--
-- alert_reviews: every version of every review. A reviewer who changes their mind publishes the same
-- review_id with a later reviewed_at; both rows are kept (the history), each deduplicated on its
-- review_version ('<review_id>@<reviewed_at ms>'), so a replayed review collapses and a changed
-- verdict does not. Read the current verdict with argMax(verdict, reviewed_at) GROUP BY review_id.

CREATE TABLE IF NOT EXISTS {database}.model_alerts
(
    model_alert_id      String                   COMMENT 'drift:<camera_id>:<statistic>:<frame_seq>, deterministic',
    kind                LowCardinality(String),
    state               Enum8('started' = 1, 'ended' = 2),
    camera_id           LowCardinality(String),
    statistic           LowCardinality(String),
    test                LowCardinality(String)   COMMENT 'ks | chi2',
    test_statistic      Float64,
    p_value             Float64,
    effect_size         Float64                  COMMENT 'population stability index',
    reference_value     Float64,
    current_value       Float64,
    category            Nullable(String),
    reference_frames    UInt32,
    window_frames       UInt32,
    reference_samples   UInt32,
    window_samples      UInt32,
    reference_first_seq UInt64,
    reference_last_seq  UInt64,
    reference_from      DateTime64(3, 'UTC'),
    reference_to        DateTime64(3, 'UTC'),
    window_first_seq    UInt64,
    frame_seq           UInt64,
    window_from         DateTime64(3, 'UTC'),
    captured_at         DateTime64(3, 'UTC'),
    model_name          LowCardinality(String),
    model_version       LowCardinality(String),
    raised_at           DateTime64(3, 'UTC'),
    message             String,
    stored_at           DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(captured_at)
ORDER BY (camera_id, captured_at, model_alert_id)
TTL toDateTime(captured_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {database}.alert_reviews
(
    review_version  String                       COMMENT '<review_id>@<reviewed_at ms>: what the sink deduplicates on',
    review_id       String                       COMMENT '<alert_id>:<reviewer>, deterministic',
    alert_id        String,
    camera_id       LowCardinality(String),
    rule_id         LowCardinality(String),
    event_id        String,
    verdict         Enum8('true_positive' = 1, 'false_positive' = 2),
    corrected_class LowCardinality(Nullable(String)),
    reviewer        LowCardinality(String),
    reviewed_at     DateTime64(3, 'UTC'),
    note            Nullable(String),
    stored_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(reviewed_at)
ORDER BY (camera_id, reviewed_at, review_version)
TTL toDateTime(reviewed_at) + INTERVAL {ttl_days} DAY;

ALTER TABLE {database}.frames ADD COLUMN IF NOT EXISTS contrast Nullable(Float32) COMMENT 'standard deviation of the grey levels' AFTER brightness;
