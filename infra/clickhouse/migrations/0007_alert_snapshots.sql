-- Alert snapshots: the URL of each alert's annotated JPEG (boxes and zone drawn, faces blurred unless
-- the camera opted out), as carried by the alert message (`snapshot_url`, an optional v1 field).
-- file://, s3:// or http(s)://; NULL when the frame could not be read back (gone from the frames
-- topic) or for alerts stored before snapshots existed. The images themselves live in the snapshot
-- store, with their own retention (README: Alert snapshots and privacy); the row keeps the reference.
ALTER TABLE {database}.alerts ADD COLUMN IF NOT EXISTS snapshot_url Nullable(String)
    COMMENT 'annotated JPEG of the alert: file://, s3:// or http(s)://; NULL: none' AFTER message;
