-- Users for a ClickHouse server deployment (never applied to chDB, which has no users).
-- Applied by `framestream migrate --server-users`, connected as an administrator.
-- Placeholders: {database} is filled by the runner; {writer_password:String} and
-- {grafana_password:String} are server-side query parameters, so the passwords never
-- appear in the SQL text (see infra/clickhouse/README.md for where they come from).
-- Every statement is idempotent; re-running it rotates the passwords.

CREATE ROLE IF NOT EXISTS framestream_reader_role;
GRANT SELECT ON {database}.* TO framestream_reader_role;

CREATE ROLE IF NOT EXISTS framestream_writer_role;
GRANT SELECT, INSERT ON {database}.* TO framestream_writer_role;

-- Workers: insert and select (the sink reads back ids it may already have stored).
CREATE USER IF NOT EXISTS framestream_writer IDENTIFIED WITH sha256_password BY {writer_password:String};
ALTER USER framestream_writer IDENTIFIED WITH sha256_password BY {writer_password:String};
GRANT framestream_writer_role TO framestream_writer;
ALTER USER framestream_writer DEFAULT ROLE framestream_writer_role DEFAULT DATABASE {database};

-- Grafana: read only. readonly = 2 still lets the plugin's driver set per-query
-- settings such as max_execution_time, while every write or DDL is refused.
CREATE USER IF NOT EXISTS grafana_reader IDENTIFIED WITH sha256_password BY {grafana_password:String};
ALTER USER grafana_reader IDENTIFIED WITH sha256_password BY {grafana_password:String};
GRANT framestream_reader_role TO grafana_reader;
ALTER USER grafana_reader DEFAULT ROLE framestream_reader_role DEFAULT DATABASE {database} SETTINGS readonly = 2;
