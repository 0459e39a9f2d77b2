"""The Grafana macro and variable expander the dashboard tests use: the one the report uses too."""

from framestream.grafana_sql import (
    Dashboard,
    Panel,
    TimeRange,
    all_values,
    column_kind,
    expand,
    expand_macros,
    expand_variables,
    format_values,
    load_dashboards,
)

__all__ = [
    "Dashboard",
    "Panel",
    "TimeRange",
    "all_values",
    "column_kind",
    "expand",
    "expand_macros",
    "expand_variables",
    "format_values",
    "load_dashboards",
]
