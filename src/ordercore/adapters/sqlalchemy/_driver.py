"""The hot statements of the write paths, executed on the driver's cursor.

A payment notification or a new order runs about ten small statements. Through
``Connection.execute`` each one costs, besides its round trip, SQLAlchemy's execution
path (an execution context, parameter processing, result metadata) and, on PostgreSQL, a
new psycopg cursor whose result description is built column by column: about 60 µs of
client CPU a statement on SQLite and twice that on PostgreSQL, measured with
``benchmarks/callbacks.py --breakdown`` — most of the gap to SQL written by hand.

:func:`execute` runs a statement built once (see ``_built.py``) the way SQLAlchemy would,
minus that overhead: the statement is compiled once per dialect and set of parameter names
(the same SQL text SQLAlchemy sends), its parameters go through the same bind processors,
its rows through the same result processors, on one cursor kept per driver connection.
What stays the same:

* **Events.** ``before_cursor_execute`` and ``after_cursor_execute`` are dispatched when
  an engine listens (the statement counts of the tests and benchmarks see these
  statements), and a driver error goes through SQLAlchemy's own handling: the same
  ``sqlalchemy.exc`` exceptions, ``handle_error`` events and disconnect detection.
* **Transactions.** Only inside a transaction the ``Connection`` began: SQLAlchemy still
  begins, commits and rolls back.
* **Anything SQLAlchemy would do in Python falls back to it**: a statement whose
  execution needs Python-side column defaults, expanding (``IN``) parameters or
  post-compile values is executed by ``Connection.execute``, unchanged.
"""

from __future__ import annotations

import contextlib
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Connection, event
from sqlalchemy.sql import Executable

__all__ = ["DriverResult", "defer", "execute", "executemany", "flush"]

_PLANS: Final = "ordercore.driver_plans"
_CURSOR: Final = "ordercore.driver_cursor"
_MISSING: Final = object()


class _Plan:
    """One statement compiled for one dialect and one set of parameter names."""

    __slots__ = (
        "binds",
        "columns",
        "names",
        "own",
        "readers",
        "returns",
        "row",
        "slots",
        "sql",
        "types",
    )

    def __init__(self, compiled: Any) -> None:
        self.sql: str = compiled.string
        positional = bool(compiled.positional)
        self.names: tuple[str, ...] | None = tuple(compiled.positiontup) if positional else None
        self.binds: dict[str, Callable[[Any], Any]] = dict(compiled._bind_processors)
        #: values bound in the statement itself (``column == "reserved"``), by name
        self.own: dict[str, Any] = {
            name: bind.value
            for bind, name in compiled.bind_names.items()
            if not bind.required and bind.callable is None
        }
        result_columns = compiled._result_columns
        self.columns: tuple[str, ...] = tuple(c[0] for c in result_columns)
        self.types: tuple[Any, ...] = tuple(c[3] for c in result_columns)
        self.readers: tuple[Callable[[Any], Any] | None, ...] | None = None
        self.returns = bool(result_columns)
        self.row: Any = _row_class(self.columns) if self.columns else None
        #: positional drivers: each position's name, bind processor and own value
        self.slots: tuple[tuple[str, Callable[[Any], Any] | None, Any], ...] = tuple(
            (n, self.binds.get(n), self.own.get(n, _MISSING)) for n in self.names or ()
        )

    def parameters(self, params: Mapping[str, Any]) -> Any:
        """The driver's parameters: the statement's own values (literals bound at build
        time) and ``params``, through the bind processors, in the driver's style."""
        if self.names is not None:
            out = []
            for name, process, own in self.slots:
                value = params[name] if own is _MISSING else params.get(name, own)
                out.append(value if process is None else process(value))
            return tuple(out)
        merged = {**self.own, **params} if self.own else dict(params)
        for name, process in self.binds.items():
            if name in merged:
                merged[name] = process(merged[name])
        return merged


def _plan(conn: Connection, stmt: Executable, keys: tuple[str, ...], many: bool) -> _Plan | None:
    plans: dict[Any, _Plan | None] = conn.dialect.__dict__.setdefault(_PLANS, {})
    key = (stmt, keys, many)
    try:
        return plans[key]
    except KeyError:
        pass
    compiled: Any = stmt.compile(  # type: ignore[attr-defined]
        dialect=conn.dialect, column_keys=list(keys), for_executemany=many
    )
    usable = not (
        getattr(compiled, "insert_prefetch", None)
        or getattr(compiled, "update_prefetch", None)
        or getattr(compiled, "post_compile_params", None)
        or getattr(compiled, "literal_execute_params", None)
        or getattr(compiled, "_insertmanyvalues", None)
        or getattr(compiled, "escaped_bind_names", None)  # names the SQL spells otherwise
        or any(bind.callable is not None for bind in compiled.bind_names)  # values made late
    )
    plan = _Plan(compiled) if usable else None
    plans[key] = plan
    return plan


def _row_class(columns: tuple[str, ...]) -> Any:
    """A named tuple of the columns, with ``_mapping`` (by column key) as SQLAlchemy's rows
    have."""
    base: Any = namedtuple("Row", columns, rename=True)  # type: ignore[misc]

    class Row(base):
        __slots__ = ()

        @property
        def _mapping(self) -> dict[str, Any]:
            return dict(zip(columns, self, strict=True))

    return Row


class DriverResult:
    """What a statement gave: its rows (named tuples, processed as SQLAlchemy would), the
    row count and the driver's last row id."""

    __slots__ = ("lastrowid", "rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int, lastrowid: Any) -> None:
        self.rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def all(self) -> list[Any]:
        return self.rows

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        if len(self.rows) != 1:
            raise LookupError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalars(self) -> list[Any]:
        return [r[0] for r in self.rows]

    @property
    def inserted_id(self) -> int:
        """The new row's integer key: its ``RETURNING`` value (PostgreSQL compiles an
        ``INSERT`` with it), or the driver's last row id (SQLite, MariaDB)."""
        value = self.rows[0][0] if self.rows else self.lastrowid
        if value is None:
            raise LookupError("the statement inserted no row with an integer key")
        return int(value)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


def _from_sqlalchemy(result: Any) -> DriverResult:
    """The result of a statement run by ``Connection.execute`` (see the module's
    docstring), in the same shape."""
    rows = list(result.all()) if result.returns_rows else []
    lastrowid = None
    if not rows and getattr(result, "context", None) is not None:
        pk = getattr(result, "inserted_primary_key", None) if result.context.isinsert else None
        lastrowid = None if pk is None else pk[0]
    return DriverResult(rows, result.rowcount, lastrowid)


def _cursor(conn: Connection) -> Any:
    fairy: Any = conn.connection
    dbapi = fairy.dbapi_connection
    held = fairy.info.get(_CURSOR)
    if held is not None and held[0] is dbapi:
        return held[1]
    cursor = dbapi.cursor()
    fairy.info[_CURSOR] = (dbapi, cursor)
    return cursor


def _forget_cursor(conn: Connection) -> None:
    with contextlib.suppress(Exception):  # an invalidated connection has no info left
        conn.connection.info.pop(_CURSOR, None)


def execute(conn: Connection, stmt: Executable, params: Mapping[str, Any]) -> DriverResult:
    """Run ``stmt`` with ``params`` on the driver's cursor, inside the connection's
    transaction (see the module's docstring); rows come back fetched."""
    plan = _plan(conn, stmt, tuple(params), False) if conn.in_transaction() else None
    if plan is None:
        return _from_sqlalchemy(conn.execute(stmt, dict(params)))
    if conn.connection.info.get(_DEFERRED):
        # the writes waiting go first, with this statement, in one round trip
        result = _flush(conn, (plan, params))
        assert result is not None
        return result
    cursor = _cursor(conn)
    fetched = _run(conn, cursor, plan, plan.parameters(params), many=False)
    return _result(conn, plan, cursor, fetched)


def _cursor_events(conn: Connection) -> bool:
    """Whether anyone listens for ``before/after_cursor_execute`` on this connection."""
    return bool(
        (conn._has_events or conn.engine._has_events)
        and (conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute)
    )


def _run(conn: Connection, cursor: Any, plan: _Plan, parameters: Any, *, many: bool) -> Any:
    """Execute on ``cursor`` with the engine's cursor events around it and SQLAlchemy's
    handling of a driver error; the rows, when the statement returns some."""
    sql = plan.sql
    events = _cursor_events(conn)
    if events:
        conn.dispatch.before_cursor_execute(conn, cursor, sql, parameters, None, many)
    try:
        if many:
            cursor.executemany(sql, parameters)
            fetched: Any = ()
        else:
            cursor.execute(sql, parameters)
            fetched = cursor.fetchall() if plan.returns else ()
    except conn.dialect.loaded_dbapi.Error as error:
        _forget_cursor(conn)  # SQLAlchemy closes it
        conn._handle_dbapi_exception(error, sql, parameters, cursor, None)
        raise  # pragma: no cover - the line above raises
    if events:
        conn.dispatch.after_cursor_execute(conn, cursor, sql, parameters, None, many)
    return fetched


def _result(conn: Connection, plan: _Plan, cursor: Any, fetched: Sequence[Any]) -> DriverResult:
    rows: list[Any] = []
    if fetched:
        readers = plan.readers
        if readers is None:
            readers = plan.readers = tuple(
                t._cached_result_processor(conn.dialect, d[1])
                for t, d in zip(plan.types, cursor.description, strict=True)
            )
        new, row = tuple.__new__, plan.row
        if any(r is not None for r in readers):
            rows = [
                new(row, [v if f is None or v is None else f(v) for f, v in zip(readers, r)])  # noqa: B905
                for r in fetched
            ]
        else:
            rows = [new(row, r) for r in fetched]
    return DriverResult(rows, cursor.rowcount, getattr(cursor, "lastrowid", None))


def executemany(conn: Connection, stmt: Executable, params: Sequence[Mapping[str, Any]]) -> None:
    """Run ``stmt`` once per parameter set (an ``INSERT`` without ``RETURNING``)."""
    plan = _plan(conn, stmt, tuple(params[0]), True) if params and conn.in_transaction() else None
    if plan is not None and conn.connection.info.get(_DEFERRED):
        _flush(conn)  # the writes waiting go first
    if plan is None or plan.returns:
        conn.execute(stmt, [dict(p) for p in params])
        return
    _run(conn, _cursor(conn), plan, [plan.parameters(p) for p in params], many=True)


# ------------------------------------------------------------------------ deferred writes
#
# On PostgreSQL a write whose answer nobody reads at once (an UPDATE of an attempt, the
# outbox message, the inbox row's outcome...) waits in a queue on the connection, and goes
# to the server together with the next statement that needs an answer — or just before the
# commit — in one round trip (psycopg's pipeline mode). What each write returns (its row
# count) is checked then. Nothing can read the database in between without the queue being
# sent first: a driver-level statement takes it along, and engine events send it before any
# ``Connection.execute`` (savepoints included) and before a commit, and drop it on a
# rollback and when the connection goes back to the pool.

_DEFERRED: Final = "ordercore.driver_deferred"
_WATCHED: Final = "ordercore.driver_watched"
_PIPELINES: Final = "ordercore.driver_pipelines"


def defer(
    conn: Connection,
    stmt: Executable,
    params: Mapping[str, Any],
    *,
    check: Callable[[int], None] | None = None,
) -> None:
    """Run a write (no rows come back) now, or on PostgreSQL with the next statement that
    needs an answer; ``check(rowcount)`` runs once it has run (and may raise, e.g. a
    concurrent modification): the caller's transaction then rolls back as it would have."""
    plan = None
    if conn.dialect.name == "postgresql" and conn.in_transaction():
        # an INSERT compiled as for executemany: without the RETURNING of its new key
        plan = _plan(conn, stmt, tuple(params), bool(getattr(stmt, "is_insert", False)))
    if plan is None or plan.returns or not _pipelined(conn):
        result = execute(conn, stmt, params)
        if check is not None:
            check(result.rowcount)
        return
    _watch(conn.engine)
    conn.connection.info.setdefault(_DEFERRED, []).append((plan, params, check))


def _pipelined(conn: Connection) -> bool:
    """Whether the driver has a pipeline mode (psycopg 3 on libpq 14 or later), asked once
    per dialect."""
    known: bool | None = conn.dialect.__dict__.get(_PIPELINES)
    if known is None:
        pipeline = getattr(conn.dialect.loaded_dbapi, "Pipeline", None)
        known = conn.dialect.__dict__[_PIPELINES] = bool(pipeline and pipeline.is_supported())
    return known


def _flush(
    conn: Connection, extra: tuple[_Plan, Mapping[str, Any]] | None = None
) -> DriverResult | None:
    """Send the queued writes (and ``extra``, a statement whose rows are wanted) in one
    round trip; check each write's row count; return ``extra``'s result."""
    fairy: Any = conn.connection
    queue: list[tuple[_Plan, Mapping[str, Any], Callable[[int], None] | None]] = fairy.info.pop(
        _DEFERRED, None
    ) or []
    items = [(plan, plan.parameters(params), check) for plan, params, check in queue]
    if extra is not None:
        items.append((extra[0], extra[0].parameters(extra[1]), None))
    if not items:
        return None
    dbapi = fairy.dbapi_connection
    events = _cursor_events(conn)
    cursors: list[Any] = []
    try:
        with dbapi.pipeline():
            for plan, parameters, _ in items:
                cursor = dbapi.cursor()
                if events:
                    conn.dispatch.before_cursor_execute(
                        conn, cursor, plan.sql, parameters, None, False
                    )
                cursor.execute(plan.sql, parameters)
                cursors.append(cursor)
        fetched = cursors[-1].fetchall() if extra is not None and extra[0].returns else ()
    except conn.dialect.loaded_dbapi.Error as error:
        sql = ";\n".join(plan.sql for plan, _, _ in items)
        conn._handle_dbapi_exception(error, sql, [p for _, p, _ in items], None, None)
        raise  # pragma: no cover - the line above raises
    for (plan, parameters, check), cursor in zip(items, cursors, strict=True):
        if events:
            conn.dispatch.after_cursor_execute(conn, cursor, plan.sql, parameters, None, False)
        if check is not None:
            check(cursor.rowcount)
    if extra is None:
        return None
    return _result(conn, extra[0], cursors[-1], fetched)


def flush(conn: Connection) -> None:
    """Send the writes waiting on this connection now (see :func:`defer`)."""
    if conn.connection.info.get(_DEFERRED):
        _flush(conn)


def _watch(engine: Any) -> None:
    """Send the queue before anything else runs or commits; drop it on a rollback."""
    if engine.__dict__.get(_WATCHED):
        return
    engine.__dict__[_WATCHED] = True

    def before_execute(conn: Connection, *_args: Any) -> None:
        flush(conn)

    def before_commit(conn: Connection) -> None:
        try:
            flush(conn)
        except BaseException:
            # SQLAlchemy now counts the transaction as ended (a failed commit), and would
            # hand the connection back without a rollback: roll it back here
            with contextlib.suppress(Exception):
                dbapi: Any = conn.connection.dbapi_connection
                dbapi.rollback()
            raise

    def dropped(conn: Connection) -> None:
        with contextlib.suppress(Exception):  # an invalidated connection has no info left
            conn.connection.info.pop(_DEFERRED, None)

    def checked_in(_dbapi: Any, record: Any) -> None:
        if record is not None:
            record.info.pop(_DEFERRED, None)

    event.listen(engine, "before_execute", before_execute)
    event.listen(engine, "commit", before_commit)
    event.listen(engine, "rollback", dropped)
    event.listen(engine.pool, "checkin", checked_in)
