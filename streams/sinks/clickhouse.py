"""Batched, idempotent, never-dropping inserts of messages into ClickHouse (the persist stage's sink).

Contract (after quix-streams' batching sinks):

- ``add(message)`` turns a FrameDetections / Alert / DeadLetter into rows and
  buffers them per table. A message whose values cannot be stored raises
  ``RowConversionError`` naming it, and nothing of it is buffered.
- ``should_flush()`` is true once a table holds ``max_rows`` rows or its oldest
  row waited ``max_interval_s``; at a steady load that is one INSERT per
  table per interval.
- ``flush()`` writes every table's buffer with one columnar INSERT each and
  returns the counts. When it returns, everything added before is stored, so
  the caller may commit its offsets.
- Idempotent: rows whose id is already stored are skipped (a replay inserts
  nothing), on top of the tables' own ReplacingMergeTree deduplication and
  the replay-safe rollups (see infra/clickhouse/migrations).
- Transient errors (connection refused, timeouts, overload) are retried with
  exponential backoff until they pass or ``cancel()`` is called; rows are
  never dropped. A permanent error that rows can cause (a value refused by
  the server or by the client's serialisation) is narrowed down to the
  messages causing it and raised as ``PermanentInsertError`` naming them; the
  rest of the batch is stored, so the caller dead-letters those messages and
  flushes again (rows those messages already have in a table flushed earlier
  stay). An error no row explains (missing table, bad credentials, chDB
  directory held by another process) is ``SinkFailure``: nothing is refused,
  the rows stay buffered, and the worker should stop without committing.

Not thread-safe by design beyond a lock that serialises calls: a flush that is
retrying blocks ``add``, which is the backpressure the pipeline wants.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.insert import InsertContext
from prometheus_client import Counter, Gauge, Histogram

from streams.retry import RetryCancelled, RetryPolicy, retry_sync
from streams.sinks.clickhouse_db import is_row_error, is_transient, quote_identifier
from streams.sinks.rows import TABLES, Persistable, Row, RowConversionError, Table, rows_for

__all__ = [
    "ClickHouseSink",
    "FlushResult",
    "PermanentInsertError",
    "RetryPolicy",
    "RowConversionError",
    "SinkCancelled",
    "SinkFailure",
]
LOOKUP_CHUNK = 2_000  # ids per lookup query: bounded query size however large the batch
# Transient ClickHouse errors: 0.2 s, 0.4 s, ... up to 15 s, +-20 %, until they pass or cancel().
CLICKHOUSE_RETRY = RetryPolicy(initial_s=0.2, max_s=15.0, multiplier=2.0, jitter=0.2)

log = logging.getLogger(__name__)

ROWS_INSERTED = Counter("framestream_sink_rows_inserted_total", "Rows written to ClickHouse", ["table"])
ROWS_SKIPPED = Counter(
    "framestream_sink_rows_skipped_total", "Rows not written because their id was already stored", ["table"]
)
INSERTS = Counter("framestream_sink_inserts_total", "INSERT statements that succeeded", ["table"])
RETRIES = Counter("framestream_sink_retries_total", "Transient ClickHouse errors retried", ["table"])
INSERT_SECONDS = Histogram(
    "framestream_sink_insert_seconds",
    "Time to store one table's batch (id lookup + INSERT)",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BUFFERED_ROWS = Gauge("framestream_sink_buffered_rows", "Rows waiting for the next flush", ["table"])


class SinkCancelled(RuntimeError):
    """``cancel()`` was called while a flush was waiting to retry; the rows are still buffered."""


class SinkFailure(RuntimeError):
    """ClickHouse cannot take any row (missing table, bad credentials, chDB directory held elsewhere):
    not the messages' fault, so nothing is refused; the rows stay buffered and the caller should stop."""


class PermanentInsertError(RuntimeError):
    """ClickHouse refused these messages' rows for a reason a retry cannot fix."""

    def __init__(self, table: str, message_ids: Sequence[str], cause: BaseException) -> None:
        self.table = table
        self.message_ids = tuple(message_ids)
        self.cause = cause
        super().__init__(f"{table}: rows of {', '.join(self.message_ids)} refused: {cause}")


@dataclass(frozen=True)
class FlushResult:
    """Rows written, rows skipped as already stored, and seconds spent (lookup + INSERT), per table."""

    inserted: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.inserted.values())


@dataclass
class _TableBuffer:
    table: Table
    rows: dict[str, Row] = field(default_factory=dict)  # row id -> row; a re-added id replaces its row
    owners: dict[str, str] = field(default_factory=dict)  # row id -> message id, for error reports
    first_added: float | None = None

    def discard(self, row_ids: Sequence[str]) -> None:
        for row_id in row_ids:
            self.rows.pop(row_id, None)
            self.owners.pop(row_id, None)
        if not self.rows:
            self.first_added = None
        BUFFERED_ROWS.labels(self.table.name).set(len(self.rows))


class ClickHouseSink:
    """``client`` is either a connected client, reused across retries (HTTP clients reconnect by
    themselves), or a function returning one: then the sink connects lazily, reconnects after a
    connection-level failure and closes what it opened in ``close()``."""

    def __init__(
        self,
        client: Client | Callable[[], Client],
        database: str,
        *,
        max_rows: int = 10_000,
        max_interval_s: float = 1.0,
        retry: RetryPolicy = CLICKHOUSE_RETRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_rows < 1 or max_interval_s <= 0:
            raise ValueError(f"max_rows must be >= 1 and max_interval_s > 0 (got {max_rows}, {max_interval_s})")
        self._connect = None if isinstance(client, Client) else client
        self._client: Client | None = client if isinstance(client, Client) else None
        self._database = quote_identifier(database)
        self._max_rows = max_rows
        self._max_interval_s = max_interval_s
        self._retry = retry
        self._clock = clock
        self._buffers = {table.name: _TableBuffer(table) for table in TABLES}
        self._insert_contexts: dict[tuple[int, str], InsertContext] = {}
        self._lock = threading.RLock()
        self._cancelled = threading.Event()

    @property
    def buffered_rows(self) -> dict[str, int]:
        return {name: len(buffer.rows) for name, buffer in self._buffers.items()}

    def add(self, message: Persistable) -> None:
        """Buffer the message's rows; raises ``RowConversionError`` (nothing buffered) when it cannot be stored."""
        converted = rows_for(message)
        with self._lock:
            now = self._clock()
            for part in converted.parts:
                buffer = self._buffers[part.table.name]
                for row in part.rows:
                    row_id = part.table.row_id(row)
                    buffer.rows[row_id] = row
                    buffer.owners[row_id] = converted.message_id
                if buffer.rows and buffer.first_added is None:
                    buffer.first_added = now
                BUFFERED_ROWS.labels(part.table.name).set(len(buffer.rows))

    def should_flush(self) -> bool:
        return self.seconds_until_due() == 0.0

    def seconds_until_due(self) -> float | None:
        """Seconds until some buffer is due for a flush (0.0: now); None when nothing is buffered."""
        with self._lock:
            waits = [self._wait_of(buffer) for buffer in self._buffers.values() if buffer.rows]
        return min(waits) if waits else None

    def _wait_of(self, buffer: _TableBuffer) -> float:
        if len(buffer.rows) >= self._max_rows or buffer.first_added is None:
            return 0.0
        return max(0.0, buffer.first_added + self._max_interval_s - self._clock())

    def flush(self) -> FlushResult:
        """Store every buffered row (one INSERT per non-empty table); see the module doc for errors."""
        result = FlushResult()
        with self._lock:
            pending = [buffer for buffer in self._buffers.values() if buffer.rows]
            known = self._prefetch_stored_ids(pending)
            for buffer in pending:
                name = buffer.table.name
                started = time.perf_counter()
                inserted, skipped = self._flush_table(buffer, known.get(name))
                result.inserted[name] = inserted
                result.skipped[name] = skipped
                result.seconds[name] = time.perf_counter() - started
        return result

    def cancel(self) -> None:
        """Stop retrying: a flush waiting for ClickHouse raises ``SinkCancelled`` and keeps its rows."""
        self._cancelled.set()

    def close(self) -> FlushResult:
        """Flush what is buffered, then close the client if the sink opened it (even when the flush fails)."""
        try:
            return self.flush() if not self._cancelled.is_set() else FlushResult()
        finally:
            self._discard_client()

    def _flush_table(self, buffer: _TableBuffer, known: set[str] | None = None) -> tuple[int, int]:
        rows = list(buffer.rows.values())
        inserted, skipped, refused = self._store_isolating(buffer, rows, known)
        buffer.discard([buffer.table.row_id(row) for row in rows])
        if refused is not None:
            raise refused
        return inserted, skipped

    def _store_isolating(
        self, buffer: _TableBuffer, rows: list[Row], known: set[str] | None = None
    ) -> tuple[int, int, PermanentInsertError | None]:
        """Store ``rows``; on a permanent error, bisect by message so only the culprits are refused.
        ``known``: which of them were stored, looked up just before; it serves the first attempt
        only (after a failed INSERT, whose outcome may be unknown, the lookup is made again)."""
        attempts = iter([known])
        try:
            inserted, skipped = self._retrying(
                buffer.table, lambda client: self._store(client, buffer.table, rows, next(attempts, None))
            )
            return inserted, skipped, None
        except (SinkCancelled, SinkFailure):
            raise
        except Exception as error:
            if not is_row_error(error):
                raise SinkFailure(f"{buffer.table.name}: ClickHouse cannot take rows: {error}") from error
            owners = list(dict.fromkeys(buffer.owners[buffer.table.row_id(row)] for row in rows))
            if len(owners) == 1:
                log.error(
                    "ClickHouse refused a message",
                    extra={"table": buffer.table.name, "message_id": owners[0], "error": str(error)},
                )
                return 0, 0, PermanentInsertError(buffer.table.name, owners, error)
        halves = (set(owners[: len(owners) // 2]), set(owners[len(owners) // 2 :]))
        totals = [0, 0]
        refused: list[PermanentInsertError] = []
        for half in halves:
            subset = [row for row in rows if buffer.owners[buffer.table.row_id(row)] in half]
            inserted, skipped, problem = self._store_isolating(buffer, subset)
            totals[0] += inserted
            totals[1] += skipped
            if problem is not None:
                refused.append(problem)
        merged = (
            PermanentInsertError(
                buffer.table.name, [mid for problem in refused for mid in problem.message_ids], refused[0].cause
            )
            if refused
            else None
        )
        return totals[0], totals[1], merged

    def _store(self, client: Client, table: Table, rows: list[Row], stored: set[str] | None = None) -> tuple[int, int]:
        """Insert the rows whose ids are not stored yet. Looking up first makes a retry after an
        insert of unknown outcome (a timeout) safe as well as a replay."""
        started = time.perf_counter()
        if stored is None:
            stored = self._stored_ids(client, table, rows)
        fresh = [row for row in rows if table.row_id(row) not in stored]
        if fresh:
            context = self._insert_context(client, table)
            context.data = list(zip(*fresh, strict=True))
            client.insert(context=context)
            INSERTS.labels(table.name).inc()
        INSERT_SECONDS.labels(table.name).observe(time.perf_counter() - started)
        ROWS_INSERTED.labels(table.name).inc(len(fresh))
        ROWS_SKIPPED.labels(table.name).inc(len(rows) - len(fresh))
        return len(fresh), len(rows) - len(fresh)

    def _insert_context(self, client: Client, table: Table) -> InsertContext:
        """One reusable insert context per table and client: the column types are read once, not per INSERT."""
        key = (id(client), table.name)
        if key not in self._insert_contexts:
            self._insert_contexts[key] = client.create_insert_context(
                f"{self._database}.{table.name}", column_names=table.columns, column_oriented=True
            )
        return self._insert_contexts[key]

    def _stored_ids(self, client: Client, table: Table, rows: list[Row]) -> set[str]:
        stored: set[str] = set()
        for start in range(0, len(rows), LOOKUP_CHUNK):
            stored |= self._stored_ids_of_chunk(client, table, rows[start : start + LOOKUP_CHUNK])
        return stored

    def _stored_ids_of_chunk(self, client: Client, table: Table, rows: list[Row]) -> set[str]:
        sql, parameters = self._lookup(table, rows)
        return {str(value) for (_, value) in client.query(sql, parameters=parameters).result_rows}

    def _prefetch_stored_ids(self, buffers: list[_TableBuffer]) -> dict[str, set[str]]:
        """The stored ids of every table to flush, in ONE query (UNION ALL) instead of one per table:
        chDB spends ~10 ms of CPU on any query, however small, and the persist stage flushes several
        times a second. Only on a client already connected and for batches of one lookup chunk; any
        error leaves the lookups to each table's own retried path."""
        tables = [buffer for buffer in buffers if len(buffer.rows) <= LOOKUP_CHUNK]
        if len(tables) < 2 or self._client is None or self._cancelled.is_set():
            return {}
        selects, parameters = [], {}
        for index, buffer in enumerate(tables):
            sql, values = self._lookup(buffer.table, list(buffer.rows.values()), prefix=f"t{index}_")
            selects.append(sql)
            parameters.update(values)
        try:
            answer = self._client.query(" UNION ALL ".join(selects), parameters=parameters).result_rows
        except Exception:  # noqa: BLE001 - the per-table path retries and reports properly
            log.debug("prefetching stored ids failed; looking up per table", exc_info=True)
            return {}
        known: dict[str, set[str]] = {buffer.table.name: set() for buffer in tables}
        for table_name, value in answer:
            known[str(table_name)].add(str(value))
        return known

    def _lookup(self, table: Table, rows: list[Row], prefix: str = "") -> tuple[str, dict[str, object]]:
        """SELECT (table name, id) of the rows already stored, narrowed by the sorting key's columns."""
        conditions = [f"{column} IN {{{prefix}{column}:Array(String)}}" for column in table.lookup_columns]
        parameters: dict[str, object] = {
            f"{prefix}{column}": sorted({getattr(row, column) for row in rows}) for column in table.lookup_columns
        }
        if table.time_is_deterministic:
            times = [getattr(row, table.time_column) for row in rows]
            conditions.append(f"{table.time_column} >= fromUnixTimestamp64Milli({{{prefix}lo:Int64}})")
            conditions.append(f"{table.time_column} <= fromUnixTimestamp64Milli({{{prefix}hi:Int64}})")
            parameters[f"{prefix}lo"] = int(min(times).timestamp() * 1000) - 1
            parameters[f"{prefix}hi"] = int(max(times).timestamp() * 1000) + 1
        conditions.append(f"{table.id_column} IN {{{prefix}ids:Array(String)}}")
        parameters[f"{prefix}ids"] = [table.row_id(row) for row in rows]
        sql = (
            f"SELECT '{table.name}' AS stored_in, toString({table.id_column}) AS id "
            f"FROM {self._database}.{table.name} WHERE " + " AND ".join(conditions)
        )
        return sql, parameters

    def _retrying(self, table: Table, operation: Callable[[Client], tuple[int, int]]) -> tuple[int, int]:
        def on_retry(error: Exception) -> None:
            RETRIES.labels(table.name).inc()
            if getattr(error, "code", None) is None:
                self._discard_client()  # the connection itself failed: open a new one next time

        try:
            return retry_sync(
                lambda: operation(self._get_client()),
                policy=self._retry,
                transient=is_transient,
                what=f"ClickHouse insert into {table.name}",
                log=log,
                stop=self._cancelled,
                on_retry=on_retry,
                extra={"table": table.name},
            )
        except RetryCancelled as cancelled:
            raise SinkCancelled(f"cancelled while {table.name} waited for ClickHouse") from cancelled.__cause__

    def _get_client(self) -> Client:
        if self._client is None:
            assert self._connect is not None  # a given client is never discarded
            self._client = self._connect()
        return self._client

    def _discard_client(self) -> None:
        if self._connect is None:
            return  # not ours to close or replace
        client, self._client = self._client, None
        self._insert_contexts.clear()
        if client is not None:
            try:
                client.close()
            except Exception:  # a broken connection may fail to close; it is dropped either way
                log.debug("closing a broken ClickHouse client failed", exc_info=True)
