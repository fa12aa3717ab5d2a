"""Reading every ordercore table for a backup and writing them back on restore.

Tables are named by their base name (without the host's ``table_prefix``), so a backup can
be restored under another prefix or schema. Rows are read in primary-key order, in chunks;
restored in foreign-key order (parents first), in batches. After a restore, PostgreSQL's
sequences are moved past the restored ids (MariaDB and SQLite do that by themselves).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Boolean, Connection, LargeBinary, Table, delete, func, insert, select, text
from sqlalchemy.sql.sqltypes import BigInteger, Integer

from ordercore._audit.chain import GENESIS

from . import migrate
from .tables import Tables, UTCDateTime

__all__ = ["BackupStore", "ColumnKind"]

#: How a column's values are written in a backup.
ColumnKind = str  # "int" | "str" | "bool" | "time" | "bytes"

_READ_CHUNK = 2000


def _kind(column: Any) -> ColumnKind:
    t = column.type
    if isinstance(t, UTCDateTime):
        return "time"
    if isinstance(t, Boolean):
        return "bool"
    if isinstance(t, LargeBinary):
        return "bytes"
    if isinstance(t, (Integer, BigInteger)):
        return "int"
    return "str"


class BackupStore:
    """Every ordercore table of one connection, for :mod:`ordercore._reports.backup`."""

    def __init__(self, conn: Connection, tables: Tables) -> None:
        self.conn = conn
        self.tables = tables
        self._by_base = {t.name[len(tables.prefix) :]: t for t in tables.metadata.sorted_tables}

    def names(self) -> list[str]:
        """The tables' base names, parents before children."""
        return list(self._by_base)

    def table(self, name: str) -> Table:
        return self._by_base[name]

    def columns(self, name: str) -> dict[str, ColumnKind]:
        return {c.name: _kind(c) for c in self._by_base[name].columns}

    def revision(self) -> str:
        """The migration revision these tables are at (the code's head)."""
        return migrate.head_revision()

    def busy(self) -> list[str]:
        """The tables that hold rows a fresh ``db upgrade`` does not put there (it seeds
        ``audit_head`` with the empty chain's head)."""
        out = []
        for name, table in self._by_base.items():
            if name == "audit_head":
                rows = self.conn.execute(select(table.c.seq, table.c.hash)).all()
                if any(seq != 0 or h != GENESIS for seq, h in rows):
                    out.append(name)
            elif self.count(name):
                out.append(name)
        return out

    def clear_seed(self) -> None:
        """Remove the empty chain's head that ``db upgrade`` wrote (the backup has its own)."""
        self.conn.execute(delete(self._by_base["audit_head"]))

    def count(self, name: str) -> int:
        return int(
            self.conn.execute(select(func.count()).select_from(self.table(name))).scalar_one()
        )

    def rows(self, name: str) -> Iterator[Sequence[Any]]:
        """Every row of table ``name`` (its columns in :meth:`columns` order), by primary key,
        read in keyset chunks."""
        table = self.table(name)
        pk = list(table.primary_key.columns)
        cols = list(table.columns)
        query = select(*cols).order_by(*pk)
        if len(pk) != 1:
            # composite keys (flags, wallet accounts): small tables, one ordered read
            yield from self.conn.execute(query)
            return
        key = pk[0]
        index = cols.index(key)
        last: Any = None
        while True:
            page = query if last is None else query.where(key > last)
            chunk = self.conn.execute(page.limit(_READ_CHUNK)).all()
            yield from chunk
            if len(chunk) < _READ_CHUNK:
                return
            last = chunk[-1][index]

    def insert(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(self.table(name)), list(rows))

    def reset_sequences(self) -> None:
        """Move PostgreSQL's id sequences past the restored rows."""
        if self.conn.dialect.name != "postgresql":
            return
        for table in self._by_base.values():
            pk = list(table.primary_key.columns)
            if len(pk) != 1 or pk[0].name != "id" or pk[0].autoincrement is False:
                continue
            qualified = f"{table.schema}.{table.name}" if table.schema else table.name
            seq = self.conn.execute(
                text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": qualified}
            ).scalar_one()
            if seq is None:
                continue
            top = self.conn.execute(select(func.max(pk[0]))).scalar_one()
            self.conn.execute(
                text("SELECT setval(:s, :v, :called)"),
                {"s": seq, "v": top or 1, "called": top is not None},
            )
