"""Migration 0009 on a database that already holds orders: the lines and flags get their
order's ``created_at`` (backfilled in batches), the column becomes NOT NULL, the sku and flag
indexes are replaced, the list finds the same orders; the downgrade gives 0008's schema back
with every row kept, and a second upgrade backfills again. On every backend."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Table, func, insert, inspect, select

from helpers import Backend, FakeClock
from ordercore import OrderCore
from ordercore._orders.listing import OrderFilter
from ordercore.adapters.sqlalchemy.listing import list_orders
from ordercore.adapters.sqlalchemy.migrate import _config, current_revision, head_revision
from ordercore.adapters.sqlalchemy.migrate import upgrade as migrate_upgrade

PREFIX = "oc_"
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
#: Order ids and line ids far apart: the backfill (batches of 20,000 ids) meets empty batches,
#: a batch with several rows and the last one.
ORDER_IDS = [1, 2, 3, 19_999, 20_000, 20_001, 45_000, 90_001, 90_002]
SKUS = ["plan-a", "plan-b"]


def _columns(core: OrderCore, table: Table) -> dict[str, Any]:
    return {c["name"]: c for c in inspect(core.engine).get_columns(table.name, table.schema)}


def _indexes(core: OrderCore, table: Table) -> set[str]:
    return {i["name"] for i in inspect(core.engine).get_indexes(table.name, table.schema)}


def _fill(conn: Connection, core: OrderCore) -> None:
    """Orders with lines and flags, written the way 0008's code wrote them (no copy of the
    order's time on the children)."""
    t = core.tables
    conn.execute(
        insert(t.customers),
        [{"id": 1, "name": "C", "identity_verified": False, "created_at": START}],
    )
    conn.execute(
        insert(t.orders),
        [
            {
                "id": order_id,
                "number": f"N{order_id}",
                "customer_id": 1,
                "currency": "CNY",
                "status": "paid",
                "original_minor": 100,
                "payable_minor": 100,
                "paid_minor": 100,
                "refunded_minor": 0,
                "adjustments": "[]",
                "special": False,
                # not in id order: the copy must come from the order, not from a guess
                "created_at": START + timedelta(hours=(order_id * 7919) % 101, microseconds=i),
                "version": 1,
            }
            for i, order_id in enumerate(ORDER_IDS)
        ],
    )
    conn.execute(
        insert(t.order_lines),
        [
            {
                "id": order_id * 3 + position,
                "order_id": order_id,
                "position": position,
                "sku": SKUS[(order_id + position) % 2] if position < 2 else SKUS[0],
                "name": "x",
                "specs": "{}",
                "unit_price_minor": 50,
                "quantity": 1,
            }
            for order_id in ORDER_IDS
            for position in range(1 + order_id % 3)
        ],
    )
    conn.execute(
        insert(t.order_tags),
        [
            {"order_id": order_id, "tag": tag}
            for order_id in ORDER_IDS
            for tag in (["vip", "manual"] if order_id % 2 else ["vip"])
        ],
    )


def _downgrade(core: OrderCore, schema: str | None, revision: str) -> None:
    config = _config(PREFIX, schema)
    with core.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _check_copies(core: OrderCore) -> None:
    t = core.tables
    with core.engine.connect() as conn:
        created = dict(conn.execute(select(t.orders.c.id, t.orders.c.created_at)).all())
        for table in (t.order_lines, t.order_tags):
            copies = conn.execute(select(table.c.order_id, table.c.order_created_at)).all()
            assert copies
            assert [at for _, at in copies] == [created[order_id] for order_id, _ in copies]
        for flt in (OrderFilter(sku="plan-a"), OrderFilter(flag="manual", sku="plan-b")):
            page = list_orders(conn, t, flt, limit=100, cursor=None)
            want = conn.execute(
                select(t.orders.c.number)
                .where(
                    t.orders.c.id.in_(
                        select(t.order_lines.c.order_id).where(t.order_lines.c.sku == flt.sku)
                    )
                )
                .where(
                    t.orders.c.id.in_(
                        select(t.order_tags.c.order_id).where(t.order_tags.c.tag == flt.flag)
                    )
                    if flt.flag
                    else t.orders.c.id > 0
                )
                .order_by(t.orders.c.created_at.desc(), t.orders.c.id.desc())
            ).scalars()
            assert [s.number for s in page.items] == list(want)


@pytest.mark.parametrize("table", ["order_lines", "order_tags"])
def test_0008_schema_has_no_copy(backend: Backend, clock: FakeClock, table: str) -> None:
    """The starting point of the tests below is what 0008 built."""
    core = backend.core(clock, upgrade=False, table_prefix=PREFIX)
    migrate_upgrade(core.engine, prefix=PREFIX, schema=backend.schema, revision="0008")
    assert "order_created_at" not in _columns(core, getattr(core.tables, table))


def test_upgrade_backfills_then_downgrade_and_upgrade_again(
    backend: Backend, clock: FakeClock
) -> None:
    core = backend.core(clock, upgrade=False, table_prefix=PREFIX)
    migrate_upgrade(core.engine, prefix=PREFIX, schema=backend.schema, revision="0008")
    with core.engine.begin() as conn:
        _fill(conn, core)
    t = core.tables

    core.upgrade()

    assert current_revision(core.engine, prefix=PREFIX, schema=backend.schema) == head_revision()
    for table, old, new in (
        (t.order_lines, "ix_order_lines_sku", "ix_order_lines_sku_created"),
        (t.order_tags, "ix_order_tags_tag", "ix_order_tags_tag_created"),
    ):
        assert _columns(core, table)["order_created_at"]["nullable"] is False
        assert PREFIX + new in _indexes(core, table)
        assert PREFIX + old not in _indexes(core, table)
    _check_copies(core)

    _downgrade(core, backend.schema, "0008")

    assert current_revision(core.engine, prefix=PREFIX, schema=backend.schema) == "0008"
    for table, old, new in (
        (t.order_lines, "ix_order_lines_sku", "ix_order_lines_sku_created"),
        (t.order_tags, "ix_order_tags_tag", "ix_order_tags_tag_created"),
    ):
        assert "order_created_at" not in _columns(core, table)
        assert PREFIX + old in _indexes(core, table)
        assert PREFIX + new not in _indexes(core, table)
    with core.engine.connect() as conn:
        counts = [
            conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (t.orders, t.order_lines, t.order_tags)
        ]
    assert counts == [len(ORDER_IDS), sum(1 + i % 3 for i in ORDER_IDS), 14]

    core.upgrade()

    _check_copies(core)
