"""Sinks: where the persist stage writes messages (ClickHouse)."""
