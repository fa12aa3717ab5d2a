"""The write path's statements on the driver's cursor (``adapters/sqlalchemy/_driver.py``)
behave as ``Connection.execute`` does, on every backend: the same rows and types, the same
errors, the same events, and SQLAlchemy itself where it would do work in Python."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import bindparam, event, exc, insert, select, text, update

from ordercore import OrderCore
from ordercore.adapters.sqlalchemy import _driver as driver

AT = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone.utc)


def _inbox_row(i: int) -> dict[str, Any]:
    return {
        "channel": "fake",
        "received_at": AT + timedelta(seconds=i),
        "remote_addr": None if i % 2 else "203.0.113.7",
        "headers": '{"x": "张三"}',
        "body": bytes(range(256)) + b"\x00end",
        "status": "received",
        "reason": None,
        "processed_at": None,
        "replay_of": None,
    }


def test_rows_types_and_keys_are_sqlalchemy_s(core: OrderCore) -> None:
    t = core.tables.inbox
    add = insert(t)
    by_id = select(t).where(t.c.id == bindparam("b_id"))
    with core.engine.connect() as conn, conn.begin():
        ids = [driver.execute(conn, add, _inbox_row(i)).inserted_id for i in range(3)]
        assert len(set(ids)) == 3
        for i in ids:
            ours = driver.execute(conn, by_id, {"b_id": i}).one()
            theirs = conn.execute(by_id, {"b_id": i}).one()
            assert tuple(ours) == tuple(theirs)
            assert [type(v) for v in ours] == [type(v) for v in theirs]
            assert ours._mapping == dict(theirs._mapping)
            assert ours.received_at.tzinfo is not None
            assert ours.received_at == AT + timedelta(seconds=ids.index(i))
            assert ours.body == bytes(range(256)) + b"\x00end"


def test_values_bound_in_the_statement_and_row_counts(core: OrderCore) -> None:
    t = core.tables.inbox
    received = select(t.c.id).where(t.c.status == "received", t.c.id >= bindparam("b_from"))
    mark = update(t).where(t.c.id == bindparam("b_id"), t.c.status == "received")
    with core.engine.connect() as conn, conn.begin():
        first = driver.execute(conn, insert(t), _inbox_row(0)).inserted_id
        driver.execute(conn, insert(t), _inbox_row(1))
        assert len(driver.execute(conn, received, {"b_from": first}).all()) == 2
        applied = {"b_id": first, "status": "applied", "processed_at": AT}
        assert driver.execute(conn, mark, applied).rowcount == 1
        again = driver.execute(conn, mark, applied)
        assert again.rowcount == 0  # no longer "received"
        assert driver.execute(conn, received, {"b_from": first}).scalars() == [first + 1]


def test_python_side_defaults_are_left_to_sqlalchemy(core: OrderCore) -> None:
    """customers.identity_verified has a Python default: the statement runs through
    Connection.execute, which fills it in."""
    t = core.tables.customers
    with core.engine.connect() as conn, conn.begin():
        added = driver.execute(conn, insert(t), {"name": "Lin Lei", "created_at": AT})
        row = conn.execute(select(t).where(t.c.id == added.inserted_id)).one()
        assert row.identity_verified is False
        assert row.name == "Lin Lei"


def test_late_values_and_odd_names_are_left_to_sqlalchemy(core: OrderCore) -> None:
    t = core.tables.inbox
    late = select(t.c.id).where(t.c.status == bindparam("s", callable_=lambda: "received"))
    odd = select(t.c.id).where(t.c.status == bindparam("the status"))
    with core.engine.connect() as conn, conn.begin():
        new_id = driver.execute(conn, insert(t), _inbox_row(0)).inserted_id
        assert driver.execute(conn, late, {}).scalars() == [new_id]
        assert driver.execute(conn, odd, {"the status": "received"}).scalars() == [new_id]


def test_many_rows_at_once(core: OrderCore) -> None:
    t = core.tables.inbox
    with core.engine.connect() as conn, conn.begin():
        driver.executemany(conn, insert(t), [_inbox_row(i) for i in range(5)])
        count = conn.execute(select(t.c.id).where(t.c.channel == "fake")).all()
        assert len(count) == 5


def test_a_duplicate_is_sqlalchemy_s_integrity_error_and_rolls_back(core: OrderCore) -> None:
    t = core.tables.payment_events
    claim = insert(t)
    values = {"event_key": "fake:1", "attempt_id": None, "inbox_id": None, "applied_at": AT}
    with core.engine.connect() as conn:
        with conn.begin():
            driver.execute(conn, claim, values)
        tx = conn.begin()
        with pytest.raises(exc.IntegrityError):
            driver.execute(conn, claim, values)
        tx.rollback()
        with conn.begin():  # the connection is usable again
            assert driver.execute(conn, select(t.c.event_key), {}).scalars() == ["fake:1"]


def test_engine_listeners_see_every_statement(core: OrderCore) -> None:
    t = core.tables.inbox
    seen: list[tuple[str, bool]] = []

    def before(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
        seen.append((statement.split(None, 1)[0].upper(), many))

    event.listen(core.engine, "before_cursor_execute", before)
    try:
        with core.engine.connect() as conn, conn.begin():
            driver.execute(conn, insert(t), _inbox_row(0))
            driver.executemany(conn, insert(t), [_inbox_row(1), _inbox_row(2)])
            driver.execute(conn, select(t.c.id), {})
    finally:
        event.remove(core.engine, "before_cursor_execute", before)
    ours = [s for s in seen if s[0] in ("INSERT", "SELECT")]
    assert ours == [("INSERT", False), ("INSERT", True), ("SELECT", False)]


def test_outside_a_transaction_sqlalchemy_runs_it(core: OrderCore) -> None:
    t = core.tables.inbox
    with core.engine.connect() as conn:
        new_id = driver.execute(conn, insert(t), _inbox_row(0)).inserted_id
        assert conn.in_transaction()  # SQLAlchemy began one, as it always does
        conn.commit()
        with conn.begin():
            assert driver.execute(conn, select(t.c.id), {}).scalars() == [new_id]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_lost_connection_is_invalidated_as_sqlalchemy_would(core: OrderCore) -> None:
    t = core.tables.inbox
    with core.engine.connect() as conn:
        conn.begin()
        driver.execute(conn, insert(t), _inbox_row(0))
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with core.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(exc.DBAPIError) as raised:
            driver.execute(conn, select(t.c.id), {})
        assert raised.value.connection_invalidated
    with core.engine.connect() as conn, conn.begin():  # the pool hands out a live one
        assert driver.execute(conn, select(t.c.id), {}).all() == []


# ------------------------------------------------------------------------ deferred writes
def _marking(t: Any) -> Any:
    return update(t).where(t.c.id == bindparam("b_id"))


def test_a_deferred_write_is_seen_by_the_next_read_whatever_runs_it(core: OrderCore) -> None:
    t = core.tables.inbox
    mark = _marking(t)
    status = select(t.c.status).where(t.c.id == bindparam("b_id"))
    with core.engine.connect() as conn, conn.begin():
        first = driver.execute(conn, insert(t), _inbox_row(0)).inserted_id
        driver.defer(conn, mark, {"b_id": first, "status": "applied", "processed_at": AT})
        assert driver.execute(conn, status, {"b_id": first}).scalar() == "applied"
        driver.defer(conn, mark, {"b_id": first, "status": "duplicate", "processed_at": AT})
        assert conn.execute(status, {"b_id": first}).scalar() == "duplicate"  # SQLAlchemy's
        driver.defer(conn, mark, {"b_id": first, "status": "rejected", "processed_at": AT})
        driver.executemany(conn, insert(t), [_inbox_row(1)])
        with conn.begin_nested() as savepoint:  # sent before the savepoint starts
            driver.defer(conn, mark, {"b_id": first, "status": "error", "processed_at": AT})
            savepoint.rollback()
        assert driver.execute(conn, status, {"b_id": first}).scalar() == "rejected"
    with core.engine.connect() as conn:  # and it was committed
        assert conn.execute(status, {"b_id": first}).scalar() == "rejected"


def test_a_deferred_write_s_check_runs_and_a_failure_rolls_everything_back(
    core: OrderCore,
) -> None:
    t = core.tables.inbox
    counts: list[int] = []

    def exactly_one(rowcount: int) -> None:
        counts.append(rowcount)
        if rowcount != 1:
            raise LookupError(f"{rowcount} rows")

    with core.engine.connect() as conn:
        with conn.begin():
            kept = driver.execute(conn, insert(t), _inbox_row(0)).inserted_id
        tx = conn.begin()

        def work() -> None:
            driver.execute(conn, insert(t), _inbox_row(1))
            driver.defer(conn, _marking(t), {"b_id": kept, "status": "applied"}, check=exactly_one)
            driver.defer(conn, _marking(t), {"b_id": 10**6, "status": "applied"}, check=exactly_one)
            driver.flush(conn)  # what the unit of work does before committing
            tx.commit()

        with pytest.raises(LookupError, match="0 rows"):
            work()
        assert counts == [1, 0]
        tx.rollback()
        rows = conn.execute(select(t.c.id, t.c.status)).all()
        assert rows == [(kept, "received")]  # neither the insert nor the update stayed
        conn.rollback()
        # Without the flush, the commit sends them (PostgreSQL) and fails as a commit fails:
        # nothing is committed.
        tx = conn.begin()

        def commit_only() -> None:
            driver.defer(conn, _marking(t), {"b_id": kept, "status": "applied"})
            driver.defer(conn, _marking(t), {"b_id": 10**6, "status": "applied"}, check=exactly_one)
            tx.commit()

        with pytest.raises(LookupError, match="0 rows"):
            commit_only()
    with core.engine.connect() as conn:
        assert conn.execute(select(t.c.id, t.c.status)).all() == [(kept, "received")]


def test_a_deferred_write_that_fails_raises_sqlalchemy_s_error_and_nothing_stays(
    core: OrderCore,
) -> None:
    t = core.tables.payment_events
    values = {"event_key": "fake:1", "attempt_id": None, "inbox_id": None, "applied_at": AT}
    with core.engine.connect() as conn:
        with conn.begin():
            driver.execute(conn, insert(t), values)
        tx = conn.begin()

        def work() -> None:
            driver.defer(conn, insert(t), {**values, "event_key": "fake:2"})
            driver.defer(conn, insert(t), values)  # the same key again
            driver.execute(conn, select(t.c.event_key), {})  # PostgreSQL: sent here

        with pytest.raises(exc.IntegrityError):
            work()
        tx.rollback()
        with conn.begin():
            assert driver.execute(conn, select(t.c.event_key), {}).scalars() == ["fake:1"]


def test_a_rollback_drops_the_deferred_writes(core: OrderCore) -> None:
    t = core.tables.inbox
    with core.engine.connect() as conn:
        with conn.begin():
            kept = driver.execute(conn, insert(t), _inbox_row(0)).inserted_id
        with conn.begin() as tx:
            driver.defer(conn, _marking(t), {"b_id": kept, "status": "applied"})
            tx.rollback()
        with conn.begin():  # a new transaction on the same connection sends nothing stale
            assert conn.execute(select(t.c.status)).scalar() == "received"
    with core.engine.connect() as conn:
        conn.begin()
        driver.defer(conn, _marking(t), {"b_id": kept, "status": "applied"})
    # left without commit: rolled back when the connection went back to the pool
    with core.engine.connect() as conn:
        assert conn.execute(select(t.c.status)).scalar() == "received"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_deferred_writes_go_with_the_next_answer_in_one_round_trip(core: OrderCore) -> None:
    """Three writes and a read: four statements, and the server's transaction counters
    show they were all sent (nothing is lost when they share one round trip)."""
    t = core.tables.inbox
    statements: list[str] = []

    def before(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    with core.engine.connect() as conn, conn.begin():
        ids = [driver.execute(conn, insert(t), _inbox_row(i)).inserted_id for i in range(3)]
        event.listen(conn, "before_cursor_execute", before)
        for i in ids:
            driver.defer(conn, _marking(t), {"b_id": i, "status": "applied"})
        assert statements == []  # nothing sent yet
        got = driver.execute(conn, select(t.c.status).order_by(t.c.id), {}).scalars()
        assert statements == ["UPDATE", "UPDATE", "UPDATE", "SELECT"]
        assert got == ["applied"] * 3
