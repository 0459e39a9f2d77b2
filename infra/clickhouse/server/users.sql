-- Users for a ClickHouse server deployment (never applied to chDB, which has no users).
-- Applied by `framestream migrate --server-users`, connected as an administrator.
-- Placeholders: {database} is filled by the runner; {writer_password:String} and
-- {grafana_password:String} are server-side query parameters, so the passwords never
-- appear in the SQL text (see infra/clickhouse/README.md for where they come from).
-- Every statement is idempotent; re-running it rotates the passwords.
-- Least privilege: WITH REPLACE OPTION makes each role's grants exactly the ones below on
-- every run (a privilege granted by hand since is taken away). The reader can only SELECT
-- (no INSERT, ALTER, DROP, CREATE; readonly = 2 refuses any write or DDL even if granted);
-- the writer can SELECT and INSERT in its database and nothing else (no DROP, ALTER,
-- TRUNCATE, CREATE; migrations run as the administrator). System tables: the server runs
-- with access_control_improvements.select_from_system_db_requires_grant = true
-- (infra/clickhouse/server/access_control.xml), so neither reads system.* beyond the
-- tables every user sees filtered to their own grants (tables, columns, databases, one).

CREATE ROLE IF NOT EXISTS framestream_reader_role;
GRANT SELECT ON {database}.* TO framestream_reader_role WITH REPLACE OPTION;

CREATE ROLE IF NOT EXISTS framestream_writer_role;
GRANT SELECT, INSERT ON {database}.* TO framestream_writer_role WITH REPLACE OPTION;

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
