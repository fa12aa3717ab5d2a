"""Audit trail v2 on every backend: a table of tamper cases, each detected or documented as
undetectable without a key (and then caught by a checkpoint); writes that never wait for each
other nor fail on a planted row; an order that stays readable whatever its audit rows hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from attrs import evolve
from sqlalchemy import text

from helpers import BACKENDS, SERVER_BACKENDS, Backend, FakeClock, quoted
from ordercore import Actor, AuditEntry, Checkpoint, InvalidField, OrderCore
from ordercore._audit.chain import GENESIS, chain_hash

from .test_audit import _col, _populate, _records, _sql

KEY = b"audit key of the tamper tests"
ADMIN = Actor.operator("alice", "admin")


def _log(core: OrderCore) -> str:
    return quoted(core, core.tables.audit_log)


def _head(core: OrderCore) -> str:
    return quoted(core, core.tables.audit_head)


def _set_head(core: OrderCore, seq: int, hash_: str) -> None:
    _sql(core, f"UPDATE {_head(core)} SET seq = :s, {_col(core, 'hash')} = :h", s=seq, h=hash_)


# ---------------------------------------------------------------------------- tamper cases
def edit(core: OrderCore) -> None:
    _sql(core, f"UPDATE {_log(core)} SET reason = 'nothing to see' WHERE seq = 3")


def delete_middle(core: OrderCore) -> None:
    _sql(core, f"DELETE FROM {_log(core)} WHERE seq = 4")


def delete_tail(core: OrderCore) -> None:
    last = _records(core)[-1].seq
    _sql(core, f"DELETE FROM {_log(core)} WHERE seq >= :s", s=last - 1)


def delete_tail_and_move_head(core: OrderCore) -> None:
    records = _records(core)
    _sql(core, f"DELETE FROM {_log(core)} WHERE seq >= :s", s=records[-2].seq)
    _set_head(core, records[-3].seq, records[-3].hash)


def delete_everything(core: OrderCore) -> None:
    _sql(core, f"DELETE FROM {_log(core)}")
    _set_head(core, 0, GENESIS)


def insert_past_head(core: OrderCore) -> None:
    last = _records(core)[-1]
    planted = evolve(last, seq=last.seq + 1, prev_hash=last.hash, reason="planted", hash="f" * 64)
    _insert(core, planted)


def insert_past_head_with_a_good_hash(core: OrderCore) -> None:
    """A planted record whose hash is right as plain SHA-256 (the attacker has no key)."""
    last = _records(core)[-1]
    planted = evolve(last, seq=last.seq + 1, prev_hash=last.hash, reason="planted")
    _insert(core, evolve(planted, hash=chain_hash(planted, None)))


def reorder(core: OrderCore) -> None:
    records = _records(core)
    a, b = records[2], records[3]
    for source, target in ((a, b.seq), (b, a.seq)):
        _sql(
            core,
            f"UPDATE {_log(core)} SET action = :action, reason = :reason, "
            f"{_col(core, 'after')} = :after, {_col(core, 'hash')} = :hash, prev_hash = :prev "
            "WHERE seq = :seq",
            action=source.action,
            reason=source.reason,
            after=source.after,
            hash=source.hash,
            prev=source.prev_hash,
            seq=target,
        )


def rechain_plain(core: OrderCore) -> None:
    """Rewrite record 3 and recompute every later hash with plain SHA-256, head included:
    what someone with write access but without the key can do."""
    records = _records(core)
    prev = records[1].hash
    for record in records[2:]:
        changed = evolve(record, prev_hash=prev)
        if record.seq == 3:
            changed = evolve(changed, reason="rewritten")
        changed = evolve(changed, hash=chain_hash(changed, None))
        _sql(
            core,
            f"UPDATE {_log(core)} SET reason = :reason, prev_hash = :prev, "
            f"{_col(core, 'hash')} = :hash WHERE seq = :seq",
            reason=changed.reason,
            prev=changed.prev_hash,
            hash=changed.hash,
            seq=changed.seq,
        )
        prev = changed.hash
    _set_head(core, records[-1].seq, prev)


def malformed_payload(core: OrderCore) -> None:
    """An order's transition record whose JSON is broken (and its status key gone)."""
    record = next(r for r in _records(core) if r.action == "order.pay")
    _sql(
        core,
        f"UPDATE {_log(core)} SET {_col(core, 'after')} = :after WHERE seq = :seq",
        after='{"state": ',
        seq=record.seq,
    )


def edit_pending(core: OrderCore) -> None:
    """An entry written after the last seal, edited before the next one."""
    core.customers.add(name="Pending Person", actor=Actor.operator("bob", "support"))
    table = quoted(core, core.tables.audit_pending)
    _sql(core, f"UPDATE {table} SET reason = 'edited while pending'")


def _insert(core: OrderCore, record: Any) -> None:
    with core.engine.begin() as conn:
        conn.execute(
            core.tables.audit_log.insert().values(
                seq=record.seq,
                at=record.at,
                actor_kind=record.actor_kind,
                actor_id=record.actor_id,
                actor_role=record.actor_role,
                entity_kind=record.entity_kind,
                entity_id=record.entity_id,
                action=record.action,
                before=record.before,
                after=record.after,
                reason=record.reason,
                prev_hash=record.prev_hash,
                hash=record.hash,
            )
        )


#: (tamper, detected with a key, detected without one, detected by a checkpoint without one)
CASES: list[tuple[Callable[[OrderCore], None], bool, bool, bool]] = [
    (edit, True, True, True),
    (delete_middle, True, True, True),
    (delete_tail, True, True, True),
    # The head's MAC gives a rewound head away; without a key only a checkpoint does.
    (delete_tail_and_move_head, True, False, True),
    # The orders are still there, without a single record: that cannot be.
    (delete_everything, True, True, True),
    (insert_past_head, True, True, True),
    (insert_past_head_with_a_good_hash, True, True, True),
    (reorder, True, True, True),
    # Plain SHA-256 can be recomputed by anyone: only the key or a checkpoint tells.
    (rechain_plain, True, False, True),
    (malformed_payload, True, True, True),
    (edit_pending, True, True, True),
]


# The matrix runs on SQLite and PostgreSQL (the SQL of each case is plain; MariaDB runs the
# rest of this module).
@pytest.mark.parametrize("backend", BACKENDS[:2], indirect=True)
@pytest.mark.parametrize("keyed", [True, False], ids=["key", "no-key"])
@pytest.mark.parametrize(
    ("tamper", "with_key", "without_key", "by_checkpoint"),
    CASES,
    ids=[case[0].__name__ for case in CASES],
)
def test_tampering(
    backend: Backend,
    clock: FakeClock,
    keyed: bool,
    tamper: Callable[[OrderCore], None],
    with_key: bool,
    without_key: bool,
    by_checkpoint: bool,
) -> None:
    core = backend.core(clock, audit_key=KEY if keyed else None)
    numbers = _populate(core, clock)
    assert core.audit.verify().ok
    checkpoint = core.audit.checkpoint()
    assert core.audit.verify_since(checkpoint).ok

    tamper(core)

    verdict = core.audit.verify()
    assert verdict.ok is not (with_key if keyed else without_key), verdict
    if not verdict.ok:
        assert verdict.problems
        assert verdict.problem == verdict.problems[0]
    since = core.audit.verify_since(Checkpoint.from_json(checkpoint.to_json()))
    if tamper is edit_pending:  # after the checkpoint: only the entry's own hash tells
        assert since.ok is verdict.ok
    else:
        assert since.ok is not by_checkpoint, since
    # Whatever was done to the audit rows, every order still reads.
    for number in numbers.values():
        details = core.orders.details(number)
        assert details.order.number == number


def test_what_each_verdict_says(backend: Backend, clock: FakeClock) -> None:
    core = backend.core(clock, audit_key=KEY)
    _populate(core, clock)
    last = _records(core)[-1].seq
    insert_past_head(core)
    delete_middle(core)
    verdict = core.audit.verify()
    assert verdict.problems == (
        "record 4 is missing (next present is 5)",
        "record 5: link to the previous record is broken",
        f"record {last + 1} is past the chain head ({last})",
    )
    assert verdict.broken_seq == 4
    assert verdict.keyed


# ---------------------------------------------------------------------------- the write path
def test_a_write_never_fails_on_a_planted_row(backend: Backend, clock: FakeClock) -> None:
    """Rows planted past the head and at the next pending position: writes go on, verify
    names the planted ones, and sealing refuses to build on them."""
    core = backend.core(clock, audit_key=KEY)
    _populate(core, clock)
    insert_past_head(core)
    pending = quoted(core, core.tables.audit_pending)
    with core.engine.begin() as conn:
        if backend.name == "postgresql":
            sequence = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, 'id')"),
                {"t": core.tables.audit_pending.fullname},
            ).scalar_one()
            taken = conn.execute(text("SELECT nextval(:s)"), {"s": sequence}).scalar_one() + 1
        else:
            taken = (conn.execute(text(f"SELECT MAX(id) FROM {pending}")).scalar() or 0) + 1
        conn.execute(
            text(
                f"INSERT INTO {pending} (id, nonce, at, actor_kind, actor_id, entity_kind, "
                f"entity_id, action, entry_hash) VALUES (:id, 'planted', :at, 'system', 'x', "
                f"'order', 'X', 'order.note', :h)"
            ),
            {"id": taken, "at": clock(), "h": "0" * 64},
        )
    # The next write is handed the planted position on PostgreSQL: it takes the next one.
    customer = core.customers.add(name="After", actor=Actor.operator("bob", "support"))
    assert customer.id is not None
    verdict = core.audit.verify()
    assert not verdict.ok
    assert f"pending entry {taken}: content does not match its hash" in verdict.problems
    assert any("is past the chain head" in p for p in verdict.problems)


@pytest.mark.parametrize("backend", SERVER_BACKENDS[:1], indirect=True)
def test_two_transactions_audit_different_orders_without_waiting(
    backend: Backend, core: OrderCore, clock: FakeClock
) -> None:
    """PostgreSQL: a transaction that has appended audit entries and not committed does not
    hold back another one appending its own — checked with a lock timeout, not by timing.
    Both commit; the seal then links both."""
    actor = ADMIN
    first = core.unit_of_work().__enter__()
    second = core.unit_of_work().__enter__()
    try:
        first.audit.append([AuditEntry("order", "A-1", "order.note", actor, clock())])
        second.conn.execute(text("SET LOCAL lock_timeout = '1s'"))
        second.audit.append([AuditEntry("order", "B-1", "order.note", actor, clock())])
        second.commit()  # while the first is still open
        first.commit()
    finally:
        second.__exit__(None, None, None)
        first.__exit__(None, None, None)
    assert core.audit.seal_all() == 2
    # in the order they were written (the database's positions), whatever the commit order
    assert [r.entity_id for r in _records(core)[-2:]] == ["A-1", "B-1"]
    assert core.audit.verify().ok


def test_the_job_runner_seals_what_was_written(backend: Backend, clock: FakeClock) -> None:
    core = backend.core(clock, audit_key=KEY)
    numbers = _populate(core, clock)
    for i in range(3):
        core.orders.add_note(numbers["first"], f"n{i}", actor=ADMIN)
    assert core.audit.verify().pending == 3
    report = core.payments.run_due_jobs(clock())
    assert report.sealed == 3
    assert report.audit_problem is None
    assert core.audit.verify().pending == 0


# ---------------------------------------------------------------------------- checkpoints
def test_checkpoints(backend: Backend, clock: FakeClock) -> None:
    core = backend.core(clock, audit_key=KEY)
    _populate(core, clock)
    checkpoint = core.audit.checkpoint()
    assert checkpoint.authentic(KEY)
    assert not checkpoint.authentic(b"another key")
    assert not checkpoint.authentic(None)
    assert Checkpoint.from_json(checkpoint.to_json()) == checkpoint
    forged = evolve(checkpoint, seq=checkpoint.seq - 1)
    verdict = core.audit.verify_since(forged)
    assert not verdict.ok
    assert "the checkpoint is not signed by this audit key" in verdict.problems
    # A later chain still holds what an earlier checkpoint covered.
    core.customers.add(name="Later", actor=ADMIN)
    core.audit.seal_all()
    assert core.audit.verify_since(checkpoint).ok


def _checkpoint_text(**changes: Any) -> str:
    fields: dict[str, Any] = {
        "kind": "ordercore.audit.checkpoint",
        "version": 1,
        "seq": 1,
        "hash": "a" * 64,
        "at": "2026-01-01T00:00:00+00:00",
    }
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not ...})


@pytest.mark.parametrize(
    "text_",
    [
        "",
        "not json",
        "[]",
        _checkpoint_text(kind="something else"),
        _checkpoint_text(version=2),
        _checkpoint_text(seq=-1),
        _checkpoint_text(seq=True),
        _checkpoint_text(seq="1"),
        _checkpoint_text(seq=...),
        _checkpoint_text(hash="xyz"),
        _checkpoint_text(hash="A" * 64),
        _checkpoint_text(at="yesterday"),
        _checkpoint_text(at="2026-01-01T00:00:00"),
        _checkpoint_text(mac=7),
        _checkpoint_text(mac="b" * 63),
    ],
)
def test_a_checkpoint_that_is_not_one_is_refused(text_: str) -> None:
    assert Checkpoint.from_json(_checkpoint_text()).seq == 1  # the well-formed one parses
    with pytest.raises(InvalidField):
        Checkpoint.from_json(text_)
