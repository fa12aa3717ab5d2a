"""The audit trail in the database: pending entries, the sealed chain and its head.

The write path (:meth:`AuditRepository.append`) inserts pending entries only: their position
comes from the database's own auto-increment, so concurrent transactions — about different
orders or the same one — never wait for each other here, and a row planted at the next
position costs a retry, never a failed write. :meth:`AuditRepository.seal` is the one place
that takes the chain head's row lock: it links committed pending entries into the chain in
the order they were written, moves the head and authenticates it.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Row,
    String,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql

from ordercore._actor import Actor, ActorKind
from ordercore._audit.chain import (
    GENESIS,
    AuditEntry,
    AuditRecord,
    PendingAuditRecord,
    head_mac,
    verify_pending,
)
from ordercore._errors import AuditChainError
from ordercore._state import ORDER_MACHINE, OrderEvent, OrderStatus, Transition

from . import _driver as driver
from ._built import built, insert_into
from .tables import Tables

__all__ = ["AuditRepository", "Head"]

logger = logging.getLogger("ordercore.audit")

#: How many times an insert of pending entries is retried when planted rows take the
#: positions the database handed out (PostgreSQL's sequences do not skip them).
_INSERT_TRIES = 5

_ORDER_EVENTS = {f"order.{e.value}": e for e in OrderEvent}

Head = tuple[int, str, str | None]

#: The columns a pending entry and a chain record share.
_COMMON = (
    "at",
    "actor_kind",
    "actor_id",
    "actor_role",
    "entity_kind",
    "entity_id",
    "action",
    "before",
    "after",
    "reason",
)


#: The fields of a pending entry's row (every field of the record but its ``id``).
_PENDING_FIELDS = (
    "nonce", "at", "actor_kind", "actor_id", "actor_role", "entity_kind", "entity_id",
    "action", "before", "after", "reason", "entry_hash",
)  # fmt: skip
#: PostgreSQL: up to this many entries go in one multi-row INSERT (a statement per count).
_MULTI_ROW_MAX = 8


def _pending_values(record: PendingAuditRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _PENDING_FIELDS}


def _status(text: str | None) -> OrderStatus | None:
    """The ``status`` of a record's JSON side, or None when it has none or is not JSON."""
    if text is None:
        return None
    try:
        data = json.loads(text)
        return OrderStatus(data["status"]) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


class AuditRepository:
    """Pending entries, the sealed hash chain and its head."""

    HEAD_ID = 1

    def __init__(self, conn: Connection, tables: Tables, key: bytes | None) -> None:
        self.conn = conn
        self.t = tables.audit_log
        self.pending_t = tables.audit_pending
        self.head_t = tables.audit_head
        self.orders_t = tables.orders
        self.key = key
        pending = self.pending_t
        # Built once per table (the write path; see _built.py).
        self._insert_pending = insert_into(pending)
        self._insert_pending_pg = built(
            pending,
            "insert_pg",
            lambda: postgresql.insert(pending).on_conflict_do_nothing().returning(pending.c.nonce),
        )

    # -- the write path -------------------------------------------------------------------
    def append(self, entries: Sequence[AuditEntry]) -> list[PendingAuditRecord]:
        """Store ``entries`` as pending entries, in this transaction. Takes no shared lock."""
        if not entries:
            return []
        records = [
            PendingAuditRecord.from_entry(entry, secrets.token_hex(16), self.key)
            for entry in entries
        ]
        if self.conn.dialect.name != "postgresql":
            # SQLite and MariaDB hand out max(id) + 1: a planted row never collides.
            rows = [_pending_values(r) for r in records]
            driver.executemany(self.conn, self._insert_pending, rows)
            return records
        waiting = records
        for _ in range(_INSERT_TRIES):
            if len(waiting) <= _MULTI_ROW_MAX:
                # one statement of len(waiting) rows, on the driver's cursor
                values = {
                    f"{name}_{i}": value
                    for i, r in enumerate(waiting)
                    for name, value in _pending_values(r).items()
                }
                found = driver.execute(self.conn, self._multi_row(len(waiting)), values).scalars()
            else:
                found = list(
                    self.conn.execute(
                        self._insert_pending_pg, [_pending_values(r) for r in waiting]
                    ).scalars()
                )
            done = {str(n) for n in found}
            waiting = [r for r in waiting if r.nonce not in done]
            if not waiting:
                return records
            logger.warning("audit: %d pending positions were taken; retrying", len(waiting))
        raise AuditChainError("could not store audit entries: their positions are taken")

    def _multi_row(self, rows: int) -> Any:
        """PostgreSQL: ``INSERT`` of ``rows`` pending entries ``ON CONFLICT DO NOTHING
        RETURNING nonce`` (the parameters ``<field>_<row>``), built once per row count."""
        pending = self.pending_t

        def make() -> Any:
            values: list[dict[str, Any]] = [
                {f: bindparam(f"{f}_{i}") for f in _PENDING_FIELDS} for i in range(rows)
            ]
            return (
                postgresql.insert(pending)
                .values(values)
                .on_conflict_do_nothing()
                .returning(pending.c.nonce)
            )

        return built(pending, f"insert_pg_{rows}", make)

    # -- sealing --------------------------------------------------------------------------
    def head(self, *, lock: bool = False) -> Head | None:
        """``(seq, hash, mac)`` of the chain head, or None before anything was sealed. With
        ``lock``, a share lock keeps seals out until this transaction ends."""
        query = select(self.head_t.c.seq, self.head_t.c.hash, self.head_t.c.mac).where(
            self.head_t.c.id == self.HEAD_ID
        )
        if lock:
            query = query.with_for_update(read=True)
        row = self.conn.execute(query).first()
        return None if row is None else (int(row.seq), str(row.hash), row.mac)

    def seal(self, *, limit: int = 1000) -> int:
        """Link up to ``limit`` committed pending entries into the chain, oldest first, and
        move the head; returns how many. Locks the head row until the caller commits.

        Refuses (:class:`AuditChainError`) to extend a chain whose head does not match its
        last record, that has records past its head, or whose head's MAC is wrong: sealing on
        top of tampering would hide it. A pending entry that no longer matches its hash is
        left pending, for ``audit verify`` to report."""
        row = self.conn.execute(
            select(self.head_t.c.seq, self.head_t.c.hash, self.head_t.c.mac)
            .where(self.head_t.c.id == self.HEAD_ID)
            .with_for_update()
        ).first()
        if row is None:
            self.conn.execute(insert(self.head_t).values(id=self.HEAD_ID, seq=0, hash=GENESIS))
            seq, prev, mac = 0, GENESIS, None
        else:
            seq, prev, mac = int(row.seq), str(row.hash), row.mac
        pending = list(self.pending(limit=limit))
        if not pending:
            return 0
        self._check_tail(seq, prev, mac)
        sealed: list[AuditRecord] = []
        taken: list[int] = []
        for entry in pending:
            if not verify_pending(entry, self.key):
                logger.warning("audit: pending entry %s does not match its hash", entry.id)
                continue
            seq += 1
            record = entry.seal(seq, prev, self.key)
            sealed.append(record)
            assert entry.id is not None
            taken.append(entry.id)
            prev = record.hash
        if not sealed:
            return 0
        self.conn.execute(insert(self.t), [_record_values(r) for r in sealed])
        self.conn.execute(delete(self.pending_t).where(self.pending_t.c.id.in_(taken)))
        self.conn.execute(
            update(self.head_t)
            .where(self.head_t.c.id == self.HEAD_ID)
            .values(seq=seq, hash=prev, mac=head_mac(seq, prev, self.key))
        )
        return len(sealed)

    def _check_tail(self, seq: int, hash_: str, mac: str | None) -> None:
        past = self.conn.execute(select(func.max(self.t.c.seq))).scalar()
        if past is not None and int(past) > seq:
            raise AuditChainError(
                f"audit chain: records past the head ({seq}) up to {past}; "
                "run `ordercore audit verify`"
            )
        if seq:
            last = self.conn.execute(select(self.t.c.hash).where(self.t.c.seq == seq)).scalar()
            if last != hash_:
                raise AuditChainError(
                    f"audit chain: the head does not match record {seq}; "
                    "run `ordercore audit verify`"
                )
        # A head without a MAC is taken once (a chain from before MACs, or a new key): the
        # seal authenticates it. A wrong MAC is never overwritten.
        if self.key and mac is not None and mac != head_mac(seq, hash_, self.key):
            raise AuditChainError(
                "audit chain: the head is not authenticated by the audit key; "
                "run `ordercore audit verify`"
            )

    # -- reading --------------------------------------------------------------------------
    def records(self, *, batch: int = 1000, upto: int | None = None) -> Iterator[AuditRecord]:
        """Every chain record in ``seq`` order (up to ``upto`` when given), read in batches."""
        after = 0
        while True:
            query = select(self.t).where(self.t.c.seq > after)
            if upto is not None:
                query = query.where(self.t.c.seq <= upto)
            rows = self.conn.execute(query.order_by(self.t.c.seq).limit(batch)).all()
            if not rows:
                return
            for row in rows:
                yield _record_from_row(row)
            after = int(rows[-1].seq)

    def pending(
        self, *, batch: int = 1000, limit: int | None = None
    ) -> Iterator[PendingAuditRecord]:
        """Pending entries in the order they were written."""
        after = 0
        left = limit
        while left is None or left > 0:
            size = batch if left is None else min(batch, left)
            rows = self.conn.execute(
                select(self.pending_t)
                .where(self.pending_t.c.id > after)
                .order_by(self.pending_t.c.id)
                .limit(size)
            ).all()
            if not rows:
                return
            for row in rows:
                yield _pending_from_row(row)
            after = int(rows[-1].id)
            if left is not None:
                left -= len(rows)

    def pending_count(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(self.pending_t)).scalar_one())

    def for_entity(
        self, entity_kind: str, entity_id: str
    ) -> list[AuditRecord | PendingAuditRecord]:
        """An entity's records: the sealed ones in chain order, then the pending ones — read
        in one statement, so that a seal committing meanwhile neither hides nor repeats one."""
        log, pend = self.t, self.pending_t
        common = _COMMON
        no_int, no_text = cast(null(), BigInteger), cast(null(), String(64))
        sealed = select(
            literal_column("0").label("pending"),
            *(log.c[c] for c in common),
            log.c.seq,
            log.c.prev_hash,
            log.c.hash,
            no_int.label("id"),
            no_text.label("nonce"),
            no_text.label("entry_hash"),
        ).where(and_(log.c.entity_kind == entity_kind, log.c.entity_id == entity_id))
        waiting = select(
            literal_column("1").label("pending"),
            *(pend.c[c] for c in common),
            no_int.label("seq"),
            no_text.label("prev_hash"),
            no_text.label("hash"),
            pend.c.id,
            pend.c.nonce,
            pend.c.entry_hash,
        ).where(and_(pend.c.entity_kind == entity_kind, pend.c.entity_id == entity_id))
        both = union_all(sealed, waiting).subquery()
        rows = self.conn.execute(select(both).order_by(both.c.pending, both.c.seq, both.c.id)).all()
        return [_pending_from_row(r) if r.pending else _record_from_row(r) for r in rows]

    def count(self) -> int:
        """Records, sealed or pending."""
        sealed = self.conn.execute(select(func.count()).select_from(self.t)).scalar_one()
        return int(sealed) + self.pending_count()

    def unaudited_orders(self, *, limit: int = 5) -> tuple[int, list[str]]:
        """Orders with no audit record at all (every order is created with one): how many, and
        the first few numbers."""
        orders_table = self.orders_t
        number = orders_table.c.number
        has_record = (
            select(self.t.c.seq)
            .where(and_(self.t.c.entity_kind == "order", self.t.c.entity_id == number))
            .exists()
        )
        has_pending = (
            select(self.pending_t.c.id)
            .where(
                and_(self.pending_t.c.entity_kind == "order", self.pending_t.c.entity_id == number)
            )
            .exists()
        )
        condition = and_(~has_record, ~has_pending)
        count = self.conn.execute(
            select(func.count()).select_from(orders_table).where(condition)
        ).scalar_one()
        first = self.conn.execute(
            select(number).where(condition).order_by(orders_table.c.id).limit(limit)
        ).scalars()
        return int(count), [str(n) for n in first]

    def order_history(self, number: str) -> list[Transition[OrderStatus, OrderEvent]]:
        """The order's status transitions, rebuilt from its audit records. A record that does
        not parse is skipped (``audit verify`` reports it): one bad row never makes an order
        unreadable."""
        history: list[Transition[OrderStatus, OrderEvent]] = []
        for record in self.for_entity("order", number):
            event = _ORDER_EVENTS.get(record.action)
            source, target = _status(record.before), _status(record.after)
            if event is None or source is None or target is None:
                if event is not None:
                    logger.warning("audit: order %s has a record it cannot read", number)
                continue
            try:
                actor = Actor(ActorKind(record.actor_kind), record.actor_id, record.actor_role)
            except ValueError:
                logger.warning("audit: order %s has a record with an unknown actor", number)
                continue
            history.append(
                Transition(
                    machine=ORDER_MACHINE.name,
                    entity=number,
                    source=source,
                    event=event,
                    target=target,
                    actor=actor,
                    reason=record.reason,
                    at=record.at,
                )
            )
        return history


def _record_values(r: AuditRecord) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "at": r.at,
        "actor_kind": r.actor_kind,
        "actor_id": r.actor_id,
        "actor_role": r.actor_role,
        "entity_kind": r.entity_kind,
        "entity_id": r.entity_id,
        "action": r.action,
        "before": r.before,
        "after": r.after,
        "reason": r.reason,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    }


def _record_from_row(row: Row[Any]) -> AuditRecord:
    return AuditRecord(
        seq=int(row.seq),
        at=row.at,
        actor_kind=row.actor_kind,
        actor_id=row.actor_id,
        actor_role=row.actor_role,
        entity_kind=row.entity_kind,
        entity_id=row.entity_id,
        action=row.action,
        before=row.before,
        after=row.after,
        reason=row.reason,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _pending_from_row(row: Row[Any]) -> PendingAuditRecord:
    return PendingAuditRecord(
        id=int(row.id),
        nonce=row.nonce,
        at=row.at,
        actor_kind=row.actor_kind,
        actor_id=row.actor_id,
        actor_role=row.actor_role,
        entity_kind=row.entity_kind,
        entity_id=row.entity_id,
        action=row.action,
        before=row.before,
        after=row.after,
        reason=row.reason,
        entry_hash=row.entry_hash,
    )
