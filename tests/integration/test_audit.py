"""The audit trail: every change leaves its record, the hash chain verifies, and any record
edited or deleted directly in the database — or a chain recomputed without the audit key —
is detected and named. Concurrent writers keep the chain linear."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from attrs import evolve
from sqlalchemy import text

from helpers import SERVER_BACKENDS, Backend, FakeClock, audit_rows, count_rows, quoted
from ordercore import Actor, AuditChainError, AuditRecord, Customer, Money, OrderCore, Product
from ordercore._audit.chain import GENESIS, chain_hash
from ordercore.adapters.sqlalchemy.audit import AuditRepository


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


def _records(core: OrderCore) -> list[AuditRecord]:
    """The sealed chain, after sealing what is pending (writes only queue entries)."""
    core.audit.seal_all()
    with core.unit_of_work() as uow:
        return list(uow.audit.records())


def _sql(core: OrderCore, statement: str, **params: Any) -> None:
    """Run SQL directly on the database, as someone with write access could."""
    with core.engine.begin() as conn:
        conn.execute(text(statement), params)


def _col(core: OrderCore, name: str) -> str:
    return core.engine.dialect.identifier_preparer.quote(name)


def _populate(core: OrderCore, clock: FakeClock) -> dict[str, str]:
    """A small history: two customers' worth of orders walked through their states."""
    alice = Actor.operator("alice", "admin")
    customer = core.customers.add(name="Wang Fang", email="wang@example.com", actor=alice)
    assert customer.id is not None
    core.products.add(sku="plan-a", name="Plan A", price=cny("30.00"), stock=10, actor=alice)
    clock.advance(1)
    first = core.orders.create(
        customer_id=customer.id, items=[("plan-a", 2)], actor=Actor.customer(customer.id)
    )
    clock.advance(1)
    core.orders.mark_paid(first.number, actor=Actor.channel("alipay"), reason="trade 1")
    clock.advance(1)
    core.orders.add_note(first.number, "customer asked for an invoice", actor=alice)
    clock.advance(1)
    second = core.orders.create(
        customer_id=customer.id, items=[("plan-a", 1)], actor=Actor.customer(customer.id)
    )
    clock.advance(1)
    core.orders.cancel(second.number, actor=Actor.system(), reason="timeout")
    clock.advance(1)
    core.orders.complete(first.number, actor=Actor.system("activator"))
    core.audit.seal_all()  # writes queue entries; the tampering below is of the chain
    return {"first": first.number, "second": second.number}


# ---------------------------------------------------------------------- what gets recorded
def _who(actor: Actor) -> tuple[str, str, str | None]:
    return (actor.kind.value, actor.id, actor.role)


def _at_least(stored: str | None, expected: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stored JSON restricted to the keys the test expects (a record may carry more)."""
    if stored is None or expected is None:
        return None if stored is None else json.loads(stored)
    data = json.loads(stored)
    assert isinstance(data, dict)
    return {k: data[k] for k in expected if k in data}


def test_every_change_leaves_its_record(
    core: OrderCore,
    actor: Actor,
    clock: FakeClock,
) -> None:
    customer = core.customers.add(
        name="Li Na", email="li.na@example.com", external_ref="u-1", actor=actor
    )
    assert customer.id is not None
    cid = str(customer.id)
    clock.advance(1)
    core.products.add(
        sku="vpn-1m", name="VPN", price=cny("30.00"), specs={"days": 30}, stock=9, actor=actor
    )
    clock.advance(1)
    buyer = Actor.customer(customer.id)
    order = core.orders.create(
        customer_id=customer.id, items=[("vpn-1m", 2)], actor=buyer, note="please hurry"
    )
    number = order.number
    times = {"create": clock.now}
    steps: list[tuple[str, Callable[[], object]]] = [
        ("flag", lambda: core.orders.flag(number, "vip", actor=actor)),
        ("unflag", lambda: core.orders.unflag(number, "vip", actor=actor)),
        ("special", lambda: core.orders.set_special(number, True, actor=actor, reason="big buyer")),
        (
            "communication",
            lambda: core.orders.add_communication(
                number, channel="email", text="invoice sent", actor=actor
            ),
        ),
        (
            "pay",
            lambda: core.orders.mark_paid(number, actor=Actor.channel("wechat"), reason="txn 42"),
        ),
        ("complete", lambda: core.orders.complete(number, actor=Actor.system("activator"))),
        (
            "partial",
            lambda: core.orders.record_refund(
                number, amount=cny("10.00"), actor=actor, reason="goodwill"
            ),
        ),
        (
            "full",
            lambda: core.orders.record_refund(
                number, amount=cny("50.00"), actor=actor, reason="refund rest"
            ),
        ),
    ]
    for name, step in steps:
        clock.advance(1)
        times[name] = clock.now
        step()
    clock.advance(1)
    other = core.orders.create(customer_id=customer.id, items=[("vpn-1m", 1)], actor=buyer)
    clock.advance(1)
    cancel_at = clock.now
    core.orders.cancel(other.number, actor=actor, reason="admin", note="duplicate")

    # Reads write nothing.
    count = core.audit.count()
    core.orders.get(number)
    core.orders.details(number)
    core.customers.list()
    core.products.get("vpn-1m")
    core.audit.verify()
    assert core.audit.count() == count

    operator = _who(actor)
    expected: list[tuple[Any, ...]] = [
        # entity, action, actor, before, after, reason
        (
            ("customer", cid),
            "customer.add",
            operator,
            None,
            {
                "name": "Li Na",
                "email": "li.na@example.com",
                "phone": None,
                "external_ref": "u-1",
                "identity_verified": False,
            },
            None,
        ),
        (
            ("product", "vpn-1m"),
            "product.add",
            operator,
            None,
            {
                "name": "VPN",
                "price": "30.00",
                "currency": "CNY",
                "specs": {"days": 30},
                "stock": 9,
                "active": True,
            },
            None,
        ),
        (
            ("order", number),
            "order.create",
            ("customer", cid, None),
            None,
            {
                "status": "pending",
                "customer_id": customer.id,
                "lines": [["vpn-1m", 2, "30.00"]],
                "currency": "CNY",
            },
            None,
        ),
        (
            ("order", number),
            "order.note",
            ("customer", cid, None),
            None,
            {"note": "please hurry"},
            None,
        ),
        (("order", number), "order.flag", operator, {"tags": []}, {"tags": ["vip"]}, None),
        (("order", number), "order.unflag", operator, {"tags": ["vip"]}, {"tags": []}, None),
        (
            ("order", number),
            "order.special",
            operator,
            {"special": False},
            {"special": True},
            "big buyer",
        ),
        (
            ("order", number),
            "order.communication",
            operator,
            None,
            {"channel": "email", "direction": "outbound", "text": "invoice sent"},
            None,
        ),
        (
            ("order", number),
            "order.pay",
            ("channel", "wechat", None),
            {"status": "pending"},
            {"status": "paid"},
            "txn 42",
        ),
        (
            ("order", number),
            "order.complete",
            _who(Actor.system("activator")),
            {"status": "paid"},
            {"status": "completed"},
            None,
        ),
        (
            ("order", number),
            "order.refunded_amount",
            operator,
            {"refunded": "0.00"},
            {"refunded": "10.00"},
            "goodwill",
        ),
        (
            ("order", number),
            "order.refunded_amount",
            operator,
            {"refunded": "10.00"},
            {"refunded": "60.00"},
            "refund rest",
        ),
        (
            ("order", number),
            "order.refund",
            operator,
            {"status": "completed"},
            {"status": "refunded"},
            "refund rest",
        ),
        (
            ("order", other.number),
            "order.create",
            ("customer", cid, None),
            None,
            {
                "status": "pending",
                "customer_id": customer.id,
                "lines": [["vpn-1m", 1, "30.00"]],
                "currency": "CNY",
            },
            None,
        ),
        (
            ("order", other.number),
            "order.cancel",
            operator,
            {"status": "pending"},
            {"status": "canceled"},
            "admin: duplicate",
        ),
    ]
    records = _records(core)
    assert [r.action for r in records] == [e[1] for e in expected]
    actual = [
        (
            (r.entity_kind, r.entity_id),
            r.action,
            (r.actor_kind, r.actor_id, r.actor_role),
            _at_least(r.before, e[3]),
            _at_least(r.after, e[4]),
            r.reason,
        )
        for r, e in zip(records, expected, strict=True)
    ]
    assert actual == expected
    assert [r.seq for r in records] == list(range(1, len(expected) + 1))

    at = {r.seq: r.at for r in records}
    assert at[3] == at[4] == times["create"]
    names = ["flag", "unflag", "special", "communication", "pay", "complete", "partial"]
    for seq, name in zip(range(5, 12), names, strict=True):
        assert at[seq] == times[name], name
    assert at[12] == at[13] == times["full"]
    assert at[15] == cancel_at

    assert [r.action for r in core.orders.details(number).log] == [e[1] for e in expected[2:13]]
    assert core.audit.records("customer", cid) == records[:1]

    verdict = core.audit.verify()
    assert verdict.ok, verdict
    assert verdict.checked == len(expected)
    assert verdict.broken_seq is None


def test_chain_links_every_record_to_the_one_before(core: OrderCore, clock: FakeClock) -> None:
    _populate(core, clock)
    records = _records(core)
    assert records[0].prev_hash == GENESIS
    for before, record in pairwise(records):
        assert record.prev_hash == before.hash
    for record in records:
        assert record.hash == chain_hash(record, None)
    head = core.tables.audit_head
    with core.engine.connect() as conn:
        rows = conn.execute(head.select()).all()
    assert [(r.seq, r.hash) for r in rows] == [(records[-1].seq, records[-1].hash)]


def test_empty_chain_verifies(core: OrderCore) -> None:
    verdict = core.audit.verify()
    assert (verdict.ok, verdict.checked, verdict.broken_seq) == (True, 0, None)


# ------------------------------------------------------------------------------- tampering
# Each test tampers with one populated database several times, checking what verify says
# and restoring the rows (after which the chain verifies again) before the next attempt.


def _raw_rows(core: OrderCore) -> list[dict[str, Any]]:
    """The audit rows as SQLAlchemy reads them (typed: times as datetimes)."""
    log = core.tables.audit_log
    with core.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(log.select().order_by(log.c.seq))]


def _restore(core: OrderCore, rows: list[dict[str, Any]]) -> None:
    log = core.tables.audit_log
    with core.engine.begin() as conn:
        conn.execute(log.delete())
        conn.execute(log.insert(), rows)


def test_an_edited_record_is_detected(core: OrderCore, clock: FakeClock) -> None:
    _populate(core, clock)
    original = _raw_rows(core)
    target = next(r for r in _records(core) if r.action == "order.pay")
    assert target.reason == "trade 1"
    assert core.audit.verify().ok
    log = core.tables.audit_log
    table = quoted(core, log)

    edits: list[tuple[str, str | datetime]] = [
        ("reason", "nothing to see here"),
        ("after", '{"status":"canceled"}'),
        ("before", '{"status":"paid"}'),
        ("actor_id", "mallory"),
        ("action", "order.complete"),
        ("prev_hash", "0" * 64),
        ("hash", "f" * 64),
        ("at", target.at - timedelta(days=1)),
    ]
    for column, value in edits:
        if isinstance(value, datetime):  # typed by SQLAlchemy: backends store times differently
            with core.engine.begin() as conn:
                conn.execute(log.update().where(log.c.seq == target.seq).values(at=value))
        else:
            _sql(
                core,
                f"UPDATE {table} SET {_col(core, column)} = :v WHERE seq = :seq",
                v=value,
                seq=target.seq,
            )
        assert _records(core)[target.seq - 1] != target, column

        verdict = core.audit.verify()
        assert not verdict.ok, column
        assert verdict.broken_seq == target.seq, (column, verdict)
        assert verdict.checked == len(original), (column, verdict)
        assert verdict.problem, column

        _restore(core, original)
        assert core.audit.verify().ok, column


def test_a_deleted_record_is_detected(core: OrderCore, clock: FakeClock) -> None:
    _populate(core, clock)
    original = _raw_rows(core)
    last = len(original)
    middle = last // 2
    table = quoted(core, core.tables.audit_log)
    assert last > 3

    cases = [
        # (case, statement, first broken seq, records left to check)
        ("middle", f"DELETE FROM {table} WHERE seq = {middle}", middle, last - 1),
        ("first", f"DELETE FROM {table} WHERE seq = 1", 1, last - 1),
        ("last", f"DELETE FROM {table} WHERE seq = {last}", last, last - 1),
        ("two in the middle", f"DELETE FROM {table} WHERE seq IN (2, 3)", 2, last - 2),
        ("all", f"DELETE FROM {table}", 1, 0),
    ]
    for case, statement, broken, left in cases:
        _sql(core, statement)
        verdict = core.audit.verify()
        assert (verdict.ok, verdict.broken_seq, verdict.checked) == (False, broken, left), (
            case,
            verdict,
        )
        assert verdict.problem, case
        _restore(core, original)
        assert core.audit.verify().ok, case


def _cut_tail_and_rewind_head(core: OrderCore) -> None:
    records = _records(core)
    last, before_last = records[-1], records[-2]
    _sql(core, f"DELETE FROM {quoted(core, core.tables.audit_log)} WHERE seq = :s", s=last.seq)
    _sql(
        core,
        f"UPDATE {quoted(core, core.tables.audit_head)} SET seq = :s, {_col(core, 'hash')} = :h",
        s=before_last.seq,
        h=before_last.hash,
    )


def test_a_cut_tail_with_a_rewound_head_is_caught_by_the_keyed_head(
    backend: Backend, clock: FakeClock
) -> None:
    """Deleting the last records *and* moving the head back to the record before: the head's
    MAC no longer matches, and sealing refuses to build on it."""
    core = backend.core(clock, audit_key=b"k")
    _populate(core, clock)
    _cut_tail_and_rewind_head(core)
    verdict = core.audit.verify()
    assert not verdict.ok
    assert "chain head is not authenticated by the audit key" in verdict.problems
    core.customers.add(name="Later", actor=Actor.operator("bob", "support"))
    with pytest.raises(AuditChainError, match="not authenticated"):
        core.audit.seal()
    assert core.audit.verify().pending == 1  # the new entry waits; nothing was built on it


def test_limit_without_a_key_a_cut_tail_needs_a_checkpoint(
    backend: Backend, clock: FakeClock
) -> None:
    """The limit of a plain SHA-256 chain checked against itself: a cut tail with a rewound
    head verifies. A checkpoint kept outside the database catches it."""
    core = backend.core(clock)
    _populate(core, clock)
    checkpoint = core.audit.checkpoint()
    _cut_tail_and_rewind_head(core)
    assert core.audit.verify().ok
    verdict = core.audit.verify_since(checkpoint)
    assert not verdict.ok
    assert f"the checkpoint covers {checkpoint.seq} records" in verdict.problem


def _recompute_chain_from(core: OrderCore, seq: int, change: dict[str, Any]) -> None:
    """What an attacker with write access but without the key would do: rewrite record
    ``seq``, then recompute its hash and every later link and hash with plain SHA-256, and
    move the chain head along."""
    records = _records(core)
    log = quoted(core, core.tables.audit_log)
    head = quoted(core, core.tables.audit_head)
    prev = records[seq - 2].hash if seq > 1 else GENESIS
    for record in records[seq - 1 :]:
        forged = evolve(record, prev_hash=prev, **(change if record.seq == seq else {}))
        forged = evolve(forged, hash=chain_hash(forged, None))
        _sql(
            core,
            f"UPDATE {log} SET {_col(core, 'after')} = :after, prev_hash = :prev, "
            f"{_col(core, 'hash')} = :hash WHERE seq = :seq",
            after=forged.after,
            prev=forged.prev_hash,
            hash=forged.hash,
            seq=forged.seq,
        )
        prev = forged.hash
    _sql(core, f"UPDATE {head} SET {_col(core, 'hash')} = :hash", hash=prev)


def test_a_chain_recomputed_without_the_key_is_detected(backend: Backend, clock: FakeClock) -> None:
    keyed = backend.core(clock, audit_key=b"k")
    numbers = _populate(keyed, clock)
    assert keyed.audit.verify().ok
    target = next(
        r for r in _records(keyed) if r.action == "order.create" and r.entity_id == numbers["first"]
    )
    assert target.after is not None
    forged_after = target.after.replace('"60.00"', '"0.01"')
    assert forged_after != target.after

    _recompute_chain_from(keyed, target.seq, {"after": forged_after})

    verdict = keyed.audit.verify()
    assert not verdict.ok
    assert verdict.broken_seq == target.seq
    # From the forged record on, the chain is consistent as plain SHA-256: only the key
    # tells it apart.
    forged = _records(keyed)[target.seq - 1 :]
    assert forged[0].after == forged_after
    assert all(r.hash == chain_hash(r, None) for r in forged)


def test_without_a_key_a_recomputed_chain_passes(backend: Backend, clock: FakeClock) -> None:
    """The reason for ``audit_key``: without it, anyone who can write to the database can
    rewrite history and recompute a consistent chain."""
    core = backend.core(clock)
    _populate(core, clock)
    target = _records(core)[3]
    _recompute_chain_from(core, target.seq, {"after": '{"forged":true}'})
    assert core.audit.verify().ok
    # ...while a keyed chain is not even readable as plain SHA-256, and vice versa.
    keyed = backend.core(clock, audit_key=b"k")
    assert (keyed.audit.verify().ok, keyed.audit.verify().broken_seq) == (False, 1)


# ----------------------------------------------------------------------------- concurrency
@pytest.mark.parametrize("backend", SERVER_BACKENDS, indirect=True)
def test_verify_is_not_fooled_by_a_write_during_verification(
    backend: Backend, core: OrderCore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verifying a live system: another transaction commits records between the moment
    verify reads the chain head and the moment it reads the records. Nothing was tampered
    with, so the verdict must be ok (on SQLite the verifying transaction holds the write
    lock, so this cannot happen there)."""
    _populate(core, clock)
    original = AuditRepository.head
    writes = []

    def head_then_someone_writes(self: AuditRepository, **kwargs: Any) -> Any:
        head = original(self, **kwargs)
        if not writes:
            writes.append(
                core.customers.add(name="Meanwhile", actor=Actor.operator("bob", "support"))
            )
        return head

    monkeypatch.setattr(AuditRepository, "head", head_then_someone_writes)
    verdict = core.audit.verify()
    monkeypatch.undo()
    assert writes, "the concurrent write did not happen"
    assert verdict.ok, verdict
    assert core.audit.verify().ok


WRITERS = {"postgresql": 8, "mysql": 8, "sqlite": 4}


def test_concurrent_writers_keep_the_chain_linear(
    backend: Backend,
    core: OrderCore,
    make_customer: Callable[..., Customer],
    make_product: Callable[..., Product],
) -> None:
    """Writers in parallel threads, each with its own units of work, creating orders and
    adding notes to one shared order: the chain stays one line and verifies, ``seq`` has no
    gap, order numbers are unique, and no update is lost. (SQLite: BEGIN IMMEDIATE queues
    the writers; PostgreSQL and MariaDB: row locks on the products, the order and the chain
    head.)"""
    writers = WRITERS[backend.name]
    rounds = 3
    customer = make_customer()
    assert customer.id is not None
    product = make_product(stock=1000)
    shared = core.orders.create(
        customer_id=customer.id, items=[(product.sku, 1)], actor=Actor.system()
    )
    audit_before = core.audit.count()
    barrier = threading.Barrier(writers)

    def write(i: int) -> list[str]:
        me = Actor.operator(f"op{i}", "support")
        barrier.wait(timeout=30)
        numbers = []
        for j in range(rounds):
            order = core.orders.create(
                customer_id=customer.id, items=[(product.sku, 1)], actor=me, note=f"by {i}"
            )
            numbers.append(order.number)
            core.orders.add_note(shared.number, f"note {i}.{j}", actor=me)
        return numbers

    with ThreadPoolExecutor(writers) as pool:
        created = [n for numbers in pool.map(write, range(writers)) for n in numbers]

    assert len(created) == len(set(created)) == writers * rounds
    assert count_rows(core, core.tables.orders) == writers * rounds + 1
    assert core.products.get(product.sku).stock == 1000 - writers * rounds - 1
    stored = core.orders.get(shared.number)
    assert len(stored.notes) == writers * rounds
    assert stored.version == shared.version + writers * rounds  # no lost update

    core.audit.seal_all()
    rows = audit_rows(core)
    # Each order: create + note; each shared note: one record.
    assert len(rows) == audit_before + writers * rounds * 3
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0]["prev_hash"] == GENESIS
    for before, row in pairwise(rows):
        assert row["prev_hash"] == before["hash"]
    assert len({r["prev_hash"] for r in rows}) == len(rows)  # no fork
    verdict = core.audit.verify()
    assert verdict.ok, verdict
    assert verdict.checked == len(rows)
