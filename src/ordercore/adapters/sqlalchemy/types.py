"""Column types every table uses: UTC times with microseconds, case-sensitive strings, money
as integer minor units."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Dialect, String, TypeDecorator
from sqlalchemy.dialects import mysql

__all__ = ["Str", "UTCDateTime", "money_column"]


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes with microseconds on every backend.

    PostgreSQL stores ``timestamptz``; SQLite and MariaDB store naive UTC (MariaDB with
    ``DATETIME(6)`` so that microseconds survive). Naive datetimes are refused on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def Str(length: int) -> String:
    """``String(length)``, compared case-sensitively on every backend.

    MariaDB/MySQL's default collations compare strings case-insensitively ("Plan-A" equals
    "plan-a"), which would let two skus, order numbers or idempotency keys collide that
    differ only in case; there the column uses the binary ``utf8mb4_bin`` collation. (That
    collation still ignores trailing spaces, so the domain refuses identifiers with
    surrounding white space.)
    """
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def money_column(name: str, nullable: bool = False) -> Column[Any]:
    """``NAME_minor``: an amount in integer minor units (its currency is another column)."""
    return Column(f"{name}_minor", BigInteger, nullable=nullable)
