"""The provisioned Grafana dashboards' SQL, usable outside Grafana (the report, the tests).

Loads the dashboard JSON files and expands a panel's SQL the way Grafana and the
grafana-clickhouse-datasource plugin (v4) would before it reaches ClickHouse:

1. Grafana's template variables, with an explicit format: ``${camera:singlequote}``
   -> ``'cam-1','cam-2'`` (every value when "All" is selected). A multi-value variable
   without a format is refused: its default rendering differs between Grafana versions.
2. The plugin's macros, mirroring its ``pkg/macros/macros.go``: ``$__timeFilter(col)``
   -> ``col >= toDateTime(<from s>) AND col <= toDateTime(<to s>)``, ``$__fromTime``,
   ``$__toTime`` (and their ``_ms`` forms with ``fromUnixTimestamp64Milli``),
   ``$__dateFilter``, ``$__dateTimeFilter``/``$__dt``, ``$__timeInterval(col)`` ->
   ``toStartOfInterval(toDateTime(col), INTERVAL <n> second)`` and ``$__interval_s`` -> n
   (at least 1).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clickhouse_connect.driver.client import Client

from framestream.settings import REPO_ROOT

DASHBOARDS_DIR = REPO_ROOT / "infra" / "grafana" / "dashboards"
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "framestream-clickhouse"
FORMAT_TIME_SERIES, FORMAT_TABLE = 0, 1

_MACRO = re.compile(r"\$__(\w+)")
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)")


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None or self.end <= self.start:
            raise ValueError(f"a time range needs aware datetimes with start < end (got {self.start}, {self.end})")

    @classmethod
    def last(cls, duration: timedelta, now: datetime | None = None) -> TimeRange:
        end = now or datetime.now(UTC)
        return cls(end - duration, end)

    def interval_s(self, max_points: int = 300) -> int:
        """Grafana-like ``$__interval_s`` for a panel about ``max_points`` wide."""
        return max(1, math.ceil((self.end - self.start).total_seconds() / max_points))


@dataclass(frozen=True)
class QueryVariable:
    name: str
    query: str
    multi: bool
    include_all: bool


@dataclass(frozen=True)
class Panel:
    dashboard_uid: str
    title: str
    type: str
    sql: str
    format: int
    query_type: str
    draw_style: str = "line"  # timeseries only: "line" or "bars", from the panel's field config


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    path: Path
    panels: tuple[Panel, ...]
    variables: tuple[QueryVariable, ...]

    def panel(self, title: str) -> Panel:
        for panel in self.panels:
            if panel.title == title:
                return panel
        raise KeyError(f"dashboard {self.uid!r} has no panel titled {title!r}")


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[str, Dashboard]:
    """Every dashboard JSON in ``directory``, by uid."""
    dashboards = [load_dashboard(path) for path in sorted(Path(directory).glob("*.json"))]
    return {dashboard.uid: dashboard for dashboard in dashboards}


def load_dashboard(path: Path) -> Dashboard:
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    uid = document["uid"]
    panels = tuple(_panel(uid, raw) for raw in _flatten_panels(document.get("panels", [])))
    variables = tuple(
        QueryVariable(raw["name"], _variable_sql(raw), bool(raw.get("multi")), bool(raw.get("includeAll")))
        for raw in document.get("templating", {}).get("list", [])
        if raw.get("type") == "query"
    )
    return Dashboard(uid, document["title"], Path(path), panels, variables)


def _flatten_panels(panels: list[dict]) -> list[dict]:
    """Panels, with those inside collapsed rows; rows themselves carry no query."""
    flat = []
    for panel in panels:
        if panel.get("type") == "row":
            flat.extend(_flatten_panels(panel.get("panels", [])))
        else:
            flat.append(panel)
    return flat


def _panel(dashboard_uid: str, raw: dict) -> Panel:
    targets = raw.get("targets") or []
    if len(targets) != 1 or not targets[0].get("rawSql"):
        raise ValueError(f"{dashboard_uid}: panel {raw.get('title')!r} needs exactly one target with rawSql")
    target = targets[0]
    custom = raw.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
    return Panel(
        dashboard_uid,
        raw["title"],
        raw["type"],
        target["rawSql"],
        int(target.get("format", 1)),
        str(target.get("queryType", "")),
        str(custom.get("drawStyle", "line")),
    )


def _variable_sql(raw: dict) -> str:
    query = raw.get("query")
    return query if isinstance(query, str) else (query or {}).get("rawSql", "")


def expand(sql: str, time_range: TimeRange, interval_s: int, values: Mapping[str, Sequence[str]]) -> str:
    """Template variables first (Grafana's frontend), then macros (the plugin's backend)."""
    return expand_macros(expand_variables(sql, values), time_range, interval_s)


def expand_variables(sql: str, values: Mapping[str, Sequence[str]]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(5)
        fmt = match.group(2) or match.group(4)
        if name.startswith("__") or name not in values:
            return match.group(0)  # Grafana leaves unknown names and macros alone
        return format_values(list(values[name]), fmt, name)

    return _VARIABLE.sub(replace, sql)


def format_values(selected: list[str], fmt: str | None, name: str = "variable") -> str:
    """Grafana's variable formats (``singlequote``, ``doublequote``, ``sqlstring``, ``csv``, ``pipe``, ``raw``)."""
    if not selected:
        raise ValueError(f"${{{name}}} has no value selected")
    formatters: dict[str, Callable[[list[str]], str]] = {
        "singlequote": lambda items: ",".join("'" + item.replace("'", "\\'") + "'" for item in items),
        "doublequote": lambda items: ",".join('"' + item.replace('"', '\\"') + '"' for item in items),
        "sqlstring": lambda items: ",".join("'" + item.replace("'", "''") + "'" for item in items),
        "csv": ",".join,
        "raw": ",".join,
        "pipe": "|".join,
    }
    if fmt is None:
        if len(selected) > 1:
            raise ValueError(f"multi-value ${name} needs an explicit format, e.g. ${{{name}:singlequote}}")
        return selected[0]
    if fmt not in formatters:
        raise ValueError(f"unsupported variable format {fmt!r} in ${{{name}:{fmt}}}")
    return formatters[fmt](selected)


def expand_macros(sql: str, time_range: TimeRange, interval_s: int) -> str:
    out, position = [], 0
    for match in _MACRO.finditer(sql):
        if match.start() < position:
            continue  # inside the arguments of a macro already expanded
        name, end = match.group(1), match.end()
        args: list[str] = []
        if end < len(sql) and sql[end] == "(":
            inner, end = _balanced(sql, end)
            args = [arg.strip() for arg in _split_args(inner)]
        out.append(sql[position : match.start()])
        out.append(_macro(name, args, time_range, interval_s))
        position = end
    out.append(sql[position:])
    return "".join(out)


def _macro(name: str, args: list[str], time_range: TimeRange, interval_s: int) -> str:
    start, end, seconds = time_range.start, time_range.end, max(int(interval_s), 1)
    dt = lambda moment: f"toDateTime({int(moment.timestamp())})"  # noqa: E731
    dt_ms = lambda moment: f"fromUnixTimestamp64Milli({int(moment.timestamp() * 1000)})"  # noqa: E731
    date = lambda moment: f"toDate('{moment.astimezone(UTC):%Y-%m-%d}')"  # noqa: E731
    expansions: dict[str, tuple[int, Callable[[], str]]] = {
        "fromTime": (0, lambda: dt(start)),
        "toTime": (0, lambda: dt(end)),
        "fromTime_ms": (0, lambda: dt_ms(start)),
        "toTime_ms": (0, lambda: dt_ms(end)),
        "timeFilter": (1, lambda: f"{args[0]} >= {dt(start)} AND {args[0]} <= {dt(end)}"),
        "timeFilter_ms": (1, lambda: f"{args[0]} >= {dt_ms(start)} AND {args[0]} <= {dt_ms(end)}"),
        "dateFilter": (1, lambda: f"{args[0]} >= {date(start)} AND {args[0]} <= {date(end)}"),
        "dateTimeFilter": (2, lambda: _date_time_filter(args, start, end)),
        "dt": (2, lambda: _date_time_filter(args, start, end)),
        "timeInterval": (1, lambda: f"toStartOfInterval(toDateTime({args[0]}), INTERVAL {seconds} second)"),
        "timeInterval_ms": (
            1,
            lambda: f"toStartOfInterval(toDateTime64({args[0]}, 3), INTERVAL {seconds * 1000} millisecond)",
        ),
        "interval_s": (0, lambda: str(seconds)),
    }
    if name not in expansions:
        raise ValueError(f"unknown macro $__{name}")
    arity, render = expansions[name]
    if arity and len(args) != arity:
        raise ValueError(f"$__{name} expects {arity} argument(s), got {len(args)}")
    return render()


def _date_time_filter(args: list[str], start: datetime, end: datetime) -> str:
    day = lambda moment: f"toDate('{moment.astimezone(UTC):%Y-%m-%d}')"  # noqa: E731
    date_part = f"({args[0]} >= {day(start)} AND {args[0]} <= {day(end)})"
    since, until = int(start.timestamp()), int(end.timestamp())
    time_part = f"({args[1]} >= toDateTime({since}) AND {args[1]} <= toDateTime({until}))"
    return f"{date_part} AND {time_part}"


def _balanced(sql: str, open_at: int) -> tuple[str, int]:
    """The text inside the parenthesis opening at ``open_at`` and the index after its closing one."""
    depth = 0
    for index in range(open_at, len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[index], 0)
        if depth == 0:
            return sql[open_at + 1 : index], index + 1
    raise ValueError(f"unbalanced parentheses after macro at: {sql[open_at : open_at + 40]!r}")


def _split_args(inner: str) -> list[str]:
    args, depth, current = [], 0, []
    for char in inner:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            args.append("".join(current))
            current = []
        else:
            current.append(char)
    args.append("".join(current))
    return args


def all_values(client: Client, dashboard: Dashboard, time_range: TimeRange, interval_s: int) -> dict[str, list[str]]:
    """Each variable with "All" selected: every value its query returns for the time range."""
    values: dict[str, list[str]] = {}
    for variable in dashboard.variables:
        sql = expand(variable.query, time_range, interval_s, values)
        values[variable.name] = [str(row[0]) for row in client.query(sql).result_rows]
    return values


def column_kind(type_name: str) -> str:
    """'time', 'number' or 'string' for a ClickHouse type name, the way a panel sees the column."""
    inner = type_name
    for wrapper in ("Nullable(", "LowCardinality("):
        while inner.startswith(wrapper):
            inner = inner[len(wrapper) : -1]
    base = inner.split("(")[0]
    if base in ("DateTime", "DateTime64", "Date", "Date32"):
        return "time"
    if base in ("String", "FixedString", "Enum8", "Enum16", "UUID"):
        return "string"
    if base.startswith(("Int", "UInt", "Float", "Decimal")):
        return "number"
    return base
