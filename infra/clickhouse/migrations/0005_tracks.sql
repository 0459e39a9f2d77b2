-- Tracks and scene analytics (track stage, vision.tracks.v1): tracked points, line crossings,
-- zone visits (dwell) and zone occupancy per frame; idempotent rollups for the scene dashboard.
--
-- Deduplication as in 0001: ReplacingMergeTree ordered by (camera, capture time, deterministic
-- id), and the sink skips ids already stored. A frame tracked again after a worker restart
-- carries the same ids (see schemas/tracks.py), so plain count() stays exact.
-- Rollups keep only idempotent states (uniqExact of ids, min/max), as in 0002.

CREATE TABLE IF NOT EXISTS {database}.track_points
(
    point_id     String                  COMMENT '<track_id>:<frame_seq>',
    track_id     String                  COMMENT '<camera_id>:<generation>:<n>',
    camera_id    LowCardinality(String),
    frame_seq    UInt64,
    event_id     String,
    captured_at  DateTime64(3, 'UTC'),
    class_name   LowCardinality(String),
    score        Float32,
    x1           Float32,
    y1           Float32,
    x2           Float32,
    y2           Float32,
    anchor_x     Float32                 COMMENT 'bottom centre of the box, pixels',
    anchor_y     Float32,
    speed_px_s   Nullable(Float32)       COMMENT 'anchor speed since the track''s previous frame',
    age_s        Float32                 COMMENT 'seconds since the track was first seen',
    zones        Array(LowCardinality(String)),
    stored_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(captured_at)
ORDER BY (camera_id, captured_at, point_id)
TTL toDateTime(captured_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {database}.line_crossings
(
    crossing_id  String                  COMMENT '<track_id>:<line>:<direction>:<frame_seq>',
    camera_id    LowCardinality(String),
    line         LowCardinality(String),
    direction    Enum8('in' = 1, 'out' = 2),
    track_id     String,
    class_name   LowCardinality(String),
    frame_seq    UInt64,
    event_id     String,
    captured_at  DateTime64(3, 'UTC'),
    stored_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(captured_at)
ORDER BY (camera_id, captured_at, crossing_id)
TTL toDateTime(captured_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {database}.zone_visits
(
    visit_id      String                 COMMENT '<track_id>:<zone>:<entered_seq>',
    camera_id     LowCardinality(String),
    zone          LowCardinality(String),
    track_id      String,
    class_name    LowCardinality(String),
    entered_seq   UInt64,
    entered_at    DateTime64(3, 'UTC'),
    last_seen_at  DateTime64(3, 'UTC'),
    dwell_s       Float32                COMMENT 'last_seen_at - entered_at',
    ended         Enum8('left' = 1, 'lost' = 2),
    frame_seq     UInt64                 COMMENT 'the frame on which the visit was seen to end',
    captured_at   DateTime64(3, 'UTC'),
    stored_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(captured_at)
ORDER BY (camera_id, captured_at, visit_id)
TTL toDateTime(captured_at) + INTERVAL {ttl_days} DAY;

CREATE TABLE IF NOT EXISTS {database}.zone_occupancy
(
    occupancy_id String                  COMMENT '<event_id>:<zone>',
    camera_id    LowCardinality(String),
    zone         LowCardinality(String),
    frame_seq    UInt64,
    event_id     String,
    captured_at  DateTime64(3, 'UTC'),
    objects      UInt32                  COMMENT 'tracked objects whose anchor is in the zone',
    stored_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(captured_at)
ORDER BY (camera_id, zone, captured_at, occupancy_id)
TTL toDateTime(captured_at) + INTERVAL {ttl_days} DAY;

-- Crossings per line, direction and hour: read with uniqExactMerge(crossings).
CREATE TABLE IF NOT EXISTS {database}.line_crossings_per_hour
(
    hour       DateTime('UTC'),
    camera_id  LowCardinality(String),
    line       LowCardinality(String),
    direction  Enum8('in' = 1, 'out' = 2),
    crossings  AggregateFunction(uniqExact, String)  COMMENT 'distinct crossing_id'
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(hour)
ORDER BY (camera_id, line, direction, hour)
TTL hour + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.line_crossings_per_hour_mv
TO {database}.line_crossings_per_hour
AS SELECT
    toStartOfHour(captured_at) AS hour,
    camera_id,
    line,
    direction,
    uniqExactState(crossing_id) AS crossings
FROM {database}.line_crossings
GROUP BY hour, camera_id, line, direction;

-- One row per track after merges: first and last sighting, so dwell = last_seen - first_seen.
CREATE TABLE IF NOT EXISTS {database}.track_spans
(
    camera_id   LowCardinality(String),
    track_id    String,
    class_name  SimpleAggregateFunction(anyLast, LowCardinality(String)),
    first_seen  SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen   SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    max_speed   SimpleAggregateFunction(max, Nullable(Float32))
)
ENGINE = AggregatingMergeTree  -- unpartitioned: a track's rows must meet to merge, whatever its span
ORDER BY (camera_id, track_id)
TTL toDateTime(first_seen) + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.track_spans_mv
TO {database}.track_spans
AS SELECT
    camera_id,
    track_id,
    anyLast(class_name) AS class_name,
    min(captured_at)    AS first_seen,
    max(captured_at)    AS last_seen,
    max(speed_px_s)     AS max_speed
FROM {database}.track_points
GROUP BY camera_id, track_id;
