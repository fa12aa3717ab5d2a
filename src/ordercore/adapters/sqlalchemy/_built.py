"""Statements built once per table and reused.

SQLAlchemy memoizes a statement's cache key on the statement object: executing the same object
again, with its values given as execution parameters, skips building the statement and
computing its key — most of the Python time of a small query. The write paths keep theirs in
the table's ``info`` (one set per table object, so several table sets — schemas, prefixes —
never share one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Table, insert

__all__ = ["built", "insert_into"]

T = TypeVar("T")


def built(table: Table, name: str, make: Callable[[], T]) -> T:
    """The statement ``name`` of ``table``, made by ``make`` the first time (building one
    twice in a race is harmless)."""
    key = f"ordercore.built.{name}"
    found: Any = table.info.get(key)
    if found is None:
        found = table.info[key] = make()
    return found  # type: ignore[no-any-return]


def insert_into(table: Table) -> Any:
    """``INSERT INTO table``, its columns taken from the execution parameters."""
    return built(table, "insert", lambda: insert(table))
