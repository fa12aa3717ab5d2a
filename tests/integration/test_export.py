"""Order export, backup and restore on every backend.

A small book is built through the services (customers with hostile and Chinese names, orders
of several products, paid, canceled, flagged, with notes), then exported and read back with
the reader a user would use: ``csv`` for CSV, openpyxl for Excel. The export is compared
with the ``orders list`` walk for random filters, with chunks small enough that every export
crosses chunk boundaries and ties on ``created_at``.
"""

from __future__ import annotations

import csv
import io
import random
import re
import sqlite3
import threading
import time
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import event
from tests.helpers import Backend, FakeClock, audit_rows, snapshot

from ordercore import (
    Actor,
    CancelReason,
    Conflict,
    InvalidField,
    Money,
    OrderCore,
    OrderFilter,
    OrderStatus,
    PermissionDenied,
)
from ordercore._reports.cells import FORMULA_STARTS
from ordercore._reports.fields import FIELDS, OrderRecord, needs, resolve_fields

ADMIN = Actor.operator("alice", "admin")
SUPPORT = Actor.operator("sam", "support")
FINANCE = Actor.operator("fay", "finance")

HOSTILE = [
    '=HYPERLINK("http://evil.example","x")',
    "+SUM(1,2)",
    "-2+3",
    "@cmd",
    "\tTabbed",
    "\rReturn",
    "\nNewline",
]
#: (NUL cannot be stored in a PostgreSQL text column: tests/unit/test_export_cells.py writes
#: it straight to the writers)
NAMES = ["张三", "Lin Lei", "欧阳娜娜", *HOSTILE]


N_ORDERS = 16


def _book(core: OrderCore, clock: FakeClock) -> list[str]:
    """About 30 orders, some sharing a creation time; returns their numbers."""
    rng = random.Random(17)
    products = []
    for i, (name, price) in enumerate(
        [("高级会员 一个月", "30.00"), ("VPN, 12 months", "288.00"), ("=1+1 add-on", "9.90")]
    ):
        products.append(
            core.products.add(
                sku=f"sku-{i}", name=name, price=Money.of(price, "CNY"), specs={}, actor=ADMIN
            )
        )
    customers = []
    for i, name in enumerate(NAMES):
        customers.append(
            core.customers.add(
                name=name, email=f"user{i}@example.com", phone=f"1380000{i:04d}", actor=ADMIN
            )
        )
    numbers = []
    for i in range(N_ORDERS):
        if i % 4:  # every fourth order shares the previous one's created_at
            clock.advance(rng.choice([1, 60, 3600]))
        items = [(p.sku, rng.randint(1, 3)) for p in rng.sample(products, rng.randint(1, 3))]
        order = core.orders.create(
            items=items,
            customer_id=customers[i % len(customers)].id,
            tags=["vip"] if i % 3 == 0 else [],
            actor=ADMIN,
        )
        numbers.append(order.number)
        if i % 5 == 1:
            core.orders.cancel(order.number, actor=ADMIN, reason=CancelReason.ADMIN, note="x")
        elif i % 5 in (2, 3):
            core.orders.mark_paid(order.number, actor=ADMIN)
        if i % 7 == 0:
            core.orders.add_note(order.number, HOSTILE[i % len(HOSTILE)] + " note", actor=ADMIN)
    return numbers


@pytest.fixture
def book(core: OrderCore, clock: FakeClock) -> list[str]:
    return _book(core, clock)


def _ooxml_text(value: str) -> str:
    return re.sub(r"_x([0-9A-F]{4})_", lambda m: chr(int(m[1], 16)), value)


def _walk(core: OrderCore, flt: OrderFilter) -> list[str]:
    out, cursor = [], None
    while True:
        page = core.orders.list(flt, limit=4, cursor=cursor, actor=ADMIN)
        out += [o.number for o in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return out


def _csv(core: OrderCore, flt: OrderFilter | None = None, **kw: object) -> list[dict[str, str]]:
    out = io.StringIO(newline="")
    core.export.orders(flt, destination=out, actor=ADMIN, **kw)  # type: ignore[arg-type]
    return list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))


def _filters(core: OrderCore, rng: random.Random) -> Iterator[OrderFilter]:
    yield OrderFilter()
    customers = [c.id for c in core.customers.list(limit=50) if c.id is not None]
    for _ in range(6):
        kw: dict[str, object] = {}
        if rng.random() < 0.5:
            kw["statuses"] = tuple(rng.sample(list(OrderStatus), rng.randint(1, 2)))
        if rng.random() < 0.4:
            kw["sku"] = rng.choice(["sku-0", "sku-1", "sku-2"])
        if rng.random() < 0.3:
            kw["flag"] = "vip"
        if rng.random() < 0.3:
            kw["min_amount"] = Money.of(rng.choice(["30", "100", "300"]), "CNY")
        if customers and rng.random() < 0.3:
            kw["customer_id"] = rng.choice(customers)
        yield OrderFilter(**kw)  # type: ignore[arg-type]


def _check_export_equals_list(core: OrderCore, book: list[str]) -> None:
    rng = random.Random(4)
    for flt in _filters(core, rng):
        exported = [r["number"] for r in _csv(core, flt, fields="number", chunk=3)]
        assert exported == _walk(core, flt), flt
    assert sorted(r["number"] for r in _csv(core)) == sorted(book)


def _check_csv_reads_back(core: OrderCore, book: list[str]) -> None:
    rows = _csv(core, fields=list(FIELDS), mask=False, tz="Asia/Shanghai", chunk=5)
    assert len(rows) == len(book)
    for row in rows:
        details = core.orders.details(row["number"], actor=ADMIN)
        order, customer = details.order, details.customer
        assert row["status"] == order.status.value
        assert Decimal(row["payable"]) == order.amounts.payable.amount
        assert row["payable"] == f"{order.amounts.payable.amount:.2f}"  # exact, 2 decimals
        assert Decimal(row["paid"]) == order.amounts.paid.amount
        assert row["created_at"].endswith("+08:00")
        name = customer.name
        expected_name = "'" + name if name[0] in FORMULA_STARTS else name
        assert row["customer_name"] == expected_name
        assert row["customer_email"] == customer.email
        products = "; ".join(f"{ln.name} ×{ln.quantity}" for ln in order.lines)
        assert row["products"] == ("'" + products if products[0] == "=" else products)
        assert int(row["quantity"]) == sum(ln.quantity for ln in order.lines)
        assert row["tags"] == " ".join(sorted(order.tags))
        assert int(row["notes_count"]) == len(order.notes)
    hostile = [r for r in rows if r["customer_name"].lstrip("'") in HOSTILE]
    assert hostile
    assert all(r["customer_name"].startswith("'") for r in hostile)
    # a product called "=1+1 add-on" first in an order: the whole cell is escaped
    assert any(r["products"].startswith("'=1+1") for r in rows)


def _check_masking(core: OrderCore, book: list[str]) -> None:
    fields = ["number", "customer_name", "customer_email", "customer_phone"]
    rows = _csv(core, fields=fields)
    assert rows
    for row in rows:
        customer = core.orders.details(row["number"], actor=ADMIN).customer
        for field, original in (
            ("customer_name", customer.name),
            ("customer_email", customer.email),
            ("customer_phone", customer.phone),
        ):
            assert original
            assert original.strip() not in row[field], (field, row[field])
            assert "*" in row[field]
    assert {r["customer_name"] for r in rows} >= {"张*", "L** Lei", "欧***"}


def _check_permission_and_audit(core: OrderCore, book: list[str], tmp_path: Path) -> None:
    before = len(audit_rows(core))
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "clear.csv"
    with pytest.raises(PermissionDenied):
        core.export.orders(destination=target, mask=False, actor=FINANCE)
    with pytest.raises(PermissionDenied):
        core.export.orders(destination=target, actor=SUPPORT)
    assert not target.exists()
    assert not list(target.parent.iterdir())
    log = audit_rows(core)[before:]
    assert [r["action"] for r in log] == ["permission.denied", "permission.denied"]
    assert "orders.export_unmasked" in log[0]["after"]

    masked = core.export.orders(destination=target, fields="number,customer_name", actor=FINANCE)
    clear = core.export.orders(
        OrderFilter(statuses=("paid",)), destination=target, mask=False, actor=ADMIN
    )
    records = audit_rows(core)[before + 2 :]
    assert [r["action"] for r in records] == ["export.orders", "export.orders"]
    assert records[0]["actor_id"] == "fay"
    assert '"masked":true' in records[0]["after"]
    assert f'"rows":{masked.rows}' in records[0]["after"]
    assert '"fields":["number","customer_name"]' in records[0]["after"]
    assert records[1]["actor_id"] == "alice"
    assert '"masked":false' in records[1]["after"]
    assert f'"rows":{clear.rows}' in records[1]["after"]
    assert '"statuses":["paid"]' in records[1]["after"]


def test_export_of_a_book(core: OrderCore, book: list[str], tmp_path: Path) -> None:
    """One book per backend, every check of the order export on it."""
    _check_export_equals_list(core, book)
    _check_csv_reads_back(core, book)
    _check_masking(core, book)
    _check_excel(core, book, tmp_path)
    _check_permission_and_audit(core, book, tmp_path)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_requests_write_nothing(core: OrderCore, book: list[str], tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "out.csv"
    before = snapshot(core)
    with pytest.raises(InvalidField, match="valid fields: number, status"):
        core.export.orders(destination=target, fields="number,nope", actor=ADMIN)
    with pytest.raises(InvalidField, match="format"):
        core.export.orders(destination=target, format="docx", actor=ADMIN)
    with pytest.raises(InvalidField, match="time zone"):
        core.export.orders(destination=target, tz="Mars/Base", actor=ADMIN)
    with pytest.raises(InvalidField, match="needs a file"):
        core.export.orders(destination="-", format="xlsx", actor=ADMIN)
    with pytest.raises(InvalidField, match="does not exist"):
        core.export.orders(destination=tmp_path / "no" / "x.csv", actor=ADMIN)
    assert list(target.parent.iterdir()) == []
    assert snapshot(core) == before


def _check_excel(core: OrderCore, book: list[str], tmp_path: Path) -> None:
    target = tmp_path / "orders.xlsx"
    result = core.export.orders(
        destination=target,
        format="xlsx",
        mask=False,
        actor=ADMIN,
        chunk=4,
        sheet_rows=11,
        fields="number,customer_name,payable,created_at,quantity,products",
    )
    assert result.rows == len(book)
    assert result.sheets == 2
    wb = openpyxl.load_workbook(target)
    assert wb.sheetnames == ["Orders", "Orders 2"]
    rows = []
    for ws in wb.worksheets:
        header, *data = list(ws.iter_rows())
        assert [c.value for c in header] == [
            "Order number",
            "Customer",
            "Payable",
            "Created",
            "Quantity",
            "Products",
        ]
        rows += data
    assert [r[0].value for r in rows] == [r["number"] for r in _csv(core, fields="number")]
    for number_cell, name_cell, payable_cell, created_cell, qty_cell, _products in rows:
        details = core.orders.details(number_cell.value, actor=ADMIN)
        # control characters are stored with OOXML's _xHHHH_ escape, which Excel decodes
        # (openpyxl leaves it): decoded, the cell is the name, as text
        assert name_cell.data_type == "s"
        assert _ooxml_text(name_cell.value) == details.customer.name
        assert payable_cell.data_type == "n"
        assert payable_cell.number_format == "0.00"
        assert Decimal(str(payable_cell.value)) == details.order.amounts.payable.amount
        assert created_cell.is_date
        assert qty_cell.value == sum(ln.quantity for ln in details.order.lines)
    with zipfile.ZipFile(target) as zf:  # no formula anywhere in the file
        assert not any(b"<f>" in zf.read(n) for n in zf.namelist() if n.startswith("xl/work"))


def test_backup_round_trip(
    backend: Backend, core: OrderCore, book: list[str], tmp_path: Path
) -> None:
    target = tmp_path / "backup.zip"
    result = core.export.backup(target, actor=ADMIN)
    assert result.tables["orders"] == len(book)
    with zipfile.ZipFile(target) as zf:
        assert "manifest.json" in zf.namelist()
    restored = backend.core(FakeClock(), table_prefix="r_")
    loaded = restored.export.restore(target, actor=ADMIN)
    assert loaded.tables == result.tables
    assert restored.audit.verify().ok
    for number in book:
        assert restored.orders.details(number) == core.orders.details(number)
    # new rows get new ids after the restored ones (PostgreSQL sequences moved on)
    c = restored.customers.add(name="New", email="new@example.com", actor=ADMIN)
    assert c.id is not None
    assert c.id > max(r.customer_id for r in restored.orders.list(OrderFilter(), limit=100).items)
    # into a database that has rows: refused, nothing written
    before = snapshot(restored)
    with pytest.raises(Conflict, match="empty database"):
        restored.export.restore(target, actor=ADMIN)
    assert snapshot(restored) == before
    _check_damaged_backups(backend, core, target, tmp_path)


def _check_damaged_backups(backend: Backend, core: OrderCore, good: Path, tmp_path: Path) -> None:
    with pytest.raises(PermissionDenied):
        core.export.backup(tmp_path / "x.zip", actor=FINANCE)
    assert not (tmp_path / "x.zip").exists()
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(damaged, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "tables/orders.jsonl":
                data = data.replace(b'"status":"paid"', b'"status":"refunded"', 1)
            dst.writestr(name, data)
    empty = backend.core(FakeClock(), table_prefix="e_")
    before = snapshot(empty)
    with pytest.raises(InvalidField, match="sha256"):
        empty.export.restore(damaged, actor=ADMIN)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(InvalidField, match="not a zip"):
        empty.export.restore(tmp_path / "junk.zip", actor=ADMIN)
    with pytest.raises(PermissionDenied):
        empty.export.restore(good, actor=FINANCE)
    after = snapshot(empty)
    assert {k: v for k, v in after.items() if "audit" not in k} == {
        k: v for k, v in before.items() if "audit" not in k
    }


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_export_reads_the_reporting_database(
    backend: Backend, core: OrderCore, book: list[str], clock: FakeClock, tmp_path: Path
) -> None:
    """With ``reporting_database_url`` set, the rows come from there (here a copy of the
    main file that has not seen the newest order); the audit record of the export is
    written to the main database, never to the replica."""
    main = Path(str(core.engine.url.database))
    replica = tmp_path / "replica.db"
    with sqlite3.connect(main) as src, sqlite3.connect(replica) as dst:
        src.backup(dst)
    customer = core.customers.add(name="Late", email="late@example.com", actor=ADMIN)
    assert customer.id is not None
    late = core.orders.create(items=[("sku-0", 1)], customer_id=customer.id, actor=ADMIN)
    # without the setting: the main database, the late order included
    assert late.number in [r["number"] for r in _csv(core, fields="number")]

    reporting = backend.core(clock, reporting_database_url=f"sqlite:///{replica}")
    replica_core = OrderCore.from_url(f"sqlite:///{replica}", clock=clock)
    in_main, in_replica = len(audit_rows(core)), len(audit_rows(replica_core))
    rows = _csv(reporting, fields="number,customer_name", mask=False, chunk=4)
    assert sorted(r["number"] for r in rows) == sorted(book)
    assert "Late" not in {r["customer_name"] for r in rows}

    main_log = audit_rows(core)[in_main:]
    assert [r["action"] for r in main_log] == ["export.orders"]
    assert '"masked":false' in main_log[0]["after"]
    assert [r["action"] for r in audit_rows(replica_core)[in_replica:]] == []
    replica_core.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_sqlite_export_holds_up_no_writer(core: OrderCore, book: list[str]) -> None:
    """The export reads one snapshot (a deferred BEGIN in WAL mode), not the write lock:
    orders are created while it runs, and it writes the orders of its snapshot."""
    created: list[str] = []
    customer = core.customers.add(name="Busy", actor=ADMIN)
    assert customer.id is not None

    def meanwhile(_rows: int) -> None:
        order = core.orders.create(items=[("sku-1", 1)], customer_id=customer.id, actor=ADMIN)
        created.append(order.number)

    out = io.StringIO(newline="")
    start = time.monotonic()
    result = core.export.orders(
        destination=out, fields="number", actor=ADMIN, chunk=5, progress=meanwhile
    )
    assert time.monotonic() - start < 10  # no wait for a lock (the busy timeout is 30 s)
    assert len(created) == -(-len(book) // 5)
    exported = [r["number"] for r in csv.DictReader(io.StringIO(out.getvalue(), newline=""))]
    assert result.rows == len(exported) == len(book)
    assert not set(created) & set(exported)


def test_every_record_is_whole(core: OrderCore, book: list[str]) -> None:
    """The reader builds records without OrderRecord's own checks: each has every field,
    whatever the fields asked for (and so whatever query and path built it)."""
    for names in ("number", "number,customer_name,products,trade_no", ",".join(FIELDS)):
        chosen = resolve_fields(names)
        with core.export_reader() as reader:
            records = [
                r for chunk in reader.records(OrderFilter(), needs(chosen), chunk=3) for r in chunk
            ]
        assert len(records) == len(book)
        for record in records:
            assert len(record) == len(OrderRecord._fields)
            assert record == OrderRecord(*record)
            assert record.created_at.tzinfo is not None


def test_an_export_that_fails_while_writing_leaves_nothing_running(
    core: OrderCore, book: list[str]
) -> None:
    """The writer fails after the first chunk: the error is the caller's, the reading
    thread (PostgreSQL, MariaDB) is stopped before the snapshot's connection goes back to
    the pool, no file is left, and the next export works."""

    def fail(_rows: int) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        core.export.orders(destination=io.StringIO(), actor=ADMIN, chunk=4, progress=fail)
    assert [t for t in threading.enumerate() if t.name == "ordercore-export-read-ahead"] == []
    assert len(_csv(core, chunk=4)) == len(book)


def test_an_export_chunk_is_one_query_on_sqlite_and_postgresql(
    core: OrderCore, book: list[str]
) -> None:
    """The default fields (customer, products, payment) come with the chunk's orders in one
    statement on SQLite and PostgreSQL (LATERAL there: an index probe per order, never a
    scan of a whole table per chunk); MariaDB reads the lines and the payment by the
    chunk's ids (two more statements a chunk)."""
    statements: list[str] = []

    def count(_c: object, _cur: object, statement: str, *_a: object) -> None:
        if not statement.lstrip().upper().startswith("SET"):
            statements.append(statement)

    chunk = 4
    chunks = len(book) // chunk + 1  # the last one comes back empty (16 orders)
    event.listen(core.reporting_engine, "before_cursor_execute", count)
    try:
        rows = _csv(core, chunk=chunk)
    finally:
        event.remove(core.reporting_engine, "before_cursor_execute", count)
    assert len(rows) == len(book) == 16
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    per_chunk = 1 if core.engine.dialect.name in ("sqlite", "postgresql") else 3
    assert len(reads) == (chunks - 1) * per_chunk + 1, reads
    if core.engine.dialect.name == "postgresql":
        assert reads[0].count("LATERAL") == 3
