"""The ClickHouse server's users (infra/clickhouse/server/users.sql), checked statically.

chDB, the engine the tests run, has no users or grants, and no ClickHouse server binary is
available here (no Docker; no package ships one), so the grants are checked as text: which
privileges each role gets, on what, and that a re-run replaces rather than adds. That every
statement parses is checked on chDB's parser (tests/integration/test_clickhouse_schema.py).
What a server does with them is for the deployment to verify (README, "Security")."""

from __future__ import annotations

import re

from streams.sinks.clickhouse_db import SERVER_USERS_FILE, render

STATEMENTS = render(SERVER_USERS_FILE.read_text(), database="framestream")
GRANT = re.compile(r"^GRANT (?P<privileges>.+?) ON (?P<target>\S+) TO (?P<grantee>\w+)(?P<rest>.*)$", re.S)
FORBIDDEN = {"ALL", "DROP", "ALTER", "CREATE", "TRUNCATE", "OPTIMIZE", "SYSTEM", "KILL", "ACCESS", "INTROSPECTION"}


def privilege_grants() -> dict[str, list[tuple[set[str], str, str]]]:
    grants: dict[str, list[tuple[set[str], str, str]]] = {}
    for statement in STATEMENTS:
        match = GRANT.match(" ".join(statement.split()))
        if match:
            privileges = {p.strip().upper() for p in match["privileges"].split(",")}
            grants.setdefault(match["grantee"], []).append((privileges, match["target"], match["rest"]))
    return grants


def test_the_reader_can_only_select_and_the_writer_only_select_and_insert() -> None:
    grants = privilege_grants()
    assert grants["framestream_reader_role"] == [({"SELECT"}, "framestream.*", " WITH REPLACE OPTION")]
    assert grants["framestream_writer_role"] == [({"INSERT", "SELECT"}, "framestream.*", " WITH REPLACE OPTION")]


def test_no_grant_reaches_ddl_system_tables_or_other_databases() -> None:
    for grantee, grants in privilege_grants().items():
        for privileges, target, _ in grants:
            assert not privileges & FORBIDDEN, (grantee, privileges)
            assert target == "framestream.*", (grantee, target)


def test_users_hold_only_their_role_and_the_reader_is_readonly() -> None:
    role_grants = [" ".join(s.split()) for s in STATEMENTS if re.match(r"^GRANT \w+_role TO ", " ".join(s.split()))]
    assert sorted(role_grants) == [
        "GRANT framestream_reader_role TO grafana_reader",
        "GRANT framestream_writer_role TO framestream_writer",
    ]
    reader = next(s for s in STATEMENTS if s.startswith("ALTER USER grafana_reader DEFAULT ROLE"))
    assert "readonly = 2" in reader
    assert not any("WITH GRANT OPTION" in s or "ADMIN OPTION" in s for s in STATEMENTS)


def test_passwords_are_query_parameters_never_text() -> None:
    for statement in STATEMENTS:
        if "IDENTIFIED" in statement:
            assert re.search(r"BY \{\w+_password:String\}", statement), statement
