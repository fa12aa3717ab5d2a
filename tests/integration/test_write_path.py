"""The write path's shape, counted: how many transactions and statements one applied payment
notification and one order creation take. Not a timing test — the counts are exact and the
same on every run — but what ``benchmarks/callbacks.py`` and ``benchmarks/orders.py`` measure
in time rests on them, so a change that adds a round trip shows here first."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select

from helpers import FakeClock

from .payment_kit import ADMIN, Shop, cny, make_shop

#: Statements of one applied payment notification (no coupon): the order with its lines and
#: its attempts (locked, one statement), the inbox row (stored with its outcome), the event
#: claim, the attempt, the order (with its activation), the outbox message, the audit entries.
CALLBACK_STATEMENTS = 7


class Counts:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.commits = 0
        self.full: list[str] = []


@contextmanager
def counting(shop: Shop) -> Iterator[Counts]:
    counts = Counts()
    engine = shop.core.engine

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            counts.statements.append(statement.split(None, 3)[0])
            counts.full.append(" ".join(statement.split()))

    def on_commit(_conn: Any) -> None:
        counts.commits += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)


def assigned(counts: Counts, table: str) -> list[str]:
    """The columns the one ``UPDATE`` of ``table`` counted sets, sorted."""
    (update,) = [s for s in counts.full if re.match(rf"UPDATE \S*\b{table} SET", s)]
    columns = update.split(" SET ", 1)[1].split(" WHERE ", 1)[0]
    return sorted(c.split("=")[0].strip() for c in columns.split(","))


@pytest.fixture
def shop(backend: Any, clock: FakeClock) -> Shop:
    return make_shop(backend, clock)


@pytest.mark.parametrize("coupon", [False, True], ids=["plain", "coupon"])
def test_an_applied_notification_is_one_transaction(shop: Shop, coupon: bool) -> None:
    order = shop.order(coupon="TEN" if coupon else None)
    no = shop.start(order.number).out_trade_no
    notification = shop.gateway.pay(no)
    with counting(shop) as counts:
        assert shop.deliver(notification).status == 200
    assert counts.commits == 1
    # A reserved coupon use is consumed: one more statement. MariaDB has no "insert unless
    # there" that tells which happened: the event claim looks first (one more).
    expected = CALLBACK_STATEMENTS + coupon + (shop.backend.name == "mysql")
    expected -= shop.backend.name == "postgresql"  # the inbox row and the claim: one statement
    assert len(counts.statements) == expected, counts.statements
    (entry,) = shop.inbox()
    assert entry["status"] == "applied"
    assert shop.core.orders.get(order.number).status.value == "paid"
    # The event claim names the inbox row (on PostgreSQL both go in one statement).
    events = shop.core.tables.payment_events
    with shop.core.engine.connect() as conn:
        claimed = conn.execute(select(events.c.event_key, events.c.inbox_id)).all()
    assert [tuple(c) for c in claimed] == [(f"fake:paid:{no}", entry["id"])]
    if shop.backend.name == "postgresql":
        assert sum(s.startswith("WITH") for s in counts.statements) == 1, counts.full
    # The order row is updated with the columns that changed (compared with what was read).
    assert assigned(counts, "orders") == [
        "activation_attempts",
        "activation_due_at",
        "activation_error",
        "activation_mode",
        "paid_at",
        "paid_minor",
        "status",
        "version",
    ]


def test_an_attempt_is_updated_with_the_columns_that_changed(shop: Shop) -> None:
    order = shop.order(coupon=None)
    no = shop.start(order.number).out_trade_no
    with counting(shop) as counts:
        assert shop.deliver(shop.gateway.pay(no)).status == 200
    assert assigned(counts, "payment_attempts") == [
        "channel_trade_no",
        "next_check_at",
        "paid_at",
        "received_minor",
        "settles_order",
        "status",
        "updated_at",
    ]
    attempt = shop.core.payments.attempt(no)
    assert (attempt.status.value, attempt.settles_order, attempt.next_check_at) == (
        "succeeded",
        True,
        None,
    )
    assert attempt.checkout is not None  # a column not written keeps its value
    # Every column a save may write is compared with the row as read.
    with shop.core.unit_of_work() as uow:
        read = uow.payments.attempt(no)
        stored = uow.payments._stored[read.id]  # type: ignore[index]
        values = uow.payments._values(read, shop.clock.now)
        assert set(stored) == set(values) - {"updated_at"}
        assert stored == {k: values[k] for k in stored}


def test_an_order_read_compares_every_column_its_save_writes(shop: Shop) -> None:
    # save() writes the columns whose value differs from the row as read: the columns kept
    # at load must be the ones save() compares (a missing one would be rewritten every time).
    number = shop.order(coupon="TEN").number
    with shop.core.unit_of_work() as uow:
        order = uow.orders.get(number)
        loaded = uow.orders._loaded[number].values
        assert set(loaded) == set(uow.orders._row_values(order))
        assert loaded == uow.orders._row_values(order)  # stored as the domain writes it


def test_a_duplicate_delivery_is_one_transaction_of_a_read_and_the_inbox_row(shop: Shop) -> None:
    order = shop.order(coupon=None)
    no = shop.start(order.number).out_trade_no
    notification = shop.gateway.pay(no)
    assert shop.deliver(notification).status == 200
    with counting(shop) as counts:
        assert shop.deliver(notification).status == 200
    assert (counts.commits, counts.statements) == (1, ["SELECT", "INSERT"]), counts.full
    first, again = shop.inbox()
    assert first["status"] == "applied"
    assert (again["status"], again["reason"]) == ("duplicate", "already applied")
    assert (again["out_trade_no"], again["order_number"]) == (no, order.number)
    assert again["processed_at"] is not None


def test_a_refused_notification_is_one_transaction_of_one_statement(shop: Shop) -> None:
    order = shop.order(coupon=None)
    no = shop.start(order.number).out_trade_no
    headers, body = shop.gateway.pay(no)
    with counting(shop) as counts:
        assert shop.deliver((headers, body + b" ")).status != 200  # the signature breaks
    assert (counts.commits, counts.statements) == (1, ["INSERT"])
    assert shop.inbox()[0]["status"] == "rejected"


#: Statements of one order creation (a product with a limited stock, no coupon, no wallet):
#: the customer, the products (one statement, unlocked), the stock taken, the order, its
#: lines, the risk check (its lists, the order's risk context, the decision), the audit entry.
CREATE_STATEMENTS = 9


@pytest.mark.parametrize("stock", [10, None], ids=["limited", "unlimited"])
def test_an_order_is_created_in_one_transaction_taking_only_a_limited_stock(
    shop: Shop, stock: int | None
) -> None:
    core = shop.core
    core.products.add(sku="cloud", name="Cloud", price=cny("9.00"), stock=stock, actor=ADMIN)
    with counting(shop) as counts:
        order = core.orders.create(
            customer_id=shop.customer_id, items=[("cloud", 2), ("cloud", 1)], actor=ADMIN
        )
    assert counts.commits == 1
    # No product row is locked for an unlimited stock: no statement to take it either.
    expected = CREATE_STATEMENTS - (stock is None)
    assert len(counts.statements) == expected, counts.full
    assert not any("FOR UPDATE" in s for s in counts.full), counts.full
    assert core.products.get("cloud").stock == (None if stock is None else 7)
    assert str(order.amounts.payable) == "27.00 CNY"


def test_the_hot_statements_stay_within_psycopgs_statement_cache() -> None:
    # psycopg caches a statement's conversion (and so keeps it cheap to send) only below 4 KB
    # and 50 parameters. The payment read names ~60 columns: with schema-qualified names it
    # went past 4 KB, and cost a conversion on every callback. Compiled here with the
    # longest schema name PostgreSQL allows.
    from psycopg import _queries
    from sqlalchemy.dialects import postgresql

    from ordercore.adapters.sqlalchemy.orders import _order_statements
    from ordercore.adapters.sqlalchemy.tables import build_tables

    tables = build_tables(schema="s" * 63)
    compiled = _order_statements(tables).for_payment.compile(dialect=postgresql.dialect())
    assert len(compiled.string.encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH
    assert len(compiled.binds) <= _queries.MAX_CACHED_STATEMENT_PARAMS
