"""The one way a message's fields become a row's columns, shared by every ``*_rows.py`` module.

Most columns are a message field of the same name: the frame context (camera, sequence number,
event, capture time), a box's corners, a report's counters. ``copy_row`` copies those, so a row
function names only what it converts (an enum's text, a tuple as a list) or derives (ids,
counts). The row type's fields stay the list of columns, in insert order.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel

RowT = TypeVar("RowT", bound=tuple[Any, ...])
# Per column: the index of the source it is copied from, or None where it is given.
_Plan = tuple[tuple[str, int | None], ...]


def copy_row(row_type: type[RowT], *sources: BaseModel, **computed: object) -> RowT:
    """A ``row_type`` (a NamedTuple) with ``computed`` as given and every other column copied from
    the one source with a field of that name. A column that no source, or more than one, has is
    an error: it must then be given in ``computed``, so no value is picked silently."""
    plan = _plan(row_type, tuple(map(type, sources)), frozenset(computed))
    values = [computed[column] if index is None else getattr(sources[index], column) for column, index in plan]
    return row_type._make(values)  # type: ignore[attr-defined]


@cache  # one plan per row function: the sink converts every message, so resolve names once
def _plan(row_type: type, source_types: tuple[type[BaseModel], ...], computed: frozenset[str]) -> _Plan:
    columns: tuple[str, ...] = row_type._fields
    unknown = computed - set(columns)
    if unknown:
        raise TypeError(f"{row_type.__name__} has no column {sorted(unknown)}")
    return tuple((column, None if column in computed else _owner(row_type, column, source_types)) for column in columns)


def _owner(row_type: type, column: str, source_types: tuple[type[BaseModel], ...]) -> int:
    # Declared model fields only: a method or property of the same name is never a column's value.
    owners = [index for index, source in enumerate(source_types) if column in source.model_fields]
    if len(owners) != 1:
        raise TypeError(f"{row_type.__name__}.{column}: {len(owners)} sources have this field, not 1; give it")
    return owners[0]
